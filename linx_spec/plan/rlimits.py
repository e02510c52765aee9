"""The rlimits plan: what the rlimits step (host/rlimits.py: prlimit(2) on the parked
child from the host, plus its OOM score) sets.

Why from the host (as runc does): inside a new user namespace the child lacks
CAP_SYS_RESOURCE of the initial namespace, so it could never raise a hard
limit; the runner (root, or the owner of the child's credentials) can set any
limit its own privileges allow on the child before the child runs a single
instruction of the workload.  Limits and oom_score_adj belong to the process
and die with it: nothing to undo.

resolve() turns every limit into two numbers (RLIM_INFINITY for `unlimited`),
filling an omitted side from the limits the child inherits (the runner's own),
and refuses at plan time what the kernel would refuse at prlimit time.
"""

from __future__ import annotations

import resource

from ..errors import PlanError
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any
    from ..spec import Spec
    from ..spec.rlimits import Limit, Rlimits

# Not imported from spec.rlimits: a cached plan is run without pydantic.
UNLIMITED = "unlimited"

INFINITY = resource.RLIM_INFINITY  # -1 in Python: compare through _key, never directly


class RlimitPlan(Record):
    name: str  # `nofile`
    resource: int  # RLIMIT_NOFILE
    soft: int  # RLIM_INFINITY for unlimited
    hard: int


class RlimitsPlan(Record):
    limits: tuple[RlimitPlan, ...]
    oom_score_adj: int | None = None  # /proc/PID/oom_score_adj, not an rlimit

    def describe(self) -> dict[str, Any]:
        """`nofile: 1024:4096` as prlimit(1) writes it; `unlimited` for RLIM_INFINITY."""
        out: dict[str, Any] = {}
        for lim in self.limits:
            out[lim.name] = f"{show(lim.soft)}:{show(lim.hard)}"
        if self.oom_score_adj is not None:
            out["oom_score_adj"] = self.oom_score_adj
        return out


def show(value: int) -> str:
    return UNLIMITED if value == INFINITY else str(value)


def _key(value: int) -> float:
    return float("inf") if value == INFINITY else float(value)


def _number(value: int | str) -> int:
    return INFINITY if value == UNLIMITED else int(value)


def resource_number(name: str) -> int:
    # The resource module knows this architecture's numbers (alpha, mips and
    # sparc differ from the generic ones); it lacks RLIMIT_LOCKS only.
    from ..spec.rlimits import RLIMITS

    return getattr(resource, f"RLIMIT_{name.upper()}", RLIMITS[name][0])


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024 * 1024  # the kernel's default


def _resolve_one(name: str, limit: "Limit", privileged: bool) -> RlimitPlan:
    res = resource_number(name)
    field = f"rlimits.{name}"
    cur_soft, cur_hard = resource.getrlimit(res)
    soft = _number(limit.soft) if limit.soft is not None else None
    hard = _number(limit.hard) if limit.hard is not None else cur_hard
    if soft is None:
        soft = min(cur_soft, hard, key=_key)  # lowered to fit under a lower hard limit
    if _key(soft) > _key(hard):
        raise PlanError(f"soft limit {show(soft)} is above the hard limit {show(hard)} the workload inherits",
                        f"give `hard` too, or a soft limit of at most {show(hard)}", f"{field}.soft")
    if _key(hard) > _key(cur_hard) and not privileged:
        raise PlanError(f"raising the hard limit from {show(cur_hard)} to {show(hard)} needs CAP_SYS_RESOURCE "
                        "(setrlimit(2)), which this runner lacks; a user namespace does not help",
                        f"ask for at most {show(cur_hard)}, or run as root with CAP_SYS_RESOURCE", field)
    if name == "nofile":
        nr_open = _nr_open()
        if _key(hard) > nr_open:
            raise PlanError(f"the kernel allows at most fs.nr_open = {nr_open} open files per process, "
                            f"not {show(hard)} (setrlimit(2): EPERM)",
                            f"ask for at most {nr_open}, or raise the sysctl fs.nr_open", field)
    return RlimitPlan(name, res, soft, hard)


def resolve(rlimits: "Rlimits", spec: "Spec") -> RlimitsPlan:
    """Every limit as two numbers, checked against what this runner may set."""
    from ..spec.capabilities import CAPABILITIES
    from .caps import own_caps

    # prlimit(2) raising a hard limit needs CAP_SYS_RESOURCE of the runner itself,
    # in the initial user namespace: root's, unless something around it dropped it.
    privileged = bool(own_caps("CapEff") >> CAPABILITIES["CAP_SYS_RESOURCE"] & 1)
    limits = tuple(_resolve_one(name, limit, privileged) for name, limit in rlimits.limits().items())
    return RlimitsPlan(limits, rlimits.oom_score_adj)
