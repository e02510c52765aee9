"""linx_spec.Runner: each workload's agent forked from one zygote (agent/lx_zygote.c).

What must hold is what holds for run(): the agent is the workload's parent and
reaper, every workload gets only what its plan says, a failure leaves nothing,
and the death of the runner's process stops its workloads.  Checked here from
the outside (process tree, fds, cgroups) and from inside the workload; the
checks of test_cve, test_privileges, test_seccomp, test_runner and
test_execve_limits also run through a Runner (conftest.BOTH_AGENT_STARTS).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, children
from linx_spec import ExecError, Runner, build_plan, load_text, run
from linx_spec import protocol as P
from linx_spec.agent import Agent, Zygote

pytestmark = pytest.mark.root

CHECK = ("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; hostname; cat /proc/self/uid_map; "
         "for n in user pid mnt uts ipc net; do readlink /proc/self/ns/$n; done | sort -u | wc -l; "
         "ls /proc/self/fd | sort -n | tr '\\n' ' '")


def plan_of(text: str):
    return build_plan(load_text(text, "test.yaml"), source="test.yaml")


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(cond, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_each_agent_is_forked_by_the_zygote_and_is_the_workloads_parent():
    plan = plan_of("""
version: 1
namespaces: [user, pid, mount, uts, ipc, net]
process: {command: [/bin/sh, -c, 'read line']}
""")
    seen = []
    with Runner() as runner:
        for _ in range(2):
            r, w = os.pipe()
            try:
                with runner.workload(plan, stdin=r) as wl:
                    pid = wl.start()
                    agent, zygote = wl.agent.pid, runner.zygote().pid
                    tree = (ppid(agent), ppid(pid), zygote in children(os.getpid()))
                    os.write(w, b"go\n")
                    result = wl.wait()
            finally:
                os.close(r)
                os.close(w)
            assert result.exit_code == 0
            assert tree == (zygote, agent, True)  # zygote -> agent -> workload; the zygote is ours
            assert gone(agent)  # wait() returned once the agent itself had ended (its pidfd)
            seen.append((zygote, agent))
    assert seen[0][0] == seen[1][0] and seen[0][1] != seen[1][1]  # one zygote, one agent each
    assert gone(zygote)
    with pytest.raises(ChildProcessError):
        os.waitpid(zygote, os.WNOHANG)  # reaped by close()


def test_a_runner_workload_sees_what_a_run_workload_sees(tmp_path):
    plan = plan_of(f"""
version: 1
hostname: zyg
namespaces: [user, pid, mount, uts, ipc, net]
capabilities: {{keep: [chown, kill, net_bind_service]}}
seccomp: {{default: allow, rules: [{{syscalls: [keyctl, add_key], action: errno EPERM}}]}}
process: {{command: [/bin/sh, -c, "{CHECK}"]}}
""")
    with Runner() as runner:
        via_runner = runner.run(plan, capture_output=True)
    via_run = run(plan, capture_output=True)
    assert via_runner.exit_code == via_run.exit_code == 0, (via_runner.stderr, via_run.stderr)
    assert via_runner.stdout == via_run.stdout
    lines = via_runner.stdout.decode().splitlines()
    assert "NoNewPrivs:\t1" in lines and "Seccomp:\t2" in lines and "zyg" in lines
    assert lines[-1].split() == ["0", "1", "2", "3"]  # 0-2 and ls's own listing fd, nothing else


def test_sixteen_threads_share_one_runner():
    plan = plan_of("""
version: 1
namespaces: [user, pid, mount, uts, ipc, net]
cgroup: {memory: {max: 64Mi}, pids: {max: 16}}
process: {command: [/bin/true]}
""")
    results, errors = [], []
    with Runner() as runner:
        def worker():
            try:
                for _ in range(4):
                    results.append(runner.run(plan))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        zygote = runner.zygote().pid
        assert wait_until(lambda: children(zygote) == [])  # every agent ended and was reaped
    assert errors == []
    assert len(results) == 64 and all(r.exit_code == 0 for r in results)
    assert len({r.pid for r in results}) == 64
    assert all(r.usage.get("pids_peak", 1) >= 1 for r in results)


def test_no_fd_of_the_runner_reaches_the_zygote_or_the_workload(tmp_path):
    """A caller that leaks a host directory fd (inheritable) into the process
    that makes the Runner: the zygote closes it at start, the workload never has it."""
    probe = ("import json, os; print(json.dumps({n: os.readlink('/proc/self/fd/' + n) "
             "for n in os.listdir('/proc/self/fd') if os.path.exists('/proc/self/fd/' + n)}))")
    plan = plan_of(f"""
version: 1
namespaces: [user, pid, mount, uts, ipc, net]
process: {{command: [/usr/bin/python3, -c, "{probe}"]}}
""")
    leak = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leak, True)
    try:
        with Runner() as runner:
            result = runner.run(plan, capture_output=True)
            zygote = runner.zygote().pid
            held = {os.readlink(f"/proc/{zygote}/fd/{n}") for n in os.listdir(f"/proc/{zygote}/fd")}
    finally:
        os.close(leak)
    assert result.exit_code == 0, result.stderr
    inside = json.loads(result.stdout)
    assert sorted(int(n) for n in inside) == [0, 1, 2]
    assert str(tmp_path) not in held
    assert len(held) <= 5  # 0-2, the channel, the signalfd


def test_a_failed_start_through_a_runner_leaves_nothing():
    name = f"zyg-fail-{os.getpid()}"
    plan = plan_of(f"""
version: 1
name: {name}
namespaces: [user, pid, mount, uts, ipc, net]
cgroup: {{memory: {{max: 64Mi}}}}
process: {{command: [/nonexistent/program]}}
""")
    with Runner() as runner:
        with pytest.raises(ExecError):
            runner.run(plan)
        zygote = runner.zygote().pid
        assert wait_until(lambda: children(zygote) == [])
        ok = runner.run(plan_of("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n"))
    assert ok.exit_code == 0  # the zygote still serves after a failed workload
    left = [os.path.join(d, e) for d, _, es in os.walk("/sys/fs/cgroup") for e in es if name in e]
    assert left == []


def test_killing_the_runners_process_stops_its_workload_and_ends_the_zygote(tmp_path):
    script = tmp_path / "hold.py"
    script.write_text("""
import sys, time
from linx_spec import Runner, build_plan, load_text
plan = build_plan(load_text('''
version: 1
namespaces: [user, pid, mount, uts, ipc, net]
cgroup: {pids: {max: 8}}
lifecycle: {stop_grace: 1s}
process: {command: [/bin/sleep, '1000']}
''', 'hold.yaml'))
runner = Runner()
w = runner.workload(plan)
w.start()
print(w.pid, w.agent.pid, runner.zygote().pid, flush=True)
time.sleep(1000)
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        workload, agent, zygote = map(int, proc.stdout.readline().split())
        with open(f"/proc/{workload}/cgroup") as f:
            cgroups = [line.split(":", 2)[2].strip() for line in f if "pids" in line.split(":")[1] or
                       line.startswith("0::")]
        assert not gone(workload) and ppid(workload) == agent and ppid(agent) == zygote
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: gone(workload) and gone(agent) and gone(zygote)), (workload, agent, zygote)
    dirs = [p for cg in cgroups for p in (f"/sys/fs/cgroup/pids{cg}", f"/sys/fs/cgroup{cg}",
                                          f"/sys/fs/cgroup/unified{cg}") if cg != "/"]
    assert wait_until(lambda: not any(os.path.isdir(d) for d in dirs if "linx" in d)), dirs


def _reply(sock: socket.socket) -> tuple[P.Frame, list[int]]:
    raw, anc, _, _ = sock.recvmsg(P.HDR_LEN, socket.CMSG_SPACE(16))
    fds = [fd for _, _, blob in anc for fd in struct.unpack(f"{len(blob) // 4}i", blob)]
    _, type_, seq, length = P.decode_header(raw)
    payload = sock.recv(length, socket.MSG_WAITALL) if length else b""
    return P.Frame(type_, seq, P.decode_attrs(payload)), fds


def test_the_zygote_refuses_malformed_requests_and_keeps_nothing_of_them():
    z = Zygote()
    try:
        sock = z._sock
        a, b = socket.socketpair()
        with a, b:
            sock.sendall(P.encode(P.Msg.HELLO, 1, []))  # not a FORK; the zygote answers, forks nothing
            bad, fds = _reply(sock)
            assert bad.type == P.Msg.ERROR and bad.get(P.A.ERRNO) == errno.EPROTO and fds == []
            fd_count = len(os.listdir(f"/proc/{z.pid}/fd"))
            # stdin announced, only the channel sent: refused, the channel closed by the zygote
            sock.sendmsg([P.encode(P.Msg.FORK, 2, [(P.A.STDIO, 1)])],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", b.fileno()))])
            bad, fds = _reply(sock)
            assert bad.type == P.Msg.ERROR and bad.get(P.A.ERRNO) == errno.EINVAL, bad
            assert "wants 2 descriptors, got 1" in bad.get(P.A.DETAIL)
            assert len(os.listdir(f"/proc/{z.pid}/fd")) == fd_count
            assert children(z.pid) == []
        agent = Agent(zygote=z)  # and the next well-formed FORK is served
        try:
            assert agent.hello() == agent.pid and ppid(agent.pid) == z.pid
        finally:
            agent.close()
    finally:
        z.close()


def test_a_forked_child_process_starts_its_own_zygote():
    plan = plan_of("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n")
    with Runner() as runner:
        assert runner.run(plan).exit_code == 0
        parent_zygote = runner.zygote().pid
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's outcome is its exit status
            code = 1
            try:
                mine = runner.zygote().pid
                code = 0 if mine != parent_zygote and runner.run(plan).exit_code == 0 else 2
                runner.close()
                code = code or (0 if gone(mine) else 3)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert runner.zygote().pid == parent_zygote and runner.run(plan).exit_code == 0



@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64 (test_session.SIGNALS)")
def test_signals_the_caller_ignored_or_blocked_reach_no_runner_workload(tmp_path):
    """The zygote starts with the caller's ignored and blocked signals (as any
    child); the workload still starts with every disposition default and an
    empty mask (the signals step), as under run()."""
    from integration.test_session import SIGNALS

    script = tmp_path / "caller.py"
    script.write_text(__import__("textwrap").dedent(SIGNALS) + """
from linx_spec import Runner, build_plan, load_text
plan = build_plan(load_text('''
version: 1
namespaces: [user, pid, mount, ipc, uts]
process: {command: [/bin/grep, -E, '^Sig(Ign|Blk)', /proc/self/status]}
''', 'sig.yaml'))
with Runner() as runner:
    r = runner.run(plan, capture_output=True)
print(r.stdout.decode(), end="")
""")
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(":") for line in proc.stdout.splitlines() if line)
    assert {k: v.strip() for k, v in out.items()} == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}


def test_a_killed_zygote_is_replaced_at_the_next_workload():
    plan = plan_of("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n")
    with Runner() as runner:
        assert runner.run(plan).exit_code == 0
        first = runner.zygote().pid
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: gone(first))
        assert runner.run(plan).exit_code == 0  # no error for the workload: a new zygote forked its agent
        second = runner.zygote().pid
        assert second != first
    with pytest.raises(ChildProcessError):
        os.waitpid(first, os.WNOHANG)  # the dead one was reaped, not left a zombie


def test_a_callers_stdio_fd_a_spawn_would_not_pass_is_not_passed_by_the_zygote(tmp_path):
    """A spawned agent inherits the caller's 0-2 only if open and not
    close-on-exec.  Here the caller closes 0, and the pipe run() makes for the
    captured output takes fd 0, close-on-exec: the workload must not get it as
    stdin under a Runner either (a forked agent gets stdio passed explicitly).
    In the workload, ls's own directory fd then takes the free 0."""
    script = tmp_path / "closed.py"
    script.write_text("""
import json, os
from linx_spec import Runner, build_plan, load_text, run
plan = build_plan(load_text('''
version: 1
namespaces: [user, pid, mount]
process: {command: [/bin/sh, -c, 'ls /proc/self/fd | sort -n | tr "\\\\n" " "']}
''', 'closed.yaml'))
os.close(0)
with Runner() as runner:
    a = runner.run(plan, capture_output=True).stdout.decode()
b = run(plan, capture_output=True).stdout.decode()
print(json.dumps([a, b]))
""")
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    via_runner, via_run = (out.split() for out in json.loads(proc.stdout))
    # 0 is ls's listing; with the caller's pipe passed as stdin it would be 3 and 0 the pipe
    assert via_runner == via_run == ["0", "1", "2"], proc.stdout
