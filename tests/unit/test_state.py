"""state.json has two writers, the shared supervisor and the CLI (stop, pause, a live
apply): an update is a read-modify-write under the workload's state lock, so two at
once both survive (state.py's docstring)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from linx_spec.errors import StateError
from linx_spec.state import LOCK_FILE, StateDir

ROUNDS = 300


@pytest.fixture
def sd(tmp_path, monkeypatch):
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "run"))
    return StateDir.create("lxrace")


def _writer(sd: StateDir, who: str) -> None:
    for i in range(ROUNDS):
        sd.update(**{f"{who}{i}": i, "last": who})


def _check(sd: StateDir, writers: tuple[str, ...]) -> None:
    state = json.loads(sd.state_file.read_text())
    lost = [f"{w}{i}" for w in writers for i in range(ROUNDS) if state.get(f"{w}{i}") != i]
    assert not lost, f"{len(lost)} updates lost, e.g. {lost[:5]}"
    assert state["status"] == "starting" and state["name"] == "lxrace"  # what create wrote survives too


def test_two_processes_racing_lose_no_update(sd):
    """As the supervisor (one process) and `linx-spec stop` (another) do."""
    pids = []
    for who in ("a", "b"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                _writer(sd, who)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    _check(sd, ("a", "b"))


def test_two_threads_racing_lose_no_update(sd):
    """As two threads of the shared supervisor would (the lock is per open file, not per process)."""
    threads = [threading.Thread(target=_writer, args=(sd, who)) for who in ("c", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check(sd, ("c", "d"))


def test_the_lock_file_is_ours_and_never_followed(sd):
    assert os.stat(sd.path / LOCK_FILE).st_mode & 0o777 == 0o600
    os.unlink(sd.path / LOCK_FILE)
    os.symlink("/etc/passwd", sd.path / LOCK_FILE)  # planted (only we can write there, but still)
    with pytest.raises(StateError, match="state.lock"):
        sd.update(status="running")
    assert json.loads(sd.state_file.read_text())["status"] == "starting"


def test_an_update_of_a_removed_workload_is_a_state_error(sd):
    sd.remove()
    with pytest.raises(StateError, match="lxrace"):
        sd.update(status="exited")


def test_stop_while_apply_d_still_hands_it_over_waits_for_the_outcome(sd):
    """Between `apply -d` claiming the name and its supervisor recording itself the
    state says `starting` with no supervisor: the start is under way while its creator
    lives.  Here the start fails (apply -d removes the state): stop says so, and does
    not report the workload as dead (nor, when it did start, leave it running)."""
    import threading
    import time

    from linx_spec import detach

    assert detach._starting(sd.view())  # created by this (living) process
    threading.Timer(0.3, sd.remove).start()
    began = time.monotonic()
    assert detach.stop("lxrace") == "not started (its start failed)"
    assert time.monotonic() - began >= 0.25
    gone = StateDir.create("lxgone")
    gone.update(creator_pid=2**22 + 1, creator_pid_start=1)  # a creator that is gone: no start under way
    assert not detach._starting(gone.view()) and detach.stop("lxgone") == "dead"


def test_the_apply_lock_makes_a_second_apply_wait_and_a_reconcile_tick_skip(sd):
    import threading
    import time

    with sd.applying() as held:
        assert held is not None
        with sd.applying(wait=False) as other:  # the supervisor's tick: not now
            assert other is None
        sd.update(status="running")  # the state lock is another: state updates go on meanwhile
        got = []

        def apply() -> None:
            with sd.applying() as fd:
                got.append(fd is not None)

        t = threading.Thread(target=apply)
        t.start()
        time.sleep(0.3)
        assert not got  # a CLI apply waits
    t.join(5)
    assert got == [True]
