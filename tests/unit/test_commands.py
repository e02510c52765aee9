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


def test_current_usage_from_v1_and_v2_files():
    from linx_spec.host.cgroup_usage import current_v1, current_v2

    v1 = {"/m/memory.usage_in_bytes": "1048576\n", "/m/memory.limit_in_bytes": "9223372036854771712\n",
          "/p/pids.current": "3\n", "/p/pids.max": "max\n",
          "/b/blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 512\n8:16 Read 4\nTotal 4612\n"}
    assert current_v1({"memory": "/m", "pids": "/p", "blkio": "/b"}, v1.get) == {
        "memory_bytes": 1048576, "pids": 3, "io_read_bytes": 4100, "io_write_bytes": 512}  # no limits: left out
    v2 = {"/l/memory.current": "2048\n", "/l/memory.max": "4096\n", "/l/pids.current": "2\n", "/l/pids.max": "40\n",
          "/l/io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=0\n"}
    assert current_v2("/l", v2.get) == {"memory_bytes": 2048, "memory_limit_bytes": 4096, "pids": 2,
                                        "pids_limit": 40, "io_read_bytes": 15, "io_write_bytes": 20}
    assert current_v2("/none", {}.get) == {}


def test_stats_rows_cpu_percent_from_two_readings_and_every_key():
    from linx_spec.observe import STATS_KEYS, row, table

    before = {"name": "w", "status": "running", "at": 10.0, "figures": {"cpu_seconds": 1.0}}
    now = {"name": "w", "status": "running", "at": 12.0,
           "figures": {"cpu_seconds": 2.5, "memory_bytes": 32 << 20, "memory_limit_bytes": 128 << 20,
                       "memory_peak_bytes": 40 << 20, "pids": 3, "pids_limit": 64}}
    r = row(now, before)
    assert r["cpu_percent"] == 75.0 and r["memory_percent"] == 25.0  # 1.5 s of CPU in 2 s
    assert set(STATS_KEYS) <= set(r) and r["io_read_bytes"] is None
    assert row(now, None)["cpu_percent"] is None
    text = table([r, row({"name": "gone", "status": "exited", "at": 0, "figures": {}}, None)])
    header, web, gone = text.splitlines()
    assert header.split()[:3] == ["NAME", "STATUS", "CPU"]
    assert "75.00%" in web and "32.0MiB / 128.0MiB" in web and "25.00%" in web and "3/64" in web
    assert gone.split() == ["gone", "exited"] + ["-"] * 6  # no cgroup figures: nothing made up


def test_inspect_of_an_ended_workload_has_every_key(tmp_path, monkeypatch):
    import json

    from linx_spec import build_plan, load_file
    from linx_spec.state import StateDir

    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "run"))
    spec = tmp_path / "job.yaml"
    spec.write_text("version: 1\nname: lxinsp\nnamespaces: [user]\nprocess: {command: [/bin/true]}\n"
                    "lifecycle: {summary: true}\n")
    plan = build_plan(load_file(spec), source=str(spec))
    sd = StateDir.create("lxinsp")
    sd.save_plan(plan)
    sd.update(status="exited", exit_code=0, signal=None, detail="exit code 0",
              usage={"cpu_seconds": 0.01, "memory_peak_bytes": 4096})
    out = CliRunner().invoke(app, ["inspect", "lxinsp"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert sorted(doc) == ["detail", "format", "name", "plan", "spec", "state", "status", "usage"]
    assert doc["format"] == 1 and doc["status"] == "exited" and doc["state"]["exit_code"] == 0
    assert doc["spec"]["document"]["lifecycle"] == {"summary": True} and doc["spec"]["hash"] == plan.spec_hash
    assert doc["plan"]["lifecycle"]["summary"] is True and doc["plan"]["steps"][-1]["step"] == "exec"
    assert doc["usage"] == {"source": "ended", "figures": {"cpu_seconds": 0.01, "memory_peak_bytes": 4096}}
    spec.write_text(spec.read_text().replace("/bin/true", "/bin/false"))  # changed since: not shown as its spec
    doc = json.loads(CliRunner().invoke(app, ["inspect", "lxinsp"]).stdout)
    assert doc["spec"]["document"] is None and "changed" in doc["spec"]["note"]
    assert CliRunner().invoke(app, ["inspect", "nosuch"]).exit_code == 72
    assert CliRunner().invoke(app, ["stats", "--no-stream", "nosuch"]).exit_code == 72


def _command_paths(command, path=()):
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))
    yield path


def test_every_command_help_has_an_example():
    """Issue 20: each `--help`, the app's and every group's included, shows an example."""
    import typer.main

    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("stats",) in paths and ("seccomp", "groups") in paths and len(paths) > 25
    missing = []
    for path in paths:
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
        assert out.exit_code == 0, (path, out.output)
        if "Example: linx-spec " not in out.output:
            missing.append(" ".join(path) or "(the app)")
    assert not missing, f"--help without an `Example: linx-spec ...`: {missing}"


def test_shell_completion_completes_command_names(monkeypatch):
    """typer's completion (issue 20): `linx-spec ap<TAB>` offers `apply`; the shell's
    script comes from `linx-spec --install-completion` / `--show-completion`."""
    monkeypatch.setenv("_LINX_SPEC_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "linx-spec ap")
    monkeypatch.setenv("COMP_CWORD", "1")
    result = CliRunner().invoke(app, [], prog_name="linx-spec")
    assert result.output.split() == ["apply"]
    monkeypatch.setenv("COMP_WORDS", "linx-spec st")
    result = CliRunner().invoke(app, [], prog_name="linx-spec")
    assert {"stats", "status", "stop"} <= set(result.output.split())


def test_quiet_means_only_errors_for_stop_restart_pause_resume_diff_gc(tmp_path, monkeypatch):
    """-q (before the command or after it) leaves stdout empty for the commands whose
    output only confirms what they did; their errors still reach stderr with their code."""
    from types import SimpleNamespace

    from linx_spec import census, detach, live
    from linx_spec.errors import StateError

    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(detach, "stop", lambda name, grace=None: "exited")
    monkeypatch.setattr(detach, "restart", lambda name, grace=None: (name, 4242))
    monkeypatch.setattr(live, "pause", lambda name: "paused")
    monkeypatch.setattr(live, "resume", lambda name: "resumed")
    monkeypatch.setattr(census, "gc", lambda dry_run, states: [])
    loud = {("stop", "lxq"): "lxq: exited\n", ("restart", "lxq"): "lxq\n", ("pause", "lxq"): "lxq: paused\n",
            ("resume", "lxq"): "lxq: resumed\n", ("gc",): "nothing of linx-spec's on this host\n"}
    for args, text in loud.items():
        out = CliRunner().invoke(app, list(args))
        assert out.exit_code == 0 and out.stdout == text, (args, out.output)
        for quiet in (["-q", *args], [*args, "-q"], ["--quiet", *args]):
            out = CliRunner().invoke(app, quiet)
            assert out.exit_code == 0 and out.stdout == "", (quiet, out.output)
    spec = tmp_path / "lxq.yaml"
    spec.write_text("version: 1\nname: lxq\nprocess: {command: [/bin/true]}\n")
    monkeypatch.setattr(live, "diff", lambda name, plan, revert_released=False: SimpleNamespace(
        text=lambda: "lxq: live     cgroup.pids.max: 5 -> 6", converged=False))
    out = CliRunner().invoke(app, ["diff", str(spec)])
    assert out.exit_code == 1 and "cgroup.pids.max" in out.stdout
    out = CliRunner().invoke(app, ["diff", "-q", str(spec)])
    assert out.exit_code == 1 and out.stdout == "", out.output  # the exit code says it

    def refused(name, grace=None):
        raise StateError(f"no workload named `{name}` (see `linx-spec ps`)")

    monkeypatch.setattr(detach, "stop", refused)
    out = CliRunner().invoke(app, ["-q", "stop", "lxq"])
    assert out.exit_code == 72 and "no workload named `lxq`" in out.stderr and out.stdout == ""
