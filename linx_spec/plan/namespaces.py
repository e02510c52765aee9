"""Joined namespaces: the path given for `pid` must be a pid namespace.

setns(2) with the kind's CLONE_NEW* flag refuses a namespace of another kind with
a bare EINVAL at spawn; asking the file itself first (ioctl NS_GET_NSTYPE, Linux
4.11, nsfs) turns that into a plan error naming the field and both kinds.  The
check also works for bind-mounted ns files (/run/netns/NAME), where readlink of
/proc/PID/ns/KIND would not.  Planning only reads: the fd is closed at once, and
setns still checks at spawn (the path may change in between).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from ..errors import PlanError
from .workload import CLONE_FLAGS

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
_KIND_OF_FLAG = {flag: name for name, flag in CLONE_FLAGS.items()}


def kind_of(path: str) -> str:
    """The namespace kind of the ns file at `path` ("net", "pid"...); OSError if it is none."""
    st = os.stat(path)  # nsfs inodes are regular files; a FIFO or device is never opened
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.ENOTTY, "not a namespace file")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        flag = fcntl.ioctl(fd, NS_GET_NSTYPE)
    finally:
        os.close(fd)
    return _KIND_OF_FLAG.get(flag, f"unknown (0x{flag:x})")


def check_joined(joins: list[tuple[str, str]]) -> None:
    """Each joined path that exists is a namespace file of the kind it is given for.

    A path that is missing or that this caller may not open is left to setns at
    spawn, which names it: `ip netns add` may come between `plan` and `apply`, and
    `plan` may run where the path is not (yet) visible.
    """
    for name, path in joins:
        field = f"namespaces.{name}.join"
        try:
            kind = kind_of(path)
        except OSError as e:
            if e.errno == errno.ENOTTY:  # opened, but no nsfs file
                raise PlanError(f"{path} is not a namespace file", f"give /proc/PID/ns/{name} or a bind mount "
                                "of one (/run/netns/NAME)", field) from None
            continue
        if kind != name:
            raise PlanError(f"{path} is a {kind} namespace, not a {name} namespace",
                            f"give /proc/PID/ns/{name}, or join it as `{kind}: {{join: {path}}}`", field)


_PROC_NAME = {"mount": "mnt", "uts": "uts"}


def check_not_runtimes_own(name: str, path: str, field: str) -> None:
    """A joined `mount` namespace that gets mounts (or a `uts` one that gets a hostname)
    is changed, as runc changes it; it must then not be the runtime's own namespace or
    the host's (init's): pivot_root there would move the host's root.  Told apart by
    device and inode of the nsfs file, so it must be there to be compared.  The agent
    checks again in the child, right before the change (agent/lx_ns_guard.c)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise PlanError(f"{path}: {e.strerror}: a joined {name} namespace that `{field}` changes must exist when "
                        "planning, to be told apart from the host's", f"give an existing /proc/PID/ns/"
                        f"{_PROC_NAME[name]} or a bind mount of one", f"namespaces.{name}.join") from None
    for owner in ("self", "1"):
        try:
            own = os.stat(f"/proc/{owner}/ns/{_PROC_NAME[name]}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            who = "the runtime's own" if owner == "self" else "the host's (pid 1's)"
            raise PlanError(f"{path} is {who} {name} namespace: `{field}` would change the host",
                            f"join another {name} namespace, or create one (`{name}: new`)",
                            f"namespaces.{name}.join")
