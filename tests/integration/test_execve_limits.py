"""argv and env at execve's limits (issue 14 item 8): what validates also runs.  The
spec's bound (spec/process.py) sits below what execve takes and what the agent's
frame carries, so both edges are checked from inside the workload: exactly at the
bound the workload gets every byte; one byte more is a spec error before anything
is created (on main such a spec validated, then crashed apply)."""

from __future__ import annotations

import pytest
import yaml

from conftest import cli
from linx_spec.spec.process import ARGV_ENV_MAX_BYTES, MAX_ARG_STRLEN, execve_bytes

pytestmark = pytest.mark.root

# Prints the bytes of its own argv and environ as the kernel holds them.
PROBE = ("import sys; c = open('/proc/self/cmdline', 'rb').read(); e = open('/proc/self/environ', 'rb').read(); "
         "print(len(c), c.count(b'\\0'), len(e), e.count(b'\\0'))")


def _env_filling(command: list[str], total: int) -> dict[str, str]:
    """Env variables of at most MAX_ARG_STRLEN - 1 bytes each, so that execve_bytes == total."""
    env: dict[str, str] = {}
    left = total - execve_bytes(command, {})
    i = 0
    while left > 0:
        name = f"V{i:03d}"
        size = min(left, 100_000)  # bytes this variable adds: name, `=`, value, NUL, pointer
        env[name] = "x" * (size - len(name) - 1 - 1 - 8)
        left -= size
        i += 1
    assert execve_bytes(command, env) == total
    return env


def _spec(command: list[str], env: dict[str, str]) -> str:
    return yaml.safe_dump({"version": 1, "namespaces": ["user", "pid", "mount"],
                           "process": {"command": command, "env": env}}, width=1 << 30)


def test_argv_and_env_exactly_at_the_bound_reach_the_workload(run_spec):
    command = ["python3", "-c", PROBE]
    env = _env_filling(command, ARGV_ENV_MAX_BYTES)
    result, out, err = run_spec(_spec(command, env))
    assert result.exit_code == 0, err[-500:]
    clen, cwords, elen, evars = map(int, out.split())
    assert cwords == 3 and evars == len(env) + 2  # + PATH and HOME
    # What the kernel holds: every string and its NUL; execve_bytes adds 8 per pointer.
    assert clen + elen + 8 * (cwords + evars) == ARGV_ENV_MAX_BYTES


def test_a_word_of_max_arg_strlen_minus_one_runs(run_spec):
    word = "y" * (MAX_ARG_STRLEN - 1)
    result, out, err = run_spec(_spec(["python3", "-c", PROBE, word], {}))
    assert result.exit_code == 0, err[-500:]
    assert int(out.split()[1]) == 4


def test_one_byte_over_is_refused_by_validate_before_anything_runs(write_spec):
    command = ["python3", "-c", PROBE]
    over = _env_filling(command, ARGV_ENV_MAX_BYTES + 1)
    path = write_spec(_spec(command, over))
    for sub in ("validate", "apply"):
        proc = cli(sub, str(path))
        assert proc.returncode == 65, proc.stderr[-500:]
        assert "at most 524288 (512 KiB)" in proc.stderr and "Traceback" not in proc.stderr
    big = {f"V{i}": "z" * 120_000 for i in range(10)}  # 1.2 MB: past the agent's frame too
    proc = cli("apply", str(write_spec(_spec(command, big))))
    assert proc.returncode == 65 and "Traceback" not in proc.stderr, proc.stderr[-500:]
    word = write_spec(_spec(["python3", "-c", PROBE, "y" * MAX_ARG_STRLEN], {}))
    proc = cli("validate", str(word))
    assert proc.returncode == 65 and "MAX_ARG_STRLEN" in proc.stderr, proc.stderr[-500:]
