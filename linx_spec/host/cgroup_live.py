"""A running workload's cgroup limits, live: observe the kernel's files, compare
them with what a plan would write, write the ones that differ; freeze and thaw.

    leaves_of(pid, plan)              mount -> the workload's leaf cgroup, read from
                                      /proc/PID/cgroup (never guessed), refused
                                      unless it is a `linx-NAME-*` cgroup of ours
    knobs(plan, leaves)               every (file, value) the plan writes, per leaf
    same(file, observed, wanted)      the kernel's text and the plan's value agree
    fresh_value(knob, fs)             what a new cgroup holds (a released knob's
                                      `before` when linx-spec set it at creation)
    freeze(leaves, fs, on)            v1 freezer.state, else v2 cgroup.freeze

The kernel rewrites what it is given: memory limits are rounded down to the page
size (page_counter_memparse), cpuset lists are printed in ranges, v1 prints
"unlimited" as PAGE_COUNTER_MAX pages, io.max shows every key of a device.
`same` compares the meaning, not the text, so an unchanged spec writes nothing.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from ..errors import StateError, touching
from ..plan.cgroup import CgroupPlan, Hierarchy
from .cgroup import CgroupFs, _cgroup_mounts, _cgroups_of

PAGE = resource.getpagesize()
_UNLIMITED_FROM = 1 << 62  # v1 prints "no limit" as 9223372036854771712 (PAGE_COUNTER_MAX * PAGE_SIZE)

# file -> the spec field it carries (the report speaks the user's words)
FIELD = {
    "memory.max": "cgroup.memory.max", "memory.limit_in_bytes": "cgroup.memory.max",
    "memory.high": "cgroup.memory.high", "memory.soft_limit_in_bytes": "cgroup.memory.high",
    "memory.low": "cgroup.memory.low", "memory.min": "cgroup.memory.min",
    "memory.swap.max": "cgroup.memory.swap_max", "memory.memsw.limit_in_bytes": "cgroup.memory.swap_max",
    "cpu.max": "cgroup.cpu.max", "cpu.cfs_quota_us": "cgroup.cpu.max", "cpu.cfs_period_us": "cgroup.cpu.period",
    "cpu.weight": "cgroup.cpu.weight", "cpu.shares": "cgroup.cpu.weight",
    "cpuset.cpus": "cgroup.cpuset.cpus", "cpuset.mems": "cgroup.cpuset.mems",
    "pids.max": "cgroup.pids.max",
    "io.weight": "cgroup.io.weight", "blkio.weight": "cgroup.io.weight", "blkio.bfq.weight": "cgroup.io.weight",
}
_MEMORY = {"memory.max", "memory.high", "memory.swap.max", "memory.limit_in_bytes", "memory.soft_limit_in_bytes",
           "memory.memsw.limit_in_bytes", "memory.low", "memory.min"}
_PER_DEVICE = {"io.max", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
               "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}
# What a new cgroup holds (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/*.rst).
_FRESH = {
    "memory.max": "max", "memory.high": "max", "memory.swap.max": "max", "memory.low": "0", "memory.min": "0",
    "memory.limit_in_bytes": "-1", "memory.soft_limit_in_bytes": "-1", "memory.memsw.limit_in_bytes": "-1",
    "cpu.max": "max 100000", "cpu.weight": "100", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
    "cpu.shares": "1024", "pids.max": "max", "io.weight": "default 100", "blkio.weight": "500",
    "blkio.bfq.weight": "100",
}
# Memory usage, to warn before a limit goes below it (reclaim, then possibly OOM).
USAGE_FILE = {"memory.max": "memory.current", "memory.high": "memory.current",
              "memory.limit_in_bytes": "memory.usage_in_bytes"}


@dataclass(frozen=True)
class Knob:
    """One file of one leaf the plan writes.  `key` names it across restarts of the
    workload (the leaf's name holds a pid): version, mount, file, device."""

    key: str
    field: str
    file: str
    value: str
    leaf: str
    parent: str  # the parent cgroup's directory (a v1 cpuset's fresh value is its parent's)
    version: int = 2

    @property
    def target(self) -> str:
        return os.path.join(self.leaf, self.file)


def _device(file: str, value: str) -> str:
    return value.split(None, 1)[0] if file in _PER_DEVICE and value.strip() else ""


def knob_key(h: Hierarchy, file: str, value: str) -> str:
    dev = _device(file, value)
    return f"v{h.version}:{h.mount}:{file}" + (f":{dev}" if dev else "")


def knobs(plan: CgroupPlan, leaves: dict[str, str]) -> list[Knob]:
    out = []
    for h in plan.hierarchies:
        leaf = leaves.get(h.mount)
        if leaf is None:
            continue
        for file, value in h.writes:
            out.append(Knob(knob_key(h, file, value), FIELD.get(file, "cgroup.io.limits"), file, value, leaf,
                            h.dir(h.parent), h.version))
    return out


def leaves_of(pid: int, plan: CgroupPlan, name: str) -> dict[str, str]:
    """mount -> leaf directory of the running workload `pid`, for each hierarchy of the plan."""
    mounts = _cgroup_mounts()
    by_mount = {m: key for key, m in mounts.items()}
    try:
        paths = _cgroups_of(pid)
    except OSError:
        raise StateError(f"`{name}`: its process {pid} is gone") from None
    out = {}
    prefix = f"linx-{name}-"
    for h in plan.hierarchies:
        key = by_mount.get(h.mount)
        path = paths.get(key or "")
        if path is None:
            continue
        leaf = h.dir(path)
        # Only a cgroup linx-spec made for this workload is ever written to.
        if not os.path.basename(leaf).startswith(prefix):
            raise StateError(f"`{name}`: process {pid} is in {leaf}, not in a cgroup of linx-spec's "
                             f"({prefix}*); refusing to change it")
        out[h.mount] = leaf
    return out


def _memory(text: str) -> int | str:
    text = text.strip()
    if text in ("max", "-1"):
        return "max"
    n = int(text)
    return "max" if n >= _UNLIMITED_FROM else n - n % PAGE


def _list(text: str) -> frozenset[int]:
    from ..spec.cgroup import parse_list

    return parse_list(text.strip()) if text.strip() else frozenset()


def _device_fields(text: str, dev: str) -> dict[str, str]:
    """`8:0 rbps=1 wbps=max` (io.max) or `8:0 1` (blkio.throttle.*) -> the device's fields."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == dev:
            return dict(p.split("=", 1) if "=" in p else ("value", p) for p in parts[1:])
    return {}


def _io_default(fields: dict[str, str], key: str) -> str:
    return fields.get(key, "0" if key == "value" else "max")


def same(file: str, observed: str | None, wanted: str) -> bool:
    """The kernel's text means the value the plan writes."""
    if observed is None:
        return False
    try:
        if file in _MEMORY:
            return _memory(observed) == _memory(wanted)
        if file in ("cpuset.cpus", "cpuset.mems"):
            return _list(observed) == _list(wanted)
        if file == "cpu.max":
            return observed.split() == wanted.split()
        if file == "io.weight":
            return observed.split("\n", 1)[0].split() == wanted.split()
        if file in _PER_DEVICE:
            dev = _device(file, wanted)
            want = _device_fields(wanted, dev)
            have = _device_fields(observed, dev)
            return all(_io_default(have, k) == v for k, v in want.items())
    except ValueError:
        return False
    return observed.strip() == wanted.strip()


def shown(file: str, observed: str | None) -> str:
    """The observed value as the report shows it (one line)."""
    if observed is None:
        return "(unreadable)"
    text = observed.strip()
    if file in _MEMORY:
        try:
            return str(_memory(text))
        except ValueError:
            return text
    return " / ".join(text.splitlines()) or '""'


def observe(knob: Knob, fs: CgroupFs) -> str | None:
    text = fs.read(knob.target)
    if text is None or knob.file not in _PER_DEVICE:
        return text
    dev = _device(knob.file, knob.value)
    return next((line for line in text.splitlines() if line.split()[:1] == [dev]), f"{dev}")


def fresh_value(knob: Knob, fs: CgroupFs) -> str:
    """What this file held when the cgroup was made: the kernel's default, or for
    a v1 cpuset the parent's value that the cgroup step copied."""
    if knob.file in ("cpuset.cpus", "cpuset.mems"):
        return (fs.read(os.path.join(knob.parent, knob.file)) or "").strip() if knob.version == 1 else ""
    if knob.file == "io.max":
        return f"{_device(knob.file, knob.value)} rbps=max wbps=max riops=max wiops=max"
    if knob.file in _PER_DEVICE:
        return f"{_device(knob.file, knob.value)} 0"  # 0 removes a v1 throttle rule
    return _FRESH.get(knob.file, "")


def write(knob: Knob, value: str, fs: CgroupFs) -> None:
    with touching(f"write {knob.file} {value!r}", knob.leaf):
        fs.write(knob.target, value)


def usage(knob: Knob, fs: CgroupFs) -> int | None:
    name = USAGE_FILE.get(knob.file)
    text = fs.read(os.path.join(knob.leaf, name)) if name else None
    try:
        return int(text) if text else None
    except ValueError:
        return None


def freeze_target(leaves: dict[str, str], plan: CgroupPlan) -> tuple[str, str, str, str]:
    """(leaf, file, freeze value, thaw value): the v1 freezer when the workload is in
    one, else cgroup.freeze of its cgroup2 leaf (5.2+)."""
    for h in plan.hierarchies:
        if h.version == 1 and "freezer" in h.controllers and h.mount in leaves:
            return leaves[h.mount], "freezer.state", "FROZEN", "THAWED"
    for h in plan.hierarchies:
        if h.version == 2 and h.mount in leaves:
            return leaves[h.mount], "cgroup.freeze", "1", "0"
    raise StateError("the workload is in no freezer cgroup (v1 freezer or cgroup2) to pause it with")


def frozen(leaf: str, file: str, fs: CgroupFs) -> bool:
    if file == "freezer.state":
        return (fs.read(os.path.join(leaf, file)) or "").strip() in ("FROZEN", "FREEZING")
    return "frozen 1" in (fs.read(os.path.join(leaf, "cgroup.events")) or "")


def set_frozen(pid: int, plan: CgroupPlan, name: str, on: bool, fs: CgroupFs | None = None) -> None:
    """Freeze (on) or thaw the workload `pid` and wait until the kernel says so;
    an OSError is labelled with the file (errors.touching)."""
    import time

    fs = fs or CgroupFs()
    leaf, file, freeze, thaw = freeze_target(leaves_of(pid, plan, name), plan)
    with touching(f"write {file} {freeze if on else thaw}", leaf):
        fs.write(os.path.join(leaf, file), freeze if on else thaw)
    deadline = time.monotonic() + 2.0
    while frozen(leaf, file, fs) != on:  # FREEZING -> FROZEN once every task stopped
        if time.monotonic() >= deadline:
            raise StateError(f"`{name}`: {file} in {leaf} did not become {freeze if on else thaw} within 2s")
        fs.sleep(0.002)


__all__ = ["Knob", "knobs", "leaves_of", "same", "shown", "observe", "fresh_value", "write", "usage",
           "freeze_target", "frozen", "set_frozen", "FIELD"]
