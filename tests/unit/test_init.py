"""process.init / `apply --init` (issue 20): the spec field, the plan's checks
(a new pid namespace; a seccomp filter that lets pid 1 fork, wait, forward
signals) and the step it adds.  The init's behaviour is in
tests/integration/test_init.py."""

from __future__ import annotations

import pytest

from linx_spec import PlanError, build_plan, load_text
from linx_spec.seccomp import _libseccomp as lib
from linx_spec.steps import active_steps, child_order

needs_libseccomp = pytest.mark.skipif(not lib.available(), reason="needs libseccomp.so.2")

BASE = "version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true], init: %s}\n"


def plan_of(text: str):
    return build_plan(load_text(text, "t.yaml"), source="t.yaml")


def test_init_is_off_by_default_and_adds_the_init_step_between_seccomp_and_exec():
    off = plan_of("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n")
    assert off.process.init is False and "init" not in [s.name for s in active_steps(off)]
    on = plan_of(BASE % "true")
    assert on.process.init is True
    assert [s.name for s in active_steps(on)][-2:] == ["init", "exec"]
    assert child_order(on)[-1] == 35  # the agent runs it last before exec


def test_init_needs_a_new_pid_namespace():
    with pytest.raises(PlanError, match="new pid namespace") as exc:
        plan_of("version: 1\nnamespaces: [user, net]\nprocess: {command: [/bin/true], init: true}\n")
    assert exc.value.field == "process.init" and exc.value.remedy


def test_init_rejects_a_non_boolean():
    from linx_spec import SpecError

    with pytest.raises(SpecError, match="process.init"):
        load_text(BASE % "sometimes", "t.yaml")


@needs_libseccomp
@pytest.mark.parametrize("rule, says", [
    ("{syscalls: [wait4], action: errno EPERM}", "wait4"),
    ("{syscalls: [kill], action: kill}", "kill"),
    ("{syscalls: [rt_sigtimedwait], action: errno ENOSYS}", "rt_sigtimedwait"),
    ("{syscalls: [clone], action: errno EPERM}", "clone"),
    ("{syscalls: [set_robust_list], action: kill}", "set_robust_list"),
])
def test_a_filter_that_would_break_the_init_is_a_plan_error_naming_the_rule(rule, says):
    text = BASE % "true" + f"seccomp: {{default: allow, rules: [{rule}]}}\n"
    with pytest.raises(PlanError, match=says) as exc:
        plan_of(text)
    assert exc.value.field == "process.init"
    assert "seccomp.rules[0]" in str(exc.value.message)
    # The same filter without the init is fine: only pid 1 needs these.
    plan_of(text.replace("init: true", "init: false"))


@needs_libseccomp
def test_tolerable_and_common_filters_pass_with_the_init():
    # glibc ignores a refused set_robust_list; @system-service has all the init needs.
    plan_of(BASE % "true" + "seccomp: {default: allow, rules: [{syscalls: [set_robust_list], action: errno ENOSYS}]}\n")
    plan_of(BASE % "true" + "seccomp: {default: errno EPERM, rules: [{syscalls: ['@system-service'], action: allow}]}\n")


def test_apply_init_flag_is_the_set_shorthand(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from linx_spec import commands
    from linx_spec.cli import app

    seen = {}
    monkeypatch.setattr(commands, "apply_plan", lambda plan, **kw: seen.setdefault("init", plan.process.init) and 0)
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [user, pid]\nprocess: {command: [/bin/true]}\n")
    CliRunner().invoke(app, ["apply", "--init", str(spec)])
    assert seen == {"init": True}
    seen.clear()
    CliRunner().invoke(app, ["apply", str(spec)])
    assert seen == {"init": False}
