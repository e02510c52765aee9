"""The leak census: what of ours exists right now on this host.

Ours means: linx-agent and linx-supervisor processes (by name), cgroups named `linx*` in any
hierarchy (below /sys/fs/cgroup), interfaces named `lx*`, netns named `lx*`
in /run/netns, and the host's mount table (compared whole).  The workplace's
own cgroups and processes are never touched, only counted against a baseline.
"""

from __future__ import annotations

import os
import sys
import time

from linx_spec import mountinfo

CGROUP_ROOT = "/sys/fs/cgroup"


def _agents() -> set[str]:
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm.startswith("linx-agent") or comm == "linx-supervisor":
            out.add(f"pid {pid} ({comm})")
    return out


def _cgroups() -> set[str]:
    out = set()
    if not os.path.isdir(CGROUP_ROOT):
        return out
    for hier in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, hier)
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        # Ours live at most a few levels down, named linx*; do not walk the
        # whole hierarchy (the workplace's own tree can be large).
        for root, dirs, _files in os.walk(base):
            depth = root[len(base):].count("/")
            for d in dirs:
                if d.startswith("linx"):
                    out.add(os.path.join(root, d))
            if depth >= 3:
                dirs[:] = []
    return out


def _links() -> set[str]:
    try:
        return {n for n in os.listdir("/sys/class/net") if n.startswith("lx")}
    except OSError:
        return set()


def _netns() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("lx")}
    except OSError:
        return set()


def _mounts() -> set[str]:
    # mount id and parent differ between runs; compare what/where/type.
    return {f"{m.root} {m.mount_point} {m.fstype}" for m in mountinfo.read()}


def take(settle: bool = False) -> dict[str, set[str]]:
    """settle: first wait for this process's deferred veth deletes (the point where
    linx-spec promises they are done), then for the kernel's own asynchronous removals."""
    teardown = sys.modules.get("linx_spec.host.network_teardown")
    if settle and teardown is not None:
        teardown.settle()
    snap = {}
    for attempt in range(20 if settle else 1):
        snap = {"process": _agents(), "cgroup": _cgroups(), "interface": _links(), "netns": _netns(),
                "mount": _mounts()}
        if not settle or not (snap["process"] or snap["cgroup"] or snap["interface"]):
            break
        time.sleep(0.1)
    return snap


def leaked(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[tuple[str, str]]:
    out = []
    for kind, objs in after.items():
        for obj in sorted(objs - before.get(kind, set())):
            out.append((kind, obj))
    return out
