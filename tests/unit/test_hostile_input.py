"""Hostile spec files (issue 14 item 8): each is refused with a SpecError that names
the file and line, within a small budget of time and memory, never a traceback,
never a hang."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from conftest import cli
from linx_spec import SpecError, load_file, load_text
from linx_spec.load import MAX_DEPTH, MAX_VALUES
from linx_spec.spec import Process

GOOD = "version: 1\nprocess: {command: [/bin/true]}\n"


def refused(text: str, **kw) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(text, "hostile.yaml", env={}, **kw)
    return [str(p) for p in info.value.problems]


def test_a_1kb_alias_bomb_stops_at_the_budget_with_its_line():
    # Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = GOOD + "\n".join(levels) + "\n"
    assert len(text) < 1100
    tracemalloc.start()
    try:
        problems = refused(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("alias bomb" in p and p.startswith("hostile.yaml:") and ":0:" not in p for p in problems), problems
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


def test_aliases_within_the_budget_still_work():
    spec = load_text("version: 1\nprocess:\n  command: [/bin/echo, &w hi]\n  env: {A: *w}\nname: &n web\nhostname: *n\n",
                     "ok.yaml", env={})
    assert spec.hostname == "web" and spec.process.env == {"A": "hi"}


def test_100000_nested_brackets_are_a_spec_error_not_a_recursion_error():
    problems = refused("[" * 100_000)
    assert problems == [f"hostile.yaml:1:{MAX_DEPTH + 1}: YAML syntax: nested more than {MAX_DEPTH} levels deep"]
    problems = refused(GOOD + "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    assert any(f"nested more than {MAX_DEPTH} levels deep" in p for p in problems), problems


def test_nesting_within_the_bound_loads():
    load_text(GOOD + "# fine\n", "ok.yaml", env={})
    with pytest.raises(SpecError) as info:  # deep but bounded: an unknown field, not a depth error
        load_text(GOOD + "x: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n", "ok.yaml", env={})
    assert "unknown field" in str(info.value)


def test_a_recursive_alias_is_refused():
    assert refused("version: 1\nprocess: {command: &a [/bin/true, *a]}\n") == [
        "hostile.yaml:2:20: an alias refers to a collection that contains it (a recursive structure)"]


@pytest.mark.parametrize("text, line, tag", [
    ("version: 1\nprocess: !!python/object/apply:os.system [echo pwned]\n", 2, "python/object/apply:os.system"),
    ("version: 1\nprocess: !!python/object/new:os.system {command: [/bin/true]}\n", 2, "python/object/new"),
    ("version: 1\nprocess:\n  command: [/bin/true]\n  cwd: !foo /tmp\n", 4, "`!foo`"),
    ("version: 1\nprocess: {command: !!set {/bin/true: null}}\n", 2, "set"),
    ("version: 1\nprocess: {command: [!!binary aGk=]}\n", 2, "binary"),
    ("version: 1\n!foo process: {command: [/bin/true]}\n", 2, "keys must be plain scalars"),
])
def test_an_unknown_tag_is_refused_with_its_line(text, line, tag):
    problems = refused(text)
    assert any(p.startswith(f"hostile.yaml:{line}:") and tag in p for p in problems), problems


def test_standard_tags_are_still_accepted():
    spec = load_text("version: !!int 1\nprocess: !!map {command: !!seq [!!str /bin/true], cwd: !!str /}\n",
                     "ok.yaml", env={})
    assert spec.process.cwd == "/"


@pytest.mark.parametrize("field, text", [
    ("cwd", 'process: {command: [/bin/true], cwd: "/tmp\\0/../etc"}'),
    ("command", 'process: {command: ["/bin/true", "a\\0b"]}'),
    ("program", 'process: {command: ["/bin/tr\\0ue"]}'),
    ("env value", 'process: {command: [/bin/true], env: {A: "x\\0y"}}'),
    ("env name", 'process: {command: [/bin/true], env: {"A\\0B": "x"}}'),
    ("hostname", 'process: {command: [/bin/true]}\nhostname: "web\\0"'),
    ("domainname", 'process: {command: [/bin/true]}\ndomainname: "d\\0"'),
    ("stdout file", 'process: {command: [/bin/true]}\nstdio: {stdout: {file: "out\\0.log"}}'),
    ("join", 'process: {command: [/bin/true]}\nnamespaces: {net: {join: "/run/netns/x\\0"}}'),
    ("rootfs", 'process: {command: [/bin/true]}\nmounts: {rootfs: "/srv/r\\0"}'),
    ("bind source", 'process: {command: [/bin/true]}\nmounts: {entries: [{type: bind, source: "/us\\0r", target: /usr}]}'),
    ("mount target", 'process: {command: [/bin/true]}\nmounts: {entries: [{type: tmpfs, target: "/tm\\0p"}]}'),
    ("cgroup parent", 'process: {command: [/bin/true]}\ncgroup: {parent: "/linx\\0"}'),
    ("io device", 'process: {command: [/bin/true]}\ncgroup: {io: {limits: [{device: "/dev/vd\\0a", read_bps: 1}]}}'),
    ("interface", 'process: {command: [/bin/true]}\nnetwork: {interfaces: [{type: veth, name: "e\\0"}]}'),
])
def test_a_nul_in_any_string_is_refused_by_validation(field, text):
    problems = refused("version: 1\n" + text + "\n")
    assert any(("NUL" in p or "not a valid" in p or "should match" in p) and ":0:" not in p for p in problems), problems


def test_a_nul_is_refused_by_the_models_too_and_by_set():
    with pytest.raises(ValueError, match="NUL"):
        Process(command=["/bin/true"], cwd="/tmp\0/../etc")
    with pytest.raises(ValueError, match="NUL"):
        Process(command=["/bin/true"], env={"A": "b\0c"})
    assert refused(GOOD, overrides=['process.cwd="/a\\0b"']) == [
        '--set process.cwd="/a\\0b": a NUL character (\\0) is not allowed']


def test_a_deep_or_tagged_set_value_is_a_spec_error():
    # Too deep to be YAML: the value stays the literal text (as any non-YAML override does).
    deep = "[" * 50_000 + "]" * 50_000
    assert load_text(GOOD, "ok.yaml", env={}, overrides=["process.env.A=" + deep]).process.env["A"] == deep
    with pytest.raises(SpecError):
        load_text(GOOD, "ok.yaml", env={}, overrides=["process.cwd=!!python/object/apply:os.getcwd []"])
    # ${VAR} in an override stays literal, as before.
    spec = load_text(GOOD, "ok.yaml", env={}, overrides=["process.env.A=${HOME}"])
    assert spec.process.env["A"] == "${HOME}"


def test_budget_constants_leave_room_for_real_specs():
    assert MAX_VALUES >= 10_000 and MAX_DEPTH >= 32


# --- the SPEC file itself -------------------------------------------------------------

def test_a_fifo_or_device_as_spec_is_refused_at_once(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), ("/dev/zero", "a device"), (tmp_path, "a directory")):
        with pytest.raises(SpecError) as info:
            load_file(path)
        assert str(info.value.problems[0]) == f"{path}: is {kind}; a spec must be a regular file"


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_the_cli_does_not_block_on_a_fifo(tmp_path, command):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    proc = cli(command, str(fifo), timeout=30)  # before: blocked for ever in open(2)
    assert proc.returncode == 65, proc.stderr
    assert "is a FIFO; a spec must be a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_oversized_spec_file_is_refused(tmp_path):
    from linx_spec.specfile import MAX_SPEC_BYTES

    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecError, match="a spec is at most"):
        load_file(big)


@pytest.mark.parametrize("stem", ["evil\nname", "tab\tname", "-dash", "sp ace", "é", "x" * 64])
def test_a_file_name_that_is_no_valid_workload_name_is_refused_without_name(tmp_path, stem):
    path = tmp_path / f"{stem}.yaml"
    path.write_text(GOOD)
    with pytest.raises(SpecError) as info:
        load_file(path)
    (p,) = info.value.problems
    assert p.field == "name" and p.line == 1 and "add `name:`" in p.message and repr(stem) in p.message
    path.write_text(GOOD + "name: fine\n")
    assert load_file(path).name == "fine"


def test_a_plain_file_name_still_names_the_workload(tmp_path):
    from linx_spec import build_plan

    path = tmp_path / "web.v2_x.yaml"
    path.write_text(GOOD)
    assert build_plan(load_file(path), source=str(path), base_dir=str(tmp_path)).name == "web.v2_x"


# --- argv and env against execve's limits (tests/integration/test_execve_limits.py runs them) ----

def _env_of(total: int, command: list[str]) -> dict[str, str]:
    from linx_spec.spec.process import execve_bytes

    env, left, i = {}, total - execve_bytes(command, {}), 0
    while left > 0:
        size = min(left, 100_000)
        env[f"V{i:03d}"] = "x" * (size - 4 - 1 - 1 - 8)
        left, i = left - size, i + 1
    return env


def test_argv_and_env_are_bounded_at_both_edges():
    from linx_spec.spec.process import ARGV_ENV_MAX_BYTES, MAX_ARG_STRLEN

    cmd = ["/bin/true"]
    Process(command=cmd, env=_env_of(ARGV_ENV_MAX_BYTES, cmd))
    with pytest.raises(ValueError, match="at most 524288"):
        Process(command=cmd, env=_env_of(ARGV_ENV_MAX_BYTES + 1, cmd))
    Process(command=["/bin/echo", "y" * (MAX_ARG_STRLEN - 1)])
    with pytest.raises(ValueError, match="MAX_ARG_STRLEN"):
        Process(command=["/bin/echo", "y" * MAX_ARG_STRLEN])
    with pytest.raises(ValueError, match="MAX_ARG_STRLEN"):
        Process(command=cmd, env={"A": "y" * (MAX_ARG_STRLEN - 2)})


def test_a_small_stack_rlimit_lowers_the_argv_bound():
    env = {f"V{i}": "x" * 50_000 for i in range(4)}  # 200 KB: fine with the default stack
    text = "version: 1\nprocess: {command: [/bin/true], env: %s}\n" % env
    load_text(text, "ok.yaml", env={})
    problems = refused(text + "rlimits: {stack: 512Ki}\n")  # execve allows 128 KiB then
    assert any("execve allows 131072" in p for p in problems), problems
    load_text(text + "rlimits: {stack: 1Mi}\n", "ok.yaml", env={})  # a quarter: 256 KiB
