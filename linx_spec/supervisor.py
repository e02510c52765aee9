"""The shared supervisor: one process per runtime directory supervises every
detached workload in it (issue 23).

A Python supervisor per workload kept about 27 MiB resident for the workload's
whole life; one shared by all of them costs its base once and well under
2 MiB per workload beside the agent (bench/README.md "Detached workloads at
scale", docs/architecture.md).  The agent stays one per workload: the
workload's parent and reaper, and the safety net when the supervisor dies
(`kill -9` of it: every agent sees its channel close and stops its workload,
or with `orphan: linger` keeps it and writes its end to `exit`).

    linx-spec (any command)                 supervisor (comm linx-supervisor)
    -----------------------                 ---------------------------------
    apply -d: RUNDIR/NAME/{state,plan}.json
      connect RUNDIR/supervisor.sock  ----> started on demand; one per RUNDIR
      {"op": "start", "name": N}  --------> a thread for N: the lifecycle
                <-------------------------- {"ok": true, "pid": P}  once it runs
                                        or  {"ok": false, "error": {record}}
    stop:   {"op": "stop", "name": N} ----> SIGTERM, stop_grace, SIGKILL; no restart
    apply (live change of lifecycle):
            {"op": "reload", "name": N} --> plan.json read again: restart policy,
                                            time limit, reconcile interval
                <-------------------------- {"ok": true} | {"ok": false, "error": "..."}
    (the last workload ended) ------------> socket removed, exit

One request per connection, one JSON line of at most 4 KiB each way; the
peer's uid (SO_PEERCRED) must be ours or root, and the socket lives in the
checked 0700 runtime directory, reached through its fd (/proc/self/fd/N/...,
which also keeps the path short of sockaddr_un's 108 bytes).  A flock on
RUNDIR/supervisor.lock makes it one per directory; a socket left by a killed
one is replaced.  Nothing but the plan.json (read through stored.py) and
names come in; no request runs code.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import rundir
from .errors import LinxError, StateError, to_record
from .lifecycle import end_words
from .state import HOST_ENDS, StateDir, pid_start_time
from .supervisor_client import LOCK, SOCKET, _read_line, _sock_path

if TYPE_CHECKING:
    from .plan.workload import Plan
    from .runner import Result, Workload

COMM = "linx-supervisor"
IDLE_SECONDS = 5.0


# --- one workload's life, in its thread ----------------------------------------------------

def _stream_fd(sd: StateDir, plan: Plan, index: int) -> tuple[int | None, str | None]:
    """Detached default: stdin /dev/null, stdout/stderr to log files in the state dir."""
    stream = (plan.stdio.stdin, plan.stdio.stdout, plan.stdio.stderr)[index]
    if stream.kind == "file":
        return None, stream.path  # the Workload opens it as the plan says
    if index == 0 or stream.kind in ("null", "pty"):
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC), None
    path = sd.path / ("stdout.log" if index == 1 else "stderr.log")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640), str(path)


def supervise(job: Job) -> None:
    """One detached workload's life in the shared supervisor's thread: the plan
    run by the lifecycle (restarts, time limit, `stop NAME`), the state file
    kept up to date, the start's outcome replied to `apply -d`."""
    from .runner import Workload

    sd, plan, lifecycle = job.sd, job.plan, job.lifecycle
    sd.update(supervisor_pid=os.getpid(), supervisor_pid_start=pid_start_time(os.getpid()))
    linger = str(sd.exit_file) if plan.lifecycle.orphan == "linger" else None
    fds: list[tuple[int | None, str | None]] = []
    replied = False
    run_pid = 0  # the host pid of the current (or last) run
    job.waiter.every = plan.lifecycle.reconcile_interval
    job.waiter.on_tick = lambda w: _reconcile_tick(sd, fds)

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
        nonlocal replied, run_pid
        run_pid = w.pid
        sd.update(status="running", host_pid=w.pid, host_pid_start=pid_start_time(w.pid),
                  agent_pid=w.agent.pid, started=time.time(), restarts=lifecycle.restarts, spec_hash=w.plan.spec_hash,
                  stdout=fds[1][1], stderr=fds[2][1], detail="")
        if not replied:
            replied = True
            job.reply({"ok": True, "pid": w.pid})

    def ended(result: Result, delay: float | None = None) -> None:
        _delete_live_host_ends(sd, run_pid, plan)  # before the end is recorded: `stop` waits for that
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
        if not replied:
            job.reply({"ok": False, "error": to_record(exc)})
            return
        sd.update(status="failed", detail=f"restart {lifecycle.restarts} failed: {exc}")


def _delete_live_host_ends(sd: StateDir, pid: int, plan: Plan) -> None:
    """The host ends of veths a live `apply` added to the run that just ended
    (live.py records them in state.json: they are not on the Workload's undo list,
    which was made at start) are deleted as the start's are, off the critical path
    (host/network_teardown.py).  Never fails the end's record."""
    try:
        if not pid or HOST_ENDS not in sd.read():
            return
        from .live import host_ends_of

        taken: list[tuple[str, int, frozenset[str]]] = []
        current = _current_plan(sd, plan)  # the names it may have: its veths' host.name

        def take(state: dict[str, Any]) -> None:
            taken[:] = host_ends_of(state, pid, current)
            state.pop(HOST_ENDS, None)  # the others are of runs gone before: nothing to check them against

        sd.modify(take)
        from .host.network import _delete_link_later

        for name, index, addresses in taken:
            _delete_link_later(index, name, addresses)  # only if the index still names it
    except (LinxError, OSError):
        pass  # the kernel deletes the pair when the workload's netns goes


def _reconcile_tick(sd: StateDir, fds: list[tuple[int | None, str | None]]) -> None:
    """lifecycle.reconcile: restore drift to the plan last applied (live.py),
    each correction (or failure) a line in the workload's stderr log."""
    from .live import reconcile_saved

    try:
        report = reconcile_saved(sd.name)
        if report is None:
            return  # a live apply is converging it now: the next tick looks again
        lines = [f"{c.line()}" for c in report.applied if c.how == "live"] + \
                [f"{c.line()}" for c in report.failed]
    except LinxError as exc:
        lines = [f"failed: {exc}"]
    log = fds[2][1] if len(fds) == 3 else None
    if not lines or not log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = "".join(f"linx-spec reconcile {stamp} {sd.name}: {line}\n" for line in lines)
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _current_plan(sd: StateDir, plan: Plan) -> Plan:
    try:
        saved = sd.load_plan()
    except StateError:
        return plan
    return saved if saved.spec_hash != plan.spec_hash else plan


def _record(message: str) -> dict[str, Any]:
    return to_record(StateError(message))


# --- the supervisor ---------------------------------------------------------------------------

class Job:
    """One detached workload, supervised by a thread of its own."""

    def __init__(self, sup: "Supervisor", name: str, conn: socket.socket):
        from .lifecycle import Lifecycle, Supervised
        from .state import StateDir

        self.sup = sup
        self.name = name
        self.conn: socket.socket | None = conn
        self.sd = StateDir.open(name)
        self.plan = self.sd.load_plan()
        self.waiter = Supervised()
        self.lifecycle = Lifecycle(self.plan, waiter=self.waiter, final_time_limit=True)
        self.thread = threading.Thread(target=self._run, name=f"linx-{name}", daemon=True)

    def reply(self, message: dict[str, Any]) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # the client went away: the workload runs all the same
        finally:
            self.conn.close()
            self.conn = None

    def reload(self) -> None:
        plan = self.sd.load_plan()
        self.lifecycle.reload(plan)
        self.waiter.every = plan.lifecycle.reconcile_interval

    def _run(self) -> None:
        try:
            supervise(self)
        except BaseException as exc:  # noqa: BLE001 - one workload's failure never ends the others'
            if self.conn is not None:
                self.reply({"ok": False, "error": _record(f"the supervisor failed to start it: {exc!r}")})
            else:
                try:
                    self.sd.update(status="failed", detail=f"the supervisor failed: {exc!r}")
                except Exception:  # noqa: BLE001 - the state may be gone (delete --force)
                    pass
        finally:
            if self.conn is not None:
                self.conn.close()
            self.sup.done(self)


class Supervisor:
    def __init__(self, root_fd: int, listener: socket.socket):
        self.root_fd = root_fd
        self.listener = listener
        self.jobs: dict[str, Job] = {}
        self.mu = threading.Lock()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.stopping = False

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def done(self, job: Job) -> None:
        with self.mu:
            if self.jobs.get(job.name) is job:
                del self.jobs[job.name]
        self.wake()

    def serve(self) -> None:
        import select

        while True:
            with self.mu:
                idle = not self.jobs
            # Started for a client that never came: leave after a while.
            ready, _, _ = select.select([self.listener, self.wake_r], [], [], IDLE_SECONDS if idle else None)
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 64):
                        pass
                except BlockingIOError:
                    pass
                if self.stopping:
                    with self.mu:
                        jobs = list(self.jobs.values())
                    for job in jobs:
                        job.lifecycle.request_stop()
            if self.listener in ready:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    conn = None
                if conn is not None:
                    self._handle(conn)
            with self.mu:
                if not self.jobs:
                    # Idle: no one can connect once the name is gone; a client
                    # whose connection was still queued sees it closed unanswered
                    # and starts a new supervisor.
                    os.unlink(SOCKET, dir_fd=self.root_fd)
                    self.listener.close()
                    return

    def _handle(self, conn: socket.socket) -> None:
        from .state import NAME_RE

        keep = False
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid not in (os.geteuid(), 0):
                return
            conn.settimeout(5)
            req = json.loads(_read_line(conn) or b"null")
            if not (isinstance(req, dict) and isinstance(req.get("op"), str) and isinstance(req.get("name"), str)
                    and NAME_RE.match(req["name"])):
                return self._send(conn, {"ok": False, "error": "a malformed request"})
            op, name = req["op"], req["name"]
            with self.mu:
                job = self.jobs.get(name)
            if op == "start":
                if job is not None or self.stopping:
                    return self._send(conn, {"ok": False, "error": _record(f"`{name}` is supervised already")})
                conn.settimeout(None)
                job = Job(self, name, conn)
                with self.mu:
                    self.jobs[name] = job
                keep = True
                job.thread.start()
            elif job is None:
                self._send(conn, {"ok": False, "error": f"`{name}` is not supervised here"})
            elif op == "stop":
                job.lifecycle.request_stop()
                self._send(conn, {"ok": True})
            elif op == "reload":
                job.reload()
                self._send(conn, {"ok": True})
            else:
                self._send(conn, {"ok": False, "error": f"unknown request `{op}`"})
        except Exception as exc:  # noqa: BLE001 - a bad client never ends the supervisor
            self._send(conn, {"ok": False, "error": _record(f"supervisor: {exc}")})
        finally:
            if not keep:
                conn.close()

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass


def _listen(root_fd: int) -> socket.socket | None:
    """The lock, then the socket (a stale one from a killed supervisor replaced);
    None when another supervisor holds the lock."""
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=root_fd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None
    # The lock fd stays open (and locked) for the process's life.
    try:
        os.unlink(SOCKET, dir_fd=root_fd)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(_sock_path(root_fd))
    finally:
        os.umask(old)
    s.listen(128)
    return s


def main() -> int:
    """`python -m linx_spec.supervisor`: fd 3 the runtime directory, fd 4 the
    ready pipe.  Forks once more (see _spawn), then serves until idle."""
    root_fd, ready = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (3, 4))
    os.close(3)
    os.close(4)
    rundir.check_dir_fd(root_fd, rundir.root_path())
    if os.fork() != 0:
        os._exit(0)
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(COMM)
    except OSError:
        pass
    # RLIMIT_NOFILE is left as it is: the agents (and so the workloads) inherit
    # it.  One fd per workload (its agent's channel) is what the supervisor holds.
    listener = _listen(root_fd)
    os.write(ready, b"1")
    os.close(ready)
    if listener is None:
        return 0
    sup = Supervisor(root_fd, listener)

    def on_term(_signo: int, _frame: Any) -> None:
        sup.stopping = True
        sup.wake()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.chdir("/")
    try:
        sup.serve()
    finally:
        # The veth deletes still running in the background (host/network_teardown.py)
        # are waited for before the process goes: nothing of a finished workload remains.
        teardown = sys.modules.get("linx_spec.host.network_teardown")
        if teardown is not None:
            teardown.settle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
