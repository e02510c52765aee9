"""The plan stage: Spec -> Plan, one module per subsystem, each holding its
`*Plan` type (plain frozen records, record.py) and its `resolve()`.

    build.py       build_plan(spec) -> Plan: calls each resolve() in turn
    workload.py    Plan, the whole workload's plan, CLONE_FLAGS
    idmap.py  process.py  caps.py  cgroup.py (+ cgroup_v1.py, cgroup_v2.py)
    network.py  mounts.py  rlimits.py  seccomp.py  stdio.py  lifecycle.py

Planning may read the host but never changes it, and imports nothing from
linx_spec.host (a test checks).  The types import no pydantic: a cached plan
is loaded and run without it, so this file stays light and the names below
are imported on first use (PEP 562).
"""

from __future__ import annotations


from .._lazy import lazy_exports

# public name -> the module of this package that defines it
_EXPORTS = {
    "build_plan": "build",
    "Plan": "workload",
    "CLONE_FLAGS": "workload",
    "DEFAULT_PATH": "process",
    "ProcessPlan": "process",
    "IdmapPlan": "idmap",
    "CapsPlan": "caps",
    "CgroupPlan": "cgroup",
    "JoinCgroupsPlan": "cgroup",
    "NetworkPlan": "network",
    "MountsPlan": "mounts",
    "RlimitsPlan": "rlimits",
    "SeccompPlan": "seccomp",
    "StdioPlan": "stdio",
    "StreamPlan": "stdio",
    "LifecyclePlan": "lifecycle",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:  # for type checkers and editors
    from .build import build_plan  # noqa: F401
    from .caps import CapsPlan  # noqa: F401
    from .cgroup import CgroupPlan, JoinCgroupsPlan  # noqa: F401
    from .idmap import IdmapPlan  # noqa: F401
    from .lifecycle import LifecyclePlan  # noqa: F401
    from .mounts import MountsPlan  # noqa: F401
    from .network import NetworkPlan  # noqa: F401
    from .process import DEFAULT_PATH, ProcessPlan  # noqa: F401
    from .rlimits import RlimitsPlan  # noqa: F401
    from .seccomp import SeccompPlan  # noqa: F401
    from .stdio import StdioPlan, StreamPlan  # noqa: F401
    from .workload import CLONE_FLAGS, Plan  # noqa: F401
