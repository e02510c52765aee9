"""The cgroup step: the parked child joins its own cgroup(s), every limit already
written, before its first instruction; after it ends, usage and OOM kills are
read, whatever is left inside is killed, and what we created is removed.

    apply_from_host(plan, ctx)        the plan's cgroup part (plan/cgroup.py): mkdir (tracked
                                      by the agent), write limits, move the child in;
                                      undo = kill + rmdir.  A JoinCgroupsPlan (exec) joins
                                      the running workload's cgroups instead.

Only directories this workload created are ever removed.  Undo, after exit or
on a failed setup: kill what is left (v2 cgroup.kill; v1 freeze, SIGKILL,
thaw; else a kill loop), then rmdir, retrying EBUSY while the killed tasks
are reaped (a cgroup stays populated until its dead are reaped).
"""

from __future__ import annotations

import errno
import os
import _signal as signal  # the C module signal.py wraps in enums (~1 ms of a cold start)
import time

from ..errors import touched, touching
from ..plan.cgroup import RUNNER_LEAF, CgroupPlan, Hierarchy, JoinCgroupsPlan
from ..plan.cgroup_v2 import chain
from .cgroup_usage import v1_usage, v2_usage



# --- the filesystem the step touches --------------------------------------------

class CgroupFs:
    """The few operations the step makes on cgroupfs; tests substitute a fake tree."""

    def read(self, path: str) -> str | None:
        # os.open/os.read, not open(): no fstat, isatty ioctl, lseek or io objects
        # for each of the ~10 small files a workload's cgroups are read through.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            # A cgroup file is a seq_file: a read fills the buffer unless the file
            # ends first, so a short read is the whole file (no read for the EOF).
            chunks = [os.read(fd, 65536)]
            while len(chunks[-1]) == 65536:
                chunks.append(os.read(fd, 65536))
            return b"".join(chunks).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, path: str, text: str) -> None:
        # One write(2) per value: cgroupfs parses each write on its own.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def exists(self, path: str) -> bool:
        return os.path.isdir(path)

    def procs(self, leaf: str) -> set[int]:
        text = self.read(os.path.join(leaf, "cgroup.procs")) or ""
        return {int(x) for x in text.split() if x.isdigit()}

    def kill(self, pids: set[int], leaves: list[str]) -> None:
        """SIGKILL pids read from our cgroups, through pidfds checked to still be
        members, so that a pid reused meanwhile by another process is never hit."""
        fds = {}
        for pid in pids:
            try:
                fds[pid] = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
        try:
            members = set()
            for leaf in leaves:
                members |= self.procs(leaf)
            for pid, fd in fds.items():
                if pid in members:
                    try:
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    except OSError:
                        pass
        finally:
            for fd in fds.values():
                os.close(fd)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# --- apply, undo, usage ----------------------------------------------------------

def human_bytes(n: int) -> str:
    """67108864 -> `64 MiB`; 1500000 -> `1.4 MiB`."""
    units = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
    for unit, mul in units:
        if n >= mul and n % mul == 0:
            return f"{n // mul} {unit}"
    for unit, mul in units:
        if n >= mul:
            return f"{n / mul:.1f} {unit}"
    return f"{n} bytes"


# Parent directories a workload of this process made.  A parent is shared by
# the workloads below it: the one that made it may end while others are still
# inside (its rmdir: EBUSY), so every workload of this process that ends below
# it tries, and the last one out removes it, as with the default /linx.  Between
# processes (concurrent CLIs) the one that made it is the only one that knows.
_MADE_HERE: set[str] = set()


class Live:
    """The cgroups one workload created: undone by `destroy`, read by `collect`."""

    def __init__(self, plan: CgroupPlan, fs: CgroupFs):
        self.plan = plan
        self.fs = fs
        self.leaves: list[tuple[Hierarchy, str]] = []
        self.created: list[str] = []  # parent directories this workload created, in creation order

    # .. setup ..
    def _write(self, directory: str, name: str, value: str) -> None:
        with touching(f"write {name} {value!r}", directory):
            self.fs.write(os.path.join(directory, name), value)

    def _evacuate(self, h: Hierarchy, d: str) -> None:
        # No internal processes: before a delegated cgroup may pass controllers
        # down, its own processes (the runner, the agent) move into a leaf.
        if not self.fs.procs(d):
            return
        runner = os.path.join(d, RUNNER_LEAF)
        try:
            with touching("mkdir (leaf for the delegated cgroup's processes)", runner):
                self.fs.mkdir(runner)
        except FileExistsError:
            pass
        for pid in sorted(self.fs.procs(d)):
            try:
                with touching(f"move pid {pid} out of the delegated cgroup", runner):
                    self.fs.write(os.path.join(runner, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                pass  # ESRCH: it ended meanwhile

    def _enable(self, h: Hierarchy, d: str, path: str) -> None:
        have = set((self.fs.read(os.path.join(d, "cgroup.subtree_control")) or "").split())
        wanted = h.enable_root if path == "/" and h.enable_root else h.controllers
        missing = [c for c in wanted if c not in have]
        if missing and h.evacuate == path:
            self._evacuate(h, d)
        for c in missing:  # one at a time: the error then names the controller
            self._write(d, "cgroup.subtree_control", f"+{c}")

    def _copy_cpuset(self, d: str, parent: str, skip: set[str] = frozenset()) -> None:
        # v1: a new cpuset cgroup has empty cpus and mems; no task may join until both are set.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if name in skip or (self.fs.read(os.path.join(d, name)) or "").strip():
                continue
            value = (self.fs.read(os.path.join(parent, name)) or "").strip()
            if value:
                self._write(d, name, value)

    def _parents(self, h: Hierarchy) -> None:
        """mkdir the parent path top-down, passing controllers down (v2) or
        filling cpuset (v1) on the way.  FileNotFoundError: a directory on the
        way vanished (another workload removed the shared /linx): walk again."""
        paths = chain(h.parent)
        for i, path in enumerate(paths):
            d = h.dir(path)
            if path != "/":
                try:
                    with touching("mkdir", d):
                        self.fs.mkdir(d)
                    if d not in self.created:
                        self.created.append(d)
                    _MADE_HERE.add(d)
                    made = True
                except FileExistsError:
                    made = False
                if h.copy_cpuset and (made or path.rsplit("/", 1)[-1].startswith("linx")):
                    self._copy_cpuset(d, h.dir(paths[i - 1]))
            if h.version == 2 and path in h.enable_in:
                self._enable(h, d, path)

    def create(self, h: Hierarchy, leaf_name: str, track) -> str:
        leaf = h.dir(h.leaf) if h.leaf else os.path.join(h.dir(h.parent), leaf_name)
        # The leaf first when nothing on the way needs writing (no v2 controllers to
        # pass down, no v1 cpuset to fill): its parent almost always exists, and one
        # mkdir replaces one per level of the parent's path (an EEXIST each, on every
        # workload).  ENOENT means a parent is missing: walk them as below.
        direct = not h.enable_in and not h.copy_cpuset
        for attempt in range(5):
            try:
                if not direct:
                    self._parents(h)
                with touching("mkdir", leaf):
                    self.fs.mkdir(leaf)
                break
            except FileExistsError:
                if not h.leaf:
                    raise
                # An explicit leaf (OCI cgroupsPath) that exists: joined when empty, as runc
                # does (and removed at the end, as runc does); refused when it holds
                # processes (runc: "container's cgroup is not empty", factory_linux.go).
                busy = self.fs.procs(leaf)
                if busy:
                    raise touched(errno.EBUSY, f"the cgroup exists and holds {len(busy)} process(es) "
                                  f"(pid {min(busy)}...): not empty", leaf) from None
                break
            except FileNotFoundError:
                if direct:
                    direct = False
                    continue
                # A directory on the way vanished (another workload removed the shared /linx): walk again.
                if attempt == 4:
                    raise
        self.leaves.append((h, leaf))
        # The parent first (the agent undoes in reverse): if the runner dies,
        # the agent kills and removes the leaf, then removes the parent only if
        # no other workload still uses it.
        parent = h.dir(h.parent)
        if h.default_parent or parent in self.created or parent in _MADE_HERE:
            track(parent, remove_only=True)
        track(leaf)
        return leaf

    def configure(self, h: Hierarchy, leaf: str) -> None:
        for name, value in h.writes:
            self._write(leaf, name, value)
        if h.device_allow is not None:
            # Deny everything first, then allow: a new v1 devices cgroup inherits its
            # parent's list, and the kernel takes one rule per write (devices.rst).
            self._write(leaf, "devices.deny", "a")
            for rule in h.device_allow:
                self._write(leaf, "devices.allow", rule)
        if h.copy_cpuset:
            self._copy_cpuset(leaf, h.dir(h.parent), {n for n, _ in h.writes})

    def join(self, leaf: str, pid: int) -> None:
        self._write(leaf, "cgroup.procs", str(pid))

    @classmethod
    def of_dirs(cls, dirs, fs: CgroupFs | None = None) -> "Live":
        """The leaves at these cgroup directories, from what their mounts say (v2, or
        the v1 controllers); for an undo whose plan is gone (linx-oci's holder killed).
        A directory under no cgroup mount is left out: never ours to remove."""
        mounts = sorted(((m, key) for key, m in _cgroup_mounts().items()), key=lambda mk: -len(mk[0]))
        live = cls(CgroupPlan(backend="", hierarchies=(), name=None), fs or CgroupFs())
        for d in dirs:
            for mount, key in mounts:
                if d.startswith(mount.rstrip("/") + "/"):
                    h = Hierarchy(version=2 if key == "0" else 1, mount=mount,
                                  controllers=() if key == "0" else tuple(key.split(",")),
                                  parent="/" + os.path.dirname(d[len(mount):].strip("/")))
                    live.leaves.append((h, d))
                    break
        return live

    # .. undo ..
    def destroy(self) -> None:
        # After a workload's normal end its leaves are empty (the agent, a subreaper,
        # killed and reaped what was left of it before it reported the end), and an
        # rmdir is the whole undo: the kernel refuses it (EBUSY) while any process or
        # child cgroup is inside.  Only those leaves go the long way (kill, then rmdir
        # retried while the dead are reaped), whose reads and writes a normal end no
        # longer pays.
        busy: list[tuple[Hierarchy, str]] = []
        for h, leaf in reversed(self.leaves):
            try:
                self.fs.rmdir(leaf)
            except FileNotFoundError:
                pass
            except OSError:
                busy.append((h, leaf))
        busy.reverse()
        leaves = [(h, leaf) for h, leaf in busy if self.fs.exists(leaf)]
        if leaves:
            self.kill_all(leaves)
        first: OSError | None = None
        for _h, leaf in reversed(leaves):
            try:
                with touching("rmdir", leaf):
                    self._rmdir_retry(leaf)
            except OSError as exc:
                first = first or exc
        # Parents: those this workload created, and linx-spec's default /linx
        # whoever created it (concurrent workloads share it; the last one out
        # removes it).  One still in use refuses with EBUSY: left to its users.
        # And parents another workload of this process made, still in use at its end.
        defaults = [h.dir(h.parent) for h, _leaf in self.leaves if h.default_parent]
        made_here = set(_MADE_HERE)  # usually empty: the parent existed (or is the default /linx)
        shared = sorted((d for d in made_here & {h.dir(p) for h, _ in self.leaves for p in chain(h.parent)
                                                 if p != "/"}), key=len, reverse=True) if made_here else []
        todo = [*reversed(self.created)]
        todo += [d for d in [*shared, *defaults] if d not in todo]
        for d in todo:
            try:
                with touching("rmdir", d):
                    self.fs.rmdir(d)
                _MADE_HERE.discard(d)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    _MADE_HERE.discard(d)
                elif exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    first = first or exc
        self.leaves.clear()
        self.created.clear()
        if first is not None:
            raise first

    def kill_all(self, leaves: list[tuple[Hierarchy, str]]) -> None:
        paths = [leaf for _h, leaf in leaves]
        killed_atomically = False
        for h, leaf in leaves:
            # cgroup.kill (5.14+) kills every process of the cgroup, forks in flight included.
            if h.version == 2 and self._try_write(leaf, "cgroup.kill", "1"):
                killed_atomically = True
        freezer = next((leaf for h, leaf in leaves if h.version == 1 and "freezer" in h.controllers), None)
        v2_freeze = next((leaf for h, leaf in leaves if h.version == 2), None)
        frozen = None
        if not killed_atomically and self._all_procs(paths):
            # Freeze first so that nothing forks between reading the pids and killing them.
            if freezer is not None and self._try_write(freezer, "freezer.state", "FROZEN"):
                frozen = (freezer, "freezer.state", "THAWED")
                self._wait_for(lambda: (self.fs.read(os.path.join(freezer, "freezer.state")) or "").strip()
                               == "FROZEN", 1.0)
            elif v2_freeze is not None and self._try_write(v2_freeze, "cgroup.freeze", "1"):
                frozen = (v2_freeze, "cgroup.freeze", "0")
                self._wait_for(lambda: "frozen 1" in (self.fs.read(os.path.join(v2_freeze, "cgroup.events"))
                                                      or ""), 1.0)
        try:
            pids = self._all_procs(paths)
            if pids:
                self.fs.kill(pids, paths)
        finally:
            if frozen is not None:
                # A frozen task cannot act on its SIGKILL: thaw so that it dies.
                self._try_write(*frozen)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            pids = self._all_procs(paths)
            if not pids:
                return
            self.fs.kill(pids, paths)
            self.fs.sleep(0.01)

    def freeze(self, frozen: bool, timeout: float = 5.0) -> None:
        """Freeze (or thaw) every process of the workload at once through its
        v2 leaf's cgroup.freeze (5.2+), waiting until cgroup.events says so;
        v1's freezer.state where there is no v2 leaf.  The backend of pause/resume."""
        v2 = [leaf for h, leaf in self.leaves if h.version == 2]
        v1 = [leaf for h, leaf in self.leaves if h.version == 1 and "freezer" in h.controllers]
        if v2:
            value = str(int(frozen))
            leaf, name, state, want = v2[0], "cgroup.freeze", "cgroup.events", f"frozen {value}"
        elif v1:
            value = "FROZEN" if frozen else "THAWED"
            leaf, name, state, want = v1[0], "freezer.state", "freezer.state", value
        else:
            raise touched(errno.EOPNOTSUPP, "freeze: no v2 leaf and no v1 freezer", self.plan.name or "")
        self._write(leaf, name, value)
        if not self._wait_for(lambda: want in (self.fs.read(os.path.join(leaf, state)) or "").splitlines(), timeout):
            raise touched(errno.ETIMEDOUT, f"wait for {state} to say {want!r}", leaf)

    def _all_procs(self, paths: list[str]) -> set[int]:
        out: set[int] = set()
        for leaf in paths:
            out |= self.fs.procs(leaf)
        return out

    def _try_write(self, d: str, name: str, value: str) -> bool:
        try:
            self.fs.write(os.path.join(d, name), value)
            return True
        except OSError:
            return False

    def _wait_for(self, cond, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not cond():
            if time.monotonic() >= deadline:
                return False
            self.fs.sleep(0.002)
        return True

    def _rmdir_retry(self, leaf: str) -> None:
        # EBUSY until the killed tasks are reaped: a dead task keeps its cgroup
        # populated until release_task().
        delay, deadline = 0.002, time.monotonic() + 5.0
        while True:
            try:
                self.fs.rmdir(leaf)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
            self.fs.sleep(delay)
            delay = min(delay * 2, 0.05)

    # .. after exit ..
    def usage(self) -> dict[str, int | float]:
        by_controller: dict[str, str] = {}
        for h, leaf in self.leaves:
            if h.version == 1:
                for c in h.controllers:
                    by_controller[c] = leaf
        out = v1_usage(by_controller, self.fs.read) if by_controller else {}
        for h, leaf in self.leaves:
            if h.version == 2:
                for k, v in v2_usage(leaf, self.fs.read, frozenset(by_controller)).items():
                    out.setdefault(k, v)
        return out

    def collect(self, result) -> None:
        figures = self.usage()
        result.usage.update(figures)
        if figures.get("oom_kills", 0) and not result.ok:
            limit = (f"memory.max {human_bytes(self.plan.memory_max)} reached" if self.plan.memory_max
                     else "a memory limit was reached")
            if result.signal == signal.SIGKILL:
                result.reason = f"killed by the kernel OOM killer: {limit}"
            else:
                result.reason = f"a process of the workload was killed by the kernel OOM killer ({limit})"


def early(plan) -> bool:
    """Whether the runner makes the workload's cgroups before the clone, while the
    agent starts (prepare_before_clone): any plan of cgroups of its own (not
    `exec`'s JoinCgroupsPlan), but one that may have to move the runner's own
    processes out of a delegated v2 cgroup (`evacuate`): the child being cloned
    meanwhile would land there behind the move and make the controllers' write fail
    (no internal processes).  LINX_CGROUP_EARLY=0 turns it off (bench/ measures
    both ways): the cgroups are then made by the cgroup step, named after the child.
    Only with a v1 hierarchy in the plan (v1 or hybrid hosts, where it was measured):
    on a pure v2 host the child is cloned straight into its cgroup anyway, and early
    creation there soft-locked the emulated v2 guest's kernel (bare layout, runner and
    agent both stuck in the kernel for 1000+ s; not diagnosed further)."""
    return (isinstance(plan, CgroupPlan) and not any(h.evacuate for h in plan.hierarchies)
            and any(h.version == 1 for h in plan.hierarchies)
            and os.environ.get("LINX_CGROUP_EARLY", "1") != "0")


def clone_into(plan) -> bool:
    """Whether the child is cloned straight into its cgroup (CLONE_INTO_CGROUP,
    clone3, 5.7+): only when its one hierarchy is cgroup v2, so that no other
    hierarchy still needs a cgroup.procs write.  LINX_CLONE_INTO_CGROUP=0 turns
    it off (bench/ measures both ways)."""
    return (isinstance(plan, CgroupPlan) and len(plan.hierarchies) == 1 and plan.hierarchies[0].version == 2
            and os.environ.get("LINX_CLONE_INTO_CGROUP", "1") != "0")


class Prepared:
    """The workload's cgroups, made and configured before the clone; `fd` is the
    directory of its one v2 leaf for the agent's clone3 (CLONE_INTO_CGROUP; closed
    by the runner once spawned), or None when the child is moved in afterwards."""

    def __init__(self, live: Live, leaves: list[tuple[Hierarchy, str]], fd: int | None):
        self.live, self.leaves, self.fd = live, leaves, fd


def prepare_before_clone(plan: CgroupPlan, ctx, owner_pid: int, fs: CgroupFs | None = None,
                         want_fd: bool = True) -> Prepared:
    """The cgroup step's first half, run before the child exists: mkdir (tracked by
    the agent) and limits in every hierarchy; with want_fd (one v2 hierarchy), an
    fd of the leaf for CLONE_INTO_CGROUP.  Without it the runner runs this while
    the agent starts and clones (agent.hello_spawn's `meanwhile`): the mkdirs and
    writes leave the critical path, the move (cgroup.procs) stays in the cgroup step.
    The leaves are named after `owner_pid`, the agent's pid (the child's is not
    known yet; the agent is the workload's parent and lives as long as it does;
    cgroup v2 cannot rename a cgroup, so the name cannot follow the child)."""
    live = Live(plan, fs or CgroupFs())
    ctx.on_undo("cgroup: kill what is left, remove the cgroups", live.destroy)
    name = plan.leaf_name(plan.name or ctx.plan.name, owner_pid)
    leaves = [(h, live.create(h, name, ctx.track_cgroup)) for h in plan.hierarchies]
    for h, leaf in leaves:
        live.configure(h, leaf)
    fd = None
    if want_fd:
        ((_h, leaf),) = leaves
        # O_RDONLY, not O_PATH: clone3 takes the fd with fdget(), which refuses O_PATH files.
        with touching("open", leaf):
            fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return Prepared(live, leaves, fd)


def apply_from_host(plan: CgroupPlan | JoinCgroupsPlan, ctx, fs: CgroupFs | None = None) -> Live | None:
    """Create the workload's cgroups, write every limit, then move the parked child in
    (for `exec`, a JoinCgroupsPlan: join the running workload's cgroups).  When the
    cgroups were prepared before the clone (prepare_before_clone: the runner's
    default), only the move is left, and only if the agent could not clone the
    child into its v2 leaf."""
    if isinstance(plan, JoinCgroupsPlan):
        join_running(plan.target, ctx.pid)
        return None
    prepared: Prepared | None = getattr(ctx, "cgroup_prepared", None)
    if prepared is not None:
        if not getattr(ctx, "spawned_in_cgroup", False):
            for _h, leaf in prepared.leaves:
                prepared.live.join(leaf, ctx.pid)
        ctx.after_exit(prepared.live.collect)
        return prepared.live
    live = Live(plan, fs or CgroupFs())
    # Registered before the first mkdir: undo removes whatever exists by then,
    # so a setup failing halfway leaves nothing behind.
    ctx.on_undo("cgroup: kill what is left, remove the cgroups", live.destroy)
    leaf_name = plan.leaf_name(plan.name or ctx.plan.name, ctx.pid)
    leaves = [(h, live.create(h, leaf_name, ctx.track_cgroup)) for h in plan.hierarchies]
    # Every limit is in place before the child joins: its first page and first
    # fork are already counted against them.
    for h, leaf in leaves:
        live.configure(h, leaf)
    for _h, leaf in leaves:
        live.join(leaf, ctx.pid)
    ctx.after_exit(live.collect)
    return live



# --- exec: join a running workload's cgroups ---------------------------------------

def _cgroup_mounts() -> dict[str, str]:
    """hierarchy key ("0" for cgroup2, else the sorted controller list) -> mount point."""
    from .. import mountinfo

    generic = {"rw", "ro", "relatime", "nosuid", "nodev", "noexec", "clone_children", "xattr"}
    out: dict[str, str] = {}
    for m in mountinfo.cgroup_mounts():
        if m.fstype == "cgroup2":
            out.setdefault("0", m.mount_point)
        else:
            names = sorted(o for o in m.super_options if o not in generic and not o.startswith("release_agent"))
            out.setdefault(",".join(names), m.mount_point)
    return out


def _cgroups_of(pid: int | str) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            key = "0" if hid == "0" else ",".join(sorted(controllers.split(",")))
            out[key] = path
    return out

def join_running(target: int, pid: int) -> None:
    """`exec`: move `pid` into every cgroup of the running workload `target`."""
    mounts = _cgroup_mounts()
    mine = _cgroups_of("self")
    for key, path in _cgroups_of(target).items():
        # Where the target shares our cgroup there is nothing to join (and
        # it is not ours to write to).
        if mine.get(key) == path or key not in mounts:
            continue
        procs = os.path.join(mounts[key], path.lstrip("/"), "cgroup.procs")
        with touching("join the workload's cgroup", procs), open(procs, "w") as f:
            f.write(str(pid))


__all__ = ["CgroupFs", "Live", "Prepared", "apply_from_host", "clone_into", "early", "prepare_before_clone",
           "join_running",
           "human_bytes"]
