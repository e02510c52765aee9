"""The named groups on the real kernel: the calls whose group follows systemd 252 (issue 22)
answer from inside the workload as systemd's sets say.  A refusal by the filter is
EOPNOTSUPP (95), which none of the probed calls returns on its own."""

from __future__ import annotations

import json

import pytest

from linx_spec.seccomp import _libseccomp as lib

pytestmark = pytest.mark.root

REFUSED = 95

# Prints "name errno" for each call (0 when it succeeded); syscall numbers come from the
# host's libseccomp, so the probe needs no table of its own.
PROBE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {nr}
buf = ctypes.create_string_buffer(4096)
pid = os.getpid()
def call(name, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(NR[name], *args)
    print(name, ctypes.get_errno() if rc == -1 else 0)
call("getrandom", buf, 8, 0)
call("sched_getaffinity", 0, 128, buf)
call("kcmp", pid, pid, 1, 0, 0)                 # KCMP_VM of itself: 0
call("process_madvise", -1, None, 0, 0, 0)      # EBADF when allowed
call("process_vm_readv", pid, None, 0, None, 0, 0)
call("mincore", 0, 4096, buf)                   # ENOMEM when allowed
call("ptrace", 1, 1, 0, 0)                      # PTRACE_PEEKTEXT of pid 1: ESRCH when allowed
"""

NAMES = ("getrandom", "sched_getaffinity", "kcmp", "process_madvise", "process_vm_readv", "mincore", "ptrace")


def probe() -> str:
    numbers = {name: lib.syscall_resolve(name) for name in NAMES}
    assert all(nr >= 0 for nr in numbers.values()), numbers
    return PROBE.replace("{nr}", json.dumps(numbers))


def spec(seccomp: dict) -> str:
    return ("version: 1\nnamespaces: [user, pid, mount, net]\n"
            f"process:\n  command: {json.dumps(['python3', '-c', probe()])}\n"
            f"seccomp: {json.dumps(seccomp)}\n")


def answers(out: str) -> dict[str, int]:
    got = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}
    assert set(got) == set(NAMES), out
    return got


def test_an_allow_list_from_system_service_allows_what_systemds_does(run_spec):
    result, out, err = run_spec(spec({"default": f"errno {REFUSED}", "rules": [
        {"syscalls": ["@system-service"], "action": "allow"}]}))
    assert result.exit_code == 0, err
    got = answers(out)
    # In systemd's @default, @ipc and @system-service: allowed (kcmp may be ENOSYS without
    # CONFIG_KCMP, but not refused by the filter).
    for name in ("getrandom", "sched_getaffinity", "kcmp", "process_madvise", "process_vm_readv"):
        assert got[name] != REFUSED, (name, got)
    assert got["getrandom"] == got["sched_getaffinity"] == 0, got
    assert got["process_madvise"] == 9, got  # EBADF: the kernel saw the call
    # In none of systemd's sets but @known, and @debug: refused.
    assert got["mincore"] == REFUSED and got["ptrace"] == REFUSED, got


def test_denying_debug_leaves_kcmp_and_process_vm_readv_as_systemd_does(run_spec):
    result, out, err = run_spec(spec({"default": "allow", "rules": [
        {"syscalls": ["@debug"], "action": f"errno {REFUSED}"}]}))
    assert result.exit_code == 0, err
    got = answers(out)
    assert got["ptrace"] == REFUSED, got
    assert got["kcmp"] != REFUSED and got["process_vm_readv"] != REFUSED and got["mincore"] == 12, got  # ENOMEM
