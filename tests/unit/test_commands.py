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


# Numbers `plan` may print as numbers: ids, sizes and counts.  Anything else that
# is a number in the Plan (macvlan mode 4, umask 18, a signal, an rlimit resource,
# clone flags) is printed as the word the spec used (issue 20).
_NUMBERS = {"uid", "gid", "groups", "mtu", "syscalls", "instructions", "oom_score_adj"}


def _numbers(value, key="") -> list[str]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [] if key in _NUMBERS else [f"{key}={value}"]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, str(k))]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v, key)]
    return []


def test_plan_prints_names_not_numbers(tmp_path):
    import json
    from pathlib import Path

    rich = tmp_path / "rich.yaml"
    rich.write_text("""version: 1
name: rich
namespaces: [user, pid, net, mount, uts, ipc]
process: {command: [/bin/true], umask: 0o027}
rlimits: {nofile: 256, core: 0, nproc: {soft: 10, hard: 20}}
network:
  interfaces:
    - {name: mv0, type: macvlan, parent: lo, mode: bridge, addresses: [10.20.0.5/24]}
    - {name: iv0, type: ipvlan, parent: lo, mode: l3, addresses: [10.21.0.5/24]}
mounts: {entries: [{type: tmpfs, target: /tmp, mode: 0o1777}]}
seccomp: {default: allow, rules: [{syscalls: [mount], action: errno EPERM}]}
""")
    specs = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))
    planned = 0
    for path in [rich, *specs]:
        out = CliRunner().invoke(app, ["plan", "--json", str(path)])
        if out.exit_code == 66:
            continue  # a host without what that example needs (a bind source, a netns)
        assert out.exit_code == 0, out.output
        steps = json.loads(out.stdout[out.stdout.index("{"):])["steps"]
        bad = [f"{s['step']}: {n}" for s in steps for n in _numbers(s["args"])]
        assert not bad, f"{path.name}: numbers where a name belongs: {bad}"
        planned += 1
    assert planned >= 4
    text = CliRunner().invoke(app, ["plan", str(rich)]).stdout
    assert "'mode': 'bridge'" in text and "'mode': 'l3'" in text and "umask=0027" in text


def test_root_flag_is_the_runtime_directory_with_the_same_checks(tmp_path, monkeypatch):
    import os

    from linx_spec.state import StateDir

    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    root = tmp_path / "state"
    out = CliRunner().invoke(app, ["--root", str(root), "ps", "--json"])
    assert out.exit_code == 0 and out.stdout.strip() == "[]"
    StateDir.create("lxq1")  # --root is LINX_RUNTIME_DIR for the rest of the run: made there, 0700
    assert (root / "lxq1" / "state.json").exists() and not (tmp_path / "elsewhere").exists()
    assert os.stat(root).st_mode & 0o777 == 0o700
    os.chmod(root, 0o777)  # anyone may write into it: refused, as LINX_RUNTIME_DIR would be
    out = CliRunner().invoke(app, ["--root", str(root), "ps"])
    assert out.exit_code == 72 and "writable by others" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(app, ["--root", "", "ps"])
    assert out.exit_code == 2 and "--root" in out.output


def test_quiet_ps_prints_names_only(tmp_path, monkeypatch):
    from linx_spec.state import StateDir

    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "run"))
    for name in ("lxq-b", "lxq-a"):
        StateDir.create(name)  # never started: listed as dead
    for args in (["ps", "-q"], ["-q", "ps"], ["--quiet", "ps"]):
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0 and out.stdout == "lxq-a\nlxq-b\n", (args, out.output)
    assert "STATUS" in CliRunner().invoke(app, ["ps"]).stdout  # -q of one run does not stick
