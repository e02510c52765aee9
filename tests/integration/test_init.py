"""process.init / `apply --init` (issue 20), from the user's side: with the init,
`sleep` as the program stops at once on TERM (kill, stop, a TERM to a foreground
apply), orphans are reaped, and the exit status passes through; without it the
old behaviour stays (pid 1 ignores TERM, stop waits the grace)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import children, cli, start_cli
from linx_spec import build_plan, load_text, run

from .test_lifecycle import runtime  # noqa: F401  (the fixture: a private LINX_RUNTIME_DIR)

pytestmark = pytest.mark.root

SLEEPER = """
version: 1
name: {name}
namespaces: [pid, mount, ipc]
lifecycle: {{stop_grace: {grace}}}
process: {{command: [sleep, '1000'], init: {init}}}
"""


def _wait_exited(name: str, within: float) -> str:
    deadline = time.monotonic() + within
    status = ""
    while time.monotonic() < deadline:
        status = cli("status", name).stdout
        if "exited" in status:
            break
        time.sleep(0.1)
    return status


def test_detached_sleep_with_init_stops_at_once_on_kill_and_stop(write_spec, runtime):
    path = write_spec(SLEEPER.format(name="lxinit", grace="30s", init="true"))
    assert cli("apply", "-d", str(path)).returncode == 0
    host_pid = json.loads((runtime / "lxinit" / "state.json").read_text())["host_pid"]
    program = children(host_pid)
    assert len(program) == 1 and open(f"/proc/{program[0]}/comm").read().strip() == "sleep"
    t0 = time.monotonic()
    assert cli("kill", "lxinit", "TERM").returncode == 0
    status = _wait_exited("lxinit", 10)
    assert "exit code 143" in status, status  # 128 + SIGTERM, passed through by the init
    assert time.monotonic() - t0 < 8
    assert not os.path.exists(f"/proc/{program[0]}")
    assert cli("delete", "lxinit").returncode == 0

    assert cli("apply", "-d", "--init", str(write_spec(SLEEPER.format(name="lxinit", grace="30s", init="false"))
                                        )).returncode == 0  # the flag turns it on too
    t0 = time.monotonic()
    out = cli("stop", "lxinit")
    assert out.returncode == 0 and "exited" in out.stdout, out.stderr
    assert time.monotonic() - t0 < 10  # far below the 30 s grace: TERM reached sleep
    assert "exit code 143" in cli("status", "lxinit").stdout


def test_detached_sleep_without_init_ignores_term_and_stop_waits_the_grace(write_spec, runtime):
    path = write_spec(SLEEPER.format(name="lxnoinit", grace="2s", init="false"))
    assert cli("apply", "-d", str(path)).returncode == 0
    assert cli("kill", "lxnoinit", "TERM").returncode == 0
    time.sleep(0.5)
    assert "running" in cli("status", "lxnoinit").stdout  # sleep as pid 1 ignores TERM
    t0 = time.monotonic()
    out = cli("stop", "lxnoinit")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 >= 1.9  # the whole grace, then SIGKILL
    assert "exited" in cli("status", "lxnoinit").stdout


@pytest.mark.parametrize("init", [True, False])
def test_term_to_a_foreground_apply(write_spec, init):
    path = write_spec(SLEEPER.format(name="lxfg", grace="2s", init="true" if init else "false"))
    proc = start_cli("apply", str(path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        sleeper = None
        while time.monotonic() < deadline and sleeper is None:
            for agent in children(proc.pid):
                for pid1 in children(agent):
                    below = children(pid1) if init else [pid1]
                    for p in below:
                        try:
                            if open(f"/proc/{p}/comm").read().strip() == "sleep":
                                sleeper = p
                        except OSError:
                            pass
            time.sleep(0.05)
        assert sleeper is not None
        proc.send_signal(signal.SIGTERM)
        if init:
            assert proc.wait(timeout=10) == 143  # forwarded by the runner, then by the init, to sleep
        else:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1.5)  # sleep as pid 1 ignores the forwarded TERM
            assert os.path.exists(f"/proc/{sleeper}")
    finally:
        if proc.poll() is None:
            proc.kill()  # the runner's death stops the workload (orphan: stop)
            proc.wait()
        proc.stderr.close()


def _plan(command: str, init: bool, extra: str = ""):
    text = (f"version: 1\nnamespaces: [pid, mount]\n{extra}"
            f"process: {{command: [/bin/sh, -c, {json.dumps(command)}], init: {str(init).lower()}}}\n")
    return build_plan(load_text(text, "t.yaml"), source="t.yaml")


def test_exit_status_passes_through_the_init(write_spec):
    assert run(_plan("exit 3", True)).exit_code == 3
    assert run(_plan("kill -KILL $$", True)).exit_code == 128 + 9
    assert run(_plan("kill -TERM $$", True)).exit_code == 128 + 15
    assert run(_plan("kill -TERM $$", False)).exit_code == 0  # pid 1 ignores its own TERM
    assert cli("apply", "--init", str(write_spec("version: 1\nprocess: {command: [/bin/sh, -c, 'exit 7']}\n"))
               ).returncode == 7
    echo = run(_plan("echo $$", True), capture_output=True)
    assert echo.stdout == b"2\n"  # the program is the init's child


# Orphans: three subshells each leave a `sleep 0.1` behind and exit; the sleeps are
# re-parented to pid 1 and die.  python as the program never reaps anything, so
# only an init that reaps leaves no zombie.  Counted from inside, in the
# workload's own /proc.
ORPHANS = ("for i in 1 2 3; do sh -c 'sleep 0.1 & exit 0'; done; exec python3 -c '"
           "import glob, time; time.sleep(1.0); "
           "print(sum(\"\\nState:\\tZ\" in open(p).read() for p in glob.glob(\"/proc/[0-9]*/status\")))'")


@pytest.mark.parametrize("init, zombies", [(True, b"0\n"), (False, b"3\n")])
def test_orphans_are_reaped_by_the_init(init, zombies):
    result = run(_plan(ORPHANS, init, "mounts: {entries: [{type: proc}]}\n"), capture_output=True)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == zombies
