"""The lifecycle of a workload, written once: from "it runs" to "it is over".

    Lifecycle(plan, waiter, signals).run(new_workload) -> Result
      restart loop          the policy (no | on-failure | always), max_retries,
                            backoff doubling up to max_backoff
      run_to_end(w, ...)    wait; at the time limit stop(): SIGTERM, stop_grace,
                            SIGKILL; then w.finish() -> Result
      signals               "forward": SIGINT/SIGTERM/SIGHUP go to the running
                            workload (before it runs they interrupt the setup);
                            after SIGTERM/SIGHUP it gets stop_grace, then SIGKILL
      Waiter                how the runner spends the time while it runs:
                            plain (block on the agent), the terminal proxy
                            (tty.Terminal), the shared supervisor's
                            (Supervised, supervisor.py)

This module knows a workload only by the methods it calls (spawn, setup,
proceed, poll, signal, finish, close; runner.Workload has them) and imports
neither runner.py nor tty.py nor detach.py: they import it, so the graph has
no circle.
"""

from __future__ import annotations

# _signal: the C module signal.py wraps (its enums, ~1 ms of a cold start, are not used here)
import _signal
import time

from .errors import LinxError
from .views import end_words  # noqa: F401 - the one wording, where it always was

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any, Callable
    from .agent import End
    from .plan.workload import Plan
    from .runner import Result, Workload

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


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
    (tty.Terminal) or watch for a stop request (the shared supervisor)."""

    def spawned(self, w: Workload) -> None:
        """After spawn, before the host steps (the terminal copies its size here:
        before the workload can ask for it)."""

    def attached(self, w: Workload) -> _Nothing:
        """Around the whole wait, whatever happens (the terminal: raw mode, restored)."""
        return _NOTHING

    def wait(self, w: Workload, timeout: float | None) -> End | None:
        """The workload's end, or None if it has not ended within timeout seconds
        (None: no limit) or a stop was requested meanwhile."""
        return w.poll(timeout)

    def ended(self, w: Workload) -> None:
        """After the end, before finish() undoes anything (the terminal drains its output)."""

    def stop_requested(self) -> bool:
        """True once per stop request that arrived from outside (`linx-spec stop`)."""
        return False

    def pause(self, seconds: float) -> None:
        """The restart backoff (the supervisor's is cut short by a stop request)."""
        time.sleep(seconds)


PLAIN = Waiter()


class _Nothing:
    """contextlib.nullcontext (contextlib is not on a cached apply's path)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


_NOTHING = _Nothing()


class _Forwarding:
    """SIGINT, SIGTERM and SIGHUP to handler inside the block; the old handlers after."""

    def __init__(self, handler: Callable[[int, Any], None]):
        self.handler = handler
        self.old: dict[int, Any] = {}

    def __enter__(self) -> None:
        self.old = {s: _signal.getsignal(s) for s in FORWARDED}
        try:
            for s in FORWARDED:
                _signal.signal(s, self.handler)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> bool:
        for s, h in self.old.items():
            _signal.signal(s, h)
        return False


class Supervised(Waiter):
    """The shared supervisor's way (supervisor.py), one per workload: block on
    the agent's channel (no polling: hundreds of them share one process, and
    one fd each), and return early when woken from another thread: a stop
    request, or the plan changed live (the caller re-reads the time limit).
    A wake nudges the agent (a HELLO whose reply is skipped) so that the
    channel becomes readable.  With `every` set, on_tick(w) runs at that
    interval while it waits (lifecycle.reconcile)."""

    def __init__(self) -> None:
        import threading

        self._asked = False
        self._woken = threading.Event()
        self._current: Workload | None = None
        self.every: float | None = None
        self.on_tick: Callable[[Any], None] | None = None
        self._next_tick: float | None = None

    def wake(self) -> None:
        """From another thread: return from wait() or pause() now."""
        self._woken.set()
        w = self._current
        agent = getattr(w, "agent", None)
        if agent is not None:
            try:
                agent.nudge()
            except (LinxError, OSError):
                pass  # ending: the wait returns all the same

    def request_stop(self) -> None:
        self._asked = True
        self.every = None  # nothing to reconcile in a workload being stopped
        self.wake()

    def _block(self, w: Workload, seconds: float | None) -> None:
        """Until w's agent channel is readable (an end, or a nudge's reply) or seconds pass."""
        import select

        poller = select.poll()
        poller.register(w.agent.fileno(), select.POLLIN)
        poller.poll(None if seconds is None else seconds * 1000)

    def wait(self, w: Workload, timeout: float | None) -> End | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._current = w
        try:
            while True:
                end = w.poll(0)
                if end is not None or self._asked:
                    return end
                if self._woken.is_set():
                    self._woken.clear()
                    return None
                now = time.monotonic()
                if self.every and self.on_tick is not None:
                    if self._next_tick is None:
                        self._next_tick = now + self.every
                    if now >= self._next_tick:
                        self._next_tick = now + self.every
                        self.on_tick(w)
                        continue
                if deadline is not None and now >= deadline:
                    return None
                lefts = [t - now for t in (deadline, self._next_tick if self.every else None) if t is not None]
                self._block(w, max(0.0, min(lefts)) if lefts else None)
        finally:
            self._current = None

    def pause(self, seconds: float) -> None:
        """The restart backoff, cut short by a stop request."""
        if not self._asked:
            self._woken.wait(seconds)
        self._woken.clear()

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
    deadline = time.monotonic() + grace
    while True:  # a waiter woken early (a live change) waits out the rest of the grace
        end = waiter.wait(w, max(0.0, deadline - time.monotonic()))
        if end is not None:
            return end, "stopped by SIGTERM"
        if time.monotonic() >= deadline:
            break
        waiter.stop_requested()  # a second stop request changes nothing now
    try:
        w.signal(_signal.SIGKILL)
    except LinxError:
        pass
    end = w.poll(None)
    return end, f"killed by SIGKILL after a {seconds(grace)} grace period"


FORWARD_TICK = 0.25  # how often a wait looks at a forwarded stop signal (signal handlers cannot wake it)


def run_to_end(w: Workload, limit: float | None | Callable[[], float | None], waiter: Waiter = PLAIN,
               forwarded: Callable[[], float | None] | None = None) -> Result:
    """Wait for the running workload's end, stopping it at the time limit
    (seconds since it was released; None: none; a callable: asked again each
    time the waiter returns, so that a limit changed live applies) or when a
    stop is requested; then finish: usage collected, everything undone.

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
                lim = limit() if callable(limit) else limit
                remaining = None if lim is None else max(0.0, lim - (time.monotonic() - w.started))
                step = remaining
                if forwarded is not None:
                    step = FORWARD_TICK if remaining is None else min(remaining, FORWARD_TICK)
                end = waiter.wait(w, step)
                if end is not None:
                    break
                if waiter.stop_requested():
                    end, _how = stop(w, grace, waiter)
                    break
                since = forwarded() if forwarded is not None else None
                if since is not None and time.monotonic() >= since + grace:
                    end, how = stop(w, 0.0, waiter, signalled=True)
                    if end.signal == _signal.SIGKILL:
                        reason = f"still running {seconds(grace)} after the forwarded signal: killed by SIGKILL"
                    break
                lim = limit() if callable(limit) else limit
                if lim is not None and time.monotonic() - w.started >= lim - 1e-6:  # (float rounding)
                    timed_out = True
                    end, how = stop(w, grace, waiter)
                    reason = f"timed out after {seconds(lim)}: {how}"
                    break
                # Woken early (the supervisor's plan changed live): wait again.
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
    signals: None (leave them alone) or "forward" (module docstring);
    on_restart(result, delay): told before each restart;
    final_time_limit: the time limit ends the restarts (as `stop NAME` does;
    the detached supervisor's choice)."""

    def __init__(self, plan: Plan, *, waiter: Waiter = PLAIN, timeout: float | None = -1,
                 signals: str | None = None, on_restart: Callable[[Result, float], None] | None = None,
                 final_time_limit: bool = False):
        if signals not in (None, "forward"):
            raise ValueError(signals)
        self.final_time_limit = final_time_limit
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
                    result = run_to_end(w, lambda: self.limit, self.waiter,
                                        (lambda: self.term_forwarded) if self.signals == "forward" else None)
                self.current = None
                result.restarts = self.restarts
                if result.timed_out and self.final_time_limit:
                    self.stopping = True  # the supervisor treats its time limit as `stop NAME`
                if self.stopping or not should_restart(self.plan, result, self.restarts):
                    return result
                delay = restart_delay(self.plan, self.restarts)
                if self.on_restart:
                    self.on_restart(result, delay)
                self.waiter.pause(delay)
                if self.stopping:
                    return result
                self.restarts += 1

    # --- signals ------------------------------------------------------------------
    def _signals(self) -> _Forwarding | _Nothing:
        return _NOTHING if self.signals is None else _Forwarding(self._forward)

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

    # --- from another thread (the shared supervisor) ------------------------------
    def request_stop(self) -> None:
        """`linx-spec stop NAME`: stop the running workload (SIGTERM, its
        stop_grace, SIGKILL, done by the thread that runs it) and no restart."""
        self.stopping = True
        self.waiter.request_stop()  # type: ignore[attr-defined]  # a Supervised waiter

    def reload(self, plan: Plan) -> None:
        """The plan changed live (`apply`): the restart policy and the time limit
        are the new plan's from now on; the wait is woken to see the new limit."""
        self.plan = plan
        self.limit = plan.lifecycle.timeout
        wake = getattr(self.waiter, "wake", None)
        if wake is not None:
            wake()
