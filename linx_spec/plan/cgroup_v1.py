"""cgroup v1 (one hierarchy per controller, or a few co-mounted): which files a
knob becomes (the usage figures a v1 kernel keeps: host/cgroup_usage.py).

File names and semantics: Documentation/admin-guide/cgroup-v1/ (memory.rst,
cpusets.rst, pids.rst, blkio-controller.rst, freezer-subsystem.rst) and
sched-bwc.rst for the CFS quota.  Rules that shape this module:
- memory.low and memory.min have no v1 equivalent (v1 protects no memory from
  reclaim; soft_limit_in_bytes is a reclaim target): a plan error, not a
  silent mapping;
- memory.memsw.limit_in_bytes counts memory + swap and must not be below
  memory.limit_in_bytes, so it is written after it, as max + swap_max;
- a new cpuset cgroup starts with empty cpuset.cpus and cpuset.mems and no
  task may join it until both are set: unset ones are copied from the parent
  (done by the apply step, which knows the parent's values);
- cpu.shares and blkio weights have other ranges than v2's weights: converted
  linearly (the inverse of runc's v1 -> v2 conversions).
"""

from __future__ import annotations

import os

from ..errors import PlanError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec.cgroup import Cgroup

# spec knob -> v1 controller
KNOB_CONTROLLER = {"memory": "memory", "cpu": "cpu", "cpuset": "cpuset", "pids": "pids", "io": "blkio"}
# Joined when mounted even without a knob: usage after exit, and freezer to
# stop every process at once before killing them.
ACCOUNTING = ("memory", "pids", "cpuacct", "freezer")


def cpu_shares(weight: int) -> int:
    """v2 cpu.weight [1, 10000] -> v1 cpu.shares [2, 262144]."""
    return 2 + ((weight - 1) * 262142) // 9999


def blkio_weight(weight: int) -> int:
    """v2 io.weight [1, 10000] -> v1 blkio weight [10, 1000]."""
    return 10 + ((weight - 1) * 990) // 9999


def writes(cg: "Cgroup", mounts: dict[str, str], devices: dict[str, str],
           only: set[str]) -> dict[str, list[tuple[str, str]]]:
    """{controller: [(file, value)...]} written into the workload's cgroup of each
    controller's hierarchy, in order, for the v1 controllers in `only` (those
    mounted on v1 here).  `mounts` maps controller -> mount point (to check the
    files this kernel has: they are on the hierarchy root too)."""
    from ..spec.cgroup import CPU_PERIOD_DEFAULT

    out: dict[str, list[tuple[str, str]]] = {}

    def need(controller: str, filename: str, knob: str, why: str) -> None:
        if not os.path.exists(os.path.join(mounts[controller], filename)):
            raise PlanError(f"this kernel's cgroup v1 {controller} controller has no {filename} ({why})",
                            f"drop `cgroup.{knob}`, or use a kernel/boot option that provides it", f"cgroup.{knob}")

    if cg.memory is not None and "memory" in only:
        m = cg.memory
        w = out.setdefault("memory", [])
        for key in ("low", "min"):
            # v1 protects nothing: soft_limit_in_bytes is the opposite (a reclaim target, what
            # memory.high becomes) and no other v1 file keeps memory from reclaim.
            if getattr(m, key) is not None:
                raise PlanError(f"memory.{key} is cgroup v2's memory protection; the memory controller is on "
                                "cgroup v1 here, which has no equivalent (memory.soft_limit_in_bytes is a reclaim "
                                "target, not a protection)",
                                f"drop cgroup.memory.{key}, or run on a host with the memory controller on "
                                "cgroup v2", f"cgroup.memory.{key}")
        if m.max is not None:
            w.append(("memory.limit_in_bytes", str(m.max)))
        if m.swap_max is not None:
            if m.max is None:
                raise PlanError("memory.swap_max on cgroup v1 needs memory.max: v1 limits memory + swap together "
                                "(memory.memsw.limit_in_bytes)", "set cgroup.memory.max as well",
                                "cgroup.memory.swap_max")
            need("memory", "memory.memsw.limit_in_bytes", "memory.swap_max",
                 "swap accounting is off: boot with swapaccount=1")
            w.append(("memory.memsw.limit_in_bytes", str(m.max + m.swap_max)))
        if m.high is not None:
            w.append(("memory.soft_limit_in_bytes", str(m.high)))
    if cg.cpu is not None and "cpu" in only:
        c = cg.cpu
        w = out.setdefault("cpu", [])
        if c.max is not None:
            need("cpu", "cpu.cfs_quota_us", "cpu.max", "the kernel lacks CONFIG_CFS_BANDWIDTH")
            period = round((c.period or CPU_PERIOD_DEFAULT) * 1e6)
            # Period first: the quota is checked against the period in force.
            w.append(("cpu.cfs_period_us", str(period)))
            w.append(("cpu.cfs_quota_us", str(round(c.max * period))))
        if c.weight is not None:
            w.append(("cpu.shares", str(cpu_shares(c.weight))))
    if cg.cpuset is not None and "cpuset" in only:
        w = out.setdefault("cpuset", [])
        if cg.cpuset.cpus is not None:
            w.append(("cpuset.cpus", cg.cpuset.cpus))
        if cg.cpuset.mems is not None:
            w.append(("cpuset.mems", cg.cpuset.mems))
    if cg.pids is not None and cg.pids.max is not None and "pids" in only:
        out.setdefault("pids", []).append(("pids.max", str(cg.pids.max)))
    if cg.io is not None and "blkio" in only:
        w = out.setdefault("blkio", [])
        if cg.io.weight is not None:
            root = mounts["blkio"]
            if os.path.exists(os.path.join(root, "blkio.weight")):
                w.append(("blkio.weight", str(blkio_weight(cg.io.weight))))
            elif os.path.exists(os.path.join(root, "blkio.bfq.io_service_bytes")):
                # BFQ puts blkio.bfq.weight in non-root cgroups only; its stat files show it is there.
                w.append(("blkio.bfq.weight", str(blkio_weight(cg.io.weight))))
            else:
                raise PlanError("io.weight on cgroup v1 needs blkio.weight (CFQ) or blkio.bfq.weight (BFQ); "
                                "this kernel has neither", "drop cgroup.io.weight, or load the bfq scheduler",
                                "cgroup.io.weight")
        for lim in cg.io.limits:
            for field, filename in (("read_bps", "blkio.throttle.read_bps_device"),
                                    ("write_bps", "blkio.throttle.write_bps_device"),
                                    ("read_iops", "blkio.throttle.read_iops_device"),
                                    ("write_iops", "blkio.throttle.write_iops_device")):
                value = getattr(lim, field)
                if value is not None:
                    need("blkio", filename, "io.limits", "the kernel lacks CONFIG_BLK_DEV_THROTTLING")
                    w.append((filename, f"{devices[lim.device]} {value}"))
    return {k: v for k, v in out.items() if v}
