"""A `stdio: pty` workload run without a terminal (issue 20): under timeout(1),
from a pipe or /dev/null, in CI.  The pty is only given when linx-spec's own
stdin and stdout are terminals (as ssh without -tt); otherwise the workload
gets linx-spec's streams, so end of input ends an interactive shell and no
terminal control sequence (readline's bracketed paste, ESC [?2004h) lands in a
file.  A forwarded SIGTERM is followed by SIGKILL after stop_grace: an
interactive shell ignores SIGTERM.  Checked through the CLI, as the user types
it."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

import pytest

from conftest import REPO

pytestmark = pytest.mark.root

LINX_SPEC = f"env PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -m linx_spec.cli"


def sh(command: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", command], cwd=REPO, input=input, capture_output=True, timeout=timeout)


def test_the_issue_command_ends_at_end_of_input_without_escape_bytes():
    t0 = time.monotonic()
    proc = sh(f"timeout 20 {LINX_SPEC} apply specs/rootless-shell.yaml </dev/null")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr  # the shell's own exit at EOF, not timeout's 124
    assert elapsed < 15
    assert b"\x1b" not in proc.stdout + proc.stderr
    assert b"stdin is not a terminal: no pseudo-terminal" in proc.stderr
    assert b"[rootless /]# exit" in proc.stderr  # bash -i: its prompt and `exit` at EOF


def test_piped_commands_run_and_the_shell_exit_code_is_ours():
    proc = sh(f"timeout 20 {LINX_SPEC} apply specs/rootless-shell.yaml",
              input=b"echo inside-$HOSTNAME; exit 7\n")
    assert proc.returncode == 7, proc.stderr
    assert b"inside-rootless" in proc.stdout
    assert b"\x1b" not in proc.stdout + proc.stderr


def test_sigterm_ends_an_interactive_shell_after_the_grace():
    # stdin a pipe that stays open: the shell waits for input and ignores TERM.
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"timeout 2 {LINX_SPEC} apply --set lifecycle.stop_grace=1s specs/rootless-shell.yaml"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        code = proc.wait(30)
        elapsed = time.monotonic() - t0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 124  # timeout(1)'s: its TERM was what ended it
    assert elapsed < 20  # 2 s, the 1 s grace and start-up; not forever
    assert b"still running 1s after the forwarded signal: killed by SIGKILL" in err
