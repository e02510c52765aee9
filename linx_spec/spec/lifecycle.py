"""`lifecycle:` how long the workload may run, how it is stopped, restarted,
and what happens to it when linx-spec itself goes away.

    lifecycle:
      timeout: 30s            # wall-clock limit: SIGTERM, then SIGKILL after stop_grace
      stop_grace: 5s          # SIGTERM -> SIGKILL (timeout, `stop`, runner death)
      restart: {policy: on-failure, max_retries: 3, backoff: 1s, max_backoff: 30s}
      orphan: stop            # if linx-spec is killed: stop (default) | linger
      summary: true           # after a foreground apply, its usage on stderr (as apply -v)
      reconcile: {interval: 30s}  # detached: restore drift periodically (off by default)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Model
from .units import Duration, PositiveDuration


class Restart(Model):
    """Restart policy; every restart goes through the whole checkpoint again."""

    policy: Literal["no", "on-failure", "always"] = Field(
        default="no", description="`no`; `on-failure`: restart when it exits non-zero or is killed; `always`.")
    max_retries: Annotated[int | None, Field(ge=0, le=2**31 - 1, description="At most this many restarts (default: unlimited for "
                                              "`always`, 3 for `on-failure`).")] = None
    backoff: PositiveDuration = Field(default=1.0, description="Delay before the first restart; doubles each time.")
    max_backoff: PositiveDuration = Field(default=30.0, description="The delay never grows beyond this.")

    @model_validator(mode="after")
    def _sane(self) -> "Restart":
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must be at least backoff")
        return self


RECONCILE_MIN_SECONDS = 0.1
RECONCILE_MAX_SECONDS = 86400.0


class Reconcile(Model):
    """Periodic re-convergence of a detached workload (off by default)."""

    interval: PositiveDuration = Field(
        description="How often the supervisor compares the live limits (cgroup, rlimits) with the plan last "
        "applied and restores what drifted, logging each correction to the workload's stderr log "
        f"({RECONCILE_MIN_SECONDS:g}s to {RECONCILE_MAX_SECONDS / 3600:g}h).")

    @model_validator(mode="after")
    def _bounded(self) -> "Reconcile":
        if not RECONCILE_MIN_SECONDS <= self.interval <= RECONCILE_MAX_SECONDS:
            raise ValueError(f"interval must be between {RECONCILE_MIN_SECONDS:g}s and "
                             f"{RECONCILE_MAX_SECONDS:g}s")
        return self


class Lifecycle(Model):
    """Time limit, stop grace, restart policy and orphan behaviour."""

    timeout: PositiveDuration | None = Field(
        default=None, description="Wall-clock limit. On expiry: SIGTERM, then SIGKILL after `stop_grace`.")
    stop_grace: Duration = Field(default=5.0, description="Grace between SIGTERM and SIGKILL when stopping.")
    restart: Restart = Field(default_factory=Restart, description="Restart policy.")
    orphan: Literal["stop", "linger"] = Field(
        default="stop",
        description="If linx-spec itself is killed: `stop` the workload (SIGTERM, grace, SIGKILL), or let it "
        "`linger` (reaped by its agent, which also removes its cgroups).")
    summary: bool = Field(
        default=False,
        description="After a foreground `apply`, print a usage summary on stderr (result, exit status, wall and "
        "CPU time, peak memory, OOM kills, pids peak), as `apply -v` does and `systemd-run --wait` prints; "
        "`apply -q` leaves it out.")
    reconcile: Reconcile | None = Field(
        default=None, description="Detached workloads: restore limits changed behind linx-spec's back "
        "every `interval` (e.g. `{interval: 30s}`); off by default.")
