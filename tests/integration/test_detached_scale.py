"""Detached workloads under the shared supervisor (issue 23) and the
supervisor's live settings (issue 16): one supervisor process for every
detached workload of a runtime directory, gone when the last one ends;
`kill -9` of it leaves each workload as its orphan policy says, reported
truthfully; the restart policy and time limit changed by `apply` of the
running workload (same pid); `lifecycle.reconcile` restoring a limit changed
by hand, seen from inside the workload.  The session's leak census checks
that no agent, supervisor, cgroup or interface is left."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import cli
from linx_spec.state import alive

from .test_lifecycle import runtime  # noqa: F401 - the fixture: a private runtime dir, emptied after
from .test_live import own_limit

pytestmark = pytest.mark.root


def state(runtime, name):
    return json.loads((runtime / name / "state.json").read_text())


def until(cond, seconds=10.0, tick=0.1):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(tick)
    return cond()


def status(name):
    return json.loads(cli("status", "--json", name).stdout)


SLEEPER = """
version: 1
name: {name}
namespaces: [pid, mount]
cgroup: {{pids: {{max: 20}}}}
lifecycle: {{stop_grace: 300ms, orphan: {orphan}}}
process: {{command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 0.1; done']}}
"""


def test_one_supervisor_for_all_and_it_leaves_with_the_last(write_spec, runtime):
    names = ["lxs-a", "lxs-b", "lxs-c"]
    for n in names:
        out = cli("apply", "-d", str(write_spec(SLEEPER.format(name=n, orphan="stop"))))
        assert out.returncode == 0, out.stderr
    states = [state(runtime, n) for n in names]
    sup = {(s["supervisor_pid"], s["supervisor_pid_start"]) for s in states}
    assert len(sup) == 1, states  # one process supervises all three
    (pid, start), = sup
    assert open(f"/proc/{pid}/comm").read().strip() == "linx-supervisor"
    for s in states:  # each workload has its own agent, child of the supervisor
        assert alive(s["host_pid"], s["host_pid_start"])
        assert int(open(f"/proc/{s['agent_pid']}/stat").read().rsplit(")", 1)[1].split()[1]) == pid
    rows = {line.split()[0]: line.split()[1] for line in cli("ps").stdout.splitlines()[1:]}
    assert rows == {n: "running" for n in names}
    assert cli("stop", "lxs-a").returncode == 0
    assert status("lxs-a")["status"] == "exited" and status("lxs-b")["status"] == "running"
    assert alive(pid, start)  # still supervising the other two
    for n in names[1:]:
        assert cli("stop", n).returncode == 0
    assert until(lambda: not alive(pid, start), 5)  # idle: gone, its socket with it
    assert not (runtime / "supervisor.sock").exists()
    assert cli("ps").stdout.count("exited") == 3


def test_kill_9_of_the_supervisor_each_workload_as_its_orphan_policy_says(write_spec, runtime):
    for n, orphan in (("lxk-stop", "stop"), ("lxk-linger", "linger")):
        assert cli("apply", "-d", str(write_spec(SLEEPER.format(name=n, orphan=orphan)))).returncode == 0
    stopped, lingering = state(runtime, "lxk-stop"), state(runtime, "lxk-linger")
    os.kill(stopped["supervisor_pid"], signal.SIGKILL)
    # The agents see their channel close: one stops its workload, the other keeps it.
    assert until(lambda: not alive(stopped["host_pid"], stopped["host_pid_start"]))
    assert until(lambda: status("lxk-stop")["status"] == "dead")
    assert alive(lingering["host_pid"], lingering["host_pid_start"])
    assert status("lxk-linger")["status"] == "running"
    # A new apply -d starts a new supervisor over the socket the killed one left.
    assert cli("apply", "-d", str(write_spec(SLEEPER.format(name="lxk-new", orphan="stop")))).returncode == 0
    new = state(runtime, "lxk-new")
    assert new["supervisor_pid"] != stopped["supervisor_pid"] and alive(new["host_pid"], new["host_pid_start"])
    # The lingering one is stopped without a supervisor; its agent records the end.
    assert cli("stop", "lxk-linger").returncode == 0
    assert not alive(lingering["host_pid"], lingering["host_pid_start"])
    assert until(lambda: status("lxk-linger")["status"] == "exited")
    assert cli("stop", "lxk-new").returncode == 0


def test_time_limit_and_restart_policy_changed_live(write_spec, runtime, tmp_path):
    counter = tmp_path / "runs"
    base = """
version: 1
name: lxlc
lifecycle: {{stop_grace: 200ms{extra}}}
process: {{command: [/bin/sh, -c, 'echo x >> {counter}; sleep 4; exit 3']}}
"""
    path = write_spec(base.format(extra="", counter=counter))
    assert cli("apply", "-d", str(path)).returncode == 0
    pid = state(runtime, "lxlc")["host_pid"]
    more = write_spec(base.format(extra=", restart: {policy: on-failure, max_retries: 2, backoff: 100ms}",
                                  counter=counter))
    out = cli("apply", str(more))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "live     lifecycle.restart.policy: no -> on-failure  (the supervisor)" in out.stdout
    assert state(runtime, "lxlc")["host_pid"] == pid  # the same workload, not restarted
    assert cli("wait", "lxlc").returncode == 3
    assert counter.read_text().count("x") == 3  # two restarts: the new policy honoured
    assert status("lxlc")["restarts"] == 2
    assert cli("delete", "lxlc").returncode == 0

    longer = base.replace("sleep 4", "sleep 30")
    path = write_spec(longer.format(extra="", counter=counter))
    assert cli("apply", "-d", str(path)).returncode == 0
    pid = state(runtime, "lxlc")["host_pid"]
    limited = write_spec(longer.format(extra=", timeout: 1s", counter=counter))
    t0 = time.time()
    out = cli("apply", str(limited))
    assert "live     lifecycle.timeout: none -> 1s" in out.stdout, out.stdout + out.stderr
    assert state(runtime, "lxlc")["host_pid"] == pid
    assert cli("wait", "lxlc").returncode in (128 + signal.SIGTERM, 128 + signal.SIGKILL)  # (pid 1 ignores TERM)
    assert time.time() - t0 < 10
    assert "timed out after 1s" in status("lxlc")["detail"]
    assert cli("diff", str(limited)).returncode == 72  # ended: nothing to converge


def test_reconcile_interval_restores_a_limit_changed_by_hand(write_spec, runtime):
    path = write_spec("""
version: 1
name: lxrec
namespaces: [pid, mount]
cgroup: {memory: {max: 64Mi}, pids: {max: 30}}
lifecycle: {stop_grace: 200ms, reconcile: {interval: 1s}}
process: {command: [/bin/sh, -c, 'while :; do sleep 0.1; done']}
""")
    assert cli("apply", "-d", str(path)).returncode == 0
    pid = state(runtime, "lxrec")["host_pid"]
    leaf = next(line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()
                if ":memory:" in line)
    with open(f"/sys/fs/cgroup/memory{leaf}/memory.limit_in_bytes", "w") as f:
        f.write(str(128 << 20))  # behind linx-spec's back
    # Restored within the interval, as the workload itself reads it.
    assert until(lambda: own_limit("lxrec", "memory", "memory.limit_in_bytes") == str(64 << 20), 4)
    log = cli("logs", "--stderr", "lxrec").stdout
    assert "linx-spec reconcile" in log and f"cgroup.memory.max: {128 << 20} -> {64 << 20}" in log, log
    assert state(runtime, "lxrec")["host_pid"] == pid  # the same workload
    assert cli("stop", "lxrec").returncode == 0
