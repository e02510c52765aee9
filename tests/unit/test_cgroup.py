"""cgroup subsystem without root: the spec section, host detection, the plan,
and both backends applied to a fake cgroupfs tree in a temp dir.

The fake tree (FakeCgroupFs) behaves like the kernel where it matters here:
mkdir creates the interface files of the controllers the parent passes down,
a limit file of a controller that is not enabled does not exist (ENOENT),
subtree_control refuses unavailable controllers (ENOENT) and internal
processes (EBUSY), cgroup.procs moves a pid, rmdir refuses populated cgroups.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
from pathlib import Path

import pytest

from linx_spec import PlanError, SpecError, StepError, load_text
from linx_spec.errors import host_errors
from linx_spec.host import cgroup as C
from linx_spec.plan import cgroup as PC
from linx_spec.plan import cgroup_v1, cgroup_v2
from linx_spec.runner import Result

V2_FILES = {
    "memory": ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max", "memory.peak",
               "memory.events"),
    "cpu": ("cpu.max", "cpu.weight"),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max", "pids.peak", "pids.events"),
    "io": ("io.weight", "io.max"),
}
V2_CORE = ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.events", "cgroup.kill",
           "cgroup.freeze", "cgroup.type", "cpu.stat")
V1_FILES = {
    "memory": ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes",
               "memory.max_usage_in_bytes", "memory.failcnt", "memory.oom_control"),
    "cpu": ("cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares", "cpu.stat"),
    "cpuacct": ("cpuacct.usage",),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max", "pids.events"),
    "freezer": ("freezer.state",),
    "blkio": ("blkio.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
              "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"),
}


class FakeCgroupFs(C.CgroupFs):
    """A cgroupfs imitation on plain directories; records every write."""

    def __init__(self, v1_mounts: dict[str, tuple[str, ...]] | None = None):
        self.v1 = v1_mounts or {}  # mount -> controllers of that v1 hierarchy
        self.writes: list[tuple[str, str]] = []
        self.killed: set[int] = set()
        self.fail: dict[str, int] = {}  # file name -> errno to fail with

    def _v1_controllers(self, path: str) -> tuple[str, ...] | None:
        for mount, ctrls in self.v1.items():
            if path == mount or path.startswith(mount + "/"):
                return ctrls
        return None

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        v1 = self._v1_controllers(path)
        if v1 is not None:
            names = ["cgroup.procs", "tasks"] + [f for c in v1 for f in V1_FILES.get(c, ())]
            init = {"freezer.state": "THAWED\n", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"}
        else:
            passed = (Path(path).parent / "cgroup.subtree_control").read_text().split()
            Path(path, "cgroup.controllers").write_text(" ".join(passed) + "\n")
            names = [n for n in V2_CORE if n != "cgroup.controllers"] + [f for c in passed for f in V2_FILES[c]]
            init = {"cgroup.events": "populated 0\nfrozen 0\n", "cgroup.type": "domain\n"}
        for n in names:
            Path(path, n).write_text(init.get(n, ""))

    def write(self, path: str, text: str) -> None:
        name = os.path.basename(path)
        d = os.path.dirname(path)
        if name in self.fail:
            raise OSError(self.fail[name], os.strerror(self.fail[name]), path)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.writes.append((path, text))
        if name == "cgroup.subtree_control":
            have = set(Path(path).read_text().split())
            ctrl = set(Path(d, "cgroup.controllers").read_text().split())
            c = text[1:]
            if c not in ctrl:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
            if self.procs(d) and os.path.exists(os.path.join(d, "cgroup.type")):
                raise OSError(errno.EBUSY, "Device or resource busy", path)  # no internal processes
            have.add(c)
            Path(path).write_text(" ".join(sorted(have)) + "\n")
        elif name == "cgroup.procs":
            pid = int(text)
            mount = self._mount_of(d)
            for procs in Path(mount).rglob("cgroup.procs"):
                pids = procs.read_text().split()
                if str(pid) in pids:
                    pids.remove(str(pid))
                    procs.write_text("".join(p + "\n" for p in pids))
            with open(path, "a") as f:
                f.write(f"{pid}\n")
        elif name == "cgroup.freeze":
            Path(path).write_text(text)
            Path(d, "cgroup.events").write_text(f"populated {int(bool(self.procs(d)))}\nfrozen {text}\n")
        elif name == "cgroup.kill":
            self.killed |= self.procs(d)
            Path(d, "cgroup.procs").write_text("")
        else:
            Path(path).write_text(text)

    def _mount_of(self, d: str) -> str:
        for mount in self.v1:
            if d == mount or d.startswith(mount + "/"):
                return mount
        return self.v2_mount

    def rmdir(self, path: str) -> None:
        if self.procs(path):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if any(p.is_dir() for p in Path(path).iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for p in Path(path).iterdir():
            p.unlink()
        os.rmdir(path)

    def kill(self, pids: set[int], leaves: list[str]) -> None:
        self.killed |= pids
        for leaf in leaves:
            left = self.procs(leaf) - pids
            Path(leaf, "cgroup.procs").write_text("".join(f"{p}\n" for p in sorted(left)))

    def sleep(self, seconds: float) -> None:
        pass


class FakeCtx:
    def __init__(self, pid: int = 4242, name: str = "web"):
        self.pid = pid
        self.plan = type("P", (), {"name": name})()
        self.undo: list = []
        self.after: list = []
        self.tracked: list[str] = []
        self.tracked_parents: list[str] = []

    def on_undo(self, what, fn):
        self.undo.append((what, fn))

    def after_exit(self, fn):
        self.after.append(fn)

    def track_cgroup(self, path, remove_only=False):
        (self.tracked_parents if remove_only else self.tracked).append(path)

    def rollback(self):
        while self.undo:
            self.undo.pop()[1]()


def spec(cgroup_yaml: str, name: str = "web"):
    return load_text(f"version: 1\nname: {name}\nprocess: {{command: [/bin/true]}}\ncgroup:\n{cgroup_yaml}", "t.yaml")


def v2_tree(tmp_path: Path, root_subtree: str = "cpu io memory pids", available: str | None = None) -> tuple[str, FakeCgroupFs]:
    mount = tmp_path / "unified"
    mount.mkdir()
    (mount / "cgroup.controllers").write_text((available or "cpuset cpu io memory pids hugetlb") + "\n")
    (mount / "cgroup.subtree_control").write_text(root_subtree + "\n")
    (mount / "cgroup.procs").write_text("1\n")
    fs = FakeCgroupFs()
    fs.v2_mount = str(mount)
    return str(mount), fs


def v2_host(mount: str, euid: int = 0, own: str = "/") -> PC.HostView:
    return PC.HostView(mounts=(("cgroup2", mount, ("rw", "nosuid")),), self_cgroup=(("", own),), euid=euid)


def whole_disk() -> str:
    for d in sorted(os.listdir("/sys/dev/block")):
        if not os.path.exists(f"/sys/dev/block/{d}/partition"):
            return d
    pytest.skip("no block device on this host")


def tree(mount: str) -> set[str]:
    return {str(p.relative_to(mount)) for p in Path(mount).rglob("*") if p.is_dir()}


# --- the spec section -----------------------------------------------------------

def test_spec_units_and_defaults():
    cg = spec("  memory: {max: 64Mi, high: 48Mi, swap_max: 0}\n  cpu: {max: 500m, weight: 100}\n"
              "  cpuset: {cpus: '0-1, 3'}\n  pids: {max: 64}\n").cgroup
    assert cg.memory.max == 64 * 2**20 and cg.memory.high == 48 * 2**20 and cg.memory.swap_max == 0
    assert cg.cpu.max == 0.5 and cg.cpu.period is None
    assert cg.cpuset.cpus == "0-1,3"
    assert cg.pids.max == 64
    assert cg.parent is None


@pytest.mark.parametrize("text, words", [
    ("  memory: {max: 1Mi, high: 2Mi}\n", "above memory.max"),
    ("  cpu: {max: 0.005}\n", "minimum quota of 1ms"),
    ("  cpu: {max: 1, period: 2s}\n", "between 1ms and 1s"),
    ("  cpu: {period: 10ms}\n", "only applies with cpu.max"),
    ("  cpu: {weight: 0}\n", "greater than or equal to 1"),
    ("  cpuset: {cpus: '3-1'}\n", "runs backwards"),
    ("  cpuset: {cpus: 'all'}\n", "pattern"),
    ("  parent: /a/../b\n", "not a usable cgroup name"),
    ("  parent: /\n", "hierarchy root"),
    ("  parent: /x/cgroup.procs\n", "clashes"),
    ("  pids: {max: 0}\n", "greater than or equal to 1"),
    ("  io: {limits: [{device: /dev/vda}]}\n", "sets nothing"),
    ("  io: {limits: [{device: vda, read_bps: 1Mi}]}\n", "pattern"),
    ("  io: {limits: [{device: '8:0', read_bps: 1Mi}, {device: '8:0', write_bps: 1Mi}]}\n", "two io limits"),
    ("  memory: {maxx: 1Mi}\n", "maxx"),
    ("  memory: {max: 1Mi, low: 2Mi}\n", "memory.low (2097152 bytes) is above memory.max"),
    ("  memory: {max: 1Mi, min: 2Mi}\n", "memory.min (2097152 bytes) is above memory.max"),
    ("  memory: {low: 1Mi, min: 2Mi}\n", "memory.min (2097152 bytes) is above memory.low"),
    ("  memory: {low: -1}\n", "memory.low"),
    ("  memory: {min: 8Ei}\n", "too large"),
])
def test_spec_rejects(text, words):
    with pytest.raises(SpecError) as e:
        spec(text)
    assert words in str(e.value)
    assert "cgroup" in str(e.value)


def test_parent_is_normalized():
    assert spec("  parent: batch//jobs/\n").cgroup.parent == "/batch/jobs"


def test_weight_conversions_match_their_ranges():
    assert cgroup_v1.cpu_shares(1) == 2 and cgroup_v1.cpu_shares(10000) == 262144
    assert cgroup_v1.cpu_shares(100) == 2597
    assert cgroup_v1.blkio_weight(1) == 10 and cgroup_v1.blkio_weight(10000) == 1000
    assert cgroup_v1.blkio_weight(100) == 19


def test_human_bytes():
    assert C.human_bytes(64 * 2**20) == "64 MiB"
    assert C.human_bytes(2**30) == "1 GiB"
    assert C.human_bytes(1500000) == "1.4 MiB"
    assert C.human_bytes(100) == "100 bytes"


# --- detection ------------------------------------------------------------------

HYBRID_MOUNTS = (
    ("cgroup", "/sys/fs/cgroup/cpu,cpuacct", ("rw", "cpu", "cpuacct")),
    ("cgroup", "/sys/fs/cgroup/memory", ("rw", "memory")),
    ("cgroup", "/sys/fs/cgroup/systemd", ("rw", "xattr", "name=systemd")),
    ("cgroup2", "/sys/fs/cgroup/unified", ("rw", "nsdelegate")),
)


def test_detect_hybrid_from_mounts_and_own_cgroup():
    host = PC.HostView(HYBRID_MOUNTS, (("cpu,cpuacct", "/a"), ("memory", "/work/x"), ("name=systemd", "/s"),
                                      ("", "/u")), 0)
    lay = PC.detect(host)
    assert lay.v1["cpu"] == ("/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct"))
    assert lay.v1["cpuacct"][0] == "/sys/fs/cgroup/cpu,cpuacct"
    assert "name=systemd" not in lay.v1 and "systemd" not in lay.v1
    assert lay.v2 == "/sys/fs/cgroup/unified"
    assert lay.own_v1 == {"cpu": "/a", "cpuacct": "/a", "memory": "/work/x"}
    assert lay.own_v2 == "/u"


def test_parent_chain_runs_root_first():
    assert cgroup_v2.chain("/a/b") == ["/", "/a", "/a/b"]


def test_mount_point_escapes_are_decoded():
    assert PC._unescape(r"/sys/fs/cgroup/my\040dir") == "/sys/fs/cgroup/my dir"


def test_this_hosts_layout_is_read_without_writing():
    lay = PC.detect(PC.HostView.read())
    assert lay.v1 or lay.v2  # some cgroup filesystem is mounted wherever these tests run


# --- v2 on a fake tree --------------------------------------------------------------

FULL = ("  memory: {max: 64Mi, high: 48Mi, swap_max: 0}\n  cpu: {max: 0.5, weight: 200}\n"
        "  pids: {max: 64}\n  io: {weight: 300, limits: [{device: 'DEV', read_bps: 10Mi, write_iops: 200}]}\n")


def test_v2_writes_the_right_files_with_the_right_values(tmp_path):
    mount, fs = v2_tree(tmp_path)
    dev = whole_disk()
    s = spec(FULL.replace("DEV", dev))
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert plan.backend == "v2"
    assert "cgroup v2 at" in plan.notes[0] and "parent /linx" in plan.notes[0]
    (h,) = plan.hierarchies
    assert h.controllers == ("memory", "cpu", "pids", "io")
    ctx = FakeCtx(pid=4242)
    Path(mount, "cgroup.procs").write_text("1\n4242\n")  # the parked child starts in the runner's cgroup
    C.apply_from_host(plan, ctx, fs)
    leaf = f"{mount}/linx/linx-web-4242"
    assert ctx.tracked == [leaf]
    assert ctx.tracked_parents == [f"{mount}/linx"]  # removed by the agent only if empty
    leaf_writes = [(os.path.basename(p), v) for p, v in fs.writes if os.path.dirname(p) == leaf]
    assert leaf_writes == [
        ("memory.max", str(64 * 2**20)), ("memory.high", str(48 * 2**20)), ("memory.swap.max", "0"),
        ("cpu.weight", "200"), ("cpu.max", "50000 100000"),
        ("pids.max", "64"),
        ("io.weight", "default 300"), ("io.max", f"{dev} rbps={10 * 2**20} wiops=200"),
        ("cgroup.procs", "4242"),  # last: every limit is written before the child joins
    ]
    # Controllers enabled one per write, only in the directory we created.
    assert [(p, v) for p, v in fs.writes if p.endswith("subtree_control")] == [
        (f"{mount}/linx/cgroup.subtree_control", f"+{c}") for c in ("memory", "cpu", "pids", "io")]
    assert Path(mount, "cgroup.subtree_control").read_text().split() == ["cpu", "io", "memory", "pids"]
    assert Path(leaf, "cgroup.procs").read_text().split() == ["4242"]
    assert "4242" not in Path(mount, "cgroup.procs").read_text().split()
    # Undo kills through cgroup.kill and removes what this workload created, nothing else.
    ctx.rollback()
    assert 4242 in fs.killed
    assert (f"{leaf}/cgroup.kill", "1") in fs.writes
    assert tree(mount) == set()


def test_v2_memory_protection_is_written_after_the_limits(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  memory: {max: 64Mi, low: 16Mi, min: 0}\n")
    assert (s.cgroup.memory.low, s.cgroup.memory.min) == (16 * 2**20, 0)
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert plan.hierarchies[0].writes == (("memory.max", str(64 * 2**20)), ("memory.min", "0"),
                                          ("memory.low", str(16 * 2**20)))
    # Protection alone still needs (and enables) the memory controller.
    s = spec("  memory: {min: 4Mi}\n")
    assert cgroup_v2.controllers_of(s.cgroup) == ["memory"]
    (h,) = PC.resolve(s.cgroup, s, host=v2_host(mount)).hierarchies
    assert h.writes == (("memory.min", str(4 * 2**20)),) and "memory" in h.controllers
    ctx = FakeCtx(pid=4343)
    C.apply_from_host(PC.resolve(s.cgroup, s, host=v2_host(mount)), ctx, fs)
    assert Path(mount, "linx/linx-web-4343/memory.min").read_text() == str(4 * 2**20)
    ctx.rollback()


def test_v2_describe_is_what_plan_prints(tmp_path):
    mount, _fs = v2_tree(tmp_path)
    s = spec("  memory: {max: 64Mi}\n  cpu: {max: 1.5, period: 50ms}\n")
    d = PC.resolve(s.cgroup, s, host=v2_host(mount)).describe()
    assert d["backend"] == "v2"
    assert d["cgroup"] == "/linx/linx-web-<pid>"
    assert d["writes"] == ["memory.max=67108864", "cpu.max=75000 50000"]
    assert d["join"] == [f"cgroup2:memory,cpu,pids at {mount}"]


def test_v2_cpuset_copies_nothing_and_writes_what_is_asked(tmp_path):
    mount, fs = v2_tree(tmp_path, root_subtree="cpuset memory pids")
    s = spec("  cpuset: {cpus: '0', mems: '0'}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    C.apply_from_host(plan, FakeCtx(), fs)
    assert Path(mount, "linx/linx-web-4242/cpuset.cpus").read_text() == "0"
    assert Path(mount, "linx/linx-web-4242/cpuset.mems").read_text() == "0"


def test_v2_controller_withheld_by_a_cgroup_not_ours_is_a_plan_error(tmp_path):
    mount, fs = v2_tree(tmp_path, root_subtree="cpuset memory pids")
    fs.mkdir(f"{mount}/batch")  # someone else's cgroup, passing nothing down
    s = spec("  parent: /batch/jobs\n  cpuset: {cpus: '0'}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert "cpuset controller is not enabled" in e.value.message
    assert f"echo +cpuset > {mount}/batch/cgroup.subtree_control" in e.value.remedy
    assert e.value.field == "cgroup.cpuset"


# --- a v2 host without systemd: the root passes nothing down ---------------------

def test_v2_bare_host_root_enables_exactly_what_the_spec_needs_and_leaves_it(tmp_path):
    mount, fs = v2_tree(tmp_path, root_subtree="io")  # io: enabled by someone else
    s = spec("  memory: {max: 32Mi}\n  cpu: {weight: 50}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    (h,) = plan.hierarchies
    assert h.enable_root == ("memory", "cpu") and h.enable_in == ("/", "/linx")
    assert h.controllers == ("memory", "cpu")  # pids (accounting only) is not the spec's: not enabled
    note = next(n for n in plan.notes if "enables memory cpu in" in n)
    assert f"{mount}/cgroup.subtree_control" in note and "left enabled" in note
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    root_writes = [t for p, t in fs.writes if p == f"{mount}/cgroup.subtree_control"]
    assert root_writes == ["+memory", "+cpu"]  # one controller per write, nothing else
    assert Path(mount, "cgroup.subtree_control").read_text().split() == ["cpu", "io", "memory"]
    assert Path(mount, "linx/linx-web-4242/memory.max").read_text() == str(32 * 2**20)
    assert Path(mount, "linx/linx-web-4242/cpu.weight").read_text() == "50"
    ctx.rollback()
    assert tree(mount) == set()
    # Never disabled (ours or not): a cgroup made since may rely on it, as with runc.
    assert not any(t.startswith("-") for _p, t in fs.writes)
    assert Path(mount, "cgroup.subtree_control").read_text().split() == ["cpu", "io", "memory"]


def test_v2_bare_host_enables_nothing_already_enabled_and_nothing_for_accounting(tmp_path):
    mount, fs = v2_tree(tmp_path, root_subtree="")
    s = spec("  {}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    (h,) = plan.hierarchies
    assert h.enable_root == () and h.controllers == () and "/" not in h.enable_in
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    assert not any(p == f"{mount}/cgroup.subtree_control" for p, _t in fs.writes)
    ctx.rollback()
    (tmp_path / "b").mkdir()
    mount2, _fs2 = v2_tree(tmp_path / "b", root_subtree="pids memory")
    s = spec("  pids: {max: 9}\n")
    (h,) = PC.resolve(s.cgroup, s, host=v2_host(mount2)).hierarchies
    assert h.enable_root == () and "/" not in h.enable_in and h.controllers == ("pids", "memory")


def test_v2_bare_host_not_root_may_not_enable_in_the_root(tmp_path):
    mount, _fs = v2_tree(tmp_path, root_subtree="")
    Path(mount, "cgroup.procs").chmod(0o444)
    s = spec("  memory: {max: 32Mi}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount, euid=1000, own="/user.slice"))
    assert "Delegate=yes" in e.value.remedy


def _cgroupns_root(tmp_path: Path, procs: str) -> tuple[str, FakeCgroupFs]:
    mount, fs = v2_tree(tmp_path, root_subtree="")
    Path(mount, "cgroup.type").write_text("domain\n")  # only a non-root cgroup has it
    Path(mount, "cgroup.procs").write_text(procs)
    return mount, fs


def test_v2_cgroupns_root_with_processes_is_a_plan_error_with_the_remedy(tmp_path):
    mount, _fs = _cgroupns_root(tmp_path, "1\n57\n")
    s = spec("  memory: {max: 32Mi}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert "no internal processes" in e.value.message and "(1 57)" in e.value.message
    assert f"mkdir {mount}/init" in e.value.remedy and f"echo +memory > {mount}/cgroup.subtree_control" \
        in e.value.remedy
    assert e.value.field == "cgroup.memory"
    # Without limits nothing needs enabling there: tracking works as it is.
    s = spec("  {}\n")
    (h,) = PC.resolve(s.cgroup, s, host=v2_host(mount)).hierarchies
    assert h.controllers == () and h.evacuate is None


def test_v2_cgroupns_root_without_processes_passes_controllers_down(tmp_path):
    mount, fs = _cgroupns_root(tmp_path, "")
    s = spec("  memory: {max: 32Mi}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    assert Path(mount, "linx/linx-web-4242/memory.max").read_text() == str(32 * 2**20)
    ctx.rollback()
    assert tree(mount) == set()


def test_v2_controller_missing_from_the_kernel_is_a_plan_error(tmp_path):
    mount, _fs = v2_tree(tmp_path, available="memory pids")
    s = spec("  io: {weight: 100}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert "io controller is not available" in str(e.value)


def test_v2_accounting_controllers_are_joined_only_when_available(tmp_path):
    mount, _fs = v2_tree(tmp_path, root_subtree="cpu", available="cpu")
    s = spec("  cpu: {weight: 50}\n")
    (h,) = PC.resolve(s.cgroup, s, host=v2_host(mount)).hierarchies
    assert h.controllers == ("cpu",)


def test_v2_existing_parent_not_ours_must_pass_controllers(tmp_path):
    mount, fs = v2_tree(tmp_path)
    fs.mkdir(f"{mount}/batch")  # someone else's cgroup: its subtree_control is empty
    s = spec("  parent: /batch\n  memory: {max: 1Gi}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert f"{mount}/batch" in e.value.message and "memory" in e.value.message


def test_default_parent_is_shared_and_the_last_workload_out_removes_it(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  pids: {max: 5}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    first, second = FakeCtx(pid=1001), FakeCtx(pid=1002)
    C.apply_from_host(plan, first, fs)  # creates /linx
    C.apply_from_host(plan, second, fs)  # reuses it
    assert "pids" in Path(mount, "linx/cgroup.subtree_control").read_text().split()
    first.rollback()
    assert tree(mount) == {"linx", "linx/linx-web-1002"}  # still in use: EBUSY, left alone
    second.rollback()
    assert tree(mount) == set()  # did not create it, but /linx is linx-spec's own


def test_parent_removed_by_another_workload_midway_is_created_again(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  pids: {max: 5}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    real_mkdir = fs.mkdir
    raced = []

    def mkdir(path):
        if path.endswith("linx-web-4242") and not raced:
            raced.append(path)
            fs.rmdir(os.path.dirname(path))  # the last other workload just left
        real_mkdir(path)

    fs.mkdir = mkdir
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    assert raced
    assert Path(mount, "linx/linx-web-4242/pids.max").read_text() == "5"
    assert "pids" in Path(mount, "linx/cgroup.subtree_control").read_text().split()
    ctx.rollback()
    assert tree(mount) == set()


def test_missing_mount_is_a_step_error_not_a_traceback(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  pids: {max: 5}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    gone = dataclasses.replace(plan, hierarchies=tuple(dataclasses.replace(h, mount=str(tmp_path / "nowhere"))
                                                      for h in plan.hierarchies))
    ctx = FakeCtx()
    with pytest.raises(StepError, match=r"cgroup \(host\): mkdir in .*/nowhere/linx.*: ENOENT"):
        with host_errors("cgroup"):  # the runner's boundary of the step
            C.apply_from_host(gone, ctx, fs)
    ctx.rollback()


def test_explicit_parent_not_created_by_us_is_kept(tmp_path):
    mount, fs = v2_tree(tmp_path)
    fs.mkdir(f"{mount}/linx-batch")
    s = spec("  parent: /linx-batch/jobs\n  pids: {max: 5}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    assert Path(mount, "linx-batch/jobs/linx-web-4242/pids.max").read_text() == "5"
    ctx.rollback()
    assert tree(mount) == {"linx-batch"}  # /jobs was ours to remove, /linx-batch was not


def test_v2_delegated_cgroup_evacuates_then_enables(tmp_path):
    mount, fs = v2_tree(tmp_path)
    fs.mkdir(f"{mount}/user.slice")
    fs.write(f"{mount}/user.slice/cgroup.subtree_control", "+memory")
    fs.write(f"{mount}/user.slice/cgroup.subtree_control", "+pids")
    fs.mkdir(f"{mount}/user.slice/app.scope")
    for pid in (100, 101, 4242):  # the runner, the agent, the parked child
        fs.write(f"{mount}/user.slice/app.scope/cgroup.procs", str(pid))
    s = spec("  memory: {max: 32Mi}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount, euid=1000, own="/user.slice/app.scope"))
    (h,) = plan.hierarchies
    assert h.parent == "/user.slice/app.scope" and h.evacuate == "/user.slice/app.scope"
    assert any("delegated cgroup /user.slice/app.scope" in n for n in plan.notes)
    assert "delegated: the runner's own cgroup" in plan.notes[0]
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    scope = Path(mount, "user.slice/app.scope")
    assert (scope / "linx-runner/cgroup.procs").read_text().split() == ["100", "101"]
    assert (scope / "linx-web-4242/cgroup.procs").read_text().split() == ["4242"]
    assert (scope / "linx-web-4242/memory.max").read_text() == str(32 * 2**20)
    assert (scope / "cgroup.subtree_control").read_text().split() == ["memory", "pids"]
    # user.slice is not ours: it was only read.
    assert not any(p == f"{mount}/user.slice/cgroup.subtree_control" for p, _ in fs.writes[2:])
    ctx.rollback()
    assert not (scope / "linx-web-4242").exists()
    assert (scope / "linx-runner").exists()  # the runner lives there now


def test_not_root_without_delegation_is_a_plan_error(tmp_path):
    mount, _fs = v2_tree(tmp_path)
    s = spec("  memory: {max: 32Mi}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=v2_host(mount, euid=1000, own="/not/here"))
    assert "not root and no writable delegated cgroup" in e.value.message
    assert "Delegate=yes" in e.value.remedy


def test_failure_halfway_leaves_nothing_and_says_where(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  memory: {max: 64Mi}\n  pids: {max: 10}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    fs.fail["pids.max"] = errno.EINVAL
    ctx = FakeCtx()
    with pytest.raises(StepError) as e:
        with host_errors("cgroup"):
            C.apply_from_host(plan, ctx, fs)
    assert str(e.value) == (f"cgroup (host): write pids.max '10' in {mount}/linx/linx-web-4242: "
                            "EINVAL (Invalid argument)")
    assert not any(p.endswith("cgroup.procs") for p, _ in fs.writes)  # the child never joined
    ctx.rollback()
    assert tree(mount) == set()


def test_no_cgroup_filesystem_is_a_plan_error():
    s = spec("  pids: {max: 1}\n")
    with pytest.raises(PlanError, match="no cgroup filesystem"):
        PC.resolve(s.cgroup, s, host=PC.HostView((), (), 0))


# --- v1 on a fake tree -------------------------------------------------------------

def v1_tree(tmp_path: Path, hierarchies: dict[str, tuple[str, ...]], memsw: bool = True):
    fs = FakeCgroupFs({str(tmp_path / name): ctrls for name, ctrls in hierarchies.items()})
    mounts = []
    for name, ctrls in hierarchies.items():
        d = tmp_path / name
        d.mkdir()
        for c in ctrls:
            for f in V1_FILES.get(c, ()):
                if f == "memory.memsw.limit_in_bytes" and not memsw:
                    continue
                if f in ("pids.max", "freezer.state"):
                    continue  # not on a v1 root
                (d / f).write_text("")
        (d / "cgroup.procs").write_text("1\n")
        if "cpuset" in ctrls:
            (d / "cpuset.cpus").write_text("0-1\n")
            (d / "cpuset.mems").write_text("0\n")
        mounts.append(("cgroup", str(d), ("rw", *ctrls)))
    fs.v2_mount = ""
    own = tuple((",".join(ctrls), "/") for ctrls in hierarchies.values())
    return fs, PC.HostView(tuple(mounts), own, 0)


V1_HIERARCHIES = {"memory": ("memory",), "cpu,cpuacct": ("cpu", "cpuacct"), "cpuset": ("cpuset",),
                  "pids": ("pids",), "freezer": ("freezer",)}


def test_v1_writes_each_hierarchy_and_copies_cpuset(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    s = spec("  memory: {max: 64Mi, high: 32Mi, swap_max: 16Mi}\n  cpu: {max: 0.5, weight: 100}\n"
             "  cpuset: {cpus: '1'}\n  pids: {max: 16}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    assert plan.backend == "v1"
    assert plan.notes[0].startswith("cgroup v1 (legacy host: cpu, cpuacct, cpuset, freezer, memory, pids on v1")
    assert any("memory.soft_limit_in_bytes" in n for n in plan.notes)
    # cpu and cpuacct share a hierarchy: one cgroup there, joined once.
    assert [h.label for h in plan.hierarchies] == ["memory", "cpu,cpuacct", "cpuset", "pids", "freezer"]
    ctx = FakeCtx(pid=777)
    C.apply_from_host(plan, ctx, fs)
    got = {os.path.relpath(p, tmp_path): v for p, v in fs.writes}
    assert got["memory/linx/linx-web-777/memory.limit_in_bytes"] == str(64 * 2**20)
    assert got["memory/linx/linx-web-777/memory.memsw.limit_in_bytes"] == str(80 * 2**20)
    assert got["memory/linx/linx-web-777/memory.soft_limit_in_bytes"] == str(32 * 2**20)
    assert got["cpu,cpuacct/linx/linx-web-777/cpu.cfs_period_us"] == "100000"
    assert got["cpu,cpuacct/linx/linx-web-777/cpu.cfs_quota_us"] == "50000"
    assert got["cpu,cpuacct/linx/linx-web-777/cpu.shares"] == "2597"
    assert got["cpuset/linx/cpuset.cpus"] == "0-1"  # the parent we created, copied from the root
    assert got["cpuset/linx/cpuset.mems"] == "0"
    assert got["cpuset/linx/linx-web-777/cpuset.cpus"] == "1"
    assert got["cpuset/linx/linx-web-777/cpuset.mems"] == "0"  # unset: copied so that tasks may join
    assert got["pids/linx/linx-web-777/pids.max"] == "16"
    assert len(ctx.tracked) == 5
    order = [os.path.relpath(p, tmp_path) for p, _ in fs.writes]
    first_join = min(i for i, p in enumerate(order) if p.endswith("cgroup.procs"))
    assert all(not p.endswith("cgroup.procs") for p in order[:first_join])
    assert all(p.endswith("cgroup.procs") for p in order[first_join:])
    for name in V1_HIERARCHIES:
        assert (tmp_path / name / "linx/linx-web-777/cgroup.procs").read_text().split() == ["777"]
    # Undo on v1: freeze, kill, thaw, remove.
    ctx.rollback()
    assert 777 in fs.killed
    freezes = [v for p, v in fs.writes if p.endswith("freezer.state")]
    assert freezes == ["FROZEN", "THAWED"]
    for name in V1_HIERARCHIES:
        assert not (tmp_path / name / "linx").exists()


def test_v1_swap_needs_memory_max_and_swap_accounting(tmp_path):
    _fs, host = v1_tree(tmp_path, {"memory": ("memory",)}, memsw=False)
    s = spec("  memory: {swap_max: 0}\n")
    with pytest.raises(PlanError, match="needs memory.max"):
        PC.resolve(s.cgroup, s, host=host)
    s = spec("  memory: {max: 1Gi, swap_max: 0}\n")
    with pytest.raises(PlanError, match="memory.memsw.limit_in_bytes") as e:
        PC.resolve(s.cgroup, s, host=host)
    assert "swapaccount=1" in str(e.value)


@pytest.mark.parametrize("key", ["low", "min"])
def test_v1_has_no_memory_protection_and_says_so(tmp_path, key):
    _fs, host = v1_tree(tmp_path, {"memory": ("memory",)})
    s = spec(f"  memory: {{max: 64Mi, {key}: 16Mi}}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=host)
    assert e.value.field == f"cgroup.memory.{key}"
    assert "cgroup v1" in str(e.value) and f"drop cgroup.memory.{key}" in str(e.value)


def test_v1_missing_controller_is_named(tmp_path):
    _fs, host = v1_tree(tmp_path, {"memory": ("memory",)})
    s = spec("  pids: {max: 10}\n")
    with pytest.raises(PlanError) as e:
        PC.resolve(s.cgroup, s, host=host)
    assert "the pids controller is not available" in e.value.message
    assert e.value.field == "cgroup.pids"


def test_v1_failed_setup_removes_every_hierarchy(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    s = spec("  memory: {max: 64Mi}\n  cpuset: {cpus: '1'}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    fs.fail["cpuset.cpus"] = errno.EINVAL
    ctx = FakeCtx()
    with pytest.raises(StepError, match=r"cgroup \(host\): write cpuset.cpus '0-1' in .*/cpuset/linx: EINVAL"):
        with host_errors("cgroup"):
            C.apply_from_host(plan, ctx, fs)
    ctx.rollback()
    for name in V1_HIERARCHIES:
        assert not (tmp_path / name / "linx").exists()


def test_cpuset_outside_the_online_cpus_is_a_plan_error(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    s = spec("  cpuset: {cpus: '4095'}\n")
    with pytest.raises(PlanError, match="4095") as e:
        PC.resolve(s.cgroup, s, host=host)
    assert e.value.field == "cgroup.cpuset.cpus"


def test_io_device_partition_and_missing_are_plan_errors(tmp_path):
    _fs, host = v1_tree(tmp_path, {"blkio": ("blkio",)})
    s = spec("  io: {limits: [{device: '4095:4095', read_bps: 1Mi}]}\n")
    with pytest.raises(PlanError, match="no block device 4095:4095"):
        PC.resolve(s.cgroup, s, host=host)
    s = spec("  io: {limits: [{device: /dev/null, read_bps: 1Mi}]}\n")
    with pytest.raises(PlanError, match="not a block device"):
        PC.resolve(s.cgroup, s, host=host)
    parts = [d for d in os.listdir("/sys/dev/block") if os.path.exists(f"/sys/dev/block/{d}/partition")]
    if parts:
        s = spec(f"  io: {{limits: [{{device: '{parts[0]}', read_bps: 1Mi}}]}}\n")
        with pytest.raises(PlanError, match="is a partition"):
            PC.resolve(s.cgroup, s, host=host)


def test_v1_blkio_files(tmp_path):
    fs, host = v1_tree(tmp_path, {"blkio": ("blkio",)})
    dev = whole_disk()
    s = spec(f"  io: {{weight: 100, limits: [{{device: '{dev}', read_bps: 1Mi, write_bps: 2Mi, read_iops: 3, "
             "write_iops: 4}]}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    assert plan.hierarchies[0].writes == (
        ("blkio.weight", "19"),
        ("blkio.throttle.read_bps_device", f"{dev} {2**20}"),
        ("blkio.throttle.write_bps_device", f"{dev} {2 * 2**20}"),
        ("blkio.throttle.read_iops_device", f"{dev} 3"),
        ("blkio.throttle.write_iops_device", f"{dev} 4"),
    )


# --- after exit -----------------------------------------------------------------

def _result(signal_no=None, code=None):
    return Result("web", 4242, code, signal_no, False, [])


def test_v2_usage_and_oom_reason(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  memory: {max: 64Mi}\n")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount))
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    leaf = Path(mount, "linx/linx-web-4242")
    (leaf / "memory.peak").write_text("67108864\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (leaf / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
                                   "nr_periods 20\nnr_throttled 9\nthrottled_usec 400000\n")
    (leaf / "pids.peak").write_text("3\n")
    (leaf / "pids.events").write_text("max 2\n")
    result = _result(signal_no=signal.SIGKILL)
    for fn in ctx.after:
        fn(result)
    assert result.usage == {"memory_peak_bytes": 67108864, "oom_kills": 1, "ooms": 1, "memory_high_hits": 0,
                            "memory_limit_hits": 12,
                            "cpu_seconds": 1.5, "cpu_user_seconds": 1.0, "cpu_system_seconds": 0.5,
                            "cpu_throttled_periods": 9, "cpu_throttled_seconds": 0.4,
                            "pids_peak": 3, "pids_limit_hits": 2}
    assert result.reason == "killed by the kernel OOM killer: memory.max 64 MiB reached"
    ctx.rollback()


def test_v1_usage_and_reasons(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    s = spec("  memory: {max: 1Gi}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    ctx = FakeCtx()
    C.apply_from_host(plan, ctx, fs)
    (tmp_path / "memory/linx/linx-web-4242/memory.max_usage_in_bytes").write_text("1048576\n")
    (tmp_path / "memory/linx/linx-web-4242/memory.failcnt").write_text("5\n")
    (tmp_path / "memory/linx/linx-web-4242/memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (tmp_path / "cpu,cpuacct/linx/linx-web-4242/cpuacct.usage").write_text("250000000\n")
    (tmp_path / "pids/linx/linx-web-4242/pids.events").write_text("max 0\n")
    result = _result(code=137)  # a shell whose child the OOM killer took
    ctx.after[0](result)
    assert result.usage["memory_peak_bytes"] == 1048576
    assert result.usage["memory_limit_hits"] == 5
    assert result.usage["oom_kills"] == 2
    assert result.usage["cpu_seconds"] == 0.25
    assert result.usage["pids_limit_hits"] == 0
    assert result.reason == ("a process of the workload was killed by the kernel OOM killer "
                             "(memory.max 1 GiB reached)")
    clean = _result(code=0)
    ctx.after[0](clean)
    assert clean.reason == ""  # it ended on its own terms
    ctx.rollback()


def test_freeze_and_thaw_through_cgroup_freeze_or_the_v1_freezer(tmp_path):
    mount, fs = v2_tree(tmp_path)
    s = spec("  pids: {max: 5}\n")
    ctx = FakeCtx()
    live = C.apply_from_host(PC.resolve(s.cgroup, s, host=v2_host(mount)), ctx, fs)
    leaf = Path(mount, "linx/linx-web-4242")
    live.freeze(True)
    assert (leaf / "cgroup.freeze").read_text() == "1" and "frozen 1" in (leaf / "cgroup.events").read_text()
    live.freeze(False)
    assert "frozen 0" in (leaf / "cgroup.events").read_text()
    fs.write = lambda path, text: Path(path).write_text(text)  # a kernel that never reports frozen
    with pytest.raises(StepError, match=r"cgroup \(host\): wait for cgroup.events to say 'frozen 1' in .*: ETIMEDOUT"):
        with host_errors("cgroup"):  # the boundary the pause/resume caller puts around it
            live.freeze(True, timeout=0.01)
    ctx.rollback()
    live.leaves.clear()
    with pytest.raises(StepError, match="no v2 leaf and no v1 freezer"):
        with host_errors("cgroup"):
            live.freeze(True)


# --- cgroup.devices (issue 20) -------------------------------------------------------

def test_devices_allow_list_on_v1_denies_all_then_allows(tmp_path):
    fs, host = v1_tree(tmp_path, {**V1_HIERARCHIES, "devices": ("devices",)})
    s = spec("  devices:\n    - {path: /dev/null, access: rw}\n    - {type: c, major: 136}\n    - {type: a, access: m}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    (h,) = [h for h in plan.hierarchies if "devices" in h.controllers]
    assert h.device_allow == ("c 1:3 rw", "c 136:* rwm", "a *:* m")
    assert h.writes == ()  # write-only files stay out of what live.py reads back
    assert plan.describe()["writes"][:2] == ["devices.deny=a", "devices.allow=c 1:3 rw"]
    assert all(x.device_allow is None for x in plan.hierarchies if x is not h)


def test_devices_on_pure_v2_is_a_plan_error_naming_the_reason(tmp_path):
    mount, _fs = v2_tree(tmp_path)
    s = spec("  devices:\n    - {path: /dev/null}\n")
    with pytest.raises(PlanError, match="BPF_PROG_TYPE_CGROUP_DEVICE") as info:
        PC.resolve(s.cgroup, s, host=v2_host(mount))
    assert info.value.field == "cgroup.devices"


@pytest.mark.parametrize("rule,message", [
    ("{path: /dev/null, type: c}", "either by `path`"),
    ("{type: c, access: rr}", "names a letter twice"),
    ("{type: a, major: 1}", "takes no major"),
    ("{type: c, major: 4096}", "12 bits"),
    ("{type: x}", r"devices\[0\]\.type"),
])
def test_bad_device_rules_are_spec_errors(rule, message):
    with pytest.raises(SpecError, match=message):
        spec(f"  devices:\n    - {rule}\n")


def test_a_device_path_that_is_no_device_is_a_plan_error(tmp_path):
    fs, host = v1_tree(tmp_path, {"devices": ("devices",)})
    s = spec("  devices:\n    - {path: /etc/hostname}\n")
    with pytest.raises(PlanError, match="not a device node"):
        PC.resolve(s.cgroup, s, host=host)


def test_a_changed_devices_list_needs_a_restart(tmp_path):
    from linx_spec import build_plan
    from linx_spec.live import restart_fields

    fs, host = v1_tree(tmp_path, {**V1_HIERARCHIES, "devices": ("devices",)})
    base = build_plan(load_text("version: 1\nprocess: {command: [/bin/true]}\n"))
    plans = []
    for rules in ("[{path: /dev/null}]", "[{path: /dev/null}, {path: /dev/zero}]"):
        s = spec(f"  pids: {{max: 10}}\n  devices: {rules}\n")
        plans.append(dataclasses.replace(base, cgroup=PC.resolve(s.cgroup, s, host=host)))
    assert restart_fields(plans[0], plans[0]) == []
    assert restart_fields(plans[0], plans[1]) == ["cgroup.devices"]


class CountingFs(FakeCgroupFs):
    """FakeCgroupFs that counts the calls the hot path makes."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: list[tuple[str, str]] = []

    def mkdir(self, path: str) -> None:
        self.calls.append(("mkdir", path))
        super().mkdir(path)

    def rmdir(self, path: str) -> None:
        self.calls.append(("rmdir", path))
        self.inside = True  # the fake's own rmdir reads cgroup.procs to imitate EBUSY: not counted
        try:
            super().rmdir(path)
        finally:
            self.inside = False

    def read(self, path: str) -> str | None:
        if not getattr(self, "inside", False):
            self.calls.append(("read", path))
        return super().read(path)

    def exists(self, path: str) -> bool:
        self.calls.append(("exists", path))
        return super().exists(path)


def test_v1_hot_path_one_mkdir_per_leaf_and_one_rmdir_once_empty(tmp_path):
    fs, host = v1_tree(tmp_path, {"memory": ("memory",), "pids": ("pids",)})
    fs.__class__ = CountingFs
    fs.calls = []
    for name in ("memory", "pids"):
        os.mkdir(tmp_path / name / "batch")  # an explicit parent that exists
    s = spec("  parent: /batch\n  memory: {max: 64Mi}\n  pids: {max: 16}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    ctx = FakeCtx(pid=900)
    C.apply_from_host(plan, ctx, fs)
    # The parent exists: no mkdir of it (EEXIST), one mkdir per leaf.
    assert [c for c in fs.calls if c[0] == "mkdir"] == [
        ("mkdir", str(tmp_path / "memory/batch/linx-web-900")), ("mkdir", str(tmp_path / "pids/batch/linx-web-900"))]
    # The workload ended and left nothing inside: the undo is one rmdir per leaf, no reads, no kill.
    for name in ("memory", "pids"):
        Path(tmp_path / name / "batch/linx-web-900/cgroup.procs").write_text("")
    fs.calls.clear()
    writes = len(fs.writes)
    ctx.rollback()
    assert fs.calls == [("rmdir", str(tmp_path / "pids/batch/linx-web-900")),
                        ("rmdir", str(tmp_path / "memory/batch/linx-web-900"))]
    assert len(fs.writes) == writes and not fs.killed  # no freezer, no kill
    assert tree(str(tmp_path / "memory")) == {"batch"}


def test_v1_hot_path_still_kills_what_is_left_and_makes_a_missing_parent(tmp_path):
    fs, host = v1_tree(tmp_path, {"memory": ("memory",), "pids": ("pids",)})
    s = spec("  parent: /batch/jobs\n  memory: {max: 64Mi}\n  pids: {max: 16}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    ctx = FakeCtx(pid=901)
    C.apply_from_host(plan, ctx, fs)  # the leaf's mkdir fails ENOENT: the parents are walked
    assert Path(tmp_path / "pids/batch/jobs/linx-web-901/pids.max").read_text() == "16"
    ctx.rollback()  # 901 is still inside: rmdir refused (EBUSY), killed, then removed
    assert 901 in fs.killed
    for name in ("memory", "pids"):
        assert tree(str(tmp_path / name)) == set()  # /batch/jobs were ours: removed too


def test_v2_usage_on_a_hybrid_host_skips_the_files_of_controllers_bound_to_v1():
    from linx_spec.host.cgroup_usage import v2_usage

    files = {"/u/leaf/cpu.stat": "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\n",
             "/u/leaf/memory.peak": "4096\n", "/u/leaf/pids.events": "max 3\n"}
    tried: list[str] = []

    def read(path):
        tried.append(path)
        return files.get(path)

    assert v2_usage("/u/leaf", read, frozenset({"memory", "pids"})) == {
        "cpu_seconds": 2.0, "cpu_user_seconds": 1.5, "cpu_system_seconds": 0.5}
    assert tried == ["/u/leaf/cpu.stat"]
    tried.clear()
    full = v2_usage("/u/leaf", read)  # pure v2: every file is tried
    assert full["memory_peak_bytes"] == 4096 and full["pids_limit_hits"] == 3
    assert len(tried) == 5


def test_cgroups_made_early_but_not_where_the_runner_must_leave_a_delegated_cgroup(tmp_path, monkeypatch):
    fs, host = v1_tree(tmp_path, {"pids": ("pids",)})
    s = spec("  pids: {max: 16}\n")
    plan = PC.resolve(s.cgroup, s, host=host)
    assert C.early(plan)
    monkeypatch.setenv("LINX_CGROUP_EARLY", "0")
    assert not C.early(plan)
    monkeypatch.delenv("LINX_CGROUP_EARLY")
    (h,) = plan.hierarchies
    assert not C.early(dataclasses.replace(plan, hierarchies=(dataclasses.replace(h, evacuate="/user.slice"),)))
    assert not C.early(PC.JoinCgroupsPlan(target=1))  # exec joins the running workload's cgroups
# --- an explicit leaf (linx-oci's cgroupsPath) ------------------------------------

def test_explicit_absolute_leaf_is_the_cgroup_itself_in_every_hierarchy(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    s = spec("  pids: {max: 7}\n")
    plan = PC.resolve(s.cgroup, s, host=host, leaf="/oci/ctr-1")
    assert {h.leaf for h in plan.hierarchies} == {"/oci/ctr-1"}
    assert plan.describe()["cgroup"] == "/oci/ctr-1"
    ctx = FakeCtx(pid=901)
    C.apply_from_host(plan, ctx, fs)
    assert Path(tmp_path, "pids/oci/ctr-1/pids.max").read_text() == "7"  # no linx-NAME-PID below it
    assert Path(tmp_path, "pids/oci/ctr-1/cgroup.procs").read_text().split() == ["901"]
    assert sorted(ctx.tracked) == sorted(h.dir("/oci/ctr-1") for h in plan.hierarchies)
    ctx.rollback()
    for name in V1_HIERARCHIES:  # the leaf and the parent /oci we created are gone
        assert not (tmp_path / name / "oci").exists()


def test_explicit_relative_leaf_is_below_the_runners_own_cgroup_as_runc_puts_it(tmp_path):
    fs, host = v1_tree(tmp_path, V1_HIERARCHIES)
    own = tuple((c, "/" if c != "memory" else "/someone/else") for c, _p in host.self_cgroup)
    host = PC.HostView(host.mounts, own, 0)
    s = spec("  pids: {max: 3}\n")
    plan = PC.resolve(s.cgroup, s, host=host, leaf="a/b")
    # memory is joined only for accounting and the runner's memory cgroup is not ours: left out.
    assert [h.label for h in plan.hierarchies] == ["pids", "cpuacct", "freezer"]
    assert {h.leaf for h in plan.hierarchies} == {"/a/b"}
    s = spec("  memory: {max: 64Mi}\n")
    plan = PC.resolve(s.cgroup, s, host=host, leaf="a/b")
    assert next(h.leaf for h in plan.hierarchies if h.label == "memory") == "/someone/else/a/b"
    # cgroup2: below the parent of the runner's cgroup (runc's fs2: that one has processes).
    (tmp_path / "v2").mkdir()
    mount, _fs = v2_tree(tmp_path / "v2")
    plan = PC.resolve(s.cgroup, s, host=v2_host(mount, own="/user.slice/session-1.scope"), leaf="a/b")
    assert plan.hierarchies[0].leaf == "/user.slice/a/b"


@pytest.mark.parametrize("bad", ["/a/../b", "../x", "/", "a/cgroup.procs", "a\0b", "x" * 5000])
def test_explicit_leaf_is_checked_like_a_parent(tmp_path, bad):
    _fs, host = v1_tree(tmp_path, {"pids": ("pids",)})
    s = spec("  pids: {max: 3}\n")
    with pytest.raises(PlanError, match="cgroup path"):
        PC.resolve(s.cgroup, s, host=host, leaf=bad)


def test_explicit_leaf_that_exists_is_joined_when_empty_and_refused_with_processes(tmp_path):
    fs, host = v1_tree(tmp_path, {"pids": ("pids",)})
    s = spec("  pids: {max: 3}\n")
    plan = PC.resolve(s.cgroup, s, host=host, leaf="/ctr")
    fs.mkdir(str(tmp_path / "pids/ctr"))
    ctx = FakeCtx(pid=55)
    C.apply_from_host(plan, ctx, fs)  # empty: joined, as runc does
    assert Path(tmp_path, "pids/ctr/pids.max").read_text() == "3"
    ctx.rollback()
    assert not (tmp_path / "pids/ctr").exists()  # and removed at the end, as runc does
    fs.mkdir(str(tmp_path / "pids/ctr"))
    Path(tmp_path, "pids/ctr/cgroup.procs").write_text("4711\n")
    ctx = FakeCtx(pid=56)
    with pytest.raises(StepError, match=r"holds 1 process\(es\) \(pid 4711...\): not empty.*EBUSY"):
        with host_errors("cgroup"):
            C.apply_from_host(plan, ctx, fs)
    ctx.rollback()
    assert Path(tmp_path, "pids/ctr/cgroup.procs").read_text() == "4711\n"  # not ours: untouched


def test_leaves_found_from_their_directories_are_killed_and_removed_as_the_holders_undo(tmp_path, monkeypatch):
    """linx-oci's delete after its holder was killed: the recorded directories become
    a Live (v2 by the cgroup2 mount, v1 controllers by theirs) and go through the same
    destroy; a directory under no cgroup mount is never touched."""
    fs, _host = v1_tree(tmp_path, {"freezer": ("freezer",), "pids": ("pids",)})
    for name in ("freezer", "pids"):
        fs.mkdir(str(tmp_path / name / "ctr"))
        Path(tmp_path, name, "ctr", "cgroup.procs").write_text("31\n32\n")
    stray = tmp_path / "elsewhere" / "ctr"
    stray.mkdir(parents=True)
    monkeypatch.setattr(C, "_cgroup_mounts", lambda: {"freezer": str(tmp_path / "freezer"),
                                                      "pids": str(tmp_path / "pids")})
    live = C.Live.of_dirs([str(tmp_path / "freezer/ctr"), str(tmp_path / "pids/ctr"), str(stray)], fs)
    assert [(h.version, h.controllers, h.parent) for h, _ in live.leaves] == [(1, ("freezer",), "/"),
                                                                             (1, ("pids",), "/")]
    live.destroy()
    assert fs.killed == {31, 32}
    assert [v for p, v in fs.writes if p.endswith("freezer.state")] == ["FROZEN", "THAWED"]
    assert not (tmp_path / "freezer/ctr").exists() and not (tmp_path / "pids/ctr").exists()
    assert stray.exists()
