"""linx-oci without root: the runc-style command line, signals, hooks parsing,
the state file and its status words, features.  The lifecycle itself runs in
tests/integration/test_oci_runtime.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from linx_spec import stored
from linx_spec.oci import hooks as H
from linx_spec.oci.main import Usage, main, parse_command, parse_global, parse_signal
from linx_spec.oci.record import HOOK_KINDS, Hook, Record, Root, state_json, status

REPO = Path(__file__).resolve().parents[2]


def test_global_flags_as_shims_pass_them():
    # containerd's go-runc: --root R --log F --log-format json [--systemd-cgroup] CMD ...
    g, rest = parse_global(["--root", "/r", "--log=/l", "--log-format", "json", "--debug", "state", "x"])
    assert g == {"root": "/r", "log": "/l", "log-format": "json", "debug": True} and rest == ["state", "x"]
    g, rest = parse_global(["-root", "/r", "--rootless=false", "list"])
    assert g["root"] == "/r" and rest == ["list"]
    with pytest.raises(Usage):
        parse_global(["--bogus", "state"])


def test_command_flags():
    opts, args = parse_command("create", ["--bundle", "/b", "--pid-file=/p", "--no-pivot", "id1"])
    assert opts == {"bundle": "/b", "pid-file": "/p", "no-pivot": True} and args == ["id1"]
    opts, args = parse_command("kill", ["--all", "id1", "KILL"])
    assert opts == {"all": True} and args == ["id1", "KILL"]
    opts, args = parse_command("exec", ["-d", "--env", "A=1", "-e", "B=2", "id1", "sh", "-c", "echo --x"])
    assert opts == {"detach": True, "env": ["A=1", "B=2"]} and args == ["id1", "sh", "-c", "echo --x"]
    with pytest.raises(Usage):
        parse_command("start", ["--nope", "x"])


@pytest.mark.parametrize("text,n", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15), ("SIGUSR1", 10),
                                    ("RTMIN+2", signal.SIGRTMIN + 2), ("SIGRTMAX", signal.SIGRTMAX)])
def test_signals_by_name_and_number(text, n):
    assert parse_signal(text) == n


@pytest.mark.parametrize("text", ["0", "65", "SIGNOPE", "RTMIN+99", "-1", "__class__"])
def test_bad_signals(text):
    with pytest.raises(Usage):
        parse_signal(text)


def test_hooks_parse_and_bounds():
    parsed = H.parse({"createRuntime": [{"path": "/bin/x", "args": ["x", "1"], "env": ["A=b"], "timeout": 3}],
                      "poststop": []})
    assert parsed == {"createRuntime": (Hook("/bin/x", ("x", "1"), ("A=b",), 3),)}
    for bad in ({"nope": []}, {"prestart": [{"path": "rel"}]}, {"prestart": [{"path": "/x", "timeout": 0}]},
                {"prestart": [{"path": "/x", "timeout": True}]}, {"prestart": [{"path": "/x", "args": [1]}]},
                {"prestart": [{"path": "/x", "extra": 1}]}, {"prestart": [{"path": "/x\0"}]}, []):
        with pytest.raises(ValueError):
            H.parse(bad)


def test_hook_failures_and_stdin(tmp_path):
    out = tmp_path / "stdin"
    ok = Hook("/bin/sh", ("sh", "-c", f"cat > {out}"))
    H.run("poststart", {"poststart": (ok,)}, {"id": "x", "status": "running"})
    assert json.loads(out.read_text()) == {"id": "x", "status": "running"}
    from linx_spec.errors import StepError

    with pytest.raises(StepError, match="exit code 4"):
        H.run("prestart", {"prestart": (Hook("/bin/sh", ("sh", "-c", "exit 4")),)}, {})
    with pytest.raises(StepError, match="timed out after 1s"):
        H.run("prestart", {"prestart": (Hook("/bin/sleep", ("sleep", "20"), (), 1),)}, {})
    warned = []
    H.run_warn("poststop", {"poststop": (Hook("/bin/false"), ok)}, {"id": "y"}, warned.append)
    assert len(warned) == 1 and json.loads(out.read_text()) == {"id": "y"}  # the second still ran


def test_record_round_trips_as_typed_json():
    r = Record("c1", "/b", "2026-01-01T00:00:00Z", "created", pid=5, annotations={"a": "b"},
               hooks={"poststop": (Hook("/x", ("x",), (), 2),)}, cgroups=("/sys/fs/cgroup/pids/linx/linx-c1-5",))
    assert stored.loads(Record, stored.dumps(r)) == r
    with pytest.raises(stored.BadData):
        stored.loads(Record, stored.dumps(r).replace(b'"pid":5', b'"pid":"5"'))


def test_status_is_checked_against_the_kernel():
    me = os.getpid()
    from linx_spec.state import pid_start_time

    start = pid_start_time(me)
    live = Record("c", "/b", "t", "running", pid=me, pid_start=start)
    assert status(live) == "running" and state_json(live)["pid"] == me
    assert status(Record("c", "/b", "t", "running", pid=me, pid_start=start + 1)) == "stopped"  # recycled pid
    # created needs its holder alive too
    assert status(Record("c", "/b", "t", "created", pid=me, pid_start=start)) == "stopped"
    assert status(Record("c", "/b", "t", "created", pid=me, pid_start=start, holder_pid=me,
                         holder_start=start)) == "created"
    gone = Record("c", "/b", "t", "running", pid=me, pid_start=start + 1, annotations={"k": "v"})
    st = state_json(gone)
    assert st["status"] == "stopped" and st["pid"] == 0 and st["annotations"] == {"k": "v"}
    assert set(st) >= {"ociVersion", "id", "status", "pid", "bundle"}


def test_root_is_0700_and_ids_are_checked(tmp_path):
    root = Root(str(tmp_path / "r"))
    c = root.container("abc")
    c.make()
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "r" / "abc").stat().st_mode & 0o777 == 0o700
    assert root.ids() == ["abc"]
    from linx_spec.errors import StateError

    for bad in ("../x", "", ".", "a/b", "x" * 256, "a\0b"):
        with pytest.raises(StateError):
            root.container(bad)
    os.chmod(tmp_path / "r", 0o777)
    with pytest.raises(StateError, match="writable by others"):
        root.ids()


def test_features_lists_come_from_the_code():
    from linx_spec.oci.features import features

    f = features()
    assert f["hooks"] == list(HOOK_KINDS)
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"]
    assert {"pid", "network", "mount", "user"} <= set(f["linux"]["namespaces"])
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert f["linux"]["cgroup"]["systemd"] is False


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "linx_spec.oci.main", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)


def test_cli_version_usage_and_systemd_cgroup(tmp_path):
    p = _cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("linx-oci version ") and "spec: 1.0.2-dev" in p.stdout
    p = _cli("frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr
    log = tmp_path / "log.json"
    p = _cli("--root", str(tmp_path / "r"), "--log", str(log), "--log-format", "json", "--systemd-cgroup",
             "state", "x")
    assert p.returncode == 66 and "cgroupfs" in p.stderr
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"] and entry["time"].endswith("Z")
    p = _cli("--root", str(tmp_path / "r"), "list", "--format", "json")
    assert p.returncode == 0 and json.loads(p.stdout) == []


def test_state_list_kill_import_neither_pydantic_nor_yaml():
    code = ("import sys; from linx_spec.oci import main as m; from linx_spec.oci import runtime, record; "
            "print(sorted(x for x in ('pydantic', 'yaml', 'typer') if x in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


# --- update, pause, resume, events (oci/cgroups.py) ------------------------------------

def test_update_maps_runcs_resources_to_v1_and_v2_files():
    from linx_spec.oci.cgroups import plan_update

    res = {"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
           "cpu": {"shares": 2048, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
           "pids": {"limit": 7}, "blockIO": {"weight": 500}, "unknownKey": 1}
    assert plan_update(res, False, lambda f: None) == [
        ("memory.limit_in_bytes", str(64 << 20)), ("memory.memsw.limit_in_bytes", str(96 << 20)),
        ("memory.soft_limit_in_bytes", str(32 << 20)), ("cpu.shares", "2048"), ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_quota_us", "50000"), ("blkio.weight", "500"), ("cpuset.cpus", "0-1"), ("cpuset.mems", "0"),
        ("pids.max", "7")]
    assert plan_update(res, True, lambda f: None) == [
        ("memory.max", str(64 << 20)), ("memory.swap.max", str(32 << 20)), ("memory.low", str(32 << 20)),
        ("cpu.weight", "79"), ("cpu.max", "50000 100000"), ("io.weight", "default 4950"), ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"), ("pids.max", "7")]
    # One half of cpu.max: the other is the kernel's current one; -1 is no limit.
    assert plan_update({"cpu": {"quota": -1}}, True, lambda f: "20000 50000\n") == [("cpu.max", "max 50000")]
    assert plan_update({"pids": {"limit": -1}, "memory": {"limit": -1}}, True, lambda f: None) == [
        ("memory.max", "max"), ("pids.max", "max")]


@pytest.mark.parametrize("res, words", [
    ({"cpu": {"quota": 5}}, "1000us"),
    ({"cpu": {"shares": 1}}, "cpu.shares"),
    ({"cpu": {"cpus": "0;rm"}}, "cpu.cpus"),
    ({"memory": {"limit": "1g"}}, "memory.limit"),
    ({"memory": {"limit": -2}}, "memory.limit"),
    ({"pids": {"limit": True}}, "pids.limit"),
    ({"memory": {"kernel": 1}}, "not supported"),
    ({"cpu": {"realtimeRuntime": 5}}, "not supported"),
    ({"devices": [{"allow": True}]}, "not supported"),
    ({"cpu": "x"}, "expected an object"),
])
def test_update_checks_every_value_before_writing(res, words):
    from linx_spec.errors import PlanError
    from linx_spec.oci.cgroups import plan_update

    with pytest.raises(PlanError, match=words):
        plan_update(res, False, lambda f: None)


def test_update_flags_and_resources_file(tmp_path):
    import io

    from linx_spec.errors import PlanError
    from linx_spec.oci.cgroups import resources_from

    assert resources_from({"memory": "64m", "memory-swap": "-1", "pids-limit": "9", "cpu-quota": "20000",
                           "cpuset-cpus": "0"}) == {
        "memory": {"limit": 64 << 20, "swap": -1}, "pids": {"limit": 9}, "cpu": {"quota": 20000, "cpus": "0"}}
    assert resources_from({"resources": "-"}, io.BytesIO(b'{"pids": {"limit": 3}}')) == {"pids": {"limit": 3}}
    (tmp_path / "r.json").write_text('{"memory": {"limit": 1}}')
    assert resources_from({"resources": str(tmp_path / "r.json")}) == {"memory": {"limit": 1}}
    for opts, stdin, words in (({"resources": "-"}, io.BytesIO(b"[1]"), "JSON object"),
                               ({"resources": "-"}, io.BytesIO(b"{" * 70000), "bytes"),
                               ({"memory": "lots"}, None, "expected bytes"),
                               ({"cpu-rt-runtime": "5"}, None, "not supported")):
        with pytest.raises(PlanError, match=words):
            resources_from(opts, stdin)
    # The command line parses exactly the flags update knows (main.py's table, cgroups.py's sets).
    from linx_spec.oci.cgroups import UPDATE_FLAGS
    from linx_spec.oci.main import COMMANDS

    assert COMMANDS["update"][0] == UPDATE_FLAGS


def test_paused_is_a_status_while_the_process_lives():
    import os as _os

    from linx_spec.oci.record import Record, pid_start_time, status

    me = _os.getpid()
    r = Record("c", "/b", "now", "paused", pid=me, pid_start=pid_start_time(me) or 0)
    assert status(r) == "paused"
    assert status(Record("c", "/b", "now", "paused", pid=me, pid_start=1)) == "stopped"  # another process's pid
