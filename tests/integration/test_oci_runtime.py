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
import stat
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
APPLETS = ("sh", "cat", "sleep", "echo", "readlink", "hostname", "test", "[", "true", "id", "pwd", "grep", "stat")


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
    assert not any(Path("/sys/fs/cgroup").glob("*/linx/linx-c1-*"))  # whichever pid names the leaf
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


def test_poststart_is_given_running_and_the_pid_even_when_the_program_has_already_ended(oci, tmp_path):
    """The state a hook gets is that of its point in the lifecycle (runtime-spec: poststart is called
    after the process starts), not a fresh look: a program that ends at once still reads 'running'."""
    log = tmp_path / "hooks.log"
    script = f'read -r s; echo "$s" >> {log}'
    b = oci.bundle(["/bin/true"], hooks={"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}],
                                         "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null"]}]})
    oci.run("create", "--bundle", str(b), "ps1")
    pid = oci.state("ps1")["pid"]
    oci.run("start", "ps1")
    oci.wait_status("ps1", "stopped")
    oci.run("delete", "ps1")
    state = json.loads(log.read_text())
    assert (state["status"], state["pid"]) == ("running", pid), state


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


def test_a_created_container_is_already_in_its_cgroup_namespace(oci):
    """runtime-tools' linux_ns_nopath looks at /proc/PID/ns of a created container: every
    namespace of the config is there before start (runc's nsexec), the cgroup one too;
    start must not replace it with another, and its root is the container's cgroup."""
    ns = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "cgroup")]
    b = oci.bundle(["/bin/sh", "-c", "readlink /proc/self/ns/cgroup > /out/cgns; cat /proc/self/cgroup > /out/cg"],
                   extra={"linux": {"namespaces": ns}})
    oci.run("create", "--bundle", str(b), "cgns")
    pid = oci.state("cgns")["pid"]
    assert os.path.realpath(f"/proc/{pid}/exe") == _agent_exe()  # still parked
    created = os.readlink(f"/proc/{pid}/ns/cgroup")
    assert created != os.readlink("/proc/self/ns/cgroup")
    oci.run("start", "cgns")
    oci.wait_status("cgns", "stopped")
    assert (oci.outdir / "cgns").read_text().strip() == created
    own = [line for line in (oci.outdir / "cg").read_text().splitlines() if "pids" in line.split(":")[1]]
    assert own and all(line.endswith(":/") for line in own), own
    oci.run("delete", "cgns")


@pytest.fixture
def ns_holder():
    """`unshare FLAG --fork sleep`, as runtime-tools' linux_ns_path: a namespace to join by path."""
    procs = []

    def make(flag: str) -> int:
        kind = {"--mount": "mnt", "--uts": "uts"}[flag]
        p = subprocess.Popen(["unshare", flag, "--fork", "sleep", "300"], start_new_session=True)
        procs.append(p)
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{p.pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}"):
            assert time.monotonic() < deadline, "unshare did not switch"
            time.sleep(0.01)
        return p.pid

    yield make
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _host_root_mount() -> str:
    return next(line for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4] == "/")


def test_mounts_in_a_mount_namespace_joined_by_path(oci, ns_holder, rootfs):
    """runtime-tools' linux_ns_path (mnt): the container is in the joined namespace from
    create on, and its mounts and pivot_root happen there (as runc), not in the host's."""
    holder = ns_holder("--mount")
    joined = os.readlink(f"/proc/{holder}/ns/mnt")
    root_before = _host_root_mount()
    ns = [{"type": "pid"}, {"type": "mount", "path": f"/proc/{holder}/ns/mnt"}, {"type": "uts"}, {"type": "ipc"}]
    b = oci.bundle(["/bin/sh", "-c", "readlink /proc/self/ns/mnt > /out/mnt; cat /proc/self/mountinfo > /out/mi"],
                   extra={"linux": {"namespaces": ns}})
    oci.run("create", "--bundle", str(b), "jm")
    pid = oci.state("jm")["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == joined
    oci.run("start", "jm")
    oci.wait_status("jm", "stopped")
    oci.run("delete", "jm")
    assert (oci.outdir / "mnt").read_text().strip() == joined
    inside = [line.split()[4] for line in (oci.outdir / "mi").read_text().splitlines()]
    assert "/proc" in inside and "/out" in inside
    # The host saw none of it: its root is the same mount, nothing appeared on the rootfs.
    assert _host_root_mount() == root_before
    assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()


def test_hostname_in_a_uts_namespace_joined_by_path(oci, ns_holder):
    """runtime-tools' linux_ns_path (uts): the hostname is set in the joined namespace (as runc)."""
    holder = ns_holder("--uts")
    host_name = socket.gethostname()
    ns = [{"type": "pid"}, {"type": "mount"}, {"type": "uts", "path": f"/proc/{holder}/ns/uts"}, {"type": "ipc"}]
    b = oci.bundle(["/bin/sh", "-c", "hostname > /out/h"], extra={"linux": {"namespaces": ns}})
    oci.run("create", "--bundle", str(b), "ju")
    assert os.readlink(f"/proc/{oci.state('ju')['pid']}/ns/uts") == os.readlink(f"/proc/{holder}/ns/uts")
    oci.run("start", "ju")
    oci.wait_status("ju", "stopped")
    oci.run("delete", "ju")
    assert (oci.outdir / "h").read_text().strip() == "oci-test"
    seen = subprocess.run(["nsenter", f"--uts=/proc/{holder}/ns/uts", "hostname"], capture_output=True, text=True)
    assert seen.stdout.strip() == "oci-test"
    assert socket.gethostname() == host_name


OWN_NS = r"""
import json, sys
from pathlib import Path
before = Path("/proc/self/mountinfo").read_text()
if sys.argv[1] == "bypass-plan":  # the agent's own check, alone
    import linx_spec.plan.namespaces as namespaces
    namespaces.check_not_runtimes_own = lambda *a: None
from linx_spec.oci.main import main
root, bundle = sys.argv[2:4]
codes = [main(["--root", root, *args]) for args in (["create", "--bundle", bundle, "own"], ["start", "own"],
                                                   ["delete", "--force", "own"])]
print(json.dumps({"codes": codes, "mounts_unchanged": Path("/proc/self/mountinfo").read_text() == before}))
"""


@pytest.mark.parametrize("check", ["plan", "bypass-plan"])
@pytest.mark.parametrize("kind", ["mount", "uts"])
def test_joining_the_runtimes_own_namespace_is_never_changed(oci, tmp_path, kind, check):
    """A joined mount (uts) namespace gets the mounts (hostname): if the path is the
    runtime's own namespace, that would be the host's.  The plan refuses it; the agent
    refuses it again in the child, right before the change (shown with the plan's check
    taken out).  Run in a throwaway mount and uts namespace: a failure here stays there."""
    joins = {"mount": "/proc/self/ns/mnt", "uts": "/proc/self/ns/uts"}
    ns = [{"type": "pid"}, {"type": "ipc"}] + [{"type": k, "path": joins[k]} if k == kind else {"type": k}
                                                for k in ("mount", "uts")]
    b = oci.bundle(["/bin/sh", "-c", "echo ran > /out/ran"], extra={"linux": {"namespaces": ns}})
    with open(tmp_path / "err", "w+") as err:
        p = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", sys.executable, "-c", OWN_NS,
                            check, str(oci.root), str(b)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=err, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
        err.seek(0)
        stderr = err.read()
    result = json.loads(p.stdout.splitlines()[-1])
    what = {"mount": "mount", "uts": "uts"}[kind]
    if check == "plan":
        assert result["codes"][0] == 66 and f"runtime's own {what} namespace" in stderr, stderr
    else:
        assert result["codes"][0] == 0 and result["codes"][1] != 0, stderr
        assert f"refused: this is the runtime's own {what} namespace" in stderr, stderr
    assert result["mounts_unchanged"], stderr
    assert not (oci.outdir / "ran").exists()
    assert not (oci.root / "own").exists()


def test_run_waits_for_the_container_and_exits_with_its_code(oci):
    """`run` as runc's: create + start + wait, the container's exit code, deleted after."""
    b = oci.bundle(["/bin/sh", "-c", "echo $$ > /out/run-pid; exit 5"])
    p = oci.run("run", "--bundle", str(b), "r1", check=False)
    assert p.returncode == 5, p.stderr
    assert (oci.outdir / "run-pid").read_text().strip() == "1"  # it ran, in its pid namespace
    assert not (oci.root / "r1").exists()
    assert not any(Path("/sys/fs/cgroup").glob("*/linx/linx-r1-*"))


def test_run_forwards_signals_and_run_detach_returns_at_once(oci, rootfs):
    b = oci.bundle(["/bin/sh", "-c", "trap 'echo term > /out/trapped; exit 9' TERM; echo up > /out/up; "
                                     "while :; do sleep 0.05; done"])
    cmd = [sys.executable, "-m", "linx_spec.oci.main", "--root", str(oci.root), "run", "--bundle", str(b), "r2"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 20
        while not (oci.outdir / "up").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (oci.outdir / "trapped").read_text().strip() == "term"
    assert not (oci.root / "r2").exists()
    b = oci.bundle(["/bin/sleep", "300"])
    oci.run("run", "-d", "--bundle", str(b), "r3")
    assert oci.state("r3")["status"] == "running"
    oci.run("delete", "--force", "r3")


def test_run_holds_a_signal_that_comes_before_the_container_runs_and_sends_it_after(oci, rootfs, tmp_path):
    # A createRuntime hook (run during create, before the container's process runs) sends
    # SIGTERM to `run`. runc holds signals until the container's process exists, then
    # forwards them; `run` used to install its handlers only after start, so a signal in
    # between killed it. The hook reads run's pid from a file the test writes (exactly that
    # process, never a guess from the process tree).
    pidfile = tmp_path / "run.pid"
    hook = (f"i=0; while [ ! -s {pidfile} ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done; "
            f"kill -TERM $(cat {pidfile})")
    # No pid namespace: the shell is not an init, so a TERM that comes before its trap is set
    # kills it (143) instead of being dropped (a pid namespace's init only gets what it handles).
    b = oci.bundle(["/bin/sh", "-c", "trap 'exit 9' TERM; echo up > /out/up; while :; do sleep 0.05; done"],
                   hooks={"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]},
                   extra={"linux": {"namespaces": [{"type": t} for t in ("mount", "uts", "ipc")]}})
    cmd = [sys.executable, "-m", "linx_spec.oci.main", "--root", str(oci.root), "run", "--bundle", str(b), "r4"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    pidfile.write_text(str(proc.pid))
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The container got the TERM: its trap's 9, or 143 when it came before the shell set the trap.
    assert code in (9, 128 + signal.SIGTERM), (code, proc.stderr.read())
    assert not (oci.root / "r4").exists()


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
    assert not any(Path("/sys/fs/cgroup").glob("*/linx/linx-ex-*"))  # whichever pid names the leaf


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


def test_a_filter_installed_early_that_refuses_close_range_still_leaves_no_fd_open(oci):
    """runtime-tools' default profile has no noNewPrivileges and no close_range in its allow-list:
    the close_fds step then marks the fds one by one (as runc's fallback does) and the
    workload still starts with nothing but 0, 1, 2 open."""
    b = oci.bundle(["/bin/sh", "-c", "ls /proc/self/fd > /out/fds; true"],
                   extra={"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                       {"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}}})
    oci.run("create", "--bundle", str(b), "cr")
    oci.run("start", "cr")
    oci.wait_status("cr", "stopped")
    oci.run("delete", "cr")
    # ls's own directory fd is the one above 2
    assert (oci.outdir / "fds").read_text().split() == ["0", "1", "2", "3"]


# runtime-tools' default mount set (generate.New), which containerd's and podman's resemble.
DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755",
                                                                           "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev",
                                                                             "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
]


@pytest.mark.parametrize("order", ["runtime-tools", "podman"])
def test_mount_sources_and_device_nodes_seen_from_inside(oci, order):
    """runtimetest finds the config's mounts in mountinfo by source (the new mount API shows `none`
    unless it is set), and stats each of linux.devices: type, numbers, mode, owner.  Podman writes
    /dev/pts after /sys: still the /dev's own devpts."""
    mounts = list(DEFAULT_MOUNTS)
    if order == "podman":
        mounts.append(mounts.pop(2))
    script = ("cat /proc/self/mountinfo > /out/mi; for d in /dev/test1 /dev/test2 /dev/test3; do "
              "stat -c '%n %F %t:%T %a %u:%g' $d >> /out/devs; done; true")
    b = oci.bundle(["/bin/sh", "-c", script], extra={
        "mounts": mounts + [{"destination": "/out", "type": "bind", "source": str(oci.outdir),
                                     "options": ["rbind", "rw"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc", "network")],
                  "devices": [
                      {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 0o660, "uid": 0,
                       "gid": 0},
                      {"path": "/dev/test2", "type": "b", "major": 8, "minor": 666, "fileMode": 0o640, "uid": 7,
                       "gid": 8},
                      {"path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 0o600}]}})
    oci.run("create", "--bundle", str(b), "mi")
    oci.run("start", "mi")
    oci.wait_status("mi", "stopped")
    oci.run("delete", "mi")
    seen = {}
    for line in (oci.outdir / "mi").read_text().splitlines():
        f = line.split()
        sep = f.index("-")
        seen[f[4]] = (f[sep + 1], f[sep + 2])
    for m in DEFAULT_MOUNTS:
        assert seen.get(m["destination"]) == (m["type"], m["source"]), (m, seen)
    assert seen["/dev/pts"] == ("devpts", "devpts") and seen["/dev/null"][0] == "devtmpfs"
    assert (oci.outdir / "devs").read_text().splitlines() == [
        "/dev/test1 character special file a:29a 660 0:0",
        "/dev/test2 block special file 8:29a 640 7:8",
        "/dev/test3 fifo 0:0 600 0:0"]
# --- cgroups: cgroupsPath is the container's own cgroup; devices; update, pause, resume, events --------

def _own_cgroups(pid: int) -> dict[str, str]:
    """controller (or "" for cgroup2) -> the cgroup path /proc/PID/cgroup shows."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def _wait_file(path: Path, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


def test_cgroups_path_is_the_containers_own_cgroup_and_goes_with_delete(oci):
    """config-linux.md#cgroups-path: the container is placed at cgroupsPath itself
    (it was cgroupsPath/linx-ID-PID), seen from inside in /proc/self/cgroup; the
    limits are there; delete removes it."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}/ctr"
    b = oci.bundle(["/bin/sh", "-c", "cat /proc/self/cgroup > /out/cgroup.tmp; busybox mv /out/cgroup.tmp "
                    "/out/cgroup; exec sleep 300"],
                   extra={"linux": {"cgroupsPath": path, "resources": {"pids": {"limit": 9}}}})
    oci.run("create", "--bundle", str(b), "cgp")
    assert Path(f"/sys/fs/cgroup/pids{path}/pids.max").read_text().strip() == "9"
    oci.run("start", "cgp")
    inside = {}
    for line in _wait_file(oci.outdir / "cgroup").splitlines():  # no cgroup namespace: host paths
        _hid, ctrls, p = line.split(":", 2)
        inside.update((c, p) for c in (ctrls.split(",") if ctrls else [""]))
    assert inside["pids"] == path and inside[""] == path
    assert json.loads(oci.run("ps", "--format", "json", "cgp").stdout) == [oci.state("cgp")["pid"]]
    oci.run("kill", "cgp", "KILL")
    oci.wait_status("cgp", "stopped")
    oci.run("delete", "cgp")
    parent = path.rsplit("/", 1)[0]
    assert not any(Path("/sys/fs/cgroup").glob(f"*{parent}")), "the cgroup (and the parent made for it) is gone"


def test_cgroups_path_that_exists_is_joined_when_empty_and_refused_with_processes(oci):
    """runc's rule (libcontainer/factory_linux.go): an existing empty cgroup is
    used (and removed at delete), one with processes is refused."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    d = Path(f"/sys/fs/cgroup/pids{path}")
    d.mkdir()
    try:
        b = oci.bundle(["/bin/sleep", "300"], extra={"linux": {"cgroupsPath": path}})
        oci.run("create", "--bundle", str(b), "empty")
        assert _own_cgroups(oci.state("empty")["pid"])["pids"] == path
        oci.run("delete", "empty")
        assert not d.exists()
        d.mkdir()
        sleeper = subprocess.Popen(["sleep", "300"])
        try:
            (d / "cgroup.procs").write_text(str(sleeper.pid))
            p = oci.run("create", "--bundle", str(b), "busy", check=False)
            assert p.returncode != 0 and "not empty" in p.stderr and path in p.stderr, p.stderr
            assert not (oci.root / "busy").exists()
            assert (d / "cgroup.procs").read_text().split() == [str(sleeper.pid)]  # not ours: untouched
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        for leftover in Path("/sys/fs/cgroup").glob(f"*{path}"):
            leftover.rmdir()


def test_cgroups_path_is_removed_when_the_holder_dies(oci):
    """The holder killed while the container is created: the agent, which tracks the
    cgroup, kills the child and removes it; delete then finds nothing left."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    b = oci.bundle(["/bin/sleep", "300"], extra={"linux": {"cgroupsPath": path}})
    oci.run("create", "--bundle", str(b), "orphan")
    record = json.loads((oci.root / "orphan" / "state.json").read_text())
    os.kill(record["holder_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path("/sys/fs/cgroup").glob(f"*{path}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path("/sys/fs/cgroup").glob(f"*{path}"))
    assert oci.state("orphan")["status"] == "stopped"
    oci.run("delete", "orphan")


def test_delete_after_the_holder_died_kills_and_removes_what_is_left(oci):
    """The holder killed after start (the agent gone too, released): delete kills what
    its recorded cgroups hold, forks included, and removes them (host/cgroup.py's own
    undo, Live.of_dirs)."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    # Three processes (sh, sh, sleep: no background job, whose stdin would be a /dev/null this rootfs has not).
    b = oci.bundle(["/bin/sh", "-c", "sh -c 'sleep 300; true'; true"], extra={"linux": {"cgroupsPath": path}})
    oci.run("create", "--bundle", str(b), "late")
    oci.run("start", "late")
    record = json.loads((oci.root / "late" / "state.json").read_text())
    procs = Path(f"/sys/fs/cgroup/pids{path}/cgroup.procs")
    deadline = time.monotonic() + 10
    while len(procs.read_text().split()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = [int(x) for x in procs.read_text().split()]
    assert len(pids) == 3
    os.kill(record["holder_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{record['holder_pid']}") and time.monotonic() < deadline:
        time.sleep(0.02)
    oci.run("delete", "--force", "late")
    assert not any(Path("/sys/fs/cgroup").glob(f"*{path}"))
    for pid in pids:  # gone, or a zombie waiting for init
        assert not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def test_device_rules_are_enforced_with_runcs_standard_nodes(oci, rootfs):
    """linux.resources.devices (runtime-tools' and the engines' default: deny all, then
    allows) is imported into cgroup.devices: from inside, a node the rules allow opens
    (10:229, and 1:7 of runc's standard set), one they do not (10:200) is refused;
    devices.list holds the rules."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    nodes = {"fuse": (10, 229), "full": (1, 7), "tun": (10, 200)}  # opened, never read or configured
    for name, (ma, mi) in nodes.items():
        os.mknod(rootfs / "tmp" / f"{name}-{tag}", 0o600 | stat.S_IFCHR, os.makedev(ma, mi))
    try:
        # In a subshell: a failed redirection ends a non-interactive shell (POSIX), here only that one.
        script = "; ".join(f"(exec 3< /tmp/{n}-{tag}) 2>/dev/null && echo {n}-open || echo {n}-denied"
                           for n in nodes)
        b = oci.bundle(["/bin/sh", "-c", f"({script}) > /out/dev.tmp; busybox mv /out/dev.tmp /out/dev"],
                       extra={"linux": {"cgroupsPath": path,
                                        "resources": {"devices": [{"allow": False, "access": "rwm"},
                                                                  {"allow": True, "type": "c", "major": 10,
                                                                   "minor": 229, "access": "rw"}]}}})
        p = oci.run("create", "--bundle", str(b), "dev")
        assert "linux.resources.devices" not in p.stderr  # no longer "left out"
        listed = Path(f"/sys/fs/cgroup/devices{path}/devices.list").read_text().split("\n")
        assert "c 10:229 rw" in listed and "c 1:3 rwm" in listed and "a *:* rwm" not in listed
        oci.run("start", "dev")
        got = _wait_file(oci.outdir / "dev").split()
        oci.wait_status("dev", "stopped")
        oci.run("delete", "dev")
        assert got == ["fuse-open", "full-open", "tun-denied"], got
    finally:
        for name in nodes:
            (rootfs / "tmp" / f"{name}-{tag}").unlink()


def _counter(path: Path) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.strip().isdigit():
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path}: no count")


def test_pause_freezes_the_container_and_resume_thaws_it(oci):
    """pause: the container's own counter stops advancing and the state says paused;
    resume: it advances again and the state says running."""
    # Each count written to a new file and renamed: the reader never sees a half-written one.
    b = oci.bundle(["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /out/n.tmp; busybox mv /out/n.tmp "
                    "/out/n; busybox usleep 10000; done"],
                   extra={"linux": {"cgroupsPath": f"/linx-oci-t-{uuid.uuid4().hex[:8]}"}})
    oci.run("create", "--bundle", str(b), "pz")
    p = oci.run("pause", "pz", check=False)
    assert p.returncode != 0 and "not running" in p.stderr  # created: runc refuses too
    oci.run("start", "pz")
    n = oci.outdir / "n"
    first = _counter(n)
    deadline = time.monotonic() + 5
    while _counter(n) == first and time.monotonic() < deadline:
        time.sleep(0.01)
    oci.run("pause", "pz")
    assert oci.state("pz")["status"] == "paused"
    frozen = _counter(n)
    time.sleep(0.5)
    assert _counter(n) == frozen, "a paused container's counter must not advance"
    assert [x["status"] for x in json.loads(oci.run("list", "--format", "json").stdout)] == ["paused"]
    p = oci.run("delete", "pz", check=False)
    assert p.returncode != 0 and "paused" in p.stderr
    oci.run("resume", "pz")
    assert oci.state("pz")["status"] == "running"
    deadline = time.monotonic() + 5
    while _counter(n) == frozen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _counter(n) > frozen
    p = oci.run("resume", "pz", check=False)
    assert p.returncode != 0 and "not paused" in p.stderr
    oci.run("pause", "pz")
    oci.run("delete", "--force", "pz")  # a paused container goes too


def test_update_changes_a_limit_the_container_then_meets(oci):
    """update --resources - (containerd's shim) and --pids-limit (runc's flag): the
    container's next forks meet the new pids.max; the memory limit is written."""
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    # On each go-N file: try to start 4 more processes at once and count the processes then (builtins only,
    # no fork: a glob of /proc); after they end, report. Background stdin given: this rootfs has no /dev/null.
    script = ("n=0; while [ $n -lt 2 ]; do n=$((n+1)); while [ ! -e /out/go-$n ]; do busybox usleep 10000; done; "
              "for k in 1 2 3 4; do busybox usleep 500000 </proc/version & done; "
              "set -- /proc/[0-9]*; c=$#; wait; echo $c > /out/r-$n.tmp; busybox mv /out/r-$n.tmp /out/r-$n; "
              "done; exec sleep 300")
    b = oci.bundle(["/bin/sh", "-c", script],
                   extra={"linux": {"cgroupsPath": path, "resources": {"pids": {"limit": 20}}}})
    oci.run("create", "--bundle", str(b), "up")
    oci.run("start", "up")
    pids_max = Path(f"/sys/fs/cgroup/pids{path}/pids.max")
    assert pids_max.read_text().strip() == "20"
    (oci.outdir / "go-1").write_text("")
    first = _wait_file(oci.outdir / "r-1").split()
    cmd = [sys.executable, "-m", "linx_spec.oci.main", "--root", str(oci.root), "update", "--resources", "-", "up"]
    p = subprocess.run(cmd, input=json.dumps({"pids": {"limit": 2}, "memory": {"limit": 64 << 20}}), text=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert pids_max.read_text().strip() == "2"
    assert int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text()) == 64 << 20
    oci.run("update", "--pids-limit", "30", "up")
    assert pids_max.read_text().strip() == "30"
    p = oci.run("update", "--cpu-quota", "5", "up", check=False)
    assert p.returncode != 0 and "1000us" in p.stderr
    p = oci.run("update", "--cpu-rt-runtime", "5", "up", check=False)
    assert p.returncode != 0 and "not supported" in p.stderr
    oci.run("update", "--pids-limit", "2", "up")
    assert int(first[0]) >= 5, first  # under 20: the shell and its 4 children, seen from inside
    # Under 2: the second background fork fails; ash then ends ("can't fork") without reporting, or
    # reports at most 2 processes; under the old limit it would report 5 and sleep on.
    (oci.outdir / "go-2").write_text("")
    r2 = oci.outdir / "r-2"
    deadline = time.monotonic() + 10
    while not r2.exists() and oci.state("up")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    if r2.exists():
        assert int(_wait_file(r2).split()[0]) <= 2
    else:
        assert oci.state("up")["status"] == "stopped"
    oci.run("delete", "--force", "up")


def test_events_stats_reports_the_containers_figures(oci):
    path = f"/linx-oci-t-{uuid.uuid4().hex[:8]}"
    b = oci.bundle(["/bin/sh", "-c", "sh -c 'sleep 300; true'; true"],
                   extra={"linux": {"cgroupsPath": path, "resources": {"pids": {"limit": 50},
                                                                       "memory": {"limit": 128 << 20}}}})
    oci.run("create", "--bundle", str(b), "ev")
    oci.run("start", "ev")
    deadline = time.monotonic() + 10
    while len(Path(f"/sys/fs/cgroup/pids{path}/cgroup.procs").read_text().split()) < 3 \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    ev = json.loads(oci.run("events", "--stats", "ev").stdout)
    assert ev["type"] == "stats" and ev["id"] == "ev"
    data = ev["data"]
    assert data["pids"] == {"current": 3, "limit": 50}
    assert data["memory"]["usage"]["limit"] == 128 << 20 and data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0
    oci.run("kill", "ev", "KILL")
    oci.wait_status("ev", "stopped")
    p = oci.run("events", "--stats", "ev", check=False)
    assert p.returncode != 0 and "stopped" in p.stderr
    oci.run("delete", "ev")
