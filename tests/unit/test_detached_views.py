"""`ps` and `status` at scale (issue 23) on fake state entries, no root: ps
reads only each state.json (and an `exit` record where it matters), never a
plan, and imports no command framework; `status` of one reads its own
directory only; the supervisor's socket and hostile entries are never taken
for workloads.  Timing is the bench's (bench/detached.py), not asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from linx_spec import views
from linx_spec.state import StateDir
from linx_spec.supervisor_client import call

COUNT = 500


def _entry(root, name, **state):
    d = root / name
    d.mkdir(mode=0o700)
    (d / "state.json").write_text(json.dumps({"name": name, **state}))
    (d / "plan.json").write_text("not a plan")  # read by neither ps nor status
    return d


@pytest.fixture
def many(tmp_path, monkeypatch):
    root = tmp_path / "run"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(root))
    me, start = os.getpid(), views.pid_start_time(os.getpid())
    for i in range(COUNT):
        kind = i % 5
        if kind == 0:
            _entry(root, f"w{i:03}", status="running", host_pid=me, host_pid_start=start, started=1.7e9, restarts=1)
        elif kind == 1:  # its pid is someone else's now: never running
            _entry(root, f"w{i:03}", status="running", host_pid=me, host_pid_start=start + 1)
        elif kind == 2:  # ended while its agent lingered: the agent's record
            d = _entry(root, f"w{i:03}", status="running", host_pid=me, host_pid_start=start + 1)
            (d / "exit").write_text("signaled 9\n")
        elif kind == 3:
            _entry(root, f"w{i:03}", status="exited", exit_code=3, detail="exit code 3")
        else:  # a backoff whose supervisor is gone
            _entry(root, f"w{i:03}", status="restarting", supervisor_pid=me, supervisor_pid_start=start + 1)
    (root / "supervisor.sock").write_text("")  # the shared supervisor's socket: not a workload
    (root / "supervisor.lock").write_text("")
    os.symlink("/etc", root / "planted")  # not followed
    (root / "nostate").mkdir(mode=0o700)
    return root


def test_ps_sees_every_entry_truthfully_and_reads_only_state_and_exit(many, monkeypatch):
    reads: list[str] = []
    real = views.read_bounded

    def counting(dir_fd, name, limit):
        reads.append(name)
        return real(dir_fd, name, limit)

    monkeypatch.setattr(views, "read_bounded", counting)
    got = views.all_views()
    assert len(got) == COUNT and [v.name for v in got] == sorted(f"w{i:03}" for i in range(COUNT))
    by_kind = {i % 5: got[i] for i in range(5)}
    assert (by_kind[0].status, by_kind[0].detail) == ("running", f"pid {os.getpid()}")
    assert by_kind[1].status == "dead"
    assert (by_kind[2].status, by_kind[2].state["signal"]) == ("exited", 9)
    assert (by_kind[3].status, by_kind[3].detail) == ("exited", "exit code 3")
    assert by_kind[4].status == "dead" and "restart backoff" in by_kind[4].detail
    assert reads.count("state.json") == COUNT + 1 and "plan.json" not in reads  # (+1: `nostate`, tried)
    assert reads.count("exit") == 2 * COUNT // 5  # only where the pid is no longer the workload's
    table = views.format_ps(got).splitlines()
    assert len(table) == COUNT + 1 and table[0].split() == ["NAME", "STATUS", "PID", "STARTED", "RESTARTS", "DETAIL"]


def test_status_of_one_reads_its_own_directory_only(many, monkeypatch):
    monkeypatch.setattr(os, "listdir", lambda *a: pytest.fail("status listed the runtime directory"))
    assert StateDir.open("w000").view().status == "running"
    assert StateDir.open("w002").view().status == "exited"


def test_hostile_entries_are_reported_not_trusted(many):
    (many / "w001" / "state.json").write_bytes(b"[1, 2]")
    (many / "w003" / "state.json").write_bytes(b"{" + b" " * views.MAX_STATE_BYTES + b"}")
    (many / "w002" / "exit").write_text("rm -rf /\n")
    (many / "w005" / "state.json").write_text(json.dumps({"status": "running", "host_pid": "1; reboot",
                                                           "host_pid_start": 1}))
    got = {v.name: v for v in views.all_views()}
    assert got["w001"].status == "dead" and "unreadable" in got["w001"].detail
    assert got["w003"].status == "dead" and "larger than" in got["w003"].detail
    assert got["w002"].status == "dead" and "malformed exit record" in got["w002"].detail
    assert got["w005"].status == "dead"  # a pid that is not a number is nobody's


def test_the_ps_fast_path_imports_no_framework_and_no_plan(many):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "linx_spec.cli", "ps", "--json"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == COUNT
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    for heavy in ("typer", "click", "pydantic", "yaml", "linx_spec.plan", "linx_spec.stored", "linx_spec.detach"):
        assert heavy not in imported, heavy


def test_a_request_without_a_supervisor_is_answered_none(tmp_path, monkeypatch):
    root = tmp_path / "run"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(root))
    assert call("stop", "nosuch") is None  # nothing listens: `stop` falls back to the pid
    (root / "supervisor.sock").write_text("")  # a stale name (a killed supervisor's): still none
    assert call("reload", "nosuch") is None


def test_a_started_supervisor_answers_and_leaves_when_idle(tmp_path, monkeypatch):
    root = tmp_path / "run"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(root))
    from linx_spec import supervisor_client

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        supervisor_client._spawn(fd)
        reply = supervisor_client._exchange(fd, {"op": "stop", "name": "nosuch"}, 5)
        assert reply == {"ok": False, "error": "`nosuch` is not supervised here"}
        bad = supervisor_client._exchange(fd, {"op": "stop", "name": "../x"}, 5)
        # Idle after its first request: gone, its socket with it (or it answered the second first).
        assert bad is None or bad == {"ok": False, "error": "a malformed request"}
    finally:
        os.close(fd)
    for _ in range(100):
        if not (root / "supervisor.sock").exists():
            break
        import time

        time.sleep(0.05)
    assert not (root / "supervisor.sock").exists()


def test_the_agent_writes_its_end_record_only_into_a_directory_of_ours_alone(tmp_path, agent_bin):
    """LINGER {path}: the agent checks the path's directory when told (ours, no
    group/other write) and later writes `exit` relative to that fd, O_EXCL and
    O_NOFOLLOW, renamed into place: never through a planted symlink."""
    from linx_spec.agent import Agent
    from linx_spec.errors import ProtocolError

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with Agent(path=str(agent_bin)) as agent:
        agent.hello()
        with pytest.raises(ProtocolError, match="not ours alone"):
            agent.linger(str(shared / "exit"))
        mine = tmp_path / "mine"
        mine.mkdir(mode=0o700)
        agent.linger(str(mine / "exit"))  # accepted
        with pytest.raises(ProtocolError, match="bad path"):
            agent.linger("relative/exit")


def test_ended_with_its_supervisor_alive_is_ending_not_over(tmp_path):
    """Between the workload's end and its supervisor's record of it (usage, undo,
    a restart or not) it is `ending`: `wait` and `logs -f` keep waiting, and an
    `exit` record (a lingering agent's, maybe of an earlier run) is not yet the word."""
    me, start = os.getpid(), views.pid_start_time(os.getpid())
    state = {"status": "running", "host_pid": me, "host_pid_start": start + 1,
             "supervisor_pid": me, "supervisor_pid_start": start}
    v = views.classify("w", state, lambda: "exited 0\n")
    assert v.status == "ending" and v.status in views.ACTIVE
    gone = dict(state, supervisor_pid_start=start + 1)  # the supervisor is gone: the record decides
    assert views.classify("w", gone, lambda: "exited 4\n").detail == "exit code 4"
    assert views.classify("w", gone, lambda: "").status == "dead"
