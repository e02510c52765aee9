"""cgroup v2 (unified hierarchy): which files a knob becomes, where controllers
may be enabled (usage: host/cgroup_usage.py; killing: host/cgroup.py).

File names and semantics: Documentation/admin-guide/cgroup-v2.rst.  Rules that
shape this module:
- a controller is usable in a cgroup only when its parent lists it in
  cgroup.subtree_control, so every directory from the topmost one we may
  change down to the workload's parent enables what the workload needs
  (one controller per write: a failed `+a +b` write tells nothing about which);
- "no internal processes": a non-root cgroup with processes cannot enable
  domain controllers for its children, hence the evacuation of a delegated
  cgroup into a leaf before anything is enabled there;
- directories we did not create (and that are not named `linx*`) are never
  written: a controller missing there is a plan error;
- the hierarchy's real root is written only on a host without systemd (root
  cgroup.subtree_control empty), only by root, and only with the controllers
  the spec's knobs need, as runc and crun do (libcontainer/cgroups/fs2
  `enableControllers`).  They stay enabled afterwards, as with runc: a cgroup
  created by someone else since may rely on them, and disabling a controller
  in a parent silently removes it (and its limits) from every child;
- the root of a cgroup namespace is not the real root: the no-internal-process
  rule applies to it, so a controller can be enabled there only while it has
  no processes (else a plan error with the remedy).
"""

from __future__ import annotations

import os

from ..errors import PlanError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec.cgroup import Cgroup

# The controllers the spec's knobs use, in the order their files are written.
KNOB_CONTROLLERS = ("memory", "cpu", "cpuset", "pids", "io")
# Joined when available even without a knob: they report usage after exit.
ACCOUNTING = ("memory", "pids")


def read_set(path: str) -> frozenset[str]:
    try:
        with open(path) as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def is_real_root(mount: str) -> bool:
    # cgroup.type is not on the root cgroup (CFTYPE_NOT_ON_ROOT): a mount
    # without it shows the host's root, with it a cgroup namespace's root.
    return not os.path.exists(os.path.join(mount, "cgroup.type"))


def chain(parent: str) -> list[str]:
    """`/a/b` -> [`/`, `/a`, `/a/b`]."""
    parts = [p for p in parent.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def procs_of(d: str) -> list[int]:
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split() if x.isdigit()]
    except OSError:
        return []


def root_additions(mount: str, wanted: list[str]) -> tuple[str, ...]:
    """The wanted controllers the hierarchy root does not pass down yet: what
    linx-spec enables there on a host without systemd."""
    stc = read_set(os.path.join(mount, "cgroup.subtree_control"))
    return tuple(c for c in wanted if c not in stc)


def _internal_processes(d: str, c: str, pids: list[int]) -> PlanError:
    shown = " ".join(map(str, pids[:5])) + (" ..." if len(pids) > 5 else "")
    leaf = os.path.join(d, "init")
    return PlanError(
        f"the {c} controller is not enabled for the children of {d}, the root of this cgroup namespace, and "
        f"cannot be: it has processes ({shown}) and cgroup v2 forbids controllers for the children of a "
        "non-root cgroup with processes (no internal processes)",
        f"move its processes into a leaf first, as container entrypoints do: mkdir {leaf}; for p in $(cat "
        f"{d}/cgroup.procs); do echo $p > {leaf}/cgroup.procs; done; then echo +{c} > "
        f"{os.path.join(d, 'cgroup.subtree_control')}",
        f"cgroup.{c}")


def enable_path(mount: str, parent: str, wanted: list[str], accounting: list[str],
                delegated: str | None, enable_root: bool = False) -> tuple[list[str], tuple[str, ...]]:
    """Walk from the hierarchy root to `parent`: every directory must pass the
    wanted controllers down.  Returns (controllers for the leaf, the cgroup paths
    whose subtree_control we enable them in).  Raises PlanError naming the
    controller and the directory that withholds it.  `enable_root`: root on a
    host without systemd may enable the wanted controllers (never the
    accounting ones) in the real root, see root_additions()."""
    acct = [c for c in accounting if c not in wanted]
    enable_in: list[str] = []
    passed: frozenset[str] | None = None  # what a directory we create would get
    real_root = is_real_root(mount)
    for path in chain(parent):
        if path == "/" and enable_root and real_root:
            ctrl = read_set(os.path.join(mount, "cgroup.controllers"))
            stc = read_set(os.path.join(mount, "cgroup.subtree_control"))
            for c in wanted:
                if c not in ctrl:
                    raise PlanError(
                        f"the {c} controller is not available in {mount} (its cgroup.controllers: "
                        f"{' '.join(sorted(ctrl)) or 'none'})",
                        f"enable {c} in the kernel (cgroup_enable={c}), or drop `cgroup.{c}`", f"cgroup.{c}")
            if any(c not in stc for c in wanted):
                enable_in.append(path)
            acct = [c for c in acct if c in stc]  # accounting alone never changes the host's root
            passed = frozenset(wanted) | frozenset(acct)
            continue
        d = mount if path == "/" else mount + path
        exists = os.path.isdir(d)
        if exists:
            ctrl = read_set(os.path.join(d, "cgroup.controllers"))
            stc = read_set(os.path.join(d, "cgroup.subtree_control"))
        else:
            ctrl, stc = passed or frozenset(), frozenset()
        name = path.rsplit("/", 1)[-1]
        ours = (not exists or (path != "/" and name.startswith("linx"))
                or (path == delegated and (path != "/" or not real_root)))
        # A cgroup namespace's root with processes cannot pass controllers down.
        internal = ours and exists and path == "/" and not real_root and bool(procs_of(d))
        for c in wanted:
            if c in stc:
                continue
            if c not in ctrl:
                raise PlanError(
                    f"the {c} controller is not available in {d} (its cgroup.controllers: "
                    f"{' '.join(sorted(ctrl)) or 'none'})",
                    f"enable {c} in the parent's cgroup.subtree_control, or drop `cgroup.{c}`",
                    f"cgroup.{c}")
            if internal:
                raise _internal_processes(d, c, procs_of(d))
            if not ours:
                raise PlanError(
                    f"the {c} controller is not enabled for the children of {d}, a cgroup linx-spec does not "
                    f"own and will not change",
                    f"enable it: echo +{c} > {os.path.join(d, 'cgroup.subtree_control')} (or choose another "
                    "cgroup.parent)",
                    f"cgroup.{c}")
        acct = [c for c in acct if c in stc or (ours and not internal and c in ctrl)]
        if ours:
            enable_in.append(path)
        passed = frozenset(wanted) | frozenset(acct)
    return [*wanted, *acct], tuple(enable_in)


def writes(cg: "Cgroup", devices: dict[str, str], only: set[str]) -> list[tuple[str, str]]:
    """The (file, value) pairs written into the workload's cgroup, in order, for
    the controllers in `only` (those v2 holds on this host).  `devices` maps
    each io limit's spec device to MAJOR:MINOR."""
    from ..spec.cgroup import CPU_PERIOD_DEFAULT

    out: list[tuple[str, str]] = []
    if cg.memory is not None and "memory" in only:
        m = cg.memory
        if m.max is not None:
            out.append(("memory.max", str(m.max)))
        if m.high is not None:
            out.append(("memory.high", str(m.high)))
        if m.min is not None:
            out.append(("memory.min", str(m.min)))
        if m.low is not None:
            out.append(("memory.low", str(m.low)))
        if m.swap_max is not None:
            out.append(("memory.swap.max", str(m.swap_max)))
    if cg.cpu is not None and "cpu" in only:
        c = cg.cpu
        if c.weight is not None:
            out.append(("cpu.weight", str(c.weight)))
        if c.max is not None:
            period = round((c.period or CPU_PERIOD_DEFAULT) * 1e6)
            out.append(("cpu.max", f"{round(c.max * period)} {period}"))
    if cg.cpuset is not None and "cpuset" in only:
        if cg.cpuset.cpus is not None:
            out.append(("cpuset.cpus", cg.cpuset.cpus))
        if cg.cpuset.mems is not None:
            out.append(("cpuset.mems", cg.cpuset.mems))
    if cg.pids is not None and cg.pids.max is not None and "pids" in only:
        out.append(("pids.max", str(cg.pids.max)))
    if cg.io is not None and "io" in only:
        if cg.io.weight is not None:
            out.append(("io.weight", f"default {cg.io.weight}"))
        for lim in cg.io.limits:
            keys = [(k, getattr(lim, f)) for k, f in (("rbps", "read_bps"), ("wbps", "write_bps"),
                                                       ("riops", "read_iops"), ("wiops", "write_iops"))]
            out.append(("io.max", devices[lim.device] + "".join(f" {k}={v}" for k, v in keys if v is not None)))
    return out


def controllers_of(cg: "Cgroup") -> list[str]:
    """The v2 controllers the spec's knobs need, in KNOB_CONTROLLERS order."""
    used = {
        "memory": cg.memory is not None and any(v is not None for v in (cg.memory.max, cg.memory.high,
                                                                          cg.memory.low, cg.memory.min,
                                                                          cg.memory.swap_max)),
        "cpu": cg.cpu is not None and (cg.cpu.max is not None or cg.cpu.weight is not None),
        "cpuset": cg.cpuset is not None and (cg.cpuset.cpus is not None or cg.cpuset.mems is not None),
        "pids": cg.pids is not None and cg.pids.max is not None,
        "io": cg.io is not None and (cg.io.weight is not None or bool(cg.io.limits)),
    }
    return [c for c in KNOB_CONTROLLERS if used[c]]
