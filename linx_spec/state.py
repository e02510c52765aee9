"""Detached workloads' state under a runtime directory, like /run/linx/NAME.

    /run/linx/NAME/state.json   name, pids (with their start times), cgroups, spec
                                hash, start time, status, exit, restarts
    /run/linx/NAME/plan.json    the resolved plan (for `exec`): data, read back
                                against the Plan's types (stored.py), never code
    /run/linx/NAME/exit         written by a lingering agent when the workload ends
    /run/linx/NAME/state.lock   flock'ed around every read-modify-write of state.json
    /run/linx/NAME/apply.lock   flock'ed by a live apply from its observation to its record
    /run/linx/NAME/stdout.log   default stdout/stderr of a detached workload
    /run/linx/NAME/stderr.log

A pid alone is never trusted: liveness is the pid *and* its start time (field
22 of /proc/PID/stat), so a recycled pid is never mistaken for our workload.
Root uses /run/linx; others $XDG_RUNTIME_DIR/linx (or /tmp/linx-UID); the
directory is 0700 and checked on every use (rundir.py).

state.json has more than one writer: the shared supervisor (status, pids, the
end) and the CLI (`stop`, `pause`, a live `apply`'s last_applied).  Each write
is a temp file renamed into place, so a reader never sees half a file; an
update (read, change some keys, write) holds an exclusive flock on state.lock
for its read-modify-write only, so two updates at once both survive.  The lock
is one per workload, opened afresh by each update (flock belongs to the open
file: threads of one process exclude each other too), and never held across
anything slow.  A live apply is a longer read-modify-write (last_applied and
plan.json read, the kernel written, both recorded): apply.lock serializes those,
the CLI's `apply` waiting, the supervisor's reconcile tick skipping a turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Callable

from . import rundir, stored
from .errors import StateError
from .views import NAME_RE, View, alive, all_views, classify, parse_state, pid_start_time, read_bounded  # noqa: F401
from .views import ACTIVE, MAX_END_BYTES, MAX_STATE_BYTES

LOCK_FILE = "state.lock"
APPLY_LOCK_FILE = "apply.lock"  # held by a live apply (CLI or the supervisor's reconcile) for its whole length
# The host ends of veths a live `apply` added (live.py writes, the supervisor deletes
# them when the run ends): a key of its own, so a supervisor without any never imports live.py.
HOST_ENDS = "live_host_ends"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def runtime_root(create: bool = False) -> Path | None:
    """The checked runtime directory (rundir.py); None when it does not exist
    and create is False.  Refuses (StateError) a directory that is not ours alone."""
    fd = rundir.open_root(create=create)
    if fd is None:
        return None
    os.close(fd)
    return Path(rundir.root_path())


class StateDir:
    def __init__(self, name: str, root: Path | None = None):
        if not NAME_RE.match(name):
            raise StateError(f"`{name}` is not a valid workload name")
        self.name = name
        self.path = (root or Path(rundir.root_path())) / name

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def exit_file(self) -> Path:
        return self.path / "exit"

    @classmethod
    def create(cls, name: str) -> "StateDir":
        """Claims the name; a live or dead workload of that name is an error."""
        sd = cls(name, runtime_root(create=True))
        try:
            sd.path.mkdir(mode=0o700)
        except FileExistsError:
            view = sd.view()
            if view.status in ACTIVE:
                raise StateError(f"a workload named `{name}` is already running; choose another name "
                                 f"(--set name=...) or stop it") from None
            raise StateError(f"a workload named `{name}` exists ({view.status}{': ' + view.detail if view.detail else ''}); "
                             f"remove it with `linx-spec delete {name}`") from None
        # Who starts it, until its supervisor records itself: a `stop` meanwhile
        # knows the start is under way, not dead (detach.stop).
        me = os.getpid()
        sd.write({"name": name, "status": "starting", "created": time.time(), "creator_pid": me,
                  "creator_pid_start": pid_start_time(me)})
        return sd

    @classmethod
    def open(cls, name: str) -> "StateDir":
        root = runtime_root()
        sd = cls(name, root) if root else None
        if sd is None or not sd.state_file.exists():
            raise StateError(f"no workload named `{name}` (see `linx-spec ps`)")
        return sd

    def read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, _DIR_FLAGS)
            try:
                return self._read_in(fd)
            finally:
                os.close(fd)
        except (OSError, ValueError) as exc:
            raise StateError(f"state of `{self.name}` is unreadable: {exc}") from None

    @staticmethod
    def _read_in(dir_fd: int) -> dict[str, Any]:
        return parse_state(read_bounded(dir_fd, "state.json", MAX_STATE_BYTES))

    @staticmethod
    def _encode(state: dict[str, Any]) -> bytes:
        return json.dumps(state, indent=2, sort_keys=True).encode()

    def write(self, state: dict[str, Any]) -> None:
        """Replace the whole state (under the lock: never between another's read and write)."""
        with self.locked() as fd:
            rundir.write_file(fd, "state.json", self._encode(state))

    def _write(self, name: str, data: bytes) -> None:
        fd = os.open(self.path, _DIR_FLAGS)
        try:
            rundir.write_file(fd, name, data)
        finally:
            os.close(fd)

    def applying(self, wait: bool = True):
        """The workload's apply lock (module docstring), held for the block; -> the
        state directory's fd, or None when wait is False and another apply holds it."""
        return self.locked(APPLY_LOCK_FILE, wait)

    @contextlib.contextmanager
    def locked(self, lock_file: str = LOCK_FILE, wait: bool = True):
        """The workload's state lock, held for the block; -> the state directory's fd
        (None: wait was False and someone else holds it).  The lock file is made 0600
        relative to that fd, O_NOFOLLOW, and must be a regular file of ours."""
        try:
            dir_fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            raise StateError(f"state of `{self.name}` is unreadable: {exc}") from None
        try:
            try:
                lock = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                               0o600, dir_fd=dir_fd)
            except OSError as exc:
                raise StateError(f"state of `{self.name}`: cannot open its {lock_file}: {exc}") from None
            try:
                st = os.fstat(lock)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    raise StateError(f"state of `{self.name}`: {lock_file} is not a regular file of ours")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))  # EINTR: PEP 475 retries
                except BlockingIOError:
                    yield None
                    return
                yield dir_fd
            finally:
                os.close(lock)  # releases the flock
        finally:
            os.close(dir_fd)

    def update(self, **changes: Any) -> dict[str, Any]:
        """Read, change these keys, write: atomic against every other update of
        this workload (the module docstring); -> the new state."""
        return self.modify(lambda state: state.update(changes))

    def modify(self, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """update() with a function: change(state) edits the state read under the
        lock (it must be quick: the lock is held), which is then written; -> it."""
        with self.locked() as fd:
            try:
                state = self._read_in(fd)
            except (OSError, ValueError) as exc:
                raise StateError(f"state of `{self.name}` is unreadable: {exc}") from None
            change(state)
            rundir.write_file(fd, "state.json", self._encode(state))
        return state

    def save_plan(self, plan: Any) -> None:
        self._write("plan.json", stored.dumps(plan))

    def load_plan(self) -> Any:
        """The plan `exec` joins: read as data and checked against Plan's types."""
        from .plan import Plan

        fd = os.open(self.path, _DIR_FLAGS)
        try:
            raw = rundir.read_file(fd, "plan.json", stored.MAX_BYTES)
            return stored.loads(Plan, raw)
        except (OSError, ValueError) as exc:
            raise StateError(f"the plan of `{self.name}` is unreadable ({exc}); "
                             f"`linx-spec delete {self.name}` and apply it again") from None
        finally:
            os.close(fd)

    def view(self) -> View:
        try:
            state = self.read()
        except StateError as exc:
            return View(self.name, "dead", str(exc), {})

        def read_end() -> str:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return ""
            try:
                return read_bounded(fd, "exit", MAX_END_BYTES).decode("ascii", "replace")
            except FileNotFoundError:
                return ""
            finally:
                os.close(fd)

        return classify(self.name, state, read_end)

    def remove(self) -> None:
        shutil.rmtree(self.path)
