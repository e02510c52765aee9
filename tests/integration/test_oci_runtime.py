"""`linx-oci`, the OCI runtime (issue 17 part 2), driven as an engine drives runc:
create -> state -> start -> state -> kill -> state -> delete, hooks, the console
socket, exec, delete --force, and failures that must leave nothing behind.

Checked by behaviour: /proc/PID of the created container is still the agent
(parked, not exec'd), a subreaper "shim" reaps the container and sees its exit
code, hooks record their order and namespaces, the pty master arrives over
SCM_RIGHTS and is the container's terminal.  The bundles use a busybox rootfs
(Debian's busybox-static), as test_oci_differential.py.
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "cat", "sleep", "echo", "readlink", "hostname", "test", "[", "true", "id", "pwd", "grep")


@pytest.fixture(scope="module")
def rootfs():
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed (.ci/run installs it)")
    base = Path(tempfile.mkdtemp(prefix="linx-oci-rt-"))
    root = base / "rootfs"
    for d in ("bin", "proc", "dev", "tmp", "out"):
        (root / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", root / "bin" / a)
    yield root
    shutil.rmtree(base)


@pytest.fixture
def oci(rootfs, tmp_path):
    """An engine's view: a --root of its own, bundles next to it, `run(...)` the runtime."""
    state_root = tmp_path / "state"
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # exec writes there as uid 1000
    env = dict(os.environ, PYTHONPATH=str(REPO))

    class Oci:
        root = state_root
        outdir = out

        def run(self, *args, check=True, timeout=60):
            # Output to files, not pipes: a created container inherits create's stdio (as
            # runc's does), so a pipe would reach EOF only when the container ends.
            cmd = [sys.executable, "-m", "linx_spec.oci.main", "--root", str(state_root), *args]
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                      timeout=timeout).returncode
                out.seek(0)
                err.seek(0)
                p = subprocess.CompletedProcess(cmd, code, out.read().decode(), err.read().decode())
            if check and p.returncode != 0:
                raise AssertionError(f"{args}: exit {p.returncode}: {p.stderr}")
            return p

        def bundle(self, args, *, hooks=None, terminal=False, name=None, extra=None):
            b = tmp_path / (name or f"b-{uuid.uuid4().hex[:6]}")
            b.mkdir()
            config = {
                "ociVersion": "1.0.2-dev",
                "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
                            "env": ["PATH=/bin"], "cwd": "/"},
                "root": {"path": str(rootfs)},
                "hostname": "oci-test",
                "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                           {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}],
                "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc")]},
            }
            if hooks:
                config["hooks"] = hooks
            for key, value in (extra or {}).items():
                config.setdefault(key, {}).update(value) if isinstance(value, dict) else config.update({key: value})
            (b / "config.json").write_text(json.dumps(config))
            return b

        def state(self, cid):
            return json.loads(self.run("state", cid).stdout)

        def wait_status(self, cid, want, seconds=10):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                st = self.state(cid)
                if st["status"] == want:
                    return st
                time.sleep(0.05)
            raise AssertionError(f"{cid}: status {st['status']}, expected {want}")

    o = Oci()
    yield o
    # Whatever a failed test left: delete --force everything, then nothing may remain.
    if state_root.exists():
        for cid in os.listdir(state_root):
            o.run("delete", "--force", cid, check=False)
        assert os.listdir(state_root) == []


def _agent_exe() -> str:
    return os.path.realpath(os.environ["LINX_AGENT"])


def test_lifecycle_create_start_kill_delete(oci, tmp_path):
    b = oci.bundle(["/bin/sh", "-c", "hostname > /out/hostname; echo $$ > /out/pid; exec sleep 300"])
    pid_file = tmp_path / "container.pid"
    oci.run("create", "--bundle", str(b), "--pid-file", str(pid_file), "c1")
    st = oci.state("c1")
    assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(b)
    assert st["ociVersion"].startswith("1.")
    pid = st["pid"]
    assert int(pid_file.read_text()) == pid
    # Created, not started: the process is still the agent's clone, parked, and ran nothing.
    assert os.path.realpath(f"/proc/{pid}/exe") == _agent_exe()
    assert not (oci.outdir / "hostname").exists()
    # Its cgroup exists already: the host steps ran at create.
    cgroups = [line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    assert any("/linx-" in c for c in cgroups)

    oci.run("start", "c1")
    st = oci.state("c1")
    assert st["status"] == "running" and st["pid"] == pid
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
    # From inside: its own uts and pid namespaces (pid 1 there).
    deadline = time.monotonic() + 5
    while not (oci.outdir / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (oci.outdir / "hostname").read_text().strip() == "oci-test"
    assert (oci.outdir / "pid").read_text().strip() == "1"
    assert json.loads(oci.run("ps", "--format", "json", "c1").stdout) == [pid]
    listed = json.loads(oci.run("list", "--format", "json").stdout)
    assert [(c["id"], c["status"]) for c in listed] == [("c1", "running")]

    # A running container is not deleted without --force.
    p = oci.run("delete", "c1", check=False)
    assert p.returncode != 0 and "running" in p.stderr
    oci.run("kill", "c1", "KILL")
    st = oci.wait_status("c1", "stopped")
    assert st["pid"] == 0
    oci.run("delete", "c1")
    assert not (oci.root / "c1").exists()
    assert not any(Path("/sys/fs/cgroup").glob(f"*/linx/linx-c1-{pid}"))
    assert oci.run("state", "c1", check=False).returncode != 0


SHIM = r"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as containerd-shim and conmon
runtime = json.loads(sys.argv[1])
null = open(os.devnull, "w")  # the container's stdio (not the pipe this shim's output goes to)
subprocess.run(runtime + ["create", "--bundle", sys.argv[2], "--pid-file", sys.argv[3], "shimmed"], check=True,
               stdout=null)
pid = int(open(sys.argv[3]).read())
subprocess.run(runtime + ["start", "shimmed"], check=True)
while True:
    got, status = os.waitpid(-1, 0)
    if got == pid:
        print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}))
        break
"""


def test_the_engines_subreaper_reaps_the_container_and_sees_its_exit(oci, tmp_path):
    """containerd's shim and conmon learn of the exit by reaping: after start the
    container must be their child, not the agent's or the holder's."""
    b = oci.bundle(["/bin/sh", "-c", "sleep 0.5; exit 7"])
    runtime = [sys.executable, "-m", "linx_spec.oci.main", "--root", str(oci.root)]
    p = subprocess.run([sys.executable, "-c", SHIM, json.dumps(runtime), str(b), str(tmp_path / "pid")],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["code"] == 7
    assert oci.state("shimmed")["status"] == "stopped"
    oci.run("delete", "shimmed")


def _hook(log: Path, kind: str) -> dict:
    # Each hook appends its kind, the status it was given on stdin and its uts namespace.
    script = f'read -r s; echo "{kind} $(echo "$s" | grep -o \'"status": "[a-z]*"\') $(readlink /proc/self/ns/uts)" >> {log}'
    return {"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/bin:/bin"]}


def test_hooks_run_in_order_with_the_state_on_stdin(oci, tmp_path):
    log = tmp_path / "hooks.log"
    kinds = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
    b = oci.bundle(["/bin/sh", "-c", f"echo started >> /out/run; exec sleep 300"],
                   hooks={k: [_hook(log, k)] for k in kinds})
    oci.run("create", "--bundle", str(b), "h1")
    pid = oci.state("h1")["pid"]
    container_uts = os.readlink(f"/proc/{pid}/ns/uts")
    host_uts = os.readlink("/proc/self/ns/uts")
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["prestart", "createRuntime",
                                                                          "createContainer"]
    oci.run("start", "h1")
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == list(kinds[:5])  # poststart ran before start returned
    oci.run("kill", "h1", "9")
    oci.wait_status("h1", "stopped")
    oci.run("delete", "h1")
    lines = log.read_text().splitlines()
    words = {line.split()[0]: line for line in lines}
    assert list(words) == list(kinds)
    # runtime namespace vs the container's (entered for createContainer and startContainer)
    for k in ("prestart", "createRuntime", "poststart", "poststop"):
        assert words[k].endswith(host_uts), words[k]
    for k in ("createContainer", "startContainer"):
        assert words[k].endswith(container_uts), words[k]
    assert '"status": "creating"' in words["createRuntime"]
    assert '"status": "running"' in words["poststart"]
    assert '"status": "stopped"' in words["poststop"]


@pytest.mark.parametrize("kind", ["createRuntime", "createContainer"])
def test_a_failing_create_hook_fails_create_and_leaves_nothing(oci, tmp_path, kind):
    b = oci.bundle(["/bin/sh", "-c", "echo ran >> /out/ran"],
                   hooks={kind: [{"path": "/bin/sh", "args": ["sh", "-c", "echo no >&2; exit 3"]}]})
    p = oci.run("create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), "f1", check=False)
    assert p.returncode != 0
    assert f"{kind}[0]" in p.stderr and "exit code 3" in p.stderr
    assert not (oci.root / "f1").exists() and not (tmp_path / "pid").exists()
    assert not (oci.outdir / "ran").exists()
    assert not any(Path("/sys/fs/cgroup").glob("*/linx/linx-f1-*"))


def test_a_hook_timeout_is_honoured(oci):
    b = oci.bundle(["/bin/true"], hooks={"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                                            "timeout": 1}]})
    began = time.monotonic()
    p = oci.run("create", "--bundle", str(b), "t1", check=False)
    assert p.returncode != 0 and "timed out after 1s" in p.stderr
    assert time.monotonic() - began < 15
    assert not (oci.root / "t1").exists()


def _receive_fd(listener: socket.socket, box: dict) -> None:
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        msg, anc, _flags, _addr = conn.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
        box["name"] = msg
        box["fd"] = fds[0] if fds else None


def test_console_socket_receives_the_pty_master(oci, tmp_path):
    sock_path = tmp_path / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    box: dict = {}
    t = threading.Thread(target=_receive_fd, args=(listener, box))
    t.start()
    b = oci.bundle(["/bin/sh", "-c", "if [ -t 0 ] && [ -t 1 ]; then echo is-a-tty; fi; read -r line; echo got:$line"],
                   terminal=True)
    try:
        oci.run("create", "--bundle", str(b), "--console-socket", str(sock_path), "tty1")
        t.join(10)
        master = box["fd"]
        assert master is not None and box["name"] == b"/dev/ptmx"
        oci.run("start", "tty1")
        os.write(master, b"hello\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"got:hello" not in data and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side closed
                break
            data += chunk
        assert b"is-a-tty" in data and b"got:hello" in data, data
        os.close(master)
        oci.wait_status("tty1", "stopped")
        oci.run("delete", "tty1")
    finally:
        listener.close()


def test_terminal_without_console_socket_is_refused(oci):
    b = oci.bundle(["/bin/true"], terminal=True)
    p = oci.run("create", "--bundle", str(b), "nt", check=False)
    assert p.returncode != 0 and "--console-socket" in p.stderr
    assert not (oci.root / "nt").exists()


def test_delete_force_of_a_running_container(oci):
    b = oci.bundle(["/bin/sleep", "300"])
    oci.run("create", "--bundle", str(b), "df")
    oci.run("start", "df")
    pid = oci.state("df")["pid"]
    oci.run("delete", "--force", "df")
    assert not (oci.root / "df").exists()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        # the test process is not its parent: a zombie is reaped by init
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            break
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]


def test_delete_of_a_created_container_and_kill_of_a_created_one(oci):
    b = oci.bundle(["/bin/true"])
    oci.run("create", "--bundle", str(b), "dc")
    oci.run("delete", "dc")  # runc deletes a created container without --force
    assert not (oci.root / "dc").exists()
    oci.run("create", "--bundle", str(b), "kc")
    oci.run("kill", "kc", "SIGKILL")
    oci.wait_status("kc", "stopped")
    p = oci.run("start", "kc", check=False)
    assert p.returncode != 0 and "stopped" in p.stderr
    oci.run("delete", "kc")


def test_create_twice_and_unknown_ids(oci):
    b = oci.bundle(["/bin/true"])
    oci.run("create", "--bundle", str(b), "dup")
    p = oci.run("create", "--bundle", str(b), "dup", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    oci.run("delete", "dup")
    for cmd in ("state", "start", "kill", "delete"):
        p = oci.run(cmd, "nope", check=False)
        assert p.returncode != 0 and "does not exist" in p.stderr, (cmd, p.stderr)
    assert oci.run("delete", "--force", "nope").returncode == 0
    p = oci.run("state", "../etc", check=False)
    assert p.returncode != 0 and "invalid container id" in p.stderr


def test_exec_into_a_running_container(oci, tmp_path):
    b = oci.bundle(["/bin/sleep", "300"])
    oci.run("create", "--bundle", str(b), "ex")
    oci.run("start", "ex")
    pid = oci.state("ex")["pid"]
    # args form, waited for: its exit code, in the container's uts namespace
    p = oci.run("exec", "ex", "/bin/sh", "-c", "hostname; exit 5", check=False)
    assert p.returncode == 5 and p.stdout.strip() == "oci-test", p.stderr
    # process.json, detached (as containerd's shim execs): returns at once, the pid file written
    proc = {"args": ["/bin/sh", "-c", "echo $(id -u):$(id -g) $(pwd) $GREETING $(readlink /proc/self/ns/pid)"
                     " > /out/exec; sleep 1"],
            "env": ["PATH=/bin", "GREETING=hi"], "cwd": "/tmp", "user": {"uid": 1000, "gid": 1000}}
    (tmp_path / "process.json").write_text(json.dumps(proc))
    oci.run("exec", "--process", str(tmp_path / "process.json"), "--detach", "--pid-file",
            str(tmp_path / "exec.pid"), "ex")
    exec_pid = int((tmp_path / "exec.pid").read_text())
    deadline = time.monotonic() + 10
    while not (oci.outdir / "exec").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    words = (oci.outdir / "exec").read_text().split()
    assert words == ["1000:1000", "/tmp", "hi", os.readlink(f"/proc/{pid}/ns/pid")]
    assert exec_pid in json.loads(oci.run("ps", "--format", "json", "ex").stdout) or not os.path.exists(
        f"/proc/{exec_pid}")
    p = oci.run("exec", "ex", "/nonexistent", check=False)
    assert p.returncode != 0
    oci.run("delete", "--force", "ex")
    assert not any(Path("/sys/fs/cgroup").glob(f"*/linx/linx-ex-{pid}"))


def test_seccomp_without_no_new_privileges_as_engines_configure_it(oci):
    """runtime-tools' and podman's configs: a filter, no noNewPrivileges, CAP_SYS_ADMIN dropped.
    The filter is installed before the capabilities are (as runc); seen from inside."""
    b = oci.bundle(["/bin/sh", "-c", "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status > /out/sc; "
                                     "hostname renamed 2>> /out/sc; true"],
                   extra={"process": {"capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective",
                                                                                  "permitted")}},
                          "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                              {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 26}]}}})
    oci.run("create", "--bundle", str(b), "sc")
    oci.run("start", "sc")
    oci.wait_status("sc", "stopped")
    oci.run("delete", "sc")
    text = (oci.outdir / "sc").read_text()
    assert "NoNewPrivs:\t0" in text and "Seccomp:\t2" in text and "CapEff:\t0000000000000020" in text, text
    assert "Text file busy" in text, text  # sethostname: the filter's ETXTBSY, not EPERM for want of the cap
