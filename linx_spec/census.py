"""The leak census: what of linx-spec's exists on this host right now, and
`gc`, which removes only leftovers of dead workloads.

Ours, by name:
- processes: `linx-agent` (in use while it has children: a running or
  lingering workload; never killed by gc), `linx-supervisor` (reported; it
  leaves by itself with its last workload);
- cgroups: `linx-<name>-<pid>` below any hierarchy (default parent `/linx`),
  and the empty `/linx` parents themselves;
- interfaces: `lx<pid>v<n>` (host ends of veths; they die with the
  workload's netns, so one whose pid is gone is a leftover);
- state: /run/linx/NAME of detached workloads (reported; removed only with
  --state, since their logs may still be wanted).
A leftover is removed only when nothing uses it: a cgroup with no processes
whose workload pid is gone, an interface whose pid is gone.  Nothing that is
not named as ours is ever touched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .mountinfo import cgroup_mounts

CGROUP_ROOT = "/sys/fs/cgroup"
_CG_NAME = re.compile(r"^linx-(?P<name>.+)-(?P<pid>\d+)$")
_IF_NAME = re.compile(r"^lx(?P<pid>\d+)v\d+$")


@dataclass(frozen=True)
class Item:
    kind: str  # process | cgroup | interface | state
    obj: str
    in_use: bool
    note: str


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _agents() -> list[Item]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm == "linx-supervisor":  # the shared supervisor of a runtime directory (supervisor.py)
            out.append(Item("process", f"linx-supervisor pid {pid}", True, "supervises detached workloads"))
            continue
        if comm != "linx-agent":
            continue
        try:
            children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:
            children = []
        out.append(Item("process", f"linx-agent pid {pid}", bool(children),
                        f"workload pid {' '.join(children)}" if children else "no workload (exiting)"))
    return out


def _cgroup_mounts() -> list[str]:
    try:
        return [m.mount_point for m in cgroup_mounts() if m.mount_point.startswith(CGROUP_ROOT)]
    except OSError:
        return []


def _procs(path: str) -> list[str]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return f.read().split()
    except OSError:
        return []


def _cgroups() -> list[Item]:
    out = []
    for mount in _cgroup_mounts():
        # Ours live a few levels down (a configurable parent); do not walk a
        # large foreign hierarchy whole.
        for root, dirs, _files in os.walk(mount):
            if root[len(mount):].count("/") >= 4:
                dirs[:] = []
            for d in list(dirs):
                path = os.path.join(root, d)
                m = _CG_NAME.match(d)
                if m:
                    procs = _procs(path)
                    pid = int(m.group("pid"))
                    in_use = bool(procs) or _pid_alive(pid)
                    out.append(Item("cgroup", path, in_use,
                                    f"{len(procs)} processes" if procs else ("workload alive" if in_use else "empty")))
                    dirs.remove(d)
                elif d == "linx" and root == mount:
                    children = [c for c in os.listdir(path) if os.path.isdir(os.path.join(path, c))]
                    in_use = bool(children) or bool(_procs(path))
                    out.append(Item("cgroup", path, in_use, "parent of workload cgroups" if in_use else "empty parent"))
    return out


def _interfaces() -> list[Item]:
    out = []
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return out
    for name in names:
        m = _IF_NAME.match(name)
        if m:
            in_use = _pid_alive(int(m.group("pid")))
            out.append(Item("interface", name, in_use, "workload alive" if in_use else "workload gone"))
    return out


def _states() -> list[Item]:
    from .state import all_views

    return [Item("state", str(v.name), v.status in ("running", "starting"), f"{v.status} {v.detail}".strip())
            for v in all_views()]


def scan() -> list[Item]:
    return _agents() + _cgroups() + _interfaces() + _states()


def _remove(item: Item) -> str:
    if item.kind == "cgroup":
        try:
            os.rmdir(item.obj)
            return "removed"
        except OSError as exc:
            return f"kept ({exc.strerror})"
    if item.kind == "interface":
        import subprocess

        proc = subprocess.run(["ip", "link", "del", item.obj], capture_output=True, text=True)
        return "removed" if proc.returncode == 0 else f"kept ({proc.stderr.strip()})"
    if item.kind == "state":
        from .state import StateDir

        StateDir(item.obj).remove()
        return "removed"
    return "kept"


def gc(dry_run: bool = True, states: bool = False) -> list[tuple[Item, str]]:
    """Removes leftovers of dead workloads (never anything in use)."""
    report = []
    items = scan()
    # Children before their /linx parent.
    items.sort(key=lambda i: (i.kind != "cgroup", -i.obj.count("/")))
    for item in items:
        if item.in_use or item.kind == "process" or (item.kind == "state" and not states):
            report.append((item, "in use" if item.in_use else "kept"))
            continue
        report.append((item, "would remove" if dry_run else _remove(item)))
    return report
