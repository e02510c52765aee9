"""What a detached workload is and what it uses: `inspect NAME` and `stats`.

    inspect(name) -> one JSON-able document, the keys below always present
                     (null when unknown), documented in docs/workload.md:
        format   1 (bumped when a key changes meaning or goes)
        name, status, detail          as `status` shows them
        state    state.json as stored (pids with start times, restarts, exit...)
        spec     {source, hash, document}: document is the spec file read again,
                 only when it still plans to the same hash (else null, and why)
        plan     what `plan --json` prints for the stored plan, plus lifecycle
        usage    {source: live|ended|null, figures}: read from its cgroups now
                 while it runs, else what was recorded when it ended
    sample(name) -> the figures of `stats` now (cgroup files, v1 and v2)

The cgroups read are the ones /proc/PID/cgroup names for the live workload,
and only linx-spec's own `linx-NAME-*` leaves (cgroup_live.leaves_of); a
workload without `cgroup:` in its spec has no figures.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .errors import LinxError, StateError
from .state import StateDir, View, all_views

FORMAT = 1
# stats' figures, always present in --json (null when the kernel or the spec gives none)
STATS_KEYS = ("cpu_percent", "cpu_seconds", "memory_bytes", "memory_limit_bytes", "memory_percent",
              "memory_peak_bytes", "pids", "pids_limit", "io_read_bytes", "io_write_bytes")


def plan_record(plan: Any) -> dict[str, Any]:
    """The plan as `plan --json` prints it: each active step with its resolved arguments."""
    from .steps import active_steps

    return {"name": plan.name, "spec_hash": plan.spec_hash, "notes": list(plan.notes),
            "steps": [{"step": s.name, "side": s.side, "args": s.args(plan), "why": s.reason}
                      for s in active_steps(plan)]}


def live_usage(view: View, plan: Any) -> dict[str, int | float]:
    """The running workload's cgroup figures now; {} without a cgroup of its own."""
    from .host.cgroup import CgroupFs
    from .host.cgroup_live import leaves_of
    from .host.cgroup_usage import current_v1, current_v2, v1_usage, v2_usage
    from .plan.cgroup import CgroupPlan

    if view.status != "running" or not isinstance(plan.cgroup, CgroupPlan):
        return {}
    leaves = leaves_of(view.state["host_pid"], plan.cgroup, view.name)
    read = CgroupFs().read
    by_controller = {c: leaves[h.mount] for h in plan.cgroup.hierarchies if h.version == 1 and h.mount in leaves
                     for c in h.controllers}
    out: dict[str, int | float] = {**v1_usage(by_controller, read), **current_v1(by_controller, read)}
    for h in plan.cgroup.hierarchies:
        if h.version == 2 and h.mount in leaves:
            for k, v in {**v2_usage(leaves[h.mount], read), **current_v2(leaves[h.mount], read)}.items():
                out.setdefault(k, v)
    return out


def _spec_record(plan: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"source": plan.source, "hash": plan.spec_hash, "document": None, "note": None}
    if plan.source in ("-", "<api>"):
        out["note"] = "read from standard input or built in Python: not kept"
        return out
    from .load import load_file
    from .plan.build import spec_hash

    try:
        spec = load_file(plan.source)
    except (LinxError, OSError) as exc:
        out["note"] = f"the file cannot be read again: {str(exc).splitlines()[0]}"
        return out
    if spec_hash(spec) != plan.spec_hash:
        out["note"] = "the file (or a ${VAR} it uses) changed since, or --set was used: not shown"
        return out
    out["document"] = spec.model_dump(mode="json", exclude_unset=True)
    return out


def inspect(name: str) -> dict[str, Any]:
    sd = StateDir.open(name)
    view = sd.view()
    plan = sd.load_plan()
    record = plan_record(plan)
    record["lifecycle"] = dataclasses.asdict(plan.lifecycle)
    usage: dict[str, Any] = {"source": None, "figures": {}}
    if view.status == "running":
        try:
            usage = {"source": "live", "figures": live_usage(view, plan)}
        except StateError:
            pass  # it ended between the two reads
    elif view.state.get("usage"):
        usage = {"source": "ended", "figures": view.state["usage"]}
    return {"format": FORMAT, "name": view.name, "status": view.status, "detail": view.detail,
            "state": view.state, "spec": _spec_record(plan), "plan": record, "usage": usage}


# --- stats -------------------------------------------------------------------------

def targets(names: list[str]) -> list[str]:
    """The named workloads (each must exist), or every running one."""
    if names:
        for n in names:
            StateDir.open(n)  # StateError: no such workload
        return list(dict.fromkeys(names))
    return [v.name for v in all_views() if v.status == "running"]


def sample(name: str) -> dict[str, Any]:
    """One reading: {name, status, at (monotonic seconds), figures}."""
    sd = StateDir.open(name)
    view = sd.view()
    figures: dict[str, Any] = {}
    if view.status == "running":
        try:
            figures = live_usage(view, sd.load_plan())
        except StateError:
            view = sd.view()  # ended meanwhile
    return {"name": name, "status": view.status, "at": time.monotonic(), "figures": figures}


def row(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """stats' figures for one workload: cpu % from two readings (100% = one CPU, as
    docker stats), memory % of its limit; every key of STATS_KEYS, null when unknown."""
    f = now["figures"]
    out: dict[str, Any] = {"name": now["name"], "status": now["status"], **{k: f.get(k) for k in STATS_KEYS}}
    if before is not None and "cpu_seconds" in f and "cpu_seconds" in before["figures"]:
        wall = now["at"] - before["at"]
        if wall > 0:
            out["cpu_percent"] = round(max(0.0, f["cpu_seconds"] - before["figures"]["cpu_seconds"]) / wall * 100, 2)
    if f.get("memory_bytes") is not None and f.get("memory_limit_bytes"):
        out["memory_percent"] = round(f["memory_bytes"] / f["memory_limit_bytes"] * 100, 2)
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [("NAME", "STATUS", "CPU %", "MEM USAGE / LIMIT", "MEM %", "MEM PEAK", "PIDS", "BLOCK I/O")]
    for r in rows:
        pct = "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%"
        mem = "-" if r["memory_bytes"] is None else (
            f"{_size(r['memory_bytes'])} / {_size(r['memory_limit_bytes']) if r['memory_limit_bytes'] else 'max'}")
        mpct = "-" if r["memory_percent"] is None else f"{r['memory_percent']:.2f}%"
        pids = "-" if r["pids"] is None else f"{r['pids']}" + (f"/{r['pids_limit']}" if r["pids_limit"] else "")
        io = "-" if r["io_read_bytes"] is None else f"{_size(r['io_read_bytes'])} / {_size(r['io_write_bytes'])}"
        lines.append((r["name"], r["status"], pct, mem, mpct, _size(r["memory_peak_bytes"]), pids, io))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def stats(names: list[str], interval: float, stream: bool, as_json: bool, out, is_tty: bool) -> None:
    """Print readings every `interval` seconds until interrupted (or once, not stream).
    A reading needs two samples for cpu %: the first table comes after one interval
    (at most 1 s when not streaming).  Named workloads are shown until all ended;
    without names, the running ones, re-listed at every refresh."""
    import json

    before: dict[str, dict[str, Any]] = {}
    for n in targets(names):
        before[n] = sample(n)
    while True:
        time.sleep(interval if stream else min(interval, 1.0))
        current = targets(names) if not names else list(before)
        now = {n: sample(n) for n in current}
        rows = [row(now[n], before.get(n)) for n in current]
        if as_json:
            out.write(json.dumps(rows) + "\n")
        else:
            out.write(("\033[2J\033[H" if stream and is_tty else "") + table(rows) + "\n")
        out.flush()
        before = now
        if not stream or (names and all(r["status"] != "running" for r in rows)):
            return
