"""runc's cgroup commands on a container's recorded cgroups: update, pause, resume, events.

    update [--resources FILE|-] [--memory N] [--memory-swap N] [--memory-reservation N]
           [--cpu-share N] [--cpu-period N] [--cpu-quota N] [--cpuset-cpus L] [--cpuset-mems L]
           [--pids-limit N] [--blkio-weight N] ID
    pause ID | resume ID                      the freezer: cgroup2's cgroup.freeze, else v1 freezer.state
    events [--stats] [--interval 5s] ID       runc's stats JSON, once (--stats) or every interval

The container's cgroups are the directories recorded at create (state.json), each
matched to its mount (host/cgroup.py Live.of_dirs): the same objects delete removes,
never a path taken from the command line.  `update` takes runc's LinuxResources JSON
(containerd's shim writes it to stdin with `--resources -`) or runc's flags, checks
every value against the kernel's bounds first, then writes the files of the
hierarchy that holds each controller (v1), or of the cgroup2 leaf; a controller
the container was not placed in (cpuset without a cpuset limit at create, say)
is a clear error.  Values are OCI's, written as runc's fs/fs2 drivers write them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time

from ..errors import PlanError, StateError, oserror_to_step, touching
from .record import Container, Record, status

MAX_RESOURCES_BYTES = 1 << 16
INT64_MAX = (1 << 63) - 1
_LIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_SIZE_RE = re.compile(r"^(\d+)\s*([kmgtp]?)i?b?$", re.IGNORECASE)
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
SUPPORTED_FLAGS = {"resources", "memory", "memory-swap", "memory-reservation", "cpu-share", "cpu-period",
                   "cpu-quota", "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight"}
# runc's other flags: accepted on the command line and refused by name (resources_from)
UPDATE_FLAGS = SUPPORTED_FLAGS | {"cpu-burst", "cpu-rt-period", "cpu-rt-runtime", "cpu-idle", "kernel-memory",
                                  "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema"}


# --- update ----------------------------------------------------------------------

def _bad(field: str, message: str) -> PlanError:
    return PlanError(f"update: {field}: {message}", "see `runc update --help` for the accepted values", field)


def _int(value, field: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(field, f"expected an integer from {lo} to {hi}, got {str(value)[:40]!r}")
    return value


def _bytes_flag(text: str, field: str) -> int:
    """runc's units.RAMInBytes: 64m, 1g, 1024, -1 (unlimited)."""
    if text.strip() == "-1":
        return -1
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise _bad(field, f"expected bytes (1024, 64m, 1g) or -1, got {text[:40]!r}")
    n = int(m.group(1)) << (10 * "kmgtp".find(m.group(2).lower()) + 10 if m.group(2) else 0)
    return _int(n, field, 0, INT64_MAX)


def _int_flag(text: str, field: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise _bad(field, f"expected an integer, got {text[:40]!r}") from None


def resources_from(opts: dict, stdin=None) -> dict:
    """The LinuxResources object `update` applies: the --resources JSON, else the flags."""
    refused = sorted(k for k in opts if k in UPDATE_FLAGS - SUPPORTED_FLAGS)
    if refused:
        raise PlanError(f"update: --{refused[0]} is not supported by linx-oci",
                        "drop it (realtime, burst, idle, kernel memory and Intel RDT are not set)", refused[0])
    src = opts.get("resources")
    if src is not None:
        if src == "-":
            data = (stdin or sys.stdin.buffer).read(MAX_RESOURCES_BYTES + 1)
        else:
            try:
                with open(src, "rb") as f:
                    data = f.read(MAX_RESOURCES_BYTES + 1)
            except OSError as exc:
                raise StateError(f"update: --resources {src}: {exc.strerror}") from None
        if len(data) > MAX_RESOURCES_BYTES:
            raise _bad("resources", f"more than {MAX_RESOURCES_BYTES} bytes")
        try:
            res = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad("resources", f"not JSON: {exc}") from None
        if not isinstance(res, dict):
            raise _bad("resources", "expected a JSON object (runc's LinuxResources)")
        return res
    res: dict = {}
    for flag, section, key, parse in (
            ("memory", "memory", "limit", _bytes_flag), ("memory-swap", "memory", "swap", _bytes_flag),
            ("memory-reservation", "memory", "reservation", _bytes_flag),
            ("cpu-share", "cpu", "shares", _int_flag), ("cpu-period", "cpu", "period", _int_flag),
            ("cpu-quota", "cpu", "quota", _int_flag), ("cpuset-cpus", "cpu", "cpus", str),
            ("cpuset-mems", "cpu", "mems", str), ("pids-limit", "pids", "limit", _int_flag),
            ("blkio-weight", "blockIO", "weight", _int_flag)):
        if flag in opts:
            res.setdefault(section, {})[key] = parse(opts[flag], flag) if parse is not str else opts[flag]
    return res


def _section(res: dict, key: str) -> dict:
    value = res.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(key, "expected an object")
    return value


def plan_update(res: dict, v2: bool, read_v2) -> list[tuple[str, str]]:
    """LinuxResources -> [(file, value)...] in write order, for v1 or cgroup2 files;
    every value checked first.  `read_v2(file)` gives a cgroup2 file's current text
    (cpu.max needs both halves when only one is given).  Unknown keys are ignored,
    as runc's JSON decoding does; known ones linx-oci does not set are refused."""
    out: list[tuple[str, str]] = []
    mem = _section(res, "memory")
    for key in ("kernel", "kernelTCP", "swappiness", "disableOOMKiller", "useHierarchy"):
        if mem.get(key) not in (None, 0, False):
            raise _bad(f"memory.{key}", "not supported by linx-oci's update")
    limit, swap, reservation = (None if mem.get(k) is None else _int(mem[k], f"memory.{k}", -1, INT64_MAX)
                                for k in ("limit", "swap", "reservation"))
    cpu = _section(res, "cpu")
    for key in ("realtimeRuntime", "realtimePeriod", "burst", "idle"):
        if cpu.get(key) not in (None, 0):
            raise _bad(f"cpu.{key}", "not supported by linx-oci's update")
    shares = None if not cpu.get("shares") else _int(cpu["shares"], "cpu.shares", 2, 262144)
    period = None if not cpu.get("period") else _int(cpu["period"], "cpu.period", 1000, 1_000_000)
    quota = None if not cpu.get("quota") else _int(cpu["quota"], "cpu.quota", -1, INT64_MAX)
    if quota is not None and 0 <= quota < 1000:
        raise _bad("cpu.quota", f"{quota}us is below the kernel's minimum of 1000us (or -1 for no limit)")
    lists = {}
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value:
            if not isinstance(value, str) or len(value) > 4096 or not _LIST_RE.match(value.replace(" ", "")):
                raise _bad(f"cpu.{key}", f"expected a list such as 0-3,5, got {str(value)[:40]!r}")
            lists[key] = value.replace(" ", "")
    pids = _section(res, "pids")
    pids_limit = None if pids.get("limit") in (None, 0) else _int(pids["limit"], "pids.limit", -1, INT64_MAX)
    blk = _section(res, "blockIO")
    weight = None if not blk.get("weight") else _int(blk["weight"], "blockIO.weight", 10, 1000)
    for key in ("hugepageLimits", "network", "rdma", "unified", "devices"):
        if res.get(key):
            raise _bad(key, "not supported by linx-oci's update (runc cannot update devices either)")

    def size(n: int) -> str:
        return "max" if v2 and n == -1 else str(n)

    if v2:
        if limit is not None:
            out.append(("memory.max", size(limit)))
        if swap is not None:
            # OCI's swap is memory + swap; cgroup2's memory.swap.max is swap alone (runc's ConvertMemorySwapToCgroupV2Value).
            if swap == -1:
                out.append(("memory.swap.max", "max"))
            elif limit is None or limit == -1 or swap < limit:
                raise _bad("memory.swap", "on cgroup v2 it needs memory.limit too, at most as large")
            else:
                out.append(("memory.swap.max", str(swap - limit)))
        if reservation is not None:
            out.append(("memory.low", "0" if reservation == -1 else str(reservation)))
        if shares is not None:
            out.append(("cpu.weight", str(1 + ((shares - 2) * 9999) // 262142)))  # runc's ConvertCPUSharesToCgroupV2Value
        if quota is not None or period is not None:
            now = (read_v2("cpu.max") or "max 100000").split()
            q = ("max" if quota == -1 else str(quota)) if quota is not None else now[0]
            p = str(period) if period is not None else (now[1] if len(now) > 1 else "100000")
            out.append(("cpu.max", f"{q} {p}"))
        if weight is not None:
            out.append(("io.weight", f"default {1 + ((weight - 10) * 9999) // 990}"))
    else:
        if limit is not None:
            out.append(("memory.limit_in_bytes", size(limit)))
        if swap is not None:
            out.append(("memory.memsw.limit_in_bytes", size(swap)))
        if reservation is not None:
            out.append(("memory.soft_limit_in_bytes", size(reservation)))
        if shares is not None:
            out.append(("cpu.shares", str(shares)))
        if period is not None:
            out.append(("cpu.cfs_period_us", str(period)))
        if quota is not None:
            out.append(("cpu.cfs_quota_us", str(quota)))
        if weight is not None:
            out.append(("blkio.weight", str(weight)))
    for key, value in lists.items():
        out.append((f"cpuset.{key}", value))
    if pids_limit is not None:
        out.append(("pids.max", "max" if pids_limit < 0 else str(pids_limit)))
    return out


def _live(r: Record):
    from ..host.cgroup import Live

    live = Live.of_dirs(r.cgroups)
    if not live.leaves:
        raise StateError(f"container `{r.id}` has no cgroup recorded")
    return live


def _where(live, file: str) -> tuple[str, bool]:
    """The leaf holding `file`: the v1 hierarchy of its controller, else the cgroup2
    leaf when the file is there (the controller enabled for it) -> (leaf, is v2)."""
    controller = file.split(".", 1)[0]
    for h, leaf in live.leaves:
        if h.version == 1 and controller in h.controllers:
            return leaf, False
    for h, leaf in live.leaves:
        if h.version == 2 and os.path.exists(os.path.join(leaf, file)):
            return leaf, True
    raise PlanError(f"update: the container is in no {controller} cgroup (no {file}): it was created without "
                    f"a {controller} limit, and only then is that controller joined", "set the limit in config.json "
                    "at create", file)


def update(c: Container, opts: dict, stdin=None) -> None:
    r = c.load()
    now = status(r)
    if now not in ("created", "running", "paused"):
        raise StateError(f"cannot update container `{c.id}`: it is {now}")
    res = resources_from(opts, stdin)
    live = _live(r)
    v2_leaf = next((leaf for h, leaf in live.leaves if h.version == 2), None)
    has_v1 = {c for h, _leaf in live.leaves if h.version == 1 for c in h.controllers}
    # One language per host: v1 files where the v1 hierarchies hold the controllers (hybrid, legacy).
    v2 = not has_v1 & {"memory", "cpu", "pids", "cpuset", "blkio"}
    writes = plan_update(res, v2, lambda f: live.fs.read(os.path.join(v2_leaf, f)) if v2_leaf else None)
    targets = [(_where(live, f), f, v) for f, v in writes]
    try:
        _write_all(live.fs, targets)
    except OSError as exc:
        raise oserror_to_step("update", "host", exc) from None


def _write_all(fs, targets) -> None:
    """Each (file, value) in order; a pair the kernel refuses with EINVAL because
    of its partner's current value (memory under memsw, cfs quota against the
    period) is retried after the rest, as runc orders them."""
    pending = list(targets)
    for attempt in range(2):
        retry = []
        for target in pending:
            (leaf, _v2), file, value = target
            try:
                with touching(f"write {file} {value!r}", leaf):
                    fs.write(os.path.join(leaf, file), value)
            except OSError as exc:
                if exc.errno != errno.EINVAL or attempt == 1:
                    raise
                retry.append(target)
        if not retry:
            return
        pending = retry


# --- pause, resume -------------------------------------------------------------------

def pause(c: Container) -> None:
    r = c.load()
    now = status(r)
    if now != "running":
        raise StateError(f"cannot pause container `{c.id}`: it is {now}, not running")
    _freeze(c, r, True)
    c.update(status="paused")


def resume(c: Container) -> None:
    r = c.load()
    now = status(r)
    if now != "paused":
        raise StateError(f"cannot resume container `{c.id}`: it is {now}, not paused")
    _freeze(c, r, False)
    c.update(status="running")


def _freeze(c: Container, r: Record, on: bool) -> None:
    """host/cgroup.py's Live.freeze, the same as the holder's undo uses: every process
    at once, waiting until the kernel says it is (thawed)."""
    try:
        _live(r).freeze(on)
    except OSError as exc:
        raise oserror_to_step("pause" if on else "resume", "host", exc) from None


# --- events -----------------------------------------------------------------------

def stats(r: Record) -> dict:
    """runc's `events --stats` object ({"type": "stats", "id", "data"}), as far as the
    container's cgroups give the figures (types.Stats: cpu, memory, pids, blkio)."""
    from ..host.cgroup_usage import current_v1, current_v2, keyed

    live = _live(r)
    by_controller = {c: leaf for h, leaf in live.leaves if h.version == 1 for c in h.controllers}
    v2_leaf = next((leaf for h, leaf in live.leaves if h.version == 2), None)
    now = current_v1(by_controller, live.fs.read) if by_controller else {}
    if v2_leaf is not None:
        for k, v in current_v2(v2_leaf, live.fs.read).items():
            now.setdefault(k, v)
    used = live.usage()
    cpu: dict = {"usage": {"total": round(used.get("cpu_seconds", 0) * 1e9),
                           "kernel": round(used.get("cpu_system_seconds", 0) * 1e9),
                           "user": round(used.get("cpu_user_seconds", 0) * 1e9)},
                 "throttling": {"throttled_periods": int(used.get("cpu_throttled_periods", 0)),
                                "throttled_time": round(used.get("cpu_throttled_seconds", 0) * 1e9)}}
    memory: dict = {"usage": {"usage": now.get("memory_bytes", 0), "max": int(used.get("memory_peak_bytes", 0)),
                              "failcnt": int(used.get("memory_limit_hits", 0))}}
    if "memory_limit_bytes" in now:
        memory["usage"]["limit"] = now["memory_limit_bytes"]
    mem_leaf = by_controller.get("memory") or v2_leaf
    if mem_leaf is not None:
        raw = keyed(live.fs.read(os.path.join(mem_leaf, "memory.stat")))
        if raw:
            memory["raw"] = raw
    pids = {"current": now.get("pids", 0)}
    if "pids_limit" in now:
        pids["limit"] = now["pids_limit"]
    data: dict = {"cpu": cpu, "memory": memory, "pids": pids}
    if "io_read_bytes" in now:
        data["blkio"] = {"ioServiceBytesRecursive": [{"op": "Read", "value": now["io_read_bytes"]},
                                                     {"op": "Write", "value": now["io_write_bytes"]}]}
    return {"type": "stats", "id": r.id, "data": data}


def _interval(text: str) -> float:
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise PlanError(f"events: --interval {text[:40]!r}: expected a duration such as 5s or 500ms",
                        "give --interval 5s", "interval")
    seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]
    if not 0.01 <= seconds <= 3600:
        raise PlanError(f"events: --interval {text[:40]!r}: between 10ms and 1h", "give --interval 5s", "interval")
    return seconds


def events(c: Container, opts: dict, out=None) -> None:
    """--stats: one stats object.  Otherwise one every --interval (default 5s) until
    the container stops (runc also reports OOM events; linx-oci does not yet)."""
    out = out or sys.stdout
    once = bool(opts.get("stats"))
    interval = _interval(opts.get("interval", "5s"))
    while True:
        r = c.load()
        if status(r) == "stopped":
            if once:
                raise StateError(f"container `{c.id}` is stopped")
            return
        out.write(json.dumps(stats(r)) + "\n")
        out.flush()
        if once:
            return
        time.sleep(interval)


def command(cmd: str, c: Container, opts: dict) -> int:
    if cmd == "update":
        update(c, opts)
    elif cmd == "pause":
        pause(c)
    elif cmd == "resume":
        resume(c)
    else:
        events(c, opts)
    return 0


__all__ = ["update", "pause", "resume", "events", "stats", "plan_update", "resources_from", "command"]
