"""The idmap step: write the child's uid/gid maps from the host while it is parked.

Order per user_namespaces(7): setgroups before gid_map (an unprivileged gid map
requires `deny`), and each map file can be written only once.  Subordinate ids of
an unprivileged caller go through the setuid helpers newuidmap/newgidmap (the
paths the plan found), which check them against /etc/subuid and /etc/subgid.
"""

from __future__ import annotations

import errno
import os

from ..errors import touched, touching
from ..plan.idmap import IdmapPlan


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _helper(helper: str, pid: int, text: str, path: str) -> None:
    args = [helper, str(pid)] + text.split()
    what = f"run {os.path.basename(helper)} {' '.join(args[1:])}"
    import subprocess  # only for newuidmap/newgidmap: a root run writes the maps itself

    try:
        with touching(what, path):
            proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                  env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, close_fds=True)
    except subprocess.TimeoutExpired:
        raise touched(errno.ETIMEDOUT, what, path) from None
    if proc.returncode != 0:  # the helper's own words say which range it refused
        said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise touched(errno.EPERM, f"{what}: {(said[-1] if said else f'exit {proc.returncode}')[:300]}", path)


def apply_from_host(m: IdmapPlan, ctx) -> None:
    base = f"/proc/{ctx.pid}"
    for name, text in (("setgroups", m.setgroups + "\n"), ("uid_map", m.uid_map), ("gid_map", m.gid_map)):
        path = f"{base}/{name}"
        helper = {"uid_map": m.newuidmap, "gid_map": m.newgidmap}.get(name, "")
        if helper:
            _helper(helper, ctx.pid, text, path)
            continue
        try:
            with touching(f"write {name} {text.strip()!r}", path):
                _write(path, text)
        except FileNotFoundError:
            if name == "setgroups":  # kernels before 3.19 have no setgroups file
                continue
            raise
