"""Real container engines driving an OCI runtime (issue 17): containerd through `ctr`
and podman, each first with Debian's runc (which proves the harness) and then with
linx-oci, the same commands and the same checks.

containerd: a private daemon (its own root, state, socket and config in a temp dir,
no CRI plugin) imports an image archive built here from busybox-static (an OCI image
layout in a tar, no registry), and `ctr run --runc-binary RUNTIME --rm` runs it; the
workload reports from inside (pid 1 of its own pid namespace, the image's root, the
cgroup containerd asked for, its exit code back through the shim).  A second test
drives the lifecycle the shim exposes: run -d, task ls (RUNNING, pid), kill, wait,
delete.  podman: `podman --runtime RUNTIME run --rm --rootfs DIR` with a private
root/runroot, vfs storage, cgroupfs (this host's cgroups are hybrid), no network.

Both engines run in a private mount namespace (`unshare --mount --propagation
private`): their rootfs and shm mounts never show in the host's table, where other
test runs take their leak census; the tests check instead, inside the engine's own
namespace, that no mount of the container is left.  Every engine-side object has a
`linx-` name the census sees (containerd namespace -> cgroup /linx-ctr-*/ID, podman
--cgroup-parent /linx-podman-*), and the tests remove those parents at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent.parent
BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static
APPLETS = ("sh", "cat", "echo", "id", "ls", "readlink", "sleep", "grep", "hostname")
IMAGE = "docker.io/library/linx-busybox:test"
CGROUP_ROOT = "/sys/fs/cgroup"

# What the workload prints; every line is checked by the tests below.
PROBE = ("echo answer=$((6 * 7)); echo pid=$$; echo uid=$(id -u); "
         "echo bin=$(ls /bin | grep -c .); echo osrelease=$(ls /etc/os-release 2>/dev/null | grep -c .); "
         "grep -m1 -E '^[0-9]+:(memory|pids):' /proc/self/cgroup | sed 's/^[0-9]*:[a-z]*:/cgroup=/' ; "
         "exit 7")


# Where linx-oci is known to differ from runc under an engine, by the exact symptom and its reason
# (as test_oci_differential.py's KNOWN_DIFFERENCES).  Only that symptom turns the failure into an
# xfail naming the reason; any other failure fails, and a fix simply passes.  The findings are in
# README "Running under containerd, podman and Kubernetes".
KNOWN = {
    "seccomp-nnp": (r"a seccomp filter without no_new_privs needs CAP_SYS_ADMIN",
                    "linx-oci refuses a seccomp filter without process.noNewPrivileges (podman's default "
                    "config): linx-spec installs the filter after dropping capabilities, runc before "
                    "(libcontainer/standard_init_linux.go) when noNewPrivileges is false"),
    "seccomp-complex": (r"cannot be compiled exactly: (?s:.*)fewer argument comparisons",
                        "podman's default seccomp profile has argument rules (masked comparisons on one "
                        "syscall) that linx-spec's compiler refuses rather than compile inexactly; runc hands "
                        "them to libseccomp as they are"),
}


def _known(name: str, text: str = "") -> None:

    pattern, reason = KNOWN[name]
    if pattern is None or re.search(pattern, text):
        pytest.xfail(f"linx-oci, known ({name}): {reason}")


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory) -> dict[str, str]:
    """runc and linx-oci, as executables an engine can name.  linx-oci runs from this checkout
    (the source the tests test) through a wrapper, as the console script would start it."""
    _need("runc")
    d = tmp_path_factory.mktemp("runtimes")
    os.chmod(d, 0o755)
    wrapper = d / "linx-oci"
    wrapper.write_text("#!/bin/sh\n"
                       f"PYTHONPATH={REPO} LINX_AGENT={os.environ['LINX_AGENT']} "
                       f"exec {sys.executable} -m linx_spec.oci.main \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return {"runc": shutil.which("runc"), "linx-oci": str(wrapper)}


def _census_cgroups(name: str) -> list[str]:
    return [os.path.join(CGROUP_ROOT, h, name) for h in sorted(os.listdir(CGROUP_ROOT))
            if os.path.isdir(os.path.join(CGROUP_ROOT, h, name))]


def _remove_cgroup_tree(name: str) -> None:
    """rmdir the engine's parent cgroup NAME and its (empty) children in every hierarchy."""
    for top in _census_cgroups(name):
        for root, dirs, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            for _ in range(50):
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def _mounts_below(pid: int, path: str) -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(path)]


# --- containerd ------------------------------------------------------------------------------

def build_image_archive(out: Path) -> None:
    """An OCI image layout in a tar (what `ctr image import` reads): one layer holding busybox
    and a few applets, config, manifest, and an index naming the image."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("proc", 0o555), ("dev", 0o755), ("sys", 0o555),
                           ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            t.addfile(info)
        data = Path(BUSYBOX).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        t.addfile(info, io.BytesIO(data))
        for applet in APPLETS + ("sed",):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
    layer = layer_buf.getvalue()

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "test"}}]}).encode()
    with tarfile.open(out, "w") as t:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", index)
        for blob in (layer, config, manifest):
            add("blobs/sha256/" + digest(blob).split(":", 1)[1], blob)


class Containerd:
    def __init__(self, base: Path, namespace: str):
        self.base = base
        self.namespace = namespace
        self.address = str(base / "c.sock")  # short: a unix socket path is at most 107 bytes
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.base / "config.toml"
        config.write_text(f"""version = 2
root = "{self.base / 'root'}"
state = "{self.base / 'state'}"
# No CRI (Kubernetes' plugin: it would want CNI and a registry), no snapshotters this host lacks.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = "{self.base / 'debug.sock'}"
[metrics]
  address = ""
""")
        log = open(self.base / "containerd.log", "wb")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "containerd",
                                      "--config", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited ({self.proc.returncode}): {self.log_tail()}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        pytest.fail(f"containerd did not answer on {self.address} within 30 s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.base / "containerd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        res = subprocess.run(["ctr", "--address", self.address, "--namespace", self.namespace, *args],
                             capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            pytest.fail(f"ctr {' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}\n"
                        f"containerd log: {self.log_tail()}")
        return res

    def shims(self) -> list[int]:
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and self.address.encode() in cmd:
                out.append(int(pid))
        return out

    def stop(self) -> list[str]:
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("containerd needed SIGKILL")
        for pid in self.shims():  # ours only: their command line names our socket
            problems.append(f"shim {pid} still running")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return problems


@pytest.fixture(scope="module")
def containerd():
    _need("containerd", "ctr", "containerd-shim-runc-v2", "unshare")
    base = Path(tempfile.mkdtemp(prefix="lxctr-"))
    os.chmod(base, 0o711)
    namespace = f"linx-ctr-{uuid.uuid4().hex[:8]}"  # cgroupsPath /NAMESPACE/ID: the census sees it
    daemon = Containerd(base, namespace)
    try:
        daemon.start()
        archive = base / "busybox.tar"
        build_image_archive(archive)
        daemon.ctr("image", "import", str(archive))
        yield daemon
    finally:
        problems = daemon.stop()
        _remove_cgroup_tree(namespace)
        left = _census_cgroups(namespace)
        shutil.rmtree(base, ignore_errors=True)
        assert not problems and not left, f"containerd left: {problems} {left}"


def _no_leftovers(daemon: Containerd, cid: str) -> None:
    assert daemon.ctr("task", "ls", "-q").stdout.split() == []
    assert cid not in daemon.ctr("container", "ls", "-q").stdout.split()
    assert _mounts_below(daemon.proc.pid, str(daemon.base)) == [], "a container mount is left in containerd's namespace"
    assert not [p for p in _census_cgroups(daemon.namespace) if os.path.isdir(os.path.join(p, cid))]


@pytest.mark.parametrize("runtime", ["runc", "linx-oci"])
def test_ctr_run_rm_reports_from_inside(containerd, runtimes, runtime):
    cid = f"run-{runtime}-{uuid.uuid4().hex[:6]}"
    res = containerd.ctr("run", "--rm", "--runc-binary", runtimes[runtime], IMAGE, cid, "/bin/sh", "-c", PROBE,
                         check=False)
    out = res.stdout.splitlines()
    assert res.returncode == 7, f"exit {res.returncode}; stdout {res.stdout!r} stderr {res.stderr!r}"
    assert "answer=42" in out                       # the image's shell ran the command
    assert "pid=1" in out                           # pid 1 of a pid namespace of its own
    assert "uid=0" in out
    assert f"bin={len(APPLETS) + 2}" in out         # the image's /bin (busybox, sed, the applets) ...
    assert "osrelease=0" in out                     # ... and not the host's root
    _no_leftovers(containerd, cid)
    want = f"cgroup=/{containerd.namespace}/{cid}"  # the cgroupsPath containerd gave, the container's own
    assert want in out, out


@pytest.mark.parametrize("runtime", ["runc", "linx-oci"])
def test_ctr_detached_task_kill_and_delete(containerd, runtimes, runtime):
    cid = f"det-{runtime}-{uuid.uuid4().hex[:6]}"
    # pid 1 of a pid namespace ignores signals it has no handler for: the shell traps TERM.
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done"
    containerd.ctr("run", "-d", "--runc-binary", runtimes[runtime], IMAGE, cid, "/bin/sh", "-c", script)
    try:
        tasks = {ln.split()[0]: ln.split()[1:] for ln in containerd.ctr("task", "ls").stdout.splitlines()[1:]}
        pid, status = int(tasks[cid][0]), tasks[cid][1]
        assert status == "RUNNING"
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"/bin/sh", b"-c"]
        # The process containerd shows is the container's: in the cgroup containerd asked for.
        assert f"/{containerd.namespace}/{cid}" in Path(f"/proc/{pid}/cgroup").read_text()
        containerd.ctr("task", "kill", "--signal", "SIGTERM", cid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = [ln for ln in containerd.ctr("task", "ls").stdout.splitlines() if ln.startswith(cid + " ")]
            if line and line[0].split()[2] == "STOPPED":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"{cid} not STOPPED 20 s after SIGTERM")
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text()
        # The exit status the shim reaped is the trap's (ctr warns with it on delete).
        deleted = containerd.ctr("task", "delete", cid)
        assert f"task {cid} exit with non-zero exit code 3" in deleted.stderr, deleted.stderr
    finally:
        containerd.ctr("task", "delete", "--force", cid, check=False)
        containerd.ctr("container", "delete", cid, check=False)
    _no_leftovers(containerd, cid)


# --- podman ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman_rootfs():
    _need("podman", "conmon", "unshare")
    base = Path(tempfile.mkdtemp(prefix="lxpod-"))
    os.chmod(base, 0o711)
    root = base / "rootfs"
    for d in ("bin", "etc", "proc", "dev", "sys", "tmp"):
        (root / d).mkdir(parents=True)
    os.chmod(root, 0o755)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS + ("sed",):
        os.symlink("busybox", root / "bin" / applet)
    try:
        yield base, root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("runtime", ["runc", "linx-oci"])
def test_podman_run_rootfs_reports_from_inside(podman_rootfs, runtimes, runtime):
    base, rootfs = podman_rootfs
    run = base / runtime
    parent = f"linx-podman-{uuid.uuid4().hex[:8]}"
    name = f"lx-{runtime}-{uuid.uuid4().hex[:6]}"
    # Private storage (vfs: no overlay mounts), cgroupfs (no systemd here), the host's own rlimit
    # ceilings (podman asks for nofile and nproc at 1048576, above this host's hard limits: runc
    # then fails with EPERM), no network (no CNI/netavark setup).
    cmd = ["unshare", "--mount", "--propagation", "private", "podman",
           "--root", str(run / "root"), "--runroot", str(run / "runroot"), "--tmpdir", str(run / "tmp"),
           "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
           "--runtime", runtimes[runtime],
           "run", "--rm", "--name", name, "--network", "none", "--cgroup-parent", f"/{parent}",
           "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           "--rootfs", str(rootfs), "/bin/sh", "-c", PROBE]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        _remove_cgroup_tree(parent)
        left = _census_cgroups(parent)
        shutil.rmtree(run, ignore_errors=True)
    out = res.stdout.splitlines()
    assert not left, f"podman left cgroups: {left}"
    if runtime == "linx-oci" and res.returncode != 7:
        _known("seccomp-nnp", res.stderr)
        _known("seccomp-complex", res.stderr)
    assert res.returncode == 7, f"exit {res.returncode}; stdout {res.stdout!r} stderr {res.stderr!r}"
    assert "answer=42" in out and "pid=1" in out and "uid=0" in out
    assert f"bin={len(APPLETS) + 2}" in out and "osrelease=0" in out
    assert any(line.startswith(f"cgroup=/{parent}/") for line in out), out
