"""The commands around detached workloads, from the user's side (issue 20):
stop during a restart backoff, delete --force, -d -t, a foreground apply of a
name that runs detached."""

from __future__ import annotations

import json
import time

import pytest

from conftest import cli
from integration.test_lifecycle import runtime  # noqa: F401 - the fixture: a private runtime dir
from linx_spec.state import alive

pytestmark = pytest.mark.root


def _wait_status(name: str, word: str, seconds: float = 10) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        out = cli("status", name).stdout
        if f"status:   {word}" in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{name} never became {word}: {cli('status', name).stdout}")


def _gone(pid: int, start: int, seconds: float = 5) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and alive(pid, start):
        time.sleep(0.05)
    return not alive(pid, start)


def test_stop_during_a_restart_backoff_ends_the_restarts(write_spec, runtime, tmp_path):
    counter = tmp_path / "runs"
    path = write_spec(f"""
version: 1
name: lxbackoff
lifecycle: {{restart: {{policy: always, backoff: 2s, max_backoff: 2s}}}}
process: {{command: [/bin/sh, -c, 'echo x >> {counter}; exit 3']}}
""")
    assert cli("apply", "-d", str(path)).returncode == 0
    status = _wait_status("lxbackoff", "restarting")
    assert "exit code 3; restarting in 2s" in status
    assert "restarting" in cli("ps").stdout
    stop = cli("stop", "lxbackoff")
    assert stop.returncode == 0 and "exited" in stop.stdout, stop.stdout + stop.stderr
    runs = counter.read_text().count("x")
    time.sleep(3)  # past the backoff: nothing started again
    assert counter.read_text().count("x") == runs
    state = json.loads((runtime / "lxbackoff" / "state.json").read_text())
    assert state["status"] == "exited"  # its supervisor's last word on it
    # The shared supervisor (issue 23) leaves with its last workload: this was it.
    assert _gone(state["supervisor_pid"], state["supervisor_pid_start"])
    assert cli("delete", "lxbackoff").returncode == 0


def test_delete_force_stops_the_supervisor_before_removing_the_state(write_spec, runtime):
    path = write_spec("version: 1\nname: lxdelf\nprocess: {command: [sleep, '60']}\n"
                      "lifecycle: {stop_grace: 200ms, restart: {policy: always, backoff: 10ms}}\n")
    assert cli("apply", "-d", str(path)).returncode == 0
    state = json.loads((runtime / "lxdelf" / "state.json").read_text())
    assert cli("delete", "--force", "lxdelf").returncode == 0
    assert not (runtime / "lxdelf").exists()
    assert not alive(state["host_pid"], state["host_pid_start"])  # gone, or a zombie not reaped yet
    assert _gone(state["supervisor_pid"], state["supervisor_pid_start"])  # it had nothing else to supervise


def test_detach_with_a_terminal_is_refused(write_spec, runtime):
    path = write_spec("version: 1\nname: lxdt\nprocess: {command: [sh]}\n")
    out = cli("apply", "-d", "-t", str(path))
    assert out.returncode == 72 and "cannot have a terminal" in out.stderr
    assert "Traceback" not in out.stderr and not (runtime / "lxdt").exists()


def test_foreground_apply_of_a_name_running_detached_never_starts_a_second_copy(write_spec, runtime):
    """Issue 20 asked to refuse it or say why not: a running one is converged
    (issue 16's live apply, README "Changing a running workload"), never run twice."""
    path = write_spec("version: 1\nname: lxfg\nprocess: {command: [sleep, '60']}\n"
                      "lifecycle: {stop_grace: 200ms}\n")
    assert cli("apply", "-d", str(path)).returncode == 0
    pid = json.loads(cli("status", "lxfg", "--json").stdout)["host_pid"]
    out = cli("apply", str(path))
    assert out.returncode == 0 and out.stdout == "lxfg: unchanged\n", out.stdout + out.stderr
    status = cli("status", "lxfg", "--json").stdout
    assert json.loads(status)["host_pid"] == pid and "running" in cli("status", "lxfg").stdout  # untouched
    assert cli("stop", "lxfg").returncode == 0
    assert cli("delete", "lxfg").returncode == 0


def test_verbose_summary_env_shorthand_and_readable_status(write_spec, runtime):
    path = write_spec("version: 1\nname: lxsum\ncgroup: {memory: {max: 64Mi}, pids: {max: 20}}\n"
                      "process: {command: [/bin/sh, -c, 'echo $FOO; exit 3']}\n")
    fg = cli("apply", "-v", "--env", "FOO=from-env", str(path))
    assert fg.returncode == 3 and fg.stdout == "from-env\n", fg.stderr
    assert "lxsum: result: failed, exit code 3" in fg.stderr
    assert "lxsum: wall time: " in fg.stderr and "lxsum: memory peak: " in fg.stderr
    assert "lxsum: cpu: " in fg.stderr and "lxsum: oom kills: 0" in fg.stderr
    assert cli("apply", "-d", str(path)).returncode == 0
    _wait_status("lxsum", "exited")
    text = cli("status", "lxsum").stdout
    assert "usage:    memory peak: " in text and "{" not in text  # words, not a Python dict
    record = json.loads(cli("status", "--json", "lxsum").stdout)
    assert record["status"] == "exited" and record["exit_code"] == 3
    usage = record["usage"]
    assert usage["cpu_user_seconds"] <= usage["cpu_seconds"] and usage["memory_peak_bytes"] > 0
    bad = cli("apply", "--env", "NOEQUALS", str(path))
    assert bad.returncode == 2 and "--env" in bad.stderr and "Traceback" not in bad.stderr


def test_wait_and_logs_follow_and_tail(write_spec, runtime):
    from conftest import start_cli
    import subprocess

    path = write_spec("version: 1\nname: lxwait\n"
                      "process: {command: [/bin/sh, -c, 'for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done; exit 5']}\n")
    assert cli("apply", "-d", str(path)).returncode == 0
    follower = start_cli("logs", "-f", "lxwait", stdout=subprocess.PIPE, text=True)
    assert cli("wait", "lxwait").returncode == 5
    out, _ = follower.communicate(timeout=10)
    assert follower.returncode == 0 and out == "".join(f"line{i}\n" for i in range(1, 6))
    assert cli("logs", "--tail", "2", "lxwait").stdout == "line4\nline5\n"
    assert cli("wait", "nosuch").returncode == 72


def test_restart_starts_a_new_workload_from_the_stored_plan(write_spec, runtime):
    path = write_spec("version: 1\nname: lxre\nlifecycle: {stop_grace: 200ms}\nprocess: {command: [sleep, '60']}\n")
    assert cli("apply", "-d", str(path)).returncode == 0
    before = json.loads((runtime / "lxre" / "state.json").read_text())
    out = cli("restart", "lxre")
    assert out.returncode == 0 and out.stdout == "lxre\n", out.stderr
    after = json.loads((runtime / "lxre" / "state.json").read_text())
    assert not alive(before["host_pid"], before["host_pid_start"])
    assert alive(after["host_pid"], after["host_pid_start"]) and after["host_pid"] != before["host_pid"]
    assert cli("stop", "lxre").returncode == 0
