"""The CLI's plan cache: a second plain `apply FILE` runs without importing
pydantic, yaml or typer, and anything the plan depends on invalidates it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.root

PROBE = """
import sys
from linx_spec import cli
sys.argv = ["linx-spec", "apply", sys.argv[1]]
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("pydantic", "yaml", "typer") if m in sys.modules)
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
    # a file the spec names
    data.write_text("two and more\n")
    code, heavy, out = _apply(spec, runtime)
    assert heavy != "-" and out.startswith("two")
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
