"""Regression tests named after the runc/crun CVE classes (SECURITY.md has the table).

Each test is the attack, made from the workload's side against the real runner
(`linx-spec apply`, `apply --detach` and `exec` through the CLI, or the Python
API), and checks the outcome by behaviour: what the workload could open, attach
to, read or write.  Where linx-spec is not protected the test stays, marked
xfail with the reason, and SECURITY.md says so.

The mount-target symlink class also has tests in test_mounts.py
(test_symlink_in_rootfs_cannot_redirect_a_mount_onto_the_host,
test_proc_magic_links_cannot_lead_a_mount_out_of_the_root); they are not repeated here.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import AGENT_BIN, cli
from integration.test_mounts import make_rootfs

pytestmark = pytest.mark.root

PY = "/usr/bin/python3"
USR = {"type": "bind", "source": "/usr", "readonly": True}
CAP_INH = "CapInh"


def rootfs(path: Path, *dirs: str) -> Path:
    """test_mounts.py's skeleton root, with a /proc mount point."""
    return make_rootfs(path, ["proc", *dirs])


def spec_text(code: str, **fields) -> str:
    data = {"version": 1, "process": {"command": [PY, "-c", "import errno, json, os, stat\n" + code]}, **fields}
    return yaml.safe_dump(data)


def inside(run_spec, code: str, **fields):
    """Run python `code` in a workload; its stdout is one JSON value per line."""
    result, out, err = run_spec(spec_text(code, **fields))
    assert result.exit_code == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def detached(tmp_path, monkeypatch):
    """detached(spec_text) -> name: a workload started with `apply --detach`; deleted (forced) at the end."""
    runtime = tmp_path / "run"
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(runtime))
    names: list[str] = []

    def start(text: str) -> str:
        path = tmp_path / f"detached{len(names)}.yaml"
        path.write_text(text)
        out = cli("apply", "--detach", str(path))
        assert out.returncode == 0, out.stderr
        names.append(out.stdout.strip())
        return names[-1]

    yield start
    for name in names:
        cli("delete", "--force", name)


# What a process can see of its own fds and cwd: the CVE-2024-21626 probe.
FD_PROBE = r"""
import json, os
fds = {}
for n in os.listdir('/proc/self/fd'):
    try:
        fds[n] = os.readlink('/proc/self/fd/' + n)
    except OSError:
        pass  # the listing's own fd, closed again
cwd = os.getcwd()
print(json.dumps({"fds": fds, "cwd": cwd, "cwd_link": os.readlink('/proc/self/cwd'),
                  "root_link": os.readlink('/proc/self/root')}))
"""


def _fd_findings(report: dict, expected_cwd: str) -> list[str]:
    bad = []
    for n, target in report["fds"].items():
        if int(n) > 2:
            bad.append(f"fd {n} -> {target} leaked into the workload")
    if report["cwd"] != expected_cwd or report["cwd_link"] != expected_cwd:
        bad.append(f"cwd is {report['cwd']!r} ({report['cwd_link']!r}), not {expected_cwd!r} inside the root")
    if report["root_link"] != "/":
        bad.append(f"root is {report['root_link']!r}")
    return bad


def test_cve_2024_21626_no_leaked_fd_or_host_cwd(tmp_path, write_spec):
    """runc leaked an fd of the host's /sys/fs/cgroup into the container's init and
    `exec`'d processes; WORKDIR /proc/self/fd/N then gave a cwd on the host's
    filesystem.  Here: the caller leaks a directory fd of the host into
    `linx-spec apply`; inside, only 0-2 are open and cwd is the spec's, in the root."""
    root = rootfs(tmp_path / "root", "work")
    path = write_spec(spec_text("", namespaces=["pid", "mount", "ipc", "uts"],
                                mounts={"rootfs": str(root), "entries": [USR, {"type": "proc"}]}))
    data = yaml.safe_load(path.read_text())
    data["process"] = {"command": [PY, "-c", FD_PROBE], "cwd": "/work"}
    path.write_text(yaml.safe_dump(data))
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)  # what a careless caller leaks
    try:
        out = subprocess.run(cli_argv("apply", str(path)), pass_fds=[host_dir], capture_output=True, text=True,
                             env=cli_env(), timeout=60)
    finally:
        os.close(host_dir)
    assert out.returncode == 0, out.stderr
    assert _fd_findings(json.loads(out.stdout), "/work") == []


def test_cve_2024_21626_workdir_through_proc_self_fd_stays_inside(tmp_path, run_spec):
    """The attack itself: cwd /proc/self/fd/N for every N the child might hold
    while it sets itself up.  Either the step fails (rolled back) or the cwd
    is inside the workload's root; it is never a host directory."""
    from linx_spec import LinxError

    root = rootfs(tmp_path / "root")
    landed = {}
    for n in range(3, 12):
        text = spec_text("", namespaces=["pid", "mount", "ipc", "uts"],
                         mounts={"rootfs": str(root), "entries": [USR, {"type": "proc"}]})
        data = yaml.safe_load(text)
        data["process"] = {"command": [PY, "-c", FD_PROBE], "cwd": f"/proc/self/fd/{n}"}
        try:
            result, out, err = run_spec(yaml.safe_dump(data))
        except LinxError:
            continue  # refused before execve: nothing ran
        if result.exit_code == 0:
            landed[n] = json.loads(out)
    for n, report in landed.items():
        assert not report["cwd"].startswith("(unreachable)"), (n, report)
        assert report["root_link"] == "/" and report["fds"].keys() <= {"0", "1", "2"}, (n, report)


def test_cve_2024_21626_exec_gets_no_fd_and_no_host_cwd(tmp_path, detached):
    root = rootfs(tmp_path / "root", "work")
    name = detached(yaml.safe_dump({
        "version": 1, "name": "lxcvefd", "namespaces": ["pid", "mount", "ipc", "uts"],
        "mounts": {"rootfs": str(root), "entries": [USR, {"type": "proc"}]},
        "process": {"command": ["/bin/sh", "-c", "while :; do sleep 1; done"], "cwd": "/work"}}))
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = subprocess.run(cli_argv("exec", name, "--", PY, "-c", FD_PROBE), pass_fds=[host_dir],
                             capture_output=True, text=True, env=cli_env(), timeout=60)
    finally:
        os.close(host_dir)
    assert out.returncode == 0, out.stderr
    assert _fd_findings(json.loads(out.stdout), "/work") == []


def cli_env() -> dict:
    from conftest import REPO

    return dict(os.environ, PYTHONPATH=str(REPO))


def cli_argv(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "linx_spec.cli", *args]


# ---- CVE-2019-5736 and CVE-2016-9962: the exec'd helper, attacked while it is parked --------

ATTACKER = r"""
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000
found = {"seen_helper": 0, "exe_write": [], "exe_handle": [], "ptrace_helper": [], "self_exe_write": None}
try:
    os.open('/proc/self/exe', os.O_WRONLY)
    found["self_exe_write"] = "opened"
except OSError as e:
    found["self_exe_write"] = e.errno
held = []
end = time.monotonic() + float(sys.argv[1])


def last_pid():
    with open('/proc/sys/kernel/ns_last_pid') as f:
        return int(f.read())


last = last_pid()
open('/tmp/ready', 'w').close()
while time.monotonic() < end:
    # The pid namespace's last handed-out pid: look at each new process at once.
    cur = last_pid()
    for pid in range(last + 1, cur + 1):
        try:
            comm = open('/proc/%d/comm' % pid).read().strip()
        except OSError:
            continue
        if comm != 'linx-agent':
            continue  # the exec'd helper before its execve; afterwards it is the workload's own
        found["seen_helper"] += 1
        try:  # CVE-2019-5736: overwrite the host binary through /proc/PID/exe
            fd = os.open('/proc/%d/exe' % pid, os.O_WRONLY)
            found["exe_write"].append(pid)
            os.close(fd)
        except OSError:
            pass
        # Keep trying while the helper is parked: it may become reachable once it has
        # dropped its capabilities, before its execve.
        handle = attached = False
        for _ in range(100000):
            if not handle:
                try:  # a handle on the host binary, to reopen for writing later (CVE-2019-5736)
                    fd = os.open('/proc/%d/exe' % pid, os.O_PATH)
                    held.append(fd)
                    found["exe_handle"].append(os.readlink('/proc/self/fd/%d' % fd))
                    handle = True
                except OSError:
                    pass
            # CVE-2016-9962: attach to the helper while it still holds the agent's fds.
            if not attached and libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
                # Stop it and look at what it runs while stopped: the agent binary means the
                # helper was caught before its execve.  Then let it go (a seized tracee is
                # detached only while stopped).
                attached = True
                libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
                try:
                    os.waitpid(pid, WALL)
                    exe = os.readlink('/proc/%d/exe' % pid)
                except OSError as e:
                    exe = 'unknown: %s' % e
                found["ptrace_helper"].append([pid, exe])
                libc.ptrace(PTRACE_DETACH, pid, None, None)
            try:
                if handle and attached or open('/proc/%d/comm' % pid).read().strip() != 'linx-agent':
                    break
            except OSError:
                break
    last = cur
for fd in held:
    try:
        os.close(os.open('/proc/self/fd/%d' % fd, os.O_WRONLY))
        found["exe_write"].append("reopened fd %d" % fd)
    except OSError:
        pass
print(json.dumps(found), flush=True)
time.sleep(600)
"""


EXECS = 30  # `linx-spec exec` runs while the workload watches (within its 20 s)


@pytest.fixture(scope="module")
def helper_attack(tmp_path_factory):
    """A root workload without a user namespace (docker's capabilities, no seccomp:
    ptrace allowed) watches its pid namespace for the `linx-spec exec` helper while
    the host runs `exec` twenty times.  Returns what the workload managed."""
    tmp = tmp_path_factory.mktemp("cve-helper")
    runtime = tmp / "run"
    env = dict(cli_env(), LINX_RUNTIME_DIR=str(runtime))
    root = rootfs(tmp / "root")
    path = tmp / "attacker.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "lxcveexe", "namespaces": ["pid", "mount", "ipc", "uts"],
        "mounts": {"rootfs": str(root), "entries": [USR, {"type": "proc"}, {"type": "tmpfs", "target": "/tmp"}]},
        "process": {"command": [PY, "-c", ATTACKER, "20"]}}))
    before = hashlib.sha256(Path(AGENT_BIN).read_bytes()).hexdigest()
    out = subprocess.run(cli_argv("apply", "--detach", str(path)), env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    try:
        host_pid = json.loads((runtime / "lxcveexe" / "state.json").read_text())["host_pid"]
        ready = Path(f"/proc/{host_pid}/root/tmp/ready")
        for _ in range(100):
            if ready.exists():
                break
            time.sleep(0.05)
        execs = [subprocess.run(cli_argv("exec", "lxcveexe", "--", "/bin/true"), env=env, capture_output=True,
                                text=True, timeout=60).returncode for _ in range(EXECS)]
        log = runtime / "lxcveexe" / "stdout.log"
        for _ in range(600):  # the workload reports when its watch ends
            if log.exists() and log.read_text().strip():
                break
            time.sleep(0.05)
        found = json.loads(log.read_text().splitlines()[0])
    finally:
        subprocess.run(cli_argv("delete", "--force", "lxcveexe"), env=env, capture_output=True, timeout=60)
    found["execs"] = execs
    found["agent_changed"] = hashlib.sha256(Path(AGENT_BIN).read_bytes()).hexdigest() != before
    return found


def test_cve_2019_5736_proc_self_exe_not_writable(helper_attack):
    """runc: a process in the container opened /proc/<runc exec pid>/exe and
    overwrote the host's runc binary.  Here the workload watches for the exec'd
    helper (the agent binary, parked in the workload's pid namespace before its
    execve) and tries to open its /proc/PID/exe for writing, directly and through
    an O_PATH handle reopened later; and its own /proc/self/exe."""
    assert helper_attack["execs"] == [0] * EXECS
    assert helper_attack["exe_write"] == [] and not helper_attack["agent_changed"], helper_attack
    assert helper_attack["self_exe_write"] != "opened"


# The window (after the helper's capability drop, before its execve) is short:
# the attack loops over it (helper_attack); before the agent became non-dumpable
# when joining namespaces, both of these failed on most runs.
def test_cve_2019_5736_no_handle_on_the_host_binary(helper_attack):
    """Even a read-only handle on the agent binary is one step from CVE-2019-5736
    (it only takes the binary not being busy when the handle is reopened)."""
    assert helper_attack["exe_handle"] == [], helper_attack


def test_cve_2016_9962_exec_helper_not_ptraceable(helper_attack):
    """runc: the exec'd init was ptrace-able from the container and leaked host fds.
    Here the workload tries PTRACE_SEIZE on every linx-agent process in its pid namespace."""
    caught = [[p, exe] for p, exe in helper_attack["ptrace_helper"] if exe.endswith("linx-agent")]
    assert caught == [], helper_attack


# ---- CVE-2022-29162: inheritable capabilities ------------------------------------------------

STATUS_CAPS = ("for l in open('/proc/self/status'):\n"
               "    if l.startswith('Cap'): print(json.dumps(l.split()))")


def _caps(lines) -> dict[str, int]:
    return {k.rstrip(":"): int(v, 16) for k, v in lines}


@pytest.mark.parametrize("uid", [0, 1000])
def test_cve_2022_29162_inheritable_empty_unless_asked(run_spec, uid):
    """runc `exec` gave processes a non-empty inheritable set: a program with
    inheritable file capabilities then gained them at execve.  Default set, as
    uid 0 and as another uid: CapInh is 0."""
    got = _caps(inside(run_spec, STATUS_CAPS, namespaces=["pid", "mount", "ipc", "uts"],
                       process={"command": [PY, "-c", "import json\n" + STATUS_CAPS],
                                "user": {"uid": uid, "gid": uid}}))
    assert got[CAP_INH] == 0 and got["CapAmb"] == 0, got


def test_cve_2022_29162_inheritable_only_what_the_spec_asks(run_spec):
    got = _caps(inside(run_spec, STATUS_CAPS, namespaces=["pid", "mount"],
                       capabilities={"bounding": ["chown", "kill"], "inheritable": ["kill"]}))
    assert got[CAP_INH] == 1 << 5, got  # CAP_KILL, capabilities(7)


def test_cve_2022_29162_exec_inheritable_empty(tmp_path, detached):
    root = rootfs(tmp_path / "root")
    name = detached(yaml.safe_dump({
        "version": 1, "name": "lxcvecap", "namespaces": ["pid", "mount", "ipc", "uts"],
        "mounts": {"rootfs": str(root), "entries": [USR, {"type": "proc"}]},
        "process": {"command": ["/bin/sh", "-c", "while :; do sleep 1; done"]}}))
    out = cli("exec", name, "--", PY, "-c", "import json\n" + STATUS_CAPS)
    assert out.returncode == 0, out.stderr
    got = _caps(json.loads(line) for line in out.stdout.splitlines())
    assert got[CAP_INH] == 0 and got["CapAmb"] == 0 and got["CapEff"] != 0, got


# ---- the mount-target class: CVE-2019-16884, CVE-2019-19921, CVE-2021-30465, CVE-2023-27561, CVE-2023-28642

def _host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def test_cve_2023_28642_proc_symlink_in_rootfs_cannot_redirect_proc(run_spec, tmp_path):
    """runc mounted procfs onto a rootfs's /proc that was a symlink, so the proc
    mount (and the LSM writes runc made to it, CVE-2019-16884) went where the
    image pointed.  Here /proc in the rootfs is a symlink to a host directory:
    the proc mount lands inside the root, /proc/sys is still read-only, the
    host directory is untouched and the host's mount table unchanged."""
    host_dir = tmp_path / "host-owned"
    host_dir.mkdir()
    (host_dir / "canary").write_text("untouched")
    root = rootfs(tmp_path / "root")
    (root / "proc").rmdir()
    (root / "proc").symlink_to(str(host_dir))
    before = _host_mounts()
    got = inside(run_spec, """
print(json.dumps([os.path.exists('/proc/self/status'), os.path.exists('/proc/canary')]))
try:
    open('/proc/sys/kernel/domainname', 'w').write('x')
    print(json.dumps('written'))
except OSError as e:
    print(json.dumps(errno.errorcode[e.errno]))
""", namespaces=["pid", "mount", "ipc", "uts"],
        mounts={"rootfs": str(root), "entries": [USR, {"type": "proc"}], "readonly_paths": ["default"],
                "masked_paths": ["default"]})
    assert got == [[True, False], "EROFS"]
    assert os.listdir(host_dir) == ["canary"] and (host_dir / "canary").read_text() == "untouched"
    assert _host_mounts() == before


def _renameat2_exchange():
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2

    def exchange(a: str, b: str) -> None:
        libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)

    return exchange


def test_cve_2021_30465_mount_target_swapped_by_a_racing_process(run_spec, tmp_path):
    """runc resolved a mount target, then mounted on the path: a second container
    sharing the volume swapped a directory for a symlink in between (renameat2
    RENAME_EXCHANGE) and the mount landed outside the root (CVE-2019-19921 and
    its regression CVE-2023-27561 are the same race on /proc).  Here a racing
    process on the host swaps the target directory with a symlink to a host
    directory while workloads start; every tmpfs lands inside the root (the
    workload finds it in its own mount table) and never on the host directory."""
    from linx_spec import LinxError

    host_dir = tmp_path / "host-owned"
    host_dir.mkdir()
    root = rootfs(tmp_path / "root", "shared/t")
    (root / "shared" / "link").symlink_to(str(host_dir))
    exchange = _renameat2_exchange()
    stop = threading.Event()
    a, b = str(root / "shared" / "t"), str(root / "shared" / "link")

    def swap() -> None:
        while not stop.is_set():
            exchange(a, b)

    racer = threading.Thread(target=swap, daemon=True)
    racer.start()
    landed, refused = 0, 0
    try:
        for _ in range(6):
            try:
                got = inside(run_spec, """
with open('/proc/self/mountinfo') as f:
    print(json.dumps(sorted(l.split()[4] for l in f if ' - tmpfs ' in l)))
""", namespaces=["pid", "mount", "ipc", "uts"],
                    mounts={"rootfs": str(root), "entries": [USR, {"type": "proc"},
                                                             {"type": "tmpfs", "target": "/shared/t"}]})
            except (LinxError, AssertionError):
                refused += 1  # the target was a symlink at that moment: created elsewhere or refused
                continue
            landed += 1
            assert got[0], "the tmpfs is not in the workload's own mount table: it landed outside the root"
    finally:
        stop.set()
        racer.join()
    if os.path.islink(a):  # leave the tree as it was
        exchange(a, b)
    assert landed + refused == 6 and landed > 0
    assert os.listdir(host_dir) == []


# ---- the 2025 class: masked paths, /dev/console, procfs writes --------------------------------

MASK_PROBE = """
out = {}
for p in ('/proc/kcore', '/proc/timer_list', '/proc/keys', '/proc/sched_debug'):
    try:
        st = os.stat(p)
    except FileNotFoundError:
        continue
    out[p] = [stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), open(p, 'rb').read(16).hex()]
try:
    open('/proc/sys/kernel/core_pattern', 'w').write('|/tmp/x')
    out['core_pattern'] = 'written'
except OSError as e:
    out['core_pattern'] = errno.errorcode[e.errno]
with open('/proc/self/mountinfo') as f:
    out['console_mounts'] = [l.split()[4] for l in f if l.split()[4] == '/dev/console']
print(json.dumps(out))
"""


@pytest.mark.parametrize("how", ["symlink", "bind-swap"])
def test_cve_2025_31133_masked_paths_cannot_be_redirected(run_spec, tmp_path, how):
    """runc masked a file by bind-mounting the container's own /dev/null; an image
    (or a racing container) made that /dev/null a symlink to
    /proc/sys/kernel/core_pattern, and the "mask" became a writable core_pattern.
    Here the root's /dev/null is a symlink to core_pattern (or a host file bound
    there): every masked file is still the real null device (1:3, reads empty),
    core_pattern stays read-only, and (CVE-2025-52565) nothing is bound on /dev/console."""
    root = rootfs(tmp_path / "root", "dev")
    entries = [USR, {"type": "proc"}]
    if how == "symlink":
        (root / "dev" / "null").symlink_to("/proc/sys/kernel/core_pattern")
        (root / "dev" / "console").symlink_to("/proc/sysrq-trigger")
    else:
        decoy = tmp_path / "decoy"
        decoy.write_text("not null")
        (root / "dev" / "null").write_text("")
        entries.append({"type": "bind", "source": str(decoy), "target": "/dev/null"})
    got = inside(run_spec, MASK_PROBE, namespaces=["pid", "mount", "ipc", "uts"],
                 mounts={"rootfs": str(root), "entries": entries, "masked_paths": ["default"],
                         "readonly_paths": ["default"]})[0]
    masked = {k: v for k, v in got.items() if k.startswith("/proc/")}
    assert masked and all(v == [True, 1, 3, ""] for v in masked.values()), got
    assert got["core_pattern"] in ("EROFS", "EACCES", "EPERM"), got
    assert got["console_mounts"] == [], got


def test_cve_2025_52881_procfs_writes_land_in_procfs(run_spec, tmp_path):
    """runc's writes to procfs (LSM labels, sysctls) could be redirected by mounts
    the container raced in.  linx-spec's child writes nothing into the workload's
    /proc: the id maps, setgroups and oom_score_adj are written by the host to
    the host's /proc/PID, before any mount of the workload exists.  A rootfs whose
    /proc is a decoy tree with those file names: the decoys are untouched and the
    workload sees the values in the real procfs."""
    root = rootfs(tmp_path / "root")
    (root / "proc").rmdir()
    decoy = tmp_path / "decoy-proc"
    (decoy / "self").mkdir(parents=True)
    for name in ("uid_map", "gid_map", "setgroups", "oom_score_adj"):
        (decoy / "self" / name).write_text("decoy\n")
    (root / "proc").symlink_to(str(decoy))
    got = inside(run_spec, """
print(json.dumps([open('/proc/self/uid_map').read().split(), open('/proc/self/oom_score_adj').read().strip()]))
""", namespaces=["user", "pid", "mount", "ipc", "uts"],
        rlimits={"oom_score_adj": 500},
        mounts={"rootfs": str(root), "entries": [USR, {"type": "proc"}]})
    assert got == [[["0", str(os.geteuid()), "1"], "500"]]
    for name in ("uid_map", "gid_map", "setgroups", "oom_score_adj"):
        assert (decoy / "self" / name).read_text() == "decoy\n", name
