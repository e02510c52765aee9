"""The lifecycle of a workload, written once: from "it runs" to "it is over".

    Lifecycle(plan, waiter, signals).run(new_workload) -> Result
      restart loop          the policy (no | on-failure | always), max_retries,
                            backoff doubling up to max_backoff
      run_to_end(w, ...)    wait; at the time limit stop(): SIGTERM, stop_grace,
                            SIGKILL; then w.finish() -> Result
      signals               "forward": SIGINT/SIGTERM/SIGHUP go to the running
                            workload (before it runs they interrupt the setup);
                            after SIGTERM/SIGHUP it gets stop_grace, then SIGKILL;
                            "supervise": SIGTERM/SIGINT stop it (no restart),
                            SIGHUP is ignored (the detached supervisor)
      Waiter                how the runner spends the time while it runs:
                            plain (block on the agent), the terminal proxy
                            (tty.Terminal), the detached supervisor (detach.py)

This module knows a workload only by the methods it calls (spawn, setup,
proceed, poll, signal, finish, close; runner.Workload has them) and imports
neither runner.py nor tty.py nor detach.py: they import it, so the graph has
no circle.
"""

from __future__ import annotations

import contextlib
import signal as _signal
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import LinxError

if TYPE_CHECKING:
    from .agent import End
    from .plan.workload import Plan
    from .runner import Result, Workload

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


def end_words(exit_code: int | None, signo: int | None) -> str:
    """`exit code N` or `killed by signal N`: the one wording of how a workload ended."""
    return f"exit code {exit_code}" if signo is None else f"killed by signal {signo}"


_USAGE_WORDS = (  # (key, label, unit): the order `status` and the summary print them in
    ("cpu_seconds", "cpu", "s"), ("cpu_user_seconds", "cpu user", "s"), ("cpu_system_seconds", "cpu system", "s"),
    ("memory_peak_bytes", "memory peak", "B"), ("oom_kills", "oom kills", ""), ("memory_limit_hits", "memory limit hits", ""),
    ("pids_peak", "pids peak", ""), ("pids_limit_hits", "pids limit hits", ""),
    ("cpu_throttled_seconds", "cpu throttled", "s"),
)


def usage_lines(usage: dict[str, Any]) -> list[str]:
    """Cgroup usage in words, one `label: value` per figure the kernel gave."""
    lines = []
    for key, label, unit in _USAGE_WORDS:
        value = usage.get(key)
        if value is None:
            continue
        if unit == "s":
            text = f"{value:.3f}s"
        elif unit == "B":
            text = f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value} B"
        else:
            text = str(value)
        lines.append(f"{label}: {text}")
    return lines


def seconds(value: float) -> str:
    return f"{value:g}s"


# --- restart policy -------------------------------------------------------------

def should_restart(plan: Plan, result: Result, restarts: int) -> bool:
    lc = plan.lifecycle
    if lc.restart == "no" or (lc.restart == "on-failure" and result.exit_code == 0):
        return False
    return lc.max_retries is None or restarts < lc.max_retries


def restart_delay(plan: Plan, restarts: int) -> float:
    lc = plan.lifecycle
    return min(lc.backoff * (2 ** restarts), lc.max_backoff)


# --- waiting ----------------------------------------------------------------------

class Waiter:
    """The plain way to wait: block on the agent.  Subclasses proxy a terminal
    (tty.Terminal) or watch for a stop request (the detached supervisor)."""

    def spawned(self, w: Workload) -> None:
        """After spawn, before the host steps (the terminal copies its size here:
        before the workload can ask for it)."""

    @contextlib.contextmanager
    def attached(self, w: Workload) -> Iterator[None]:
        """Around the whole wait, whatever happens (the terminal: raw mode, restored)."""
        yield

    def wait(self, w: Workload, timeout: float | None) -> End | None:
        """The workload's end, or None if it has not ended within timeout seconds
        (None: no limit) or a stop was requested meanwhile."""
        return w.poll(timeout)

    def ended(self, w: Workload) -> None:
        """After the end, before finish() undoes anything (the terminal drains its output)."""

    def stop_requested(self) -> bool:
        """True once per stop request that arrived from outside (`linx-spec stop`)."""
        return False


PLAIN = Waiter()


class Supervised(Waiter):
    """The detached supervisor's way: poll the agent every 0.2 s, and return
    early when a stop was requested (its SIGTERM handler calls request_stop)."""

    TICK = 0.2

    def __init__(self) -> None:
        self._asked = False

    def request_stop(self) -> None:
        self._asked = True

    def wait(self, w: Workload, timeout: float | None) -> End | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.TICK if deadline is None else min(self.TICK, max(0.0, deadline - time.monotonic()))
            end = w.poll(left)
            if end is not None or self._asked:
                return end
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def stop_requested(self) -> bool:
        asked, self._asked = self._asked, False
        return asked


def stop(w: Workload, grace: float, waiter: Waiter = PLAIN, signalled: bool = False) -> tuple[End, str]:
    """SIGTERM (unless already sent), up to `grace` seconds, then SIGKILL.
    -> (end, what it took)."""
    if not signalled:
        try:
            w.signal(_signal.SIGTERM)
        except LinxError:
            pass  # it may have ended just now
    end = waiter.wait(w, grace)
    if end is not None:
        return end, "stopped by SIGTERM"
    try:
        w.signal(_signal.SIGKILL)
    except LinxError:
        pass
    end = w.poll(None)
    return end, f"killed by SIGKILL after a {seconds(grace)} grace period"


FORWARD_TICK = 0.25  # how often a wait looks at a forwarded stop signal (signal handlers cannot wake it)


def run_to_end(w: Workload, limit: float | None, waiter: Waiter = PLAIN,
               forwarded: Callable[[], float | None] | None = None) -> Result:
    """Wait for the running workload's end, stopping it at the time limit
    (seconds since it was released; None: none) or when a stop is requested;
    then finish: usage collected, everything undone.

    forwarded() -> when a SIGTERM or SIGHUP was forwarded to the workload
    (time.monotonic()), or None: from then on it gets `stop_grace`, then
    SIGKILL, as `stop` gives it.  An interactive shell ignores SIGTERM, and so
    does a pid 1 without a handler: a caller that sends TERM (timeout(1),
    systemd, a CI runner) would otherwise wait forever."""
    grace = w.plan.lifecycle.stop_grace
    reason, timed_out = "", False
    try:
        with waiter.attached(w):
            while True:
                remaining = None if limit is None else max(0.0, limit - (time.monotonic() - w.started))
                step = remaining
                if forwarded is not None:
                    step = FORWARD_TICK if remaining is None else min(remaining, FORWARD_TICK)
                end = waiter.wait(w, step)
                if end is not None:
                    break
                if waiter.stop_requested():
                    end, _how = stop(w, grace, waiter, signalled=True)
                    break
                since = forwarded() if forwarded is not None else None
                if since is not None and time.monotonic() >= since + grace:
                    end, how = stop(w, 0.0, waiter, signalled=True)
                    if end.signal == _signal.SIGKILL:
                        reason = f"still running {seconds(grace)} after the forwarded signal: killed by SIGKILL"
                    break
                # the waiter gives up only at its timeout: the limit, unless the wait was a slice of it
                if limit is not None and (step == remaining or time.monotonic() - w.started >= limit):
                    timed_out = True
                    end, how = stop(w, grace, waiter)
                    reason = f"timed out after {seconds(limit)}: {how}"
                    break
            waiter.ended(w)
    except BaseException:
        w.close()
        raise
    return w.finish(end, reason, timed_out)


# --- the whole run: restarts and signals ----------------------------------------------

class Lifecycle:
    """Runs a plan to its end, restarting it as its policy says.

    waiter: how to wait (PLAIN, tty.Terminal(), the supervisor's);
    timeout: overrides `lifecycle.timeout` (None: no limit; -1: the plan's);
    signals: None (leave them alone), "forward" or "supervise" (module docstring);
    on_restart(result, delay): told before each restart."""

    def __init__(self, plan: Plan, *, waiter: Waiter = PLAIN, timeout: float | None = -1,
                 signals: str | None = None, on_restart: Callable[[Result, float], None] | None = None):
        if signals not in (None, "forward", "supervise"):
            raise ValueError(signals)
        if signals == "supervise" and not isinstance(waiter, Supervised):
            raise ValueError("signals='supervise' needs a Supervised waiter")
        self.plan = plan
        self.waiter = waiter
        self.limit = plan.lifecycle.timeout if timeout == -1 else timeout
        self.signals = signals
        self.on_restart = on_restart
        self.current: Workload | None = None
        self.restarts = 0
        self.stopping = False  # a forwarded or stop signal arrived: no restart
        self.term_forwarded: float | None = None  # when a SIGTERM/SIGHUP went to the workload

    def start(self, w: Workload) -> None:
        """spawn, the waiter's look at the parked child, host steps, child steps + execve."""
        w.spawn()
        self.waiter.spawned(w)
        w.setup()
        w.proceed()

    def run(self, new: Callable[[], Workload], start: Callable[[Workload], None] | None = None,
            started: Callable[[Workload], None] | None = None) -> Result:
        """new() makes each attempt's Workload; start(w) (default self.start) releases it;
        started(w) is told once it runs.  -> the last attempt's Result."""
        with self._signals():
            while True:
                w = new()
                self.current = w
                with w:
                    (start or self.start)(w)
                    if started is not None:
                        started(w)
                    result = run_to_end(w, self.limit, self.waiter,
                                        (lambda: self.term_forwarded) if self.signals == "forward" else None)
                self.current = None
                result.restarts = self.restarts
                if result.timed_out and self.signals == "supervise":
                    self.stopping = True  # the supervisor treats its time limit as `stop NAME`
                if self.stopping or not should_restart(self.plan, result, self.restarts):
                    return result
                delay = restart_delay(self.plan, self.restarts)
                if self.on_restart:
                    self.on_restart(result, delay)
                time.sleep(delay)
                if self.stopping:
                    return result
                self.restarts += 1

    # --- signals ------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if self.signals is None:
            yield
            return
        old = {s: _signal.getsignal(s) for s in FORWARDED}
        try:
            if self.signals == "forward":
                for s in FORWARDED:
                    _signal.signal(s, self._forward)
            else:
                _signal.signal(_signal.SIGTERM, self._stop)
                _signal.signal(_signal.SIGINT, self._stop)
                _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
            yield
        finally:
            for s, h in old.items():
                _signal.signal(s, h)

    def _forward(self, signo: int, _frame: Any) -> None:
        # Once the workload runs (or is being released: the agent handles it after
        # the exec it is doing now) the signal is its own; before, it interrupts
        # the setup, which rolls back.
        w = self.current
        if w is not None and (w.state == "running" or w.releasing) and w.agent is not None:
            self.stopping = True
            if signo != _signal.SIGINT and self.term_forwarded is None:
                self.term_forwarded = time.monotonic()  # run_to_end: stop_grace, then SIGKILL
            try:
                w.agent.signal_nowait(signo)
            except LinxError:
                pass
        else:
            raise KeyboardInterrupt

    def _stop(self, _signo: int, _frame: Any) -> None:
        # `linx-spec stop NAME` or a plain kill of the supervisor: stop, don't restart.
        self.stopping = True
        self.waiter.request_stop()  # type: ignore[attr-defined]  # Supervised: checked in __init__
        w = self.current
        if w is not None and w.agent is not None and w.state == "running":
            try:
                w.agent.signal_nowait(_signal.SIGTERM)
            except LinxError:
                pass
