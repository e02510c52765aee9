"""The devices allow-list (issue 20), `cgroup.devices`: from inside, a listed
device opens and an unlisted one fails with EPERM, and mknod needs `m`.  On a
v1 host the devices controller enforces it; in the pure v2 guest it is a plan
error that names the reason (a BPF device program, not loaded yet)."""

from __future__ import annotations

import json

import pytest

from conftest import cli

pytestmark = pytest.mark.root

PROBE = """
import errno, json, os
def try_open(path, flags):
    try:
        os.close(os.open(path, flags))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def try_mknod(path):
    try:
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print(json.dumps({"null": try_open("/dev/null", os.O_RDWR), "zero": try_open("/dev/zero", os.O_RDONLY),
                  "mknod": try_mknod("/tmp/null2")}))
"""

SPEC = f"""
version: 1
namespaces: [pid, mount]
mounts: [{{type: tmpfs, target: /tmp}}]
cgroup:
  devices:
    - {{path: /dev/null, access: rw}}
process: {{command: [/usr/bin/python3, -c, {json.dumps(PROBE)}]}}
"""


@pytest.mark.v1host
def test_listed_device_opens_and_the_rest_are_denied(write_spec):
    proc = cli("apply", str(write_spec(SPEC)))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {"null": "ok", "zero": "EPERM", "mknod": "EPERM"}


@pytest.mark.v1host
def test_without_the_list_every_device_opens(write_spec):
    proc = cli("apply", str(write_spec(SPEC.replace("cgroup:\n  devices:\n    - {path: /dev/null, access: rw}\n", ""))))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["zero"] == "ok"


@pytest.mark.v2guest
def test_on_pure_v2_it_is_a_plan_error(write_spec):
    proc = cli("plan", str(write_spec(SPEC)))
    assert proc.returncode == 66
    assert "BPF_PROG_TYPE_CGROUP_DEVICE" in proc.stderr and "cgroup.devices" in proc.stderr
