"""What the workload inherits from its caller besides its stdio (issue 14, items
2-4), tried from the attacker's side, inside a confined workload:

- the caller's terminal: with `stdio: inherit` and the caller's tty on stdin,
  `ioctl(TIOCSTI)` must not push input into it (the workload is in a session of
  its own, so the tty is not its controlling terminal; runc does the same);
- the caller's session keyring: a key the caller planted is neither found nor
  readable (the workload joins a fresh session keyring, as runc does);
- the caller's signal state: dispositions the caller ignored and signals it
  blocked, 32 and 33 included (glibc's signal() cannot reset those), are all
  back to default and unblocked at exec.

Each runs the CLI in a fresh interpreter that first sets up the caller's side
with raw syscalls (ctypes), the way a user's shell or service manager would.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"  # inside the workload: the host's, seen through the shared root
USERNS = """namespaces: [user, pid, mount, ipc, uts]
idmap:
  uid: [{container: 0, host: 100000, count: 65536}]
  gid: [{container: 0, host: 100000, count: 65536}]
"""


def _spec(write_spec, program: str, env: str = "{}", command: list[str] | None = None) -> str:
    command = command or [PYTHON, "-c", program]
    return str(write_spec(f"""version: 1
name: lxsession
{USERNS}stdio: inherit
process:
  env: {env}
  command: {json.dumps(command)}
"""))


def _caller(setup: str, spec: str, **popen) -> subprocess.CompletedProcess:
    """`linx-spec apply SPEC` exec'd by a Python that first ran `setup`."""
    script = textwrap.dedent(setup) + textwrap.dedent(f"""
        import os, sys
        os.execv(sys.executable, [sys.executable, "-m", "linx_spec.cli", "apply", {spec!r}])
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60, **popen)


def test_tiocsti_from_inside_injects_nothing_into_the_callers_terminal(write_spec):
    # The workload pushes a command into its stdin, the caller's terminal.
    program = textwrap.dedent("""
        import errno, fcntl, termios
        try:
            for c in b"echo INJECTED\\n":
                fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))
            print("injected")
        except OSError as e:
            print(errno.errorcode[e.errno])
    """)
    spec = _spec(write_spec, program)
    master, slave = os.openpty()
    try:
        # The caller: a session leader whose controlling terminal is the pty
        # (what a login shell is); the test holds the master, as a terminal would.
        proc = subprocess.run(
            [sys.executable, "-m", "linx_spec.cli", "apply", spec], stdin=slave, capture_output=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        assert proc.returncode == 0, proc.stderr
        queued = int.from_bytes(fcntl.ioctl(slave, termios.FIONREAD, b"\0\0\0\0"), "little")
        echoed = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            echoed += chunk
    finally:
        os.close(master)
        os.close(slave)
    assert proc.stdout.split() == [b"EPERM"], (proc.stdout, proc.stderr)
    assert queued == 0, "input was pushed into the caller's terminal"
    assert b"INJECTED" not in echoed


KEYCTL = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    SYS_add_key, SYS_keyctl = 248, 250
    # A session keyring of this caller's own, holding the secret.
    assert libc.syscall(SYS_keyctl, 1, None) > 0, os.strerror(ctypes.get_errno())
    key = libc.syscall(SYS_add_key, b"user", b"linx-test-secret", b"s3cret-token", 12, -3)
    assert key > 0, os.strerror(ctypes.get_errno())
    os.environ["LINX_TEST_KEY"] = str(key)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
def test_the_callers_session_keyring_is_not_reachable(write_spec):
    program = textwrap.dedent("""
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        SYS_keyctl, SEARCH, READ, SESSION = 250, 10, 11, -3
        found = libc.syscall(SYS_keyctl, SEARCH, SESSION, b"user", b"linx-test-secret", 0)
        print("search", found if found > 0 else errno.errorcode[ctypes.get_errno()])
        buf = ctypes.create_string_buffer(64)
        n = libc.syscall(SYS_keyctl, READ, int(os.environ["KEY"]), buf, 64)
        print("read", buf.raw[:n].decode() if n >= 0 else errno.errorcode[ctypes.get_errno()])
    """)
    spec = _spec(write_spec, program, "{KEY: '${LINX_TEST_KEY}'}")
    proc = _caller(KEYCTL, spec)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.decode().splitlines())
    assert lines["search"] == "ENOKEY", proc.stdout
    assert lines["read"] == "EACCES", proc.stdout
    assert b"s3cret" not in proc.stdout


SIGNALS = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    SYS_rt_sigaction, SYS_rt_sigprocmask = 13, 14
    # Raw syscalls: glibc refuses 32 and 33 (its own) in sigaction and sigprocmask.
    ignore = ctypes.create_string_buffer(b"\\1" + bytes(63))  # sa_handler = SIG_IGN
    for sig in (1, 2, 3, 10, 13, 15, 32, 33, 40, 64):
        assert libc.syscall(SYS_rt_sigaction, sig, ignore, None, 8) == 0, (sig, os.strerror(ctypes.get_errno()))
    block = 0
    for sig in (10, 12, 32, 33, 34, 64):
        block |= 1 << (sig - 1)
    mask = ctypes.c_uint64(block)
    assert libc.syscall(SYS_rt_sigprocmask, 0, ctypes.byref(mask), None, 8) == 0  # SIG_BLOCK
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    assert int(status["SigIgn"], 16) >> 31 & 3 == 3 and int(status["SigBlk"], 16) >> 31 & 3 == 3, status
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
def test_signal_dispositions_and_mask_are_reset_even_32_and_33(write_spec):
    # grep reads its own status: not Python, which ignores SIGPIPE and SIGXFSZ itself.
    spec = _spec(write_spec, "", command=["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    proc = _caller(SIGNALS, spec)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(":") for line in proc.stdout.decode().split("\n") if line)
    assert {k: v.strip() for k, v in out.items()} == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}
