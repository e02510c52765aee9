"""Shared test fixtures.

Tests run against the source tree (pytest's pythonpath) with the agent built from
agent/ by `make` (LINX_AGENT points at it).  The build is lazy and happens once:
when root tests that will run are selected (pytest_collection_modifyitems), or
when a unit test asks for the `agent_bin` fixture; pure unit tests need no C
compiler.  Root tests are marked `root`; in CI (CI=true) a root test never
skips: not being root there is a failure.

The session ends with a leak census: a linx-agent process, a cgroup, an
interface, a mount or a netns of ours still present fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AGENT_DIR = REPO / "agent"
IN_CI = os.environ.get("CI") == "true"

sys.path.insert(0, str(REPO / "tests"))
import census  # noqa: E402


AGENT_BIN = AGENT_DIR / "linx-agent"  # built on first need: build_agent()
os.environ.setdefault("LINX_AGENT", str(AGENT_BIN))
_agent_built: list[Path] = []


def build_agent() -> Path:
    """`make` the agent, once per test run."""
    if not _agent_built:
        try:
            subprocess.run(["make", "-s", "-C", str(AGENT_DIR), "linx-agent"], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise pytest.UsageError(f"building the agent ({AGENT_DIR}) failed: {exc}") from None
        _agent_built.append(AGENT_BIN)
    return AGENT_BIN


@pytest.fixture(scope="session")
def agent_bin() -> Path:
    """The agent binary, built from agent/ (for unit tests that drive it directly)."""
    return build_agent()
# Detached workloads' state and the CLI's plan cache go to a directory of the
# test run, not the host's /run/linx; it must hold no workload at the end.
import tempfile  # noqa: E402

RUNTIME_DIR = tempfile.mkdtemp(prefix="linx-test-run-")
os.environ["LINX_RUNTIME_DIR"] = RUNTIME_DIR


def _remove_runtime_dir(owner: int = os.getpid()) -> None:
    """A process that imported this file without a pytest session of its own (or one
    that was interrupted) never reaches pytest_sessionfinish: its empty directory went
    to /tmp for good.  Only the process that made it removes it (a forked child's exit
    must not pull it from under the running tests)."""
    import shutil

    if os.getpid() == owner:
        shutil.rmtree(RUNTIME_DIR, ignore_errors=True)


import atexit  # noqa: E402

atexit.register(_remove_runtime_dir)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: build only for what runs
def pytest_collection_modifyitems(config, items):
    root_tests = any("root" in item.keywords for item in items)
    if os.geteuid() == 0 or IN_CI:
        # In CI not being root is checked in pytest_sessionstart; never skip a root test there.
        if root_tests:
            build_agent()
        return
    skip = pytest.mark.skip(reason="needs root (runs in CI as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session):
    if IN_CI and os.geteuid() != 0:
        raise pytest.UsageError("CI must run the tests as root: root tests may not be skipped there")
    session.config._linx_census = census.take()


def pytest_sessionfinish(session, exitstatus):
    import shutil

    leftover = [n for n in os.listdir(RUNTIME_DIR) if os.path.exists(os.path.join(RUNTIME_DIR, n, "state.json"))]
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
    if os.environ.get("LINX_NO_LEAKCHECK") == "1":
        return
    if leftover:
        sys.stderr.write(f"\nLEAK CENSUS: detached workload state left behind: {leftover}\n")
        session.exitstatus = 1
    before = getattr(session.config, "_linx_census", None)
    if before is None:
        return
    leaked = census.leaked(before, census.take(settle=True))
    if leaked:
        lines = "\n".join(f"  {kind}: {obj}" for kind, obj in leaked)
        sys.stderr.write(f"\nLEAK CENSUS: objects created by the tests are still there:\n{lines}\n")
        session.exitstatus = 1


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text) -> path of a spec file in a temp dir."""
    counter = [0]

    def write(text: str, name: str | None = None) -> Path:
        counter[0] += 1
        path = tmp_path / (name or f"spec{counter[0]}.yaml")
        path.write_text(text)
        return path

    return write


# Modules whose run_spec tests run twice: with run() (the agent spawned from the
# binary) and with a Runner (the agent forked from its zygote), the same checks
# from inside the workload either way.
BOTH_AGENT_STARTS = {"test_cve", "test_privileges", "test_seccomp", "test_runner", "test_execve_limits"}


def pytest_generate_tests(metafunc):
    if "run_spec" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in BOTH_AGENT_STARTS:
        metafunc.parametrize("run_spec", ["run", "runner"], indirect=True)


@pytest.fixture(scope="session")
def runner():
    """One linx_spec.Runner for the session; closed (its zygote reaped) before the census."""
    from linx_spec import Runner

    with Runner() as r:
        yield r


@pytest.fixture
def run_spec(request, tmp_path, write_spec):
    """run_spec(yaml_text) -> (Result, stdout text, stderr text), the workload's output captured.
    Through a Runner where the module is in BOTH_AGENT_STARTS (param "runner")."""
    from linx_spec import build_plan, load_file, run

    go_run = request.getfixturevalue("runner").run if getattr(request, "param", "run") == "runner" else run

    def go(text: str, **kw):
        path = write_spec(text)
        plan = build_plan(load_file(path), source=str(path), base_dir=str(path.parent))
        out = tmp_path / "stdout"
        err = tmp_path / "stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            result = go_run(plan, stdout=fo.fileno(), stderr=fe.fileno(), **kw)
        return result, out.read_text(), err.read_text()

    return go


def children(pid: int) -> list[int]:
    """Child pids of pid (the runner's agent, the agent's workload)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def start_cli(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """`linx-spec ARGS` from the source tree, running in the background."""
    e = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "linx_spec.cli", *args], env=e, **popen)


def cli(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 60):
    """Run `linx-spec ARGS` from the source tree in a fresh interpreter."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "linx_spec.cli", *args], input=input, capture_output=True,
                          text=True, env=e, timeout=timeout)
