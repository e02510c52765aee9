"""The Plan: what `build_plan` resolved, frozen.  Numbers not names, absolute
paths, sizes in bytes, compiled seccomp bytes.

The whole workload's plan; each subsystem's part is typed by its own module
of this package.  Only plain frozen records (record.py), importing nothing heavy: the runner,
the agent driver and a plan cached by the CLI load it without pydantic
(plan/build.py builds Plans; linx_spec/spec/ is what the user wrote).
"""

from __future__ import annotations


from .._lazy import lazy_exports
from ..record import Record
from .lifecycle import LifecyclePlan
from .stdio import StdioPlan

# The other parts' types are imported when first named (PEP 562): a cached
# plan without a network or cgroup is read back (stored.py evaluates a field's
# type only for a value that is not null) without importing those modules.
_PARTS = {
    "CapsPlan": "caps",
    "CgroupPlan": "cgroup",
    "JoinCgroupsPlan": "cgroup",
    "IdmapPlan": "idmap",
    "MountsPlan": "mounts",
    "NetworkPlan": "network",
    "ProcessPlan": "process",
    "RlimitsPlan": "rlimits",
    "SeccompPlan": "seccomp",
}
__getattr__, _dir = lazy_exports(__package__, _PARTS, globals())

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from .caps import CapsPlan
    from .cgroup import CgroupPlan, JoinCgroupsPlan
    from .idmap import IdmapPlan
    from .mounts import MountsPlan
    from .network import NetworkPlan
    from .process import ProcessPlan
    from .rlimits import RlimitsPlan
    from .seccomp import SeccompPlan

CLONE_FLAGS = {
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}


class Plan(Record):
    name: str
    source: str  # the spec file ("-" for stdin, "<api>" for a Spec built in Python)
    spec_hash: str
    ns_new: tuple[str, ...]
    ns_join: tuple[tuple[str, str], ...]  # (name, path)
    process: ProcessPlan
    idmap: IdmapPlan | None = None
    hostname: str | None = None
    domainname: str | None = None
    # JoinCgroupsPlan: `linx-spec exec` joins the running workload's cgroups
    cgroup: CgroupPlan | JoinCgroupsPlan | None = None
    network: NetworkPlan | None = None
    rlimits: RlimitsPlan | None = None
    capabilities: CapsPlan | None = None
    no_new_privs: bool = True
    seccomp: SeccompPlan | None = None  # compiled BPF bytes
    mounts: MountsPlan | None = None  # agent/lx_mounts.c
    time_offsets_ns: tuple[int, int] | None = None  # (monotonic, boottime) of a new time namespace (agent/lx_time.c)
    stdio: StdioPlan = StdioPlan()
    lifecycle: LifecyclePlan = LifecyclePlan()
    notes: tuple[str, ...] = ()  # what the plan decided and why

    @property
    def grace_seconds(self) -> float:
        return self.lifecycle.stop_grace

    @property
    def clone_flags(self) -> int:
        flags = 0
        for name in self.ns_new:
            flags |= CLONE_FLAGS[name]
        return flags

    def has_new(self, ns: str) -> bool:
        return ns in self.ns_new
