"""The host end of a finished workload's veth, deleted off the critical path.

Deleting a veth (RTM_DELLINK) blocks its caller for ~20 ms: the kernel's
unregister_netdevice waits for RCU grace periods, under the RTNL lock, before it
answers.  That was 2/3 of a level (c) run() (bench/README.md).  After the
workload *ended* (never on a rollback, which stays synchronous: a step that
failed returns only once everything it made is gone), the delete goes to one
daemon thread per process, and run() returns.

"Nothing of a finished workload remains" still holds, at these points:
  - before the next veth of this process takes the same host name or one of the
    same host addresses (`wait_for`, called by the network step before it creates
    one): a name or address is never refused because of our own leftover;
  - when `settle()` returns (the API's way to wait for all of them; the tests'
    leak census waits with it);
  - before the process exits (atexit: `settle()`), so a CLI `apply` never leaves
    one behind, and neither does a Python program that returns from main; the
    detached supervisor, which ends with os._exit, calls settle() itself.
Should the process be killed first, the kernel still destroys the pair when the
workload's netns dies (as before this module: the runner killed mid-delete).

The socket the delete is sent on is opened by the caller, in the netns the veth
was created from (a thread's netns is its own; the daemon thread's could differ).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Callable

_lock = threading.Condition()
_pending: dict[int, tuple[str, frozenset[str]]] = {}  # ticket -> (host name, host addresses)
_queue: list[tuple[int, Callable[[], None]]] = []
_errors: list[BaseException] = []  # deletes that failed: raised by settle(), once
_worker: threading.Thread | None = None
_next = 0
MAX_PENDING = 16  # each holds a netlink socket: beyond this, defer() waits (the kernel's delete rate)
SETTLE_TIMEOUT_S = 30.0  # a delete the kernel has not answered in this long is a bug to report, not to wait out


def defer(name: str, addresses: frozenset[str], delete: Callable[[], None]) -> None:
    """Queue `delete` (the synchronous undo, socket already opened) for the daemon thread.
    At MAX_PENDING it first waits for one to finish: workloads that end faster than
    the kernel deletes their veths must not pile up sockets without bound."""
    global _worker, _next
    with _lock:
        if _worker is not None and _worker.is_alive():
            _lock.wait_for(lambda: len(_pending) < MAX_PENDING, SETTLE_TIMEOUT_S)
        _next += 1
        _pending[_next] = (name, addresses)
        _queue.append((_next, delete))
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="linx-veth-teardown", daemon=True)
            _worker.start()
        _lock.notify_all()


def _work() -> None:
    while True:
        with _lock:
            while not _queue:
                _lock.wait()
            ticket, delete = _queue.pop(0)
        try:
            delete()
        except BaseException as exc:  # noqa: BLE001 - kept for settle(); the thread goes on
            with _lock:
                _errors.append(exc)
        finally:
            with _lock:
                _pending.pop(ticket, None)
                _lock.notify_all()


def _wait(busy: Callable[[], bool], timeout: float) -> bool:
    with _lock:
        return _lock.wait_for(lambda: not busy(), timeout)


def wait_for(name: str, addresses: frozenset[str] | set[str], timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Until no pending delete of this process holds that host name or any of those addresses."""
    def busy() -> bool:
        return any(n == name or a & addresses for n, a in _pending.values())

    if _pending:
        _wait(busy, timeout)


def settle(timeout: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until every deferred delete of this process is done; -> False on timeout.
    A delete that failed is raised here (a StepError naming the veth), once."""
    done = _wait(lambda: bool(_pending), timeout)
    with _lock:
        errors, _errors[:] = list(_errors), []
    if errors:
        raise errors[0]
    return done


def pending() -> list[str]:
    """The host names whose delete has not finished yet."""
    with _lock:
        return [n for n, _a in _pending.values()]


def _forget_in_child() -> None:
    """A forked child (the detached supervisor) has no worker thread: the deletes
    queued before the fork are the parent's to finish, not the child's to wait for."""
    global _worker, _lock
    _lock = threading.Condition()  # the worker may have held it at the fork
    _pending.clear()
    _queue.clear()
    _errors.clear()
    _worker = None


os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _at_exit() -> None:
    try:
        settle()
    except Exception as exc:  # noqa: BLE001 - at exit, say it: no one else will
        import sys

        print(f"linx-spec: {exc}", file=sys.stderr)
