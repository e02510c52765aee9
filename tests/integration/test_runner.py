"""The checkpoint runner end to end, on the real kernel (issue 2)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, children, cli, start_cli
from linx_spec import ExecError, ParkedDeathError, Workload, build_plan, load_text, run

pytestmark = pytest.mark.root


def plan_of(text: str):
    return build_plan(load_text(text, "test.yaml"), source="test.yaml")


def ns_inode(path: str) -> str:
    return os.readlink(path)


def test_user_namespace_maps_root_inside_to_1000_outside(tmp_path):
    plan = plan_of("""
version: 1
namespaces: [user, pid, mount]
idmap:
  uid: [{container: 0, host: 1000, count: 1}]
  gid: [{container: 0, host: 1000, count: 1}]
process:
  command: [/bin/sh, -c, 'echo "uid=$(id -u) gid=$(id -g)"; read line']
""")
    out = tmp_path / "out"
    r, w = os.pipe()
    with open(out, "wb") as fo, Workload(plan, stdin=r, stdout=fo.fileno()) as wl:
        pid = wl.start()
        status = open(f"/proc/{pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        os.write(w, b"go\n")
        result = wl.wait()
    os.close(r)
    os.close(w)
    assert result.exit_code == 0
    assert uid_line.split()[1:] == ["1000"] * 4
    assert gid_line.split()[1:] == ["1000"] * 4
    assert out.read_text().strip() == "uid=0 gid=0"


def test_pid_namespace_workload_is_pid_1_and_host_pid_reported(run_spec):
    result, out, _ = run_spec("""
version: 1
namespaces: [pid]
process:
  command: [/bin/sh, -c, 'echo $$']
""")
    assert result.exit_code == 0
    assert out.strip() == "1"
    assert result.pid > 1 and result.pid != os.getpid()


def test_hostname_and_every_namespace_is_new(run_spec):
    host_name = os.uname().nodename
    result, out, _ = run_spec("""
version: 1
namespaces: [user, pid, net, mount, uts, ipc, cgroup, time]
hostname: inside-box
process:
  command: [/bin/sh, -c, 'hostname; for n in user pid_for_children net mnt uts ipc cgroup time_for_children; do echo "$n $(readlink /proc/self/ns/$n)"; done']
""")
    assert result.exit_code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == "inside-box"
    assert os.uname().nodename == host_name
    inside = dict(line.split(" ", 1) for line in lines[1:])
    for name, value in inside.items():
        assert value != ns_inode(f"/proc/self/ns/{name}"), name
    assert len(inside) == 8


def test_joined_namespace_is_the_targets(run_spec):
    # A sleeper in its own net and uts namespaces is the target to join.
    target = subprocess.Popen(["unshare", "--net", "--uts", "sleep", "30"])
    try:
        for _ in range(100):
            if ns_inode(f"/proc/{target.pid}/ns/net") != ns_inode("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        want_net = ns_inode(f"/proc/{target.pid}/ns/net")
        want_uts = ns_inode(f"/proc/{target.pid}/ns/uts")
        result, out, _ = run_spec(f"""
version: 1
namespaces:
  net: {{join: /proc/{target.pid}/ns/net}}
  uts: {{join: /proc/{target.pid}/ns/uts}}
  pid: new
process:
  command: [/bin/sh, -c, 'readlink /proc/self/ns/net; readlink /proc/self/ns/uts; readlink /proc/self/ns/pid_for_children']
""")
    finally:
        target.kill()
        target.wait()
    assert result.exit_code == 0
    net, uts, pid = out.split()
    assert net == want_net and uts == want_uts
    assert pid != ns_inode("/proc/self/ns/pid")


def test_join_of_missing_namespace_fails_at_spawn_and_names_the_path():
    plan = plan_of("""
version: 1
namespaces: {net: {join: /run/netns/lx-no-such-ns}}
process: {command: [/bin/true]}
""")
    with pytest.raises(Exception) as info:
        run(plan)
    assert "spawn (agent)" in str(info.value)
    assert "/run/netns/lx-no-such-ns" in str(info.value)
    assert "ENOENT" in str(info.value)


def test_no_such_binary_fails_at_exec_with_enoent_and_path():
    plan = plan_of("""
version: 1
namespaces: [pid, mount]
process: {command: [/no/such/bin, arg]}
""")
    with pytest.raises(ExecError) as info:
        run(plan)
    err = info.value
    assert err.step == "exec" and err.side == "child"
    assert err.errno == errno.ENOENT
    assert "/no/such/bin" in str(err) and "ENOENT" in str(err)


def test_no_such_binary_cli_exit_code_127(write_spec):
    path = write_spec("version: 1\nnamespaces: [pid]\nprocess: {command: [/no/such/bin]}\n")
    proc = cli("apply", str(path))
    assert proc.returncode == 127
    assert "exec (child): execve /no/such/bin: ENOENT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_abort_at_checkpoint_program_never_runs(tmp_path):
    marker = tmp_path / "ran"
    plan = plan_of(f"""
version: 1
namespaces: [user, pid]
process: {{command: [/bin/touch, {marker}]}}
""")
    wl = Workload(plan)
    pid = wl.spawn()
    assert os.path.exists(f"/proc/{pid}")
    wl.setup()
    wl.abort()
    assert wl.state == "aborted"
    time.sleep(0.1)
    assert not marker.exists()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_child_killed_while_parked_reports_its_wait_status():
    plan = plan_of("version: 1\nnamespaces: [pid]\nprocess: {command: [/bin/true]}\n")
    with Workload(plan) as wl:
        pid = wl.spawn()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        with pytest.raises(ParkedDeathError) as info:
            wl.proceed()
    assert os.WIFSIGNALED(info.value.wait_status)
    assert os.WTERMSIG(info.value.wait_status) == signal.SIGKILL
    assert "killed by signal 9" in str(info.value)


@pytest.mark.parametrize("step", ["mounts", "capabilities", "seccomp"])
def test_child_killed_during_a_step_is_reported_in_that_step(tmp_path, monkeypatch, step):
    """The child dies (SIGKILL from outside) while it runs a step: the error names
    that step and the wait status.  Steps before seccomp keep their begin in the
    page the child shares with the agent (no pipe write per step), seccomp's goes
    through the pipe: both ways end in the step the child was in."""
    monkeypatch.setenv("LINX_FAULT", f"pause:{step}")  # the child stops at the step's start
    plan = plan_of("version: 1\nnamespaces: [user, pid, mount]\nprocess: {command: [/bin/true]}\n"
                   "capabilities: {keep: [chown]}\n"
                   "seccomp: {default: allow, rules: [{syscalls: [acct], action: errno EPERM}]}\n")
    err = tmp_path / "err"
    with open(err, "wb") as fe, Workload(plan, stderr=fe.fileno()) as wl:
        pid = wl.spawn()
        wl.setup()
        seen = {}

        def release():
            try:
                wl.proceed()
            except ParkedDeathError as exc:
                seen["error"] = exc

        import threading

        t = threading.Thread(target=release)
        t.start()
        deadline = time.monotonic() + 20
        while b"linx-fault: paused" not in err.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        t.join(20)
    error = seen["error"]
    assert error.step == step and error.side == "child"
    assert os.WTERMSIG(error.wait_status) == signal.SIGKILL
    assert "killed by signal 9 (Killed) during this step" in str(error)


def test_exit_code_propagates(run_spec, write_spec):
    result, _, _ = run_spec("version: 1\nprocess: {command: [/bin/sh, -c, 'exit 42']}\n")
    assert result.exit_code == 42 and result.status == 42
    proc = cli("apply", str(write_spec("version: 1\nprocess: {command: [/bin/sh, -c, 'exit 42']}\n")))
    assert proc.returncode == 42


def test_signal_death_propagates_as_128_plus_n(write_spec, run_spec):
    # Not pid 1 of a pid namespace: init ignores signals it has no handler for.
    text = "version: 1\nnamespaces: [mount, uts]\nprocess: {command: [/bin/sh, -c, 'kill -USR1 $$']}\n"
    result, _, _ = run_spec(text)
    assert result.signal == signal.SIGUSR1 and result.exit_code is None
    assert result.status == 128 + signal.SIGUSR1
    assert cli("apply", str(write_spec(text))).returncode == 128 + signal.SIGUSR1


def test_only_stdio_fds_reach_the_workload(run_spec):
    result, out, _ = run_spec("""
version: 1
namespaces: [mount]
process: {command: [/bin/sh, -c, 'ls /proc/$$/fd']}
""")
    assert result.exit_code == 0
    assert out.split() == ["0", "1", "2"]


def test_env_is_explicit_and_cwd_applied(run_spec, monkeypatch):
    monkeypatch.setenv("LINX_SECRET_FROM_CALLER", "leaked")
    result, out, _ = run_spec("""
version: 1
process:
  command: [/usr/bin/env]
  env: {FOO: bar}
  cwd: /tmp
""")
    assert result.exit_code == 0
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "FOO": "bar"}


def test_bare_name_resolved_on_path_and_user_switch(run_spec):
    result, out, _ = run_spec("""
version: 1
namespaces: [user]
idmap:
  uid: [{container: 0, host: 100000, count: 65536}]
  gid: [{container: 0, host: 100000, count: 65536}]
process:
  command: [sh, -c, 'id -u; id -g; id -G']
  user: {uid: 1000, gid: 1001, groups: [1002, 1003]}
""")
    assert result.exit_code == 0, out
    uid, gid, groups = out.strip().splitlines()
    assert (uid, gid) == ("1000", "1001")
    assert set(groups.split()) == {"1001", "1002", "1003"}


def test_cli_sigint_reaches_the_workload(write_spec, tmp_path):
    path = write_spec("""
version: 1
namespaces: [pid]
process:
  command: [/bin/sh, -c, 'trap "echo got-INT; exit 3" INT; echo ready; while :; do sleep 0.05; done']
""")
    proc = start_cli("apply", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert "got-INT" in out, err
    assert proc.returncode == 3


def test_kill_9_of_runner_stops_the_workload(write_spec):
    path = write_spec("""
version: 1
namespaces: [pid, mount]
lifecycle: {stop_grace: 1s}
process:
  command: [/bin/sh, -c, 'echo ready; sleep 1000']
""")
    proc = start_cli("apply", str(path), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    agents = children(proc.pid)
    assert len(agents) == 1
    agent = agents[0]
    workload = children(agent)
    assert len(workload) == 1
    descendants = children(workload[0])  # the sleep
    proc.kill()
    proc.wait()
    deadline = time.time() + 4  # grace (1 s) + margin
    watched = [agent, *workload, *descendants]
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in watched):
        time.sleep(0.05)
    assert not [p for p in watched if os.path.exists(f"/proc/{p}")]
    proc.stdout.close()


def test_runner_death_stops_a_term_ignoring_workload_with_sigkill(write_spec):
    # A workload that ignores SIGTERM (not in a pid namespace: a real handler)
    # must still be gone after the grace period.
    path = write_spec("""
version: 1
namespaces: [mount]
lifecycle: {stop_grace: 2s}
process:
  command: [/bin/sh, -c, 'trap "" TERM; echo ready; while :; do sleep 0.1; done']
""")
    proc = start_cli("apply", str(path), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    agent = children(proc.pid)[0]
    workload = children(agent)[0]
    proc.kill()
    proc.wait()
    t0 = time.time()
    while time.time() - t0 < 6 and os.path.exists(f"/proc/{workload}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{workload}")
    assert time.time() - t0 >= 1.5  # it got its grace period first
    proc.stdout.close()


def test_daemonized_descendants_do_not_survive_without_pid_namespace(run_spec, tmp_path):
    pidfile = tmp_path / "pid"
    result, _, _ = run_spec(f"""
version: 1
namespaces: [mount]
process:
  command: [/bin/sh, -c, '(sleep 1000 & echo $! > {pidfile}) ; exit 0']
""")
    assert result.exit_code == 0
    pid = int(pidfile.read_text())
    deadline = time.time() + 3
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")


def test_verbose_prints_every_step_with_duration(write_spec):
    proc = cli("apply", "-v", str(write_spec("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n")))
    assert proc.returncode == 0
    for step in ("spawn", "idmap", "user", "exec"):
        assert f"linx-spec: {step}" in proc.stderr
    assert " ms" in proc.stderr


def _as_nobody(fn):
    """Run fn() in a forked child that dropped to uid/gid 65534; returns (code, output)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            out = fn()
            os.write(w, out.encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            os.write(w, f"{type(exc).__name__}: {exc}".encode())
            os._exit(1)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def _prepare_for_nobody(tmp_path):
    """The forked child runs as uid 65534, which may not be able to read the
    checkout or the virtualenv (CI clones anywhere): import everything it will
    need now, and give it a copy of the agent in a world-readable place."""
    import shutil
    import tempfile

    import linx_spec.host.idmap  # noqa: F401
    import linx_spec.host.network  # noqa: F401
    import linx_spec.load  # noqa: F401
    import linx_spec.plan  # noqa: F401
    import linx_spec.runner  # noqa: F401
    import linx_spec.plan.caps  # noqa: F401
    from linx_spec import build_plan, load_text

    build_plan(load_text((REPO / "specs" / "hello.yaml").read_text(), "warm.yaml"))  # lazy imports, regexes
    d = tempfile.mkdtemp(prefix="linx-nobody-")
    os.chmod(d, 0o755)
    agent = os.path.join(d, "linx-agent")
    shutil.copy2(os.environ["LINX_AGENT"], agent)
    os.chmod(agent, 0o755)
    return d, agent


def test_unprivileged_user_runs_hello_without_root(tmp_path, monkeypatch):
    out_file = tmp_path / "out"
    f = open(out_file, "wb")  # opened as root, inherited by the unprivileged child
    text = (REPO / "specs" / "hello.yaml").read_text()
    d, agent = _prepare_for_nobody(tmp_path)
    monkeypatch.setenv("LINX_AGENT", agent)

    def go():
        from linx_spec import build_plan, load_text, run

        plan = build_plan(load_text(text, "hello.yaml"), source="hello.yaml")
        result = run(plan, stdout=f.fileno())
        return f"{result.exit_code} {result.pid}"

    try:
        with f:
            code, out = _as_nobody(go)
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    assert code == 0, out
    exit_code, pid = out.split()
    assert exit_code == "0"
    inside = out_file.read_text()
    assert "inside: uid=0 gid=0 pid=1 hostname=linx-hello" in inside


def test_unprivileged_plan_errors_say_what_needs_root():
    from linx_spec import build_plan, load_text

    build_plan(load_text("version: 1\nprocess: {command: [/bin/true]}\n"))  # imports, before dropping root

    def go():
        from linx_spec import PlanError, build_plan, load_text

        msgs = []
        for text in (
            "version: 1\nnamespaces: [pid]\nprocess: {command: [/bin/true]}\n",
            "version: 1\nnamespaces: [user]\nidmap:\n  uid: [{container: 0, host: 0}]\n  gid: [{container: 0, host: 0}]\n"
            "process: {command: [/bin/true]}\n",
        ):
            try:
                build_plan(load_text(text))
                msgs.append("no error")
            except PlanError as exc:
                msgs.append(str(exc))
        return "\n".join(msgs)

    code, out = _as_nobody(go)
    assert code == 0, out
    first, second = out.splitlines()
    assert "needs root, or a new user namespace" in first and "remedy" in first
    assert "mapping ids other than your own needs root" in second


def test_multi_range_id_maps(tmp_path):
    plan = plan_of("""
version: 1
namespaces: [user, pid]
idmap:
  uid: [{container: 0, host: 100000, count: 1}, {container: 1000, host: 201000, count: 10}]
  gid: [{container: 0, host: 100000, count: 1}, {container: 1000, host: 201000, count: 10}]
process:
  command: [/bin/sh, -c, 'id -u; id -g; cat /proc/self/uid_map; read x']
  user: {uid: 1005, gid: 1007}
""")
    out = tmp_path / "out"
    r, w = os.pipe()
    with open(out, "wb") as fo, Workload(plan, stdin=r, stdout=fo.fileno()) as wl:
        pid = wl.start()
        status = open(f"/proc/{pid}/status").read()
        os.write(w, b"x\n")
        result = wl.wait()
    os.close(r)
    os.close(w)
    assert result.exit_code == 0
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
    assert uid_line.split()[1:] == ["201005"] * 4 and gid_line.split()[1:] == ["201007"] * 4
    lines = out.read_text().split("\n")
    assert lines[:2] == ["1005", "1007"]
    assert [line.split() for line in lines[2:4]] == [["0", "100000", "1"], ["1000", "201000", "10"]]


def test_every_example_spec_plans_on_this_host(tmp_path, monkeypatch):
    from linx_spec import load_file

    monkeypatch.setenv("BUILD_SRC", str(tmp_path))
    monkeypatch.setenv("BUILD_OUT", str(tmp_path))
    for path in sorted((REPO / "specs").glob("*.yaml")):
        plan = build_plan(load_file(path), source=str(path), base_dir=str(path.parent))
        assert plan.process.exec_path.startswith("/"), path


RELEASE_SCRIPT = r"""
import ctypes, os, sys, time
from linx_spec import Workload, build_plan, load_text
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as an engine's shim
plan = build_plan(load_text("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/sh, -c, 'exit 7']}\n"))
wl = Workload(plan, releasable=True)
pid = wl.spawn()
wl.proceed()
time.sleep(0.5)  # the program has ended before the release
wl.release()
got, status = os.waitpid(pid, 0)
print(got == pid, os.waitstatus_to_exitcode(status))
wl.close()
"""


def test_a_released_workload_that_ended_before_release_is_reaped_by_the_subreaper():
    """An OCI engine's shim learns the container's exit by reaping it: a program that ends
    between start's PROCEED and RELEASE stays a zombie that the release hands to the subreaper."""
    p = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT], capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "7"], p.stdout
