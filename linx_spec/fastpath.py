"""The cold-start fast path of `linx-spec apply FILE`: a plan cache.

A CLI process spends ~200 ms importing pydantic, yaml and typer to validate a
spec it validated the last time too.  After a plain `apply FILE` the resolved
Plan is stored (JSON, read back against the Plan's types: stored.py) under
the runtime directory, keyed by what it was
made from: the spec's path and bytes, the caller's uid/gid, the values of the
environment variables the spec refers to (`${NAME}`), linx-spec's version.
It is used only while what it depends on is unchanged: the host's mount table
(cgroup hierarchies), and the status (mtime, size) of every path the spec
names and of the program the plan resolved.  Anything else (`--set`, `-t`,
`--detach`, `--timeout`, a miss) takes the normal path, which validates, plans
and refreshes the cache.  The cache lives in /run/linx/.plans (root) or
$XDG_RUNTIME_DIR/linx/.plans (or /tmp/linx-UID/.plans), each directory 0700
and checked on every use (rundir.py); an entry that is not ours alone, not
JSON, or not a Plan is a miss, never an error and never code.
"""

from __future__ import annotations

import hashlib
import os
import re

from .errors import SpecError
from .specfile import read_spec_bytes

FORMAT = 1
_VAR = re.compile(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# A path a spec names: starts at a separator with /, ./ or ../; ends at what
# YAML or a shell command line would end it with.
_PATH = re.compile(rb"""(?:^|[\s\[{,:'"=])((?:\.{1,2})?/[^\s'"\]},;|&<>()`$]*)""")


CACHE_DIR = ".plans"  # a dot: never a workload name (state.NAME_RE)


def _open_cache(create: bool) -> int | None:
    """The checked cache directory's fd, or None (no runtime directory yet)."""
    from . import rundir

    root = rundir.open_root(create=create)
    if root is None:
        return None
    try:
        return rundir.open_subdir(root, CACHE_DIR, create, os.path.join(rundir.root_path(), CACHE_DIR))
    finally:
        os.close(root)


def _entry_type():
    from dataclasses import make_dataclass

    from .plan.workload import Plan

    global _ENTRY
    if _ENTRY is None:
        _ENTRY = make_dataclass("CacheEntry", [
            ("key", str), ("mounts", str),
            ("deps", tuple[tuple[str, tuple[int, int] | None], ...]), ("plan", Plan)], frozen=True)
    return _ENTRY


_ENTRY = None


def _key(path: str, text: bytes) -> str:
    from . import __version__

    h = hashlib.sha256()
    h.update(f"{FORMAT}\0{__version__}\0{os.path.abspath(path)}\0{os.geteuid()}\0{os.getegid()}\0".encode())
    h.update(text)
    for name in sorted(set(_VAR.findall(text))):
        h.update(b"\0" + name + b"=" + os.environb.get(name, b"\x01unset"))
    return h.hexdigest()


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _mounts() -> str:
    with open("/proc/self/mounts", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _dependencies(path: str, text: bytes, plan) -> dict[str, tuple[int, int] | None]:
    base = os.path.dirname(os.path.abspath(path))
    deps: dict[str, tuple[int, int] | None] = {}
    for raw in _PATH.findall(text):
        p = os.path.normpath(os.path.join(base, raw.decode("utf-8", "replace")))
        deps[p] = _stat(p)
    deps[os.path.abspath(path)] = _stat(path)
    exe = plan.process.exec_path
    root = plan.mounts.rootfs if plan.mounts else None
    exe_on_host = os.path.join(root, exe.lstrip("/")) if root else exe
    deps[exe_on_host] = _stat(exe_on_host)
    profile = plan.seccomp.profile if plan.seccomp else None  # `profile: p.json` has no `/` for _PATH to see
    if profile:
        deps[profile] = _stat(profile)
    return deps


def store(path: str, plan) -> None:
    """Called by the normal path after it built a plan for a plain spec file.
    A cache is an optimization: no reason to fail, but a runtime directory that
    is not ours alone is still reported (StateError) by the run itself."""
    from . import rundir, stored
    from .errors import StateError

    try:
        text = read_spec_bytes(path)
        key = _key(path, text)
        entry = _entry_type()(key, _mounts(), tuple(sorted(_dependencies(path, text, plan).items())), plan)
        data = stored.dumps(entry)
        d = _open_cache(create=True)
    except (OSError, TypeError, ValueError, SpecError, StateError):
        return
    try:
        rundir.write_file(d, key, data)
    except OSError:
        pass
    finally:
        os.close(d)


def load(path: str):
    """The cached plan for this spec, if still valid; else None."""
    from . import rundir, stored
    from .errors import StateError

    try:
        text = read_spec_bytes(path)  # a FIFO or device as SPEC must not block: regular files only
        key = _key(path, text)
        d = _open_cache(create=False)
    except (OSError, SpecError, StateError):
        return None
    if d is None:
        return None
    try:
        entry = stored.loads(_entry_type(), rundir.read_file(d, key, stored.MAX_BYTES))
    except (OSError, ValueError):
        return None  # missing, not ours alone, not JSON, not a Plan: plan again
    finally:
        os.close(d)
    if entry.key != key or entry.mounts != _mounts():
        return None
    for dep, status in entry.deps:
        if _stat(dep) != status:
            return None
    return entry.plan


def try_apply(args: list[str]) -> int | None:
    """`apply FILE [-v]` from the cache; None sends the command to the normal path.
    A LinxError propagates to cli.main, which maps it as the commands do."""
    verbose = False
    files = []
    for a in args:
        if a in ("-v", "--verbose"):
            verbose = True
        elif a.startswith("-"):
            return None
        else:
            files.append(a)
    if len(files) != 1 or files[0] == "-":
        return None
    plan = load(files[0])
    if plan is None:
        return None
    from .apply import apply_plan

    return apply_plan(plan, verbose=verbose)
