"""Changing a running workload (issue 16), against the real kernel (cgroup v1 here):
`apply` converges limits live, seen from inside the workload, with the same pid
before and after; `diff` observes the kernel; a program change needs --restart;
drift made by hand is shown and restored; an apply SIGKILLed mid-change leaves
the workload running and the next `diff` shows the remainder.  The session's leak
census checks that nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, cli

from .test_lifecycle import runtime  # noqa: F401 - the fixture: a private runtime dir, emptied after

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")

SPEC = """
version: 1
name: {name}
namespaces: [pid, mount]
cgroup: {{memory: {{max: {mem}}}, pids: {{max: {pids}}}, cpu: {{max: {cpu}}}}}
process:
  command: [/bin/sh, -c, 'while :; do sleep {nap}; done']
"""


def spec(write_spec, name="lxlive", mem="64Mi", pids=50, cpu=0.5, nap="0.1"):
    return write_spec(SPEC.format(name=name, mem=mem, pids=pids, cpu=cpu, nap=nap))


def state(runtime, name="lxlive"):
    return json.loads((runtime / name / "state.json").read_text())


def inside(name: str, script: str) -> subprocess.CompletedProcess:
    """Run a shell script inside the workload (its namespaces and cgroups)."""
    return cli("exec", name, "--", "/bin/sh", "-c", script)


def own_limit(name: str, controller: str, file: str) -> str:
    """A limit as the workload reads it from its own cgroup."""
    proc = inside(name, f"p=$(grep ':{controller}:' /proc/self/cgroup | cut -d: -f3); "
                        f"cat /sys/fs/cgroup/{controller}$p/{file}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_limits_change_live_and_the_workload_sees_them(write_spec, runtime):
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    pid = state(runtime)["host_pid"]
    assert own_limit("lxlive", "pids", "pids.max") == "50"
    assert cli("diff", str(spec(write_spec))).returncode == 0  # same file: nothing differs

    new = spec(write_spec, mem="32Mi", pids=6, cpu=0.25)
    d = cli("diff", str(new))
    assert d.returncode == 1, d.stderr
    assert "live     cgroup.memory.max: 67108864 -> 33554432" in d.stdout
    assert "cgroup.pids.max: 50 -> 6" in d.stdout and "cgroup.cpu.max" in d.stdout
    before = (runtime / "lxlive" / "state.json").read_bytes()
    assert (runtime / "lxlive" / "state.json").read_bytes() == before  # diff wrote nothing

    out = cli("apply", str(new))
    assert out.returncode == 0, out.stderr
    assert "cgroup.pids.max: 50 -> 6" in out.stdout
    assert state(runtime)["host_pid"] == pid and os.path.exists(f"/proc/{pid}")  # same workload
    assert own_limit("lxlive", "memory", "memory.limit_in_bytes") == str(32 << 20)
    assert own_limit("lxlive", "cpu", "cpu.cfs_quota_us") == "25000"
    # pids.max 6, by behaviour: the loop (sh + sleep), this shell, and a few more
    # forks reach it; the kernel refuses the next fork.
    forks = inside("lxlive", "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done 2>&1; wait")
    assert "fork" in forks.stdout + forks.stderr or "Resource temporarily unavailable" in forks.stdout + forks.stderr

    again = cli("apply", str(new))
    assert again.returncode == 0 and again.stdout.strip() == "lxlive: unchanged"
    last = state(runtime)["last_applied"]
    pids_entry = next(v for k, v in last.items() if k.endswith(":pids.max"))
    assert pids_entry == {"field": "cgroup.pids.max", "file": "pids.max", "value": "6", "before": "max"}


def test_program_change_is_refused_without_restart_and_restarts_with_it(write_spec, runtime):
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    pid = state(runtime)["host_pid"]
    changed = spec(write_spec, nap="0.2", pids=40)
    out = cli("apply", str(changed))
    assert out.returncode == 66, out.stderr
    assert "process.argv" in out.stderr and "--restart" in out.stderr and "Traceback" not in out.stderr
    assert state(runtime)["host_pid"] == pid and own_limit("lxlive", "pids", "pids.max") == "50"  # untouched

    out = cli("apply", "--restart", str(changed))
    assert out.returncode == 0, out.stderr
    new_pid = state(runtime)["host_pid"]
    assert new_pid != pid and not os.path.exists(f"/proc/{pid}")
    with open(f"/proc/{new_pid}/cmdline", "rb") as f:
        assert b"sleep 0.2" in f.read()
    assert own_limit("lxlive", "pids", "pids.max") == "40"


def test_drift_made_by_hand_shows_in_diff_and_status_and_apply_restores_it(write_spec, runtime):
    path = spec(write_spec)
    assert cli("apply", "-d", str(path)).returncode == 0
    pid = state(runtime)["host_pid"]
    leaf = next(line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()
                if ":pids:" in line)
    with open(f"/sys/fs/cgroup/pids{leaf}/pids.max", "w") as f:
        f.write("7")
    d = cli("diff", str(path))
    assert d.returncode == 1 and "cgroup.pids.max: 7 -> 50" in d.stdout
    assert "drift:    cgroup.pids.max: kernel has 7, applied 50" in cli("status", "lxlive").stdout
    assert cli("apply", str(path)).returncode == 0
    assert own_limit("lxlive", "pids", "pids.max") == "50"
    assert cli("diff", str(path)).returncode == 0
    assert "drift:    none" in cli("status", "lxlive").stdout


def test_released_limit_is_left_or_reverted(write_spec, runtime):
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    no_pids = write_spec(SPEC.replace(", pids: {{max: {pids}}}", "").format(name="lxlive", mem="64Mi", cpu=0.5,
                                                                             nap="0.1"))
    out = cli("apply", str(no_pids))
    assert out.returncode == 0 and "release  cgroup.pids.max" in out.stdout, out.stdout + out.stderr
    assert own_limit("lxlive", "pids", "pids.max") == "50"  # left as is
    assert not any(k.endswith(":pids.max") for k in state(runtime)["last_applied"])
    # Owned again by a live apply: `before` is what the kernel had then (50);
    # --revert-released puts that back when it leaves the spec once more.
    assert cli("apply", str(spec(write_spec, pids=30))).returncode == 0
    out = cli("apply", "--revert-released", str(no_pids))
    assert out.returncode == 0 and "revert   cgroup.pids.max: 30 -> 50" in out.stdout, out.stdout
    assert own_limit("lxlive", "pids", "pids.max") == "50"
    # A limit set when the workload started: `before` is what a new cgroup holds (no limit).
    no_memory = write_spec(SPEC.replace("memory: {{max: {mem}}}, pids: {{max: {pids}}}, ", "")
                           .format(name="lxlive", cpu=0.5, nap="0.1"))
    out = cli("apply", "--revert-released", str(no_memory))
    assert out.returncode == 0 and "revert   cgroup.memory.max: 67108864 -> max" in out.stdout, out.stdout
    assert int(own_limit("lxlive", "memory", "memory.limit_in_bytes")) > 1 << 62
    assert cli("diff", str(no_memory)).returncode == 0


def frozen_as_the_kernel_says(pid: int) -> bool:
    """The v1 freezer's freezer.state when the workload is in a freezer cgroup of its
    own, else its cgroup2 leaf's cgroup.events (a hybrid 5.14+ host joins no v1 freezer)."""
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        state = f"/sys/fs/cgroup/freezer{path}/freezer.state"
        if controllers == "freezer" and os.path.exists(state):
            return {"FROZEN": True, "THAWED": False}[open(state).read().strip()]
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            events = f"{mount}{path}/cgroup.events"
            if controllers == "" and path != "/" and os.path.exists(events):
                return "frozen 1" in open(events).read().splitlines()
    raise AssertionError(f"pid {pid} is in no freezer cgroup of its own")


def test_pause_and_resume_freeze_the_workload(write_spec, runtime):
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    pid = state(runtime)["host_pid"]
    assert cli("pause", "lxlive").returncode == 0
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "D")  # frozen tasks sleep in the freezer
    assert frozen_as_the_kernel_says(pid) is True
    assert "paused:   yes" in cli("status", "lxlive").stdout
    assert cli("resume", "lxlive").returncode == 0
    assert frozen_as_the_kernel_says(pid) is False
    assert cli("pause", "lxlive").returncode == 0
    assert "exited" in cli("stop", "lxlive").stdout  # stop thaws first: SIGTERM reaches it


KILLER = textwrap.dedent("""
    import os, signal, sys
    from linx_spec import build_plan, load_file, reconcile
    from linx_spec.host.cgroup import CgroupFs

    class DiesOnSecondWrite(CgroupFs):
        n = 0
        def write(self, path, text):
            if self.n == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between two knobs
            self.n += 1
            super().write(path, text)

    plan = build_plan(load_file(sys.argv[1]), source=sys.argv[1])
    reconcile(plan.name, plan, fs=DiesOnSecondWrite())
""")


def test_apply_killed_mid_change_leaves_the_workload_and_a_consistent_diff(write_spec, runtime):
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    pid = state(runtime)["host_pid"]
    new = spec(write_spec, mem="32Mi", pids=20)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", KILLER, str(new)], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert os.path.exists(f"/proc/{pid}") and state(runtime)["host_pid"] == pid
    d = cli("diff", str(new))
    assert d.returncode == 1
    assert "memory.max" not in d.stdout and "cgroup.pids.max: 50 -> 20" in d.stdout  # only the remainder
    assert cli("apply", str(new)).returncode == 0
    assert cli("diff", str(new)).returncode == 0
    assert own_limit("lxlive", "pids", "pids.max") == "20"


def test_rlimits_change_live_on_the_running_processes(write_spec, runtime):
    text = ("version: 1\nname: lxrl\nnamespaces: [pid, mount]\nrlimits: {{nofile: {{soft: {soft}, hard: 4096}}}}\n"
            "process: {{command: [/bin/sh, -c, 'while :; do ulimit -n; sleep 0.1; done']}}\n")
    assert cli("apply", "-d", str(write_spec(text.format(soft=1024)))).returncode == 0
    pid = state(runtime, "lxrl")["host_pid"]
    new = write_spec(text.format(soft=2048))
    d = cli("diff", str(new))
    assert d.returncode == 1 and "live     rlimits.nofile: 1024:4096 -> 2048:4096" in d.stdout, d.stdout
    assert cli("apply", str(new)).returncode == 0
    # From inside: the workload's shell prints its own soft limit every 0.1 s.
    log = runtime / "lxrl" / "stdout.log"
    deadline = time.monotonic() + 5
    while log.read_text().split()[-1:] != ["2048"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().split()[0] == "1024" and log.read_text().split()[-1] == "2048"
    assert state(runtime, "lxrl")["host_pid"] == pid
    assert cli("diff", str(new)).returncode == 0


PAUSED_APPLY = textwrap.dedent("""
    import os, sys, time
    from linx_spec import build_plan, load_file, reconcile
    from linx_spec.host import cgroup_live

    real = cgroup_live.write
    def write_then_wait(knob, value, fs):
        real(knob, value, fs)
        open(sys.argv[2] + ".paused", "w").close()  # the kernel written, nothing recorded yet
        while not os.path.exists(sys.argv[2] + ".go"):
            time.sleep(0.02)
    cgroup_live.write = write_then_wait

    plan = build_plan(load_file(sys.argv[1]), source=sys.argv[1])
    reconcile(plan.name, plan)
""")


def test_two_live_applies_at_once_converge_one_after_the_other(write_spec, runtime, tmp_path):
    """A live apply reads last_applied and the plan, writes the kernel, then records
    both: a second one (another `apply`, or the supervisor's reconcile tick) that ran
    in between recorded its own, and the first then recorded its plan over a kernel
    that holds the second's: `status` showed drift and the next reconcile tick put the
    first's limits back.  They now run one after the other."""
    assert cli("apply", "-d", str(spec(write_spec))).returncode == 0
    pid = state(runtime)["host_pid"]
    first, second = str(spec(write_spec, pids=40)), str(spec(write_spec, pids=30))
    flag = str(tmp_path / "apply")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    held = subprocess.Popen([sys.executable, "-c", PAUSED_APPLY, first, flag], env=env, stderr=subprocess.PIPE,
                            text=True)
    other = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(flag + ".paused") and time.monotonic() < deadline and held.poll() is None:
            time.sleep(0.02)
        assert os.path.exists(flag + ".paused"), held.stderr.read() if held.poll() is not None else "no pause"
        other = subprocess.Popen([sys.executable, "-m", "linx_spec.cli", "apply", second], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert other.poll() is None, other.communicate()  # it waits for the first to record its result
        open(flag + ".go", "w").close()
        assert held.wait(timeout=30) == 0, held.stderr.read()
        out, err = other.communicate(timeout=30)
        assert other.returncode == 0 and "cgroup.pids.max: 40 -> 30" in out, out + err
    finally:
        open(flag + ".go", "w").close()
        for proc in (held, other):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert own_limit("lxlive", "pids", "pids.max") == "30"
    assert "drift:    none" in cli("status", "lxlive").stdout
    assert cli("diff", second).returncode == 0 and state(runtime)["host_pid"] == pid
