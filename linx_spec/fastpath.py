"""The cold-start fast path of `linx-spec apply FILE`: a plan cache.

A CLI process spends ~200 ms importing pydantic, yaml and typer to validate a
spec it validated the last time too.  After a plain `apply FILE` the resolved
Plan is stored (pickle) under the runtime directory, keyed by what it was
made from: the spec's path and bytes, the caller's uid/gid, the values of the
environment variables the spec refers to (`${NAME}`), linx-spec's version.
It is used only while what it depends on is unchanged: the host's mount table
(cgroup hierarchies), and the status (mtime, size) of every path the spec
names and of the program the plan resolved.  Anything else (`--set`, `-t`,
`--detach`, `--timeout`, a miss) takes the normal path, which validates, plans
and refreshes the cache.  The cache lives in /run/linx/.plans (root) or
$XDG_RUNTIME_DIR/linx/.plans: a tmpfs, gone at reboot, writable only by us.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re

FORMAT = 1
_VAR = re.compile(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# A path a spec names: starts at a separator with /, ./ or ../; ends at what
# YAML or a shell command line would end it with.
_PATH = re.compile(rb"""(?:^|[\s\[{,:'"=])((?:\.{1,2})?/[^\s'"\]},;|&<>()`$]*)""")


def _cache_dir() -> str:
    env = os.environ.get("LINX_RUNTIME_DIR")
    if env:
        root = env
    elif os.geteuid() == 0:
        root = "/run/linx"
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        root = os.path.join(xdg, "linx") if xdg else f"/tmp/linx-{os.geteuid()}"
    return os.path.join(root, ".plans")  # a dot: never a workload name (state.NAME_RE)


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


def _mounts() -> bytes:
    with open("/proc/self/mounts", "rb") as f:
        return hashlib.sha256(f.read()).digest()


def _dependencies(path: str, text: bytes, plan) -> dict[str, tuple[int, int] | None]:
    base = os.path.dirname(os.path.abspath(path))
    deps: dict[str, tuple[int, int] | None] = {}
    for raw in _PATH.findall(text):
        p = os.path.normpath(os.path.join(base, raw.decode("utf-8", "replace")))
        deps[p] = _stat(p)
    deps[os.path.abspath(path)] = _stat(path)
    exe = plan.process.exec_path
    root = getattr(plan.mounts, "rootfs", None)
    exe_on_host = os.path.join(root, exe.lstrip("/")) if root else exe
    deps[exe_on_host] = _stat(exe_on_host)
    profile = getattr(plan.seccomp, "profile", None)  # `profile: p.json` has no `/` for _PATH to see
    if profile:
        deps[profile] = _stat(profile)
    return deps


def store(path: str, plan) -> None:
    """Called by the normal path after it built a plan for a plain spec file."""
    try:
        with open(path, "rb") as f:
            text = f.read()
        d = _cache_dir()
        os.makedirs(d, mode=0o700, exist_ok=True)
        entry = {"plan": plan, "mounts": _mounts(), "deps": _dependencies(path, text, plan)}
        tmp = os.path.join(d, f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, os.path.join(d, _key(path, text)))
    except (OSError, pickle.PicklingError):
        pass  # a cache is an optimization; never a reason to fail


def load(path: str):
    """The cached plan for this spec, if still valid; else None."""
    try:
        with open(path, "rb") as f:
            text = f.read()
        entry_path = os.path.join(_cache_dir(), _key(path, text))
        st = os.stat(entry_path)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        with open(entry_path, "rb") as f:
            entry = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, KeyError):
        return None
    if entry.get("mounts") != _mounts():
        return None
    for dep, status in entry.get("deps", {}).items():
        if _stat(dep) != status:
            return None
    return entry.get("plan")


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
