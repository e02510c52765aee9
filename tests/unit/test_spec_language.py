"""The spec language: errors that point at the text, the bad-input corpus, the
JSON Schema (drift and agreement with pydantic), units, overrides, examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO, cli
from linx_spec import SpecError, build_plan, load_file, load_text
from linx_spec.commands import app
from linx_spec.schema import schema_dict, schema_json
from linx_spec.spec.units import parse_cpu, parse_duration, parse_mode, parse_size

BAD = sorted((REPO / "tests" / "bad").glob("*.yaml"))
SPECS = sorted((REPO / "specs").glob("*.yaml"))
SCHEMA_FILE = REPO / "schema" / "linx-spec.schema.json"

# Rules JSON Schema cannot express; pydantic alone rejects these files.
NOT_IN_SCHEMA = {
    "env-var-unset": "environment expansion happens at load time",
    "duplicate-key": "a YAML parser keeps the last of duplicate keys",
    "idmap-overlap": "ranges overlapping is arithmetic across items",
    "empty-file": "an empty document is not JSON",
    "yaml-unclosed-flow": "not YAML",
    "yaml-bad-indent": "not YAML",
    "yaml-tab": "not YAML",
    "capabilities-ambient-not-permitted": "a relation between two sets",
    "network-bad-address": "address arithmetic (octets, prefix lengths)",
    "rlimits-soft-above-hard": "a relation between two fields",
    "seccomp-unknown-syscall": "the syscall table is libseccomp's, per architecture",
    "stdio-stdin-mode": "a relation between the stream and its options",
    # issue 14: a pattern cannot bound the number a string spells, NaN passes every
    # JSON Schema comparison, and a safe YAML parser cannot even read the hostile files.
    "cgroup-memory-huge": "a size string's value (a pattern cannot bound it)",
    "tmpfs-size-huge": "a size string's value (a pattern cannot bound it)",
    "lifecycle-timeout-huge": "a duration string's value (a pattern cannot bound it)",
    "cgroup-cpu-nan": "NaN passes every JSON Schema comparison",
    "lifecycle-backoff-nan": "NaN passes every JSON Schema comparison",
    "yaml-unknown-tag": "a safe YAML parser refuses the tag before any schema",
    "yaml-alias-bomb": "expanding it is the attack; the loader refuses it",
    "yaml-deep-nesting": "nesting depth is the loader's bound",
}


def _expect(path: Path) -> tuple[int, str]:
    head = path.read_text().splitlines()[:2]
    line = int(head[0].split(":", 1)[1])
    text = head[1].split(":", 1)[1].strip()
    return line, text


def test_corpus_is_big_enough():
    assert len(BAD) >= 40


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_reports_file_line_and_message(path):
    line, text = _expect(path)
    with pytest.raises(SpecError) as info:
        load_file(path)
    problems = info.value.problems
    assert any(p.line == line and text in p.message + " " + p.field + ": " + p.message for p in problems), (
        f"expected line {line} with {text!r}, got:\n" + "\n".join(map(str, problems)))
    for p in problems:
        assert p.file == str(path)
        assert str(p).startswith(f"{path}:")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_json_schema_agrees_with_pydantic_on_bad_specs(path):
    if path.stem in NOT_IN_SCHEMA:
        pytest.skip(NOT_IN_SCHEMA[path.stem])
    data = yaml.safe_load(path.read_text())
    errors = list(jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).iter_errors(data))
    assert errors, f"{path.name}: pydantic rejects it, the JSON Schema accepts it"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_specs_are_valid_for_both_validators(path):
    load_file(path)
    data = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_specs_carry_the_schema_modeline(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../schema/linx-spec.schema.json"


def test_checked_in_schema_has_not_drifted():
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "schema/linx-spec.schema.json is stale: run `linx-spec schema > schema/linx-spec.schema.json`")


def test_schema_is_valid_and_every_property_has_a_description():
    schema = schema_dict()
    jsonschema.Draft202012Validator.check_schema(schema)
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if "description" not in prop:
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "#")
    assert not missing, missing


def test_all_errors_of_a_file_are_reported_in_file_order():
    text = "version: 1\nnamspaces: [pid]\nhostname: bad_name!\nprocess:\n  command: []\n  cwd: rel\n"
    with pytest.raises(SpecError) as info:
        load_text(text, "x.yaml")
    lines = [p.line for p in info.value.problems]
    assert lines == sorted(lines) and len(lines) == 4
    assert [p.field for p in info.value.problems] == ["namspaces", "hostname", "process.command", "process.cwd"]


@pytest.mark.parametrize("text,expected", [
    ("64Mi", 64 * 2**20), ("1G", 10**9), ("1Gi", 2**30), ("4096", 4096), (4096, 4096), ("512k", 512000),
    ("1.5Gi", 3 * 2**29), ("0", 0),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["-1Mi", "1.5.2", "12 parsecs", "", True, 1.5, "1.3B", [1]])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text,expected", [
    ("30s", 30.0), ("1m30s", 90.0), ("250ms", 0.25), ("2h", 7200.0), (5, 5.0), ("1.5", 1.5), ("1h2m3s", 3723.0),
])
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["-1s", "1x", "s", "1s2", "", "1m 30s x"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text,expected", [("0.5", 0.5), (0.5, 0.5), ("500m", 0.5), (2, 2.0), ("1500m", 1.5)])
def test_cpus(text, expected):
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text", ["0", 0, "-1", "1.5.2", "half", "0m"])
def test_bad_cpus(text):
    with pytest.raises(ValueError):
        parse_cpu(text)


@pytest.mark.parametrize("text,expected", [
    ("0o1777", 0o1777), ("01777", 0o1777), ("1777", 0o1777), (" 0O755 ", 0o755), (0o1777, 0o1777), (1023, 1023)])
def test_modes(text, expected):
    assert parse_mode(text) == expected


@pytest.mark.parametrize("text", ["", "0o", "8", "0x1ff", "rwx", "0o1234567", True, "-1"])
def test_bad_modes(text):
    with pytest.raises(ValueError):
        parse_mode(text)


@pytest.mark.parametrize("spelling", ["0o1777", "01777", "'1777'", "1023"])
def test_cli_every_mode_field_takes_every_spelling(tmp_path, spelling):
    # issue 20: docs/filesystem.md writes `mode: 0o1777`, YAML 1.1 reads `01777` as
    # octal and `0o1777` as a string; both, and the plain integer, are one mode.
    umask = {"0o1777": "0o027", "01777": "027", "'1777'": "'027'", "1023": "23"}[spelling]
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [user, mount]\n"
                    f"process: {{command: [/bin/true], umask: {umask}}}\n"
                    f"mounts: [{{type: tmpfs, target: /tmp, mode: {spelling}}}]\n")
    assert cli("validate", str(spec)).returncode == 0
    proc = cli("plan", "--json", str(spec))
    assert proc.returncode == 0, proc.stderr
    plan = json.dumps(json.loads(proc.stdout))
    assert "mode=1777" in plan and '"umask": "0027"' in plan
    jsonschema.validate(yaml.safe_load(spec.read_text()), schema_dict())


def test_env_expansion_with_defaults_and_escape():
    spec = load_text("version: 1\nprocess:\n  command: [/bin/echo, '${WHO}', '${NOBODY:-anon}', '$${LIT}', '$$']\n",
                     env={"WHO": "me"})
    assert spec.process.command == ["/bin/echo", "me", "anon", "${LIT}", "$$"]


def test_overrides_are_validated_like_the_file():
    base = "version: 1\nprocess: {command: [/bin/true]}\n"
    spec = load_text(base, overrides=["hostname=box", "namespaces=[uts]", "process.env.A=1", "process.cwd=/tmp"])
    assert spec.hostname == "box" and spec.process.env == {"A": "1"} and spec.process.cwd == "/tmp"
    with pytest.raises(SpecError) as info:
        load_text(base, overrides=["process.cwd=relative"])
    assert "cwd must be an absolute path" in str(info.value)
    with pytest.raises(SpecError) as info:
        load_text(base, overrides=["procss.cwd=/"])
    assert "did you mean `process`?" in str(info.value)
    with pytest.raises(SpecError):
        load_text(base, overrides=["no-equals-sign"])


def test_set_values_are_yaml_and_a_string_field_keeps_the_text(tmp_path):
    """Issue 20: `--set process.command=[sleep, 5]` works; a field that wants a
    string gets the text as written (`5`, `1.0`, `true`), a number field a number."""
    base = "version: 1\nprocess: {command: [/bin/true]}\n"
    spec = load_text(base, overrides=["process.command=[sleep, 5, 1.0, true, 0x10]", "hostname=123",
                                      "cgroup.pids.max=40"])
    assert spec.process.command == ["sleep", "5", "1.0", "true", "0x10"]
    assert spec.hostname == "123" and spec.cgroup.pids.max == 40
    spec = load_text("version: 1\nprocess: {command: [sleep, '1']}\n", overrides=["process.command.1=7"])
    assert spec.process.command == ["sleep", "7"]


@pytest.mark.parametrize("assignment, message", [
    ("process.memory=x", "--set process.memory=x: unknown field; known fields: command"),
    ("cgroup.memory.max=x", "--set cgroup.memory.max=x: `x` is not a size"),
    ("process.command=[sleep, {a: 1}]", "--set process.command=[sleep, {a: 1}]: process.command[1]: Input should be"),
    ("process.cwd=relative", "--set process.cwd=relative: cwd must be an absolute path"),
    ("network.interfaces=[{type: veth}]", "--set network.interfaces=[{type: veth}]: network.interfaces[0]: a veth"),
    ("no-equals-sign", "--set no-equals-sign: expected path.to.field=value"),
    ("hostname=a\x1b[2J", "--set hostname=a\\x1b[2J:"),
])
def test_set_errors_point_at_the_set_argument_not_the_file(tmp_path, assignment, message):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nprocess: {command: [/bin/true]}\n")
    with pytest.raises(SpecError) as info:
        load_file(path, overrides=[assignment])
    text = str(info.value)
    assert text.startswith(message) and str(path) not in text, text
    out = CliRunner().invoke(app, ["plan", str(path), "--set", assignment])
    assert out.exit_code == 65 and message in out.output and "Traceback" not in out.output


def test_spec_file_name_is_the_default_workload_name(tmp_path):
    path = tmp_path / "my-job.yaml"
    path.write_text("version: 1\nnamespaces: [user]\nprocess: {command: [/bin/true]}\n")
    assert build_plan(load_file(path), source=str(path)).name == "my-job"


def test_cli_validate_formats_and_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nprocess: {command: [/bin/true]}\n")
    bad = REPO / "tests" / "bad" / "typo-top-level.yaml"
    proc = cli("validate", str(good))
    assert proc.returncode == 0 and "1 valid, 0 invalid" in proc.stderr
    proc = cli("validate", str(good), str(bad))
    assert proc.returncode == 65
    assert f"{bad}:4:1: namspaces: unknown field; did you mean `namespaces`?" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("validate", "--format", "github", str(bad))
    assert proc.stdout.strip() == f"::error file={bad},line=4,col=1::namspaces: unknown field; did you mean `namespaces`?"
    proc = cli("validate", "--format", "json", str(tmp_path), str(REPO / "tests" / "bad"))
    report = json.loads(proc.stdout)
    assert report["valid"] == [str(good)]
    assert len({p["file"] for p in report["problems"]}) == len(BAD)
    proc = cli("validate", str(tmp_path / "nope-*.yaml"))
    assert proc.returncode == 65 and "no file matches" in proc.stderr


def test_cli_schema_prints_the_checked_in_file():
    proc = cli("schema")
    assert proc.returncode == 0 and proc.stdout == SCHEMA_FILE.read_text()


def test_cli_plan_lists_steps_in_checkpoint_order(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [user, pid, uts]\nhostname: h\nprocess: {command: [sh, -c, 'true']}\n")
    proc = cli("plan", "--json", str(spec))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    names = [s["step"] for s in plan["steps"]]
    # The default capability set (docker's) brings the bounding and capabilities steps.
    assert [n for n in names if n not in ("network", "cgroupns")] == [
        "spawn", "idmap", "session", "ns_root", "hostname", "bounding", "user", "capabilities", "cwd", "keyring",
        "signals", "pdeathsig", "close_fds", "no_new_privs", "exec"]
    exec_step = plan["steps"][-1]
    assert exec_step["args"]["path"] in ("/usr/bin/sh", "/bin/sh")  # resolved on PATH
    assert all(s["why"] and s["side"] in ("agent", "host", "child") for s in plan["steps"])
    text = cli("plan", str(spec)).stdout
    assert re.search(r"^ 1\. spawn\s+\[agent\]", text, re.M)


def test_cli_set_overrides_plan_and_validate(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [user, uts]\nprocess: {command: [/bin/true]}\n")
    plan = json.loads(cli("plan", "--json", "--set", "hostname=from-set", str(spec)).stdout)
    assert {"hostname": "from-set", "domainname": None} in [s["args"] for s in plan["steps"]]
    bad = cli("validate", "--set", "process.cwd=relative", str(spec))
    assert bad.returncode == 65 and "cwd must be an absolute path" in bad.stderr
    assert cli("validate", "--set", "process.cwd=/tmp", str(spec)).returncode == 0


@pytest.mark.parametrize("given,real", [("pid", "net"), ("net", "mount"), ("user", "uts"), ("mount", "pid")])
def test_cli_plan_refuses_a_joined_path_of_another_kind(tmp_path, given, real):
    # issue 20: before, setns(fd, CLONE_NEWPID) failed with a bare EINVAL at spawn.
    holder = subprocess.Popen(["sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/{'mnt' if real == 'mount' else real}"
        spec = tmp_path / "j.yaml"
        spec.write_text(f"version: 1\nnamespaces: {{{given}: {{join: {path}}}, user: new}}\n"
                        "process: {command: [/bin/true]}\n")
        if given == "user":
            spec.write_text(spec.read_text().replace(", user: new", ""))
        proc = cli("plan", str(spec))
        assert proc.returncode == 66, proc.stderr
        assert f"namespaces.{given}.join: {path} is a {real} namespace, not a {given} namespace" in proc.stderr
        assert "Traceback" not in proc.stderr
        right = spec.read_text().replace(f"ns/{'mnt' if real == 'mount' else real}", f"ns/{'mnt' if given == 'mount' else given}")
        spec.write_text(right)
        proc = cli("plan", str(spec))
        assert proc.returncode == 0, proc.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("kind,field", [("mount", "mounts: {entries: [{type: tmpfs, target: /tmp}]}"),
                                        ("uts", "hostname: joined")])
def test_cli_plan_changes_a_joined_namespace_but_never_the_runtimes_own(tmp_path, kind, field):
    # runtime-tools linux_ns_path: mounts (a hostname) go into a mount (uts) namespace joined
    # by path, as runc; the runtime's own one (here: plan's own, /proc/self) is the host's.
    proc_kind = "mnt" if kind == "mount" else kind
    spec = tmp_path / "j.yaml"
    spec.write_text(f"version: 1\nnamespaces: {{{kind}: {{join: /proc/self/ns/{proc_kind}}}, user: new}}\n"
                    f"{field}\nprocess: {{command: [/bin/true]}}\n")
    proc = cli("plan", str(spec))
    assert proc.returncode == 66, proc.stderr
    assert f"/proc/self/ns/{proc_kind} is the runtime's own {kind} namespace" in proc.stderr
    holder = subprocess.Popen(["unshare", "--user", f"--{kind}", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/{proc_kind}") == os.readlink(f"/proc/self/ns/{proc_kind}"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        spec.write_text(spec.read_text().replace("/proc/self/", f"/proc/{holder.pid}/"))
        plan = json.loads(cli("plan", "--json", str(spec)).stdout)
        step = "mounts" if kind == "mount" else "hostname"
        assert step in [s["step"] for s in plan["steps"]]
    finally:
        holder.kill()
        holder.wait()


def test_cli_plan_refuses_a_joined_path_that_is_no_namespace(tmp_path):
    spec = tmp_path / "j.yaml"
    spec.write_text(f"version: 1\nnamespaces: {{user: new, net: {{join: {spec}}}}}\nprocess: {{command: [/bin/true]}}\n")
    proc = cli("plan", str(spec))
    assert proc.returncode == 66 and f"namespaces.net.join: {spec} is not a namespace file" in proc.stderr


def test_cli_plan_reports_what_the_host_cannot_honour(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [pid]\nhostname: h\nprocess: {command: [no-such-program-xyz]}\n")
    proc = cli("plan", str(spec))
    assert proc.returncode == 66
    assert "hostname" in proc.stderr and "remedy" in proc.stderr
    spec.write_text("version: 1\nprocess: {command: [no-such-program-xyz]}\n")
    proc = cli("plan", str(spec))
    assert proc.returncode == 66 and "`no-such-program-xyz` not found on PATH" in proc.stderr


def test_subordinate_ranges_read_the_callers_lines_only(tmp_path, monkeypatch):
    from linx_spec.plan import idmap

    f = tmp_path / "subuid"
    me = idmap._caller_name()
    f.write_text(f"someone:100000:65536\n{me}:200000:1000\nbroken line\n{os.geteuid()}:300000:70000\n{me}:x:1\n")
    assert idmap.subordinate_ranges("uid", str(f)) == [(200000, 1000), (300000, 70000)]
    assert idmap.subordinate_ranges("uid", str(tmp_path / "absent")) == []


@pytest.mark.parametrize("text,message", [
    ("{container: 0, host: self, count: 2}", "`host: self` maps one id"),
    ("{container: 0, host: someone}", "idmap.uid"),
])
def test_bad_symbolic_hosts(text, message):
    spec = ("version: 1\nnamespaces: [user]\nidmap:\n  uid: [" + text + "]\n  gid: [{container: 0, host: self}]\n"
            "process: {command: [/bin/true]}\n")
    with pytest.raises(SpecError) as info:
        load_text(spec)
    assert message in str(info.value)
