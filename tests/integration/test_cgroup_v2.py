"""cgroup v2 for real, inside the pure-v2 guest (../shared/vm/run-in-v2-guest,
.ci/run's guest job): the v2 features checked from inside the workload or by
the kernel's own counters, a host without systemd (`--bare-cgroup`: the root
passes no controller down), a cgroup namespace root with processes, and
rootless limits through a delegated subtree.  Selected only in the guest
(marker `v2guest`, tests/integration/conftest.py); every test runs in both
guest layouts and checks what that layout makes of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, cli
from linx_spec.host import cgroup as C
from linx_spec.plan import cgroup as PC
from linx_spec.plan import cgroup_v2

from .test_cgroup import plan_of, run_parked, run_plan

pytestmark = [pytest.mark.root, pytest.mark.v2guest]

MOUNT = "/sys/fs/cgroup"
ROOT_STC = os.path.join(MOUNT, "cgroup.subtree_control")
USER = 4321  # a throwaway uid with no passwd entry: owns nothing but what a test gives it


def root_passes() -> frozenset[str]:
    return cgroup_v2.read_set(ROOT_STC)


def own_files(*names: str) -> str:
    """A shell snippet: the workload prints files of its own v2 cgroup, one a line."""
    return 'p=$(sed -n "s/^0:://p" /proc/self/cgroup); ' + "; ".join(f"cat {MOUNT}$p/{n}" for n in names)


@pytest.fixture(autouse=True)
def pure_v2():
    lay = PC.detect(PC.HostView.read())
    assert not lay.v1 and lay.v2 == MOUNT, "the v2 guest must have every controller on cgroup v2"
    assert {"cpu", "cpuset", "io", "memory", "pids"} <= lay.v2_controllers
    yield
    left = [p for p in Path(MOUNT).rglob("linx*") if p.is_dir()]
    assert left == []


# --- a host without systemd ----------------------------------------------------------

def test_root_passes_down_exactly_what_the_spec_needs(tmp_path, write_spec):
    """systemd layout: the root already passes everything, nothing changes.  Bare
    layout: before, `apply` refused every limit; now the root gets exactly
    memory and pids (the spec's knobs), not cpu, io or cpuset, and they stay."""
    before = root_passes()
    path = write_spec("""
version: 1
name: cgt2-bare
namespaces: [pid]
process:
  command: [/bin/sh, -c, '%s']
cgroup:
  memory: {max: 40Mi}
  pids: {max: 12}
""" % own_files("memory.max", "pids.max"))
    plan = cli("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    missing = sorted({"memory", "pids"} - before)
    if missing:
        assert f"enables {' '.join(c for c in ('memory', 'pids') if c in missing)} in {ROOT_STC}" in plan.stdout
    else:
        assert "enables" not in plan.stdout
    assert root_passes() == before  # plan never writes
    proc = cli("apply", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(40 * 2**20), "12"]
    assert root_passes() == before | {"memory", "pids"}


def test_cgroup_namespace_root_with_processes_is_a_plan_error(tmp_path, write_spec):
    """Inside a cgroup namespace whose root holds processes (a container without
    an init leaf) the no-internal-process rule forbids passing controllers down."""
    box = Path(MOUNT, "linx-cgt2-box")
    box.mkdir()
    path = write_spec("""
version: 1
name: cgt2-box
process: {command: [/bin/true]}
cgroup:
  memory: {max: 40Mi}
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = (f"echo $$ > {box}/cgroup.procs && exec unshare --cgroup --mount sh -c "
              f"'umount -l {MOUNT} && mount -t cgroup2 none {MOUNT} && exec {sys.executable} -m linx_spec.cli plan {path}'")
    try:
        proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    finally:
        box.rmdir()
    assert proc.returncode == 66, (proc.stdout, proc.stderr)
    assert "no internal processes" in proc.stderr
    assert f"mkdir {MOUNT}/init" in proc.stderr and "Traceback" not in proc.stderr


# --- the v2 features, each checked by the kernel ----------------------------------------

def test_oom_counts_peak_and_exit_137(tmp_path):
    plan = plan_of("""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, 'b = bytearray(256 * 2**20)']
cgroup:
  memory: {max: 32Mi, swap_max: 0}
""")
    result, _out, _err = run_plan(plan, tmp_path)
    assert result.signal == signal.SIGKILL and result.status == 137
    assert result.usage["ooms"] >= 1 and result.usage["oom_kills"] >= 1  # memory.events oom, oom_kill
    assert result.usage["memory_limit_hits"] >= 1
    assert 30 * 2**20 <= result.usage["memory_peak_bytes"] <= 32 * 2**20  # memory.peak


def test_memory_high_and_swap_max_land_and_high_is_counted(tmp_path):
    """Above memory.high the kernel reclaims and throttles instead of killing.
    The workload writes 48 MiB of page cache (reclaimable: on the shared
    directory, not tmpfs, and the guest has no swap for anonymous memory)."""
    scratch = Path(tempfile.mkdtemp(prefix=".linx-cgt2-high-", dir=REPO))
    try:
        script = own_files("memory.high", "memory.swap.max", "memory.max") + \
            f"; dd if=/dev/zero of={scratch}/fill bs=1M count=48 status=none && echo ok"
        plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, {json.dumps(script)}]
lifecycle: {{timeout: 120s}}
cgroup:
  memory: {{high: 16Mi, swap_max: 8Mi}}
""")
        result, out, err = run_plan(plan, tmp_path)
    finally:
        shutil.rmtree(scratch)
    assert result.exit_code == 0, err
    assert out.split() == [str(16 * 2**20), str(8 * 2**20), "max", "ok"]
    assert result.usage["memory_high_hits"] >= 1  # memory.events high: reclaimed and throttled, not killed
    assert result.usage.get("oom_kills", 0) == 0


def test_memory_low_and_min_land(tmp_path):
    """Memory protection (v2 only): the workload reads its own cgroup's files, and
    the parent /linx, made by linx-spec, passes memory down so they exist."""
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, '{own_files("memory.low", "memory.min", "memory.max")}']
cgroup:
  memory: {{max: 64Mi, low: 24Mi, min: 8Mi}}
""")
    assert ("memory.min", str(8 * 2**20)) in plan.cgroup.hierarchies[0].writes
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert out.split() == [str(24 * 2**20), str(8 * 2**20), str(64 * 2**20)]


@pytest.mark.parametrize("into", ["1", "0"], ids=["clone-into-cgroup", "attach"])
def test_child_is_cloned_into_its_cgroup_limits_already_in_force(tmp_path, monkeypatch, into):
    """CLONE_INTO_CGROUP: the parked child, before any host step ran, is already in
    the workload's cgroup with its limits written (the kernel's view, from
    outside); the workload's first command reads the same cgroup and its limit.
    LINX_CLONE_INTO_CGROUP=0 (the attach write, as on v1) shows the difference."""
    monkeypatch.setenv("LINX_CLONE_INTO_CGROUP", into)
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, 'cat /proc/self/cgroup; {own_files("pids.max")}']
cgroup:
  pids: {{max: 9}}
""", name="cgt2-into")

    def while_parked(parked_in: str) -> None:
        if into == "1":
            assert parked_in.startswith("/linx/linx-cgt2-into-")
            assert Path(MOUNT + parked_in, "pids.max").read_text().strip() == "9"  # limits already in force
        else:
            assert not parked_in.startswith("/linx/")

    seen = run_parked(plan, tmp_path, into, while_parked)
    if into == "1":
        assert seen.parked_in == f"/linx/linx-cgt2-into-{seen.agent_pid}"
    first, limit = seen.out.split()
    # clone-into: made before the clone, named after the agent's pid; attach on a pure v2 host: made by
    # the cgroup step, named after the child (early creation is for v1 hierarchies: host/cgroup.py early)
    leaf = f"/linx/linx-cgt2-into-{seen.agent_pid if into == '1' else seen.pid}"
    assert (first, limit) == ("0::" + leaf, "9")


def test_cpu_max_and_weight_land(tmp_path):
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, '{own_files("cpu.max", "cpu.weight")}']
cgroup:
  cpu: {{max: 0.25, period: 50ms, weight: 300}}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert out.splitlines() == ["12500 50000", "300"]


def test_cpuset_lands_and_pins(tmp_path):
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, {json.dumps(own_files("cpuset.cpus", "cpuset.mems", "cpuset.cpus.effective")
                                     + "; grep Cpus_allowed_list /proc/self/status")}]
cgroup:
  cpuset: {{cpus: "1", mems: "0"}}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert out.split() == ["1", "0", "1", "Cpus_allowed_list:", "1"]


@pytest.fixture
def loop_disk(tmp_path):
    """A loop device on a file: the guest has no disk of its own."""
    subprocess.run(["modprobe", "loop"], check=False, capture_output=True)
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(64 * 2**20)
    made = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    dev = made.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def test_io_max_throttles_direct_writes_and_io_weight_lands(tmp_path, loop_disk):
    st = os.stat(loop_disk)
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    dd = f"dd if=/dev/zero of={loop_disk} bs=256k count=8 oflag=direct status=none"
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, '{own_files("io.max", "io.weight")}; {dd}']
cgroup:
  io:
    weight: 200
    limits: [{{device: {loop_disk}, write_bps: 1Mi}}]
""")
    t0 = time.monotonic()
    result, out, err = run_plan(plan, tmp_path)
    wall = time.monotonic() - t0
    assert result.exit_code == 0, err
    lines = out.splitlines()
    assert f"{majmin} rbps=max wbps=1048576 riops=max wiops=max" in lines
    assert "default 200" in lines
    assert wall >= 1.5, wall  # 2 MiB at 1 MiB/s: the first second is a burst allowance


def test_freeze_stops_every_process_and_thaw_resumes(tmp_path):
    counter = tmp_path / "count"
    sh = subprocess.Popen(["/bin/sh", "-c", f"read go; i=0; while :; do i=$((i+1)); echo $i > {counter}; "
                                            "sleep 0.02; done"], stdin=subprocess.PIPE, start_new_session=True)
    plan = plan_of("process: {command: [/bin/true]}\ncgroup: {}\n", name="cgt2-freeze").cgroup

    class Ctx:
        pid = sh.pid
        undo: list = []

        class plan:  # noqa: N801 - the attribute the step reads
            name = "cgt2-freeze"

        def on_undo(self, _what, fn):
            self.undo.append(fn)

        def after_exit(self, _fn):
            pass

        def track_cgroup(self, _path, remove_only=False):
            pass

    ctx = Ctx()
    try:
        live = C.apply_from_host(plan, ctx)
        sh.stdin.write(b"go\n")
        sh.stdin.flush()
        time.sleep(0.5)
        live.freeze(True)
        (_h, leaf), = live.leaves
        assert "frozen 1" in Path(leaf, "cgroup.events").read_text().splitlines()
        seen = counter.read_text()
        time.sleep(0.5)
        assert counter.read_text() == seen  # nothing ran while frozen
        live.freeze(False)
        time.sleep(0.5)
        assert int(counter.read_text()) > int(seen)
        live.freeze(True)  # the kill path must handle a frozen cgroup: cgroup.kill kills frozen tasks too
    finally:
        for fn in reversed(ctx.undo):
            fn()
        assert sh.wait(timeout=10) == -signal.SIGKILL


# --- rootless limits through delegation -------------------------------------------------

def _as_user(args: list[str], cgroup: Path | None, runtime: Path, timeout: float = 120):
    """Run `linx-spec ARGS` as the throwaway user, first moved into `cgroup` by root."""
    env = dict(os.environ, PYTHONPATH=str(REPO), LINX_RUNTIME_DIR=str(runtime), HOME=str(runtime))
    cmd = [sys.executable, "-m", "linx_spec.cli", *args]
    drop = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "--inh-caps=-all"]
    move = f"echo $$ > {cgroup}/cgroup.procs && " if cgroup else ""
    return subprocess.run(["/bin/sh", "-c", f'{move}exec "$@"', "sh", *drop, *cmd], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def user_dir():
    """A directory of the throwaway user's (pytest's tmp_path is root's, 0700)."""
    d = Path(tempfile.mkdtemp(prefix="linx-cgt2-user-"))
    os.chown(d, USER, USER)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_rootless_limits_in_a_delegated_subtree(user_dir):
    """What systemd's Delegate=yes gives a user: a cgroup whose cgroup.procs,
    cgroup.subtree_control and cgroup.threads they may write.  The user's
    workload gets memory, pids and cpu limits without root."""
    spec = user_dir / "spec.yaml"
    spec.write_text("""
version: 1
name: cgt2-user
namespaces: [user]
process:
  command: [/bin/sh, -c, '%s; grep -E "^(Uid|CapEff)" /proc/self/status']
cgroup:
  memory: {max: 48Mi}
  pids: {max: 16}
  cpu: {max: 0.5}
""" % own_files("memory.max", "pids.max", "cpu.max"))
    os.chown(spec, USER, USER)
    deleg = Path(MOUNT, "linx-cgt2-deleg")
    added = sorted({"memory", "pids", "cpu"} - root_passes())
    for c in added:  # the administrator's part on a bare host (systemd does it on its own)
        Path(ROOT_STC).write_text(f"+{c}")
    deleg.mkdir()
    try:
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(deleg / name, USER, USER)
        plan = _as_user(["plan", str(spec)], deleg, user_dir)
        assert plan.returncode == 0, plan.stderr
        assert "delegated: the runner's own cgroup /linx-cgt2-deleg" in plan.stdout
        proc = _as_user(["apply", str(spec)], deleg, user_dir)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        lines = proc.stdout.splitlines()
        assert lines[:3] == [str(48 * 2**20), "16", "50000 100000"]
        assert lines[3].split()[1:] == ["0", "0", "0", "0"]  # root in its user namespace ...
        assert set(cgroup_v2.read_set(str(deleg / "cgroup.subtree_control"))) >= {"memory", "pids", "cpu"}
        assert (deleg / "linx-runner").is_dir()  # ... and the runner moved out of the way (no internal processes)
    finally:
        for d in sorted(deleg.rglob("*"), reverse=True):
            if d.is_dir():
                d.rmdir()
        deleg.rmdir()


def test_rootless_without_delegation_names_the_remedy(user_dir):
    spec = user_dir / "spec.yaml"
    spec.write_text("version: 1\nname: cgt2-nodeleg\nnamespaces: [user]\nprocess: {command: [/bin/true]}\n"
                    "cgroup: {memory: {max: 48Mi}}\n")
    os.chown(spec, USER, USER)
    proc = _as_user(["apply", str(spec)], None, user_dir)
    assert proc.returncode == 66, (proc.stdout, proc.stderr)
    assert "not root and no writable delegated cgroup" in proc.stderr
    assert "systemd-run --user --scope -p Delegate=yes" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- stats and inspect on v2 (issue 20) ------------------------------------------------

def test_stats_and_inspect_read_the_v2_leaf(tmp_path, write_spec):
    """memory.current/max, memory.peak, pids.current/max and cpu.stat of the
    workload's own v2 leaf, as what it does inside makes them."""
    root = str(tmp_path / "run")
    path = write_spec("""
version: 1
name: cgt2-stats
namespaces: [pid]
lifecycle: {stop_grace: 200ms}
cgroup: {memory: {max: 96Mi}, pids: {max: 30}}
process:
  command: [/bin/sh, -c, 'python3 -c "a = bytes([7]) * (40 << 20); import time; time.sleep(120)" & sleep 120']
""")
    assert cli("--root", root, "apply", "-d", str(path)).returncode == 0
    try:
        deadline = time.time() + 60
        while True:
            one = cli("--root", root, "stats", "--no-stream", "--json", "cgt2-stats", timeout=120)
            assert one.returncode == 0, one.stderr
            (r,) = json.loads(one.stdout)
            if (r["memory_bytes"] or 0) >= 40 << 20 or time.time() > deadline:
                break
        assert 40 << 20 <= r["memory_bytes"] <= 96 << 20 and r["memory_limit_bytes"] == 96 << 20
        assert r["memory_peak_bytes"] >= r["memory_bytes"] and r["pids"] >= 3 and r["pids_limit"] == 30
        assert r["cpu_seconds"] > 0 and r["cpu_percent"] is not None
        doc = json.loads(cli("--root", root, "inspect", "cgt2-stats", timeout=120).stdout)
        assert doc["usage"]["source"] == "live" and doc["usage"]["figures"]["memory_bytes"] >= 40 << 20
    finally:
        cli("--root", root, "delete", "--force", "cgt2-stats", timeout=120)
