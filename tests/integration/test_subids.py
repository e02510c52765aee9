"""Rootless subordinate id ranges (issue 20): a normal user with a range in
/etc/subuid and /etc/subgid runs a workload with 65536 ids, mapped through
newuidmap/newgidmap, checked from inside; without the range, plan names it.

The user is `nobody` (65534, present in every /etc/passwd: newuidmap looks the
caller up by name); the ranges are in a high unused block, and both files are
restored byte for byte (or removed when they did not exist).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from .test_runner import _as_nobody, _prepare_for_nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to add subordinate ranges and drop to nobody")

START = 3_500_000_000  # far above any real uid or other range
SPEC = """version: 1
namespaces: [user, pid, mount]
idmap:
  uid: [{container: 0, host: self}, {container: 1, host: subordinate, count: 65536}]
  gid: [{container: 0, host: self}, {container: 1, host: subordinate, count: 65536}]
process:
  command: [/bin/sh, -c, 'cat /proc/self/uid_map /proc/self/gid_map; echo ids=$(id -u):$(id -g)']
  user: {uid: 1000, gid: 1000}
"""


@pytest.fixture
def subids():
    """Give nobody 65536 subordinate uids and gids; restore both files exactly."""
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        p = Path(path)
        saved[path] = p.read_bytes() if p.exists() else None
        mode = p.stat().st_mode & 0o7777 if p.exists() else 0o644
        p.write_bytes((saved[path] or b"") + f"nobody:{START}:65536\n".encode())
        os.chmod(path, mode)
    try:
        yield
    finally:
        for path, data in saved.items():
            if data is None:
                os.unlink(path)
            else:
                Path(path).write_bytes(data)


def _cli_as_nobody(tmp_path, command: str, spec_text: str) -> tuple[int, str]:
    """`linx-spec COMMAND SPEC` in-process in a child dropped to nobody (it cannot
    read the venv under /root); returns (exit code, stdout+stderr)."""
    import linx_spec.cli
    import linx_spec.commands  # noqa: F401 - imports before dropping root
    import linx_spec.fastpath  # noqa: F401

    d, agent = _prepare_for_nobody(tmp_path)
    spec = os.path.join(d, "subids.yaml")
    Path(spec).write_text(spec_text)
    os.chmod(spec, 0o644)
    out = tempfile.NamedTemporaryFile(prefix="linx-subids-", delete=False)
    os.chmod(out.name, 0o666)
    run_dir = tempfile.mkdtemp(prefix="linx-subids-run-")
    os.chown(run_dir, 65534, 65534)
    os.chmod(run_dir, 0o700)

    def go():
        os.environ.update(LINX_AGENT=agent, LINX_RUNTIME_DIR=run_dir)
        fd = os.open(out.name, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)  # pytest replaced them
        sys.argv = ["linx-spec", command, spec]
        code = 0
        try:
            linx_spec.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        return str(code)

    try:
        code, said = _as_nobody(go)
        assert code == 0, said
        return int(said), Path(out.name).read_text()
    finally:
        os.unlink(out.name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_normal_user_runs_with_65536_subordinate_ids(tmp_path, subids):
    code, out = _cli_as_nobody(tmp_path, "apply", SPEC)
    assert code == 0, out
    # Read inside the workload: both maps hold the caller's own id and the range,
    # and the workload really runs as 1000:1000, an id only the range maps.
    lines = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("ids=")]
    assert ["0", "65534", "1"] in lines and ["1", str(START), "65536"] in lines, out
    assert lines.count(["1", str(START), "65536"]) == 2, out
    assert "ids=1000:1000" in out


def test_without_a_range_plan_names_the_file_and_the_shortfall(tmp_path):
    code, out = _cli_as_nobody(tmp_path, "plan", SPEC)
    assert code == 66, out
    assert "idmap.uid: /etc/subuid gives nobody 0 subordinate uids; the map needs 65536" in out, out
    assert "usermod --add-subuids" in out and "Traceback" not in out
