"""The lifecycle plan: time limit, stop grace, restart policy, what happens to
the workload when the runner dies.  Seconds as floats; the default retries of
`on-failure` filled in."""

from __future__ import annotations


from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec import Spec


class LifecyclePlan(Record):
    timeout: float | None = None  # seconds
    stop_grace: float = 5.0
    restart: str = "no"  # no | on-failure | always
    max_retries: int | None = None
    backoff: float = 1.0
    max_backoff: float = 30.0
    orphan: str = "stop"  # stop | linger
    summary: bool = False  # the usage summary after a foreground apply
    reconcile_interval: float | None = None  # seconds; detached only: the supervisor restores drift


def resolve(spec: Spec) -> LifecyclePlan:
    lc = spec.lifecycle
    r = lc.restart
    retries = r.max_retries if r.max_retries is not None else (3 if r.policy == "on-failure" else None)
    return LifecyclePlan(lc.timeout, lc.stop_grace, r.policy, retries, r.backoff, r.max_backoff, lc.orphan,
                         lc.summary, lc.reconcile.interval if lc.reconcile is not None else None)
