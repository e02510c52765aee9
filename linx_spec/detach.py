"""Detached workloads: `apply --detach` and the commands that manage them.

`apply --detach` claims the name (state.py), stores the plan, and asks the
shared supervisor of the runtime directory (supervisor.py: one process for
all detached workloads, started on demand) to run it; it returns once the
workload runs.  The supervisor runs each workload exactly as `apply` would
(restart policy and time limit included) in a thread of its own
(supervise() below) and keeps its state up to date.  With `lifecycle.orphan:
linger` the agent keeps the workload even if the supervisor is killed, and
records its end in `exit`; without, the agent stops it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from .errors import StateError, from_record
from .lifecycle import usage_lines
from .plan.workload import Plan
from .state import StateDir, alive
from .views import ACTIVE, all_views, format_ps  # noqa: F401 - `ps`, through this module too



def _settle_network() -> None:
    """os._exit skips atexit: the veth deletes still running in the background
    (host/network_teardown.py) are waited for here."""
    teardown = sys.modules.get("linx_spec.host.network_teardown")
    if teardown is not None:
        try:
            teardown.settle()
        except BaseException:  # noqa: BLE001 - on the way out; the kernel removes the pair with the netns
            pass


def start_detached(plan: Plan) -> tuple[str, int]:
    """-> (name, host pid) once the workload runs; raises what its start raised."""
    from .supervisor_client import call

    if plan.stdio.pty:
        raise StateError("a detached workload cannot have a terminal (stdio: pty / -t)")
    sd = StateDir.create(plan.name)
    try:
        sd.save_plan(plan)
        reply = call("start", plan.name, start=True, timeout=None)
    except BaseException:
        sd.remove()
        raise
    if reply is not None and reply["ok"] and isinstance(reply.get("pid"), int):
        return plan.name, reply["pid"]
    sd.remove()  # the supervisor writes nothing more after an error reply
    error = reply.get("error") if reply else None
    if isinstance(error, dict):
        raise from_record(error)
    raise StateError(f"the supervisor did not start `{plan.name}`: {error or 'no answer'}")


def notify_reload(name: str) -> None:
    """Tell the supervisor that the plan of `name` changed live (restart policy,
    time limit, reconcile interval); nothing when none supervises it."""
    from .supervisor_client import call

    call("reload", name)


# --- commands ------------------------------------------------------------------

def live_pid(name: str) -> int:
    view = StateDir.open(name).view()
    if view.status != "running":
        raise StateError(f"`{name}` is not running ({view.status}{': ' + view.detail if view.detail else ''})")
    return view.state["host_pid"]


def kill(name: str, signo: int) -> None:
    pid = live_pid(name)
    os.kill(pid, signo)


START_WAIT_S = 120.0  # how long `stop` waits for a start to settle before it gives up (exit 72)


def _starting(view) -> bool:
    """Its start is under way: its supervisor is at it, or the `apply -d` that
    claimed the name has not handed it over yet (both alive)."""
    st = view.state
    if st.get("status") != "starting":
        return False
    return view.status == "starting" or (view.status == "dead" and not st.get("supervisor_pid")
                                         and alive(st.get("creator_pid"), st.get("creator_pid_start")))


def _wait_started(sd: StateDir, seconds: float = START_WAIT_S):
    """`stop` of a workload that is starting (runc and podman wait too): the stop is
    lodged with its supervisor as soon as one has it (so it is stopped the moment it
    runs, and not restarted, even if this wait is interrupted), then the start is
    waited for.  -> the view once it is no longer starting; None when its start
    failed (`apply -d` removed the state)."""
    deadline = time.monotonic() + seconds
    asked = False
    while True:
        view = sd.view()
        if not sd.state_file.exists():
            return None
        if not _starting(view):
            return view
        if not asked and supervisor_alive(view.state):
            asked = _ask_stop(sd.name, view.state)
        if time.monotonic() >= deadline:
            tail = "; the stop request stands: it is stopped as soon as it runs" if asked else ""
            raise StateError(f"`{sd.name}` is still starting after {seconds:g}s (its start waits on something: "
                             f"a FIFO in its stdio, a slow mount or network device?){tail}")
        time.sleep(0.05)


def stop(name: str, grace: float | None = None) -> str:
    """TERM, grace, KILL; through the supervisor when it lives (so it does not restart).
    A workload that is starting is stopped once its start settles (_wait_started)."""
    sd = StateDir.open(name)
    view = sd.view()
    if _starting(view):
        started = _wait_started(sd)
        if started is None:
            return "not started (its start failed)"
        view = started
    st = view.state
    if view.status in ("restarting", "ending"):  # a backoff, or just ended: the supervisor ends the loop
        _ask_stop(name, st)
        return _wait_supervisor(sd, st)
    if view.status != "running":
        return view.status
    plan = sd.load_plan()
    grace = plan.lifecycle.stop_grace if grace is None else grace
    if st.get("paused") and plan.cgroup is not None:
        from .host.cgroup_live import set_frozen

        set_frozen(st["host_pid"], plan.cgroup, name, False)  # a frozen task cannot act on SIGTERM
        sd.update(paused=False)
    if not _ask_stop(name, st):
        _kill(st["host_pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(st["host_pid"], st["host_pid_start"]):
        time.sleep(0.05)
    if alive(st["host_pid"], st["host_pid_start"]):
        _kill(st["host_pid"], signal.SIGKILL)
    return _wait_supervisor(sd, st)


def _kill(pid: int, signo: int) -> None:
    """A workload that ended between the liveness check and the signal is not an error."""
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass


def _ask_stop(name: str, st: dict) -> bool:
    """`stop NAME` to its supervisor; False when none supervises it."""
    from .supervisor_client import call

    if not supervisor_alive(st):
        return False
    reply = call("stop", name)
    return bool(reply and reply["ok"])


def supervisor_alive(st: dict) -> bool:
    return alive(st.get("supervisor_pid"), st.get("supervisor_pid_start"))


def supervised(st: dict) -> bool:
    """Its supervisor may still write its state: it is active there and the
    supervisor lives (the final status is the supervisor's last write of it)."""
    return st.get("status") in ACTIVE and supervisor_alive(st)


def _wait_supervisor(sd: StateDir, st: dict, seconds: float = 10) -> str:
    """Wait for the supervisor (or lingering agent) to record the end; -> the status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = sd.view()
        if v.status not in ACTIVE and not supervised(v.state):
            return v.status
        time.sleep(0.05)
    return sd.view().status


def logs(name: str, stream: str = "stdout") -> Path:
    sd = StateDir.open(name)
    path = sd.read().get(stream)
    if not path:
        raise StateError(f"`{name}` has no {stream} log: its {stream} was not sent to a file")
    return Path(path)


def restart(name: str, grace: float | None = None) -> tuple[str, int]:
    """stop, then start_detached of the same stored plan (not the file: it may
    have changed; `apply` again for that)."""
    sd = StateDir.open(name)
    plan = sd.load_plan()
    stop(name, grace)
    delete(name)  # refuses while a supervisor still lives
    return start_detached(plan)


def wait(name: str, tick: float = 0.1) -> int:
    """Until the workload has ended for good; -> its shell-style status."""
    sd = StateDir.open(name)
    while (view := sd.view()).status in ACTIVE:
        time.sleep(tick)
    st = view.state
    if view.status != "exited":
        raise StateError(f"`{name}` is {view.status}{': ' + view.detail if view.detail else ''}")
    return st["exit_code"] if st.get("signal") is None else 128 + st["signal"]


def follow_log(name: str, path: Path, tail: int | None, follow: bool, out) -> None:
    """Copy the log to out: the last `tail` lines (all when None), then with
    follow what is appended until the workload has ended for good."""
    data = path.read_bytes() if path.exists() else b""
    if tail is not None:
        data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
    out.write(data)
    out.flush()
    if not follow:
        return
    sd = StateDir.open(name)
    offset = path.stat().st_size if path.exists() else 0
    while True:
        active = sd.view().status in ACTIVE  # read before the file: nothing written last is lost
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(65536):
                    out.write(chunk)
                    offset += len(chunk)
            out.flush()
        if not active:
            return
        time.sleep(0.1)


def delete(name: str, force: bool = False) -> None:
    sd = StateDir.open(name)
    view = sd.view()
    if view.status in ACTIVE:
        if not force:
            raise StateError(f"`{name}` is {view.status}; stop it first, or use --force")
        stop(name)
    st = sd.view().state
    if supervised(st):
        # Its supervisor would write into a removed directory, or restart the
        # workload with no state to find it by: never remove the state under it.
        raise StateError(f"the supervisor of `{name}` (pid {st['supervisor_pid']}) still runs; "
                         f"`linx-spec stop {name}` and delete again")
    sd.remove()


def status_text(name: str) -> str:
    view = StateDir.open(name).view()
    lines = [f"name:     {view.name}", f"status:   {view.status}" + (f" ({view.detail})" if view.detail else "")]
    st = view.state
    for key in ("host_pid", "agent_pid", "supervisor_pid", "spec_hash", "restarts"):
        if key in st:
            lines.append(f"{key + ':':<9} {st[key]}")
    if st.get("started"):
        lines.append(f"started:  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['started']))}")
    if st.get("ended") and view.status != "running":
        lines.append(f"ended:    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['ended']))}")
    for line in usage_lines(st.get("usage") or {}):
        lines.append(f"usage:    {line}")
    return "\n".join(lines)


def status_record(name: str) -> dict:
    """`status --json`: the view and the state file's fields."""
    from .views import record

    return record(StateDir.open(name).view())


__all__ = ["start_detached", "notify_reload", "all_views", "format_ps", "kill", "stop", "logs", "delete", "status_text", "status_record", "wait", "follow_log", "restart"]
