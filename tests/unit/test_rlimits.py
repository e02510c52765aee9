"""rlimits: the table against its sources, the spec values (units, unlimited,
soft/hard), the plan's checks, and prlimit from the host on a real child of ours
(no root needed: lowering the limits of one's own child is unprivileged)."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import pytest

from linx_spec import PlanError, SpecError, StepError, build_plan, load_text
from linx_spec.errors import host_errors
from linx_spec.host.rlimits import apply_from_host
from linx_spec.plan import rlimits as plan_rlimits
from linx_spec.plan.rlimits import INFINITY, RlimitPlan, RlimitsPlan, resource_number
from linx_spec.spec.rlimits import RLIMITS

HEADER = Path("/usr/include/asm-generic/resource.h")
NAMES = ["as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
         "rtprio", "rttime", "sigpending", "stack"]


def spec_of(rlimits: str):
    return load_text(f"version: 1\nprocess: {{command: [/bin/true]}}\nrlimits:\n{rlimits}\n", "rl.yaml")


def plan_of(rlimits: str):
    return build_plan(spec_of(rlimits)).rlimits


@pytest.fixture
def host(monkeypatch):
    """A root runner with CAP_SYS_RESOURCE whose own limits are nofile 1024:4096, unlimited otherwise."""
    import linx_spec.plan.caps as caps

    monkeypatch.setattr(caps.os, "geteuid", lambda: 0)
    monkeypatch.setattr(caps, "own_caps", lambda which="CapEff": (1 << 41) - 1)
    limits = {resource.RLIMIT_NOFILE: (1024, 4096)}
    monkeypatch.setattr(plan_rlimits.resource, "getrlimit", lambda r: limits.get(r, (INFINITY, INFINITY)))
    monkeypatch.setattr(plan_rlimits, "_nr_open", lambda: 1048576)
    return monkeypatch


# --- the table -----------------------------------------------------------------

def test_every_rlimit_has_a_name():
    assert sorted(RLIMITS) == sorted(NAMES)
    assert sorted(n for n, _k, _w in RLIMITS.values()) == list(range(16))


@pytest.mark.skipif(not HEADER.exists(), reason="asm-generic/resource.h not installed (linux-libc-dev)")
def test_table_matches_the_kernel_header():
    found = dict(re.findall(r"#\s*define\s+RLIMIT_([A-Z]+)\s+(\d+)", HEADER.read_text()))
    assert {k.lower(): int(v) for k, v in found.items()} == {n: RLIMITS[n][0] for n in NAMES}


def test_table_matches_the_resource_module():
    for name in NAMES:
        const = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if const is not None:  # Python has no RLIMIT_LOCKS
            assert const == RLIMITS[name][0] == resource_number(name), name


# --- spec values ---------------------------------------------------------------

@pytest.mark.parametrize("text,soft,hard", [
    ("nofile: 1024", 1024, 1024),
    ("nproc: {soft: 100, hard: 200}", 100, 200),
    ("as: 1Gi", 2**30, 2**30),
    ("stack: {soft: 8Mi}", 8 * 2**20, None),
    ("memlock: {hard: 64Ki}", None, 65536),
    ("core: unlimited", "unlimited", "unlimited"),
    ("core: {soft: 0, hard: Unlimited}", 0, "unlimited"),
    ("cpu: 1m30s", 90, 90),
    ("cpu: 10", 10, 10),
    ("rttime: 500ms", 500_000, 500_000),
    ("nice: 0", 0, 0),
    ("rtprio: {soft: 10, hard: 99}", 10, 99),
])
def test_values(text, soft, hard):
    (limit,) = spec_of("  " + text).rlimits.limits().values()
    assert (limit.soft, limit.hard) == (soft, hard)


@pytest.mark.parametrize("text,message", [
    ("nofile: {soft: 10, hard: 5}", "soft limit 10 is above the hard limit 5"),
    ("nofile: {soft: unlimited, hard: 5}", "above the hard limit"),
    ("nofile: -1", "must not be negative"),
    ("nofile: 1Ki", "whole number"),
    ("nofile: true", "whole number"),
    ("nice: 41", "0 to 40"),
    ("rtprio: 100", "0 to 99"),
    ("as: 1X", "not a size"),
    ("cpu: 1.5", "whole seconds"),
    ("cpu: 2h3x", "not a duration"),
    ("nofile: {sotf: 1}", "unknown key `sotf`"),
    ("nofile: {}", "give `soft`, `hard` or both"),
    ("as: 16Ei", "too large"),
    ("oom_score_adj: 1001", "less than or equal to 1000"),
    ("nofil: 3", "did you mean `nofile`"),
])
def test_bad_values_point_at_the_limit(text, message):
    with pytest.raises(SpecError) as info:
        spec_of("  " + text)
    (problem,) = info.value.problems
    assert problem.line == 4 and problem.field.startswith("rlimits.")
    assert message in problem.message, problem


# --- the plan ------------------------------------------------------------------

def test_plan_resolves_numbers_and_inherited_sides(host):
    plan = plan_of("  nofile: {soft: 100}\n  core: unlimited\n  stack: {hard: 8Mi}\n  cpu: {soft: 5, hard: 10}\n"
                   "  oom_score_adj: 500")
    got = {lim.name: (lim.resource, lim.soft, lim.hard) for lim in plan.limits}
    assert got == {
        "nofile": (resource.RLIMIT_NOFILE, 100, 4096),  # hard inherited
        "core": (resource.RLIMIT_CORE, INFINITY, INFINITY),
        "stack": (resource.RLIMIT_STACK, 8 * 2**20, 8 * 2**20),  # inherited unlimited soft lowered under hard
        "cpu": (resource.RLIMIT_CPU, 5, 10),
    }
    assert plan.oom_score_adj == 500
    assert plan.describe() == {"nofile": "100:4096", "core": "unlimited:unlimited", "stack": "8388608:8388608",
                               "cpu": "5:10", "oom_score_adj": 500}


def test_soft_above_the_inherited_hard_fails_at_plan_time(host):
    with pytest.raises(PlanError) as info:
        plan_of("  nofile: {soft: 5000}")
    assert info.value.field == "rlimits.nofile.soft"
    assert "above the hard limit 4096 the workload inherits" in info.value.message


def test_raising_a_hard_limit_needs_cap_sys_resource(host):
    import linx_spec.plan.caps as caps

    assert plan_of("  nofile: 8192").limits[0].hard == 8192  # privileged: fine
    host.setattr(caps, "own_caps", lambda which="CapEff": 0)
    with pytest.raises(PlanError, match="needs CAP_SYS_RESOURCE") as info:
        plan_of("  nofile: 8192")
    assert info.value.field == "rlimits.nofile"
    assert plan_of("  nofile: 2048").limits[0].hard == 2048  # lowering never needs privileges


@pytest.mark.parametrize("value", ["2000000", "unlimited"])
def test_nofile_is_capped_by_nr_open(host, value):
    with pytest.raises(PlanError, match="fs.nr_open = 1048576"):
        plan_of(f"  nofile: {value}")


def test_plan_steps_show_the_rlimits_step_only_when_asked(host):
    from linx_spec.steps import active_steps

    assert "rlimits" not in [s.name for s in active_steps(build_plan(load_text(
        "version: 1\nprocess: {command: [/bin/true]}\n")))]
    plan = build_plan(spec_of("  nofile: 64"))
    step = next(s for s in active_steps(plan) if s.name == "rlimits")
    assert step.side == "host" and step.args(plan) == {"nofile": "64:64"}


# --- apply_from_host on a real child of ours -----------------------------------

class Ctx:
    def __init__(self, pid: int):
        self.pid = pid


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_prlimit_and_oom_score_adj_reach_the_child(child):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want_hard = min(hard, 512) if hard != INFINITY else 512
    plan = RlimitsPlan((RlimitPlan("nofile", resource.RLIMIT_NOFILE, 100, want_hard),
                        RlimitPlan("core", resource.RLIMIT_CORE, 0, 0)), oom_score_adj=700)
    apply_from_host(plan, Ctx(child.pid))
    assert resource.prlimit(child.pid, resource.RLIMIT_NOFILE) == (100, want_hard)
    limits = Path(f"/proc/{child.pid}/limits").read_text()
    assert re.search(rf"^Max open files\s+100\s+{want_hard}\s", limits, re.M), limits
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
    assert Path(f"/proc/{child.pid}/oom_score_adj").read_text().strip() == "700"


def test_prlimit_failure_is_a_step_error(child):
    child.kill()
    child.wait()
    plan = RlimitsPlan((RlimitPlan("nofile", resource.RLIMIT_NOFILE, 10, 10),))
    with pytest.raises(StepError) as info:
        with host_errors("rlimits"):  # the runner's boundary of the step
            apply_from_host(plan, Ctx(child.pid))
    assert str(info.value) == f"rlimits (host): prlimit nofile 10:10 in pid {child.pid}: ESRCH (No such process)"
