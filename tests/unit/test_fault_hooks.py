"""LINX_FAULT (the reliability tests' hook) acts inside the production frame
sequence: the runner talks to the agent exactly as without it (HELLO and SPAWN
pipelined), and the agent gets the ids of the steps it runs itself."""

from __future__ import annotations

import importlib

import pytest

from linx_spec import build_plan, load_text
from linx_spec.agent import End, _fault_env
from linx_spec.steps import STEP_BY_NAME

runmod = importlib.import_module("linx_spec.runner")
SPEC = "version: 1\nnamespaces: [user, pid, uts]\nhostname: h\nprocess: {command: [/bin/true]}\n"


def _calls(monkeypatch, fault: str | None) -> list[str]:
    log: list[str] = []

    class FakeAgent:
        def __init__(self, **_kw):
            log.append("start")

        def hello(self):
            log.append("hello")

        def spawn(self, *a):
            log.append("spawn")
            return 777

        def hello_spawn(self, *a):
            log.append("hello_spawn")
            return 777

        def proceed(self, attrs):
            log.append("proceed")
            return []

        def wait(self):
            log.append("wait")
            return End(0, None)

        def abort(self):
            log.append("abort")

        def hangup(self):
            log.append("hangup")

        def close(self):
            log.append("close")

    monkeypatch.setattr(runmod, "Agent", FakeAgent)
    monkeypatch.setattr(runmod, "_host_step", lambda name: lambda plan, ctx: log.append(f"host:{name}"))
    if fault:
        monkeypatch.setenv("LINX_FAULT", fault)
    else:
        monkeypatch.delenv("LINX_FAULT", raising=False)
    runmod.run(build_plan(load_text(SPEC)))
    return log


@pytest.mark.parametrize("fault", ["fail:spawn", "pause:spawn", "fail:hostname", "pause:session", "fail:exec"])
def test_an_agent_side_fault_does_not_change_the_frame_sequence(monkeypatch, fault):
    plain = _calls(monkeypatch, None)
    assert plain[:2] == ["start", "hello_spawn"]
    assert _calls(monkeypatch, fault) == plain


@pytest.mark.parametrize("name", ["spawn", "session", "ns_root", "mounts", "signals", "exec"])
def test_the_agent_gets_the_ids_of_its_own_steps(name):
    for kind in ("fail", "pause"):
        env = _fault_env({"LINX_FAULT": f"{kind}:{name}", "KEEP": "1"})
        assert env == {"LINX_FAULT": f"{kind}:{STEP_BY_NAME[name].id}", "KEEP": "1"}


@pytest.mark.parametrize("value", ["fail:cgroup", "pause:idmap", "fail:nosuchstep", "garbage"])
def test_host_steps_and_unknown_names_stay_with_the_runner(value):
    assert "LINX_FAULT" not in _fault_env({"LINX_FAULT": value})


def test_the_agent_gets_none_of_the_callers_environment(agent_bin, monkeypatch):
    from linx_spec.agent import Agent

    monkeypatch.setenv("LINX_TEST_SECRET", "s3cret")
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent.so")
    monkeypatch.setenv("UBSAN_OPTIONS", "halt_on_error=1")
    monkeypatch.delenv("LINX_FAULT", raising=False)
    with Agent(path=str(agent_bin)) as agent:
        assert agent.hello() == agent.pid
        with open(f"/proc/{agent.pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    assert [v for v in env if v] == [b"UBSAN_OPTIONS=halt_on_error=1"]
