"""Small command-line items of issue 20 that need no root."""

from __future__ import annotations

from typer.testing import CliRunner

from linx_spec import __version__
from linx_spec.commands import app
from linx_spec.host.cgroup_usage import clamp_cpu_split
from linx_spec.lifecycle import usage_lines


def test_version():
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output == f"linx-spec {__version__}\n"


def test_cpu_user_seconds_never_above_cpu_seconds():
    usage = {"cpu_seconds": 0.010, "cpu_user_seconds": 0.012, "cpu_system_seconds": 0.004}
    clamp_cpu_split(usage)
    assert usage["cpu_user_seconds"] == 0.010 and usage["cpu_system_seconds"] == 0
    kept = {"cpu_seconds": 1.0, "cpu_user_seconds": 0.5, "cpu_system_seconds": 0.25}
    clamp_cpu_split(kept)
    assert kept == {"cpu_seconds": 1.0, "cpu_user_seconds": 0.5, "cpu_system_seconds": 0.25}


def test_usage_in_words():
    assert usage_lines({"memory_peak_bytes": 3 * 2**20, "oom_kills": 0, "cpu_seconds": 0.5, "other": 1}) == [
        "cpu: 0.500s", "memory peak: 3.0 MiB", "oom kills: 0"]


def test_readme_command_list_names_every_command():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## The command"):]
    section = section[:section.index("\n## ", 1)]
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    names += [g.name for g in app.registered_groups]
    missing = [n for n in names if not re.search(rf"linx-spec (.*\| )?{n}\b", section)]
    assert not missing, f"README's command list lacks {missing}"
