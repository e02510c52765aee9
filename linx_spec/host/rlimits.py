"""The rlimits step: prlimit(2) on the parked child from the host, plus its OOM score
(why from the host, and what resolve() decided: plan/rlimits.py).  Limits and
oom_score_adj belong to the process and die with it: nothing to undo."""

from __future__ import annotations

import os
import resource

from ..errors import touching
from ..plan.rlimits import RlimitsPlan, show


def apply_from_host(plan: RlimitsPlan, ctx) -> None:
    """prlimit(2) each limit on the parked child, then write its oom_score_adj."""
    for lim in plan.limits:
        with touching(f"prlimit {lim.name} {show(lim.soft)}:{show(lim.hard)}", f"pid {ctx.pid}"):
            resource.prlimit(ctx.pid, lim.resource, (lim.soft, lim.hard))
    if plan.oom_score_adj is not None:
        # Per process and inherited by its children; lowering it below the
        # minimum a privileged writer set needs CAP_SYS_RESOURCE (proc(5)).
        path = f"/proc/{ctx.pid}/oom_score_adj"
        with touching(f"write oom_score_adj {plan.oom_score_adj}", path):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, f"{plan.oom_score_adj}\n".encode())
            finally:
                os.close(fd)
