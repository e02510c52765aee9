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


def test_summary_from_the_spec_and_quiet_apply(write_spec, runtime):
    """lifecycle.summary prints apply -v's summary without -v; -q leaves only the
    workload's own output (and errors), detached or foreground (issue 20)."""
    path = write_spec("version: 1\nname: lxquiet\nlifecycle: {summary: true, stop_grace: 200ms}\n"
                      "cgroup: {pids: {max: 20}}\n"
                      "process: {command: [/bin/sh, -c, 'echo out; echo err >&2; exit 4']}\n")
    fg = cli("apply", str(path))
    assert fg.returncode == 4 and fg.stdout == "out\n", fg.stderr
    assert "lxquiet: result: failed, exit code 4" in fg.stderr and "lxquiet: wall time: " in fg.stderr
    assert "step" not in fg.stderr and "cpu: " in fg.stderr  # the summary, not -v's steps
    for args in (("apply", "-q"), ("-q", "apply")):
        quiet = cli(*args, str(path))
        assert quiet.returncode == 4 and (quiet.stdout, quiet.stderr) == ("out\n", "err\n"), quiet.stderr
    detached = cli("-q", "apply", "-d", "--set", "process.command=[sleep, 60]", str(path))
    assert detached.returncode == 0 and detached.stdout == "" and detached.stderr == ""
    assert cli("ps", "-q").stdout == "lxquiet\n"
    again = cli("apply", "-q", "--set", "process.command=[sleep, 60]", "--set", "cgroup.pids.max=30", str(path))
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""  # converged live, silently
    assert "cgroup.pids.max" not in cli("diff", "--set", "process.command=[sleep, 60]", "--set",
                                        "cgroup.pids.max=30", str(path)).stdout
    bad = cli("apply", "-q", "--set", "process.memory=1", str(path))
    assert bad.returncode == 65 and "--set process.memory=1: unknown field" in bad.stderr  # errors still show
    assert cli("stop", "lxquiet").returncode == 0


def test_root_flag_keeps_detached_state_there(write_spec, runtime, tmp_path):
    root = tmp_path / "rt"
    path = write_spec("version: 1\nname: lxroot\nlifecycle: {stop_grace: 200ms}\nprocess: {command: [sleep, '60']}\n")
    assert cli("--root", str(root), "apply", "-d", str(path)).returncode == 0
    try:
        assert (root / "lxroot" / "state.json").exists() and not (runtime / "lxroot").exists()
        assert cli("ps", "-q").stdout == "" and cli("--root", str(root), "-q", "ps").stdout == "lxroot\n"
        assert cli("--root", str(root), "stop", "lxroot").returncode == 0
    finally:
        assert cli("--root", str(root), "delete", "--force", "lxroot").returncode == 0


def test_stats_and_inspect_read_a_running_workloads_cgroups(write_spec, runtime):
    """What the workload does inside (48 MiB touched, three processes, a busy loop)
    shows up in stats and inspect, read from its own cgroup files (issue 20)."""
    import subprocess

    from conftest import start_cli

    path = write_spec("""
version: 1
name: lxstats
lifecycle: {stop_grace: 200ms}
cgroup: {memory: {max: 128Mi}, pids: {max: 40}}
process:
  command: [/bin/sh, -c, 'python3 -c "a = bytes([7]) * (48 << 20); import time; time.sleep(60)" &
                         sleep 60 & while :; do :; done']
""")
    assert cli("apply", "-d", str(path)).returncode == 0
    try:
        deadline = time.time() + 20
        while True:  # until python has touched its 48 MiB
            one = cli("stats", "--no-stream", "--json", "lxstats")
            assert one.returncode == 0, one.stderr
            (r,) = json.loads(one.stdout)
            if (r["memory_bytes"] or 0) >= 48 << 20 or time.time() > deadline:
                break
        assert r["name"] == "lxstats" and r["status"] == "running"
        assert 48 << 20 <= r["memory_bytes"] <= 128 << 20 and r["memory_limit_bytes"] == 128 << 20
        assert r["memory_peak_bytes"] >= r["memory_bytes"] and 0 < r["memory_percent"] <= 100
        assert r["pids"] >= 3 and r["pids_limit"] == 40  # sh, python3, sleep
        assert r["cpu_percent"] > 20 and r["cpu_seconds"] > 0  # the busy loop (the machine is shared)
        everyone = cli("top", "--no-stream")  # the alias, every running workload, a table
        assert everyone.returncode == 0 and everyone.stdout.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
        assert any(line.startswith("lxstats ") and "/ 128.0MiB" in line for line in everyone.stdout.splitlines())

        doc = json.loads(cli("inspect", "lxstats").stdout)
        assert doc["status"] == "running" and doc["state"]["host_pid"] == json.loads(
            cli("status", "--json", "lxstats").stdout)["host_pid"]
        assert doc["usage"]["source"] == "live" and doc["usage"]["figures"]["memory_bytes"] >= 48 << 20
        assert doc["spec"]["document"]["cgroup"]["pids"] == {"max": 40}
        assert [s["step"] for s in doc["plan"]["steps"]][:2] == ["spawn", "cgroup"]

        piped = start_cli("stats", "--json", "-i", "100ms", "lxstats", stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        assert json.loads(piped.stdout.readline())[0]["name"] == "lxstats"
        piped.stdout.close()  # as `| head -1` does: the next refresh meets a closed pipe and ends quietly
        assert piped.wait(timeout=30) == 0 and piped.stderr.read() == ""
        piped.stderr.close()
        stream = start_cli("stats", "--json", "-i", "200ms", "lxstats", stdout=subprocess.PIPE, text=True)
        first, second = stream.stdout.readline(), stream.stdout.readline()
        assert json.loads(first)[0]["name"] == "lxstats" and json.loads(second)[0]["pids"] >= 3
        assert cli("stop", "lxstats").returncode == 0
        out, _ = stream.communicate(timeout=10)  # a named workload that ended ends the stream
        assert stream.returncode == 0 and json.loads(out.splitlines()[-1])[0]["status"] == "exited"
        ended = json.loads(cli("inspect", "lxstats").stdout)
        assert ended["usage"]["source"] == "ended" and ended["usage"]["figures"]["memory_peak_bytes"] >= 48 << 20
    finally:
        cli("delete", "--force", "lxstats")
