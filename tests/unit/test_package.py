"""The public API and the package itself."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

import linx_spec
from conftest import REPO


def test_all_lists_exactly_the_public_names():
    import importlib

    assert set(linx_spec.__all__) == set(linx_spec._EXPORTS) | {"__version__"}
    for name, module in linx_spec._EXPORTS.items():
        # each name really lives where the lazy table says, and resolves
        assert getattr(importlib.import_module(f"linx_spec.{module}"), name) is getattr(linx_spec, name)
    assert callable(linx_spec.run) and linx_spec.run.__module__ == "linx_spec.runner"


def test_importing_the_package_costs_nothing():
    code = "import sys, linx_spec; print(sorted(m for m in ('pydantic', 'yaml', 'typer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_version_matches_pyproject():
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["version"] == linx_spec.__version__


@pytest.mark.slow
def test_wheel_is_platform_tagged_and_carries_the_agent(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    wheels = list(tmp_path.glob("linx_spec-*.whl"))
    assert len(wheels) == 1
    name = wheels[0].name
    # a native executable and no extension module: one wheel for every Python 3
    assert "-py3-none-linux_" in name, name
    with zipfile.ZipFile(wheels[0]) as z:
        info = z.getinfo("linx_spec/_bin/linx-agent")
        mode = info.external_attr >> 16
        assert mode & 0o111, oct(mode)
        assert z.read("linx_spec/_bin/linx-agent")[:4] == b"\x7fELF"


def test_pyroute2_is_not_imported_by_a_plain_apply_path():
    code = ("import sys; import linx_spec, linx_spec.cli, linx_spec.runner, linx_spec.agent; "
            "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_ci_runs_the_readme_test_command_verbatim_and_installs_its_system_packages():
    import re

    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    test_cmd = next(line.strip() for line in readme.splitlines() if "pip install -q '.[test]'" in line)
    assert test_cmd in ci.splitlines()
    apt = re.search(r"apt-get install ([a-z0-9 .+-]+)", readme).group(1).split()
    ci_pkgs = re.search(r"for pkg in ([a-z0-9 .+-]+); do", ci).group(1).split()
    assert {"python3-venv", "gcc", "libc6-dev", "libseccomp2"} <= set(apt)
    assert set(apt) - {"python3-venv"} <= set(ci_pkgs)


def test_lowest_constraints_pin_every_declared_lower_bound():
    import tomllib

    out = subprocess.run([sys.executable, str(REPO / ".ci/lowest-constraints.py"), "test"],
                         capture_output=True, text=True, check=True).stdout.split()
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = meta["project"]["dependencies"] + meta["project"]["optional-dependencies"]["test"]
    declared += meta["build-system"]["requires"]
    assert len(out) == len(declared)
    pins = dict(line.split("==") for line in out)
    assert pins["pydantic"] == "2.6" and pins["setuptools"].startswith("77")
    for req in declared:
        name = req.split(">=")[0].strip()
        assert f">={pins[name]}" in req.replace(" ", ""), req
