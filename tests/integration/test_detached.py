"""Known defects of detached workloads, fixed (the `fixes` branch): `stop` of a
workload whose start is still under way, and what a live `apply` made after the
workload ends.  Real workloads under a private runtime directory; checked from the
host and from the workload's own processes."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import cli, start_cli

from linx_spec.views import alive

from .test_lifecycle import runtime  # noqa: F401 - the fixture: a private runtime dir, emptied after

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


def _state(runtime, name: str) -> dict:
    try:
        return json.loads((runtime / name / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _until(what, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    return what()


def test_stop_of_a_starting_workload_waits_for_its_start_then_stops_it(write_spec, runtime, tmp_path):
    """A real slow start: its stdout is a FIFO no one reads yet, so the supervisor's
    open() of it blocks mid-start.  `stop` must not return `starting` and leave it to
    run (it did); it waits, and once the start completes the workload is stopped and,
    despite `restart: always`, not started again."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    marker = tmp_path / "ran"
    path = write_spec(f"""
version: 1
name: lxstarting
namespaces: [pid, mount]
lifecycle: {{restart: {{policy: always, backoff: 100ms}}, stop_grace: 2s}}
stdio: {{stdout: {{file: {fifo}}}}}
process: {{command: [/bin/sh, -c, 'echo ran >> {marker}; while :; do sleep 0.1; done']}}
""")
    apply = start_cli("apply", "-d", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = None
    reader = None
    try:
        assert _until(lambda: _state(runtime, "lxstarting").get("supervisor_pid")), "the supervisor never took it"
        assert _state(runtime, "lxstarting")["status"] == "starting" and not marker.exists()
        stop = start_cli("stop", "lxstarting", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert stop.poll() is None, stop.communicate()  # it waits for the start, as runc and podman do
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the start goes on
        out, err = stop.communicate(timeout=30)
        assert (stop.returncode, out) == (0, "lxstarting: exited\n"), err
        assert apply.wait(timeout=30) == 0, apply.stderr.read()  # its start did succeed
        state = _state(runtime, "lxstarting")
        assert marker.read_text() == "ran\n"  # it did run, and then was stopped
        assert not alive(state["host_pid"], state["host_pid_start"])
        time.sleep(0.5)  # a restart's backoff is 100 ms: none comes
        state = _state(runtime, "lxstarting")
        assert state["status"] == "exited" and state.get("restarts") == 0 and marker.read_text() == "ran\n"
        assert "exited" in cli("status", "lxstarting").stdout
    finally:
        if reader is None:  # a failure above: let the start finish, so that it can be stopped and removed
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        for proc in (stop, apply):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
        cli("delete", "--force", "lxstarting")
        os.close(reader)


VETH_SPEC = """
version: 1
name: lxveth
namespaces: [pid, mount, net]
lifecycle: {{stop_grace: 300ms}}
network:
  interfaces:
    - {{name: eth0, type: veth, addresses: [10.239.8.2/24], host: {{addresses: [10.239.8.1/24]}}}}
{more}
process:
  command: [/bin/sh, -c, 'while :; do sleep 0.1; done']
"""
ETH1 = "    - {name: eth1, type: veth, addresses: [10.239.9.2/24], host: {addresses: [10.239.9.1/24]}}\n"


def _host_ends(pid: int) -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith(f"lx{pid}v")}


def _census_interfaces(pid: int) -> list:
    from linx_spec.census import scan

    return [i for i in scan() if i.kind == "interface" and i.obj.startswith(f"lx{pid}v")]


def _start_and_add_a_veth_live(write_spec, runtime) -> tuple[int, str]:
    assert cli("apply", "-d", str(write_spec(VETH_SPEC.format(more="")))).returncode == 0
    pid = _state(runtime, "lxveth")["host_pid"]
    with_eth1 = str(write_spec(VETH_SPEC.format(more=ETH1)))
    out = cli("apply", with_eth1)
    assert out.returncode == 0 and f"network.interfaces.eth1: absent -> veth, host end lx{pid}v1" in out.stdout, \
        out.stdout + out.stderr
    assert _host_ends(pid) == {f"lx{pid}v0", f"lx{pid}v1"}
    return pid, with_eth1


def test_a_veth_added_live_goes_when_the_workload_ends_even_if_its_netns_lives_on(write_spec, runtime):
    """The start's veth is on the supervisor's undo list; one added by a live apply
    was not, so a netns kept by someone else (here an fd of ours, as `ip netns attach`
    or a process that joined it would) kept its host end and host address, and the
    next start of the same spec was refused (address taken)."""
    pid, with_eth1 = _start_and_add_a_veth_live(write_spec, runtime)
    holder = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = cli("stop", "lxveth")
        assert out.returncode == 0 and out.stdout == "lxveth: exited\n", out.stderr
        assert _until(lambda: not _host_ends(pid), 5), _host_ends(pid)
        assert not _census_interfaces(pid)
        assert "live_host_ends" not in _state(runtime, "lxveth")
        # The same spec, eth1 from the start this time: its host address is free again.
        assert cli("delete", "lxveth").returncode == 0
        again = cli("apply", "-d", with_eth1)
        assert again.returncode == 0, again.stderr
        assert cli("stop", "lxveth").returncode == 0
    finally:
        os.close(holder)


def test_after_kill_9_of_the_supervisor_the_live_veth_goes_with_the_netns_and_the_census_knows(write_spec, runtime):
    pid, _ = _start_and_add_a_veth_live(write_spec, runtime)
    st = _state(runtime, "lxveth")
    os.kill(st["supervisor_pid"], 9)  # its agent sees the channel close and stops the workload
    assert _until(lambda: not alive(st["host_pid"], st["host_pid_start"]), 20)
    # No one of ours is left to delete anything: the kernel deletes the pair with the netns.
    assert _until(lambda: not _host_ends(pid), 10), _host_ends(pid)
    assert not _census_interfaces(pid)
    assert "dead" in cli("status", "lxveth").stdout


def test_after_kill_9_with_its_netns_held_the_census_reports_the_live_veth_as_a_leftover(write_spec, runtime):
    pid, _ = _start_and_add_a_veth_live(write_spec, runtime)
    st = _state(runtime, "lxveth")
    holder = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.kill(st["supervisor_pid"], 9)
        assert _until(lambda: not alive(st["host_pid"], st["host_pid_start"]), 20)
        # Nothing of linx-spec's lives to delete them, and the netns lives on: the census
        # names both host ends as leftovers of a workload that is gone, which gc would
        # remove (only --dry-run here: this host is shared; gc's own test removes).
        found = {i.obj: i for i in _census_interfaces(pid)}
        assert set(found) == {f"lx{pid}v0", f"lx{pid}v1"} and not any(i.in_use for i in found.values()), found
        out = cli("gc", "--dry-run")
        lines = [line for line in out.stdout.splitlines() if f"lx{pid}v" in line]
        assert len(lines) == 2 and all("workload gone" in x and "would remove" in x for x in lines), out.stdout
    finally:
        for name in _host_ends(pid):
            subprocess.run(["ip", "link", "del", name], check=True)
        os.close(holder)
