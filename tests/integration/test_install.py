"""The package as a user gets it: sdist -> wheel in a clean venv -> install -> run.

Needs PyPI (build's isolated environment fetches setuptools; the wheel's
dependencies are installed from it), as the README's quick start does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`python -m build` makes the sdist, then the wheel FROM that sdist (not from the tree)."""
    root = tmp_path_factory.mktemp("install")
    env_dir = root / "build-venv"
    venv.create(env_dir, with_pip=True)
    _run([env_dir / "bin/pip", "install", "-q", "build"])
    out = root / "dist"
    _run([env_dir / "bin/python", "-m", "build", "--outdir", out, REPO])
    (sdist,) = out.glob("linx_spec-*.tar.gz")
    (wheel,) = out.glob("linx_spec-*.whl")
    return root, sdist, wheel


def test_sdist_carries_what_building_and_testing_need(built):
    _root, sdist, _wheel = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("agent/lx_main.c", "agent/lx_proto.h", "schema/linx-spec.schema.json", "specs/hello.yaml",
                   "tests/conftest.py", "LICENSE", "CHANGELOG.md", "docs/reference.md", "linx_spec/py.typed",
                   "action.yml", ".pre-commit-hooks.yaml", "linx_spec/seccomp/syscalls.txt"):
        assert needed in names, needed
    assert not any(n.endswith(("linx-agent", ".pyc")) for n in names)


def test_wheel_fits_every_python3_and_carries_agent_schema_license(built):
    _root, _sdist, wheel = built
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl") or wheel.name.endswith("-py3-none-linux_aarch64.whl"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("linx_spec/_bin/linx-agent")[:4] == b"\x7fELF"
        assert z.getinfo("linx_spec/_bin/linx-agent").external_attr >> 16 & 0o111
        assert z.read("linx_spec/linx-spec.schema.json") == (REPO / "schema/linx-spec.schema.json").read_bytes()
        assert "linx_spec/py.typed" in names and "linx_spec/seccomp/syscalls.txt" in names
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta
    runtime = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert runtime and not any("jsonschema" in line for line in runtime), runtime


def test_installed_wheel_runs_hello_in_a_clean_venv(built, tmp_path):
    root, _sdist, wheel = built
    env_dir = root / "run-venv"
    venv.create(env_dir, with_pip=True)
    _run([env_dir / "bin/pip", "install", "-q", wheel])
    env = {k: v for k, v in os.environ.items() if k not in ("LINX_AGENT", "PYTHONPATH")}
    # From a directory without the source tree: the installed package and its own agent run.
    proc = _run([env_dir / "bin/linx-spec", "apply", REPO / "specs/hello.yaml"], cwd=tmp_path, env=env)
    assert "inside: uid=0 gid=0 pid=1 hostname=linx-hello" in proc.stdout
    where = _run([env_dir / "bin/python", "-c", "import linx_spec.agent as a; print(a.__file__)"], cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(env_dir))


def test_release_build_retags_the_static_agent_manylinux_and_it_runs(built, tmp_path):
    """.ci/release-wheel: auditwheel (PyPI) finds no external library and retags only."""
    _root, _sdist, wheel = built
    proc = _run([REPO / ".ci/release-wheel", tmp_path / "rel", wheel])
    assert "requires no external shared libraries" in proc.stdout
    (rel,) = (tmp_path / "rel").glob("linx_spec-*.whl")
    arch = os.uname().machine
    assert rel.name.endswith(f"-py3-none-manylinux1_{arch}.manylinux_2_5_{arch}.whl"), rel.name
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(rel) as b:
        assert a.read("linx_spec/_bin/linx-agent") == b.read("linx_spec/_bin/linx-agent")
        assert b.getinfo("linx_spec/_bin/linx-agent").external_attr >> 16 & 0o111
    # pip on this host takes the tag, and the package from it runs a workload with its own agent.
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, rel])
    env = {k: v for k, v in os.environ.items() if k not in ("LINX_AGENT", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    run = _run([sys.executable, "-c", "import linx_spec, linx_spec.cli as c; print(linx_spec.__file__); c.main()",
                "apply", REPO / "specs/hello.yaml"], cwd=tmp_path, env=env)
    assert run.stdout.startswith(str(target)) and "inside: uid=0 gid=0 pid=1" in run.stdout


def test_release_build_refuses_a_dynamically_linked_agent(built, tmp_path):
    _root, _sdist, wheel = built
    dynamic = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(dynamic, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "linx_spec/_bin/linx-agent":
                data = open(shutil.which("true"), "rb").read()  # a dynamically linked program
            dst.writestr(item, data)
    proc = subprocess.run([REPO / ".ci/release-wheel", tmp_path / "rel", dynamic], capture_output=True, text=True)
    assert proc.returncode == 1 and "linked dynamically" in proc.stderr, proc.stderr
    assert not list((tmp_path / "rel").glob("*.whl"))


@pytest.mark.parametrize("cc", ["no-such-cc", "false"], ids=["missing", "failing"])
def test_no_or_failing_compiler_names_the_packages_not_a_traceback(built, tmp_path, cc):
    root, sdist, _wheel = built
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (src,) = tmp_path.glob("linx_spec-*")
    proc = subprocess.run([root / "build-venv/bin/python", "-m", "build", "--wheel", "--outdir", tmp_path / "out", src],
                          capture_output=True, text=True, env={**os.environ, "CC": cc})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "error: linx-spec:" in out and "gcc libc6-dev" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert not list((tmp_path / "out").glob("*.whl"))
    if cc == "false":  # it ran: a user's build never has -Werror (only LINX_AGENT_WERROR=1 adds it)
        line = next(x for x in out.splitlines() if "building the agent:" in x)
        assert "-Wall" in line and "-Werror" not in line, line


def _action_steps() -> tuple[dict, list[dict]]:
    import yaml

    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    return action, action["runs"]["steps"]


def _run_action(tmp_path, inputs: dict, cwd) -> subprocess.CompletedProcess:
    """Run the composite action's steps as the runner would: bash, inputs through `env:`."""
    import re

    action, steps = _action_steps()
    values = {k: v.get("default", "") for k, v in action["inputs"].items()} | inputs
    base = {k: v for k, v in os.environ.items() if k not in ("LINX_AGENT", "PYTHONPATH")}
    base |= {"RUNNER_TEMP": str(tmp_path), "GITHUB_ACTION_PATH": str(REPO)}
    for step in steps:
        assert step["shell"] == "bash" and "${{" not in step["run"], "inputs only through env:"
        env = dict(base)
        for key, value in step.get("env", {}).items():
            env[key] = re.sub(r"\$\{\{\s*inputs\.([a-z_-]+)\s*\}\}", lambda m: values[m.group(1)], value)
        proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return proc
    return proc


def test_github_action_installs_and_validates_with_annotations(built, tmp_path):
    _root, _sdist, wheel = built
    proc = _run_action(tmp_path, {"requirement": str(wheel), "paths": "specs"}, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""  # github format: only problems are printed
    # globs reach linx-spec unexpanded; excluded and bad files are annotated or skipped
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.yaml").write_text("version: 1\nname: x\nprocess: {command: []}\n")
    (tmp_path / "bad" / "skip.yaml").write_text("not: a spec\n")
    proc = _run_action(tmp_path / "t", {"requirement": str(wheel), "paths": "bad/*.yaml bad",
                                        "exclude": "skip.*"}, cwd=tmp_path)
    assert proc.returncode == 65, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1], lines  # the glob and the directory both name x.yaml
    line = lines[0]
    assert line.startswith("::error file=bad/x.yaml,line=3,col=20::process.command: "), line
