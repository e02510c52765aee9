"""`apply` once the plan exists, without typer: used by the CLI command
(commands.py) and by the cached-plan fast path (cli.py -> fastpath.py).

    apply_plan(plan, verbose, pty, detach) -> exit code
      foreground: run_foreground() (signals forwarded, restarts, the time
                  limit), the end reported on stderr; the workload's code,
                  128+N when killed by signal N, 124 when its time limit expired,
                  130 when interrupted before it ran
      detached:   detach.start_detached(); its name on stdout; 0
      running:    a detached workload of that name runs: converged live
                  (live.py), the report on stdout; 0, 70 when a knob
                  failed, 66 (PlanError) when a field needs --restart

A LinxError propagates: the caller's one handler (errors.report) maps it.
"""

from __future__ import annotations

import os
import sys
import time

from .lifecycle import PLAIN, Lifecycle, end_words, usage_lines

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Callable
    from .plan.workload import Plan
    from .runner import Reporter, Result

TIMED_OUT = 124  # as timeout(1)
INTERRUPTED = 130  # 128 + SIGINT, as a shell


def run_foreground(plan: Plan, *, on_step: Reporter | None = None, timeout: float | None = -1,
                   pty: bool | None = None, on_restart: Callable[[Result, float], None] | None = None) -> Result:
    """For the CLI: SIGINT/SIGTERM/SIGHUP go to the workload once it runs; before
    that they interrupt the setup (KeyboardInterrupt), which rolls back.  A signal
    received while a restart is pending ends the loop.  pty (default: the plan's
    `stdio: pty`) proxies the caller's terminal."""
    from .runner import Workload

    use_pty = plan.stdio.pty if pty is None else pty
    if use_pty and not (os.isatty(0) and os.isatty(1)):
        # As ssh without -tt: a pty over a pipe or a file would never see end of
        # input (a terminal has no EOF, only ^D) and would write the program's
        # terminal control sequences (bracketed paste, colours) into the file.
        # The workload gets linx-spec's own streams instead.
        which = "stdin" if not os.isatty(0) else "stdout"
        _say(f"{which} is not a terminal: no pseudo-terminal for the workload, it gets linx-spec's own streams")
        use_pty = False
    if use_pty:
        from .tty import Terminal

        waiter = Terminal()
    else:
        waiter = PLAIN
    lifecycle = Lifecycle(plan, waiter=waiter, timeout=timeout, signals="forward", on_restart=on_restart)
    return lifecycle.run(lambda: Workload(plan, on_step=on_step, pty=use_pty))


def _say(text: str) -> None:
    print(f"linx-spec: {text}", file=sys.stderr)


def _summary(result: Result, wall_seconds: float) -> None:
    """After a foreground run, as `systemd-run --wait`: how it ended and what it used."""
    words = "timed out" if result.timed_out else ("ok" if result.ok else "failed")
    _say(f"{result.name}: result: {words}, {end_words(result.exit_code, result.signal)}"
         + (f", {result.restarts} restarts" if result.restarts else ""))
    _say(f"{result.name}: wall time: {wall_seconds:.3f}s")
    for line in usage_lines(result.usage):
        _say(f"{result.name}: {line}")


def _has_state(name: str) -> bool:
    """A detached workload of that name has state: the common case (none) costs
    one stat and no import (live.py and state.py are ~6 ms of a cached apply)."""
    from . import rundir

    return os.path.exists(os.path.join(rundir.root_path(), name, "state.json"))


def _refuse_running_detached(name: str) -> None:
    """A foreground run of a name that is starting or restarting detached would
    share its cgroup and interface names and undo them under it at its end:
    refused (exit 72).  A running one is converged instead (live.py)."""
    if not _has_state(name):
        return
    from .errors import StateError
    from .state import StateDir

    try:
        view = StateDir.open(name).view()
    except StateError:
        return
    if view.status in ("running", "starting", "restarting", "ending"):
        raise StateError(f"a workload named `{name}` runs detached ({view.status}); stop it "
                         f"(`linx-spec stop {name}`) or run this one under another name (--set name=...)")


def apply_plan(plan: Plan, *, verbose: bool = False, pty: bool | None = None, detach: bool = False,
               restart: bool = False, revert_released: bool = False, quiet: bool = False) -> int:
    """Run the plan as `linx-spec apply` does; -> the exit code (module docstring).
    quiet (-q): nothing on stdout or stderr but the workload's output and errors."""
    if _has_state(plan.name):
        from .live import running

        if running(plan.name):
            return converge(plan, restart=restart, revert_released=revert_released, quiet=quiet)
    if detach:
        from .detach import start_detached

        if pty:
            from .errors import StateError

            raise StateError("a detached workload cannot have a terminal (-t with -d, or stdio: pty)")

        name, pid = start_detached(plan)
        if not quiet:
            print(name)
        if verbose:
            _say(f"{name} runs detached, host pid {pid}")
        return 0

    _refuse_running_detached(plan.name)

    def report(step: str, side: str, seconds: float) -> None:
        _say(f"{step:<13} ({side:<5}) {seconds * 1000:8.3f} ms")

    def restarting(result: Result, delay: float) -> None:
        if not quiet:
            _say(f"{result.name}: ended ({end_words(result.exit_code, result.signal)}); restarting in {delay:g}s")

    began = time.monotonic()
    try:
        result = run_foreground(plan, on_step=report if verbose else None, pty=pty, on_restart=restarting)
    except KeyboardInterrupt:
        _say("interrupted before the workload ran; everything was rolled back")
        return INTERRUPTED
    if result.reason and not quiet:
        _say(f"{result.name}: {result.reason}")
    elif result.signal is not None and verbose:
        _say(f"{result.name}: {end_words(None, result.signal)}")
    if verbose or (plan.lifecycle.summary and not quiet):  # -v, or the spec asks (lifecycle.summary)
        _summary(result, time.monotonic() - began)
    return TIMED_OUT if result.timed_out else result.status


def converge(plan: Plan, *, restart: bool = False, revert_released: bool = False, quiet: bool = False) -> int:
    """`apply` of a running detached workload: reconcile it, print the report
    field by field (not with quiet); -> 0, or 70 when a knob could not be changed."""
    from .errors import StepError
    from .live import reconcile

    report = reconcile(plan.name, plan, restart=restart, revert_released=revert_released)
    if not quiet:
        print(report.text())
    if report.restarted_pid is not None and not quiet:
        print(f"{plan.name}: restarted, host pid {report.restarted_pid}")
    if report.failed:
        first = report.failed[0]
        _say(f"{plan.name}: {len(report.failed)} change(s) failed, the workload runs on; first: {first.error}")
        return StepError.exit_code
    return 0
