"""The process plan: the program (found on PATH, inside the root when there is
one), argv, environment (nothing inherited from the caller), cwd, identity
(checked to be mapped in the user namespace) and umask."""

from __future__ import annotations

import os

from ..errors import PlanError
from ..record import Record
from .idmap import IdmapPlan, is_root, mapped

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Callable
    from ..spec import Spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessPlan(Record):
    exec_path: str
    argv: tuple[str, ...]
    env: tuple[str, ...]  # NAME=value
    cwd: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    umask: int | None
    init: bool = False  # the init step: pid 1 is the agent's init, the program its child


def resolve_program(word: str, env: dict[str, str], root: str | None,
                    host_path: Callable[[str], str | None] | None = None) -> str:
    """A command's first word -> the absolute path execve gets (PATH lookup for a bare name)."""
    if "/" in word:
        if not word.startswith("/"):
            raise PlanError(
                f"program `{word}` is a relative path",
                "give an absolute path, or a bare name to look up on PATH",
                "process.command",
            )
        return word
    path = env.get("PATH", DEFAULT_PATH)
    for d in path.split(":"):
        if not d.startswith("/"):
            continue
        candidate = os.path.join(d, word)
        # host_path (the mounts plan's) also sees through bind mounts and overlay layers.
        on_host = host_path(candidate) if host_path else os.path.join(root, candidate.lstrip("/")) if root else candidate
        if on_host and os.path.isfile(on_host) and os.access(on_host, os.X_OK):
            return candidate
    where = f" inside rootfs {root}" if root else ""
    raise PlanError(
        f"program `{word}` not found on PATH{where} ({path})",
        "install it, fix the name, or give an absolute path",
        "process.command",
    )


def resolve(spec: Spec, idmap: IdmapPlan | None, root: str | None,
            host_path: Callable[[str], str | None] | None) -> ProcessPlan:
    p = spec.process
    env = {"PATH": DEFAULT_PATH, "HOME": "/"}
    env.update(p.env)
    exec_path = resolve_program(p.command[0], env, root, host_path)
    if idmap is not None:
        if not mapped(idmap.uid_map, p.user.uid):
            raise PlanError(f"process.user.uid {p.user.uid} is not mapped in the user namespace",
                            "map it in idmap.uid, or choose a mapped uid", "process.user.uid")
        for g in (p.user.gid, *p.user.groups):
            if not mapped(idmap.gid_map, g):
                raise PlanError(f"gid {g} is not mapped in the user namespace",
                                "map it in idmap.gid, or choose a mapped gid", "process.user")
        if p.user.groups and idmap.setgroups == "deny":
            raise PlanError("supplementary groups need idmap.setgroups: allow", "set it, or drop the groups",
                            "process.user.groups")
    elif not is_root() and (p.user.uid != os.geteuid() or p.user.gid != os.getegid() or p.user.groups):
        raise PlanError("changing identity without a user namespace needs root",
                        "add `user` to namespaces, or run as root", "process.user")
    return ProcessPlan(
        exec_path=exec_path,
        argv=tuple(p.command),
        env=tuple(f"{k}={v}" for k, v in env.items()),
        cwd=p.cwd,
        uid=p.user.uid,
        gid=p.user.gid,
        groups=tuple(p.user.groups),
        umask=p.umask,
        init=p.init,
    )
