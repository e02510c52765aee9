#!/usr/bin/env python3
"""Detached workloads at scale (issue 23): what linx-spec keeps per running
detached workload, `linx-spec ps` with many of them, and the start rate of
`apply --detach` beside `runc run -d`, measured in one run.

    sudo python3 bench/detached.py [--count 100] [--ps-count 500] [--no-runc] [--linx CMD]

Every workload is `sleep` from a busybox root (pid, mount, uts, ipc and net
namespaces, a cgroup with memory 64 MiB and pids 64); runc gets the same spec
through `linx-spec export oci`.  Memory is read from /proc/PID/smaps_rollup of
every process of ours that lives as long as the workloads (the supervisor(s)
and the agents; the workloads themselves excluded), summed, divided by the
count.  `ps` at --ps-count adds fake state entries (copies of the real ones,
so each is checked for liveness like a real one) and removes them after.
Everything it makes lives under one temporary directory and is removed.
bench/run --detached calls measure() and prints the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

BUSYBOX = "/bin/busybox"
SPEC = """version: 1
name: detbench
namespaces: [pid, mount, uts, ipc, net]
cgroup: {{memory: {{max: 64Mi}}, pids: {{max: 64}}}}
lifecycle: {{stop_grace: 200ms}}
mounts:
  rootfs: {root}
  entries:
    - {{type: proc}}
    - {{type: dev}}
process: {{command: [/bin/sleep, '3600']}}
"""


def _smaps(pid: int) -> tuple[int, int] | None:
    """(Rss, Pss) in KiB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            got[key] = int(rest.split()[0])
    return got.get("Rss", 0), got.get("Pss", 0)


def _rootfs(base: str) -> str:
    root = os.path.join(base, "rootfs")
    for d in ("bin", "proc", "dev", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for applet in ("sleep", "sh"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    os.chmod(base, 0o755)
    return root


def _ours(rundir: str) -> tuple[dict[int, str], int]:
    """The pids of every long-lived process of ours (pid -> supervisor | agent)
    and how many workloads run."""
    pids: dict[int, str] = {}
    running = 0
    for name in os.listdir(rundir):
        try:
            with open(os.path.join(rundir, name, "state.json")) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue
        if st.get("status") != "running":
            continue
        running += 1
        for key in ("supervisor_pid", "agent_pid"):
            if st.get(key):
                pids[st[key]] = key.split("_")[0]
    return pids, running


def _time_cmd(argv: list[str], env: dict, rounds: int = 5) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.stderr}")
        out = proc.stdout
    return statistics.median(times), out


def measure(count: int = 100, ps_count: int = 500, runc: bool = True, linx: list[str] | None = None,
            log=print) -> dict:
    linx = linx or [sys.executable, "-m", "linx_spec.cli"]
    base = tempfile.mkdtemp(prefix="linx-detbench-")
    rundir = os.path.join(base, "run")
    env = dict(os.environ, LINX_RUNTIME_DIR=rundir)
    out: dict = {"count": count}
    names: list[str] = []
    try:
        root = _rootfs(base)
        spec = os.path.join(base, "sleep.yaml")
        with open(spec, "w") as f:
            f.write(SPEC.format(root=root))
        # One start outside the timing: the plan cache and page cache warm, as for runc below.
        first = subprocess.run(linx + ["apply", "-d", "--set", "name=detbench-warm", spec], env=env,
                               capture_output=True, text=True)
        if first.returncode != 0:
            raise RuntimeError(f"apply -d: {first.stderr}")
        names.append("detbench-warm")
        log(f"detached: starting {count} back to back")
        t0 = time.perf_counter()
        failed: list[str] = []
        for i in range(count - 1):
            name = f"detbench-{i}"
            proc = subprocess.run(linx + ["apply", "-d", "--set", f"name={name}", spec], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                failed.append(f"{name}: {proc.stderr.strip()}")
                continue
            names.append(name)
        out["start_rate"] = (count - 1) / (time.perf_counter() - t0)
        out["start_failures"] = failed
        time.sleep(1.0)  # the supervisors settle (their start-up garbage collected)
        pids, running = _ours(rundir)
        rss = pss = 0
        by_kind = {"supervisor": [0, 0, 0], "agent": [0, 0, 0]}  # processes, RSS, PSS (KiB)
        for pid, kind in pids.items():
            got = _smaps(pid)
            if got:
                rss += got[0]
                pss += got[1]
                by_kind[kind][0] += 1
                by_kind[kind][1] += got[0]
                by_kind[kind][2] += got[1]
        out.update(running=running, processes=len(pids), rss_kib_per=rss / max(running, 1),
                   pss_kib_per=pss / max(running, 1), by_kind=by_kind)
        log(f"detached: {json.dumps(out)}")
        out["ps_s"], text = _time_cmd(linx + ["ps"], env)
        out["ps_rows"] = len(text.splitlines()) - 1
        fakes = []
        for i in range(max(0, ps_count - len(names))):
            src = os.path.join(rundir, names[i % len(names)])
            dst = os.path.join(rundir, f"detfake-{i}")
            os.mkdir(dst, 0o700)
            shutil.copy2(os.path.join(src, "state.json"), os.path.join(dst, "state.json"))
            fakes.append(dst)
        out["ps_many_s"], text = _time_cmd(linx + ["ps"], env)
        out["ps_many_rows"] = len(text.splitlines()) - 1
        out["status_many_s"], _ = _time_cmd(linx + ["status", names[-1]], env)
        for d in fakes:
            shutil.rmtree(d)
        out["status_s"], _ = _time_cmd(linx + ["status", names[-1]], env)
        if runc and shutil.which("runc"):
            out["runc_start_rate"] = _runc_rate(linx, env, spec, base, count, log)
    finally:
        log(f"detached: stopping {len(names)}")
        procs: list[subprocess.Popen] = []
        for name in names:  # four at a time
            procs.append(subprocess.Popen(linx + ["delete", "--force", name], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if len(procs) >= 4:
                procs.pop(0).wait()
        for p in procs:
            p.wait()
        shutil.rmtree(base, ignore_errors=True)
    return out


def _runc_rate(linx: list[str], env: dict, spec: str, base: str, count: int, log) -> float:
    bundle = os.path.join(base, "bundle")
    proc = subprocess.run(linx + ["export", "oci", "--lossy", spec, "-o", bundle], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"export oci: {proc.stderr}")
    state = os.path.join(base, "runc-state")
    prefix = f"linx-detbench-{uuid.uuid4().hex[:8]}"
    ids = []
    log(f"detached: runc run -d, {count} back to back")
    try:
        t0 = time.perf_counter()
        for i in range(count):
            cid = f"{prefix}-{i}"
            # stderr to a file, not a pipe: the container keeps what runc passes it,
            # so a pipe would never reach EOF.
            with open(os.path.join(base, "runc.err"), "w+") as err:
                r = subprocess.run(["runc", "--root", state, "run", "-d", "--bundle", bundle, cid],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                if r.returncode != 0:
                    err.seek(0)
                    raise RuntimeError(f"runc run -d: {err.read()}")
            ids.append(cid)
        return count / (time.perf_counter() - t0)
    finally:
        for cid in ids:
            subprocess.run(["runc", "--root", state, "delete", "--force", cid], capture_output=True)


def table(m: dict) -> str:
    rows = [
        ("memory kept per detached workload (RSS, summed / count)",
         f"{m['rss_kib_per'] / 1024:.2f} MiB ({m['processes']} processes for {m['running']} workloads)"),
        ("memory kept per detached workload (PSS)", f"{m['pss_kib_per'] / 1024:.2f} MiB"),
        *((f"  of which {kind}s ({n}), RSS / PSS in all", f"{r / 1024:.1f} / {p / 1024:.1f} MiB")
          for kind, (n, r, p) in m.get("by_kind", {}).items() if n),
        (f"`linx-spec ps` with {m['ps_rows']}", f"{m['ps_s'] * 1000:.0f} ms"),
        (f"`linx-spec ps` with {m['ps_many_rows']}", f"{m['ps_many_s'] * 1000:.0f} ms"),
        (f"`linx-spec status NAME` with {m['ps_rows']} / {m['ps_many_rows']}",
         f"{m['status_s'] * 1000:.0f} / {m['status_many_s'] * 1000:.0f} ms"),
        (f"`apply -d`, {m['count']} back to back", f"{m['start_rate']:.1f} /s"),
    ]
    if "runc_start_rate" in m:
        rows.append((f"`runc run -d`, {m['count']} back to back", f"{m['runc_start_rate']:.1f} /s"))
    if m.get("start_failures"):
        rows.append(("starts that failed", f"{len(m['start_failures'])}: {m['start_failures'][0][:120]}"))
    lines = ["| detached at scale | |", "|---|---:|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--ps-count", type=int, default=500)
    ap.add_argument("--no-runc", action="store_true")
    ap.add_argument("--linx", help="the linx-spec command (default: this Python, -m linx_spec.cli)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    m = measure(args.count, args.ps_count, not args.no_runc, args.linx.split() if args.linx else None,
                log=lambda s: print(s, file=sys.stderr))
    print(json.dumps(m, indent=2) if args.json else table(m))


if __name__ == "__main__":
    main()
