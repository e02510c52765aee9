"""Entering the workload's net namespace from the host, without moving the runner.

A netlink socket belongs for its whole life to the netns of the task that
created it, and /proc/sys/net shows the netns of the task that opens a file in
it (net_ctl_header_lookup uses `current`).  setns() changes only the calling
*thread* (namespaces are per task), so a short-lived thread enters
/proc/PID/ns/net, does its work (sysctls, a netlink socket) and ends; no other
thread of the runner ever changes netns.  That costs ~0.2 ms; pyroute2's
`IPRoute(netns=...)` forks a helper process for the same (~6 ms).

Without root (a rootless workload owns its user namespace) the netns can only be
entered through that user namespace, and setns(CLONE_NEWUSER) refuses
multi-threaded callers: a forked child does it (lo and sysctls only; interfaces
need CAP_NET_ADMIN on the host), and reports a failure back as JSON data.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import threading
from typing import Any, Callable

from ..errors import touched, touching

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, nstype: int, path: str) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise touched(ctypes.get_errno(), "enter the workload's namespace", path)


def open_ns(pid: int, kind: str) -> int:
    path = f"/proc/{pid}/ns/{kind}"
    with touching(f"open the workload's {kind} namespace", path):
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def in_thread(netns_fd: int, fn: Callable[[], Any], where: str) -> Any:
    """fn() in a new thread that entered netns_fd (opened from `where`); the caller's
    threads never change netns."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            _setns(netns_fd, CLONE_NEWNET, where)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        # The thread ends here, and its netns with it: nothing to restore.

    t = threading.Thread(target=body, name="linx-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def in_child_netns(pid: int, fn: Callable[[], Any]) -> Any:
    fd = open_ns(pid, "net")
    try:
        return in_thread(fd, fn, f"/proc/{pid}/ns/net")
    finally:
        os.close(fd)


def forked_in_userns(pid: int, fn: Callable[[], None]) -> None:
    """Rootless: fn() in a forked child that entered the workload's user, then net, namespace.

    setns(CLONE_NEWUSER) needs a single-threaded caller (user_namespaces(7)); a
    fork has one thread.  Only plain syscalls run in the child, then _exit.
    """
    user_fd = open_ns(pid, "user")
    try:
        net_fd = open_ns(pid, "net")
    except BaseException:
        os.close(user_fd)
        raise
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            report = b""
            try:
                os.close(r)
                _setns(user_fd, CLONE_NEWUSER, f"/proc/{pid}/ns/user")
                _setns(net_fd, CLONE_NEWNET, f"/proc/{pid}/ns/net")
                fn()
            except OSError as exc:
                what, obj = vars(exc).get("linx_touched", (exc.strerror or "network helper", ""))
                report = json.dumps([what, exc.errno or errno.EIO, obj, vars(exc).get("kernel_message", "")]).encode()
            except BaseException as exc:  # noqa: BLE001
                report = json.dumps([f"network helper: {exc!r}", errno.EIO, "", ""]).encode()
            try:
                os.write(w, report)
            finally:
                os._exit(0)
        os.close(w)
        w = -1
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.waitpid(child, 0)
    finally:
        for fd in (r, w, user_fd, net_fd):
            if fd >= 0:
                os.close(fd)
    if chunks:
        what, err, obj, kernel = json.loads(b"".join(chunks))
        exc = touched(err, what, obj)
        if kernel:
            exc.kernel_message = kernel  # type: ignore[attr-defined]
        raise exc
