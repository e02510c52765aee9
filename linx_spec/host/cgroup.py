"""The cgroup step: the parked child joins its own cgroup(s), every limit already
written, before its first instruction; after it ends, usage and OOM kills are
read, whatever is left inside is killed, and what we created is removed.

    resolve(spec.cgroup, spec) -> CgroupPlan      pure: reads mounts, /proc/self/cgroup,
                                                  controller lists; never writes
    apply_from_host(cgroup_plan, ctx)             mkdir (tracked by the agent), write limits,
                                                  move the child in; undo = kill + rmdir

Where each controller lives is detected, never assumed:
- a controller mounted on a cgroup v1 hierarchy is used there (legacy and
  hybrid hosts); its workload cgroup is `<mount><parent>/linx-<name>-<pid>`;
- otherwise the cgroup2 mount must offer it (pure v2 hosts), enabled in
  cgroup.subtree_control down to the parent (see cgroup_v2.py);
- on a hybrid host the cgroup2 mount (often /sys/fs/cgroup/unified, with no
  controllers) still gets a leaf: it tracks every process of the workload and
  kills them all at once with cgroup.kill (5.14+).

Default parent: /linx under each hierarchy's root when root (never the runner's
own cgroup: on this kind of host that belongs to someone else); when not root,
the runner's own cgroup if it is delegated (writable), per systemd's
Delegate=yes.  Only directories this workload created are ever removed.

Undo, after exit or on a failed setup: kill what is left (v2 cgroup.kill; v1
freeze, SIGKILL, thaw; else a kill loop), then rmdir, retrying EBUSY while the
killed tasks are reaped (a cgroup stays populated until its dead are reaped).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, StepError, step_error
from . import cgroup_v1, cgroup_v2

if TYPE_CHECKING:
    from ..spec import Spec
    from ..spec.cgroup import Cgroup

STEP = "cgroup"
DEFAULT_PARENT = "/linx"
RUNNER_LEAF = "linx-runner"  # where a delegated cgroup's own processes move (no internal processes)
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio",
                  "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc")


# --- what the host has ----------------------------------------------------------

def _unescape(field_text: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and i + 3 < len(field_text) and field_text[i + 1:i + 4].isdigit():
            out.append(chr(int(field_text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class HostView:
    """What planning reads of the host; tests build one by hand for a fake tree."""

    mounts: tuple[tuple[str, str, tuple[str, ...]], ...]  # (fstype, mount point, options)
    self_cgroup: tuple[tuple[str, str], ...]  # (controllers field, path) of /proc/self/cgroup
    euid: int

    @classmethod
    def read(cls) -> "HostView":
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                    mounts.append((parts[2], _unescape(parts[1]), tuple(parts[3].split(","))))
        own = []
        try:
            with open("/proc/self/cgroup") as f:
                for line in f:
                    _id, ctrls, path = line.rstrip("\n").split(":", 2)
                    own.append((ctrls, path))
        except OSError:
            pass
        return cls(tuple(mounts), tuple(own), os.geteuid())


@dataclass(frozen=True)
class Layout:
    v1: dict[str, tuple[str, tuple[str, ...]]]  # controller -> (mount, controllers co-mounted there)
    v2: str | None  # the cgroup2 mount point
    v2_controllers: frozenset[str]  # its root's cgroup.controllers
    own_v1: dict[str, str]  # controller -> the runner's cgroup path in that hierarchy
    own_v2: str | None


def detect(host: HostView) -> Layout:
    v1: dict[str, tuple[str, tuple[str, ...]]] = {}
    v2 = None
    for fstype, mnt, opts in host.mounts:
        if fstype == "cgroup2":
            # Prefer the conventional place when the hierarchy is mounted twice.
            if v2 is None or mnt.startswith("/sys/fs/cgroup") and not v2.startswith("/sys/fs/cgroup"):
                v2 = mnt
            continue
        ctrls = tuple(o for o in opts if o in V1_CONTROLLERS)  # name=systemd has none: never ours to use
        for c in ctrls:
            if c not in v1 or (mnt.startswith("/sys/fs/cgroup") and not v1[c][0].startswith("/sys/fs/cgroup")):
                v1[c] = (mnt, ctrls)
    own_v1: dict[str, str] = {}
    own_v2 = None
    for ctrls, path in host.self_cgroup:
        if ctrls == "":
            own_v2 = path
        for c in ctrls.split(","):
            if c in V1_CONTROLLERS:
                own_v1[c] = path
    v2_ctrls = cgroup_v2.read_set(os.path.join(v2, "cgroup.controllers")) if v2 else frozenset()
    return Layout(v1, v2, v2_ctrls, own_v1, own_v2)


def _writable(mount: str, parent: str) -> bool:
    """May we create below `parent`: the deepest existing directory on the way is writable."""
    path = mount + parent
    while len(path) > len(mount) and not os.path.isdir(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK | os.X_OK)


def _delegated(mount: str, own: str | None) -> bool:
    if own is None:
        return False
    d = mount + own if own != "/" else mount
    return all(os.access(p, os.W_OK) for p in (d, os.path.join(d, "cgroup.procs"),
                                               os.path.join(d, "cgroup.subtree_control")))


# --- the plan ------------------------------------------------------------------

@dataclass(frozen=True)
class Hierarchy:
    """One hierarchy the workload joins, and what is written into its cgroup there."""

    version: int  # 1 or 2
    mount: str
    controllers: tuple[str, ...]  # v1: ours on this hierarchy; v2: enabled for the leaf
    parent: str  # cgroup path, e.g. /linx
    writes: tuple[tuple[str, str], ...] = ()  # (file, value) in order, before the child joins
    enable_in: tuple[str, ...] = ()  # v2: cgroup paths, top-down, whose subtree_control passes controllers down
    copy_cpuset: bool = False  # v1: cpuset co-mounted here; copy unset cpus/mems from the parent
    evacuate: str | None = None  # v2: delegated cgroup whose processes move to RUNNER_LEAF first
    enable_root: tuple[str, ...] = ()  # v2, host without systemd: what we enable in the root (only these)
    default_parent: bool = False  # parent is linx-spec's own /linx: removed when its last workload ends

    @property
    def label(self) -> str:
        return ",".join(self.controllers) if self.version == 1 else f"cgroup2:{','.join(self.controllers) or '-'}"

    def dir(self, cgroup_path: str) -> str:
        return self.mount if cgroup_path == "/" else self.mount + cgroup_path


@dataclass(frozen=True)
class CgroupPlan:
    backend: str  # "v2", "v1", or "v1+v2" when controllers are split between both
    hierarchies: tuple[Hierarchy, ...]
    name: str | None  # spec.name; the plan's name at apply time when None
    memory_max: int | None = None  # for the OOM reason
    notes: tuple[str, ...] = field(default=())

    def leaf_name(self, name: str, pid: int | str) -> str:
        return f"linx-{name}-{pid}"

    def describe(self) -> dict[str, Any]:
        leaf = self.leaf_name(self.name or "<name>", "<pid>")
        parents = sorted({h.parent for h in self.hierarchies})
        return {
            "backend": self.backend,
            "cgroup": " ".join(f"{p}/{leaf}" for p in parents),
            "join": [f"{h.label} at {h.mount}" for h in self.hierarchies],
            "writes": [f"{f}={v}" for h in self.hierarchies for f, v in h.writes],
        }


def _device(text: str, field_name: str) -> str:
    """`/dev/vda` or `254:0` -> `254:0`, checked to be a whole disk."""
    if text.startswith("/"):
        try:
            st = os.stat(text)
        except OSError as exc:
            raise PlanError(f"io device {text}: {os.strerror(exc.errno or 0)}", "name an existing block device",
                            field_name) from None
        if not stat.S_ISBLK(st.st_mode):
            raise PlanError(f"io device {text} is not a block device", "name a disk such as /dev/sda", field_name)
        majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    else:
        majmin = text
    sysdir = f"/sys/dev/block/{majmin}"
    if not os.path.exists(sysdir):
        raise PlanError(f"io device {text}: no block device {majmin} on this host", "see lsblk for the disks",
                        field_name)
    if os.path.exists(os.path.join(sysdir, "partition")):
        # blkcg_conf_open_bdev() refuses partitions: limits apply to whole disks.
        raise PlanError(f"io device {text} ({majmin}) is a partition; the kernel limits whole disks only",
                        "give the disk the partition is on", field_name)
    return majmin


def _online(path: str) -> frozenset[int] | None:
    from ..spec.cgroup import parse_list

    try:
        with open(path) as f:
            return parse_list(f.read().strip())
    except (OSError, ValueError):
        return None


def _check_cpuset(cg: "Cgroup") -> None:
    from ..spec.cgroup import parse_list

    if cg.cpuset is None:
        return
    for key, online_file, what in (("cpus", "/sys/devices/system/cpu/online", "CPUs"),
                                   ("mems", "/sys/devices/system/node/online", "memory nodes")):
        value = getattr(cg.cpuset, key)
        online = _online(online_file)
        if value is None or online is None:
            continue
        missing = sorted(parse_list(value) - online)
        if missing:
            have = ",".join(map(str, sorted(online)))
            raise PlanError(f"cpuset {key} {value} names {what} this host does not have online: "
                            f"{','.join(map(str, missing))} (online: {have})",
                            f"choose among {have}", f"cgroup.cpuset.{key}")


def _missing(controller: str, lay: Layout) -> PlanError:
    v1 = ", ".join(sorted(lay.v1)) or "none"
    v2 = f"cgroup2 at {lay.v2} offers {' '.join(sorted(lay.v2_controllers)) or 'none'}" if lay.v2 else "no cgroup2 mount"
    knob = "io" if controller in ("io", "blkio") else controller
    return PlanError(f"the {controller} controller is not available on this host (v1 hierarchies: {v1}; {v2})",
                     f"enable the controller (kernel config or cgroup_enable={controller} boot option), or drop "
                     f"`cgroup.{knob}`", f"cgroup.{knob}")


_NOT_ROOT_REMEDY = ("run as root, or under a cgroup delegated to you: systemd-run --user --scope -p Delegate=yes "
                    "linx-spec apply SPEC.yaml (or set cgroup.parent to a cgroup you own)")


def resolve(cg: "Cgroup", spec: "Spec", host: HostView | None = None) -> CgroupPlan:
    """Decide the hierarchies, the parent and every file written.  Pure: reads only."""
    host = host or HostView.read()
    lay = detect(host)
    if not lay.v1 and lay.v2 is None:
        raise PlanError("no cgroup filesystem is mounted", "mount one: mount -t cgroup2 none /sys/fs/cgroup",
                        "cgroup")
    root = host.euid == 0
    _check_cpuset(cg)
    devices = {lim.device: _device(lim.device, f"cgroup.io.limits[{i}].device")
               for i, lim in enumerate(cg.io.limits if cg.io else ())}

    knobs = cgroup_v2.controllers_of(cg)
    v1_need: list[str] = []
    v2_need: list[str] = []
    for c in knobs:
        v1name = cgroup_v1.KNOB_CONTROLLER[c]
        if v1name in lay.v1:
            v1_need.append(v1name)
        elif lay.v2 is not None and c in lay.v2_controllers:
            v2_need.append(c)
        else:
            raise _missing(v1name if lay.v1 else c, lay)

    notes: list[str] = []
    hierarchies: list[Hierarchy] = []

    # v1: one entry per mounted hierarchy holding a controller we use.
    v1_use = v1_need + [c for c in cgroup_v1.ACCOUNTING if c in lay.v1 and c not in v1_need]
    v1_writes = cgroup_v1.writes(cg, {c: m for c, (m, _) in lay.v1.items()}, devices, set(v1_need))
    by_mount: dict[str, list[str]] = {}
    for c in v1_use:
        by_mount.setdefault(lay.v1[c][0], []).append(c)
    for mount, ctrls in by_mount.items():
        if cg.parent is not None:
            parent = cg.parent
        elif root:
            parent = DEFAULT_PARENT
        else:
            parent = lay.own_v1.get(ctrls[0], "/")
        required = any(c in v1_need for c in ctrls)
        if not root and not _writable(mount, parent):
            if required:
                raise PlanError(f"not root and no writable delegated cgroup for {','.join(ctrls)} "
                                f"(cgroup v1 at {mount}, parent {parent})", _NOT_ROOT_REMEDY, "cgroup")
            continue
        comounted = lay.v1[ctrls[0]][1]
        hierarchies.append(Hierarchy(
            version=1, mount=mount, controllers=tuple(ctrls), parent=parent,
            writes=tuple(w for c in ctrls for w in v1_writes.get(c, ())),
            copy_cpuset="cpuset" in comounted, default_parent=cg.parent is None and parent == DEFAULT_PARENT))

    # v2: limits when controllers live there; otherwise process tracking only.
    if lay.v2 is not None:
        mount = lay.v2
        delegated = None
        v2_why = "cgroup.parent" if cg.parent is not None else "root: the default parent"
        if cg.parent is not None:
            parent = cg.parent
            if not root and _delegated(mount, parent):
                delegated = parent  # a cgroup delegated to the user, named explicitly
        elif root and not (lay.own_v2 == "/" and not cgroup_v2.is_real_root(mount)):
            parent = DEFAULT_PARENT
        else:
            # Not root (or root inside a cgroup namespace): the runner's own cgroup, if delegated.
            parent = lay.own_v2 or "/"
            if _delegated(mount, parent):
                delegated = parent
                v2_why = f"delegated: the runner's own cgroup {parent}"
                if parent == "/":
                    parent = DEFAULT_PARENT
        usable = root or delegated is not None or (cg.parent is not None and _writable(mount, parent))
        if not usable and v2_need:
            raise PlanError(f"not root and no writable delegated cgroup (cgroup2 at {mount}, "
                            f"your cgroup {lay.own_v2 or '?'})", _NOT_ROOT_REMEDY, "cgroup")
        if usable:
            acct = [c for c in cgroup_v2.ACCOUNTING if c in lay.v2_controllers and c not in v1_use]
            # A host without systemd: root enables what the knobs need in the real root, as runc does.
            bare = root and delegated is None and cgroup_v2.is_real_root(mount)
            ctrls, enable_in = cgroup_v2.enable_path(mount, parent, v2_need, acct, delegated, enable_root=bare)
            evacuate = delegated if delegated is not None and delegated in enable_in and ctrls else None
            enable_root = cgroup_v2.root_additions(mount, v2_need) if bare and "/" in enable_in else ()
            hierarchies.append(Hierarchy(
                version=2, mount=mount, controllers=tuple(ctrls), parent=parent,
                writes=tuple(cgroup_v2.writes(cg, devices, set(v2_need))),
                enable_in=enable_in if ctrls else (), evacuate=evacuate, enable_root=enable_root,
                default_parent=cg.parent is None and parent == DEFAULT_PARENT))
            if enable_root:
                notes.append(f"cgroup v2: enables {' '.join(enable_root)} in "
                             f"{os.path.join(mount, 'cgroup.subtree_control')} (the root passes no such "
                             "controller down: a host without systemd); only what the spec needs, left enabled "
                             "afterwards as runc does (others' cgroups may rely on it)")
            if evacuate:
                notes.append(f"cgroup v2: delegated cgroup {evacuate}: its processes (the runner's) move to "
                             f"{evacuate.rstrip('/')}/{RUNNER_LEAF} so that controllers can be enabled for "
                             "its children (no internal processes)")
        else:
            notes.append(f"cgroup2 at {mount} is not writable: processes are tracked by the v1 hierarchies only")
    if not hierarchies:
        raise PlanError("not root and no writable delegated cgroup", _NOT_ROOT_REMEDY, "cgroup")

    # The note `linx-spec plan` prints: which backend, and why.
    v1_used = [h for h in hierarchies if h.version == 1]
    v2_used = [h for h in hierarchies if h.version == 2]
    if lay.v1:
        kind = "hybrid host" if lay.v2 else "legacy host"
        mounted = ", ".join(sorted(lay.v1))
        if lay.v2:
            offers = " ".join(sorted(lay.v2_controllers)) or "no controllers"
            v2_use = ("" if not v2_used else
                      ": it tracks the workload's processes and kills them all at once" if not v2_used[0].controllers
                      else f": used for {', '.join(v2_used[0].controllers)}")
            tail = f"; cgroup2 at {lay.v2} has {offers}{v2_use}"
        else:
            tail = ""
        backend = "v1+v2" if v2_need else "v1"
        notes.insert(0, f"cgroup {'v1' if not v2_need else 'v1 and v2'} ({kind}: {mounted} on v1{tail})")
    else:
        backend = "v2"
        h = v2_used[0]
        notes.insert(0, f"cgroup v2 at {h.mount} (controllers {' '.join(sorted(lay.v2_controllers)) or 'none'}): "
                        f"parent {h.parent} ({v2_why})")
    if cg.memory is not None and cg.memory.high is not None and any("memory" in h.controllers for h in v1_used):
        notes.append("cgroup v1 has no memory.high: it becomes memory.soft_limit_in_bytes (reclaimed first "
                     "under host memory pressure; never throttled)")
    return CgroupPlan(backend=backend, hierarchies=tuple(hierarchies), name=spec.name,
                      memory_max=cg.memory.max if cg.memory else None, notes=tuple(notes))


# --- the filesystem the step touches --------------------------------------------

class CgroupFs:
    """The few operations the step makes on cgroupfs; tests substitute a fake tree."""

    def read(self, path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None

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


class Live:
    """The cgroups one workload created: undone by `destroy`, read by `collect`."""

    def __init__(self, plan: CgroupPlan, fs: CgroupFs):
        self.plan = plan
        self.fs = fs
        self.leaves: list[tuple[Hierarchy, str]] = []
        self.created: list[str] = []  # parent directories this workload created, in creation order

    # .. setup ..
    def _write(self, directory: str, name: str, value: str) -> None:
        try:
            self.fs.write(os.path.join(directory, name), value)
        except OSError as exc:
            raise step_error(STEP, "host", exc, f"write {name} {value!r}", directory) from None

    def _evacuate(self, h: Hierarchy, d: str) -> None:
        # No internal processes: before a delegated cgroup may pass controllers
        # down, its own processes (the runner, the agent) move into a leaf.
        if not self.fs.procs(d):
            return
        runner = os.path.join(d, RUNNER_LEAF)
        try:
            self.fs.mkdir(runner)
        except FileExistsError:
            pass
        except OSError as exc:
            raise step_error(STEP, "host", exc, "mkdir (leaf for the delegated cgroup's processes)", runner) from None
        for pid in sorted(self.fs.procs(d)):
            try:
                self.fs.write(os.path.join(runner, "cgroup.procs"), str(pid))
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise step_error(STEP, "host", exc, f"move pid {pid} out of the delegated cgroup",
                                     runner) from None

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
        paths = cgroup_v2.chain(h.parent)
        for i, path in enumerate(paths):
            d = h.dir(path)
            if path != "/":
                try:
                    self.fs.mkdir(d)
                    if d not in self.created:
                        self.created.append(d)
                    made = True
                except FileExistsError:
                    made = False
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    raise step_error(STEP, "host", exc, "mkdir", d) from None
                if h.copy_cpuset and (made or path.rsplit("/", 1)[-1].startswith("linx")):
                    self._copy_cpuset(d, h.dir(paths[i - 1]))
            if h.version == 2 and path in h.enable_in:
                self._enable(h, d, path)

    def create(self, h: Hierarchy, leaf_name: str, track) -> str:
        leaf = os.path.join(h.dir(h.parent), leaf_name)
        for attempt in range(5):
            try:
                self._parents(h)
                self.fs.mkdir(leaf)
                break
            except (FileNotFoundError, StepError) as exc:
                vanished = isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT
                if not vanished:
                    raise
                if attempt == 4:
                    if isinstance(exc, StepError):
                        raise
                    raise step_error(STEP, "host", exc, "mkdir", exc.filename or leaf) from None
            except OSError as exc:
                raise step_error(STEP, "host", exc, "mkdir", leaf) from None
        self.leaves.append((h, leaf))
        # The parent first (the agent undoes in reverse): if the runner dies,
        # the agent kills and removes the leaf, then removes the parent only if
        # no other workload still uses it.
        parent = h.dir(h.parent)
        if h.default_parent or parent in self.created:
            track(parent, remove_only=True)
        track(leaf)
        return leaf

    def configure(self, h: Hierarchy, leaf: str) -> None:
        for name, value in h.writes:
            self._write(leaf, name, value)
        if h.copy_cpuset:
            self._copy_cpuset(leaf, h.dir(h.parent), {n for n, _ in h.writes})

    def join(self, leaf: str, pid: int) -> None:
        self._write(leaf, "cgroup.procs", str(pid))

    # .. undo ..
    def destroy(self) -> None:
        leaves = [(h, leaf) for h, leaf in self.leaves if self.fs.exists(leaf)]
        if leaves:
            self.kill_all(leaves)
        first: StepError | None = None
        for _h, leaf in reversed(leaves):
            try:
                self._rmdir_retry(leaf)
            except OSError as exc:
                first = first or step_error(STEP, "host", exc, "rmdir", leaf)
        # Parents: those this workload created, and linx-spec's default /linx
        # whoever created it (concurrent workloads share it; the last one out
        # removes it).  One still in use refuses with EBUSY: left to its users.
        defaults = [h.dir(h.parent) for h, _leaf in self.leaves if h.default_parent]
        for d in [*reversed(self.created), *[d for d in defaults if d not in self.created]]:
            try:
                self.fs.rmdir(d)
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                    first = first or step_error(STEP, "host", exc, "rmdir", d)
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
            raise StepError(STEP, "host", errno.EOPNOTSUPP, "freeze: no v2 leaf and no v1 freezer",
                            self.plan.name or "")
        self._write(leaf, name, value)
        if not self._wait_for(lambda: want in (self.fs.read(os.path.join(leaf, state)) or "").splitlines(), timeout):
            raise StepError(STEP, "host", errno.ETIMEDOUT, f"wait for {state} to say {want!r}", leaf)

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
        out = cgroup_v1.usage(by_controller, self.fs.read) if by_controller else {}
        for h, leaf in self.leaves:
            if h.version == 2:
                for k, v in cgroup_v2.usage(leaf, self.fs.read).items():
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


def apply_from_host(plan: CgroupPlan, ctx, fs: CgroupFs | None = None) -> Live:
    """Create the workload's cgroups, write every limit, then move the parked child in."""
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


__all__ = ["CgroupPlan", "Hierarchy", "HostView", "Layout", "CgroupFs", "Live", "detect", "resolve",
           "apply_from_host", "human_bytes"]
