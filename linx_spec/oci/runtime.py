"""The OCI runtime's lifecycle (runtime.md#lifecycle) on linx-spec's checkpoint.

    create   config.json -> Spec (import_.py, losses logged) -> Plan; a holder
             process is forked: it spawns the child (parked at the checkpoint,
             not exec'd), runs the host steps and the create-time hooks, writes
             state.json, and stays; `create` writes the pid file and exits.
    start    asks the holder (ROOT/ID/sock): startContainer hooks, PROCEED (the
             child steps, execve: the first instruction runs constrained), then
             RELEASE: the agent exits and the container process is reparented
             to the nearest subreaper (containerd's shim, conmon) that reaps it
             and sees its exit, exactly as with runc's init; poststart hooks.
    kill     a signal to the container process (pidfd, pid checked with its
             start time), or with --all to every process of its cgroups.
    delete   asks the holder to kill what is left and undo the host steps
             (cgroups, network...), then poststop hooks, then the state goes.

Process tree: engine -> `create` (exits) ; holder -> agent -> container.  The
holder is not a subreaper, so the container skips it when the agent exits.
The holder keeps the Workload (runner.py) and with it the undo list of the host
steps until `delete`; if the holder is killed while the container is created,
the agent sees its channel close and removes the child and its cgroups.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

from .. import stored
from ..errors import LinxError, PlanError, StateError, StepError, from_record, to_record
from ..state import alive, pid_start_time
from . import hooks as H
from .record import Container, Hook, Record, cgroup_pids, holder_alive, state_json, status

SOCK = "sock"
MAX_REQUEST = 256
MAX_REPLY = 1 << 16
STOP_WAIT = 10.0  # seconds delete waits for a killed container to be gone


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Log:
    """--log FILE in runc's formats (go-runc reads the last error from it); stderr always."""

    def __init__(self, path: str | None, fmt: str = "text"):
        self.path = path
        self.fmt = fmt

    def __call__(self, level: str, msg: str) -> None:
        if level != "debug":
            print(f"linx-oci: {level}: {msg}" if level != "error" else f"linx-oci: {msg}", file=sys.stderr)
        if not self.path:
            return
        stamp = now_rfc3339()
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": stamp})
        else:
            line = f'time="{stamp}" level={level} msg={json.dumps(msg)}'
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def warn(self, msg: str) -> None:
        self("warning", msg)


# --- config.json -> Plan ----------------------------------------------------------

# What runc allows on top of a config's device rules, always (libcontainer/specconv
# AllowedDevices, appended after linux.resources.devices): mknod of any node, the
# standard nodes, the ptys.  Engines count on them (runtime-tools' default config
# denies all and allows nothing; a shell then needs /dev/null).
RUNC_ALLOWED_DEVICES = (
    {"type": "c", "access": "m"}, {"type": "b", "access": "m"},
    *({"type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9))),
    {"type": "c", "major": 136, "access": "rwm"}, {"type": "c", "major": 5, "minor": 2, "access": "rwm"},
)

@dataclass(frozen=True)
class Prepared:
    plan: object  # Plan
    hooks: dict[str, tuple[Hook, ...]]
    annotations: dict[str, str]
    terminal: bool
    console_size: tuple[int, int] | None  # (rows, columns)


def _name_for(cid: str) -> str:
    """A workload name (cgroup leaf linx-NAME-PID) from the container id."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", cid)[:40]
    return name if name[:1].isalnum() else f"c{name}"[:40]


def _ambient_as_runc(process: dict, source: str, log: Log) -> None:
    """runc's default config lists ambient capabilities but no inheritable ones;
    the kernel refuses to raise those (capabilities(7)) and runc ignores the
    failure.  A spec refuses them, so they are left out here, with a warning."""
    caps = process.get("capabilities")
    if not isinstance(caps, dict) or not isinstance(caps.get("ambient"), list):
        return
    inheritable = caps.get("inheritable") if isinstance(caps.get("inheritable"), list) else []
    dropped = [c for c in caps["ambient"] if c not in inheritable]
    if dropped:
        caps["ambient"] = [c for c in caps["ambient"] if c in inheritable]
        log.warn(f"{source}: process.capabilities.ambient: {', '.join(map(str, dropped))} not inheritable: "
                 "not raised (as runc, which ignores the kernel's refusal)")


def prepare(bundle: str, cid: str, log: Log) -> Prepared:
    """Read the bundle's config.json into a Plan; losses are warnings (an engine's
    config always carries fields linx-spec does not express, such as device rules)."""
    from ..errors import Problem, SpecError
    from ..load import load_text
    from ..plan import build_plan
    from . import ANNOTATION_HOST_ROOT, ANNOTATION_NAME
    from .cli import read_config, spec_yaml
    from .import_ import import_config

    source = os.path.join(bundle, "config.json")
    data = read_config(source)
    if not isinstance(data, dict):
        raise SpecError([Problem(source, 0, 0, "", "expected a JSON object")])
    try:
        hooks = H.parse(data.pop("hooks", None))
    except ValueError as exc:
        raise SpecError([Problem(source, 0, 0, "hooks", str(exc))]) from None
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in annotations.items()):
        raise SpecError([Problem(source, 0, 0, "annotations", "expected an object of strings")])
    data["annotations"] = {k: v for k, v in annotations.items() if k in (ANNOTATION_NAME, ANNOTATION_HOST_ROOT)}
    process = data.get("process") if isinstance(data.get("process"), dict) else {}
    terminal = process.get("terminal") is True
    size = process.pop("consoleSize", None)
    console_size = None
    if isinstance(size, dict) and all(isinstance(size.get(k), int) and 0 <= size[k] < 65536
                                      for k in ("height", "width")):
        console_size = (size["height"], size["width"])
    _ambient_as_runc(process, source, log)
    cgroups_path = _cgroups_path(data, source)
    imported = import_config(data, source, bundle)
    for loss in imported.losses:
        log.warn(f"{source}: left out {loss}")
    spec = imported.spec
    spec["name"] = _name_for(cid)
    spec.pop("stdio", None)  # the terminal is the console socket's (create --console-socket)
    # runc puts every container in a cgroup of its own: kill --all, ps and delete find it there.
    cg = spec.setdefault("cgroup", {})
    if cg.get("devices") is not None:
        cg["devices"] += [r for r in RUNC_ALLOWED_DEVICES if r not in cg["devices"]]
    text = spec_yaml(spec, source)
    loaded = load_text(text, f"{source} (imported)", env={})
    plan = build_plan(loaded, source=source, base_dir=bundle)
    if cgroups_path is not None:
        from ..plan.cgroup import resolve

        plan = replace(plan, cgroup=resolve(loaded.cgroup, loaded, leaf=cgroups_path))  # type: ignore[arg-type]
    if plan.cgroup is not None:  # type: ignore[attr-defined]
        plan = replace(plan, cgroup=_v1_exact(plan.cgroup, data))  # type: ignore[attr-defined]
    return Prepared(plan, hooks, dict(annotations), terminal, console_size)


def _v1_exact(cg, data: dict):
    """OCI's cpu.shares and blockIO.weight are cgroup v1's own units; a spec's are
    v2's weights (1-10000), and the way there and back is not exact (shares 2048 ->
    weight 79 -> 2073).  Where the controller is on v1, the config's figure is
    written as is, as runc writes it.  `data` was type-checked by the import."""
    res = (data.get("linux") or {}).get("resources") or {}
    exact = {}
    shares = (res.get("cpu") or {}).get("shares")
    if type(shares) is int and 2 <= shares <= 262144:  # kernel/sched: MIN_SHARES, MAX_SHARES
        exact["cpu.shares"] = str(shares)
    weight = (res.get("blockIO") or {}).get("weight")
    if type(weight) is int and 10 <= weight <= 1000:  # blkio: CFQ_WEIGHT_MIN..MAX, BFQ's the same
        exact["blkio.weight"] = exact["blkio.bfq.weight"] = str(weight)
    if not exact:
        return cg
    return replace(cg, hierarchies=tuple(
        replace(h, writes=tuple((f, exact.get(f, v)) for f, v in h.writes)) if h.version == 1 else h
        for h in cg.hierarchies))


def _cgroups_path(data: dict, source: str) -> str | None:
    """linux.cgroupsPath, taken out of the config: the container's own cgroup
    (config-linux.md#cgroups-path), absolute or relative as runc reads it
    (cgroupfs driver: `slice:prefix:name` is then a relative path too)."""
    from ..errors import Problem, SpecError
    from ..spec.cgroup import cgroup_path

    linux = data.get("linux")
    if not isinstance(linux, dict) or linux.get("cgroupsPath") in (None, ""):
        if isinstance(linux, dict):
            linux.pop("cgroupsPath", None)
        return None
    path = linux.pop("cgroupsPath")
    try:
        if not isinstance(path, str):
            raise ValueError(f"expected a string, got {type(path).__name__}")
        cgroup_path(path, "the cgroup path")
    except ValueError as exc:
        raise SpecError([Problem(source, 0, 0, "linux.cgroupsPath", str(exc))]) from None
    return path


# --- create and the holder ----------------------------------------------------------

def create(c: Container, bundle: str, *, pid_file: str | None, console_socket: str | None, log: Log) -> int:
    bundle = os.path.abspath(bundle)
    if c.exists():
        raise StateError(f"container `{c.id}` already exists")
    prep = prepare(bundle, c.id, log)  # before anything is made: a bad config leaves nothing
    if prep.terminal and not console_socket:
        raise PlanError("process.terminal is true but no --console-socket was given",
                        "pass --console-socket PATH (the pty master is sent there), or set terminal false")
    if console_socket and not prep.terminal:
        raise PlanError("--console-socket was given but process.terminal is false", "set process.terminal true")
    c.make()
    r, w = os.pipe()
    try:
        c.save(Record(c.id, bundle, now_rfc3339(), "creating", annotations=prep.annotations, hooks=prep.hooks))
        c.write("plan.json", stored.dumps(prep.plan))
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        c.remove()
        raise
    if pid == 0:  # the holder
        code = 1
        try:
            os.close(r)
            code = _hold(c, prep, w, console_socket, log)
        except BaseException:  # noqa: BLE001 - the holder never shows a traceback
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    kind, rest = _message(r)
    os.close(r)
    if kind == "created":
        if pid_file:
            _write_pid_file(pid_file, int(rest))
        return 0
    os.waitpid(pid, 0)
    c.remove()
    _raise_error(kind, rest)
    raise StateError("the holder died before the container was created")


def _message(fd: int, limit: int = MAX_REPLY) -> tuple[str, str]:
    """Everything read from fd until EOF (at most limit bytes) -> (first word, the rest)."""
    chunks, size = [], 0
    while size <= limit and (chunk := os.read(fd, 65536)):
        chunks.append(chunk)
        size += len(chunk)
    kind, _, rest = b"".join(chunks).decode(errors="replace").partition(" ")
    return kind, rest


def _raise_error(kind: str, rest: str) -> None:
    """`error RECORD` from the holder: raise the LinxError it stands for."""
    if kind == "error":
        try:
            record = json.loads(rest)
        except json.JSONDecodeError:
            return
        raise from_record(record)


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(str(pid))
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"write the pid file {path}: {exc.strerror}") from None


def _stdio_fds() -> list[int]:
    """The container inherits create's stdio (as with runc); a closed one becomes /dev/null."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return fds


def _quiet_stdio() -> None:
    """The holder lets go of the engine's pipes: they must reach EOF when the
    container (and `create`) end, not when the holder does."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _cgroup_dirs(pid: int, plan) -> tuple[str, ...]:
    """The container's own cgroup directories: its cgroupsPath, else the leaves named linx-..."""
    from ..host.cgroup import _cgroup_mounts, _cgroups_of

    mounts = _cgroup_mounts()
    leaves = {h.leaf for h in plan.cgroup.hierarchies if h.leaf} if plan.cgroup is not None else set()
    out = []
    for key, path in _cgroups_of(pid).items():
        if key in mounts and (path in leaves or not leaves and os.path.basename(path).startswith("linx-")):
            out.append(os.path.join(mounts[key], path.lstrip("/")))
    return tuple(sorted(set(out)))


def send_console(path: str, master: int) -> None:
    """The pty master to the engine's console socket with SCM_RIGHTS, as runc (utils.SendFd)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
    except OSError as exc:
        raise StepError("console", "host", exc.errno or 0, "send the pty master to the console socket", path) from None
    finally:
        s.close()


def _set_size(master: int, size: tuple[int, int]) -> None:
    import fcntl
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


class _Holder:
    def __init__(self, c: Container, prep: Prepared, log: Log):
        self.c = c
        self.prep = prep
        self.log = log
        self.w = None
        self.pidfd = -1

    def state(self, status_word: str) -> dict:
        """The state a hook is given: that of its point in the lifecycle, with the container's pid,
        not a fresh look (a program that has already ended would read 'stopped', pid 0)."""
        r = self.c.load()
        out = state_json(replace(r, status=status_word))
        out["status"] = status_word
        if status_word != "stopped":
            out["pid"] = r.pid
        return out

    def create(self, console_socket: str | None) -> int:
        from ..runner import Workload

        prep = self.prep
        self.c.update(holder_pid=os.getpid(), holder_start=pid_start_time(os.getpid()) or 0)
        fds = _stdio_fds()
        w = self.w = Workload(prep.plan, stdin=None if prep.terminal else fds[0],  # type: ignore[arg-type]
                              stdout=None if prep.terminal else fds[1], stderr=None if prep.terminal else fds[2],
                              pty=prep.terminal, releasable=True)
        w.spawn()
        _quiet_stdio()
        w.setup()
        if prep.plan.has_new("cgroup"):
            # runc's container is in every namespace of its config once `create` returns (nsexec
            # unshares the cgroup one before its init parks): engines and runtime-tools look then.
            w.agent.unshare_cgroupns()
        self.pidfd = os.pidfd_open(w.pid)
        self.c.update(pid=w.pid, pid_start=pid_start_time(w.pid) or 0, cgroups=_cgroup_dirs(w.pid, prep.plan))
        state = self.state("creating")
        H.run("prestart", prep.hooks, state)
        H.run("createRuntime", prep.hooks, state)
        H.run("createContainer", prep.hooks, state, enter_pid=w.pid)
        if console_socket:
            if prep.console_size:
                _set_size(w.pty_master, prep.console_size)
            send_console(console_socket, w.pty_master)
            os.close(w.pty_master)
            w.pty_master = None
        return w.pid

    def start(self) -> None:
        w = self.w
        if w.state != "ready":
            raise StateError(f"container `{self.c.id}` is not created ({status(self.c.load())})")
        try:
            H.run("startContainer", self.prep.hooks, self.state("created"), enter_pid=w.pid)
            w.proceed()
        except BaseException:
            w.close()
            self.c.update(status="stopped")
            raise
        w.release()
        self.c.update(status="running")
        H.run_warn("poststart", self.prep.hooks, self.state("running"), self.log.warn)

    def delete(self) -> None:
        """Kill what is left, undo the host steps."""
        w = self.w
        if w.state == "released" and self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([self.pidfd], [], [], STOP_WAIT)
        w.close()

    def serve(self, listener: socket.socket) -> int:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        if self.pidfd >= 0:
            poller.register(self.pidfd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self.pidfd:
                    poller.unregister(fd)
                    if self.c.load().status in ("created", "running", "paused"):
                        self.c.update(status="stopped")
                    continue
                conn, _ = listener.accept()
                with conn:
                    if self._handle(conn):
                        return 0

    def _handle(self, conn: socket.socket) -> bool:
        """One request; True when the holder's work is done (delete)."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (0, os.geteuid()):
            return False
        conn.settimeout(10)
        try:
            request = conn.recv(MAX_REQUEST).decode(errors="replace").strip()
        except OSError:
            return False
        done = False
        try:
            if request == "start":
                self.start()
            elif request == "delete":
                self.delete()
                done = True
            else:
                raise StateError(f"holder: unknown request `{request[:40]}`")
            reply = "ok"
        except LinxError as exc:
            reply = "error " + json.dumps(to_record(exc))
        except Exception as exc:  # noqa: BLE001 - answered, never a traceback
            reply = "error " + json.dumps(to_record(StateError(f"holder: {type(exc).__name__}: {exc}")))
        try:
            conn.sendall(reply.encode())
        except OSError:
            pass
        return done


def _hold(c: Container, prep: Prepared, ready_fd: int, console_socket: str | None, log: Log) -> int:
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    os.umask(0o077)
    holder = _Holder(c, prep, log)
    listener = None
    try:
        pid = holder.create(console_socket)
        dir_fd = c._dir()
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Through the directory's fd: a short path whatever --root and the id are (sun_path: 108 bytes).
            listener.bind(f"/proc/self/fd/{dir_fd}/{SOCK}")
            listener.listen(8)
        finally:
            os.close(dir_fd)
        c.update(status="created")
    except BaseException as exc:
        if holder.w is not None:
            try:
                holder.w.close()
            except BaseException:  # noqa: BLE001 - the first error is the one reported
                pass
        if not isinstance(exc, LinxError):
            exc = StepError("create", "host", getattr(exc, "errno", 0) or 0, f"{type(exc).__name__}: {exc}")
        os.write(ready_fd, ("error " + json.dumps(to_record(exc))).encode())
        os.close(ready_fd)
        return exc.exit_code
    os.write(ready_fd, f"created {pid}".encode())
    os.close(ready_fd)
    try:
        return holder.serve(listener)
    finally:
        listener.close()


# --- the other commands ----------------------------------------------------------------

def _ask(c: Container, request: str) -> None:
    """One request to the holder; raises what it raised."""
    dir_fd = c._dir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(f"/proc/self/fd/{dir_fd}/{SOCK}")
        s.sendall(request.encode() + b"\n")
        kind, rest = _message(s.fileno())
    except OSError as exc:
        raise StateError(f"container `{c.id}`: its holder does not answer ({exc.strerror})") from None
    finally:
        s.close()
        os.close(dir_fd)
    if kind == "ok":
        return
    _raise_error(kind, rest)
    raise StateError(f"container `{c.id}`: its holder ended without an answer")


def start(c: Container) -> None:
    r = c.load()
    now = status(r)
    if now != "created":
        raise StateError(f"cannot start container `{c.id}`: it is {now}, not created")
    _ask(c, "start")


def _pidfd_of(r: Record) -> int | None:
    """A pidfd of the container process, once its start time proves it is ours."""
    if not r.pid:
        return None
    try:
        fd = os.pidfd_open(r.pid)
    except OSError:
        return None
    if not alive(r.pid, r.pid_start):
        os.close(fd)
        return None
    return fd


def kill(c: Container, signo: int, all_: bool = False) -> None:
    r = c.load()
    now = status(r)
    if not all_:
        if now not in ("created", "running", "paused"):
            raise StateError(f"cannot kill container `{c.id}`: it is {now}")
        fd = _pidfd_of(r)
        if fd is None:
            raise StateError(f"cannot kill container `{c.id}`: its process is gone")
        try:
            signal.pidfd_send_signal(fd, signo)
        except ProcessLookupError:
            raise StateError(f"cannot kill container `{c.id}`: its process is gone") from None
        finally:
            os.close(fd)
        return
    for pid in cgroup_pids(r):
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass


def delete(c: Container, force: bool, log: Log) -> None:
    if not c.exists():
        if force:
            return
        raise StateError(f"container `{c.id}` does not exist")
    try:
        r = c.load()
    except StateError:
        if not force:
            raise
        c.remove()
        return
    now = status(r)
    if now in ("running", "paused", "creating") and not force:
        raise StateError(f"cannot delete container `{c.id}` that is {now}: stop it first, or use --force")
    if holder_alive(r):
        _ask(c, "delete")
        deadline = time.monotonic() + STOP_WAIT
        while holder_alive(r) and time.monotonic() < deadline:
            time.sleep(0.02)
    else:
        _remove_orphaned(r, log)
    state = state_json(r)
    state["status"] = "stopped"
    state["pid"] = 0
    H.run_warn("poststop", r.hooks, state, log.warn)
    c.remove()


def _remove_orphaned(r: Record, log: Log) -> None:
    """The holder is gone (killed): what can still be found is killed and removed,
    as the holder's own undo does (host/cgroup.py Live: freeze or cgroup.kill,
    SIGKILL through pidfds, rmdir retried while the dead are reaped)."""
    from ..host.cgroup import Live

    fd = _pidfd_of(r)  # outside any recorded cgroup (none recorded): still ours by its start time
    if fd is not None:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    try:
        Live.of_dirs(r.cgroups).destroy()
    except OSError as exc:
        log.warn(f"could not remove the cgroups {' '.join(r.cgroups)}: {exc.strerror}")


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_CHILD_SUBREAPER = 36


def run(c: Container, bundle: str, *, pid_file: str | None, console_socket: str | None, detach: bool,
        log: Log) -> int:
    """`run` as runc's: create, start, and (without --detach) wait for the container,
    forwarding signals to it, delete it once it ended, and exit with its code
    (128+N when killed by signal N).  The waiting `run` is a subreaper: when the
    agent lets go of the started container (release), it becomes run's child.
    Its signal handlers are in place before `create`, as runc's: a signal that
    arrives before the container's process runs is held and sent once it does
    (it used to kill `run` itself when it came between the start and the
    handlers, leaving the container to the agent's safety net)."""
    def create_and_start() -> None:
        create(c, bundle, pid_file=pid_file, console_socket=console_socket, log=log)
        try:
            start(c)
        except BaseException:
            delete(c, True, log)
            raise

    if detach:
        create_and_start()
        return 0
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise StateError(f"run: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    pending: list[int] = []  # signals held until the container's process runs
    started = [False]

    def send(signo: int) -> None:
        try:
            kill(c, signo)
        except LinxError:
            pass  # it is ending anyway

    def forward(signo: int, _frame) -> None:
        if started[0]:
            send(signo)
        else:
            pending.append(signo)

    old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        create_and_start()
        pid = c.load().pid
        started[0] = True
        while pending:
            send(pending.pop(0))
        while True:
            try:
                got, wstatus = os.waitpid(-1, 0)
            except ChildProcessError:  # not ours after all (the agent could not release it to us)
                code = 255
                break
            if got == pid:
                code = os.waitstatus_to_exitcode(wstatus)
                code = 128 - code if code < 0 else code
                break
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    delete(c, False, log)
    while True:  # the holder, gone with delete
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return code


def run_with_report(fn: Callable[[], int | None], log: Log) -> int:
    try:
        return fn() or 0
    except LinxError as exc:
        log("error", str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
