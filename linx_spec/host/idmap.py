"""The idmap step: write the child's uid/gid maps from the host while it is parked.

Order per user_namespaces(7): setgroups before gid_map (an unprivileged gid map
requires `deny`), and each map file can be written only once.
"""

from __future__ import annotations

import os

from ..errors import touching
from ..plan.idmap import IdmapPlan


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def apply_from_host(m: IdmapPlan, ctx) -> None:
    base = f"/proc/{ctx.pid}"
    for name, text in (("setgroups", m.setgroups + "\n"), ("uid_map", m.uid_map), ("gid_map", m.gid_map)):
        path = f"{base}/{name}"
        try:
            with touching(f"write {name} {text.strip()!r}", path):
                _write(path, text)
        except FileNotFoundError:
            if name == "setgroups":  # kernels before 3.19 have no setgroups file
                continue
            raise
