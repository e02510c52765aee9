"""The cgroup plan: which hierarchies the workload joins, under which parent, and
every file written into its cgroups, decided before anything is created.

    resolve(spec.cgroup, spec) -> CgroupPlan      pure: reads mounts, /proc/self/cgroup,
                                                  controller lists; never writes

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
Delegate=yes.  The step itself (mkdir, write, join, undo) is host/cgroup.py.
"""

from __future__ import annotations

import os
import stat

from ..errors import PlanError
from ..record import Record
from . import cgroup_v1, cgroup_v2

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any
    from ..spec import Spec
    from ..spec.cgroup import Cgroup

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


class HostView(Record):
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


class Layout(Record):
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

class Hierarchy(Record):
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
    # v1 devices controller here: `devices.deny a`, then one `devices.allow` line each (cgroup.devices).
    # Kept out of `writes`: those files are write-only, and live.py reads back what `writes` holds.
    device_allow: tuple[str, ...] | None = None
    # The workload's cgroup path itself, used as is (linx-oci's cgroupsPath); None: the
    # generated PARENT/linx-NAME-PID.  Its parent is then `parent`, dirname(leaf).
    leaf: str | None = None

    @property
    def label(self) -> str:
        return ",".join(self.controllers) if self.version == 1 else f"cgroup2:{','.join(self.controllers) or '-'}"

    def dir(self, cgroup_path: str) -> str:
        return self.mount if cgroup_path == "/" else self.mount + cgroup_path


class CgroupPlan(Record):
    backend: str  # "v2", "v1", or "v1+v2" when controllers are split between both
    hierarchies: tuple[Hierarchy, ...]
    name: str | None  # spec.name; the plan's name at apply time when None
    memory_max: int | None = None  # for the OOM reason
    notes: tuple[str, ...] = ()

    def leaf_name(self, name: str, pid: int | str) -> str:
        return f"linx-{name}-{pid}"

    def describe(self) -> dict[str, Any]:
        leaf = self.leaf_name(self.name or "<name>", "<pid>")
        paths = sorted({h.leaf or f"{h.parent.rstrip('/')}/{leaf}" for h in self.hierarchies})
        return {
            "backend": self.backend,
            "cgroup": " ".join(paths),
            "join": [f"{h.label} at {h.mount}" for h in self.hierarchies],
            "writes": [f"{f}={v}" for h in self.hierarchies for f, v in h.writes]
            + [f"devices.{'allow' if i else 'deny'}={r}" for h in self.hierarchies if h.device_allow is not None
               for i, r in enumerate(("a",) + h.device_allow)],
            # host/cgroup.py clone_into(): one v2 hierarchy -> made before the clone, the child cloned into it.
            "placement": ("clone3 CLONE_INTO_CGROUP (else cgroup.procs)"
                          if len(self.hierarchies) == 1 and self.hierarchies[0].version == 2 else "cgroup.procs"),
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


def device_rules(rules) -> tuple[str, ...]:
    """cgroup.devices -> `devices.allow` lines (`c 1:3 rw`); a path is stat'ed
    here: its type and numbers (devices(7) v1 syntax: type major:minor access)."""
    out = []
    for i, r in enumerate(rules):
        if r.path is not None:
            try:
                st = os.stat(r.path)
            except OSError as exc:
                raise PlanError(f"device `{r.path}`: {os.strerror(exc.errno or 0)}", "fix the path, or give "
                                "type, major and minor", f"cgroup.devices.{i}.path") from None
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                raise PlanError(f"`{r.path}` is not a device node", "give a character or block device",
                                f"cgroup.devices.{i}.path")
            out.append(f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} {r.access}")
        elif r.type == "a":
            out.append(f"a *:* {r.access}")
        else:
            major = "*" if r.major in (None, "*") else r.major
            minor = "*" if r.minor in (None, "*") else r.minor
            out.append(f"{r.type} {major}:{minor} {r.access}")
    return tuple(out)


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


# cgroup.kill is 5.14 (cgroup.freeze 5.2; cpu.stat's usage_* in every v2 cgroup since 4.15).
_V2_KILL = (5, 14)


def _kernel_at_least(version: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= version


def _without_redundant_accounting(hierarchies: list[Hierarchy], v1_need: list[str]) -> list[Hierarchy]:
    """On a hybrid host the v2 leaf already kills (cgroup.kill), freezes
    (cgroup.freeze) and counts CPU time (cpu.stat): v1 hierarchies joined only
    for those (cpuacct, freezer, no knob of the spec) are left out.  Each join is
    one more cgroup.procs write under the host-wide cgroup_threadgroup_rwsem, the
    step concurrent workloads queue on (bench/README.md)."""
    if not any(h.version == 2 for h in hierarchies) or not _kernel_at_least(_V2_KILL):
        return hierarchies
    return [h for h in hierarchies if h.version == 2 or any(c in v1_need for c in h.controllers)
            or not set(h.controllers) <= {"cpuacct", "freezer"}]


def _missing(controller: str, lay: Layout) -> PlanError:
    v1 = ", ".join(sorted(lay.v1)) or "none"
    v2 = f"cgroup2 at {lay.v2} offers {' '.join(sorted(lay.v2_controllers)) or 'none'}" if lay.v2 else "no cgroup2 mount"
    knob = "io" if controller in ("io", "blkio") else controller
    return PlanError(f"the {controller} controller is not available on this host (v1 hierarchies: {v1}; {v2})",
                     f"enable the controller (kernel config or cgroup_enable={controller} boot option), or drop "
                     f"`cgroup.{knob}`", f"cgroup.{knob}")


_NOT_ROOT_REMEDY = ("run as root, or under a cgroup delegated to you: systemd-run --user --scope -p Delegate=yes "
                    "linx-spec apply SPEC.yaml (or set cgroup.parent to a cgroup you own)")


def _leaf_in(leaf: str, base: str) -> str:
    """The cgroup path of an explicit leaf in one hierarchy: absolute as given
    (below the mount), relative below `base` (runc: libcontainer/cgroups/fs
    subsysPath and fs2 defaultDirPath)."""
    from ..spec.cgroup import cgroup_path

    try:
        inner = cgroup_path(leaf, "the cgroup path")
    except ValueError as exc:
        raise PlanError(f"cgroup path `{leaf[:200]}`: {exc}", "give a path of cgroup names, absolute (below each "
                        "hierarchy's mount) or relative (below the runtime's own cgroup)", "cgroup") from None
    return "/" + inner if leaf.startswith("/") else base.rstrip("/") + "/" + inner


def resolve(cg: "Cgroup", spec: "Spec", host: HostView | None = None, leaf: str | None = None) -> CgroupPlan:
    """Decide the hierarchies, the parent and every file written.  Pure: reads only.

    `leaf` (linx-oci's cgroupsPath) is the workload's cgroup itself, no generated
    child: absolute, the same path below every hierarchy's mount; relative, below
    the runner's own cgroup in each v1 hierarchy and below its parent on cgroup2
    (the own cgroup has processes, and v2 allows no controllers below those), as
    runc places it.  A v1 hierarchy joined only for accounting is then left out
    where the runner's own cgroup is not the root: that cgroup belongs to whoever
    started the runner (a relative path is for engines that give the runtime a
    cgroup of its own)."""
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
    allow = None
    if cg.devices is not None:
        allow = device_rules(cg.devices)
        if "devices" not in lay.v1:
            raise PlanError("cgroup.devices needs the cgroup v1 devices controller; on cgroup v2 the kernel "
                            "takes a BPF_PROG_TYPE_CGROUP_DEVICE program instead, which linx-spec does not load "
                            "yet" + ("" if lay.v1 else " (this host is pure cgroup v2)"),
                            "drop cgroup.devices (and keep /dev minimal with mounts), or run on a host with the "
                            "v1 devices hierarchy", "cgroup.devices")
        v1_need.append("devices")
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
        required = any(c in v1_need for c in ctrls)
        v1_leaf = None
        if leaf is not None:
            own = lay.own_v1.get(ctrls[0], "/")
            if not leaf.startswith("/") and own != "/" and not required:
                continue
            v1_leaf = _leaf_in(leaf, own)
            parent = os.path.dirname(v1_leaf)
        elif cg.parent is not None:
            parent = cg.parent
        elif root:
            parent = DEFAULT_PARENT
        else:
            parent = lay.own_v1.get(ctrls[0], "/")
        if not root and not _writable(mount, parent):
            if required:
                raise PlanError(f"not root and no writable delegated cgroup for {','.join(ctrls)} "
                                f"(cgroup v1 at {mount}, parent {parent})", _NOT_ROOT_REMEDY, "cgroup")
            continue
        comounted = lay.v1[ctrls[0]][1]
        hierarchies.append(Hierarchy(
            version=1, mount=mount, controllers=tuple(ctrls), parent=parent,
            writes=tuple(w for c in ctrls for w in v1_writes.get(c, ())),
            device_allow=allow if "devices" in ctrls else None,
            copy_cpuset="cpuset" in comounted, leaf=v1_leaf,
            default_parent=v1_leaf is None and cg.parent is None and parent == DEFAULT_PARENT))

    # v2: limits when controllers live there; otherwise process tracking only.
    if lay.v2 is not None:
        mount = lay.v2
        delegated = None
        v2_why = "cgroup.parent" if cg.parent is not None else "root: the default parent"
        v2_leaf = None
        if leaf is not None:
            v2_why = "the cgroup path given"
            v2_leaf = _leaf_in(leaf, os.path.dirname(lay.own_v2 or "/"))
            parent = os.path.dirname(v2_leaf)
            if not root and _delegated(mount, parent):
                delegated = parent
        elif cg.parent is not None:
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
        usable = root or delegated is not None or ((cg.parent or leaf) is not None and _writable(mount, parent))
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
                enable_in=enable_in if ctrls else (), evacuate=evacuate, enable_root=enable_root, leaf=v2_leaf,
                default_parent=v2_leaf is None and cg.parent is None and parent == DEFAULT_PARENT))
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
    hierarchies = _without_redundant_accounting(hierarchies, v1_need)

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


class JoinCgroupsPlan(Record):
    """`linx-spec exec`: the new process joins the cgroups of the running workload
    `target` (host pid) instead of getting its own."""

    target: int

    def describe(self) -> dict[str, Any]:
        return {"join_cgroups_of": self.target}
