"""Time namespace offsets (issue 20): the spec's bounds, the plan's numbers,
the PROCEED attributes and the step's place in the checkpoint order."""

from __future__ import annotations

import pytest

from linx_spec import build_plan, load_text
from linx_spec import protocol as P
from linx_spec.errors import SpecError
from linx_spec.steps import active_steps, child_order

BASE = "version: 1\nprocess: {command: [/bin/true]}\n"


def test_offsets_resolve_to_nanoseconds_and_travel_in_proceed():
    plan = build_plan(load_text(BASE + "namespaces: [time]\ntime: {monotonic: 3600s, boottime: 24h}\n"))
    assert plan.time_offsets_ns == (3600 * 10**9, 86400 * 10**9)
    attrs = dict(P.proceed_attrs(plan, child_order(plan)))
    assert attrs[P.A.TIME_MONOTONIC] == 3600 * 10**9 and attrs[P.A.TIME_BOOTTIME] == 86400 * 10**9
    names = [s.name for s in active_steps(plan) if s.side == "child"]
    assert names.index("ns_root") < names.index("time") < names.index("user")


def test_a_new_time_namespace_without_offsets_still_gets_the_step():
    plan = build_plan(load_text(BASE + "namespaces: [time]\n"))
    assert plan.time_offsets_ns is None
    assert "time" in [s.name for s in active_steps(plan)]
    assert P.A.TIME_MONOTONIC not in dict(P.proceed_attrs(plan, child_order(plan)))


@pytest.mark.parametrize("extra,message", [
    ("namespaces: [pid]\ntime: {boottime: 24h}\n", "add `time` to namespaces"),
    ("namespaces: [time]\ntime: {boottime: 200y}\n", "time.boottime"),
    ("namespaces: [time]\ntime: {monotonic: -5s}\n", "time.monotonic"),
    ("namespaces: [time]\ntime: {realtime: 5s}\n", "realtime"),
])
def test_bad_offsets_are_spec_errors(extra, message):
    with pytest.raises(SpecError, match=message):
        load_text(BASE + extra)


def test_changed_offsets_need_a_restart():
    from linx_spec.live import restart_fields

    old = build_plan(load_text(BASE + "namespaces: [time]\ntime: {monotonic: 1h}\n"))
    new = build_plan(load_text(BASE + "namespaces: [time]\ntime: {monotonic: 2h}\n"))
    assert restart_fields(old, new) == ["time"]
