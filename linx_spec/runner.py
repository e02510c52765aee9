"""The one orchestrator: walks steps.py, rolls back on failure.

    Workload(plan)                 the low-level handle
      .spawn()      -> host pid    agent started, child cloned and parked
      .setup()                     host steps against the parked child
      .proceed()                   child steps, execve
      .abort()                     the child never runs; everything undone
      .signal(sig) / .wait() -> Result
      .finish(end) -> Result       after the end: usage read, everything undone
    run(plan) -> Result            all of the above, with the restart policy
    Runner().run(plan) -> Result   the same, each agent forked from one zygote

Waiting, the time limit, stopping, restarts and signals are lifecycle.py's.

Any failure before the workload runs aborts the child and undoes, in reverse,
whatever the host steps created.  After the workload ends, the collectors
registered by host steps read usage (cgroup), then the undo list runs.
"""

from __future__ import annotations

import os
import _signal  # the C module signal.py wraps in enums (~1 ms of a cold start)
import _thread  # allocate_lock without threading (~1 ms of a cold start)
import time

from .agent import Agent, End, Zygote
from .errors import LinxError, host_errors
from .lifecycle import Lifecycle, run_to_end
from .lifecycle import stop as stop_workload
from .plan.stdio import StreamPlan
from .plan.workload import Plan
from .protocol import proceed_attrs
from .record import Factory, Record
from .steps import STEP_BY_ID, STEP_BY_NAME, active_steps, child_order

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any, Callable

    Reporter = Callable[[str, str, float], None]

CAPTURE = "capture"  # stdout/stderr value: collect into Result.stdout / Result.stderr


class StepTiming(Record):
    step: str
    side: str
    seconds: float


class Result(Record, frozen=False):
    """What happened to one workload."""

    name: str
    pid: int  # host pid of the workload
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    core_dumped: bool
    timings: list[StepTiming]
    usage: dict[str, Any] = Factory(dict)  # cgroup figures after exit
    reason: str = ""  # plain words when something outside the program ended it (OOM, seccomp, timeout)
    timed_out: bool = False
    restarts: int = 0
    stdout: bytes | None = None  # when captured
    stderr: bytes | None = None

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
        self.step = ""  # the host step running now: its undo fails under its name
        # The cgroups made before the clone (host/cgroup.py prepare_before_clone),
        # and whether the agent cloned the child straight into it.
        self.cgroup_prepared = workload._cgroup_prepared
        self.spawned_in_cgroup = getattr(workload.agent, "spawned_in_cgroup", False)

    def on_undo(self, what: str, fn: Callable[[], None], after_end: Callable[[], None] | None = None) -> None:
        """fn runs on rollback and after the workload ends, in reverse order;
        after_end, when given, runs instead of fn once the workload ended (a
        rollback always runs fn): a veth's delete is deferred there."""
        step = self.step

        def guarded(call: Callable[[], None]) -> Callable[[], None]:
            def undo() -> None:
                with host_errors(step):
                    call()
            return undo

        self._w._undo.append((what, guarded(fn), guarded(after_end) if after_end is not None else None))

    def after_exit(self, fn: Callable[[Result], None]) -> None:
        """fn runs after the workload ended, before any undo: read usage, find reasons."""
        self._w._after_exit.append(fn)

    def track_cgroup(self, path: str, remove_only: bool = False) -> None:
        """Tell the agent: if the runner dies, kill and remove this cgroup (or,
        remove_only, a parent shared with others: rmdir it if empty)."""
        self._w.agent.track_cgroup(path, remove_only)


def _host_step(name: str) -> Callable[[Plan, HostContext], None]:
    """The host step's entry point, from steps.py (the tests substitute fakes here)."""
    apply = STEP_BY_NAME[name].apply
    if apply is None:
        raise LookupError(f"{name} is not a host step")
    return apply


def _fault(step: str, side: str, agent: Agent | None) -> None:
    """LINX_FAULT=fail:STEP or pause:STEP, for the reliability tests: fail the
    host-side step with EIO, or stop before it (saying so on stderr) until the
    agent goes away or the runner is killed.  Spawn and the child steps are
    the agent's (agent._fault_env): every fault acts inside the normal frame
    sequence."""
    spec = os.environ.get("LINX_FAULT")
    if not spec:
        return
    kind, _, name = spec.partition(":")
    if name != step:
        return
    if kind == "fail":
        from .errors import StepError

        raise StepError(step, side, 5, "injected fault (LINX_FAULT)")
    if kind == "pause":
        import select
        import sys

        print(f"linx-fault: paused before {step}", file=sys.stderr, flush=True)
        # Until the agent hangs up (replies not waited for may arrive meanwhile:
        # readable is not gone), then carry on and fail like the real thing.
        poller = select.poll()
        if agent is not None:
            poller.register(agent.fileno(), select.POLLRDHUP)
        while agent is not None:
            if poller.poll(1000):
                return


def _open_stream(stream: StreamPlan, fd: int) -> int | None:
    """An fd for one stream of the plan (None: inherit)."""
    if stream.kind == "inherit":
        return None
    if stream.kind == "null":
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if stream.kind == "file":
        if fd == 0:
            flags = os.O_RDONLY
        else:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if stream.append else os.O_TRUNC)
        try:
            return os.open(stream.path, flags | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            from .errors import step_error

            raise step_error("spawn", "host", exc, f"open {('stdin', 'stdout', 'stderr')[fd]} file",
                             stream.path) from None
    raise ValueError(stream.kind)


class Workload:
    """One workload, driven step by step (see the module docstring).

    stdin/stdout/stderr: an fd to give the workload, or None for what the plan
    says (inherit by default); stdout/stderr may be CAPTURE, and `input` bytes
    feed stdin.  pty=True (or `stdio: pty`) gives it a pseudo-terminal whose
    master is `self.pty_master`.  runner: its zygote forks the agent
    (Runner.workload)."""

    def __init__(self, plan: Plan, *, stdin: int | None = None, stdout: int | str | None = None,
                 stderr: int | str | None = None, input: bytes | None = None, pty: bool | None = None,
                 on_step: Reporter | None = None, session: bool = False, linger_path: str | None = None,
                 releasable: bool = False, runner: Runner | None = None):
        self.plan = plan
        self._runner = runner  # its zygote forks the agent (Runner)
        self._releasable = releasable  # an OCI container: outlives the agent (release())
        self._stdio = (stdin, stdout, stderr)
        self._input = input
        self._pty = plan.stdio.pty if pty is None else pty
        self._session = session
        self._linger_path = linger_path
        self._on_step = on_step
        self.agent: Agent | None = None
        self.pid: int = 0
        self.pty_master: int | None = None
        self.state = "new"  # new -> parked -> ready -> running [-> released] -> ended | aborted
        self.releasing = False
        self.timings: list[StepTiming] = []
        self._undo: list[tuple[str, Callable[[], None], Callable[[], None] | None]] = []
        self._cgroup_prepared = None  # host/cgroup.py Prepared: made before the clone
        self._cgroup_prep_s = 0.0  # its time, counted as the cgroup step's, not spawn's
        self._after_exit: list[Callable[[Result], None]] = []
        self._threads: list[threading.Thread] = []
        self._captured: dict[int, list[bytes]] = {}
        self.result: Result | None = None
        self.started = 0.0

    def _time(self, name: str, side: str, seconds: float) -> None:
        self.timings.append(StepTiming(name, side, seconds))
        if self._on_step:
            self._on_step(name, side, seconds)

    # --- stdio ---------------------------------------------------------------
    def _stdio_fds(self) -> tuple[list[int | None], list[int]]:
        """-> (fds for 0, 1, 2; fds to close once the agent has its copies)."""
        fds: list[int | None] = [None, None, None]
        opened: list[int] = []
        if self._pty:
            import pty as _pty

            master, slave = _pty.openpty()
            os.set_inheritable(master, False)
            self.pty_master = master
            opened.append(slave)
            fds = [slave, slave, slave]
        streams = (self.plan.stdio.stdin, self.plan.stdio.stdout, self.plan.stdio.stderr)
        for i, given in enumerate(self._stdio):
            if given == CAPTURE or (i == 0 and self._input is not None):
                r, w = os.pipe2(os.O_CLOEXEC)
                if i == 0:
                    fds[0] = r
                    opened.append(r)
                    self._start_thread(self._feed, w, self._input or b"")
                else:
                    fds[i] = w
                    opened.append(w)
                    self._captured[i] = []
                    self._start_thread(self._drain, r, self._captured[i])
            elif given is not None:
                fds[i] = given
            elif self._pty or streams[i].kind == "pty":
                continue  # the pty slave (or, with the pty turned off, inherit)
            else:
                fd = _open_stream(streams[i], i)
                if fd is not None:
                    fds[i] = fd
                    opened.append(fd)
        return fds, opened

    def _start_thread(self, fn, *args) -> None:
        import threading  # only for a plan that pumps output (~1 ms of a cold start otherwise)

        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    @staticmethod
    def _feed(fd: int, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            pass
        finally:
            os.close(fd)

    @staticmethod
    def _drain(fd: int, sink: list[bytes]) -> None:
        try:
            while chunk := os.read(fd, 65536):
                sink.append(chunk)
        finally:
            os.close(fd)

    # --- the checkpoint ------------------------------------------------------
    def spawn(self) -> int:
        """Start the agent, clone the child into its namespaces and park it."""
        from .plan.workload import CLONE_FLAGS

        if self.state != "new":
            raise RuntimeError(f"spawn: workload is {self.state}")
        t0 = time.perf_counter()
        fds, opened = self._stdio_fds()
        try:
            zygote = self._runner.zygote() if self._runner is not None else None
            try:
                self.agent = Agent(stdin=fds[0], stdout=fds[1], stderr=fds[2], zygote=zygote)
            except LinxError:
                if zygote is None or not zygote.dead:
                    raise
                # The zygote was gone (killed): once more with a new one.
                self.agent = Agent(stdin=fds[0], stdout=fds[1], stderr=fds[2], zygote=self._runner.zygote())
        finally:
            for fd in opened:
                os.close(fd)
        try:
            joins = [(CLONE_FLAGS[n], path) for n, path in self.plan.ns_join]
            kw: dict = {}
            cgroup_fd = None
            if self.plan.cgroup is not None:
                from .host import cgroup

                if cgroup.clone_into(self.plan.cgroup):
                    cgroup_fd = kw["cgroup_fd"] = self._prepare_cgroup(want_fd=True)
                elif cgroup.early(self.plan.cgroup):
                    # While the agent execs and clones (a millisecond, on the other CPU), not after.
                    kw["meanwhile"] = self._prepare_cgroup
            try:
                self.pid = self.agent.hello_spawn(self.plan.clone_flags, joins, int(self.plan.grace_seconds * 1000),
                                                  **kw)
            finally:
                if cgroup_fd is not None:
                    os.close(cgroup_fd)
            if self.plan.lifecycle.orphan == "linger" or self._linger_path:
                self.agent.linger(self._linger_path)
        except BaseException:
            self._teardown()
            raise
        self.state = "parked"
        self._time("spawn", "agent", time.perf_counter() - t0 - self._cgroup_prep_s)
        return self.pid

    def _prepare_cgroup(self, want_fd: bool = False) -> int | None:
        """The cgroup step's mkdir and limits, run before the clone (host/cgroup.py
        prepare_before_clone): on cgroup v2 alone (want_fd) so that the agent clones
        the child straight into the cgroup (CLONE_INTO_CGROUP: no cgroup.procs write
        later, and no instruction of the child outside it); otherwise while the
        agent starts and clones, off the critical path, the move left to the cgroup
        step.  Its undo is registered like the step's own; a failure here is the
        cgroup step's.  -> the leaf's directory fd for the agent (want_fd), or None."""
        from .host import cgroup

        ctx = HostContext(self)
        ctx.step = "cgroup"
        t0 = time.perf_counter()
        with host_errors("cgroup"):
            self._cgroup_prepared = cgroup.prepare_before_clone(self.plan.cgroup, ctx, self.agent.pid,
                                                                want_fd=want_fd)
        self._cgroup_prep_s = time.perf_counter() - t0
        return self._cgroup_prepared.fd

    def setup(self) -> None:
        """Run the host-side steps against the parked child, in order."""
        if self.state != "parked":
            raise RuntimeError(f"setup: workload is {self.state}")
        ctx = HostContext(self)
        try:
            for step in active_steps(self.plan):
                if step.side != "host":
                    continue
                _fault(step.name, "host", self.agent)
                t0 = time.perf_counter()
                ctx.step = step.name
                with host_errors(step.name):  # OSError -> StepError, once per step
                    _host_step(step.name)(self.plan, ctx)
                extra = self._cgroup_prep_s if step.name == "cgroup" else 0.0  # its half before the clone
                self._time(step.name, "host", time.perf_counter() - t0 + extra)
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
        session = 2 if self._pty else (1 if self._session else 0)
        # From here on a signal for the workload is forwarded, not an interrupt
        # of the setup: the agent handles it after the exec it is doing now.
        self.releasing = True
        try:
            attrs = proceed_attrs(self.plan, child_order(self.plan), session)
            if self._releasable:
                from .protocol import A

                attrs.append((A.PDEATHSIG, 0))  # it must survive the agent's exit (release)
            timings = self.agent.proceed(attrs)
        except BaseException:
            # The child is gone (it failed a step) or must go; undo the host side.
            self.abort()
            raise
        for step_id, ns in timings:
            step = STEP_BY_ID.get(step_id)
            self._time(step.name if step else str(step_id), "child", ns / 1e9)
        self.state = "running"
        self.started = time.monotonic()  # the time limit counts from here

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

    def release(self) -> None:
        """A releasable running workload leaves the agent (Agent.release): it is
        reparented to the nearest subreaper, which reaps it, as an OCI engine's
        shim does runc's.  What the host steps created stays until close()."""
        if self.state != "running" or not self._releasable:
            raise RuntimeError(f"release: workload is {self.state}")
        self.agent.release()
        self.agent = None
        self.state = "released"

    def signal(self, signo: int) -> None:
        if self.state not in ("parked", "ready", "running"):
            raise RuntimeError(f"signal: workload is {self.state}")
        self.agent.signal(signo)

    def poll(self, timeout: float | None = 0) -> End | None:
        """The workload's end if it has ended within timeout seconds (None: however
        long it takes), else None."""
        return self.agent.wait() if timeout is None else self.agent.wait(timeout)

    def wait(self, timeout: float | None = -1) -> Result:
        """Wait for the workload to end (stopping it at the time limit: the plan's
        `lifecycle.timeout` unless given); collect usage; undo what was created."""
        if self.state != "running":
            raise RuntimeError(f"wait: workload is {self.state}")
        return run_to_end(self, self.plan.lifecycle.timeout if timeout == -1 else timeout)

    def stop(self, grace: float) -> tuple[End, str]:
        """SIGTERM, up to `grace` seconds, then SIGKILL.  -> (end, what it took)."""
        return stop_workload(self, grace)

    def finish(self, end: End, reason: str = "", timed_out: bool = False) -> Result:
        """The workload has ended (`end`): read usage, undo, and make its Result."""
        self.state = "ended"
        self.result = Result(self.plan.name, self.pid, end.exit_code, end.signal, end.core_dumped,
                             list(self.timings), reason=reason, timed_out=timed_out)
        try:
            for collect in self._after_exit:
                collect(self.result)
            # seccomp kill/kill_thread (and an uncaught trap) end the process with SIGSYS.
            if self.plan.seccomp is not None and end.signal == _signal.SIGSYS and not self.result.reason:
                self.result.reason = "killed by its seccomp filter (SIGSYS)"
        finally:
            self._teardown()
        if self._captured:
            out = self._captured.get(1)
            err = self._captured.get(2)
            self.result.stdout = b"".join(out) if out is not None else None
            self.result.stderr = b"".join(err) if err is not None else None
        return self.result

    def close(self) -> None:
        """Whatever the state: nothing of this workload remains afterwards, but
        for the host end of a veth of a workload that ended, whose delete finishes
        in the background (host/network_teardown.py: settle() waits for it)."""
        if self.state in ("parked", "ready"):
            self.abort()
        else:
            self._teardown()

    def _teardown(self) -> None:
        # Closing the channel makes the agent stop anything still running
        # (SIGTERM, grace, SIGKILL); then the host side is undone in reverse.
        errors: list[BaseException] = []
        # Once the workload has ended (or never ran), nothing is left to stop: the
        # channel is closed without waiting, and the agent's exit (its tracked
        # cgroups found empty or gone, each removed by whichever of us comes
        # first) runs on the other CPU while the runner undoes; it is reaped after
        # the undo.  Otherwise the agent stops the workload first, waited for.
        finished = self.state in ("ended", "aborted")
        if self.agent is not None:
            try:
                if finished:
                    self.agent.hangup()
                else:
                    self.agent.close()
                    self.agent = None
            except BaseException as exc:  # noqa: BLE001 - keep undoing
                errors.append(exc)
                self.agent = None
        while self._undo:
            what, fn, after_end = self._undo.pop()
            try:
                (after_end if after_end is not None and self.state == "ended" else fn)()
            except BaseException as exc:  # noqa: BLE001 - keep undoing
                errors.append(exc)
        self._after_exit.clear()
        if self.agent is not None:
            try:
                self.agent.close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            self.agent = None
        # Output pipes reach EOF once the workload and the agent are gone.
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self.pty_master is not None and self.state in ("ended", "aborted"):
            try:
                os.close(self.pty_master)
            except OSError:
                pass
            self.pty_master = None
        if errors and not isinstance(errors[0], LinxError):
            raise errors[0]

    def __enter__(self) -> "Workload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(plan: Plan, *, stdin: int | None = None, stdout: int | str | None = None, stderr: int | str | None = None,
        input: bytes | None = None, capture_output: bool = False, timeout: float | None = -1,
        on_step: Reporter | None = None, on_restart: Callable[[Result, float], None] | None = None,
        runner: Runner | None = None) -> Result:
    """Run one workload to its end (restarting it as its policy says) and return the last Result.

    capture_output=True collects stdout and stderr into Result.stdout/.stderr;
    input feeds stdin; timeout overrides the spec's `lifecycle.timeout` (None: no limit);
    runner: fork the agent from that Runner's zygote (Runner.run)."""
    if capture_output:
        stdout = stdout if stdout is not None else CAPTURE
        stderr = stderr if stderr is not None else CAPTURE
    lifecycle = Lifecycle(plan, timeout=timeout, on_restart=on_restart)
    return lifecycle.run(lambda: Workload(plan, stdin=stdin, stdout=stdout, stderr=stderr, input=input,
                                          on_step=on_step, runner=runner))


class Runner:
    """Runs many workloads from one process, faster: each workload's agent is
    forked from one agent started once (the zygote, agent/lx_zygote.c) instead
    of spawned from the agent binary.  Everything else is as with run() and
    Workload: each workload has its own agent, which is its parent and reaper
    and stops it if this process dies; each step, check and undo is the same.

        with Runner() as runner:
            result = runner.run(plan)              # run(plan, ...) with the zygote
            with runner.workload(plan) as w:       # Workload(plan, ...) with it
                ...

    The zygote starts with the first workload and holds no namespace, cgroup
    or workload fd.  It inherits this process's state once, when it starts:
    the agents it forks get its cwd, umask, rlimits and cgroup, not the ones
    of this process at each workload's start (a plan that sets them is not
    affected).  close() ends it; workloads still running keep their agents.
    Thread-safe.  After os.fork() the child starts its own zygote; a zygote
    that died (killed) is replaced at the next workload."""

    def __init__(self, *, agent_path: str | None = None):
        self._path = agent_path
        self._zygote: Zygote | None = None
        self._lock = _thread.allocate_lock()
        self._closed = False

    def zygote(self) -> Zygote | None:
        """The zygote (started on first use), or None where it cannot fork
        agents (no pidfd_open: agents are then spawned as by run())."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Runner is closed")
            z = self._zygote
            if z is not None and z.dead and z.owner == os.getpid():
                z.close()  # reaps it
            if z is None or z.dead or z.owner != os.getpid():
                z = self._zygote = Zygote(self._path)
            return z if z.supported else None

    def run(self, plan: Plan, **kw) -> Result:
        """run(plan, **kw) with this runner's zygote."""
        return run(plan, runner=self, **kw)

    def workload(self, plan: Plan, **kw) -> Workload:
        """Workload(plan, **kw) with this runner's zygote."""
        return Workload(plan, runner=self, **kw)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            z, self._zygote = self._zygote, None
        if z is not None and z.owner == os.getpid():
            z.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
