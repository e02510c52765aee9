"""Live apply (issue 16) on cgroup v2, on the fake cgroupfs tree of test_cgroup.py:
observe -> diff -> converge, the kernel's rewriting of values, per-knob failure,
release and revert, the fields that need a restart.  (v1 is tested for real in
tests/integration/test_live.py.)"""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from linx_spec import PlanError, build_plan, diff, reconcile
from linx_spec.host import cgroup as C
from linx_spec.host import cgroup_live as L
from linx_spec.plan import cgroup as PC
from tests.unit.test_cgroup import spec, v2_host, v2_tree


def running(tmp_path, monkeypatch, cgroup_yaml: str):
    """A 'running' workload on the fake v2 tree: its leaf made and configured as the
    cgroup step does; -> (target, fs, leaf)."""
    mount, fs = v2_tree(tmp_path)
    target = SimpleNamespace(pid=os.getpid(), plan=plan_for(mount, cgroup_yaml))
    live = C.Live(target.plan.cgroup, fs)
    h = target.plan.cgroup.hierarchies[0]
    leaf = live.create(h, "linx-web-42", lambda *a, **k: None)
    live.configure(h, leaf)
    monkeypatch.setattr(L, "leaves_of", lambda pid, plan, name: {mount: leaf})
    return target, fs, leaf


def plan_for(mount: str, cgroup_yaml: str, command: str = "/bin/true"):
    s = spec(cgroup_yaml)
    p = build_plan(s.model_copy(update={"cgroup": None}))
    p = dataclasses.replace(p, cgroup=PC.resolve(s.cgroup, s, host=v2_host(mount)))
    if command != "/bin/true":
        p = dataclasses.replace(p, process=dataclasses.replace(p.process, argv=(command,)))
    return p


def read(leaf: str, name: str) -> str:
    return Path(leaf, name).read_text().strip()


CG = "  memory: {max: 64Mi}\n  pids: {max: 50}\n  cpu: {max: 0.5}\n"


def test_unchanged_spec_writes_nothing(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    fs.writes.clear()
    report = reconcile(target, target.plan, fs=fs)
    assert report.changes == [] and report.converged and report.text() == "web: unchanged"
    assert fs.writes == [] and not hasattr(target, "last_applied")


def test_changed_limits_are_written_and_only_those(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    new = plan_for(str(Path(leaf).parents[1]), "  memory: {max: 32Mi}\n  pids: {max: 10}\n  cpu: {max: 0.5}\n")
    d = diff(target, new, fs=fs)
    assert [(c.field, c.observed, c.wanted, c.how) for c in d.changes] == [
        ("cgroup.memory.max", str(64 << 20), str(32 << 20), "live"), ("cgroup.pids.max", "50", "10", "live")]
    assert not d.converged
    fs.writes.clear()
    report = reconcile(target, new, fs=fs)
    assert [os.path.basename(p) for p, _ in fs.writes] == ["memory.max", "pids.max"]
    assert read(leaf, "memory.max") == str(32 << 20) and read(leaf, "pids.max") == "10"
    assert report.converged and len(report.applied) == 2
    assert target.plan is new  # the recorded plan follows
    entry = next(v for k, v in target.last_applied.items() if k.endswith(":pids.max"))
    assert entry == {"field": "cgroup.pids.max", "file": "pids.max", "value": "10", "before": "max"}


def test_the_kernels_rewriting_is_not_a_difference():
    assert L.same("memory.max", str((64 << 20) + 100), str(64 << 20))  # rounded down to the page
    assert L.same("memory.limit_in_bytes", "9223372036854771712", "-1")  # v1's "no limit"
    assert L.same("cpuset.cpus", "0-3\n", "0,1,2,3")
    assert L.same("io.max", "8:0 rbps=100 wbps=max riops=max wiops=max", "8:0 rbps=100")
    assert not L.same("io.max", "8:0 rbps=100 wbps=max riops=max wiops=max", "8:0 rbps=200")
    assert L.same("io.weight", "default 100\n8:0 50\n", "default 100")
    assert not L.same("pids.max", "max", "50") and not L.same("pids.max", None, "50")


def test_memory_protection_is_live_and_released_to_zero(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, "  memory: {max: 64Mi, low: 8Mi}\n")
    mount = str(Path(leaf).parents[1])
    Path(leaf, "memory.min").write_text("0\n")  # what the kernel shows in a new cgroup
    new = plan_for(mount, "  memory: {max: 64Mi, low: 16Mi, min: 4Mi}\n")
    d = diff(target, new, fs=fs)
    assert [(c.field, c.wanted, c.how) for c in d.changes] == [
        ("cgroup.memory.min", str(4 << 20), "live"), ("cgroup.memory.low", str(16 << 20), "live")]
    reconcile(target, new, fs=fs)
    assert read(leaf, "memory.low") == str(16 << 20) and read(leaf, "memory.min") == str(4 << 20)
    assert diff(target, new, fs=fs).changes == []
    # Released with --revert-released: back to what a new cgroup holds (no protection).
    back = plan_for(mount, "  memory: {max: 64Mi}\n")
    reconcile(target, back, fs=fs, revert_released=True)
    assert read(leaf, "memory.low") == "0" and read(leaf, "memory.min") == "0"


def test_drift_made_behind_our_back_is_seen_and_restored(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    Path(leaf, "pids.max").write_text("7\n")
    d = diff(target, target.plan, fs=fs)
    assert [(c.field, c.observed, c.wanted) for c in d.changes] == [("cgroup.pids.max", "7", "50")]
    reconcile(target, target.plan, fs=fs)
    assert read(leaf, "pids.max") == "50"


def test_one_failed_knob_does_not_stop_the_others(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    new = plan_for(str(Path(leaf).parents[1]), "  memory: {max: 32Mi}\n  pids: {max: 10}\n  cpu: {max: 0.5}\n")
    fs.fail["memory.max"] = errno.EBUSY
    report = reconcile(target, new, fs=fs)
    assert [c.field for c in report.failed] == ["cgroup.memory.max"]
    assert "write memory.max" in report.failed[0].error and "EBUSY" in report.failed[0].error
    assert read(leaf, "pids.max") == "10" and not report.converged
    assert target.plan is not new  # not recorded as applied: the next diff shows what is left
    del fs.fail["memory.max"]
    left = diff(target, new, fs=fs)
    assert [c.field for c in left.changes] == ["cgroup.memory.max"]


def test_released_knob_left_or_reverted(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    mount = str(Path(leaf).parents[1])
    without = plan_for(mount, "  pids: {max: 50}\n  cpu: {max: 0.5}\n")
    d = diff(target, without, fs=fs)
    assert [(c.field, c.how) for c in d.changes] == [("cgroup.memory.max", "release")]
    assert [(c.field, c.how, c.wanted) for c in diff(target, without, fs=fs, revert_released=True).changes] == [
        ("cgroup.memory.max", "revert", "max")]
    reconcile(target, without, fs=fs, revert_released=True)
    assert read(leaf, "memory.max") == "max"
    assert not any(k.endswith(":memory.max") for k in target.last_applied)


def test_a_program_change_is_refused_and_nothing_written(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, CG)
    new = plan_for(str(Path(leaf).parents[1]), "  memory: {max: 32Mi}\n  pids: {max: 50}\n  cpu: {max: 0.5}\n",
                   command="/bin/false")
    fs.writes.clear()
    with pytest.raises(PlanError) as err:
        reconcile(target, new, fs=fs)
    assert err.value.exit_code == 66 and "process.argv" in str(err.value) and "--restart" in str(err.value)
    assert fs.writes == [] and read(leaf, "memory.max") == str(64 << 20)
    assert "process.argv" in diff(target, new, fs=fs).needs_restart


def test_a_controller_the_leaf_lacks_needs_a_restart(tmp_path, monkeypatch):
    target, fs, leaf = running(tmp_path, monkeypatch, "  pids: {max: 50}\n")
    # memory is enabled for accounting anyway: its limit is live; cpu is not enabled for the leaf.
    mount = str(Path(leaf).parents[1])
    assert diff(target, plan_for(mount, "  pids: {max: 50}\n  memory: {max: 32Mi}\n"), fs=fs).needs_restart == []
    new = plan_for(mount, "  pids: {max: 50}\n  cpu: {max: 0.5}\n")
    assert any(f.startswith("cgroup (cgroup2:") for f in diff(target, new, fs=fs).needs_restart)


def test_freeze_target_prefers_the_v1_freezer():
    v1 = PC.Hierarchy(version=1, mount="/sys/fs/cgroup/freezer", controllers=("freezer",), parent="/linx")
    v2 = PC.Hierarchy(version=2, mount="/sys/fs/cgroup/unified", controllers=(), parent="/linx")
    plan = PC.CgroupPlan(backend="v1", hierarchies=(v2, v1), name="web")
    leaves = {v1.mount: "/f/linx-web-1", v2.mount: "/u/linx-web-1"}
    assert L.freeze_target(leaves, plan) == ("/f/linx-web-1", "freezer.state", "FROZEN", "THAWED")
    assert L.freeze_target({v2.mount: "/u/linx-web-1"}, plan) == ("/u/linx-web-1", "cgroup.freeze", "1", "0")
