"""The plan cache's keys and dependencies (linx_spec/fastpath.py), without root
and without running anything: a plan is built and stored as `apply` would,
then each class of dependency is changed and must turn the hit into a miss
that names it; what the plan does not depend on must not."""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path

import pytest

from linx_spec import fastpath, mountinfo
from linx_spec.load import load_file
from linx_spec.plan.build import build_plan


@pytest.fixture(autouse=True)
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def _store(spec) -> str:
    plan = build_plan(load_file(spec), source=str(spec), base_dir=str(spec.parent))
    return fastpath.store(str(spec), plan)


def _hits(spec) -> tuple[bool, str]:
    plan, why = fastpath.lookup(str(spec))
    return plan is not None, why


def _program(path, text="#!/bin/sh\nexit 0\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _spec(tmp_path, body: str):
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\n" + body)
    return spec


def test_a_path_inside_shell_text_is_not_a_dependency(tmp_path):
    # The workload reads it when it runs; the plan is the same whatever it holds.
    data = tmp_path / "data.txt"
    data.write_text("one")
    spec = _spec(tmp_path, f"process: {{command: [/bin/sh, -c, 'cat {data} /proc/self/ns/net']}}\n")
    assert _store(spec).startswith("stored")
    data.write_text("two and more")
    assert _hits(spec) == (True, "hit (2 dependencies unchanged)")


def test_the_spec_text_and_its_variables_are_the_key(tmp_path, monkeypatch):
    spec = _spec(tmp_path, "process: {command: [/bin/true], env: {A: '${LX_TEST_A:-x}'}}\n")
    _store(spec)
    assert _hits(spec)[0]
    monkeypatch.setenv("LX_TEST_A", "y")
    hit, why = _hits(spec)
    assert not hit and why.startswith("no entry")
    monkeypatch.delenv("LX_TEST_A")
    assert _hits(spec)[0]
    spec.write_text(spec.read_text() + "# a comment\n")
    assert not _hits(spec)[0]


def test_set_values_are_part_of_the_key_in_order(tmp_path):
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\n")
    one, two = ["process.env.A=1", "process.env.A=2"], ["process.env.A=2", "process.env.A=1"]
    plan = build_plan(load_file(spec, overrides=one), source=str(spec), base_dir=str(tmp_path))
    assert fastpath.store(str(spec), plan, one).startswith("stored")
    back, why = fastpath.lookup(str(spec), one)
    assert back == plan and "A=2" in back.process.env, why
    assert fastpath.lookup(str(spec), two)[0] is None  # the last --set wins: another plan
    assert fastpath.lookup(str(spec))[0] is None  # and without --set, another again


@pytest.mark.parametrize("args, overrides", [
    (["s.yaml"], []),
    (["-v", "s.yaml", "-d", "-q"], []),
    (["s.yaml", "--set", "name=x", "--set=process.umask=18", "-e", "A=1", "--env=B=", "--init"],
     ["name=x", "process.umask=18", "process.env.A=1", "process.env.B=", "process.init=true"]),
    (["--env", "A=1", "--set", "name=y", "s.yaml"], ["name=y", "process.env.A=1"]),  # as commands.apply
])
def test_the_apply_forms_taken_without_typer(args, overrides):
    opts = fastpath.parse_apply(args)
    assert opts is not None and "unknown" not in opts and opts["file"] == "s.yaml"
    assert opts["overrides"] == overrides


@pytest.mark.parametrize("args", [
    ["-"], ["a.yaml", "b.yaml"], [], ["s.yaml", "--set"], ["s.yaml", "--env", "A.B=1"], ["s.yaml", "-e", "nokey"],
])
def test_other_forms_go_to_typer(args):
    assert fastpath.parse_apply(args) is None
    assert fastpath.try_apply(args) is None


@pytest.mark.parametrize("option", ["-t", "--timeout=3s", "--restart", "--revert-released", "-dv", "--"])
def test_options_not_taken_here_go_to_typer(option):
    assert fastpath.parse_apply(["s.yaml", option])["unknown"] == option.split("=")[0]
    assert fastpath.try_apply(["s.yaml", option]) is None


def test_detach_and_set_run_through_the_fast_path(tmp_path, monkeypatch):
    """-d and --set: planned here on a miss, read back on a hit, handed to apply_plan."""
    from linx_spec import apply

    calls = []
    monkeypatch.setattr(apply, "apply_plan", lambda plan, **kw: calls.append((plan, kw)) or 0)
    spec = _spec(tmp_path, "name: fp\nprocess: {command: [/bin/true]}\n")
    args = [str(spec), "-d", "-q", "--set", "name=fp2", "-e", "K=V"]
    assert fastpath.try_apply(args) == 0  # a miss: validated, planned and stored here
    assert fastpath.lookup(str(spec), ["name=fp2", "process.env.K=V"])[1].startswith("hit")
    assert fastpath.try_apply(args) == 0  # a hit
    (first, kw1), (second, kw2) = calls
    assert first == second and first.name == "fp2" and "K=V" in first.process.env
    assert kw1 == kw2 == {"verbose": False, "detach": True, "quiet": True}


def test_the_program_and_earlier_path_candidates(tmp_path):
    late = _program(tmp_path / "b" / "prog")
    spec = _spec(tmp_path, f"process: {{command: [prog], env: {{PATH: 'rel:{tmp_path}/a:{tmp_path}/b'}}}}\n")
    _store(spec)
    assert _hits(spec)[0]
    _program(late, "#!/bin/sh\nexit 1\n")  # rewritten: another size and mtime
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {late} changed")
    _store(spec)
    _program(tmp_path / "a" / "prog")  # now found earlier on PATH: another plan
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {tmp_path}/a/prog changed (- ->")


def test_rootfs_binds_and_absent_optional_binds(tmp_path):
    root = tmp_path / "root"
    _program(root / "bin" / "prog")
    src = tmp_path / "src"
    src.mkdir()
    spec = _spec(tmp_path, "namespaces: [user, mount]\nprocess: {command: [/bin/prog]}\n"
                 "mounts: {rootfs: ./root, entries: [{type: bind, source: ./src, target: /src},"
                 " {type: bind, source: ./later, target: /later, optional: true}]}\n")
    _store(spec)
    assert _hits(spec)[0]
    (root / "newfile").write_text("")  # a workload writing into its root changes nothing the plan holds
    (src / "newfile").write_text("")
    assert _hits(spec)[0]
    (tmp_path / "later").mkdir()  # the optional source appears: the plan would bind it now
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {tmp_path}/later changed (- -> d ")
    _store(spec)
    src.rename(tmp_path / "old")
    src.mkdir()  # another directory under the same name
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {src} changed")
    _store(spec)
    root.rename(tmp_path / "oldroot")
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {root} changed")


def test_seccomp_profile(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}')
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\nseccomp: {profile: p.json}\n")
    _store(spec)
    assert _hits(spec)[0]
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mbind"], '
                       '"action": "SCMP_ACT_ERRNO"}]}')
    hit, why = _hits(spec)
    assert not hit and why.startswith(f"path {profile} changed")


def test_cgroup_hierarchies_and_no_other_mount(tmp_path, monkeypatch):
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\ncgroup: {pids: {max: 10}}\n")
    try:
        _store(spec)
    except Exception as exc:  # noqa: BLE001 - a host without a pids controller plans nothing
        pytest.skip(f"no cgroup plan on this host: {exc}")
    assert _hits(spec)[0]
    real = mountinfo.read()
    other = "999 1 0:99 / /mnt/elsewhere rw - tmpfs tmpfs rw"
    monkeypatch.setattr(mountinfo, "read", lambda pid="self": real + mountinfo.parse(other))
    assert _hits(spec)[0]  # a mount the plan does not depend on
    cg = "998 1 0:98 / /sys/fs/cgroup/extra rw - cgroup cgroup rw,freezer"
    monkeypatch.setattr(mountinfo, "read", lambda pid="self": real + mountinfo.parse(cg))
    hit, why = _hits(spec)
    assert not hit and why.startswith("cgroup mounts")


def test_caller_rlimits(tmp_path):
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\nrlimits: {nofile: {soft: 64}}\n")
    _store(spec)
    assert _hits(spec)[0]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
    try:
        hit, why = _hits(spec)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not hit and why.startswith("caller rlimits")


def test_network_interfaces_named(tmp_path, monkeypatch):
    net = tmp_path / "net"
    (net / "parent0").mkdir(parents=True)
    (net / "parent0" / "mtu").write_text("1500\n")
    monkeypatch.setattr("linx_spec.plan.network.SYS_CLASS_NET", str(net))
    monkeypatch.setattr(fastpath, "_SYS_CLASS_NET", str(net))
    if os.geteuid() != 0:
        monkeypatch.setattr("os.geteuid", lambda: 0)
    spec = _spec(tmp_path, "namespaces: [net]\nprocess: {command: [/bin/true]}\nnetwork: {interfaces: ["
                 "{type: macvlan, name: m0, parent: parent0}, {type: veth, name: eth0, host: {name: lxfp0}}]}\n")
    _store(spec)
    assert _hits(spec)[0]
    (net / "parent0" / "mtu").write_text("1400\n")
    hit, why = _hits(spec)
    assert not hit and why == "interface parent0 changed (mtu 1500 -> mtu 1400)"
    _store(spec)
    (net / "lxfp0").mkdir()  # the veth's host name is taken now: planning again says so
    hit, why = _hits(spec)
    assert not hit and why == "interface lxfp0 changed (- -> present)"


def test_bounded_least_recently_used_first(tmp_path, monkeypatch, runtime):
    monkeypatch.setattr(fastpath, "MAX_ENTRIES", 3)
    specs = []
    for n in range(4):
        spec = tmp_path / f"s{n}.yaml"
        spec.write_text(f"version: 1\nprocess: {{command: [/bin/true, '{n}']}}\n")
        specs.append(spec)
    for n, spec in enumerate(specs[:3]):
        _store(spec)
        os.utime(runtime / ".plans" / fastpath._key(str(spec), spec.read_bytes()), ns=(n * 10**9, n * 10**9))
    assert _hits(specs[0])[0]  # a hit makes s0 the most recently used
    _store(specs[3])
    assert [_hits(s)[0] for s in specs] == [True, False, True, True]
    assert len(os.listdir(runtime / ".plans")) == 3


def test_an_entry_too_large_is_not_stored(tmp_path, monkeypatch, runtime):
    monkeypatch.setattr(fastpath, "MAX_ENTRY_BYTES", 100)
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\n")
    assert _store(spec).startswith("not stored: the plan takes")
    assert not _hits(spec)[0]


def test_cache_directory_is_private(tmp_path, runtime):
    spec = _spec(tmp_path, "process: {command: [/bin/true]}\n")
    _store(spec)
    assert stat.S_IMODE((runtime / ".plans").stat().st_mode) == 0o700
    for entry in (runtime / ".plans").iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600


# What the cached path must not import: the validation and CLI frameworks, netlink
# and libseccomp (a cached plan carries the compiled filter), the live-apply code
# (only when a state.json of the name exists), and the stdlib modules it avoids on
# purpose (each costs 1-5 ms of a cold start: fastpath.py, agent.py, plan/network.py), among
# them typing and dataclasses with inspect (the Plan's types are records: record.py), the json
# package, base64 and signal.py (stored.py and the runner use the C modules under them),
# threading and contextlib, and with them re; enum (the protocol's numbers: intenum.py).
NOT_ON_THE_CACHED_PATH = ("pydantic", "yaml", "typer", "click", "pyroute2", "linx_spec.spec", "linx_spec.load",
                          "linx_spec.seccomp", "linx_spec.commands", "linx_spec.live", "linx_spec.state",
                          "socket", "ipaddress", "hashlib", "subprocess", "pathlib", "shutil",
                          "typing", "dataclasses", "inspect", "ast", "dis", "tokenize",
                          "json", "base64", "signal", "threading", "contextlib", "re", "enum")

CACHED_PATH = """
import sys
from linx_spec import fastpath
plan, why = fastpath.lookup(sys.argv[1])
assert plan is not None, why
from linx_spec import apply, runner                      # what apply_plan runs with
from linx_spec.host import idmap                          # the host step a plan without a cgroup runs
assert not apply._has_state(plan.name)
print(" ".join(m for m in sys.argv[2:] if m in sys.modules) or "-")
"""


def test_the_cached_path_imports_only_what_running_a_plan_needs(tmp_path, runtime):
    import subprocess
    import sys

    spec = _spec(tmp_path, "name: lean\nnamespaces: [user, pid, net, mount, uts, ipc]\n"
                           "process: {command: [/bin/true]}\ncapabilities: {keep: [kill]}\n"
                           "seccomp: {default: allow, rules: [{syscalls: [reboot], action: errno EPERM}]}\n")
    assert _store(spec).startswith("stored")
    env = dict(os.environ, LINX_RUNTIME_DIR=str(runtime), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", CACHED_PATH, str(spec), *NOT_ON_THE_CACHED_PATH],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["-"]
