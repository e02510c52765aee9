"""io_uring under the shipped profiles (issue 14 item 7).  Its operations run in
kernel workers that seccomp never sees, so a workload that may call io_uring_setup
may open, read and connect past a filter that denies those calls (Docker denies
io_uring in its default profile since 2023, moby#46762).  Checked from inside:
the workload calls io_uring_setup itself and prints the errno."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO
from linx_spec import build_plan, load_file, run

pytestmark = pytest.mark.root

HARDENED = REPO / "specs" / "untrusted-runner.yaml"

# io_uring_setup(8, &params), io_uring_enter(-1, ...), io_uring_register(-1, ...) by
# number: x86_64 and aarch64 share 425, 426, 427 (the new-syscall table).
PROBE = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
for name, nr, args in (("io_uring_setup", 425, (8, params)), ("io_uring_enter", 426, (-1, 0, 0, 0, None, 0)),
                       ("io_uring_register", 427, (-1, 0, None, 0))):
    rc = libc.syscall(nr, *args)
    print(name, ctypes.get_errno() if rc == -1 else "fd")
"""


def _probe(path: Path, overrides: list[str]) -> dict[str, str]:
    cmd = json.dumps(["python3", "-c", PROBE])
    spec = load_file(path, overrides=[f"process.command={cmd}", *overrides])
    result = run(build_plan(spec, source=str(path), base_dir=str(path.parent)), capture_output=True)
    assert result.exit_code == 0, result.stderr
    return dict(line.split() for line in result.stdout.decode().splitlines())


def test_io_uring_is_denied_by_the_hardened_example():
    got = _probe(HARDENED, [])
    # EPERM, as the rule says; EBADF on enter/register would mean the call reached the kernel.
    assert got == {"io_uring_setup": "1", "io_uring_enter": "1", "io_uring_register": "1"}, got


def test_io_uring_is_denied_by_the_default_profile(tmp_path):
    path = tmp_path / "default-profile.yaml"
    path.write_text("version: 1\nnamespaces: [user, pid, net, mount]\nseccomp: {profile: default}\n"
                    "process:\n  command: [/bin/true]\n")
    got = _probe(path, [])
    assert got == {"io_uring_setup": "1", "io_uring_enter": "1", "io_uring_register": "1"}, got


def test_io_uring_works_without_a_filter_so_the_probe_can_fail(tmp_path):
    # The control: without seccomp the same probe gets a ring (or the host's own
    # refusal, which would make the two tests above prove nothing: then skip).
    path = tmp_path / "no-filter.yaml"
    path.write_text("version: 1\nnamespaces: [user, pid, net, mount]\nprocess:\n  command: [/bin/true]\n")
    got = _probe(path, [])
    if got["io_uring_setup"] != "fd":
        pytest.skip(f"io_uring unavailable on this host (errno {got['io_uring_setup']})")
    assert got["io_uring_enter"] == "9"  # EBADF: the kernel saw the call
