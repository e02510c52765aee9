"""The one orchestrator: walks steps.py, rolls back on failure.

    Workload(plan)                 the low-level handle
      .spawn()      -> host pid    agent started, child cloned and parked
      .setup()                     host steps against the parked child
      .proceed()                   child steps, execve
      .abort()                     the child never runs; everything undone
      .signal(sig) / .wait() -> Result
    run(plan) -> Result            all of the above, for the common case

Any failure before the workload runs aborts the child and undoes, in reverse,
whatever the host steps created.  After the workload ends, the collectors
registered by host steps read usage (cgroup), then the undo list runs.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .agent import Agent, End
from .errors import LinxError, ProtocolError, StepError
from .plan import Plan
from .protocol import proceed_attrs
from .steps import STEP_BY_ID, active_steps, child_order


@dataclass(frozen=True)
class StepTiming:
    step: str
    side: str
    seconds: float


@dataclass
class Result:
    """What happened to one workload."""

    name: str
    pid: int  # host pid of the workload
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    core_dumped: bool
    timings: list[StepTiming]
    usage: dict[str, Any] = field(default_factory=dict)  # cgroup figures after exit
    reason: str = ""  # plain words when something outside the program ended it (OOM, seccomp, timeout)

    @property
    def status(self) -> int:
        """Shell-style: the exit code, or 128+N when killed by signal N."""
        return self.exit_code if self.signal is None else 128 + self.signal

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class HostContext:
    """What a host step gets: the parked child's pid and ways to register undo."""

    def __init__(self, workload: "Workload"):
        self._w = workload
        self.pid: int = workload.pid
        self.plan: Plan = workload.plan

    def on_undo(self, what: str, fn: Callable[[], None]) -> None:
        """fn runs on rollback and after the workload ends, in reverse order."""
        self._w._undo.append((what, fn))

    def after_exit(self, fn: Callable[[Result], None]) -> None:
        """fn runs after the workload ended, before any undo: read usage, find reasons."""
        self._w._after_exit.append(fn)

    def track_cgroup(self, path: str) -> None:
        """Tell the agent: if the runner dies, kill and remove this cgroup."""
        self._w.agent.track_cgroup(path)


def _host_step(name: str) -> Callable[[Plan, HostContext], None]:
    # Imported on demand: pyroute2 costs tens of milliseconds to import.
    if name == "idmap":
        from .host import idmap

        return idmap.apply_from_host
    if name == "cgroup":
        from .host import cgroup

        return lambda plan, ctx: cgroup.apply_from_host(plan.cgroup, ctx)
    if name == "network":
        from .host import network

        return lambda plan, ctx: network.apply_from_host(plan.network, ctx)
    if name == "rlimits":
        from .host import rlimits

        return lambda plan, ctx: rlimits.apply_from_host(plan.rlimits, ctx)
    raise LookupError(name)


Reporter = Callable[[str, str, float], None]


class Workload:
    """One workload, driven step by step (see the module docstring)."""

    def __init__(self, plan: Plan, *, stdin: int | None = None, stdout: int | None = None,
                 stderr: int | None = None, on_step: Reporter | None = None):
        self.plan = plan
        self._stdio = (stdin, stdout, stderr)
        self._on_step = on_step
        self.agent: Agent | None = None
        self.pid: int = 0
        self.state = "new"  # new -> parked -> ready -> running -> ended | aborted
        self.timings: list[StepTiming] = []
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._after_exit: list[Callable[[Result], None]] = []
        self.result: Result | None = None

    def _time(self, name: str, side: str, seconds: float) -> None:
        self.timings.append(StepTiming(name, side, seconds))
        if self._on_step:
            self._on_step(name, side, seconds)

    # --- the checkpoint ------------------------------------------------------
    def spawn(self) -> int:
        """Start the agent, clone the child into its namespaces and park it."""
        from .plan import CLONE_FLAGS

        if self.state != "new":
            raise RuntimeError(f"spawn: workload is {self.state}")
        t0 = time.perf_counter()
        stdin, stdout, stderr = self._stdio
        self.agent = Agent(stdin=stdin, stdout=stdout, stderr=stderr)
        try:
            self.agent.hello()
            joins = [(CLONE_FLAGS[n], path) for n, path in self.plan.ns_join]
            self.pid = self.agent.spawn(self.plan.clone_flags, joins, int(self.plan.grace_seconds * 1000))
        except BaseException:
            self._teardown()
            raise
        self.state = "parked"
        self._time("spawn", "agent", time.perf_counter() - t0)
        return self.pid

    def setup(self) -> None:
        """Run the host-side steps against the parked child, in order."""
        if self.state != "parked":
            raise RuntimeError(f"setup: workload is {self.state}")
        ctx = HostContext(self)
        try:
            for step in active_steps(self.plan):
                if step.side != "host":
                    continue
                t0 = time.perf_counter()
                _host_step(step.name)(self.plan, ctx)
                self._time(step.name, "host", time.perf_counter() - t0)
        except BaseException:
            self.abort()
            raise
        self.state = "ready"

    def proceed(self) -> None:
        """Release the child: child-side steps, then execve."""
        if self.state == "parked":
            self.setup()
        if self.state != "ready":
            raise RuntimeError(f"proceed: workload is {self.state}")
        try:
            timings = self.agent.proceed(proceed_attrs(self.plan, child_order(self.plan)))
        except BaseException:
            # The child is gone (it failed a step) or must go; undo the host side.
            self.abort()
            raise
        for step_id, ns in timings:
            step = STEP_BY_ID.get(step_id)
            self._time(step.name if step else str(step_id), "child", ns / 1e9)
        self.state = "running"

    def start(self) -> int:
        """spawn + setup + proceed."""
        self.spawn()
        self.setup()
        self.proceed()
        return self.pid

    def abort(self) -> None:
        """Before the workload runs: kill the parked child, undo everything."""
        if self.state in ("parked", "ready") and self.agent is not None:
            try:
                self.agent.abort()
            except LinxError:
                pass
        self.state = "aborted"
        self._teardown()

    def signal(self, signo: int) -> None:
        if self.state not in ("parked", "ready", "running"):
            raise RuntimeError(f"signal: workload is {self.state}")
        self.agent.signal(signo)

    def wait(self) -> Result:
        """Wait for the workload to end; collect usage; undo what was created."""
        if self.state != "running":
            raise RuntimeError(f"wait: workload is {self.state}")
        try:
            end: End = self.agent.wait()
        except BaseException:
            self._teardown()
            raise
        self.state = "ended"
        self.result = Result(self.plan.name, self.pid, end.exit_code, end.signal, end.core_dumped,
                             list(self.timings))
        try:
            for collect in self._after_exit:
                collect(self.result)
        finally:
            self._teardown()
        return self.result

    def close(self) -> None:
        """Whatever the state: nothing of this workload remains afterwards."""
        if self.state in ("parked", "ready"):
            self.abort()
        else:
            self._teardown()

    def _teardown(self) -> None:
        # Closing the channel makes the agent stop anything still running
        # (SIGTERM, grace, SIGKILL); then the host side is undone in reverse.
        errors: list[BaseException] = []
        if self.agent is not None:
            try:
                self.agent.close()
            except BaseException as exc:  # noqa: BLE001 - keep undoing
                errors.append(exc)
            self.agent = None
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - keep undoing
                errors.append(exc)
        self._after_exit.clear()
        if errors and not isinstance(errors[0], LinxError):
            raise errors[0]

    def __enter__(self) -> "Workload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(plan: Plan, *, stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
        on_step: Reporter | None = None) -> Result:
    """Run one workload to its end and return its Result."""
    with Workload(plan, stdin=stdin, stdout=stdout, stderr=stderr, on_step=on_step) as w:
        w.start()
        return w.wait()


_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


def run_forwarding_signals(plan: Plan, on_step: Reporter | None = None) -> Result:
    """For the CLI: SIGINT/SIGTERM/SIGHUP go to the workload once it runs; before
    that they interrupt the setup, which rolls back."""
    w = Workload(plan, on_step=on_step)
    old = {s: _signal.getsignal(s) for s in _FORWARDED}

    def forward(signo, _frame):
        if w.state == "running" and w.agent is not None:
            try:
                w.agent.signal_nowait(signo)
            except ProtocolError:
                pass
        else:
            raise KeyboardInterrupt

    try:
        for s in _FORWARDED:
            _signal.signal(s, forward)
        with w:
            w.start()
            return w.wait()
    finally:
        for s, h in old.items():
            _signal.signal(s, h)
