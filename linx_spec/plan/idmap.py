"""The idmap step's plan: the exact text of /proc/PID/{uid_map,gid_map,setgroups}.

Default (no `idmap:`): like `unshare -r` and bwrap, the caller's own ids
become 0 inside.  Without root only one's own uid/gid can be mapped
(user_namespaces(7)), and an unprivileged gid map needs setgroups `deny`;
more ids come from the caller's subordinate ranges (subuid(5), subgid(5)),
which only the setuid helpers newuidmap/newgidmap may write, as podman and
bwrap do.
"""

from __future__ import annotations

import os
import pwd

from ..errors import PlanError
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec import Spec

SUBID_FILES = {"uid": "/etc/subuid", "gid": "/etc/subgid"}
HELPERS = {"uid": "newuidmap", "gid": "newgidmap"}
_MAX_SUBID_BYTES = 1 << 20  # a subid file is a few lines; a bigger one is no input we read


class IdmapPlan(Record):
    uid_map: str  # the exact text written to /proc/PID/uid_map
    gid_map: str
    setgroups: str  # "allow" | "deny"
    # Absolute paths of newuidmap and newgidmap when the maps go through them
    # (an unprivileged caller mapping subordinate ids); "" writes the files directly.
    newuidmap: str = ""
    newgidmap: str = ""


def is_root() -> bool:
    return os.geteuid() == 0


def _caller_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def subordinate_ranges(kind: str, path: str | None = None) -> list[tuple[int, int]]:
    """The caller's (start, count) ranges in /etc/subuid or /etc/subgid, in file order.

    Both files list the *user* (name or uid), as shadow's newuidmap/newgidmap match them."""
    try:
        with open(path or SUBID_FILES[kind], "rb") as f:
            data = f.read(_MAX_SUBID_BYTES)
    except FileNotFoundError:
        return []
    owners = (_caller_name(), str(os.geteuid()))
    out = []
    for raw in data.decode("utf-8", "replace").splitlines():
        parts = raw.strip().split(":")
        if len(parts) == 3 and parts[0] in owners and parts[1].isdigit() and parts[2].isdigit():
            start, count = int(parts[1]), int(parts[2])
            if 0 < count and start + count < 2**32:
                out.append((start, count))
    return out


def _resolve_ranges(kind: str, ranges, own: int) -> tuple[list[tuple[int, int, int]], bool]:
    """(container, host, count) lines with `self` and `subordinate` resolved; and whether any is subordinate."""
    lines: list[tuple[int, int, int]] = []
    subs: list[tuple[int, int]] | None = None
    used = 0  # ids of the subordinate ranges taken by earlier `subordinate` entries
    any_sub = False
    for r in ranges:
        if r.host == "self":
            lines.append((r.container, own, 1))
        elif r.host == "subordinate":
            any_sub = True
            if subs is None:
                subs = subordinate_ranges(kind)
            need, skip, inside = r.count, used, r.container
            for start, count in subs:
                if skip >= count:
                    skip -= count
                    continue
                take = min(count - skip, need)
                lines.append((inside, start + skip, take))
                inside, need, skip = inside + take, need - take, 0
                if not need:
                    break
            if need:
                have = sum(c for _s, c in subs)
                who = _caller_name()
                raise PlanError(
                    f"{SUBID_FILES[kind]} gives {who} {have} subordinate {kind}s; the map needs {used + r.count}",
                    f"add a range, e.g. `usermod --add-sub{kind}s 100000-165535 {who}` (as root)", f"idmap.{kind}")
            used += r.count
        else:
            lines.append((r.container, r.host, r.count))
    return lines, any_sub


def _within(lines, own: int, subs: list[tuple[int, int]]) -> bool:
    """Every host id of the map is the caller's own or inside its subordinate ranges (what newuidmap allows)."""
    for _inside, host, count in lines:
        if count == 1 and host == own:
            continue
        if not any(start <= host and host + count <= start + n for start, n in subs):
            return False
    return True


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
    uid_lines, uid_sub = _resolve_ranges("uid", uid_ranges, uid)
    gid_lines, gid_sub = _resolve_ranges("gid", gid_ranges, gid)
    for kind, lines in (("uid", uid_lines), ("gid", gid_lines)):
        spans = sorted((h, h + n) for _c, h, n in lines)
        for (_a0, a1), (b0, _b1) in zip(spans, spans[1:]):
            if b0 < a1:
                raise PlanError(f"{kind} map: host ranges overlap at id {b0}", "give each range its own host ids",
                                f"idmap.{kind}")
    uid_map = "".join(f"{c} {h} {n}\n" for c, h, n in uid_lines)
    gid_map = "".join(f"{c} {h} {n}\n" for c, h, n in gid_lines)
    own_only = (len(uid_lines) == 1 and uid_lines[0][1:] == (uid, 1)
                and len(gid_lines) == 1 and gid_lines[0][1:] == (gid, 1))
    if is_root() or own_only:
        setgroups = spec.idmap.setgroups or ("deny" if own_only and not is_root() else "allow")
        if not is_root() and setgroups != "deny":
            raise PlanError("an unprivileged gid map requires setgroups: deny",
                            "set idmap.setgroups: deny (or run as root)", "idmap.setgroups")
        return IdmapPlan(uid_map, gid_map, setgroups)
    # Not root, more than one's own ids: only newuidmap/newgidmap may write these maps,
    # and only ids the caller owns (its own, its subordinate ranges).
    if not (uid_sub or gid_sub) or not (_within(uid_lines, uid, subordinate_ranges("uid"))
                                        and _within(gid_lines, gid, subordinate_ranges("gid"))):
        raise PlanError(
            "mapping ids other than your own needs root, or ranges of yours in /etc/subuid and /etc/subgid "
            "(the kernel allows an unprivileged process to map only its own uid and gid)",
            "run as root, map `host: subordinate` ids, or only your own uid/gid (omit idmap for the default)",
            "idmap")
    import shutil  # bz2 and lzma with it: only when planning subordinate ranges

    helpers = {k: shutil.which(h, path="/usr/bin:/bin:/usr/sbin:/sbin") for k, h in HELPERS.items()}
    for kind, found in helpers.items():
        if not found:
            raise PlanError(f"mapping subordinate {kind}s needs {HELPERS[kind]}, which is not installed",
                            "install it (Debian/Ubuntu: apt-get install uidmap; Fedora: shadow-utils)",
                            f"idmap.{kind}")
    return IdmapPlan(uid_map, gid_map, spec.idmap.setgroups or "allow",
                     newuidmap=helpers["uid"] or "", newgidmap=helpers["gid"] or "")


def mapped(ranges_text: str, ident: int) -> bool:
    """Is `ident` inside one of the ranges of a uid_map/gid_map text."""
    for line in ranges_text.splitlines():
        inside, _outside, count = map(int, line.split())
        if inside <= ident < inside + count:
            return True
    return False
