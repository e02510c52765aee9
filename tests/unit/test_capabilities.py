"""Capabilities: names, the table against its source, the spec forms, and the plan
(the masks the child sets, which must equal what execve leaves the workload)."""

from __future__ import annotations

import dataclasses

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linx_spec import PlanError, SpecError, build_plan, load_text
from linx_spec.protocol import A, proceed_attrs
from linx_spec.plan import caps as caps_mod
from linx_spec.plan.caps import resolve
from linx_spec.spec.capabilities import (
    CAPABILITIES,
    DEFAULT_CAPS,
    mask_names,
    names_mask,
    parse_name,
)
from linx_spec.steps import active_steps, child_order

HEADER = Path("/usr/include/linux/capability.h")
BIT = {name: 1 << n for name, n in CAPABILITIES.items()}


def spec_of(caps: str = "", uid: int = 0, extra: str = ""):
    text = f"version: 1\nprocess:\n  command: [/bin/true]\n  user: {{uid: {uid}, gid: {uid}}}\n{caps}\n{extra}"
    return load_text(text, "caps.yaml")


def plan_of(caps: str = "", uid: int = 0, extra: str = ""):
    return build_plan(spec_of(caps, uid, extra))


@pytest.fixture
def host(monkeypatch):
    """A root runner on a kernel whose last capability is 40, with a full bounding set."""
    monkeypatch.setattr(caps_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(caps_mod, "kernel_last_cap", lambda: 40)
    monkeypatch.setattr(caps_mod, "own_caps", lambda which="CapEff": (1 << 41) - 1)
    return monkeypatch


# --- the table -----------------------------------------------------------------

@pytest.mark.skipif(not HEADER.exists(), reason="linux/capability.h not installed (linux-libc-dev)")
def test_table_matches_the_kernel_header():
    found = dict(re.findall(r"^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", HEADER.read_text(), re.M))
    header = {name: int(n) for name, n in found.items()}
    assert header == CAPABILITIES


def test_table_covers_the_running_kernel():
    last = caps_mod.kernel_last_cap()
    assert set(range(last + 1)) <= set(CAPABILITIES.values())
    assert sorted(CAPABILITIES.values()) == list(range(41))
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40


# --- names ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["net_bind_service", "CAP_NET_BIND_SERVICE", "Net_Bind_Service",
                                  "cap_net_bind_service", " NET_BIND_SERVICE "])
def test_names_are_case_insensitive_and_cap_prefix_optional(text):
    assert parse_name(text) == "CAP_NET_BIND_SERVICE"


def test_all_is_a_name():
    assert parse_name("all") == parse_name("ALL") == "ALL"


@pytest.mark.parametrize("text,suggestion", [("net_bind_servic", "net_bind_service"), ("CAP_SYSADMIN", "sys_admin"),
                                             ("chwon", "chown")])
def test_unknown_names_suggest_the_nearest(text, suggestion):
    with pytest.raises(ValueError, match=f"did you mean `{suggestion}`"):
        parse_name(text)


def test_unknown_name_in_a_spec_points_at_the_item():
    with pytest.raises(SpecError) as info:
        spec_of("capabilities:\n  keep: [chown, net_bind_servic]")
    (problem,) = info.value.problems
    assert problem.field == "capabilities.keep[1]"
    assert (problem.line, problem.column) == (6, 17)
    assert "did you mean `net_bind_service`" in problem.message


def test_mask_names_round_trips():
    names = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
    mask = names_mask(names)
    assert mask == 1 | 1 << 10 | 1 << 21 | 1 << 40
    assert mask_names(mask) == names
    assert mask_names(0) == []


# --- the spec: forms and the rules that hold whatever the identity -------------

@pytest.mark.parametrize("caps,field,message", [
    ("capabilities: {}", "capabilities", "list the capabilities to keep"),
    ("capabilities: {keep: [chown], bounding: [chown]}", "capabilities.bounding", "`keep` is the simple form"),
    ("capabilities: {bounding: [chown], effective: [kill]}", "capabilities.effective", "kill not in bounding"),
    ("capabilities: {permitted: [chown], effective: [chown, kill]}", "capabilities.effective",
     "kill not in permitted"),
    ("capabilities: {permitted: [kill], inheritable: [kill], ambient: [kill, chown]}", "capabilities.ambient",
     "chown not in permitted"),
    ("capabilities: {permitted: [kill], ambient: [kill]}", "capabilities.ambient", "kill not in inheritable"),
    ("capabilities: {bounding: [chown], inheritable: [kill]}", "capabilities.inheritable", "kill not in bounding"),
    ("capabilities: {keep: net_bind_service}", "capabilities.keep", "valid list"),
])
def test_inconsistent_sets_are_spec_errors_at_the_set(caps, field, message):
    with pytest.raises(SpecError) as info:
        spec_of(caps)
    assert any(p.field == field and message in p.message for p in info.value.problems), info.value


def test_names_are_normalized_in_the_spec():
    spec = spec_of("capabilities: {keep: [net_bind_service, CAP_chown, all]}")
    assert spec.capabilities.keep == ["CAP_NET_BIND_SERVICE", "CAP_CHOWN", "ALL"]


# --- the plan ------------------------------------------------------------------

def masks(plan):
    c = plan.capabilities
    return c.bounding, c.permitted, c.effective, c.inheritable, c.ambient


def test_default_root_gets_dockers_set(host):
    d = sum(BIT[n] for n in DEFAULT_CAPS)
    assert len(DEFAULT_CAPS) == 14
    assert masks(plan_of()) == (d, d, d, 0, 0)
    assert not plan_of().capabilities.bounding & BIT["CAP_SYS_ADMIN"]


def test_default_non_root_is_bounded_and_has_nothing(host):
    d = sum(BIT[n] for n in DEFAULT_CAPS)
    assert masks(plan_of(uid=1000)) == (d, 0, 0, 0, 0)


def test_default_keeps_the_capability_steps_active(host):
    names = [s.name for s in active_steps(plan_of())]
    assert names.index("bounding") < names.index("user") < names.index("capabilities") < names.index("exec")


def test_keep_for_root_is_bounding_permitted_effective(host):
    k = BIT["CAP_NET_BIND_SERVICE"] | BIT["CAP_CHOWN"]
    assert masks(plan_of("capabilities: {keep: [net_bind_service, CAP_CHOWN]}")) == (k, k, k, 0, 0)


def test_keep_for_non_root_is_also_inheritable_and_ambient(host):
    k = BIT["CAP_NET_BIND_SERVICE"]
    assert masks(plan_of("capabilities: {keep: [net_bind_service]}", uid=1000)) == (k, k, k, k, k)


def test_keep_nothing_drops_everything(host):
    assert masks(plan_of("capabilities: {keep: []}")) == (0, 0, 0, 0, 0)


def test_keep_all_is_every_capability_of_this_kernel(host):
    host.setattr(caps_mod, "kernel_last_cap", lambda: 37)
    full = (1 << 38) - 1
    assert masks(plan_of("capabilities: {keep: [all]}")) == (full, full, full, 0, 0)


def test_full_form_bounding_defaults_to_the_union(host):
    plan = plan_of("capabilities: {inheritable: [kill], ambient: [kill], bounding: [kill, chown]}", uid=7)
    k, c = BIT["CAP_KILL"], BIT["CAP_CHOWN"]
    assert masks(plan) == (k | c, k, k, k, k)
    plan = plan_of("capabilities: {inheritable: [kill, chown], ambient: [kill]}", uid=7)
    assert masks(plan) == (k | c, k, k, k | c, k)


def test_full_form_root_permitted_and_effective_default_to_bounding(host):
    k, c = BIT["CAP_KILL"], BIT["CAP_CHOWN"]
    plan = plan_of("capabilities: {bounding: [kill, chown], inheritable: [chown], ambient: [chown]}")
    assert masks(plan) == (k | c, k | c, k | c, c, c)


@pytest.mark.parametrize("caps,uid,field,message", [
    # uid 0 execs with permitted = effective = bounding: a smaller set would be a lie.
    ("capabilities: {bounding: [chown, kill], permitted: [chown]}", 0, "capabilities.permitted",
     "uid 0 execs with permitted = effective = the bounding set"),
    ("capabilities: {bounding: [chown, kill], effective: [chown]}", 0, "capabilities.effective",
     "uid 0 execs"),
    # Any other uid execs with permitted = effective = ambient.
    ("capabilities: {bounding: [chown], permitted: [chown], effective: [chown]}", 1000, "capabilities.permitted",
     "execve sets permitted and effective to the ambient set"),
    ("capabilities: {permitted: [chown, kill], inheritable: [chown], ambient: [chown]}", 1000,
     "capabilities.permitted", "ambient set ([chown]"),
])
def test_sets_execve_would_not_keep_fail_at_plan_time(host, caps, uid, field, message):
    with pytest.raises(PlanError) as info:
        plan_of(caps, uid=uid)
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.remedy


def test_a_capability_the_kernel_lacks_fails_at_plan_time(host):
    host.setattr(caps_mod, "kernel_last_cap", lambda: 37)
    with pytest.raises(PlanError, match="this kernel does not know CAP_BPF") as info:
        plan_of("capabilities: {keep: [chown, bpf]}")
    assert info.value.field == "capabilities.keep"


def test_a_capability_the_runner_lacks_fails_at_plan_time_and_all_leaves_it_out(host):
    no_resource = ((1 << 41) - 1) & ~BIT["CAP_SYS_RESOURCE"]
    host.setattr(caps_mod, "own_caps", lambda which="CapEff": no_resource)
    with pytest.raises(PlanError, match="not in the runner's own bounding set") as info:
        plan_of("capabilities:\n  bounding: [sys_resource, chown]")
    assert info.value.field == "capabilities.bounding"
    assert plan_of("capabilities: {keep: [all]}").capabilities.bounding == no_resource
    # A new user namespace has every capability of its own.
    plan = plan_of("capabilities: {keep: [all]}", extra="namespaces: [user, pid]")
    assert plan.capabilities.bounding == (1 << 41) - 1


def test_unprivileged_runner_without_user_namespace(host):
    host.setattr(caps_mod.os, "geteuid", lambda: 1000)
    spec = spec_of("", extra="namespaces: []")
    assert resolve(spec.capabilities, spec) is None  # nothing to drop: left alone
    spec = spec_of("capabilities: {keep: []}", extra="namespaces: []")
    with pytest.raises(PlanError, match="needs root, or a new user namespace") as info:
        resolve(spec.capabilities, spec)
    assert info.value.field == "capabilities"
    spec = spec_of("capabilities: {keep: [kill]}", extra="namespaces: [user]")
    assert resolve(spec.capabilities, spec).bounding == BIT["CAP_KILL"]


def test_seccomp_without_no_new_privs_goes_in_before_the_capabilities_drop(host):
    """A privileged filter install (seccomp(2)) while every capability is still held,
    as runc; the keyring step moves up with it (Docker's profile forbids keyctl)."""
    spec = spec_of("capabilities: {keep: [kill]}", extra="no_new_privs: false")
    spec = spec.model_copy(update={"seccomp": object()})  # any filter: only its presence matters here
    assert resolve(spec.capabilities, spec).effective == BIT["CAP_KILL"]  # nothing kept for it
    plan = plan_of()
    early = dataclasses.replace(plan, seccomp=object(), no_new_privs=False)
    names = [s.name for s in active_steps(early)]
    assert names.index("mounts") < names.index("keyring") < names.index("seccomp") < names.index("bounding") \
        < names.index("user") < names.index("capabilities") < names.index("exec")
    late = dataclasses.replace(plan, seccomp=object(), no_new_privs=True)
    names = [s.name for s in active_steps(late)]
    assert names.index("capabilities") < names.index("keyring") < names.index("no_new_privs") \
        < names.index("seccomp") < names.index("exec")


def test_hello_spec_still_plans(host):
    from conftest import REPO
    from linx_spec import load_file

    plan = build_plan(load_file(REPO / "specs" / "hello.yaml"))
    d = sum(BIT[n] for n in DEFAULT_CAPS)
    assert masks(plan) == (d, d, d, 0, 0)


def test_masks_reach_the_proceed_frame(host):
    plan = plan_of("capabilities: {keep: [net_bind_service]}", uid=1000)
    attrs = dict(proceed_attrs(plan, child_order(plan)))
    k = BIT["CAP_NET_BIND_SERVICE"]
    assert [attrs[a] for a in (A.CAP_BOUNDING, A.CAP_PERMITTED, A.CAP_EFFECTIVE, A.CAP_INHERITABLE,
                               A.CAP_AMBIENT)] == [k] * 5


def test_plan_prints_names(host):
    plan = plan_of("capabilities: {keep: [net_bind_service]}", uid=1000)
    args = {s.name: s.args(plan) for s in active_steps(plan)}
    assert args["bounding"] == {"keep": ["CAP_NET_BIND_SERVICE"]}
    assert args["capabilities"]["ambient"] == ["CAP_NET_BIND_SERVICE"]


# --- the property: what the plan says is what execve leaves ----------------------

def after_execve(bounding: int, permitted: int, inheritable: int, ambient: int, uid: int) -> tuple[int, int, int]:
    """capabilities(7) for a program without file capabilities, not set-user-ID:
    returns (permitted, effective, ambient) after execve."""
    if uid == 0:
        p = bounding | inheritable | ambient  # root: the file's sets count as all ones
        return p, p, ambient
    return ambient, ambient, ambient


cap_names = st.lists(st.sampled_from(sorted(CAPABILITIES)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(b=cap_names, i=cap_names, a=cap_names, uid=st.sampled_from([0, 1000]), keep=st.booleans())
def test_plans_satisfy_the_kernel_and_survive_execve(b, i, a, uid, keep):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(caps_mod.os, "geteuid", lambda: 0)
        mp.setattr(caps_mod, "kernel_last_cap", lambda: 40)
        mp.setattr(caps_mod, "own_caps", lambda which="CapEff": (1 << 41) - 1)
        if keep:
            text = f"capabilities: {{keep: [{', '.join(b)}]}}"
        else:
            # Build a consistent full form: ambient within inheritable within bounding.
            inh = sorted(set(i) | set(a))
            bnd = sorted(set(b) | set(inh))
            text = f"capabilities: {{bounding: [{', '.join(bnd)}], inheritable: [{', '.join(inh)}], " \
                   f"ambient: [{', '.join(a)}]}}"
        c = plan_of(text, uid=uid).capabilities
    # The kernel's invariants, as capset(2) and PR_CAP_AMBIENT_RAISE enforce them.
    assert c.effective & ~c.permitted == 0
    assert c.ambient & ~(c.permitted & c.inheritable) == 0
    assert c.inheritable & ~c.bounding == 0
    assert c.permitted & ~c.bounding == 0
    # And execve changes nothing the plan declares.
    assert after_execve(c.bounding, c.permitted, c.inheritable, c.ambient, uid) == (c.permitted, c.effective,
                                                                                     c.ambient)
