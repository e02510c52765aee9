"""`linx-oci exec`: a process inside a running container, as `runc exec`.

The process is planned as `linx-spec exec` plans it (exec.py: the container's
namespaces, its cgroups, its identity, capabilities, no_new_privs and seccomp
filter) from the container's stored plan, with what `--process process.json`
(a runtime-spec Process) or the flags say: args, env, cwd, user, terminal.

    --detach   the process is released like the container at start (the agent
               exits, the caller's subreaper reaps it: containerd's shim always
               execs this way); --pid-file gets its host pid; exit 0 at once.
    otherwise  exec waits and exits with the process's status (128+N for signal N).
    --tty      a pty: its master goes to --console-socket, or without one it is
               proxied to the caller's terminal.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ..errors import PlanError, StateError
from .record import Container, status
from .runtime import Log, _stdio_fds, _write_pid_file, send_console

MAX_PROCESS_BYTES = 1 << 20
PROCESS_KEYS_USED = {"args", "env", "cwd", "user", "terminal", "consoleSize"}


def _process_json(path: str, log: Log) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROCESS_BYTES + 1)
        if len(raw) > MAX_PROCESS_BYTES:
            raise PlanError(f"{path}: larger than {MAX_PROCESS_BYTES} bytes", "a process.json is a few KiB")
        data = json.loads(raw)
    except OSError as exc:
        raise PlanError(f"--process {path}: {exc.strerror}", "give a readable runtime-spec process.json") from None
    except (ValueError, RecursionError) as exc:
        raise PlanError(f"--process {path}: not JSON ({exc})", "give a runtime-spec process.json") from None
    if not isinstance(data, dict):
        raise PlanError(f"--process {path}: expected a JSON object", "give a runtime-spec process.json")
    for key in sorted(set(data) - PROCESS_KEYS_USED):
        # The container's own (capabilities, rlimits, noNewPrivileges, labels) apply: as `linx-spec exec`.
        log("debug", f"{path}: {key}: left out, the container's own applies")
    return data


def _strs(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise PlanError(f"{where}: expected a list of strings", "see runtime-spec config.md#process")
    return value


def _ids(user, where: str) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    if not isinstance(user, dict):
        raise PlanError(f"{where}: expected an object", "see runtime-spec config.md#user")

    def one(key):
        v = user.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32 - 1:
            raise PlanError(f"{where}.{key}: expected an id", "0 to 4294967294")
        return v

    groups = user.get("additionalGids")
    if groups is not None:
        if not isinstance(groups, list) or len(groups) > 65536 or not all(
                isinstance(g, int) and not isinstance(g, bool) and 0 <= g < 2**32 - 1 for g in groups):
            raise PlanError(f"{where}.additionalGids: expected a list of ids", "0 to 4294967294, at most 65536")
        groups = tuple(groups)
    return one("uid"), one("gid"), groups


def exec_command(c: Container, command: list[str], opts: dict, log: Log) -> int:
    from ..exec import exec_plan
    from ..plan.workload import Plan
    from .. import stored

    r = c.load()
    now = status(r)
    if now != "running":
        raise StateError(f"cannot exec in container `{c.id}`: it is {now}, not running")
    try:
        plan = stored.loads(Plan, c.read_bytes("plan.json"))
    except stored.BadData as exc:
        raise StateError(f"{c.path}/plan.json: {exc}") from None
    env = dict(e.split("=", 1) for e in plan.process.env)
    cwd = opts.get("cwd")
    uid = gid = groups = None
    tty = bool(opts.get("tty"))
    if opts.get("process"):
        proc = _process_json(opts["process"], log)
        command = _strs(proc.get("args"), "process.args")
        if "env" in proc:
            env = dict(e.split("=", 1) for e in _strs(proc["env"], "process.env") if "=" in e)
        if isinstance(proc.get("cwd"), str):
            cwd = proc["cwd"]
        if "user" in proc:
            uid, gid, groups = _ids(proc["user"], "process.user")
        tty = proc.get("terminal") is True
    for item in opts.get("env", []):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise PlanError(f"--env {item}: not NAME=value", "--env NAME=value")
        env[name] = value
    if opts.get("user"):
        u, _, g = opts["user"].partition(":")
        if not u.isdigit() or (g and not g.isdigit()):
            raise PlanError(f"--user {opts['user']}: expected UID[:GID]", "numeric ids")
        uid, gid = int(u), (int(g) if g else None)
    if not command:
        raise PlanError("exec needs a command", "give it after the id, or as args in --process")
    if cwd is not None and not cwd.startswith("/"):
        raise PlanError(f"cwd `{cwd}` is not absolute", "give an absolute path")
    plan = exec_plan(plan, r.pid, command, cwd=cwd)
    process = dataclasses.replace(plan.process, env=tuple(f"{k}={v}" for k, v in env.items()))
    if uid is not None:
        process = dataclasses.replace(process, uid=uid)
    if gid is not None:
        process = dataclasses.replace(process, gid=gid)
    if groups is not None:
        process = dataclasses.replace(process, groups=groups)
    plan = dataclasses.replace(plan, process=process)
    console = opts.get("console-socket")
    if console and not tty:
        raise PlanError("--console-socket was given without a terminal", "add --tty (or terminal: true)")
    if opts.get("detach") or console:
        return _detached(plan, tty, console, opts.get("pid-file"), bool(opts.get("detach")))
    from ..apply import run_foreground

    return run_foreground(plan, pty=tty).status


def _detached(plan, tty: bool, console: str | None, pid_file: str | None, detach: bool) -> int:
    from ..runner import Workload

    if tty and not console:
        raise PlanError("--detach with --tty needs --console-socket", "the pty master is sent there")
    fds = _stdio_fds()
    w = Workload(plan, stdin=None if tty else fds[0], stdout=None if tty else fds[1],
                 stderr=None if tty else fds[2], pty=tty, releasable=detach)
    try:
        w.spawn()
        w.setup()
        if console:
            send_console(console, w.pty_master)
            os.close(w.pty_master)
            w.pty_master = None
        w.proceed()
        if pid_file:
            _write_pid_file(pid_file, w.pid)
        if detach:
            w.release()
            return 0
        return w.wait().status
    finally:
        w.close()
