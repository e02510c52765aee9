"""The filesystem subsystem without root: spec validation, plan resolution,
the nested mount encoding (golden bytes, both halves of the protocol), and the
agent refusing a malformed mount entry before the child is touched."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from linx_spec import load_text
from linx_spec import protocol as P
from linx_spec.errors import PlanError, SpecError
from linx_spec.plan import mounts as H
from linx_spec.plan import build_plan
from linx_spec.spec import Spec
from linx_spec.spec.mounts import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, Mounts

REPO = Path(__file__).resolve().parents[2]
AGENT = Path(os.environ.get("LINX_AGENT", REPO / "agent" / "linx-agent"))


def spec(mounts, *, ns=("user", "pid", "net", "mount", "uts", "ipc"), hostname=None, command=("/bin/true",)):
    data = {"version": 1, "process": {"command": list(command)}, "namespaces": list(ns), "mounts": mounts}
    if hostname:
        data["hostname"] = hostname
    return Spec.model_validate(data)


def resolve(mounts, base_dir="/", **kw):
    s = spec(mounts, **kw)
    return H.resolve(s.mounts, s, str(base_dir))


@pytest.fixture
def rootfs(tmp_path):
    """A rootfs skeleton as the integration tests build it: empty usr, Debian's
    merged-/usr symlinks."""
    root = tmp_path / "root"
    (root / "usr").mkdir(parents=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    return root


# --- spec ---------------------------------------------------------------------

def test_entries_validate_with_per_type_defaults():
    m = Mounts.model_validate({"entries": [
        {"type": "bind", "source": "/usr", "readonly": True},
        {"type": "tmpfs", "target": "/tmp/", "size": "1Mi", "mode": 0o1777},
        {"type": "proc"}, {"type": "sysfs"}, {"type": "mqueue"}, {"type": "dev"},
        {"type": "overlay", "target": "/o", "lower": ["a", "b"], "upper": "u", "work": "w"},
    ]})
    bind, tmpfs, proc, sysfs, mqueue, dev, overlay = m.entries
    assert (bind.target, bind.recursive, bind.readonly) == ("/usr", True, True)
    assert (tmpfs.target, tmpfs.size, tmpfs.mode) == ("/tmp", 2**20, 0o1777)
    assert (proc.target, sysfs.target, sysfs.readonly, mqueue.target) == ("/proc", "/sys", True, "/dev/mqueue")
    assert (dev.target, dev.shm_size) == ("/dev", 64 * 2**20)
    assert overlay.lower == ["a", "b"]


def test_list_form_is_short_for_entries():
    assert Mounts.model_validate([{"type": "proc"}]) == Mounts.model_validate({"entries": [{"type": "proc"}]})


@pytest.mark.parametrize("entry, message", [
    ({"type": "tmpfs", "target": "tmp"}, "absolute path"),
    ({"type": "tmpfs", "target": "/a/../b"}, "must not contain `..`"),
    ({"type": "tmpfs", "target": "/"}, "use `rootfs` for the root"),
    ({"type": "bind", "source": "rel/dir"}, "needs an explicit `target`"),
    ({"type": "overlay", "target": "/o", "lower": ["a"], "upper": "u"}, "go together"),
    ({"type": "overlay", "target": "/o", "lower": ["a:b"]}, "must not contain `:`"),
    ({"type": "tmpfs", "target": "/t", "flags": ["nosetuid"]}, "nosuid"),
    ({"type": "tmpfs", "target": "/t", "size": 0}, "more than zero"),
    ({"type": "nfs", "target": "/t"}, "does not match any of the expected tags"),
    ({"type": "tmpfs", "target": "/t", "source": "x" * 256}, "at most 255 characters"),
    ({"type": "tmpfs", "target": "/t", "source": "é" * 128}, "at most 255 bytes"),
    ({"type": "proc", "source": "a\nb"}, "control characters"),
    ({"type": "sysfs", "source": ""}, "must not be empty"),
])
def test_bad_entries_are_spec_errors(entry, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Mounts.model_validate({"entries": [entry]})


def test_masked_and_readonly_paths_take_default_inside_a_list():
    m = Mounts.model_validate({"masked_paths": "default", "readonly_paths": ["default", "/data/"]})
    assert m.masked_paths == ["default"]
    assert m.readonly_paths == ["default", "/data"]
    with pytest.raises(ValidationError, match="absolute path"):
        Mounts.model_validate({"masked_paths": ["proc/kcore"]})


def test_etc_sources():
    m = Mounts.model_validate({"etc": {"hostname": "generate", "hosts": "./hosts",
                                       "resolv_conf": {"nameservers": ["10.0.0.1", "fd00::1"], "search": ["lan"]}}})
    assert m.etc.hosts == "./hosts"
    with pytest.raises(ValidationError, match="needs the servers"):
        Mounts.model_validate({"etc": {"resolv_conf": "generate"}})
    with pytest.raises(ValidationError, match="not an IP address"):
        Mounts.model_validate({"etc": {"resolv_conf": {"nameservers": ["dns.example"]}}})


def test_spec_errors_point_at_the_yaml_text():
    text = ("version: 1\nprocess: {command: [/bin/true]}\nnamespaces: [mount]\nmounts:\n"
            "  entries:\n    - {type: tmpfs, target: /a}\n    - type: tmpfs\n      target: relative\n"
            "    - {type: bind, source: /x, recursiv: true}\n  rootfs: {lower: [a], upper: b}\n")
    with pytest.raises(SpecError) as info:
        load_text(text, "t.yaml")
    got = [(p.line, p.field) for p in info.value.problems]
    assert (8, "mounts.entries[1].target") in got
    assert any(line == 9 and "recursiv" in field for line, field in got)
    assert (10, "mounts.rootfs") in got
    # Only the errors of the form written (a mapping), not "should be a string" too.
    assert not any("valid string" in p.message for p in info.value.problems)


# --- plan ---------------------------------------------------------------------

def test_relative_host_paths_resolve_against_the_spec_directory(tmp_path, rootfs):
    (tmp_path / "data").mkdir()
    plan = resolve({"rootfs": "root", "entries": [{"type": "bind", "source": "data", "target": "/data"}]},
                   base_dir=tmp_path)
    assert plan.rootfs == str(rootfs)
    (bind,) = plan.entries
    assert (bind.kind, bind.source, bind.target) == (P.MK.BIND, str(tmp_path / "data"), "/data")
    # Inside a rootfs missing mount points are created (safely, in the child).
    assert bind.flags == P.MF.RECURSIVE | P.MF.CREATE


def test_plan_order_entries_then_etc_then_readonly_then_masked(rootfs):
    plan = resolve({"rootfs": str(rootfs), "entries": [{"type": "proc"}, {"type": "tmpfs", "target": "/tmp"}],
                    "etc": {"hosts": "generate"}, "masked_paths": "default", "readonly_paths": "default"})
    kinds = [(e.kind, e.target) for e in plan.entries]
    assert kinds[:3] == [(P.MK.FS, "/proc"), (P.MK.FS, "/tmp"), (P.MK.FILE, "/etc/hosts")]
    assert kinds[3:3 + len(DEFAULT_READONLY_PATHS)] == [(P.MK.READONLY, p) for p in DEFAULT_READONLY_PATHS]
    assert kinds[3 + len(DEFAULT_READONLY_PATHS):] == [(P.MK.MASK, p) for p in DEFAULT_MASKED_PATHS]
    assert "/proc/kcore" in DEFAULT_MASKED_PATHS and "/proc/sys" in DEFAULT_READONLY_PATHS


def test_default_flags_per_type(rootfs):
    plan = resolve({"rootfs": str(rootfs), "entries": [
        {"type": "proc"}, {"type": "sysfs"}, {"type": "tmpfs", "target": "/t", "size": 4096, "mode": 0o700,
                                              "uid": 1, "gid": 2},
        {"type": "tmpfs", "target": "/u", "flags": [], "readonly": True}]})
    proc, sysfs, tmpfs, bare = plan.entries
    all3 = P.MF.NOSUID | P.MF.NODEV | P.MF.NOEXEC
    assert proc.flags == all3 | P.MF.CREATE and proc.fstype == "proc"
    assert sysfs.flags == all3 | P.MF.RDONLY | P.MF.CREATE
    assert tmpfs.flags == P.MF.NOSUID | P.MF.NODEV | P.MF.CREATE
    assert tmpfs.options == ("size=4096", "mode=700", "uid=1", "gid=2")
    assert bare.flags == P.MF.RDONLY | P.MF.CREATE


def test_missing_host_paths_are_plan_errors(tmp_path):
    with pytest.raises(PlanError) as info:
        resolve({"rootfs": "nope"}, base_dir=tmp_path)
    assert info.value.field == "mounts.rootfs" and "does not exist" in info.value.message
    with pytest.raises(PlanError) as info:
        resolve({"entries": [{"type": "bind", "source": "/nonexistent/x"}]})
    assert info.value.field == "mounts.entries.0.source"
    # optional: dropped from the plan
    assert resolve({"entries": [{"type": "bind", "source": "/nonexistent/x", "optional": True}]}).entries == ()


@pytest.mark.parametrize("root", ["/", "//", "///", "/./", "/..", "/proc/self/root",
                                  "link-to-root", "../" * 40])
def test_a_rootfs_that_is_the_hosts_root_is_refused_by_identity(tmp_path, root):
    """Issue 14 item 5: `//` (normpath keeps it), a symlink to `/`, ... all passed a
    string comparison with "/"; mount points were then created in the host's own
    directories.  The check compares device and inode."""
    (tmp_path / "link-to-root").symlink_to("/")
    with pytest.raises(PlanError) as info:
        resolve({"rootfs": root}, base_dir=tmp_path)
    assert info.value.field == "mounts.rootfs"
    assert "is the host's root directory (same device and inode as `/`)" in info.value.message
    # ... and as the top lower layer of an overlay root, which is mounted onto it.
    with pytest.raises(PlanError) as info:
        resolve({"rootfs": {"lower": [root]}}, base_dir=tmp_path)
    assert info.value.field == "mounts.rootfs.lower.0" and "host's root directory" in info.value.message


def test_the_hosts_root_may_be_a_lower_overlay_layer_below_the_top(tmp_path):
    (tmp_path / "top").mkdir()
    plan = resolve({"rootfs": {"lower": ["top", "/"]}}, base_dir=tmp_path)
    assert plan.rootfs == str(tmp_path / "top") and plan.root_layers == (str(tmp_path / "top"), "/")


def test_a_directory_that_only_looks_like_the_root_is_a_rootfs(tmp_path):
    (tmp_path / "root" / "proc").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "root")
    assert resolve({"rootfs": "//" + str(tmp_path / "link").lstrip("/")}).rootfs.endswith("/link")


def test_without_rootfs_mount_points_are_never_created_on_the_host(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(PlanError) as info:
        resolve({"entries": [{"type": "tmpfs", "target": missing}]})
    assert info.value.field == "mounts.entries.0" and "none is created" in info.value.message
    # ...but inside a tmpfs declared before, they may be.
    plan = resolve({"entries": [{"type": "tmpfs", "target": str(tmp_path)},
                                {"type": "tmpfs", "target": missing}]})
    assert [e.flags & P.MF.CREATE for e in plan.entries] == [0, P.MF.CREATE]


@pytest.mark.parametrize("fs, ns", [("proc", "pid"), ("sysfs", "net"), ("mqueue", "ipc")])
def test_fresh_filesystems_in_a_user_namespace_need_their_namespace(rootfs, fs, ns):
    namespaces = [n for n in ("user", "pid", "net", "mount", "ipc") if n != ns]
    with pytest.raises(PlanError) as info:
        resolve({"rootfs": str(rootfs), "entries": [{"type": fs}]}, ns=namespaces)
    assert info.value.remedy == f"add `{ns}` to namespaces"


def test_etc_files(tmp_path, rootfs):
    (tmp_path / "my-hosts").write_text("10.1.1.1 db\n")
    plan = resolve({"rootfs": str(rootfs), "etc": {
        "hostname": "generate", "hosts": "my-hosts",
        "resolv_conf": {"nameservers": ["10.0.0.1"], "search": ["lan"], "options": ["ndots:2"]}}},
        base_dir=tmp_path, hostname="box")
    hostname, hosts, resolv = plan.entries
    assert (hostname.kind, hostname.target, hostname.content) == (P.MK.FILE, "/etc/hostname", b"box\n")
    assert (hosts.kind, hosts.source, hosts.flags) == (P.MK.BIND, str(tmp_path / "my-hosts"),
                                                       P.MF.RDONLY | P.MF.CREATE)
    assert resolv.content == b"nameserver 10.0.0.1\nsearch lan\noptions ndots:2\n"
    generated = resolve({"rootfs": str(rootfs), "etc": {"hosts": "generate"}}, hostname="box").entries[0]
    assert b"127.0.0.1\tlocalhost\n" in generated.content and b"127.0.1.1\tbox\n" in generated.content
    with pytest.raises(PlanError, match="needs a `hostname:`"):
        resolve({"rootfs": str(rootfs), "etc": {"hostname": "generate"}})


def test_overlay_root(tmp_path):
    for d in ("lower", "upper", "work"):
        (tmp_path / d).mkdir()
    plan = resolve({"rootfs": {"lower": ["lower"], "upper": "upper", "work": "work"}}, base_dir=tmp_path)
    assert plan.rootfs == str(tmp_path / "lower")  # mounted onto its top lower layer
    (root,) = plan.entries
    assert (root.kind, root.fstype, root.flags, root.target) == (P.MK.FS, "overlay", P.MF.ROOT, "")
    assert root.options == (f"lowerdir={tmp_path}/lower", f"upperdir={tmp_path}/upper",
                            f"workdir={tmp_path}/work")
    assert plan.root_layers == (str(tmp_path / "upper"), str(tmp_path / "lower"))


def test_overlay_upper_and_work_must_share_a_filesystem(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp dir")
    (tmp_path / "lower").mkdir()
    (tmp_path / "upper").mkdir()
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as work:
        with pytest.raises(PlanError, match="different filesystems"):
            resolve({"rootfs": {"lower": ["lower"], "upper": "upper", "work": work}}, base_dir=tmp_path)


def test_program_lookup_sees_through_binds_and_rootfs_symlinks(rootfs):
    s = spec({"rootfs": str(rootfs), "entries": [{"type": "bind", "source": "/usr", "readonly": True}]},
             command=("sh", "-c", "true"))
    plan = build_plan(s)
    # PATH's /usr/local/bin, /usr/sbin miss; /usr/bin/sh is found through the bind.
    assert plan.process.exec_path in ("/usr/bin/sh", "/bin/sh")
    # bin -> usr/bin inside the rootfs, then the bind (and sh -> dash on the host)
    assert plan.mounts.host_path("/bin/sh") == os.path.realpath("/usr/bin/sh")
    assert plan.mounts.host_path("/etc/passwd") == str(rootfs / "etc/passwd")
    with pytest.raises(PlanError, match="inside rootfs"):
        build_plan(spec({"rootfs": str(rootfs)}, command=("sh",)))


def test_overlay_root_lookup_prefers_the_upper_layer(tmp_path):
    for d in ("lower/bin", "upper/bin", "work"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "lower/bin/tool").write_text("")
    (tmp_path / "upper/bin/tool").write_text("")
    (tmp_path / "lower/bin/only-lower").write_text("")
    plan = resolve({"rootfs": {"lower": ["lower"], "upper": "upper", "work": "work"}}, base_dir=tmp_path)
    assert plan.host_path("/bin/tool") == str(tmp_path / "upper/bin/tool")
    assert plan.host_path("/bin/only-lower") == str(tmp_path / "lower/bin/only-lower")
    tmpfs = resolve({"rootfs": {"lower": ["lower"]}, "entries": [{"type": "tmpfs", "target": "/bin"}]},
                    base_dir=tmp_path)
    assert tmpfs.host_path("/bin/tool") is None  # exists only once mounted


def test_old_kernels_are_a_plan_error(monkeypatch, rootfs):
    monkeypatch.setattr(H, "_kernel", lambda: (5, 4))
    with pytest.raises(PlanError, match="Linux 5.12 or newer"):
        resolve({"rootfs": str(rootfs)})
    # Only the propagation change: fine on any kernel.
    assert resolve({}).entries == ()


def test_describe_is_what_plan_prints(rootfs):
    plan = resolve({"rootfs": str(rootfs), "propagation": "slave", "rootfs_readonly": True, "entries": [
        {"type": "bind", "source": "/usr", "readonly": True}, {"type": "tmpfs", "target": "/tmp", "size": "1Mi"}],
        "masked_paths": ["/proc/kcore"]})
    assert plan.describe() == {
        "rootfs": str(rootfs), "propagation": "slave", "rootfs_readonly": True,
        "mounts": ["bind /usr -> /usr (ro,rec,create)", "tmpfs -> /tmp (size=1048576,nosuid,nodev,create)",
                   "mask /proc/kcore"]}


# --- protocol -----------------------------------------------------------------

def _attr(t: int, value: bytes) -> bytes:
    return struct.pack("<HHI", t, 0, len(value)) + value


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def test_golden_encoding_of_a_mounts_plan(rootfs):
    plan = resolve({"rootfs": str(rootfs), "propagation": "slave", "rootfs_readonly": True,
                    "entries": [{"type": "tmpfs", "target": "/tmp", "size": 4096}]})
    attrs = P.mount_attrs(plan)
    tmpfs = (_attr(0x100, _u32(2)) + _attr(0x105, _u32(2 | 4 | 32)) + _attr(0x101, b"/tmp")
             + _attr(0x103, b"tmpfs") + _attr(0x104, b"size=4096"))
    assert attrs == [(P.A.MOUNT_OPT, 3), (P.A.ROOTFS, str(rootfs)), (P.A.MOUNT, tmpfs)]
    # The whole PROCEED payload decodes back, nested values typed.
    payload = b"".join(P.attr(t, v) for t, v in attrs)
    decoded = P.decode_attrs(payload)
    assert [t for t, _ in decoded] == [P.A.MOUNT_OPT, P.A.ROOTFS, P.A.MOUNT]
    nested = P.Frame(0, 0, P.decode_attrs(decoded[2][1]))
    assert (nested.get(P.MA.KIND), nested.get(P.MA.TARGET), nested.all(P.MA.OPTION)) == (P.MK.FS, "/tmp",
                                                                                          ["size=4096"])


def test_fresh_filesystems_carry_their_source(rootfs):
    """The name mountinfo shows: the spec's `source`, else none sent (the agent uses the type)."""
    plan = resolve({"rootfs": str(rootfs), "entries": [{"type": "tmpfs", "target": "/t", "source": "shm"},
                                                       {"type": "proc"}]})
    shm, proc = plan.entries
    assert (shm.source, proc.source) == ("shm", None)
    nested = P.Frame(0, 0, P.decode_attrs(P.mount_attrs(plan)[2][1]))
    assert nested.get(P.MA.SOURCE) == "shm"
    assert plan.describe()["mounts"] == ["tmpfs shm -> /t (nosuid,nodev,create)",
                                         "proc -> /proc (nosuid,nodev,noexec,create)"]


@pytest.mark.parametrize("device, message", [
    ({"path": "/dev/x", "type": "c"}, "needs `major` and `minor`"),
    ({"path": "/dev/x", "type": "c", "major": 4096, "minor": 0}, "less than 4096"),
    ({"path": "/dev/x", "type": "b", "major": 8, "minor": 2**20}, "less than 1048576"),
    ({"path": "/dev/x", "type": "x", "major": 1, "minor": 1}, "'c', 'b', 'p' or 'u'"),
    ({"path": "/dev/../etc/x", "type": "p"}, "must not contain `..`"),
    ({"path": "dev/x", "type": "p"}, "absolute path"),
    ({"path": "/dev/x", "type": "p", "mode": 0o10000}, "less than or equal to 4095"),
    ({"path": "/dev/x", "type": "p", "uid": 2**32 - 1}, "less than 4294967295"),
])
def test_bad_devices_are_spec_errors(device, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Mounts.model_validate({"devices": [device]})


def test_devices_come_after_the_entries_with_type_numbers_and_owner(rootfs):
    plan = resolve({"rootfs": str(rootfs), "entries": [{"type": "dev"}], "masked_paths": ["/m"], "devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "mode": 0o660, "uid": 5, "gid": 6},
        {"path": "/dev/sda9", "type": "b", "major": 8, "minor": 9},
        {"path": "/dev/fifo", "type": "p", "mode": 0o600}]})
    kinds = [(e.kind, e.target) for e in plan.entries]
    assert kinds == [(P.MK.DEV, "/dev"), (P.MK.NODE, "/dev/fuse"), (P.MK.NODE, "/dev/sda9"),
                     (P.MK.NODE, "/dev/fifo"), (P.MK.MASK, "/m")]
    fuse = P.Frame(0, 0, P.decode_attrs([v for t, v in P.mount_attrs(plan) if t == P.A.MOUNT][1]))
    assert [fuse.get(a) for a in (P.MA.KIND, P.MA.TARGET, P.MA.MODE, P.MA.MAJOR, P.MA.MINOR, P.MA.UID, P.MA.GID)] \
        == [P.MK.NODE, "/dev/fuse", 0o20660, 10, 229, 5, 6]
    assert plan.describe()["mounts"][1:4] == ["node /dev/fuse (c 10:229, mode 0660, owner 5:6,create)",
                                              "node /dev/sda9 (b 8:9, mode 0666, owner 0:0,create)",
                                              "node /dev/fifo (p, mode 0600, owner 0:0,create)"]


def test_without_rootfs_a_device_is_only_made_inside_a_fresh_filesystem():
    with pytest.raises(PlanError, match="the host's own /dev") as exc:
        resolve({"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]})
    assert exc.value.field == "mounts.devices.0"
    plan = resolve({"entries": [{"type": "dev"}], "devices": [{"path": "/dev/fifo", "type": "p"}]})
    assert plan.entries[-1].kind == P.MK.NODE


def test_a_cgroup_mount_needs_a_cgroup_namespace(rootfs):
    with pytest.raises(PlanError, match="whole cgroup tree") as exc:
        resolve({"rootfs": str(rootfs), "entries": [{"type": "cgroup"}]})
    assert exc.value.field == "mounts.entries.0"


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,nosuid,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:39 / /sys/fs/cgroup/memory/deeper rw,relatime - cgroup cgroup rw,memory
"""


@pytest.mark.parametrize("host", ["hybrid", "v2"])
def test_cgroup_tree_follows_the_hosts_hierarchies(rootfs, monkeypatch, host):
    from linx_spec import mountinfo

    text = HYBRID if host == "hybrid" else "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
    monkeypatch.setattr(mountinfo, "read", lambda pid="self": mountinfo.parse(text))
    plan = resolve({"rootfs": str(rootfs), "entries": [{"type": "cgroup"}]}, ns=("mount", "pid", "cgroup"))
    if host == "v2":
        assert plan.describe()["mounts"] == ["cgroup2 -> /sys/fs/cgroup (ro,nosuid,nodev,noexec,create)"]
        return
    assert plan.describe()["mounts"] == [
        "tmpfs -> /sys/fs/cgroup (mode=755,nosuid,nodev,noexec,create)",
        "cgroup -> /sys/fs/cgroup/cpu,cpuacct (cpu,cpuacct,ro,nosuid,nodev,noexec,create)",
        "cgroup -> /sys/fs/cgroup/systemd (name=systemd,ro,nosuid,nodev,noexec,create)",
        "cgroup2 -> /sys/fs/cgroup/unified (ro,nosuid,nodev,noexec,create)",
        "readonly /sys/fs/cgroup (ro)"]  # the tmpfs itself made read-only once its directories exist


def test_file_entries_carry_content_and_mode(rootfs):
    plan = resolve({"rootfs": str(rootfs), "etc": {"resolv_conf": {"nameservers": ["10.0.0.1"]}}})
    (_, value), = [a for a in P.mount_attrs(plan) if a[0] == P.A.MOUNT]
    nested = P.Frame(0, 0, P.decode_attrs(value))
    assert nested.get(P.MA.KIND) == P.MK.FILE
    assert nested.get(P.MA.CONTENT) == b"nameserver 10.0.0.1\n"
    assert nested.get(P.MA.MODE) == 0o644


def test_mount_ids_match_the_agent_header():
    header = (REPO / "agent" / "lx_proto.h").read_text()
    ma = {n: int(v, 16) for n, v in re.findall(r"LX_MA_([A-Z_]+)\s*=\s*(0x[0-9a-f]+)", header)}
    mk = {n: int(v) for n, v in re.findall(r"LX_MK_([A-Z_]+)\s*=\s*(\d+)", header)}
    mf = {n: int(v) for n, v in re.findall(r"LX_MF_([A-Z_]+)\s*=\s*(\d+)", header)}
    opt = {n: int(v) for n, v in re.findall(r"#define LX_MOUNT_OPT_([A-Z_]+) (\d+)u", header)}
    assert ma == {a.name: a.value for a in P.MA}
    assert mk == {k.name: k.value for k in P.MK}
    assert mf == {f.name: f.value for f in P.MF}
    assert opt == {"SLAVE": P.MOUNT_OPT_SLAVE, "READONLY_ROOT": P.MOUNT_OPT_READONLY_ROOT}
    # Nested ids never collide with top-level ones.
    assert not {a.value for a in P.MA} & {a.value for a in P.A}


class _Agent:
    """The real agent over a socketpair, spoken to in raw frames."""

    def __init__(self):
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen([str(AGENT), "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        self.sock.settimeout(10)
        self.seq = 0

    def request(self, msg, attrs) -> P.Frame:
        self.seq += 1
        self.sock.sendall(P.encode(msg, self.seq, attrs))
        hdr = self._exact(P.HDR_LEN)
        return P.decode(hdr + self._exact(P.decode_header(hdr)[3]))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "agent closed the channel"
            buf += chunk
        return buf

    def close(self):
        self.sock.close()
        self.proc.wait(10)


@pytest.mark.parametrize("nested, why", [
    ([(P.MA.TARGET, "/t")], "no kind"),
    ([(P.MA.KIND, 9), (P.MA.TARGET, "/t")], "bad or repeated kind"),
    ([(P.MA.KIND, 2), (P.MA.TARGET, "t"), (P.MA.FSTYPE, "tmpfs")], "target missing or not absolute"),
    ([(P.MA.KIND, 1), (P.MA.TARGET, "/t")], "bind source missing"),
    ([(P.MA.KIND, 2), (P.MA.TARGET, "/t")], "fstype missing"),
    ([(P.MA.KIND, 2), (P.MA.TARGET, "/t"), (P.MA.FSTYPE, "tmpfs"), (0x1ff, b"")], "unknown nested attribute"),
    ([(P.MA.KIND, 2), (P.MA.TARGET, "/t"), (P.MA.TARGET, "/u"), (P.MA.FSTYPE, "tmpfs")], "repeated target"),
    ([(P.MA.KIND, 2), (P.MA.TARGET, "/t"), (P.MA.FSTYPE, "tmpfs"), (P.MA.SOURCE, "s" * 256)],
     "fs source longer than 255 bytes"),
    ([(P.MA.KIND, 7), (P.MA.TARGET, "/dev/x"), (P.MA.MODE, 0o100644)], "node: bad type"),
    ([(P.MA.KIND, 7), (P.MA.TARGET, "/dev/x"), (P.MA.MODE, 0o20666), (P.MA.MAJOR, 4096)], "node: bad type"),
    ([(P.MA.KIND, 7), (P.MA.TARGET, "/dev/x"), (P.MA.MODE, 0o20666), (P.MA.UID, 2**32 - 1)], "node: bad type"),
    ([(P.MA.KIND, 6), (P.MA.TARGET, "/f"), (P.MA.MODE, 0o20666)], "bad mode"),
])
def test_agent_refuses_malformed_mount_entries_before_the_child_runs(nested, why, agent_bin):
    a = _Agent()
    try:
        assert a.request(P.Msg.HELLO, []).type == P.Msg.READY
        spawned = a.request(P.Msg.SPAWN, [(P.A.NS_FLAGS, 0)])
        assert spawned.type == P.Msg.SPAWNED
        value = b"".join(P.attr(t, v) for t, v in nested)
        reply = a.request(P.Msg.PROCEED, [(P.A.STEP_ORDER, P.step_order_value([21])), (P.A.EXEC_PATH, "/bin/true"),
                                          (P.A.ARG, "true"), (P.A.MOUNT, value)])
        assert reply.type == P.Msg.ERROR
        assert reply.get(P.A.STEP) == 0  # protocol: the child never ran a step
        assert reply.get(P.A.DETAIL).startswith(f"PROCEED: mount entry 0: {why}")
        assert a.request(P.Msg.ABORT, []).type == P.Msg.ABORTED
    finally:
        a.close()


# --- /etc/passwd and /etc/group (issue 20) ----------------------------------------

def _accounts(plan):
    return {e.target: e for e in plan.entries if e.target in ("/etc/passwd", "/etc/group")}


def test_account_entries_added_only_where_the_root_lacks_them():
    base = "root:x:0:0:root:/root:/bin/sh\n"
    assert H.account_entries(base, "passwd", 0, 0, ()) == base
    assert H.account_entries(base, "passwd", 1000, 1000, ()) == base + "user1000:x:1000:1000:linx-spec workload:/:/bin/sh\n"
    assert H.account_entries("root:x:0:", "group", 1000, 1000, (0, 2000)) == \
        "root:x:0:\nuser1000:x:1000:\ngroup2000:x:2000:user1000\n"


def test_passwd_default_generate_over_a_roots_own_file(rootfs):
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    data = {"version": 1, "namespaces": ["user", "mount", "pid"], "mounts": {"rootfs": str(rootfs)},
            "process": {"command": ["/bin/true"], "user": {"uid": 7}}}
    s = Spec.model_validate(data)
    plan = H.resolve(s.mounts, s, "/")
    got = _accounts(plan)
    assert set(got) == {"/etc/passwd"}  # the root has no /etc/group: the default creates none
    assert b"user7:x:7:0:" in got["/etc/passwd"].content
    assert plan.read == (str(rootfs / "etc/passwd"),)  # the plan cache watches it
    data["mounts"]["etc"] = {"passwd": "none"}
    s = Spec.model_validate(data)
    assert _accounts(H.resolve(s.mounts, s, "/")) == {}


def test_passwd_without_a_root_of_its_own(rootfs):
    assert _accounts(resolve({"entries": []})) == {}  # the host's /etc is its own business
    with pytest.raises(PlanError, match="generate needs a root of the workload's own"):
        resolve({"etc": {"passwd": "generate"}})
    got = _accounts(resolve({"entries": [{"type": "tmpfs", "target": "/etc"}]}))
    assert got["/etc/passwd"].content == b"root:x:0:0:linx-spec workload:/:/bin/sh\n"


def test_passwd_symlink_in_the_root_is_not_read(rootfs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("SECRET\n")
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").symlink_to(secret)
    got = _accounts(resolve({"rootfs": str(rootfs), "etc": {"passwd": "generate"}}))
    assert b"SECRET" not in got["/etc/passwd"].content
    (rootfs / "etc/passwd").unlink()
    os.mkfifo(rootfs / "etc/passwd")  # never blocks the plan
    assert b"root:x:0:0" in _accounts(resolve({"rootfs": str(rootfs), "etc": {"passwd": "generate"}}))["/etc/passwd"].content
