"""Detached workloads' state under a runtime directory, like /run/linx/NAME.

    /run/linx/NAME/state.json   name, pids (with their start times), cgroups, spec
                                hash, start time, status, exit, restarts
    /run/linx/NAME/plan.json    the resolved plan (for `exec`): data, read back
                                against the Plan's types (stored.py), never code
    /run/linx/NAME/exit         written by a lingering agent when the workload ends
    /run/linx/NAME/stdout.log   default stdout/stderr of a detached workload
    /run/linx/NAME/stderr.log

A pid alone is never trusted: liveness is the pid *and* its start time (field
22 of /proc/PID/stat), so a recycled pid is never mistaken for our workload.
Root uses /run/linx; others $XDG_RUNTIME_DIR/linx (or /tmp/linx-UID); the
directory is 0700 and checked on every use (rundir.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import rundir, stored
from .errors import StateError
from .views import NAME_RE, View, alive, all_views, classify, parse_state, pid_start_time, read_bounded  # noqa: F401
from .views import ACTIVE, MAX_END_BYTES, MAX_STATE_BYTES


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
        sd.write({"name": name, "status": "starting", "created": time.time()})
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
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                return parse_state(read_bounded(fd, "state.json", MAX_STATE_BYTES))
            finally:
                os.close(fd)
        except (OSError, ValueError) as exc:
            raise StateError(f"state of `{self.name}` is unreadable: {exc}") from None

    def write(self, state: dict[str, Any]) -> None:
        self._write("state.json", json.dumps(state, indent=2, sort_keys=True).encode())

    def _write(self, name: str, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            rundir.write_file(fd, name, data)
        finally:
            os.close(fd)

    def update(self, **changes: Any) -> dict[str, Any]:
        state = self.read()
        state.update(changes)
        self.write(state)
        return state

    def save_plan(self, plan: Any) -> None:
        self._write("plan.json", stored.dumps(plan))

    def load_plan(self) -> Any:
        """The plan `exec` joins: read as data and checked against Plan's types."""
        from .plan import Plan

        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
