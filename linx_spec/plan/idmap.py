"""The idmap step's plan: the exact text of /proc/PID/{uid_map,gid_map,setgroups}.

Default (no `idmap:`): like `unshare -r` and bwrap, the caller's own ids
become 0 inside.  Without root only one's own uid/gid can be mapped
(user_namespaces(7)), and an unprivileged gid map needs setgroups `deny`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PlanError

if TYPE_CHECKING:
    from ..spec import Spec


@dataclass(frozen=True)
class IdmapPlan:
    uid_map: str  # the exact text written to /proc/PID/uid_map
    gid_map: str
    setgroups: str  # "allow" | "deny"


def is_root() -> bool:
    return os.geteuid() == 0


def resolve(spec: Spec, ns_new: list[str]) -> IdmapPlan | None:
    if "user" not in ns_new:
        if spec.idmap is not None:
            raise PlanError("`idmap` is set but no new user namespace is created",
                            "add `user` to namespaces, or remove idmap", "idmap")
        return None
    uid, gid = os.geteuid(), os.getegid()
    if spec.idmap is None or (not spec.idmap.uid and not spec.idmap.gid):
        # Like `unshare -r` and bwrap: the caller's own ids become 0 inside.
        return IdmapPlan(f"0 {uid} 1\n", f"0 {gid} 1\n", "deny")
    uid_ranges = spec.idmap.uid or ()
    gid_ranges = spec.idmap.gid or ()
    if not uid_ranges or not gid_ranges:
        raise PlanError("idmap needs both `uid` and `gid` ranges (or neither, for the default)",
                        "add the missing map", "idmap")
    uid_map = "".join(f"{r.container} {r.host} {r.count}\n" for r in uid_ranges)
    gid_map = "".join(f"{r.container} {r.host} {r.count}\n" for r in gid_ranges)
    own_only = (len(uid_ranges) == 1 and uid_ranges[0].host == uid and uid_ranges[0].count == 1
                and len(gid_ranges) == 1 and gid_ranges[0].host == gid and gid_ranges[0].count == 1)
    setgroups = spec.idmap.setgroups or ("deny" if own_only and not is_root() else "allow")
    if not is_root():
        if not own_only:
            raise PlanError(
                "mapping ids other than your own needs root (the kernel allows an unprivileged "
                "process to map only its own uid and gid)",
                "run as root, or map only your own uid/gid (omit idmap for the default)", "idmap")
        if setgroups != "deny":
            raise PlanError("an unprivileged gid map requires setgroups: deny",
                            "set idmap.setgroups: deny (or run as root)", "idmap.setgroups")
    return IdmapPlan(uid_map, gid_map, setgroups)


def mapped(ranges_text: str, ident: int) -> bool:
    """Is `ident` inside one of the ranges of a uid_map/gid_map text."""
    for line in ranges_text.splitlines():
        inside, _outside, count = map(int, line.split())
        if inside <= ident < inside + count:
            return True
    return False
