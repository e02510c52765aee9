"""Proof under faults, load and hostile workloads (issue 11).

- Faults: for every step of the checkpoint of a fully isolated spec, the runner
  (or the agent) is killed with SIGKILL while the child is parked there; then
  nothing of ours remains (checked by the census, with `gc` where the kernel
  forces it) and the next apply of the same spec works.  A step failing with an
  injected error at each position rolls back fully and the program never runs.
- Load: 200 fully isolated workloads through the API, 16 at once; 50 concurrent
  CLI applies; all correct, census clean, no fd/RSS growth of the Python side.
- Escapes: inside the hardened example the workload sees only fds 0-2, cannot
  regain capabilities, cannot see the host's mounts, pids or cgroup files, and
  cannot bypass seccomp through another ABI.

Figures are written to tests/.reliability.json for RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, children, start_cli
import census as test_census
from linx_spec import build_plan, load_text, run
from linx_spec.host import network_teardown
from linx_spec.steps import active_steps

pytestmark = pytest.mark.root
FIGURES = REPO / "tests" / ".reliability.json"


def _record(key: str, value) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[key] = value
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))


def full_spec(marker: Path | str = "/nonexistent", subnet: int = 0) -> str:
    """Every subsystem on: user, pid, net, mount, uts, ipc, cgroup namespaces; id
    maps; memory and pids limits; a veth; rlimits; no capabilities; seccomp; mounts."""
    a, b = 10 + subnet // 60, (subnet % 60) * 4
    return f"""
version: 1
name: lxfull
namespaces: [user, pid, net, mount, uts, ipc, cgroup]
idmap:
  uid: [{{container: 0, host: 100000, count: 65536}}]
  gid: [{{container: 0, host: 100000, count: 65536}}]
hostname: sandbox
cgroup:
  memory: {{max: 128Mi}}
  pids: {{max: 64}}
network:
  interfaces:
    - name: eth0
      type: veth
      addresses: [10.250.{a}.{b + 2}/30]
      host: {{addresses: [10.250.{a}.{b + 1}/30]}}
capabilities: {{keep: []}}
rlimits: {{nofile: 256}}
seccomp:
  default: allow
  rules:
    - {{syscalls: ["@mount", unshare, setns], action: errno EPERM}}
mounts:
  entries:
    - {{type: proc}}
    - {{type: tmpfs, target: /tmp, size: 16Mi}}
process:
  command: [/bin/sh, -c, 'touch {marker} 2>/dev/null; echo ok; ip -o -4 addr show eth0 2>/dev/null | wc -l']
  user: {{uid: 1000, gid: 1000}}
"""


@pytest.fixture
def tmp_path():
    """A dir the workload's unprivileged identity (uid 1000 in a user namespace
    mapped to 101000) can write its marker into, outside /tmp (the full spec
    mounts its own tmpfs there)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="linx-rel-", dir="/var/tmp"))
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def census_clean(before, label: str) -> None:
    leaked = test_census.leaked(before, test_census.take(settle=True))
    if leaked:
        # Where the kernel forces it, gc is the documented remedy: it must then
        # leave nothing behind either.
        subprocess.run([sys.executable, "-m", "linx_spec.cli", "gc"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                       capture_output=True, timeout=60)
        leaked = test_census.leaked(before, test_census.take(settle=True))
    assert not leaked, f"{label}: left behind {leaked}"


def _cli(args, **kw):
    return start_cli(*args, **kw)


FULL_PLAN_STEPS = [s.name for s in active_steps(build_plan(load_text(full_spec(), "full.yaml")))]
FAULT_STEPS = [s for s in FULL_PLAN_STEPS if s != "spawn"]


def test_the_full_spec_runs_every_step(tmp_path):
    marker = tmp_path / "ran"
    result = run(build_plan(load_text(full_spec(marker), "full.yaml")), capture_output=True)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [b"ok", b"1"]
    assert marker.exists()
    assert {t.step for t in result.timings} >= set(FULL_PLAN_STEPS)


@pytest.mark.parametrize("who", ["runner", "agent"])
@pytest.mark.parametrize("step", FAULT_STEPS)
def test_sigkill_while_parked_at_every_step_leaves_nothing(tmp_path, write_spec, step, who):
    marker = tmp_path / "ran"
    path = write_spec(full_spec(marker))
    before = test_census.take()
    proc = _cli(["apply", str(path)], env={"LINX_FAULT": f"pause:{step}"}, stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL, text=True)
    line = ""
    deadline = time.time() + 30
    while "linx-fault: paused" not in line and time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    assert "linx-fault: paused" in line, f"never paused at {step}: {line!r} {proc.stderr.read()}"
    agent = children(proc.pid)[0]
    victim = proc.pid if who == "runner" else agent
    os.kill(victim, signal.SIGKILL)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"runner did not end after its agent was killed at {step}")
    proc.stderr.close()
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f"/proc/{agent}"):
        time.sleep(0.05)
    assert not marker.exists(), "the program ran"
    census_clean(before, f"{who} killed at {step}")
    # and the next apply of the same spec works
    again = subprocess.run([sys.executable, "-m", "linx_spec.cli", "apply", str(path)], capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert again.returncode == 0, again.stderr
    assert marker.exists()


@pytest.mark.parametrize("step", FULL_PLAN_STEPS)
def test_injected_failure_at_every_step_rolls_back(tmp_path, write_spec, step):
    marker = tmp_path / "ran"
    path = write_spec(full_spec(marker))
    before = test_census.take()
    proc = subprocess.run([sys.executable, "-m", "linx_spec.cli", "apply", str(path)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), LINX_FAULT=f"fail:{step}"), timeout=60)
    assert proc.returncode == (127 if step == "exec" else 70), proc.stderr
    assert f"{step} (" in proc.stderr and "injected fault" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    census_clean(before, f"failure injected at {step}")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_load_200_full_workloads_16_at_once_through_the_api():
    before = test_census.take()
    plans = [build_plan(load_text(full_spec(subnet=i % 200), "full.yaml")) for i in range(16)]
    results: list = []
    errors: list = []
    lock = threading.Lock()
    counter = iter(range(200))
    samples = []

    def worker(slot: int):
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                r = run(plans[slot], capture_output=True)
                with lock:
                    results.append(r)
                    if len(results) % 50 == 0:
                        samples.append((_fds(), _rss_kib(), threading.active_count()))
            except Exception as exc:  # noqa: BLE001 - collected and reported
                with lock:
                    errors.append(repr(exc))

    # warm-up (imports, caches) before the first sample
    run(plans[0], capture_output=True)
    fds0, rss0 = _fds(), _rss_kib()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors, errors[:5]
    assert len(results) == 200
    bad = [r for r in results if r.exit_code != 0 or r.stdout.split() != [b"ok", b"1"]]
    assert not bad, [(r.exit_code, r.stdout, r.stderr) for r in bad[:3]]
    network_teardown.settle()  # each veth delete still running holds its netlink socket until done
    fds1, rss1 = _fds(), _rss_kib()
    assert fds1 <= fds0, (fds0, fds1)
    assert rss1 - rss0 < 20 * 1024, (rss0, rss1, samples)  # no per-workload growth
    census_clean(before, "200 workloads")
    _record("load_api", {"workloads": 200, "concurrency": 16, "seconds": round(elapsed, 2),
                         "per_second": round(200 / elapsed, 1), "fds_before_after": [fds0, fds1],
                         "rss_kib_before_after": [rss0, rss1], "samples_fds_rss_threads": samples})


def test_load_50_concurrent_cli_applies(write_spec):
    before = test_census.take()
    paths = [write_spec(full_spec(subnet=100 + i)) for i in range(50)]
    t0 = time.monotonic()
    procs = [_cli(["apply", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in paths]
    outs = [p.communicate(timeout=300) for p in procs]
    elapsed = time.monotonic() - t0
    failed = [(p.returncode, e.decode()[-300:]) for p, (o, e) in zip(procs, outs) if p.returncode != 0]
    assert not failed, failed[:3]
    assert all(o.split() == [b"ok", b"1"] for o, _ in outs)
    census_clean(before, "50 CLI applies")
    _record("load_cli", {"applies": 50, "concurrent": 50, "seconds": round(elapsed, 2)})


HARDENED = REPO / "specs" / "untrusted-runner.yaml"


def _hardened(command: str, tmp_path: Path, extra: list[str] = ()):
    from linx_spec import load_file

    spec = load_file(HARDENED, overrides=[f"process.command=[/bin/sh, -c, {json.dumps(command)}]", *extra])
    return run(build_plan(spec, source=str(HARDENED), base_dir=str(HARDENED.parent)), capture_output=True)


def test_escape_only_stdio_fds(tmp_path):
    r = _hardened("ls /proc/$$/fd", tmp_path)
    assert r.stdout.split() == [b"0", b"1", b"2"], r.stderr


def test_escape_cannot_see_host_pids_mounts_or_cgroups(tmp_path):
    r = _hardened("ls /proc | grep -c '^[0-9]'; ls /sys/fs/cgroup 2>/dev/null | wc -l; "
                  "cut -d: -f3 /proc/self/cgroup | sort -u; echo ---; cut -d' ' -f5 /proc/self/mountinfo", tmp_path)
    assert r.exit_code == 0, r.stderr
    head, _, mounts = r.stdout.decode().partition("---")
    pids, cgroup_files, *cgroup_paths = head.split()
    assert int(pids) <= 3  # sh, and what it runs
    assert int(cgroup_files) == 0
    assert cgroup_paths == ["/"]
    inside = set(mounts.split())
    from linx_spec import load_file, mountinfo

    # What the spec mounts, and so may show: its root and the subtrees of its entries
    # (a fresh /proc, /dev, /tmp with their own submounts; /usr bound recursively,
    # with whatever the host has mounted below it).  Derived from the spec and the
    # host's table as observed here, so it holds on this host and in the v2 guest
    # (whose /run, for one, is a mount of its own).
    targets = [e.target for e in load_file(HARDENED).mounts.entries]

    def spec_made(p: str) -> bool:
        return p == "/" or any(p == t or p.startswith(t.rstrip("/") + "/") for t in targets)

    assert {"/", *targets} <= inside, inside
    # Every mount point of the host outside those subtrees (its cgroup hierarchies,
    # /sys, the checkout, the guest's /run...) is absent: the old root was
    # detached after pivot_root.  Nor is anything else there.
    host_only = {m.mount_point for m in mountinfo.read() if not spec_made(m.mount_point)}
    assert any(p.startswith("/sys") for p in host_only), host_only  # the check has something to find
    assert sorted(host_only & inside) == []
    assert sorted(p for p in inside if not spec_made(p)) == []


def test_escape_cannot_regain_capabilities(tmp_path):
    src = tmp_path / "suid.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("%d\\n", geteuid());return 0;}\n')
    exe = tmp_path / "suid"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    os.chmod(tmp_path, 0o755)
    script = ("/work/suid; grep -E 'Cap(Prm|Eff|Bnd|Amb)' /proc/self/status | cut -f2 | sort -u; "
              "unshare -Ur true 2>/dev/null && echo userns-ok || echo userns-denied")
    r = _hardened(script, tmp_path, [f"mounts.entries=[{{type: bind, source: /usr, readonly: true}}, {{type: bind, source: {tmp_path}, target: /work, readonly: true}}, {{type: proc}}, {{type: dev}}]"])
    out = r.stdout.decode().split()
    assert len(out) >= 3, (r.stdout, r.stderr)
    assert out[0] != "0"  # the setuid-root binary did not make it root (no_new_privs)
    assert out[1:-1] == ["0000000000000000"]  # no capability in any set
    assert out[-1] == "userns-denied"


def test_escape_cannot_bypass_seccomp_through_another_abi(tmp_path):
    # unshare(CLONE_NEWUSER) through the i386 int 0x80 ABI (nr 310) and the x32
    # ABI (0x40000000 | 272), from a 64-bit process.
    src = tmp_path / "abi.c"
    src.write_text(r'''
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r;
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(310L), "b"(0x10000000L) : "memory");
    printf("i386 %ld\n", r);
    fflush(stdout);
    r = syscall(0x40000000L | 272, 0x10000000L);
    printf("x32 %ld\n", r);
    return 0;
}
''')
    exe = tmp_path / "abi"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    os.chmod(tmp_path, 0o755)
    r = _hardened("exec /work/abi", tmp_path, [f"mounts.entries=[{{type: bind, source: /usr, readonly: true}}, {{type: bind, source: {tmp_path}, target: /work, readonly: true}}, {{type: proc}}, {{type: dev}}]"])
    out = r.stdout.decode()
    # Either the filter kills the process (SIGSYS), or each call fails: never 0.
    if r.signal is not None:
        assert r.signal == signal.SIGSYS, (r.signal, out, r.stderr)
    else:
        lines = dict(line.split() for line in out.splitlines())
        assert set(lines) == {"i386", "x32"}, (out, r.stderr)
        assert int(lines["i386"]) < 0 and int(lines["x32"]) < 0, out
    _record("escape_abi", {"signal": r.signal, "output": out})
