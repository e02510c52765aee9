"""The CLI's plan cache: a second plain `apply FILE` runs without importing
pydantic, yaml or typer, and anything the plan depends on invalidates it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

from .test_network import _iproute2_netns_dir  # noqa: F401 - /run/netns removed again if we made it

pytestmark = pytest.mark.root

PROBE = """
import sys
from linx_spec import cli
sys.argv = ["linx-spec", "apply", sys.argv[1]]
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("pydantic", "yaml", "typer", "pyroute2", "linx_spec.live") if m in sys.modules)
print("code", code, "heavy", ",".join(heavy) or "-", file=sys.stderr)
"""


def _apply(path, runtime, env=None):
    e = dict(os.environ, PYTHONPATH=str(REPO), LINX_RUNTIME_DIR=str(runtime), **(env or {}))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=e, timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    _, code, _, heavy = last.split()
    return int(code), heavy, proc.stdout


def test_second_apply_runs_from_the_cache_and_changes_invalidate_it(tmp_path):
    runtime = tmp_path / "run"
    data = tmp_path / "data.txt"
    data.write_text("one\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"version: 1\nnamespaces: [pid]\nprocess: {{command: [/bin/sh, -c, 'cat {data}; echo $WHO; exit 3'],"
                    " env: {WHO: '${LX_WHO:-nobody}'}}\n")
    code, heavy, out = _apply(spec, runtime)
    assert (code, out) == (3, "one\nnobody\n") and heavy != "-"  # the normal path, which fills the cache
    code, heavy, out = _apply(spec, runtime)
    assert (code, heavy, out) == (3, "-", "one\nnobody\n")  # from the cache: nothing heavy imported
    # a referenced environment variable changes the plan
    code, heavy, out = _apply(spec, runtime, {"LX_WHO": "me"})
    assert heavy != "-" and out == "one\nme\n"
    # the spec itself
    spec.write_text(spec.read_text().replace("exit 3", "exit 4"))
    code, heavy, _ = _apply(spec, runtime)
    assert code == 4 and heavy != "-"
    code, heavy, _ = _apply(spec, runtime)
    assert code == 4 and heavy == "-"
    # a file named inside the shell text is read by the workload, not by the plan: still a hit
    data.write_text("two and more\n")
    code, heavy, out = _apply(spec, runtime)
    assert heavy == "-" and out.startswith("two")
    # the program the plan resolved: another file mounted over its directory
    prog_dir = tmp_path / "bin"
    prog_dir.mkdir()
    (prog_dir / "prog").write_text("#!/bin/sh\necho first\n")
    (prog_dir / "prog").chmod(0o755)
    other = tmp_path / "other"
    other.mkdir()
    (other / "prog").write_text("#!/bin/sh\necho other\n")
    (other / "prog").chmod(0o755)
    spec.write_text(f"version: 1\nnamespaces: [pid]\nprocess: {{command: [{prog_dir}/prog]}}\n")
    assert _apply(spec, runtime)[1] != "-"
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "lxfp", str(unrelated)], check=True)
    try:
        assert _apply(spec, runtime)[1:] == ("-", "first\n")  # a mount the plan does not depend on
        subprocess.run(["mount", "--bind", str(other), str(prog_dir)], check=True)
        try:
            assert _apply(spec, runtime)[1:] == ("pydantic,yaml", "other\n")
        finally:
            subprocess.run(["umount", str(prog_dir)], check=True)
    finally:
        subprocess.run(["umount", str(unrelated)], check=True)
    # the cache directory is ours only
    cache = runtime / ".plans"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    # the cache is not a workload: ps and gc do not list it
    env = dict(os.environ, PYTHONPATH=str(REPO), LINX_RUNTIME_DIR=str(runtime))
    ps = subprocess.run([sys.executable, "-m", "linx_spec.cli", "ps"], capture_output=True, text=True, env=env)
    assert ps.stdout.strip().splitlines() == [ps.stdout.strip().splitlines()[0]]


def test_a_tampered_cache_entry_is_ignored(tmp_path):
    runtime = tmp_path / "run"
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [pid]\nprocess: {command: [/bin/true]}\n")
    assert _apply(spec, runtime)[0] == 0
    for entry in (runtime / ".plans").iterdir():
        entry.write_bytes(b"not a pickle")
    code, heavy, _ = _apply(spec, runtime)
    assert code == 0 and heavy != "-"


def _apply_verbose(spec, runtime, env) -> list[str]:
    """`apply -v SPEC` in a private net namespace (web-server's veth stays out of
    the host's); -> its `plan cache:` lines.  A workload that serves forever
    is interrupted after a few seconds."""
    e = dict(os.environ, PYTHONPATH=str(REPO), LINX_RUNTIME_DIR=str(runtime), **env)
    proc = subprocess.Popen(["unshare", "--net", sys.executable, "-m", "linx_spec.cli", "apply", "-v", str(spec)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e,
                            text=True)
    try:
        proc.wait(timeout=4)
    except subprocess.TimeoutExpired:
        # Forwarded to the workload, pid 1 of its namespace: only signals it
        # handles reach it (bash -i exits on SIGHUP, python on SIGINT).
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    return [line for line in proc.stderr.read().splitlines() if "plan cache:" in line]


def test_every_example_spec_hits_on_its_second_apply(tmp_path):
    runtime = tmp_path / "run"
    env = {"BUILD_SRC": str(tmp_path / "src"), "BUILD_OUT": str(tmp_path / "out")}
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    made_log = not os.path.exists("/tmp/batch-job.log")
    subprocess.run(["ip", "netns", "add", "lxdemo"], check=True)
    try:
        for spec in sorted((REPO / "specs").glob("*.yaml")):
            first = _apply_verbose(spec, runtime, env)
            assert re.fullmatch(r"linx-spec: plan cache: stored \(\d+ bytes\)", first[-1]), (spec.name, first)
            time.sleep(0.05)
            second = _apply_verbose(spec, runtime, env)
            assert len(second) == 1 and " hit (" in second[0], (spec.name, second)
    finally:
        subprocess.run(["ip", "netns", "del", "lxdemo"], check=True)
        if made_log and os.path.exists("/tmp/batch-job.log"):
            os.unlink("/tmp/batch-job.log")
