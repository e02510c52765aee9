"""An OCI container's state on disk, under the runtime's --root (default /run/linx-oci):

    ROOT/ID/state.json   Record: pids with their start times, bundle, hooks, cgroups
    ROOT/ID/plan.json    the resolved Plan (for `exec`), data read back against its types
    ROOT/ID/holder.sock  the holder's socket (holder.py): `start` and `delete` go through it

ROOT and ROOT/ID are 0700 and checked on every use (rundir.py); the files are
JSON read back against the dataclasses' types (stored.py), never pickle.  A
pid is trusted only together with its start time (state.alive), so the status
of a container whose process ended, or whose holder was killed, is `stopped`,
whatever the file last said.

Only what `state`, `kill`, `list` and `ps` need is imported here: an engine
calls them often, and they must start fast.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace

from .. import rundir, stored
from ..errors import StateError
from ..state import alive, pid_start_time

DEFAULT_ROOT = "/run/linx-oci"
OCI_STATE_VERSION = "1.0.2-dev"
# runc's own rule (libcontainer/factory_linux.go validateID), bounded: a file name.
ID_RE = re.compile(r"^[\w+.-]{1,255}$", re.ASCII)
MAX_STATE_BYTES = 1 << 20
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


@dataclass(frozen=True)
class Hook:
    """One runtime-spec hook (config.json `hooks.KIND[i]`)."""

    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None  # seconds


@dataclass(frozen=True)
class Record:
    id: str
    bundle: str
    created: str  # RFC 3339, UTC
    status: str  # creating | created | running | paused | stopped, as last written (see status())
    pid: int = 0
    pid_start: int = 0
    holder_pid: int = 0
    holder_start: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, tuple[Hook, ...]] = field(default_factory=dict)
    cgroups: tuple[str, ...] = ()  # the container's cgroup directories (cgroup.procs for kill --all, ps)


def check_id(cid: str) -> str:
    if not ID_RE.match(cid) or cid in (".", ".."):
        raise StateError(f"invalid container id `{cid[:80]}`: letters, digits, `_+.-`, at most 255")
    return cid


class Root:
    """The checked --root directory."""

    def __init__(self, path: str | None):
        self.path = os.path.abspath(path or DEFAULT_ROOT)

    def open(self, create: bool) -> int | None:
        if create:
            os.makedirs(os.path.dirname(self.path.rstrip("/")) or "/", mode=0o755, exist_ok=True)
        # open_subdir with no parent fd: the absolute path, made 0700 and checked like the default root.
        return rundir.open_subdir(None, self.path, create, f"root directory {self.path}")  # type: ignore[arg-type]

    def ids(self) -> list[str]:
        fd = self.open(create=False)
        if fd is None:
            return []
        try:
            return sorted(n for n in os.listdir(fd) if ID_RE.match(n))
        finally:
            os.close(fd)

    def container(self, cid: str) -> "Container":
        return Container(self, check_id(cid))


class Container:
    """ROOT/ID; every access opens it again through the checked root."""

    def __init__(self, root: Root, cid: str):
        self.root = root
        self.id = cid
        self.path = os.path.join(root.path, cid)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.path, "holder.sock")

    def _dir(self, create: bool = False) -> int:
        root_fd = self.root.open(create=create)
        if root_fd is None:
            raise StateError(f"container `{self.id}` does not exist")
        try:
            if create:
                try:
                    os.mkdir(self.id, 0o700, dir_fd=root_fd)
                except FileExistsError:
                    raise StateError(f"container `{self.id}` already exists") from None
            fd = rundir.open_subdir(root_fd, self.id, False, f"container directory {self.path}")
        finally:
            os.close(root_fd)
        if fd is None:
            raise StateError(f"container `{self.id}` does not exist")
        return fd

    def make(self) -> None:
        os.close(self._dir(create=True))

    def exists(self) -> bool:
        try:
            os.close(self._dir())
            return True
        except StateError:
            return False

    def write(self, name: str, data: bytes) -> None:
        fd = self._dir()
        try:
            rundir.write_file(fd, name, data)
        finally:
            os.close(fd)

    def read_bytes(self, name: str) -> bytes:
        fd = self._dir()
        try:
            return rundir.read_file(fd, name, MAX_STATE_BYTES)
        except FileNotFoundError:
            raise StateError(f"container `{self.id}` has no {name} (it is being created, or its "
                             "creation failed)") from None
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.path}/{name}: {exc}") from None
        finally:
            os.close(fd)

    def load(self) -> Record:
        try:
            return stored.loads(Record, self.read_bytes("state.json"))
        except stored.BadData as exc:
            raise StateError(f"{self.path}/state.json: {exc}") from None

    def save(self, record: Record) -> None:
        self.write("state.json", stored.dumps(record))

    def update(self, **changes) -> Record:
        record = replace(self.load(), **changes)
        self.save(record)
        return record

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def holder_alive(r: Record) -> bool:
    return alive(r.holder_pid, r.holder_start)


def status(r: Record) -> str:
    """What the container is now: the file's word checked against the kernel."""
    if r.status == "creating":
        return "creating" if holder_alive(r) else "stopped"
    if r.status in ("created", "running", "paused") and r.pid and alive(r.pid, r.pid_start):
        # A created container lives only while its holder keeps the agent (its parent).
        return r.status if r.status != "created" or holder_alive(r) else "stopped"
    return "stopped"


def state_json(r: Record) -> dict:
    """The runtime-spec state (and runc's extra fields: rootfs, created, owner)."""
    now = status(r)
    out = {"ociVersion": OCI_STATE_VERSION, "id": r.id, "pid": r.pid if now != "stopped" else 0, "status": now,
           "bundle": r.bundle, "rootfs": os.path.join(r.bundle, "rootfs"), "created": r.created, "owner": ""}
    if r.annotations:
        out["annotations"] = dict(r.annotations)
    return out


def cgroup_pids(r: Record) -> list[int]:
    """Every pid in the container's cgroups (its first one when there are several hierarchies)."""
    pids: set[int] = set()
    for d in r.cgroups:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    if not pids and r.pid and alive(r.pid, r.pid_start):
        pids.add(r.pid)
    return sorted(pids)


__all__ = ["Root", "Container", "Record", "Hook", "status", "state_json", "cgroup_pids", "pid_start_time"]
