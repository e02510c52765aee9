"""The stages stay apart (docs/architecture.md): checked on the source, not trusted.

- no import circle in the package through module-level imports, and none at all
  (imports inside functions included) through the plan stage, host/, steps.py,
  protocol.py or exec.py;
- the plan stage imports nothing from host/ (data flows Spec -> Plan -> steps);
- no Plan field is typed Any, and nothing looks up behaviour on a plan part with getattr.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import typing

import pytest

from importgraph import MODULES, cycles
from importgraph import imports as _imports
from linx_spec import stored


def _ours(module: str) -> bool:
    return module.startswith(("linx_spec.plan", "linx_spec.host")) or module in (
        "linx_spec.steps", "linx_spec.protocol", "linx_spec.exec")


def test_the_module_level_import_graph_has_no_circle():
    assert cycles({m: _imports(m, top_only=True) for m in MODULES}) == []


def test_no_circle_through_the_plan_stage_or_the_host_steps_even_counting_lazy_imports():
    found = cycles({m: _imports(m, top_only=False) for m in MODULES})
    assert [c for c in found if any(_ours(m) for m in c)] == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_plan_stage_imports_nothing_from_host():
    plan_modules = [m for m in MODULES if m == "linx_spec.plan" or m.startswith("linx_spec.plan.")]
    assert len(plan_modules) >= 12
    for m in plan_modules:
        assert not {i for i in _imports(m, top_only=False) if i.startswith("linx_spec.host")}, m


def test_spec_holds_models_only():
    for m in MODULES:
        if m.startswith("linx_spec.spec"):
            assert not {i for i in _imports(m, top_only=False)
                        if i.startswith(("linx_spec.plan", "linx_spec.host"))}, m


PLAN_TYPES = ["Plan", "ProcessPlan", "IdmapPlan", "CapsPlan", "CgroupPlan", "JoinCgroupsPlan", "NetworkPlan",
              "MountsPlan", "RlimitsPlan", "SeccompPlan", "StdioPlan", "StreamPlan", "LifecyclePlan"]


@pytest.mark.parametrize("name", PLAN_TYPES)
def test_plan_fields_are_concretely_typed(name):
    plan = importlib.import_module("linx_spec.plan")
    cls = getattr(plan, name)
    hints = stored.field_types(cls)  # as a cached plan is read back (part types named lazily)
    seen: set[type] = set()

    def check(tp, where: str) -> None:
        assert tp is not typing.Any, where
        for arg in typing.get_args(tp):
            check(arg, where)
        if dataclasses.is_dataclass(tp) and tp not in seen:
            seen.add(tp)
            sub = stored.field_types(tp)
            for f in dataclasses.fields(tp):
                check(sub[f.name], f"{where} -> {tp.__name__}.{f.name}")

    for f in dataclasses.fields(cls):
        check(hints[f.name], f"{name}.{f.name}")


def test_no_getattr_on_a_plan_part():
    files = [p for m, p in MODULES.items() if _ours(m) or m == "linx_spec.runner"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                                                                                                   "hasattr"):
                assert "plan" not in ast.unparse(node.args[0]).lower(), f"{path.name}: {ast.unparse(node)}"
