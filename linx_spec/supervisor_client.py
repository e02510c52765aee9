"""The client side of the shared supervisor (supervisor.py, where the exchange
is drawn): any linx-spec command that starts, stops or reloads a detached
workload.  Imports nothing of the package but rundir and errors, so that the
supervisor's own module (which imports live.py, runner.py) is never loaded by
a client and the import graph has no circle."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

from . import rundir

SOCKET = "supervisor.sock"
LOCK = "supervisor.lock"
MAX_LINE = 4096


def _sock_path(root_fd: int) -> str:
    return f"/proc/self/fd/{root_fd}/{SOCKET}"


def _exchange(root_fd: int, request: dict[str, Any], timeout: float | None) -> dict[str, Any] | None:
    """One request; None when no supervisor answers (none listens, or it was
    going away: the request was not taken)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(_sock_path(root_fd))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        s.settimeout(timeout)
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            line = _read_line(s)
        except (ConnectionResetError, BrokenPipeError):
            return None
        if not line:
            return None
        reply = json.loads(line)
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise ValueError("a malformed reply")
        return reply
    finally:
        s.close()


def _read_line(s: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(MAX_LINE + 1 - len(buf))
        if not chunk:
            return b""
        buf += chunk
        if len(buf) > MAX_LINE:
            raise ValueError("a line longer than 4 KiB")
    return buf.split(b"\n", 1)[0]


def call(op: str, name: str, *, start: bool = False, timeout: float | None = 10.0) -> dict[str, Any] | None:
    """Send op for workload name to the supervisor of this runtime directory;
    with start, start one when none runs.  -> its reply, or None when none runs."""
    from .errors import StateError

    fd = rundir.open_root(create=start)
    if fd is None:
        return None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = _exchange(fd, {"op": op, "name": name}, timeout)
            except (ValueError, OSError) as exc:
                raise StateError(f"the supervisor of {rundir.root_path()} did not answer `{op} {name}`: {exc}") \
                    from None
            if reply is not None or not start:
                return reply
            if time.monotonic() > deadline:
                raise StateError(f"no supervisor could be started in {rundir.root_path()}")
            _spawn(fd)
    finally:
        os.close(fd)


def _spawn(root_fd: int) -> None:
    """Start a supervisor for this runtime directory and wait until it listens
    (or found another one holding the lock).  Double fork: it is nobody's child
    to reap, whoever started it (a CLI, a test, an API user)."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    import fcntl

    r, w = os.pipe2(os.O_CLOEXEC)
    # Copied above the targets first, so that no dup2 overwrites a source still needed.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (root_fd, w)]
    try:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "linx_spec.supervisor"], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, high[0], 3), (os.POSIX_SPAWN_DUP2, high[1], 4),
                                           (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
                                           (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)],
                             setsid=True)
    finally:
        os.close(w)
        for fd in high:
            os.close(fd)
    try:
        os.read(r, 1)  # EOF or one byte: listening, or another holds the lock
    finally:
        os.close(r)
        os.waitpid(pid, 0)
