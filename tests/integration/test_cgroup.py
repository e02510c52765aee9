"""cgroups on the real kernel: limits checked from inside the workload by what
it can and cannot do; the v1 backend on this host's hierarchies (whatever the
host has: the plan detects it), the v2 backend for real on the cgroup2 mount
for what it offers (placement, cgroup.kill, removal).

Every test checks that no cgroup of ours is left, including after failed setups.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import census
from conftest import REPO, cli
from linx_spec import StepError, build_plan, load_text, run
from linx_spec.host import cgroup as C
from linx_spec.plan import cgroup as PC

pytestmark = pytest.mark.root

LAYOUT = PC.detect(PC.HostView.read())
HAS_V1 = bool(LAYOUT.v1)
V2_MOUNT = LAYOUT.v2


def ours() -> set[str]:
    return {p for p in census._cgroups() if "linx-cgt" in p}


@pytest.fixture(autouse=True)
def no_cgroup_left():
    """Each test's workload cgroups (named linx-cgt*) are gone when it ends."""
    before = ours()
    yield
    deadline = time.monotonic() + 2
    while ours() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours() - before == set()


def plan_of(text: str, name: str = "cgt"):
    return build_plan(load_text(f"version: 1\nname: {name}\n" + text, "t.yaml"), source="t.yaml")


def run_plan(plan, tmp_path: Path):
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        result = run(plan, stdout=fo.fileno(), stderr=fe.fileno())
    return result, out.read_text(), err.read_text()


def need(*controllers: str) -> None:
    missing = [c for c in controllers if c not in LAYOUT.v1 and c not in LAYOUT.v2_controllers]
    if missing:
        pytest.skip(f"this host has no {', '.join(missing)} controller")


# --- limits, seen from inside ------------------------------------------------------

def test_oom_killed_workload_is_reported_and_apply_exits_137(write_spec):
    need("memory")
    path = write_spec("""
version: 1
name: cgt-oom
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, 'b = bytearray(256 * 2**20); print("survived")']
cgroup:
  memory: {max: 64Mi}
""")
    proc = cli("apply", str(path))
    assert proc.returncode == 137, proc.stderr
    assert "survived" not in proc.stdout
    assert "cgt-oom: killed by the kernel OOM killer: memory.max 64 MiB reached" in proc.stderr


def test_oom_figures_in_the_api_result(tmp_path):
    need("memory")
    plan = plan_of("""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, 'b = bytearray(256 * 2**20)']
cgroup:
  memory: {max: 32Mi}
""")
    result, _out, _err = run_plan(plan, tmp_path)
    assert result.signal == signal.SIGKILL and result.status == 137
    assert result.usage["oom_kills"] >= 1
    assert result.reason == "killed by the kernel OOM killer: memory.max 32 MiB reached"
    # Peak is at the limit (v1 counts in pages of the limit; v2 likewise).
    assert 30 * 2**20 <= result.usage["memory_peak_bytes"] <= 32 * 2**20


FORK_LOOP = r"""
import errno, os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print(n, errno.errorcode[e.errno], flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
"""


def test_fork_loop_stops_at_pids_max_with_eagain(tmp_path):
    need("pids")
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, {json.dumps(FORK_LOOP)}]
cgroup:
  pids: {{max: 8}}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    # pids.max counts the workload's first process too: 7 children fit.
    assert out.split() == ["7", "EAGAIN"]
    assert result.usage["pids_limit_hits"] >= 1
    if "pids_peak" in result.usage:
        assert result.usage["pids_peak"] == 8


def test_limits_are_in_force_at_the_first_instruction(tmp_path):
    """pids.max 1: the very first fork of the program fails; and the limit
    files the program reads from its own cgroup already hold the values."""
    need("pids", "memory")
    plan = plan_of("""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, 'import os, errno, sys; print(open("/proc/self/cgroup").read(), flush=True); os.fork()']
cgroup:
  memory: {max: 48Mi}
  pids: {max: 1}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 1
    assert "BlockingIOError" in err and "Resource temporarily unavailable" in err
    # Now read the limit files through the cgroup the workload saw itself in.
    lines = dict(line.split(":", 2)[1:] for line in out.strip().splitlines())
    assert all(path.startswith("/linx/linx-cgt-") for c, path in lines.items() if c in ("memory", "pids", ""))


def test_workload_reads_its_own_limit_files(tmp_path):
    need("memory", "pids")
    if "memory" in LAYOUT.v1:
        script = ('p=$(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup); '
                  'cat /sys/fs/cgroup/memory$p/memory.limit_in_bytes; '
                  'q=$(sed -n "s/^[0-9]*:pids://p" /proc/self/cgroup); cat /sys/fs/cgroup/pids$q/pids.max')
    else:  # pure v2: one directory, v2 file names
        script = ('p=$(sed -n "s/^0:://p" /proc/self/cgroup); '
                  f'cat {V2_MOUNT}$p/memory.max {V2_MOUNT}$p/pids.max')
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/sh, -c, {json.dumps(script)}]
cgroup:
  memory: {{max: 48Mi}}
  pids: {{max: 20}}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert out.split() == [str(48 * 2**20), "20"]


BUSY = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.2: pass\n"


def test_half_a_cpu_gets_about_half_a_cpu(tmp_path):
    need("cpu")
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, {json.dumps(BUSY)}]
cgroup:
  cpu: {{max: 0.5}}
""")
    t0 = time.monotonic()
    result, _out, err = run_plan(plan, tmp_path)
    wall = time.monotonic() - t0
    assert result.exit_code == 0, err
    used = result.usage["cpu_seconds"]  # from the cgroup's own accounting
    assert 0.35 * wall <= used <= 0.6 * wall + 0.05, (used, wall)
    assert result.usage["cpu_throttled_periods"] >= 5


def test_without_quota_the_same_loop_gets_a_whole_cpu(tmp_path):
    """The control for the test above: the accounting itself is not halving."""
    need("cpu")
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/usr/bin/python3, -c, {json.dumps(BUSY)}]
cgroup:
  cpu: {{weight: 100}}
""")
    result, _out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert result.usage["cpu_seconds"] >= 0.8


def test_cpuset_pinning_is_visible_inside(tmp_path):
    need("cpuset")
    online = PC._online("/sys/devices/system/cpu/online")
    cpu = max(online)
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/grep, Cpus_allowed_list, /proc/self/status]
cgroup:
  cpuset: {{cpus: "{cpu}"}}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    assert out.split() == ["Cpus_allowed_list:", str(cpu)]


def test_cgroup_namespace_shows_the_workload_its_own_cgroup_as_root(tmp_path):
    plan = plan_of("""
namespaces: [pid, cgroup]
process:
  command: [/bin/cat, /proc/self/cgroup]
cgroup:
  pids: {max: 10}
""")
    result, out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    seen = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in out.strip().splitlines()}
    for h in plan.cgroup.hierarchies:
        key = "" if h.version == 2 else ",".join(LAYOUT.v1[h.controllers[0]][1])
        assert seen[key] == "/", (key, out)
    # Without the namespace the same workload sees where it really is.
    plan = plan_of("""
namespaces: [pid]
process:
  command: [/bin/cat, /proc/self/cgroup]
cgroup:
  pids: {max: 10}
""")
    result, out, _err = run_plan(plan, tmp_path)
    # Made before the clone (and on pure v2 cloned into it): the leaf is named after the agent's pid.
    assert re.search(r":/linx/linx-cgt-\d+$", out, re.M), out
    assert f"/linx/linx-cgt-{result.pid}" not in out or not C.early(plan.cgroup), out


# --- nothing survives ------------------------------------------------------------

def _gone_or_not_sleep(pid: int) -> bool:
    try:
        return b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def test_daemonizing_workload_leaves_nothing_behind(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    plan = plan_of(f"""
namespaces: [mount]
process:
  command: [/bin/sh, -c, '(sleep 1000 & echo $! > {pidfile}) ; exit 0']
cgroup:
  pids: {{max: 10}}
""")
    result, _out, err = run_plan(plan, tmp_path)
    assert result.exit_code == 0, err
    daemon = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while not _gone_or_not_sleep(daemon) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone_or_not_sleep(daemon)


def _live_plan(hierarchies_of, name):
    """A real cgroup plan restricted to some hierarchies, for the kill/remove tests."""
    plan = plan_of("process: {command: [/bin/true]}\ncgroup: {}\n", name=name)
    cg = plan.cgroup
    keep = tuple(h for h in cg.hierarchies if hierarchies_of(h))
    if not keep:
        pytest.skip("no such hierarchy on this host")
    return dataclasses.replace(cg, hierarchies=keep)


class Ctx:
    def __init__(self, pid, name):
        self.pid = pid
        self.plan = type("P", (), {"name": name})()
        self.undo, self.after, self.tracked = [], [], []

    def on_undo(self, what, fn):
        self.undo.append(fn)

    def after_exit(self, fn):
        self.after.append(fn)

    def track_cgroup(self, path, remove_only=False):
        if not remove_only:
            self.tracked.append(path)


def _family():
    """A shell started by this test (ours to kill) that forks two sleeps once
    told to, i.e. after it was moved into the cgroup."""
    return subprocess.Popen(["/bin/sh", "-c", "read go; sleep 1000 & sleep 1000 & wait"], stdin=subprocess.PIPE,
                            start_new_session=True)


@pytest.mark.parametrize("which", ["v2", pytest.param("v1-freezer", marks=pytest.mark.v1host)])
def test_undo_kills_every_process_in_the_cgroup_and_removes_it(tmp_path, which, monkeypatch):
    if which == "v2":
        if V2_MOUNT is None:
            pytest.skip("no cgroup2 mount")
        cg = _live_plan(lambda h: h.version == 2, "cgt-kill2")
    else:
        if "freezer" not in LAYOUT.v1:
            pytest.skip("no v1 freezer")
        # A hybrid 5.14+ host leaves the v1 freezer out (the v2 leaf kills); a kernel
        # before cgroup.kill still joins it, and kills through it: planned as there.
        monkeypatch.setattr(PC, "_kernel_at_least", lambda version: False)
        cg = _live_plan(lambda h: h.version == 1 and "freezer" in h.controllers, "cgt-kill1")
    sh = _family()
    try:
        ctx = Ctx(sh.pid, cg.name)
        live = C.apply_from_host(cg, ctx)
        (h, leaf), = live.leaves
        sh.stdin.write(b"go\n")
        sh.stdin.flush()
        # The shell forks its sleeps after the move: they are inside too.
        deadline = time.monotonic() + 5
        while len(live.fs.procs(leaf)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        procs = live.fs.procs(leaf)
        assert procs >= {sh.pid} and len(procs) == 3
        for fn in reversed(ctx.undo):
            fn()
        assert sh.wait(timeout=5) == -signal.SIGKILL
        assert not os.path.exists(leaf)
        for pid in procs:
            assert _gone_or_not_sleep(pid)
    finally:
        if sh.poll() is None:
            sh.kill()
            sh.wait()


def test_v2_backend_places_kills_and_removes_for_real(tmp_path):
    """The v2 backend alone, on the real cgroup2 mount (on a hybrid host that is
    the unified mount with no controllers): the workload is placed there, its
    daemon is killed at the end, its cgroup removed."""
    if V2_MOUNT is None:
        pytest.skip("no cgroup2 mount")
    pidfile = tmp_path / "daemon.pid"
    plan = plan_of(f"""
namespaces: [mount]
process:
  command: [/bin/sh, -c, '(sleep 1000 & echo $! > {pidfile}); cat /proc/self/cgroup']
cgroup: {{}}
""", name="cgt-v2")
    only_v2 = PC.HostView(tuple(m for m in PC.HostView.read().mounts if m[0] == "cgroup2"), (("", "/"),), 0)
    cg = PC.resolve(load_text("version: 1\nname: cgt-v2\nprocess: {command: [/bin/true]}\ncgroup: {}").cgroup,
                   load_text("version: 1\nname: cgt-v2\nprocess: {command: [/bin/true]}\ncgroup: {}"),
                   host=only_v2)
    assert cg.backend == "v2"
    result, out, err = run_plan(dataclasses.replace(plan, cgroup=cg), tmp_path)
    assert result.exit_code == 0, err
    # Cloned straight into it (CLONE_INTO_CGROUP), the leaf is named after the agent's pid.
    assert [line for line in out.splitlines() if line.startswith("0::/linx/linx-cgt-v2-")], out
    assert "cpu_seconds" in result.usage  # cpu.stat is there without any controller
    assert _gone_or_not_sleep(int(pidfile.read_text()))


@pytest.mark.parametrize("into", ["1", "0"], ids=["clone-into-cgroup", "attach"])
def test_v2_parked_child_is_in_its_cgroup_from_the_clone(tmp_path, monkeypatch, into):
    """cgroup v2 alone: the agent clones the child straight into the workload's
    cgroup (clone3 CLONE_INTO_CGROUP), so right after SPAWNED, before any host
    step ran, the kernel already shows it there; with LINX_CLONE_INTO_CGROUP=0
    it is still in the runner's cgroup then and the cgroup step moves it.  Either
    way the workload's first command finds itself in the leaf."""
    if V2_MOUNT is None:
        pytest.skip("no cgroup2 mount")
    monkeypatch.setenv("LINX_CLONE_INTO_CGROUP", into)
    plan = plan_of("namespaces: [pid]\nprocess:\n  command: [/bin/cat, /proc/self/cgroup]\ncgroup: {}\n",
                   name="cgt-into")
    only_v2 = PC.HostView(tuple(m for m in PC.HostView.read().mounts if m[0] == "cgroup2"), (("", "/"),), 0)
    s = load_text("version: 1\nname: cgt-into\nprocess: {command: [/bin/true]}\ncgroup: {}")
    plan = dataclasses.replace(plan, cgroup=PC.resolve(s.cgroup, s, host=only_v2))
    seen = run_parked(plan, tmp_path, into)
    first = [line for line in seen.out.splitlines() if line.startswith("0::")]
    if into == "1":
        assert seen.parked_in == f"/linx/linx-cgt-into-{seen.agent_pid}"
    else:
        assert seen.parked_in == C._cgroups_of("self")["0"]  # the runner's own, until the cgroup step
    # clone-into: made before the clone, named after the agent's pid; attach with only a v2 hierarchy:
    # made by the cgroup step, named after the child (early creation is for v1: host/cgroup.py early)
    assert first == [f"0::/linx/linx-cgt-into-{seen.agent_pid if into == '1' else seen.pid}"]


@dataclasses.dataclass
class Parked:
    parked_in: str  # the v2 cgroup of the parked child, right after SPAWNED
    agent_pid: int
    pid: int
    out: str  # the workload's stdout


def run_parked(plan, tmp_path: Path, into: str, while_parked=lambda parked_in: None) -> Parked:
    """Spawn (the child parked, no host step run yet), look at its v2 cgroup from
    outside, then run it to the end.  `into`: whether the agent is to clone it
    into its cgroup (LINX_CLONE_INTO_CGROUP, set by the caller)."""
    from linx_spec import Workload

    out = tmp_path / "out"
    with open(out, "wb") as fo, Workload(plan, stdout=fo.fileno()) as w:
        w.spawn()
        parked_in = C._cgroups_of(w.pid)["0"]
        assert w.agent.spawned_in_cgroup is (into == "1")
        while_parked(parked_in)
        agent_pid = w.agent.pid
        w.proceed()
        result = w.wait()
    assert result.exit_code == 0
    return Parked(parked_in, agent_pid, w.pid, out.read_text())


def test_failed_setup_removes_the_cgroups_and_the_child_never_runs(tmp_path):
    """An invalid cpuset injected past the plan's checks: the kernel refuses it
    halfway through the writes; everything is rolled back."""
    need("cpuset")
    marker = tmp_path / "ran"
    plan = plan_of(f"""
namespaces: [pid]
process:
  command: [/bin/touch, {marker}]
cgroup:
  memory: {{max: 64Mi}}
  cpuset: {{cpus: "0"}}
""")
    bad = tuple(dataclasses.replace(h, writes=tuple((f, "4095" if f == "cpuset.cpus" else v) for f, v in h.writes))
                for h in plan.cgroup.hierarchies)
    plan = dataclasses.replace(plan, cgroup=dataclasses.replace(plan.cgroup, hierarchies=bad))
    with pytest.raises(StepError) as e:
        run_plan(plan, tmp_path)
    assert str(e.value).startswith("cgroup (host): write cpuset.cpus '4095' in ")
    assert e.value.errno != 0
    assert not marker.exists()


def test_failed_child_step_after_placement_removes_the_cgroups(tmp_path):
    plan = plan_of("""
namespaces: [pid]
process:
  command: [/bin/true]
  cwd: /nonexistent-linx-cwd
cgroup:
  pids: {max: 10}
""")
    with pytest.raises(StepError, match="cwd"):
        run_plan(plan, tmp_path)


def test_agent_kills_what_else_is_in_the_cgroup_when_the_runner_dies(write_spec, tmp_path):
    """The agent's safety net removes an empty cgroup with one rmdir; one that
    still holds a process (here a sleeper of the test's own, not the agent's
    descendant, moved into the workload's cgroup) is refused by the kernel, and
    the agent then kills what is inside before it removes the cgroup."""
    path = write_spec("""
version: 1
name: cgt-orphan-x
namespaces: [pid]
process:
  command: [/bin/sleep, '1000']
cgroup:
  pids: {max: 10}
""")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    runner = subprocess.Popen([sys.executable, "-m", "linx_spec.cli", "apply", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        deadline = time.monotonic() + 60  # a cold CLI start in the emulated v2 guest can take over 10 s
        leaves: set[str] = set()
        while time.monotonic() < deadline:
            leaves = {p for p in census._cgroups() if "linx-cgt-orphan-x" in p}
            # past the cgroup step: the workload is in its leaves
            if leaves and all(os.path.exists(f"{p}/cgroup.procs") and open(f"{p}/cgroup.procs").read().strip()
                              for p in leaves):
                break
            time.sleep(0.02)
        assert leaves
        for p in leaves:
            with open(f"{p}/cgroup.procs", "w") as f:
                f.write(str(sleeper.pid))
        runner.kill()  # the runner dies without undoing anything
        runner.wait()
        deadline = time.monotonic() + 30
        while (any(os.path.exists(p) for p in leaves) or sleeper.poll() is None) and time.monotonic() < deadline:
            time.sleep(0.05)  # poll() reaps the sleeper once killed: a cgroup stays populated until then
        assert sleeper.returncode == -signal.SIGKILL
        assert not any(os.path.exists(p) for p in leaves)
    finally:
        for proc in (runner, sleeper):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for p in sorted({p for p in census._cgroups() if "linx-cgt-orphan-x" in p}, reverse=True):
            try:
                os.rmdir(p)
            except OSError:
                pass


def test_agent_removes_tracked_cgroups_when_the_runner_dies(write_spec, tmp_path):
    path = write_spec("""
version: 1
name: cgt-orphan
namespaces: [pid]
process:
  command: [/bin/sleep, '1000']
cgroup:
  pids: {max: 10}
""")
    parents_before = {p for p in census._cgroups() if p.endswith("/linx")}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    runner = subprocess.Popen([sys.executable, "-m", "linx_spec.cli", "apply", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a cold CLI start in the emulated v2 guest can take over 10 s
        while not any("linx-cgt-orphan" in p for p in census._cgroups()) and time.monotonic() < deadline:
            time.sleep(0.02)
        leaves = {p for p in census._cgroups() if "linx-cgt-orphan" in p}
        assert leaves
        time.sleep(0.2)  # past the cgroup step: the child runs
        runner.kill()  # the runner dies without undoing anything
        runner.wait()
        deadline = time.monotonic() + 30
        while any(os.path.exists(p) for p in leaves) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(os.path.exists(p) for p in leaves)
        # The parents it created are tracked remove-only: gone too, unless
        # another workload still uses them.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ({p for p in census._cgroups() if p.endswith("/linx")} - parents_before):
            time.sleep(0.05)
        assert not ({p for p in census._cgroups() if p.endswith("/linx")} - parents_before)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        # Whatever a failed run of this test left of the parents.
        for p in sorted({p for p in census._cgroups() if p.endswith("/linx")} - parents_before, reverse=True):
            try:
                os.rmdir(p)
            except OSError:
                pass


# --- what plan says -----------------------------------------------------------------

def test_plan_says_which_backend_and_why(write_spec):
    path = write_spec("""
version: 1
name: cgt-plan
process: {command: [/bin/true]}
cgroup:
  memory: {max: 64Mi}
""")
    proc = cli("plan", str(path))
    assert proc.returncode == 0, proc.stderr
    if HAS_V1:
        assert "note: cgroup v1 (" in proc.stdout
        if V2_MOUNT:
            assert f"cgroup2 at {V2_MOUNT}" in proc.stdout
    else:
        assert "note: cgroup v2 at" in proc.stdout
    assert "cgroup=/linx/linx-cgt-plan-<pid>" in proc.stdout
    assert "memory.limit_in_bytes=67108864" in proc.stdout or "memory.max=67108864" in proc.stdout
    assert ours() == set()  # plan never writes


def test_a_parent_one_workload_made_goes_with_the_last_workload_out():
    """Two workloads of one process below a parent that did not exist: the one
    that made it ends first (its rmdir of the parent: EBUSY, the other is still
    inside); the parent must still go, with the last one out."""
    import glob

    from linx_spec import Workload

    parent = f"/linx-shared-{os.getpid()}"

    def plan(name: str):
        return build_plan(load_text(f"""
version: 1
name: {name}
namespaces: [user, pid]
cgroup: {{parent: {parent}, pids: {{max: 8}}}}
process: {{command: [/bin/sh, -c, 'read line']}}
""", "shared.yaml"), source="shared.yaml")

    def parent_dirs() -> list[str]:
        return sorted(set(glob.glob(f"/sys/fs/cgroup/*{parent}") + glob.glob(f"/sys/fs/cgroup{parent}")))

    assert parent_dirs() == []
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        with Workload(plan("maker"), stdin=r1) as first, Workload(plan("other"), stdin=r2) as second:
            first.start()
            made = parent_dirs()
            second.start()
            os.write(w1, b"end\n")
            assert first.wait().exit_code == 0
            still = parent_dirs()
            os.write(w2, b"end\n")
            assert second.wait().exit_code == 0
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)
    assert made and still == made  # the maker could not remove it: the other was inside
    assert parent_dirs() == []  # the last one out did
