"""What a workload's cgroups used, read after it ended (the cgroup step's collector),
and what they use now (`stats`, `inspect`: current_v1/current_v2 add the figures
that only mean something while it runs): v1 files by controller, v2 files of the
leaf; files a kernel lacks are skipped."""

from __future__ import annotations

import os


def v1_usage(controller_leaves: dict[str, str], read) -> dict[str, int | float]:
    """Figures from v1 leaves, by controller; files a kernel lacks are skipped."""
    out: dict[str, int | float] = {}

    def num(leaf: str, name: str) -> int | None:
        text = read(os.path.join(leaf, name))
        text = (text or "").strip()
        return int(text) if text.isdigit() else None

    if (leaf := controller_leaves.get("memory")) is not None:
        if (v := num(leaf, "memory.max_usage_in_bytes")) is not None:
            out["memory_peak_bytes"] = v
        if (v := num(leaf, "memory.failcnt")) is not None:
            out["memory_limit_hits"] = v
        ctl = keyed(read(os.path.join(leaf, "memory.oom_control")))
        if "oom_kill" in ctl:  # 4.13+
            out["oom_kills"] = ctl["oom_kill"]
    if (leaf := controller_leaves.get("cpuacct")) is not None:
        if (v := num(leaf, "cpuacct.usage")) is not None:
            out["cpu_seconds"] = v / 1e9
        user, system = num(leaf, "cpuacct.usage_user"), num(leaf, "cpuacct.usage_sys")
        if user is not None and system is not None:
            out["cpu_user_seconds"] = user / 1e9
            out["cpu_system_seconds"] = system / 1e9
    clamp_cpu_split(out)
    if (leaf := controller_leaves.get("cpu")) is not None:
        stat = keyed(read(os.path.join(leaf, "cpu.stat")))
        if "nr_throttled" in stat:
            out["cpu_throttled_periods"] = stat["nr_throttled"]
            out["cpu_throttled_seconds"] = stat.get("throttled_time", 0) / 1e9
    if (leaf := controller_leaves.get("pids")) is not None:
        if (v := num(leaf, "pids.peak")) is not None:  # recent kernels only
            out["pids_peak"] = v
        ev = keyed(read(os.path.join(leaf, "pids.events")))
        if "max" in ev:
            out["pids_limit_hits"] = ev["max"]
    return out


def v2_usage(leaf: str, read, on_v1: frozenset[str] | set[str] = frozenset()) -> dict[str, int | float]:
    """Figures from a v2 leaf; files a kernel lacks are skipped.  on_v1: controllers
    bound to a v1 hierarchy (a hybrid host): a controller lives on one hierarchy at
    a time, so a v2 leaf cannot have their files, and they are not even tried."""
    out: dict[str, int | float] = {}
    if "memory" not in on_v1:
        peak = read(os.path.join(leaf, "memory.peak"))  # 5.19+
        if peak is not None and peak.strip().isdigit():
            out["memory_peak_bytes"] = int(peak)
        events = keyed(read(os.path.join(leaf, "memory.events")))
        if "oom_kill" in events:
            out["oom_kills"] = events["oom_kill"]
        if "oom" in events:
            out["ooms"] = events["oom"]  # times the limit was hit and reclaim failed: the OOM killer was invoked
        if "high" in events:
            out["memory_high_hits"] = events["high"]  # times memory.high was exceeded: throttled and reclaimed
        if "max" in events:
            out["memory_limit_hits"] = events["max"]
    stat = keyed(read(os.path.join(leaf, "cpu.stat")))  # usage_* is there without the cpu controller
    if "usage_usec" in stat:
        out["cpu_seconds"] = stat["usage_usec"] / 1e6
        out["cpu_user_seconds"] = stat.get("user_usec", 0) / 1e6
        out["cpu_system_seconds"] = stat.get("system_usec", 0) / 1e6
        clamp_cpu_split(out)
    if "nr_throttled" in stat:
        out["cpu_throttled_periods"] = stat["nr_throttled"]
        out["cpu_throttled_seconds"] = stat.get("throttled_usec", 0) / 1e6
    if "pids" not in on_v1:
        ppeak = read(os.path.join(leaf, "pids.peak"))  # 6.x
        if ppeak is not None and ppeak.strip().isdigit():
            out["pids_peak"] = int(ppeak)
        pev = keyed(read(os.path.join(leaf, "pids.events")))
        if "max" in pev:
            out["pids_limit_hits"] = pev["max"]
    return out


_V1_UNLIMITED_FROM = 1 << 62  # v1 prints "no limit" as PAGE_COUNTER_MAX pages in bytes


def current_v1(controller_leaves: dict[str, str], read) -> dict[str, int]:
    """Now: memory in use and its limit, pids and their limit, bytes read and
    written (blkio, when the workload joined it); skipped where a file is missing."""
    out: dict[str, int] = {}

    def num(leaf: str, name: str) -> int | None:
        text = (read(os.path.join(leaf, name)) or "").strip()
        return int(text) if text.isdigit() else None

    if (leaf := controller_leaves.get("memory")) is not None:
        if (v := num(leaf, "memory.usage_in_bytes")) is not None:
            out["memory_bytes"] = v
        if (v := num(leaf, "memory.limit_in_bytes")) is not None and v < _V1_UNLIMITED_FROM:
            out["memory_limit_bytes"] = v
    if (leaf := controller_leaves.get("pids")) is not None:
        if (v := num(leaf, "pids.current")) is not None:
            out["pids"] = v
        if (v := num(leaf, "pids.max")) is not None:  # "max" when unlimited
            out["pids_limit"] = v
    if (leaf := controller_leaves.get("blkio")) is not None:
        for name in ("blkio.throttle.io_service_bytes", "blkio.io_service_bytes"):
            text = read(os.path.join(leaf, name))
            if text is None:
                continue
            totals = {"Read": 0, "Write": 0}
            for line in text.splitlines():  # `MAJ:MIN Read N`, ..., `Total N`
                parts = line.split()
                if len(parts) == 3 and parts[1] in totals and parts[2].isdigit():
                    totals[parts[1]] += int(parts[2])
            out["io_read_bytes"], out["io_write_bytes"] = totals["Read"], totals["Write"]
            break
    return out


def current_v2(leaf: str, read) -> dict[str, int]:
    """Now, from a v2 leaf: memory.current/max, pids.current/max, io.stat's bytes."""
    out: dict[str, int] = {}
    for name, key in (("memory.current", "memory_bytes"), ("memory.max", "memory_limit_bytes"),
                      ("pids.current", "pids"), ("pids.max", "pids_limit")):
        text = (read(os.path.join(leaf, name)) or "").strip()
        if text.isdigit():  # "max" is no limit: left out
            out[key] = int(text)
    stat = read(os.path.join(leaf, "io.stat"))
    if stat is not None:
        rbytes = wbytes = 0
        for line in stat.splitlines():  # `MAJ:MIN rbytes=N wbytes=N rios=N ...`
            for field in line.split()[1:]:
                k, _, v = field.partition("=")
                if v.isdigit():
                    rbytes += int(v) if k == "rbytes" else 0
                    wbytes += int(v) if k == "wbytes" else 0
        out["io_read_bytes"], out["io_write_bytes"] = rbytes, wbytes
    return out


def clamp_cpu_split(out: dict[str, int | float]) -> None:
    """The user/system split never above the total: the split is sampled at ticks
    (v1 cpuacct.usage_user/_sys, v2 user_usec/system_usec from cputime) while the
    total is the scheduler's exact runtime, and the files are read one after the
    other, so a short workload can show user > total (issue 20)."""
    total = out.get("cpu_seconds")
    if total is None or "cpu_user_seconds" not in out:
        return
    out["cpu_user_seconds"] = min(out["cpu_user_seconds"], total)
    out["cpu_system_seconds"] = min(out.get("cpu_system_seconds", 0), total - out["cpu_user_seconds"])


def keyed(text: str | None) -> dict[str, int]:
    """A "flat keyed" cgroup file (`key value` lines, cgroup-v2.rst) -> {key: int}; v1's
    memory.oom_control, cpu.stat and pids.events have the same format."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out
