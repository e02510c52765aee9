"""Detached workloads: `apply --detach` and the commands that manage them.

`apply --detach` forks a supervisor (a new session, stdio on /dev/null) that
runs the workload exactly as `apply` would (restart policy and time limit
included), keeps its state in the runtime directory (state.py), and returns
once the workload runs.  With `lifecycle.orphan: linger` the agent keeps the
workload even if the supervisor is killed, and records its end in `exit`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LinxError, StateError, from_record, to_record
from .lifecycle import Lifecycle, Supervised, end_words, usage_lines
from .plan.workload import Plan
from .state import StateDir, View, all_views, alive, pid_start_time

if TYPE_CHECKING:
    from .runner import Result, Workload


def _stream_fd(sd: StateDir, plan: Plan, index: int) -> tuple[int | None, str | None]:
    """Detached default: stdin /dev/null, stdout/stderr to log files in the state dir."""
    stream = (plan.stdio.stdin, plan.stdio.stdout, plan.stdio.stderr)[index]
    if stream.kind == "file":
        return None, stream.path  # the Workload opens it as the plan says
    if index == 0 or stream.kind in ("null", "pty"):
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC), None
    path = sd.path / ("stdout.log" if index == 1 else "stderr.log")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640), str(path)


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
    if plan.stdio.pty:
        raise StateError("a detached workload cannot have a terminal (stdio: pty / -t)")
    sd = StateDir.create(plan.name)
    sd.save_plan(plan)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor
        code = 1
        try:
            os.close(r)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            code = _supervise(plan, sd, w)
        except BaseException:  # noqa: BLE001 - the supervisor must never leave a traceback
            code = 1
        finally:
            _settle_network()
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    message = b"".join(chunks).decode()
    kind, _, rest = message.partition(" ")
    if kind == "running":
        return plan.name, int(rest)
    os.waitpid(pid, 0)
    sd.remove()
    if kind == "error":
        try:
            raise from_record(json.loads(rest))
        except json.JSONDecodeError:
            pass
    raise StateError("the supervisor died before the workload ran")


def _supervise(plan: Plan, sd: StateDir, ready_fd: int) -> int:
    """The supervisor's life: the plan run by the lifecycle (restarts, time limit,
    `stop NAME` as SIGTERM), the state file kept up to date; -> its exit status."""
    from .runner import Workload

    lifecycle = Lifecycle(plan, waiter=Supervised(), signals="supervise")
    sd.update(supervisor_pid=os.getpid(), supervisor_pid_start=pid_start_time(os.getpid()))
    linger = str(sd.exit_file) if plan.lifecycle.orphan == "linger" else None
    fds: list[tuple[int | None, str | None]] = []

    def new() -> Workload:
        fds[:] = [_stream_fd(sd, plan, i) for i in range(3)]
        # A restart runs the plan as last converged live (live.py saves it), so
        # limits changed by `apply` survive the restart policy.
        return Workload(_current_plan(sd, plan), stdin=fds[0][0], stdout=fds[1][0], stderr=fds[2][0],
                        session=True, linger_path=linger)

    def start(w: Workload) -> None:
        try:
            lifecycle.start(w)
        finally:
            for fd, _ in fds:
                if fd is not None:
                    os.close(fd)

    def started(w: Workload) -> None:
        nonlocal ready_fd
        sd.update(status="running", host_pid=w.pid, host_pid_start=pid_start_time(w.pid),
                  agent_pid=w.agent.pid, started=time.time(), restarts=lifecycle.restarts, spec_hash=plan.spec_hash,
                  stdout=fds[1][1], stderr=fds[2][1], detail="")
        if ready_fd >= 0:
            os.write(ready_fd, f"running {w.pid}".encode())
            os.close(ready_fd)
            ready_fd = -1

    def ended(result: Result, delay: float | None = None) -> None:
        words = result.reason or end_words(result.exit_code, result.signal)
        # During the backoff the supervisor lives and will start it again:
        # "restarting", so `ps` does not say "exited" and `stop` knows to stop it.
        sd.update(status="exited" if delay is None else "restarting", exit_code=result.exit_code,
                  signal=result.signal, ended=time.time(), usage=result.usage, restarts=lifecycle.restarts,
                  detail=words if delay is None else f"{words}; restarting in {delay:g}s")

    lifecycle.on_restart = ended
    try:
        ended(lifecycle.run(new, start, started))
    except LinxError as exc:
        if ready_fd >= 0:
            os.write(ready_fd, ("error " + json.dumps(to_record(exc))).encode())
            os.close(ready_fd)
            return exc.exit_code
        sd.update(status="failed", detail=f"restart {lifecycle.restarts} failed: {exc}")
        return 1
    return 0


def _current_plan(sd: StateDir, plan: Plan) -> Plan:
    try:
        saved = sd.load_plan()
    except StateError:
        return plan
    return saved if saved.spec_hash != plan.spec_hash else plan


# --- commands ------------------------------------------------------------------

def format_ps(views: list[View]) -> str:
    rows = [("NAME", "STATUS", "PID", "STARTED", "RESTARTS", "DETAIL")]
    for v in views:
        st = v.state
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["started"])) if st.get("started") else "-"
        rows.append((v.name, v.status, str(st.get("host_pid", "-")) if v.status == "running" else "-", started,
                     str(st.get("restarts", 0)), v.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)


def live_pid(name: str) -> int:
    view = StateDir.open(name).view()
    if view.status != "running":
        raise StateError(f"`{name}` is not running ({view.status}{': ' + view.detail if view.detail else ''})")
    return view.state["host_pid"]


def kill(name: str, signo: int) -> None:
    pid = live_pid(name)
    os.kill(pid, signo)


def stop(name: str, grace: float | None = None) -> str:
    """TERM, grace, KILL; through the supervisor when it lives (so it does not restart)."""
    sd = StateDir.open(name)
    view = sd.view()
    st = view.state
    if view.status == "restarting":  # waiting out a backoff: its supervisor ends the loop on SIGTERM
        os.kill(st["supervisor_pid"], signal.SIGTERM)
        return _wait_supervisor(sd, st)
    if view.status != "running":
        return view.status
    plan = sd.load_plan()
    grace = plan.lifecycle.stop_grace if grace is None else grace
    if st.get("paused") and plan.cgroup is not None:
        from .host.cgroup_live import set_frozen

        set_frozen(st["host_pid"], plan.cgroup, name, False)  # a frozen task cannot act on SIGTERM
        sd.update(paused=False)
    if alive(st.get("supervisor_pid"), st.get("supervisor_pid_start")):
        os.kill(st["supervisor_pid"], signal.SIGTERM)
    else:
        os.kill(st["host_pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(st["host_pid"], st["host_pid_start"]):
        time.sleep(0.05)
    if alive(st["host_pid"], st["host_pid_start"]):
        os.kill(st["host_pid"], signal.SIGKILL)
    return _wait_supervisor(sd, st)


def supervisor_alive(st: dict) -> bool:
    return alive(st.get("supervisor_pid"), st.get("supervisor_pid_start"))


def _wait_supervisor(sd: StateDir, st: dict, seconds: float = 10) -> str:
    """Wait for the supervisor (or lingering agent) to record the end; -> the status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = sd.view()
        if v.status not in ("running", "starting", "restarting") and not supervisor_alive(st):
            return v.status
        time.sleep(0.05)
    return sd.view().status


def logs(name: str, stream: str = "stdout") -> Path:
    sd = StateDir.open(name)
    path = sd.read().get(stream)
    if not path:
        raise StateError(f"`{name}` has no {stream} log: its {stream} was not sent to a file")
    return Path(path)


ACTIVE = ("running", "starting", "restarting")


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
    if view.status in ("running", "starting", "restarting"):
        if not force:
            raise StateError(f"`{name}` is {view.status}; stop it first, or use --force")
        stop(name)
    st = sd.view().state
    if supervisor_alive(st):
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
    view = StateDir.open(name).view()
    return {"name": view.name, "status": view.status, "detail": view.detail,
            **{k: v for k, v in view.state.items() if k not in ("name", "status", "detail")}}


__all__ = ["start_detached", "all_views", "format_ps", "kill", "stop", "logs", "delete", "status_text", "status_record", "wait", "follow_log", "restart"]
