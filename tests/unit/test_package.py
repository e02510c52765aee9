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
    assert name.endswith("linux_x86_64.whl") or "manylinux" in name, name
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
