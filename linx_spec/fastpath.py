"""The cold-start fast path of `linx-spec apply FILE`: a plan cache.

A CLI process spends ~200 ms importing pydantic, yaml and typer to validate a
spec it validated the last time too.  After a plain `apply FILE` the resolved
Plan is stored (JSON, read back against the Plan's types: stored.py) under
the runtime directory.

The entry's name (its key) is what the plan was made *from*: the spec's path
and bytes, the caller's uid/gid, the values of the environment variables the
spec refers to (`${NAME}`), the kernel release and linx-spec's version.

Inside, next to the plan, are what the plan *depends on* in the host, each
with its fingerprint when the plan was made; the entry is used only while
every one is unchanged.  They come from the Plan's own fields, never from the
spec's text (a path inside a shell command is read by the workload when it
runs, not by the plan):

    program      the resolved executable (seen through rootfs, layers and binds),
                 and each earlier PATH candidate, which must stay what it was
    mounts       rootfs and its layers, bind sources, overlay directories,
                 optional bind sources that were absent, host mount points used
                 without a rootfs
    seccomp      the profile file
    cgroup       the cgroup hierarchies in the mount table, /proc/self/cgroup
    network      the host interfaces named (parent, existing device, veth host end)
    caller       the caller's capability sets and, with rlimits, its limits and fs.nr_open

A path's fingerprint is its stat identity (device, inode, type; for a file also
mode, mtime and size): something mounted over it, or over a directory above it,
changes the device and inode, so the mount dependency is exactly the mount points
of the paths named, plus the cgroup hierarchies for a plan with a cgroup.
Deliberately left out: stdio files (opened when it runs; a log appended by every
run would never hit), joined namespace paths (opened when it runs, the plan is the
same whichever namespace is there), the rest of the mount table.

`--set` values (and `--env`, `--init`, which are --set shorthands) are part of the
key, in order.  `apply` with -v, -d, -q and those is handled here (try_apply):
a hit runs the stored plan, a miss validates, plans and stores without typer.
Anything else (`-t`, `--timeout`, `--restart`, stdin) takes typer's path
(commands.py), which validates, plans and refreshes the cache the same way.  The cache lives in
/run/linx/.plans (root) or $XDG_RUNTIME_DIR/linx/.plans (or /tmp/linx-UID/.plans),
each directory 0700 and checked on every use (rundir.py); an entry that is not
ours alone, not JSON, or not a Plan is a miss, never an error and never code.
It is bounded: an entry above MAX_ENTRY_BYTES is not stored, and after a store the
least recently used entries go until at most MAX_ENTRIES and MAX_TOTAL_BYTES remain
(a hit touches its entry).  `apply -v` says hit or miss and why.
"""

from __future__ import annotations

import os
import stat

from .errors import SpecError
from .record import Record
from .specfile import read_spec_bytes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from .plan.workload import Plan

FORMAT = 2
try:  # the builtin module: hashlib loads OpenSSL (~2 ms of a cold start) for the same digest
    from _sha256 import sha256 as _sha256  # CPython <= 3.11
except ImportError:  # pragma: no cover - the module's name on newer CPythons, else hashlib
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

CACHE_DIR = ".plans"  # a dot: never a workload name (state.NAME_RE)
MAX_ENTRIES = 64
MAX_ENTRY_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20
_SYS_CLASS_NET = "/sys/class/net"


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


class CacheEntry(Record):
    key: str
    deps: tuple[tuple[str, str, str], ...]  # (what, object, fingerprint): _FINGERPRINT says how to take it
    plan: Plan


def __getattr__(name: str):
    # CacheEntry's `plan: Plan`, evaluated by stored.py when an entry is read back
    if name == "Plan":
        from .plan.workload import Plan

        return Plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NAME_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset(b"0123456789")


def _variables(text: bytes) -> set[bytes]:
    """The NAMEs of every `${NAME` in the text (as load.py expands them), without `re`."""
    names = set()
    i = text.find(b"${")
    while i >= 0:
        j = i + 2
        if j < len(text) and text[j] in _NAME_START:
            while j < len(text) and text[j] in _NAME_REST:
                j += 1
            names.add(text[i + 2:j])
        i = text.find(b"${", i + 2)
    return names


def _key(path: str, text: bytes, overrides: list[str] | tuple[str, ...] = ()) -> str:
    from . import __version__

    h = _sha256()
    h.update(f"{FORMAT}\0{__version__}\0{os.path.abspath(path)}\0{os.geteuid()}\0{os.getegid()}\0"
             f"{os.uname().release}\0".encode())
    h.update(text)
    for name in sorted(_variables(text)):
        h.update(b"\0" + name + b"=" + os.environb.get(name, b"\x01unset"))
    for assignment in overrides:  # --set (and --env, --init) in order: a later one wins; no ${VARS} in them
        h.update(b"\0--set\0" + assignment.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# --- fingerprints: each kind of dependency, read the same way at store and load

def _path(path: str) -> str:
    """A path's stat identity: directories by device and inode (their mtime moves
    with every entry a workload writes), anything else also by mode, mtime, size."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    if stat.S_ISDIR(st.st_mode):
        return f"d {st.st_dev} {st.st_ino}"
    return f"{st.st_mode:o} {st.st_dev} {st.st_ino} {st.st_mtime_ns} {st.st_size}"


def _cgroup_mounts(_: str) -> str:
    from .mountinfo import cgroup_mounts

    lines = sorted(f"{m.fstype} {m.dev} {m.mount_point} {','.join(m.all_options)}" for m in cgroup_mounts())
    with open("/proc/self/cgroup") as f:
        own = f.read()
    return _sha256(("\n".join(lines) + "\0" + own).encode()).hexdigest()[:32]


def _caps(_: str) -> str:
    with open("/proc/self/status") as f:
        return " ".join(line.split()[1] for line in f if line.startswith(("CapEff:", "CapBnd:")))


def _rlimits(names: str) -> str:
    import resource

    limits = [resource.getrlimit(int(n)) for n in names.split(",") if n]
    try:
        with open("/proc/sys/fs/nr_open") as f:
            nr_open = f.read().strip()
    except OSError:
        nr_open = "?"
    return f"{limits} {nr_open}"


def _interface(name: str) -> str:
    p = os.path.join(_SYS_CLASS_NET, name)
    try:
        with open(os.path.join(p, "mtu")) as f:
            return "mtu " + f.read().strip()
    except OSError:
        return "present" if os.path.lexists(p) else "-"


_FINGERPRINT = {"path": _path, "cgroup mounts": _cgroup_mounts, "caller caps": _caps, "caller rlimits": _rlimits,
                "interface": _interface}


def dependencies(plan) -> list[tuple[str, str]]:
    """(what, object) the plan depends on in the host, from its fields (module docstring)."""
    from .plan.mounts import MF, MK

    deps: list[tuple[str, str]] = [("caller caps", "")]
    m = plan.mounts
    paths: list[str] = []
    if m is not None:
        paths += [p for p in (m.rootfs, *m.root_layers) if p]
        for e in m.entries:
            if e.kind == MK.BIND and e.source:
                paths.append(e.source)
            for opt in e.options if e.fstype == "overlay" else ():
                name, _, value = opt.partition("=")
                paths += value.split(":") if name in ("lowerdir", "upperdir", "workdir") else []
            if m.rootfs is None and e.target and not e.flags & MF.CREATE and e.kind in (MK.BIND, MK.FS, MK.DEV):
                paths.append(e.target)  # an existing host mount point, used as it is
        paths += m.absent
        paths += m.read  # a root's /etc/passwd and /etc/group, merged into the plan
    host = m.host_path if m is not None else (lambda p: p)
    exe, argv0 = plan.process.exec_path, plan.process.argv[0]
    if "/" not in argv0:  # looked up on PATH: every earlier candidate must stay what it was
        env = dict(e.split("=", 1) for e in plan.process.env)
        for d in env.get("PATH", "").split(":"):
            if not d.startswith("/"):
                continue  # skipped by the lookup too (plan/process.py)
            candidate = os.path.join(d, argv0)
            if candidate == exe:
                break
            on_host = host(candidate)
            if on_host:
                paths.append(on_host)
    on_host = host(exe)
    if on_host:
        paths.append(on_host)
    if plan.seccomp is not None and plan.seccomp.profile:
        paths.append(plan.seccomp.profile)
    deps += [("path", p) for p in dict.fromkeys(paths)]
    if plan.cgroup is not None:
        deps.append(("cgroup mounts", ""))
    if plan.rlimits is not None:
        deps.append(("caller rlimits", ",".join(str(r.resource) for r in plan.rlimits.limits)))
    if plan.network is not None:
        for i in plan.network.interfaces:
            name = i.parent or i.device or (i.host.name if i.host else None)
            if name:
                deps.append(("interface", name))
    return deps


def _fingerprints(deps) -> tuple[tuple[str, str, str], ...]:
    return tuple((what, obj, _FINGERPRINT[what](obj)) for what, obj in deps)


def store(path: str, plan, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Called by the normal path after it built a plan for a plain spec file;
    -> what happened, for `apply -v`.  A cache is an optimization: no reason to
    fail, but a runtime directory that is not ours alone is still reported
    (StateError) by the run itself."""
    from . import rundir, stored
    from .errors import StateError

    try:
        text = read_spec_bytes(path)
        key = _key(path, text, overrides)
        data = stored.dumps(CacheEntry(key, _fingerprints(dependencies(plan)), plan))
        if len(data) > MAX_ENTRY_BYTES:
            return f"not stored: the plan takes {len(data)} bytes, above {MAX_ENTRY_BYTES}"
        d = _open_cache(create=True)
    except (OSError, TypeError, ValueError, SpecError, StateError) as exc:
        return f"not stored: {exc}"
    try:
        rundir.write_file(d, key, data)
        _evict(d, keep=key)
    except OSError as exc:
        return f"not stored: {exc}"
    finally:
        os.close(d)
    return f"stored ({len(data)} bytes)"


def _evict(d: int, keep: str) -> None:
    """Least recently used first, until MAX_ENTRIES and MAX_TOTAL_BYTES hold."""
    entries = []
    for name in os.listdir(d):
        if name.startswith("."):
            continue  # another process's temp file, renamed soon
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        except FileNotFoundError:
            continue
        entries.append((st.st_mtime_ns, name, st.st_size))
    entries.sort(reverse=True)  # newest first
    total = 0
    for n, (_, name, size) in enumerate(entries):
        total += size
        if name != keep and (n >= MAX_ENTRIES or total > MAX_TOTAL_BYTES):
            try:
                os.unlink(name, dir_fd=d)
            except FileNotFoundError:
                pass
            total -= size


def lookup(path: str, overrides: list[str] | tuple[str, ...] = ()):
    """-> (plan or None, why): the cached plan for this spec (and --set overrides) if still valid."""
    from . import rundir, stored
    from .errors import StateError

    try:
        text = read_spec_bytes(path)  # a FIFO or device as SPEC must not block: regular files only
        key = _key(path, text, overrides)
        d = _open_cache(create=False)
    except (OSError, SpecError, StateError) as exc:
        return None, str(exc)
    if d is None:
        return None, "no cache yet"
    try:
        entry = stored.loads(CacheEntry, rundir.read_file(d, key, MAX_ENTRY_BYTES))
        try:
            os.utime(key, dir_fd=d)  # recently used: evicted last
        except OSError:
            pass
    except FileNotFoundError:
        return None, "no entry for this spec's text, path, ${VARS}, uid/gid, kernel and linx-spec version"
    except (OSError, ValueError) as exc:
        return None, f"entry unusable ({exc})"  # not ours alone, not JSON, not a Plan: plan again
    finally:
        os.close(d)
    if entry.key != key:
        return None, "entry unusable (key mismatch)"
    for what, obj, was in entry.deps:
        fingerprint = _FINGERPRINT.get(what)
        now = fingerprint(obj) if fingerprint else None
        if now != was:
            return None, f"{what} {obj} changed ({was} -> {now})".replace("  ", " ")
    return entry.plan, f"hit ({len(entry.deps)} dependencies unchanged)"


def load(path: str):
    """The cached plan for this spec, if still valid; else None."""
    return lookup(path)[0]


def load_and_plan(spec_file: str, overrides: list[str], cache: bool = False, verbose: bool = False):
    """SPEC (a file or - for stdin) -> Plan, the normal path; with cache, a plain
    file's plan is stored for the next apply."""
    from .load import load_file
    from .plan.build import build_plan

    spec = load_file(spec_file, overrides=overrides)
    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file != "-" else os.getcwd()
    plan = build_plan(spec, source=spec_file, base_dir=base)
    if cache and spec_file != "-":
        result = store(spec_file, plan, overrides)
        if verbose:
            _say(result)
    return plan


def _say(text: str) -> None:
    import sys

    print(f"linx-spec: plan cache: {text}", file=sys.stderr)


_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-d": "detach", "--detach": "detach", "-q": "quiet",
          "--quiet": "quiet", "--init": "init"}
_VALUED = {"--set": "set", "--env": "env", "-e": "env"}


def parse_apply(args: list[str]) -> dict | None:
    """The forms of `apply` taken here: one spec file, -v, -d, -q, --init, and
    --set/--env/-e with a value (`--set X`, `--set=X`).  -> the options, with
    `overrides` made as commands.apply makes them; None for anything else (an
    option not listed, a malformed --env, stdin), which typer parses and reports."""
    opts: dict = {"verbose": False, "detach": False, "quiet": False, "init": False, "set": [], "env": []}
    files = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a in _FLAGS:
            opts[_FLAGS[a]] = True
            continue
        name, eq, value = a.partition("=")
        if eq and name in ("--set", "--env"):
            opts[_VALUED[name]].append(value)
            continue
        if a in _VALUED:
            if i == len(args):
                return None
            opts[_VALUED[a]].append(args[i])
            i += 1
            continue
        if a.startswith("-") and a != "-":
            opts["unknown"] = a.split("=")[0]
            return opts
        files.append(a)
    if len(files) != 1 or files[0] == "-":
        return None
    for text in opts["env"]:  # as commands._env_override, whose error typer reports
        key, eq, _value = text.partition("=")
        if not eq or not key or "." in key:
            return None
    opts["file"] = files[0]
    opts["overrides"] = (opts["set"] + [f"process.env.{text}" for text in opts["env"]]
                         + (["process.init=true"] if opts["init"] else []))
    return opts


def try_apply(args: list[str]) -> int | None:
    """`apply FILE` with the options parse_apply takes (-v, -d, -q, --init,
    --set, --env): the cached plan for the file and those overrides, or on a miss
    the plan made here (and stored); None sends any other form of the command to
    typer (commands.py).  With -v it says hit or miss, and why.  A LinxError
    propagates to cli.main, which maps it as the commands do."""
    opts = parse_apply(args)
    if opts is None or "unknown" in opts:
        if opts is not None and opts["verbose"]:
            _say(f"not used: {opts['unknown']} plans again")
        return None
    verbose, overrides = opts["verbose"], opts["overrides"]
    plan, why = lookup(opts["file"], overrides)
    if verbose:
        _say(why if plan is not None else f"miss: {why}")
    if plan is None:  # validate and plan here too: typer is for the rest of the CLI surface
        plan = load_and_plan(opts["file"], overrides, cache=True, verbose=verbose)
    from .apply import apply_plan

    return apply_plan(plan, verbose=verbose, detach=opts["detach"], quiet=opts["quiet"])
