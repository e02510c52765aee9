"""The filesystem on the real kernel (issue 8): checked from inside the workload
(it prints what it sees and what its writes return) and from the host.

Every test here runs with `host_mount_table_unchanged`: the host's mount table
is the same after the test as before it, whatever the workload mounted.

The rootfs is cheap: empty directories and Debian's merged-/usr symlinks
(bin -> usr/bin ...), with the host's /usr bound in read-only by the spec, so
/usr/bin/python3 runs inside without copying anything.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from linx_spec import StepError

pytestmark = pytest.mark.root

PY = "/usr/bin/python3"
NAMESPACES = ["user", "pid", "net", "mount", "uts", "ipc"]
USR = {"type": "bind", "source": "/usr", "readonly": True}
# Other subsystems' tests, running at the same time, mount network namespaces
# and cgroup hierarchies; nothing of this subsystem ever mounts there.
OTHERS = ("/run/netns", "/var/run/netns", "/sys/fs/cgroup", "/sys/fs/bpf")


def _host_table() -> list:
    from linx_spec import mountinfo

    return [m for m in mountinfo.read() if not m.mount_point.startswith(OTHERS)]


@pytest.fixture(autouse=True)
def host_mount_table_unchanged():
    before = _host_table()
    yield
    assert _host_table() == before, "a mount leaked into the host's mount table"


def make_rootfs(path: Path, extra_dirs=()) -> Path:
    """A rootfs skeleton: a few empty directories and the merged-/usr links."""
    for d in ("usr", "etc", "tmp", *extra_dirs):
        (path / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if os.path.exists(f"/usr/{link}"):
            (path / link).symlink_to(f"usr/{link}")
    return path


def workload(run_spec, mounts: dict, code: str, *, namespaces=NAMESPACES, **spec):
    """Run python code inside; its stdout is JSON lines -> list of values."""
    data = {"version": 1, "namespaces": namespaces, "mounts": mounts,
            "process": {"command": [PY, "-c", "import errno, json, os\n" + code]}, **spec}
    result, out, err = run_spec(yaml.safe_dump(data))
    assert result.exit_code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def try_write(path: str) -> str:
    """Python source: print the errno name a write to path gets ("ok" if none)."""
    # os.write, not a buffered file: the error must come from the write itself.
    return (f"try:\n    fd = os.open({path!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
            f"    os.write(fd, b'x')\n    os.close(fd)\n    print(json.dumps('ok'))\n"
            f"except OSError as e:\n    print(json.dumps(errno.errorcode[e.errno]))\n")


def test_the_workload_sees_only_its_rootfs(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root", ["proc"])
    (tmp_path / "host-only").write_text("not for the workload")
    listing, canary, mounts = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "proc"}]}, f"""
print(json.dumps(sorted(os.listdir("/"))))
print(json.dumps(os.path.exists({str(tmp_path / "host-only")!r}) or os.path.exists("/work")))
print(json.dumps([line.split()[3:5] for line in open("/proc/self/mountinfo")]))
""")
    assert listing == sorted(os.listdir(root))
    assert canary is False
    # The old root is detached: only the rootfs, the /usr bind and /proc remain.
    assert mounts == [[str(root), "/"], ["/usr", "/usr"], ["/", "/proc"]]


def test_writing_to_a_read_only_bind_fails_with_erofs(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root")
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    got = workload(run_spec, {"rootfs": str(root), "entries": [
        USR, {"type": "bind", "source": str(ro), "target": "/ro", "readonly": True},
        {"type": "bind", "source": str(rw), "target": "/rw"}]},
        try_write("/ro/f") + try_write("/rw/f") + try_write("/usr/f"))
    assert got == ["EROFS", "ok", "EROFS"]
    assert not (ro / "f").exists() and (rw / "f").read_text() == "x"
    # The mount points were created inside the rootfs, not anywhere else.
    assert (root / "ro").is_dir() and (root / "rw").is_dir()


def test_tmpfs_size_limit_is_enforced_with_enospc(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root")
    (written, err), = workload(run_spec, {"rootfs": str(root), "entries": [
        USR, {"type": "tmpfs", "target": "/tmp", "size": "1Mi", "mode": 0o1777}]}, """
n = 0
try:
    with open("/tmp/fill", "wb", buffering=0) as f:
        for _ in range(64):
            n += f.write(b"x" * 65536)
    e = "none"
except OSError as exc:
    e = errno.errorcode[exc.errno]
print(json.dumps([n, e]))
""")
    assert err == "ENOSPC"
    assert 0 < written <= 2**20


def test_proc_lists_only_the_workload_pids(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root")
    (me, pids), = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "proc"}]},
                           "print(json.dumps([os.getpid(), sorted(p for p in os.listdir('/proc') if p.isdigit())]))")
    assert (me, pids) == (1, ["1"])


def test_overlay_root_writes_land_in_upper_and_lower_stays_untouched(run_spec, tmp_path):
    lower = make_rootfs(tmp_path / "lower")
    (lower / "etc" / "motd").write_text("from lower\n")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    before = sorted(str(p.relative_to(lower)) for p in lower.rglob("*"))
    got = workload(run_spec, {"rootfs": {"lower": [str(lower)], "upper": str(upper), "work": str(work)},
                              "entries": [USR], "etc": {"hosts": "generate"}}, """
open("/etc/motd", "w").write("changed\\n")
open("/new", "w").write("new\\n")
print(json.dumps([open("/etc/motd").read(), sorted(os.listdir("/"))]))
""")
    assert got == [["changed\n", sorted(os.listdir(lower) + ["new"])]]
    assert (lower / "etc" / "motd").read_text() == "from lower\n"
    assert sorted(str(p.relative_to(lower)) for p in lower.rglob("*")) == before
    assert (upper / "new").read_text() == "new\n" and (upper / "etc" / "motd").read_text() == "changed\n"
    assert (upper / "etc" / "hosts").read_text() == ""  # the mount point, made in the upper layer too


def test_overlay_entry_without_rootfs_over_an_existing_host_dir(run_spec, tmp_path):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "a").write_text("A")
    got = workload(run_spec, {"entries": [{"type": "overlay", "target": str(merged), "lower": [str(lower)],
                                           "upper": str(upper), "work": str(work)}]},
                   f"open({str(merged / 'b')!r}, 'w').write('B')\n"
                   f"print(json.dumps(sorted(os.listdir({str(merged)!r}))))")
    assert got == [["a", "b"]]
    assert os.listdir(merged) == [] and os.listdir(lower) == ["a"] and (upper / "b").read_text() == "B"


def test_masked_paths_are_unreadable_and_read_only_paths_unwritable(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root", ["secret-dir"])
    (root / "secret-dir" / "key").write_text("secret")
    (root / "secret-file").write_text("secret")
    data = tmp_path / "data"
    data.mkdir()
    got = workload(run_spec, {
        "rootfs": str(root),
        "entries": [USR, {"type": "proc"}, {"type": "bind", "source": str(data), "target": "/data"}],
        "masked_paths": ["default", "/secret-dir", "/secret-file", "/not-there"],
        "readonly_paths": ["default", "/data"]}, """
print(json.dumps([open("/secret-file").read(), os.listdir("/secret-dir"), open("/proc/timer_list").read()]))
""" + try_write("/secret-dir/new") + try_write("/data/f") + try_write("/proc/sys/kernel/hostname"))
    assert got == [["", [], ""], "EROFS", "EROFS", "EROFS"]
    # On the host, nothing changed: the data dir is still writable there.
    assert (root / "secret-file").read_text() == "secret" and os.listdir(data) == []


def test_workload_mounts_never_reach_the_host(run_spec, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    for propagation in ("private", "slave"):
        got = workload(run_spec, {"propagation": propagation, "entries": [{"type": "proc"}]}, f"""
import subprocess
subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", {str(target)!r}], check=True)
open({str(target / 'inside')!r}, "w").write("x")
print(json.dumps(os.listdir({str(target)!r})))
""", capabilities={"keep": ["sys_admin"]})
        assert got == [["inside"]]
        assert os.listdir(target) == []  # the fixture checks the mount table


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_symlink_in_rootfs_cannot_redirect_a_mount_onto_the_host(run_spec, tmp_path, link):
    host_dir = tmp_path / "host-owned"
    host_dir.mkdir()
    (host_dir / "canary").write_text("untouched")
    root = make_rootfs(tmp_path / "root")
    (root / "etc").rmdir()
    # /etc -> /tmp/.../host-owned, or ../../../(...)/tmp/.../host-owned: on the
    # host both lead to host-owned; inside the root, `/` and `..` stop at the root.
    (root / "etc").symlink_to(str(host_dir) if link == "absolute" else "../" * 30 + str(host_dir).lstrip("/"))
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "tmpfs", "target": "/etc/sub"}],
                              "etc": {"hosts": "generate"}},
                   "print(json.dumps([sorted(os.listdir('/etc')), open('/etc/hosts').read(), os.path.ismount('/etc/sub')]))")
    assert got == [[["hosts", "sub"], "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", True]]
    assert os.listdir(host_dir) == ["canary"] and (host_dir / "canary").read_text() == "untouched"
    # The symlink's target was created inside the rootfs: empty mount points.
    inside = root / str(host_dir).lstrip("/")
    assert sorted(os.listdir(inside)) == ["hosts", "sub"] and (inside / "hosts").read_text() == ""


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_masked_and_read_only_symlinks_resolve_inside_the_root_never_on_the_host(run_spec, tmp_path, link):
    """A hostile rootfs names host paths through symlinks in maskedPaths/readonlyPaths: each is
    resolved as inside the root (openat2 RESOLVE_IN_ROOT), so it masks or freezes the root's own
    copy of that path, never the host's; one that leads nowhere inside the root is skipped."""
    host = {name: tmp_path / f"host-{name}" for name in ("dir", "file", "rw", "absent")}
    host["dir"].mkdir()
    (host["dir"] / "canary").write_text("host")
    host["file"].write_text("host secret")
    host["rw"].mkdir()
    host["absent"].write_text("host only")
    root = make_rootfs(tmp_path / "root")
    inside = {name: root / str(p).lstrip("/") for name, p in host.items()}
    inside["dir"].mkdir(parents=True)
    (inside["dir"] / "inside").write_text("root")
    inside["file"].write_text("root secret")
    inside["rw"].mkdir()

    def to(name):
        return str(host[name]) if link == "absolute" else "../" * 30 + str(host[name]).lstrip("/")

    for name in host:
        (root / f"link-{name}").symlink_to(to(name))
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR],
                              "masked_paths": ["/link-dir", "/link-file", "/link-absent"],
                              "readonly_paths": ["/link-rw"]}, f"""
print(json.dumps([os.listdir({str(host["dir"])!r}), open({str(host["file"])!r}).read(),
                  os.path.exists({str(host["absent"])!r})]))
""" + try_write(str(host["rw"] / "f")))
    assert got == [[[], "", False], "EROFS"]  # the root's copies: masked, read-only
    # The host's paths were never touched, and stay writable.
    assert os.listdir(host["dir"]) == ["canary"] and host["file"].read_text() == "host secret"
    (host["rw"] / "f").write_text("still writable")
    assert not inside["absent"].exists()


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_device_nodes_follow_a_rootfs_symlink_only_inside_the_root(run_spec, tmp_path, link):
    """A hostile rootfs whose /dev is a link to a host directory: the nodes (and the directories
    above them) are made inside the root, where the link leads when `/` is the root; the host
    directory stays empty."""
    host_dir = tmp_path / "host-dev"
    host_dir.mkdir()
    root = make_rootfs(tmp_path / "root")
    (root / "dev").symlink_to(str(host_dir) if link == "absolute" else "../" * 30 + str(host_dir).lstrip("/"))
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR], "devices": [
        {"path": "/dev/sub/fifo", "type": "p", "mode": 0o600},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]}, """
import stat
print(json.dumps([stat.filemode(os.stat(p).st_mode) for p in ("/dev/sub/fifo", "/dev/null")]))
""", namespaces=[n for n in NAMESPACES if n != "user"])
    assert got == [["prw-------", "crw-rw-rw-"]]
    assert os.listdir(host_dir) == []
    inside = root / str(host_dir).lstrip("/")
    assert sorted(os.listdir(inside)) == ["null", "sub"] and stat.S_ISFIFO(os.lstat(inside / "sub" / "fifo").st_mode)


def test_a_dangling_symlink_target_is_created_inside_the_root(run_spec, tmp_path):
    # Debian's /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf, with /run empty.
    root = make_rootfs(tmp_path / "root")
    (root / "etc" / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (tmp_path / "resolv").write_text("nameserver 192.0.2.1\n")
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR], "etc": {"resolv_conf": str(tmp_path / "resolv")}},
                   "print(json.dumps(open('/etc/resolv.conf').read()))")
    assert got == ["nameserver 192.0.2.1\n"]
    assert (root / "run/systemd/resolve/stub-resolv.conf").read_text() == ""


def test_proc_magic_links_cannot_lead_a_mount_out_of_the_root(run_spec, tmp_path):
    host_dir = tmp_path / "host-owned"
    host_dir.mkdir()
    root = make_rootfs(tmp_path / "root", ["proc"])
    (root / "x").symlink_to(f"/proc/self/root{host_dir}")
    with pytest.raises(StepError) as info:
        workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "proc"},
                                                              {"type": "tmpfs", "target": "/x/sub"}]}, "")
    assert (info.value.step, info.value.errno) == ("mounts", 40)  # ELOOP
    assert os.listdir(host_dir) == []


def test_minimal_dev_sysfs_and_mqueue(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root", ["proc", "sys"])
    got = workload(run_spec, {"rootfs": str(root), "entries": [
        USR, {"type": "proc"}, {"type": "dev", "shm_size": "2Mi"}, {"type": "sysfs"}, {"type": "mqueue"}]}, """
import pty
print(json.dumps(sorted(os.listdir("/dev"))))
open("/dev/null", "w").write("x")
master, slave = os.openpty()
print(json.dumps([len(open("/dev/urandom", "rb").read(8)), open("/dev/zero", "rb").read(4).hex(),
                  os.readlink("/dev/fd"), os.ttyname(slave), os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
                  sorted(os.listdir("/sys/class/net")), os.path.ismount("/dev/mqueue")]))
""" + try_write("/dev/full") + try_write("/sys/kernel/profiling"))
    assert got[0] == sorted(["full", "null", "random", "urandom", "tty", "zero", "pts", "ptmx", "shm", "fd",
                             "stdin", "stdout", "stderr", "mqueue"])
    assert got[1] == [8, "00000000", "/proc/self/fd", "/dev/pts/0", 2 * 2**20, ["lo"], True]
    assert got[2:] == ["ENOSPC", "EROFS"]  # /dev/full is the real device; sysfs is read-only by default


def test_mountinfo_shows_each_fresh_filesystems_source(run_spec, tmp_path):
    """findmnt, df and runtimetest read the source field of mountinfo; the new mount
    API leaves it `none` unless fsconfig sets it (issue 17)."""
    root = make_rootfs(tmp_path / "root", ["proc", "sys", "data", "named", "secret"])
    (root / "secret" / "f").write_text("x")
    got = workload(run_spec, {"rootfs": str(root), "masked_paths": ["/secret"], "entries": [
        USR, {"type": "proc"}, {"type": "dev"}, {"type": "sysfs"}, {"type": "mqueue"},
        {"type": "tmpfs", "target": "/data"}, {"type": "tmpfs", "target": "/named", "source": "my cache"}]}, """
rows = [line.split() for line in open("/proc/self/mountinfo")]
print(json.dumps({r[4]: [r[r.index("-") + 1], r[r.index("-") + 2]] for r in rows}))
""")[0]
    assert got["/proc"] == ["proc", "proc"]
    assert got["/dev"] == ["tmpfs", "tmpfs"]
    assert got["/dev/pts"] == ["devpts", "devpts"]
    assert got["/dev/shm"] == ["tmpfs", "shm"]
    assert got["/dev/mqueue"] == ["mqueue", "mqueue"]
    assert got["/sys"] == ["sysfs", "sysfs"]
    assert got["/data"] == ["tmpfs", "tmpfs"]
    assert got["/named"] == ["tmpfs", "my\\040cache"]  # mountinfo escapes the space
    assert got["/secret"] == ["tmpfs", "tmpfs"]  # a masked directory


@pytest.mark.parametrize("userns", [False, True], ids=["mknod", "userns-bind"])
def test_device_nodes_with_type_numbers_mode_and_owner(run_spec, tmp_path, userns):
    """mounts.devices (OCI linux.devices), seen by stat from inside.  In a user namespace the kernel
    refuses mknod of a char device: the host's node of that path is bound instead (as runc), and
    only if it is that very device."""
    if userns and not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this host to bind")
    root = make_rootfs(tmp_path / "root", ["dev"])
    first = ({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "mode": 0o640} if userns else
             {"path": "/dev/null2", "type": "c", "major": 1, "minor": 3, "mode": 0o640, "uid": 7, "gid": 8})
    owner = 0 if userns else 7  # the default user namespace maps only 0
    devices = [first, {"path": "/dev/sub/fifo", "type": "p", "mode": 0o600, "uid": owner},
               {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "mode": 0o600}]  # exists: left as it is
    ns = NAMESPACES if userns else [n for n in NAMESPACES if n != "user"]
    code = """
import stat
for p in ("/dev/null2", "/dev/fuse", "/dev/sub/fifo", "/dev/null"):
    if os.path.exists(p):
        st = os.stat(p)
        print(json.dumps([p, stat.filemode(st.st_mode)[0], os.major(st.st_rdev), os.minor(st.st_rdev),
                          oct(st.st_mode & 0o7777), st.st_uid, st.st_gid]))
"""
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "dev"}], "devices": devices}, code,
                   namespaces=ns)
    host_fuse = os.stat("/dev/fuse") if userns else None
    assert got == [
        ["/dev/fuse", "c", 10, 229, oct(host_fuse.st_mode & 0o7777), 0, 0] if userns  # the host's node, as it is
        else ["/dev/null2", "c", 1, 3, "0o640", 7, 8],
        ["/dev/sub/fifo", "p", 0, 0, "0o600", owner, 0],  # FIFOs are made in a user namespace too
        ["/dev/null", "c", 1, 3, "0o666", 0, 0]]
    assert not (root / "dev" / "sub").exists()  # made in the dev tmpfs, not in the rootfs
    if userns:
        # Numbers that are not those of the host's node of that path: refused, nothing bound.
        with pytest.raises(StepError) as info:
            workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "dev"}],
                                "devices": [{"path": "/dev/fuse", "type": "c", "major": 1, "minor": 3}]}, "",
                     namespaces=ns)
        assert (info.value.step, info.value.errno) == ("mounts", 19)  # ENODEV


def test_a_devpts_of_its_own_over_a_rootfs_dev(run_spec, tmp_path):
    """A rootfs with its own /dev: only a devpts is mounted, a private instance whose ptmx opens."""
    root = make_rootfs(tmp_path / "root", ["dev/pts", "proc"])
    (root / "dev" / "ptmx").symlink_to("pts/ptmx")
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "proc"}, {"type": "devpts"}]}, """
import stat
master, slave = os.openpty()
rows = [line.split() for line in open("/proc/self/mountinfo")]
pts = [r[r.index("-") + 1:] for r in rows if r[4] == "/dev/pts"][0]
print(json.dumps([os.ttyname(slave), pts[0], pts[1], sorted(pts[2].split(",")),
                  oct(stat.S_IMODE(os.stat("/dev/pts/ptmx").st_mode))]))
""")
    assert got[0][:3] == ["/dev/pts/0", "devpts", "devpts"]  # the first terminal of a fresh instance
    assert {"ptmxmode=666", "mode=620"} <= set(got[0][3]) and got[0][4] == "0o666"


def test_cgroup_tree_rooted_at_the_workloads_own_cgroup_read_only(run_spec, tmp_path):
    """OCI's `cgroup` mount: the workload reads its own limits at the usual paths (its cgroup is
    the root of each hierarchy in its cgroup namespace) and cannot write there."""
    from linx_spec import mountinfo

    v2_only = any(m.fstype == "cgroup2" and m.mount_point == "/sys/fs/cgroup" for m in mountinfo.cgroup_mounts())
    limits = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max") if v2_only else (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max")
    root = make_rootfs(tmp_path / "root", ["proc", "sys"])
    got = workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "proc"}, {"type": "cgroup"}]}, f"""
print(json.dumps([sorted({{line.strip().split(":", 2)[2] for line in open("/proc/self/cgroup")}}),
                  [open(p).read().strip() for p in {limits!r}]]))
""" + try_write("/sys/fs/cgroup/new") + try_write(limits[1]),
                   namespaces=[n for n in NAMESPACES if n != "user"] + ["cgroup"],
                   cgroup={"memory": {"max": "64Mi"}, "pids": {"max": 50}})
    assert got == [[["/"], ["67108864", "50"]], "EROFS", "EROFS"]


def test_etc_files_generated_and_bound_with_a_read_only_root(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root")
    (tmp_path / "resolv").write_text("nameserver 192.0.2.53\n")
    got = workload(run_spec, {
        "rootfs": str(root), "rootfs_readonly": True,
        "entries": [USR, {"type": "tmpfs", "target": "/tmp"}],
        "etc": {"hostname": "generate", "hosts": "generate", "resolv_conf": "resolv"}}, """
print(json.dumps([open(f"/etc/{n}").read() for n in ("hostname", "hosts", "resolv.conf")]))
""" + try_write("/new") + try_write("/tmp/ok") + try_write("/etc/resolv.conf"), hostname="box")
    assert got[0] == ["box\n", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbox\n",
                      "nameserver 192.0.2.53\n"]
    assert got[1:] == ["EROFS", "ok", "EROFS"]
    # Generated content never touched the rootfs: only empty mount points are there.
    assert [(root / "etc" / n).read_text() for n in ("hostname", "hosts", "resolv.conf")] == ["", "", ""]
    assert not (root / "new").exists()


def test_without_rootfs_the_host_root_stays_visible_under_the_mounts(run_spec, tmp_path):
    cover = tmp_path / "cover"
    cover.mkdir()
    (cover / "under").write_text("host file")
    got = workload(run_spec, {"rootfs_readonly": True, "entries": [
        {"type": "tmpfs", "target": str(cover)}, {"type": "bind", "source": "/etc", "target": str(cover / "etc"),
                                                   "readonly": True}],
        "etc": {"hosts": "generate"}}, f"""
print(json.dumps([os.listdir({str(cover)!r}), os.path.isfile({str(cover / 'etc' / 'passwd')!r}),
                  open("/etc/hostname").read() == {open('/etc/hostname').read()!r},
                  open("/etc/hosts").read().startswith("127.0.0.1")]))
""" + try_write(str(tmp_path / "x")) + try_write(str(cover / "y")))
    assert got == [[["etc"], True, True, True], "EROFS", "ok"]
    assert os.listdir(cover) == ["under"] and not (tmp_path / "x").exists()


def test_a_failed_mount_is_a_step_error_and_leaves_nothing(run_spec, tmp_path):
    root = make_rootfs(tmp_path / "root")
    with pytest.raises(StepError) as info:
        # uid 4242 is not mapped in the user namespace: tmpfs refuses it.
        workload(run_spec, {"rootfs": str(root), "entries": [USR, {"type": "tmpfs", "target": "/t", "uid": 4242}]},
                 "")
    e = info.value
    assert (e.step, e.side, e.errno) == ("mounts", "child", 22)
    assert str(e) == "mounts (child): tmpfs for /t: option uid=4242: tmpfs: Invalid uid '4242': EINVAL (Invalid argument)"


# --- issue 14 item 5: the host's root as rootfs, whatever its spelling ------------------------------
def test_the_hosts_root_as_rootfs_is_refused_before_anything_is_created(tmp_path):
    """`rootfs: "//"` passed the old string comparison with "/"; the mount point of
    the tmpfs below was then created in the host's own root directory."""
    from conftest import cli

    canary = Path("/lx-rootfs-canary")
    spec = tmp_path / "root.yaml"
    spec.write_text(yaml.safe_dump({"version": 1, "namespaces": NAMESPACES, "process": {"command": ["/bin/true"]},
                                    "mounts": {"rootfs": "//", "entries": [{"type": "tmpfs",
                                                                            "target": str(canary)}]}}))
    try:
        done = cli("apply", str(spec))
        assert done.returncode == 66, done.stderr
        assert "host's root directory" in done.stderr and "Traceback" not in done.stderr
        assert not canary.exists()
    finally:
        if canary.is_dir():
            canary.rmdir()


def test_a_bind_mount_of_the_hosts_root_is_refused_as_rootfs(tmp_path):
    """A bind mount of / elsewhere has the root's device and inode: refused as well
    (in a private mount namespace of the test's own, gone when it exits)."""
    import subprocess
    import sys

    from conftest import REPO

    where = tmp_path / "hostroot"
    where.mkdir()
    spec = tmp_path / "bound.yaml"
    spec.write_text(yaml.safe_dump({"version": 1, "namespaces": NAMESPACES, "process": {"command": ["/bin/true"]},
                                    "mounts": {"rootfs": str(where)}}))
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'mount --bind / "$1" && exec "$2" -m linx_spec.cli plan "$3"', "-",
                           str(where), sys.executable, str(spec)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert done.returncode == 66, done.stderr
    assert f"rootfs `{where}` is the host's root directory" in done.stderr
