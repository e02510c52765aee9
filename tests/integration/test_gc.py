"""`linx-spec gc`: leftovers of dead workloads are listed and removed; anything
in use, or not named as ours, is never touched."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import cli

pytestmark = pytest.mark.root

DEAD_PID = 4194303  # above any pid this machine hands out (pid_max is at most 2^22)


def _pids_mount() -> str:
    from linx_spec import mountinfo

    for m in mountinfo.cgroup_mounts():
        if m.fstype == "cgroup" and "pids" in m.super_options:
            return m.mount_point
        if m.fstype == "cgroup2" and m.mount_point == "/sys/fs/cgroup":
            return m.mount_point
    pytest.fail("no cgroup hierarchy to test gc on")


def test_gc_removes_only_leftovers_of_dead_workloads(tmp_path):
    mount = _pids_mount()
    parent = os.path.join(mount, "linx")
    made_parent = not os.path.isdir(parent)
    os.makedirs(parent, exist_ok=True)
    dead = os.path.join(parent, f"linx-gcdead-{DEAD_PID}")
    live = os.path.join(parent, f"linx-gclive-{DEAD_PID - 1}")
    other = os.path.join(parent, "not-ours")
    sleeper = subprocess.Popen(["sleep", "60"])
    for d in (dead, live, other):
        os.mkdir(d)
    with open(os.path.join(live, "cgroup.procs"), "w") as f:
        f.write(str(sleeper.pid))  # in use: a process inside, whatever the name says
    subprocess.run(["ip", "link", "add", f"lx{DEAD_PID}v0", "type", "veth", "peer", "name", f"lx{DEAD_PID}v1"],
                   check=True)
    try:
        listing = cli("gc", "--dry-run").stdout
        assert f"{dead} " in listing and "would remove" in listing.split(dead)[1].splitlines()[0]
        assert f"{live} " in listing and "in use" in listing.split(live)[1].splitlines()[0]
        assert other not in listing
        assert f"lx{DEAD_PID}v0" in listing
        assert os.path.isdir(dead)  # a dry run changes nothing
        assert cli("gc").returncode == 0
        assert not os.path.exists(dead)
        assert os.path.isdir(live) and os.path.isdir(other)
        assert not os.path.exists(f"/sys/class/net/lx{DEAD_PID}v0")
        assert sleeper.poll() is None  # nothing in use was killed
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["ip", "link", "del", f"lx{DEAD_PID}v0"], capture_output=True)
        for d in (live, other, dead):  # the killed sleeper leaves `live` once reaped
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        if made_parent:
            try:
                os.rmdir(parent)
            except OSError:
                pass
