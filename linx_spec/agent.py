"""Starts the C agent (one per workload) and talks to it with typed methods.

Frames are packed and unpacked only in protocol.py; this module owns the socket,
the process and the pairing of requests with replies (by seq).
"""

from __future__ import annotations

import errno
import os
import select
import _signal  # the C module signal.py wraps in enums (~1 ms of a cold start)
import _thread  # get_ident and RLock: threading (~1 ms of a cold start) is not needed for them
import _socket  # socket.py (its enums, selectors) is ~2 ms of a cold start; a socketpair needs none of it
import struct
import time
from collections.abc import Callable  # loaded at every interpreter start

from . import protocol as P
from .errors import ExecError, ParkedDeathError, ProtocolError, StepError
from .record import Record

AGENT_ENV = "LINX_AGENT"


def agent_path() -> str:
    """The agent binary: $LINX_AGENT, else the one installed with the package."""
    env = os.environ.get(AGENT_ENV)
    if env:
        return env
    return os.path.join(os.path.dirname(__file__), "_bin", "linx-agent")


class End(Record):
    """How the workload ended."""

    exit_code: int | None  # set when it exited
    signal: int | None  # set when a signal killed it
    core_dumped: bool = False

    @property
    def status(self) -> int:
        """Shell-style status: the code, or 128+N when killed by signal N."""
        return self.exit_code if self.signal is None else 128 + self.signal


def _step_name(step_id: int) -> str:
    from .steps import STEP_BY_ID

    s = STEP_BY_ID.get(step_id)
    return s.name if s else f"step {step_id}"


def _step_side(step_id: int) -> str:
    from .steps import STEP_BY_ID

    s = STEP_BY_ID.get(step_id)
    return s.side if s else "agent"


_SIGDEF = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGCHLD, _signal.SIGPIPE)


def _spawn(argv: list[str], fds: list[tuple[int | None, int]], what: str) -> int:
    """posix_spawn (vfork underneath: cheap even from a large process) of the
    agent binary, with each (source fd, target) of fds dup2'd into place
    (None: the target is inherited).  Every source is first copied above the
    targets (0-3), so that no dup2 overwrites a source another one still needs
    (a stdout file opened as fd 3 would otherwise become the channel)."""
    import fcntl

    high = [(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10), target) for fd, target in fds if fd is not None]
    try:
        return os.posix_spawn(argv[0], argv, _agent_env(), setsigdef=_SIGDEF,
                              file_actions=[(os.POSIX_SPAWN_DUP2, copy, target) for copy, target in high])
    except OSError as exc:
        raise StepError("spawn", "agent", exc.errno or 0, what, argv[0]) from None
    finally:
        for copy, _ in high:
            os.close(copy)


class Zygote:
    """A linx-agent started with --zygote: it forks one agent per workload
    (agent/lx_zygote.c), which costs a fraction of spawning and exec'ing the
    binary.  Owned by a runner.Runner; thread-safe.  The forked agents are the
    zygote's children, so each comes with a pidfd to wait for its end."""

    def __init__(self, path: str | None = None):
        self.owner = os.getpid()
        self.supported = True  # False once the zygote said it cannot (no pidfd_open: Linux < 5.3)
        self.dead = False  # its channel failed: it is gone (killed); Runner starts another
        self._lock = _thread.allocate_lock()
        self._seq = 0
        self._sock, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.path = path or agent_path()
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            # stderr stays the caller's: the zygote's own complaints go there.
            self.pid = _spawn([self.path, "--zygote"], [(null, 0), (null, 1), (theirs.fileno(), 3)],
                              "start the agent zygote")
        except StepError:
            self._sock.close()
            raise
        finally:
            theirs.close()
            os.close(null)

    def fork_agent(self, channel: int, stdio: tuple[int | None, int | None, int | None]) -> tuple[int, int]:
        """A new agent on `channel` (its fd 3), with stdio as its 0, 1, 2 (None:
        this process's own, as a spawned agent inherits them).  -> (pid, pidfd)."""
        fds, mask = [channel], 0
        for i, fd in enumerate(stdio):
            if fd is None:
                if not _inherited(i):
                    continue  # a spawned agent would not have it either: closed
                fd = i
            fds.append(fd)
            mask |= 1 << i
        with self._lock:
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
            try:
                self._sock.sendmsg([P.encode(P.Msg.FORK, seq, [(P.A.STDIO, mask)])],
                                   [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
                # The zygote answers only what it is asked, each answer in one
                # sendmsg: one recvmsg normally holds all of it (and the pidfd).
                raw, anc, _, _ = self._sock.recvmsg(256, _socket.CMSG_SPACE(struct.calcsize("i")),
                                                    _socket.MSG_CMSG_CLOEXEC)
                passed = [fd for level, kind, blob in anc if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
                          for fd in struct.unpack(f"{len(blob) // 4}i", blob[: len(blob) // 4 * 4])]
                if len(raw) < P.HDR_LEN:
                    raw += _recv_exact(self._sock, P.HDR_LEN - len(raw))
                version, type_, reply_seq, length = P.decode_header(raw[:P.HDR_LEN])
                body = raw[P.HDR_LEN:]
                if len(body) < length:
                    body += _recv_exact(self._sock, length - len(body))
                frame = P.Frame(type_, reply_seq, P.decode_attrs(body[:length]), version)
            except (OSError, EOFError, P.FrameError) as exc:
                self.dead = True
                raise StepError("spawn", "agent", getattr(exc, "errno", 0) or errno.EPIPE,
                                "fork an agent from the zygote (it is gone)", self.path) from None
        pidfd = passed.pop(0) if passed else None
        for fd in passed:
            os.close(fd)
        if frame.type == P.Msg.FORKED and pidfd is not None and frame.seq == seq:
            return frame.get(P.A.PID), pidfd
        if pidfd is not None:
            os.close(pidfd)
        err = frame.get(P.A.ERRNO, 0)
        if err == errno.ENOSYS:  # no pidfd_open: the runner spawns agents instead
            self.supported = False
        raise StepError("spawn", "agent", err, frame.get(P.A.DETAIL, _name(frame.type)), self.path)

    def close(self) -> None:
        """Ends the zygote (agents it forked run on, each with its workload) and reaps it."""
        with self._lock:  # not under a fork_agent of another thread
            if self._sock.fileno() >= 0:
                self._sock.close()
        if self.pid and self.owner == os.getpid():
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped by someone else's waitpid(-1)
                pass
        self.pid = None


def _inherited(fd: int) -> bool:
    """Whether a spawned child would get this process's fd: open and not close-on-exec."""
    import fcntl

    try:
        return not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    except OSError:
        return False


def _recv_exact(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class Agent:
    """One linx-agent process and its control channel.

    stdin/stdout/stderr: file descriptors the agent (and so the workload) gets
    as 0, 1, 2; None inherits the caller's.  zygote: fork the agent from it
    instead of starting the binary (runner.Runner).
    """

    def __init__(self, *, stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
                 path: str | None = None, zygote: Zygote | None = None):
        self._seq = 0
        # Reentrant: a signal handler (Lifecycle._forward, main thread) may run
        # while this thread holds it; a plain Lock would deadlock there.  A
        # handler that lands inside a frame being written defers its signal
        # (signal_nowait) to the end of that frame, so frames stay whole.
        self._send_lock = _thread.RLock()  # threading.RLock is this one
        self._writing: int | None = None  # the thread writing a frame now
        self._deferred: list[int] = []
        self._pending: dict[int, P.Frame] = {}
        self._ignore: set[int] = set()
        self._wait_seq: int | None = None
        self.pid: int | None = None
        self.returncode: int | None = None
        self.spawned_in_cgroup = False  # the child was cloned into the cgroup SPAWN passed
        self.clone_into_errno = 0
        self._pidfd: int | None = None  # a forked agent's (not our child: waited for through it)
        # Bytes read from the channel and not yet a frame: one recv takes whatever
        # has arrived (often two frames), so a frame costs one syscall, not two.
        self._rbuf = bytearray()
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)  # close-on-exec, as socket.socketpair
        self._sock = mine
        if zygote is not None and zygote.supported:
            try:
                self.pid, self._pidfd = zygote.fork_agent(theirs.fileno(), (stdin, stdout, stderr))
            except StepError:
                mine.close()
                theirs.close()
                if zygote.supported:
                    raise
                # It cannot fork agents on this kernel (no pidfd_open): spawn, as run() does.
                mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
                self._sock = mine
            else:
                theirs.close()
                return
        exe = path or agent_path()
        try:
            self.pid = _spawn([exe], [(stdin, 0), (stdout, 1), (stderr, 2), (theirs.fileno(), 3)], "start the agent")
        except StepError:
            mine.close()
            raise
        finally:
            theirs.close()

    # --- framing ---------------------------------------------------------
    def _send(self, type_: int, attrs, *, ignore_reply: bool = False, fd: int | None = None) -> int:
        # One frame whole at a time: the shared supervisor nudges an agent from
        # another thread than the one driving it (nudge()).
        with self._send_lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
            if ignore_reply:
                self._ignore.add(seq)
            data = P.encode(type_, seq, attrs)
            self._writing = _thread.get_ident()
            try:
                if fd is None:
                    self._sock.sendall(data)
                else:
                    # The descriptor rides on the frame's first bytes (SCM_RIGHTS).
                    sent = self._sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                        struct.pack("i", fd))])
                    self._sock.sendall(data[sent:])
            except OSError as exc:
                raise ProtocolError(f"to send {P.Msg(type_).name}", f"the channel is closed ({exc.strerror})") \
                    from None
            finally:
                self._writing = None
            while self._deferred:  # signals a handler could not send mid-frame
                self._send(P.Msg.SIGNAL, [(P.A.SIGNO, self._deferred.pop(0))], ignore_reply=True)
        return seq

    def _recv_exact(self, n: int) -> bytes:
        buf = self._rbuf
        while len(buf) < n:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ProtocolError("a reply", "end of channel: the agent died" + self._agent_status())
            buf += chunk
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def _has_frame(self) -> bool:
        """A whole frame is already read: the channel may not be readable for it."""
        buf = self._rbuf
        return len(buf) >= P.HDR_LEN and len(buf) >= P.HDR_LEN + P.HDR.unpack_from(buf)[4]

    def _agent_status(self) -> str:
        if self._pidfd is not None:
            return " (agent exited)" if _exited(self._pidfd, 0) else ""
        try:
            pid, st = os.waitpid(self.pid, os.WNOHANG) if self.pid else (0, 0)
        except ChildProcessError:
            return ""
        if pid:
            self.returncode = os.waitstatus_to_exitcode(st)
            self.pid = None
            return f" (agent status {self.returncode})"
        return ""

    def _read_frame(self) -> P.Frame:
        raw = self._recv_exact(P.HDR_LEN)
        try:
            version, type_, seq, length = P.decode_header(raw)
            frame = P.Frame(type_, seq, P.decode_attrs(self._recv_exact(length)), version)
        except P.FrameError as exc:
            raise ProtocolError("a well-formed frame", str(exc)) from None
        if version != P.VERSION:
            raise ProtocolError(f"protocol version {P.VERSION}", f"version {version}")
        return frame

    def _call(self, type_: int, attrs=(), expect: tuple[int, ...] = ()) -> P.Frame:
        return self._reply(self._send(type_, attrs), expect)

    def _reply(self, seq: int, expect: tuple[int, ...] = ()) -> P.Frame:
        while True:
            frame = self._pending.pop(seq, None) or self._read_frame()
            if frame.seq == seq:
                break
            if frame.seq in self._ignore:
                self._ignore.discard(frame.seq)
                continue
            self._pending[frame.seq] = frame
        if frame.type == P.Msg.ERROR:
            raise self._error(frame)
        if expect and frame.type not in expect:
            names = " or ".join(P.Msg(t).name for t in expect)
            raise ProtocolError(names, _name(frame.type))
        return frame

    @staticmethod
    def _error(frame: P.Frame) -> StepError:
        step_id = frame.get(P.A.STEP, 0)
        err = frame.get(P.A.ERRNO, 0)
        detail = frame.get(P.A.DETAIL, "")
        path = frame.get(P.A.PATH, "")
        name, side = _step_name(step_id), _step_side(step_id)
        wstatus = frame.get(P.A.WSTATUS)
        if name == "exec":
            return ExecError(name, side, err, f"execve {path}" if path else detail, "")
        if wstatus is not None:
            return ParkedDeathError(name, side, detail, wstatus)
        if name == "protocol":
            return ProtocolError("a request the agent accepts", f"{detail} ({os.strerror(err) if err else 'error'})")
        return StepError(name, side, err, detail, path)

    # --- requests ----------------------------------------------------------
    def hello(self) -> int:
        """Checks the protocol version before anything is cloned; returns the agent pid."""
        frame = self._call(P.Msg.HELLO, (), (P.Msg.READY,))
        version = frame.get(P.A.VERSION)
        if version != P.VERSION:
            raise ProtocolError(f"agent protocol version {P.VERSION}", f"version {version}")
        return frame.get(P.A.PID)

    def spawn(self, ns_flags: int, joins: list[tuple[int, str]] = (), grace_ms: int = 2000) -> int:
        attrs: list[tuple[int, object]] = [(P.A.NS_FLAGS, ns_flags), (P.A.GRACE_MS, grace_ms)]
        attrs += [(P.A.NS_JOIN, P.ns_join_value(flag, path)) for flag, path in joins]
        return self._call(P.Msg.SPAWN, attrs, (P.Msg.SPAWNED,)).get(P.A.PID)

    def hello_spawn(self, ns_flags: int, joins: list[tuple[int, str]] = (), grace_ms: int = 2000,
                    cgroup_fd: int | None = None, meanwhile: Callable[[], object] | None = None) -> int:
        """HELLO and SPAWN back to back, one wait instead of two.  Safe: every
        frame carries the version, so an agent of another version answers the
        SPAWN with an error and clones nothing.  cgroup_fd: a cgroup v2
        directory to clone the child into (CLONE_INTO_CGROUP); whether it was
        is `spawned_in_cgroup` afterwards.  meanwhile(): called once both frames
        are sent, before the replies are read: work of the runner's that needs
        no child yet, done while the agent starts and clones."""
        attrs: list[tuple[int, object]] = [(P.A.NS_FLAGS, ns_flags), (P.A.GRACE_MS, grace_ms)]
        attrs += [(P.A.NS_JOIN, P.ns_join_value(flag, path)) for flag, path in joins]
        if cgroup_fd is not None:
            attrs.append((P.A.CGROUP_FD, 1))
        hello = self._send(P.Msg.HELLO, ())
        spawn = self._send(P.Msg.SPAWN, attrs, fd=cgroup_fd)
        if meanwhile is not None:
            meanwhile()
        version = self._reply(hello, (P.Msg.READY,)).get(P.A.VERSION)
        if version != P.VERSION:
            raise ProtocolError(f"agent protocol version {P.VERSION}", f"version {version}")
        frame = self._reply(spawn, (P.Msg.SPAWNED,))
        self.spawned_in_cgroup = frame.get(P.A.CGROUP_FD, 0) == 1
        self.clone_into_errno = frame.get(P.A.ERRNO, 0)  # why clone3 refused the cgroup, when it did
        return frame.get(P.A.PID)

    def track_cgroup(self, path: str, remove_only: bool = False) -> None:
        """If the runner dies, the agent kills what is in `path` and removes it
        (remove_only: a shared parent, removed only if empty, never killed in).
        Not waited for: the reply is skipped when it comes (a safety net for
        the runner's death, which the runner's own undo does not need)."""
        attrs: list[tuple[int, object]] = [(P.A.PATH, path)]
        if remove_only:
            attrs.append((P.A.REMOVE_ONLY, 1))
        self._send(P.Msg.TRACK_CGROUP, attrs, ignore_reply=True)

    def proceed(self, attrs: list[tuple[int, object]]) -> list[tuple[int, int]]:
        """Releases the parked child; returns [(step id, ns)] of the child steps."""
        frame = self._call(P.Msg.PROCEED, attrs, (P.Msg.RUNNING,))
        return P.decode_timings(frame.get(P.A.TIMING, b""))

    def unshare_cgroupns(self) -> None:
        """The parked child unshares its cgroup namespace now, not in its cgroupns
        step (which then does nothing): after the host's cgroup step, for an OCI
        `create`, whose container is in all its namespaces when it returns."""
        self._call(P.Msg.CGROUPNS, (), (P.Msg.OK,))

    def abort(self) -> None:
        self._call(P.Msg.ABORT, (), (P.Msg.ABORTED,))

    def signal(self, signo: int) -> None:
        self._call(P.Msg.SIGNAL, [(P.A.SIGNO, int(signo))], (P.Msg.OK,))

    def signal_nowait(self, signo: int) -> None:
        """For signal handlers: send without reading (the reply is skipped later).
        A handler that interrupted this thread's own frame half written defers
        the signal to the end of that frame."""
        if self._writing == _thread.get_ident():
            self._deferred.append(int(signo))
            return
        self._send(P.Msg.SIGNAL, [(P.A.SIGNO, int(signo))], ignore_reply=True)

    def nudge(self) -> None:
        """From another thread: a HELLO whose reply is skipped, so that a thread
        blocked on this channel (Supervised.wait) wakes up and looks around."""
        self._send(P.Msg.HELLO, (), ignore_reply=True)

    def linger(self, path: str | None = None) -> None:
        """If the channel closes, keep the workload running; when it ends, write
        `exited N` / `signaled N` to path (if given) and remove tracked cgroups."""
        self._call(P.Msg.LINGER, [(P.A.PATH, path)] if path else [], (P.Msg.OK,))

    def release(self) -> None:
        """Let go of the running workload: the agent answers and exits, the
        workload is reparented to the nearest subreaper (an OCI engine's shim
        reaps it, as runc's init once `runc create` has exited).  The PROCEED
        must have disarmed its pdeathsig (A.PDEATHSIG 0)."""
        self._call(P.Msg.RELEASE, (), (P.Msg.OK,))
        self.close()

    def wait(self, timeout: float | None = None) -> End | None:
        """Waits for the workload's end; with a timeout, None if it has not ended yet
        (the WAIT stays outstanding: call again, signal in between)."""
        if self._wait_seq is None:
            self._wait_seq = self._send(P.Msg.WAIT, ())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._pending.pop(self._wait_seq, None)
            if frame is None:
                if deadline is not None and not self._has_frame():
                    left = deadline - time.monotonic()
                    # poll, not select: a supervisor of hundreds of workloads holds
                    # fds above FD_SETSIZE (1024).
                    poller = select.poll()
                    poller.register(self._sock, select.POLLIN)
                    if not poller.poll(max(left, 0) * 1000):
                        return None
                # The agent writes each frame whole, so once readable it follows.
                frame = self._read_frame()
                if frame.seq != self._wait_seq:
                    if frame.seq in self._ignore:
                        self._ignore.discard(frame.seq)
                    else:
                        self._pending[frame.seq] = frame
                    continue
            self._wait_seq = None
            if frame.type == P.Msg.ERROR:
                raise self._error(frame)
            if frame.type == P.Msg.EXITED:
                return End(frame.get(P.A.CODE), None)
            if frame.type == P.Msg.SIGNALED:
                return End(None, frame.get(P.A.SIGNO), bool(frame.get(P.A.CORE)))
            raise ProtocolError("EXITED or SIGNALED", _name(frame.type))

    def fileno(self) -> int:
        return self._sock.fileno()

    def hangup(self) -> None:
        """Closes the channel without waiting: the agent stops anything still running,
        removes the cgroups it tracks and exits; close() then reaps it."""
        if self._sock.fileno() >= 0:
            self._sock.close()

    def close(self) -> None:
        """Closes the channel (the agent stops anything still running) and reaps it."""
        self.hangup()
        if self._pidfd is not None:
            _exited(self._pidfd, None)
            os.close(self._pidfd)
            self._pidfd = None
            self.pid = None
        if self.pid:
            _, st = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(st)
            self.pid = None

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _exited(pidfd: int, timeout: float | None) -> bool:
    """Whether the process of pidfd has ended, within timeout seconds (None: wait)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


# The agent reads nothing of its environment but LINX_FAULT (tests), and a
# sanitizer build its options; the workload's environment comes with PROCEED
# (plan/process.py: nothing inherited from the caller).  So the agent gets only
# those: the caller's variables (LD_*, tokens) stay out of a process that lives
# as long as the workload, and no spawn walks the caller's ~40 variables
# (posix_spawn iterates the os.environ mapping in Python: ~40 us a workload).
AGENT_ENV_KEYS = ("LINX_FAULT", "ASAN_OPTIONS", "UBSAN_OPTIONS")


def _agent_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in AGENT_ENV_KEYS if k in os.environ}
    return _fault_env(env) if "LINX_FAULT" in env else env


def _fault_env(env) -> dict:
    """LINX_FAULT=fail:STEP / pause:STEP (tests only): the agent takes the ids
    of its own steps (spawn and the child's) and injects the fault where the
    step runs, in the normal frame sequence; host steps are the runner's
    (runner._fault)."""
    from .steps import STEP_BY_NAME

    env = dict(env)
    kind, _, name = env.get("LINX_FAULT", "").partition(":")
    step = STEP_BY_NAME.get(name)
    if step is not None and step.side in ("agent", "child"):
        env["LINX_FAULT"] = f"{kind}:{step.id}"
    else:
        env.pop("LINX_FAULT", None)
    return env


def _name(type_: int) -> str:
    try:
        return P.Msg(type_).name
    except ValueError:
        return f"message {type_:#x}"
