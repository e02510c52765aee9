"""Seccomp on the real kernel (issue 7): every check is made from inside the workload,
by what its syscalls return, or by how it dies."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import pytest

from conftest import cli
from linx_spec.seccomp import _libseccomp as lib
from linx_spec.seccomp import bpf

pytestmark = pytest.mark.root

ON_X86_64 = lib.available() and lib.arch_native() == bpf.AUDIT_ARCH_X86_64
SIGSYS = signal.SIGSYS

# Prints, for each call, the errno it failed with (0 when it succeeded), then the
# seccomp mode and no_new_privs flag the kernel reports for the workload itself.
PROBE = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return ctypes.get_errno() if rc == -1 else 0
print("mount", err(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
print("unshare", err(libc.unshare(0x00020000)))
for family in (socket.AF_INET, socket.AF_INET6):
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        print("socket", family, 0)
    except OSError as e:
        print("socket", family, e.errno)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print("Seccomp", status["Seccomp"].strip(), "NoNewPrivs", status["NoNewPrivs"].strip())
"""


def spec(seccomp: dict, command: list[str], extra: str = "") -> str:
    return (f"version: 1\n{extra}process:\n  command: {json.dumps(command)}\n"
            f"seccomp: {json.dumps(seccomp)}\n")


def lines(out: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in out.splitlines() if " " in line}


DENY = {"default": "allow", "rules": [
    {"syscalls": ["mount"], "action": "errno EACCES"},
    {"syscalls": ["unshare"], "action": "errno 95"},
    {"syscalls": ["socket"], "action": "errno EAFNOSUPPORT", "args": [{"index": 0, "op": "eq", "value": "AF_INET6"}]},
]}


@pytest.mark.parametrize("setup, nnp", [
    ("namespaces: [user, pid, mount, net]\n", "1"),  # the default path: a user namespace, no_new_privs on
    # root without a user namespace: installed with CAP_SYS_ADMIN, which must be kept for it
    ("no_new_privs: false\ncapabilities: {keep: [sys_admin]}\n", "0"),
    # the same, dropping CAP_SYS_ADMIN: the filter goes in before the drop (steps.active_steps), as runc
    ("no_new_privs: false\ncapabilities: {keep: [kill]}\n", "0"),
])
def test_denied_syscalls_fail_with_exactly_the_declared_errno(run_spec, setup, nnp):
    result, out, err = run_spec(spec(DENY, ["python3", "-c", PROBE], setup))
    assert result.exit_code == 0, err
    got = lines(out)
    assert got["mount"] == "13"  # EACCES, not the EPERM the kernel would give
    assert got["unshare"] == "95"  # EOPNOTSUPP, by number
    assert got["socket 10"] == "97"  # AF_INET6: EAFNOSUPPORT
    assert got["socket 2"] == "0"  # AF_INET still works
    assert f"Seccomp 2 NoNewPrivs {nnp}" in out


def test_a_kill_rule_ends_the_workload_with_sigsys_and_the_cli_says_so(write_spec, run_spec):
    text = spec({"default": "allow", "rules": [{"syscalls": ["uname"], "action": "kill"}]},
                ["/bin/sh", "-c", "echo before; /bin/uname && echo after"])
    result, out, _ = run_spec(text)
    assert out.strip() == "before"  # the shell survives; uname dies
    assert result.exit_code == 128 + SIGSYS  # sh reports its child's signal
    direct = spec({"default": "allow", "rules": [{"syscalls": ["uname"], "action": "kill"}]}, ["/bin/uname"])
    result, out, _ = run_spec(direct)
    assert result.signal == SIGSYS and out == ""
    assert result.reason == "killed by its seccomp filter (SIGSYS)"
    proc = cli("apply", str(write_spec(direct)))
    assert proc.returncode == 128 + SIGSYS
    assert "killed by its seccomp filter (SIGSYS)" in proc.stderr


X32_AND_INT80 = r"""
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
	if (strcmp(argv[1], "x32") == 0) {
		/* the x32 ABI: x86_64's audit arch, nr | __X32_SYSCALL_BIT */
		long r = syscall(0x40000000L | SYS_getpid);
		printf("x32 %ld %d\n", r, r < 0 ? errno : 0);
	} else {
		/* the i386 ABI from a 64-bit process: int 0x80, getpid is 20 there */
		long r;
		__asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory");
		printf("int80 %ld\n", r);
	}
	return 0;
}
"""


@pytest.fixture
def abi_probe(tmp_path):
    if not ON_X86_64 or shutil.which("gcc") is None:
        pytest.skip("x86_64 with gcc only")
    src = tmp_path / "abi.c"
    src.write_text(X32_AND_INT80)
    binary = tmp_path / "abi"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    return str(binary)


def test_an_x32_call_does_not_slip_past_an_x86_64_filter(run_spec, abi_probe):
    # Without the filter this kernel answers (ENOSYS when x32 is compiled out, else a pid).
    plain = subprocess.run([abi_probe, "x32"], capture_output=True, text=True, check=True)
    assert plain.stdout.startswith("x32 ")
    result, out, _ = run_spec(spec({"default": "allow"}, [abi_probe, "x32"]))
    assert result.signal == SIGSYS and out == ""
    assert result.reason == "killed by its seccomp filter (SIGSYS)"
    # Listing x32 lets it through to the kernel (which may still not implement it).
    result, out, _ = run_spec(spec({"default": "allow", "architectures": ["native", "x32"]}, [abi_probe, "x32"]))
    assert result.exit_code == 0 and out.startswith("x32 ")


def test_an_int80_call_dies_unless_x86_is_listed(run_spec, abi_probe):
    plain = subprocess.run([abi_probe, "int80"], capture_output=True, text=True)
    if plain.returncode != 0 or not plain.stdout.startswith("int80 ") or int(plain.stdout.split()[1]) < 0:
        pytest.skip("this kernel runs no i386 syscalls (ia32 emulation off)")
    result, out, _ = run_spec(spec({"default": "allow"}, [abi_probe, "int80"]))
    assert result.signal == SIGSYS
    result, out, _ = run_spec(spec({"default": "allow", "architectures": ["native", "x86"],
                                    "rules": [{"syscalls": ["getppid"], "action": "errno EPERM"}]},
                                   [abi_probe, "int80"], "namespaces: [pid]\n"))
    assert result.exit_code == 0 and out.split() == ["int80", "1"]  # pid 1 in its pid namespace


PROFILE_PROBE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return ctypes.get_errno() if rc == -1 else 0
print("mkdir", err(libc.mkdir(b"/tmp/linx-seccomp-probe", 0o700)))
print("rmdir", err(libc.rmdir(b"/")))
print("unshare", err(libc.unshare(0x00020000)))
print("personality_query", err(libc.personality(0xffffffff)))
print("personality_norandom", err(libc.personality(0x40000)))
print("getppid", err(libc.getppid()))
"""


def test_a_docker_profile_imports_and_behaves_as_declared(run_spec, write_spec, tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 0x40000, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    # The profile first, then a rule of the spec on top of it.
    text = spec({"profile": str(tmp_path / "profile.json"),
                 "rules": [{"syscalls": ["mkdir"], "action": "errno EROFS"}]}, ["python3", "-c", PROFILE_PROBE])
    result, out, err = run_spec(text)
    assert result.exit_code == 0, err
    got = lines(out)
    assert got["mkdir"] == "30"  # EROFS: the spec's rule wins over the profile's
    assert got["rmdir"] == "13"  # the profile's errnoRet
    assert got["unshare"] == "38"  # the default capabilities lack CAP_SYS_ADMIN: the `excludes` entry
    assert got["personality_query"] == "0" and got["personality_norandom"] == "1"
    assert got["getppid"] == "0"


DEFAULT_PROFILE_PROBE = r"""
import ctypes, os, socket, json
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return ctypes.get_errno() if rc == -1 else 0
out = {}
out["keyctl"] = err(libc.syscall(250, 0, 0, 0, 0, 0))  # keyctl(KEYCTL_GET_KEYRING_ID): x86_64 nr 250
out["unshare_user"] = err(libc.unshare(0x10000000))
out["mount"] = err(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
try:
    socket.socket(40, socket.SOCK_STREAM)  # AF_VSOCK
    out["vsock"] = 0
except OSError as e:
    out["vsock"] = e.errno
out["files"] = len(os.listdir("/"))
print(json.dumps(out))
"""


@pytest.mark.skipif(not ON_X86_64, reason="the probe uses x86_64 syscall numbers")
def test_the_shipped_default_profile_runs_a_program_and_denies_what_it_says(run_spec):
    result, out, err = run_spec(spec({"profile": "default"}, ["python3", "-c", DEFAULT_PROFILE_PROBE]))
    assert result.exit_code == 0, err
    got = json.loads(out)
    assert got["keyctl"] == got["unshare_user"] == got["mount"] == got["vsock"] == 1  # EPERM
    assert got["files"] > 3


def test_an_allow_list_from_system_service_runs_python_to_completion(run_spec):
    code = "import json, os, sys, hashlib; print(json.dumps({'ok': hashlib.sha256(b'x').hexdigest()[:8], 'cwd': os.getcwd()}))"
    result, out, err = run_spec(spec({"default": "errno EPERM", "rules": [
        {"syscalls": ["@system-service"], "action": "allow"}]}, ["python3", "-c", code],
        "namespaces: [user, pid, mount, net]\n"))
    assert result.exit_code == 0, err
    assert json.loads(out) == {"ok": "2d711642", "cwd": "/"}
    # And what the list leaves out is refused.
    result, out, err = run_spec(spec({"default": "errno EPERM", "rules": [
        {"syscalls": ["@system-service"], "action": "allow"}]},
        ["python3", "-c", "import ctypes; l = ctypes.CDLL(None, use_errno=True); "
                          "print(l.swapoff(b'/nonexistent'), ctypes.get_errno())"]))
    assert result.exit_code == 0, err
    assert out.split() == ["-1", "1"]


def test_a_filter_may_forbid_prctl_and_close_range_since_they_run_before_it(run_spec):
    """PDEATHSIG and close-on-exec are child steps before seccomp (steps.py), so a
    filter that kills prctl, close_range and close still lets the workload start,
    and the workload itself then dies by SIGSYS on prctl (the filter is in force)."""
    kill = {"default": "allow", "rules": [{"syscalls": ["prctl", "close_range"], "action": "kill"}]}
    result, out, err = run_spec(spec(kill, ["/bin/sh", "-c", "echo started"], "namespaces: [user, pid]\n"))
    assert result.exit_code == 0, err
    assert out == "started\n"
    result, out, err = run_spec(spec(kill, ["/usr/bin/python3", "-c", "import ctypes; ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)"],
                                     "namespaces: [user, pid]\n"))
    assert result.signal == SIGSYS, (result, err)
