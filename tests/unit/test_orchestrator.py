"""The orchestrator (runner.py, lifecycle.py) with a fake agent and fake host steps that record
the interleaving, and a failure injected at every position: the child never
runs, and what was created is undone in reverse."""

from __future__ import annotations

import pytest

import importlib

runmod = importlib.import_module("linx_spec.runner")
from linx_spec import build_plan, load_text
from linx_spec.agent import End
from linx_spec.errors import StepError
from linx_spec.steps import STEPS

SPEC = "version: 1\nnamespaces: [user, pid, uts]\nhostname: h\nprocess: {command: [/bin/true]}\n"
HOST_STEPS = ["idmap", "cgroup", "network", "rlimits"]


class FakePlan:
    """A real plan with every host step switched on (their bodies are fakes)."""

    def __init__(self):
        self._plan = build_plan(load_text(SPEC))

    def get(self):
        import dataclasses

        from types import SimpleNamespace

        network = SimpleNamespace(needs_netlink=True, sysctls=(), loopback=True)
        return dataclasses.replace(self._plan, cgroup=object(), network=network, rlimits=object())


def make_fakes(log: list, fail_at: str | None):
    class FakeAgent:
        def __init__(self, **_kw):
            log.append("agent:start")

        def _maybe(self, name):
            log.append(f"agent:{name}")
            if fail_at == f"agent:{name}":
                raise StepError(name, "agent", 1, "injected")

        def hello(self):
            self._maybe("hello")
            return 4242

        def spawn(self, flags, joins, grace_ms):
            self._maybe("spawn")
            return 777

        def hello_spawn(self, flags, joins, grace_ms):
            self.hello()
            return self.spawn(flags, joins, grace_ms)

        def track_cgroup(self, path, remove_only=False):
            log.append(f"agent:track {path}")

        def proceed(self, attrs):
            self._maybe("proceed")
            return [(20, 1000), (28, 2000)]

        def abort(self):
            log.append("agent:abort")

        def signal(self, signo):
            log.append(f"agent:signal {signo}")

        def wait(self):
            self._maybe("wait")
            return End(0, None)

        def hangup(self):
            log.append("agent:hangup")

        def close(self):
            log.append("agent:close")

    def host_step(name):
        def apply(plan, ctx):
            log.append(f"host:{name}")
            ctx.on_undo(name, lambda: log.append(f"undo:{name}"))
            if name == "cgroup":
                ctx.track_cgroup("/sys/fs/cgroup/x/linx-test")
                ctx.after_exit(lambda result: log.append("collect:cgroup"))
            if fail_at == f"host:{name}":
                raise StepError(name, "host", 22, "injected")

        return apply

    return FakeAgent, host_step


def run_with(monkeypatch, fail_at=None):
    log: list[str] = []
    agent_cls, host_step = make_fakes(log, fail_at)
    monkeypatch.setattr(runmod, "Agent", agent_cls)
    monkeypatch.setattr(runmod, "_host_step", host_step)
    plan = FakePlan().get()
    try:
        result = runmod.run(plan)
    except StepError as exc:
        return log, exc
    return log, result


def test_happy_path_interleaving(monkeypatch):
    log, result = run_with(monkeypatch)
    assert log == [
        "agent:start", "agent:hello", "agent:spawn",
        "host:idmap", "host:cgroup", "agent:track /sys/fs/cgroup/x/linx-test", "host:network", "host:rlimits",
        "agent:proceed", "agent:wait", "collect:cgroup",
        # The channel closed first (the agent exits meanwhile), reaped after the undo.
        "agent:hangup", "undo:rlimits", "undo:network", "undo:cgroup", "undo:idmap", "agent:close",
    ]
    assert result.exit_code == 0
    assert [t.step for t in result.timings] == ["spawn", *HOST_STEPS, "hostname", "exec"]


POSITIONS = ["agent:hello", "agent:spawn", *[f"host:{s}" for s in HOST_STEPS], "agent:proceed"]


@pytest.mark.parametrize("fail_at", POSITIONS)
def test_failure_at_every_position_rolls_back_in_reverse(monkeypatch, fail_at):
    log, exc = run_with(monkeypatch, fail_at)
    assert isinstance(exc, StepError)
    assert "agent:wait" not in log  # the workload never ran
    done = [e.split(":")[1] for e in log if e.startswith("host:")]
    undone = [e.split(":")[1] for e in log if e.startswith("undo:")]
    assert undone == list(reversed(done)), log
    assert log.count("agent:close") == 1
    if fail_at.startswith("host:") or fail_at == "agent:proceed":
        assert "agent:abort" in log
        # the parked child is aborted before the host side is undone
        assert log.index("agent:abort") < min((log.index(e) for e in log if e.startswith("undo:")),
                                              default=len(log))
    assert "collect:cgroup" not in log


def test_failure_after_exit_still_undoes(monkeypatch):
    log, exc = run_with(monkeypatch, "agent:wait")
    assert isinstance(exc, StepError)
    assert [e for e in log if e.startswith("undo:")] == [f"undo:{s}" for s in reversed(HOST_STEPS)]


def test_interrupt_during_setup_rolls_back(monkeypatch):
    log: list[str] = []
    agent_cls, host_step = make_fakes(log, None)

    def interrupting(name):
        inner = host_step(name)

        def apply(plan, ctx):
            inner(plan, ctx)
            if name == "network":
                raise KeyboardInterrupt

        return apply

    monkeypatch.setattr(runmod, "Agent", agent_cls)
    monkeypatch.setattr(runmod, "_host_step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        runmod.run(FakePlan().get())
    assert [e for e in log if e.startswith("undo:")] == ["undo:network", "undo:cgroup", "undo:idmap"]
    assert "agent:abort" in log and "agent:proceed" not in log


def test_every_step_has_a_reason_and_a_known_side():
    for s in STEPS:
        assert s.side in ("agent", "host", "child") and len(s.reason) > 20
    sides = [s.side for s in STEPS]
    # agent first, then every host step, then every child step: the checkpoint shape
    assert sides == sorted(sides, key=["agent", "host", "child"].index)
    # seccomp last of the constraining steps; only the init (after it, so pid 1 is filtered too) and exec follow
    assert [s.name for s in STEPS[-3:]] == ["seccomp", "init", "exec"]


def _with_after_end(monkeypatch, fail_at):
    # The network step's veth delete: deferred (after_end) once the workload ended,
    # never on a rollback, where the undo itself runs before the error is raised.
    log: list[str] = []
    agent_cls, host_step = make_fakes(log, fail_at)

    def deferring(name):
        inner = host_step(name)

        def apply(plan, ctx):
            if name == "network":
                ctx.on_undo("veth", lambda: log.append("undo:veth"), after_end=lambda: log.append("deferred:veth"))
            inner(plan, ctx)

        return apply

    monkeypatch.setattr(runmod, "Agent", agent_cls)
    monkeypatch.setattr(runmod, "_host_step", deferring)
    try:
        runmod.run(FakePlan().get())
    except StepError:
        pass
    return log


def test_an_undo_deferred_after_the_end_runs_in_its_place(monkeypatch):
    log = _with_after_end(monkeypatch, None)
    assert "deferred:veth" in log and "undo:veth" not in log
    assert log.index("undo:network") < log.index("deferred:veth") < log.index("undo:cgroup")  # same order


@pytest.mark.parametrize("fail_at", ["host:rlimits", "agent:proceed"])
def test_a_rollback_never_defers(monkeypatch, fail_at):
    log = _with_after_end(monkeypatch, fail_at)
    assert "undo:veth" in log and "deferred:veth" not in log


def test_cgroups_are_prepared_while_the_agent_starts_and_undone_on_failure(monkeypatch):
    """The cgroup step's mkdirs and limits run after HELLO+SPAWN are sent and before
    their replies are read (hello_spawn's `meanwhile`); the step itself then only
    moves the child in.  A failure there rolls back like the step's own."""
    from types import SimpleNamespace

    from linx_spec.host import cgroup as hc

    for fail in (False, True):
        log: list[str] = []
        agent_cls, host_step = make_fakes(log, None)

        class EarlyAgent(agent_cls):
            pid = 4242

            def hello_spawn(self, flags, joins, grace_ms, meanwhile=None):
                log.append("agent:frames sent")
                if meanwhile is not None:
                    meanwhile()
                log.append("agent:replies read")
                return 777

        def prepare(plan, ctx, owner_pid, want_fd=True):
            log.append(f"prepare owner={owner_pid} fd={want_fd}")
            ctx.on_undo("cgroup", lambda: log.append("undo:prepared cgroup"))
            if fail:
                raise OSError(13, "Permission denied")
            return SimpleNamespace(fd=None, leaves=[], live=None)

        monkeypatch.setattr(runmod, "Agent", EarlyAgent)
        monkeypatch.setattr(runmod, "_host_step", host_step)
        monkeypatch.setattr(hc, "clone_into", lambda plan: False)
        monkeypatch.setattr(hc, "early", lambda plan: True)
        monkeypatch.setattr(hc, "prepare_before_clone", prepare)
        if fail:
            with pytest.raises(StepError, match=r"cgroup \(host\).*EACCES"):
                runmod.run(FakePlan().get())
            assert log == ["agent:start", "agent:frames sent", "prepare owner=4242 fd=False", "agent:close",
                           "undo:prepared cgroup"]
        else:
            runmod.run(FakePlan().get())
            assert log[:4] == ["agent:start", "agent:frames sent", "prepare owner=4242 fd=False",
                               "agent:replies read"]
            assert log[-3:] == ["undo:idmap", "undo:prepared cgroup", "agent:close"]
