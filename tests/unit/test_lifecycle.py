"""The lifecycle (lifecycle.py) against a fake workload whose clock is fake
too: the time limit's SIGTERM -> grace -> SIGKILL, stop requests, the restart
policy; and the error boundary (errors.py): one exit-code table, the help text
made from it, errors carried across a process as data; and the mount-table
parser (mountinfo.py)."""

from __future__ import annotations

import dataclasses
import io
import signal

import pytest

from linx_spec import build_plan, load_text, lifecycle, mountinfo
from linx_spec import errors as E
from linx_spec.agent import End
from linx_spec.runner import Result


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.log.append(f"sleep {seconds:g}")
        self.now += seconds


class FakeWorkload:
    """Ends `ends_after` seconds after it runs, or `term_after` after a SIGTERM
    (None: ignores it); SIGKILL ends it at once."""

    def __init__(self, plan, clock, log, code=0, ends_after=None, term_after=None):
        self.plan, self.clock, self.log = plan, clock, log
        self.code, self.ends_after, self.term_after = code, ends_after, term_after
        self.state, self.releasing, self.agent = "new", False, None
        self.started = 0.0
        self.end_at = None
        self.end = None

    def spawn(self):
        self.log.append("spawn")

    def setup(self):
        self.log.append("setup")

    def proceed(self):
        self.log.append("proceed")
        self.state = "running"
        self.started = self.clock.now
        if self.ends_after is not None:
            self.end_at = self.clock.now + self.ends_after

    def signal(self, signo):
        self.log.append(f"signal {signal.Signals(signo).name}")
        if signo == signal.SIGKILL:
            self.end_at, self.end = self.clock.now, End(None, signal.SIGKILL)
        elif signo == signal.SIGTERM and self.term_after is not None:
            at = self.clock.now + self.term_after
            if self.end_at is None or at < self.end_at:
                self.end_at, self.end = at, End(None, signal.SIGTERM)

    def poll(self, timeout=0):
        if self.end_at is not None and (timeout is None or self.end_at <= self.clock.now + timeout):
            self.clock.now = max(self.clock.now, self.end_at)
            return self.end or End(self.code, None)
        assert timeout is not None, "waiting forever for a workload that never ends"
        self.clock.now += timeout
        return None

    def finish(self, end, reason="", timed_out=False):
        self.state = "ended"
        self.log.append("finish")
        return Result(self.plan.name, 1, end.exit_code, end.signal, False, [], reason=reason, timed_out=timed_out)

    def close(self):
        self.log.append("close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    c.log = []
    monkeypatch.setattr(lifecycle.time, "monotonic", c.monotonic)
    monkeypatch.setattr(lifecycle.time, "sleep", c.sleep)
    return c


def plan_with(**lc):
    plan = build_plan(load_text("version: 1\nname: t\nprocess: {command: [/bin/true]}\n"))
    return dataclasses.replace(plan, lifecycle=dataclasses.replace(plan.lifecycle, **lc))


def started(plan, clock, **kw):
    w = FakeWorkload(plan, clock, clock.log, **kw)
    w.proceed()
    return w


def test_no_limit_waits_for_the_end(clock):
    w = started(plan_with(timeout=None), clock, code=3, ends_after=50)
    r = lifecycle.run_to_end(w, None)
    assert (r.exit_code, r.timed_out, r.reason) == (3, False, "")
    assert clock.log == ["proceed", "finish"]


def test_time_limit_sigterm_is_enough(clock):
    w = started(plan_with(stop_grace=5.0), clock, ends_after=100, term_after=1)
    r = lifecycle.run_to_end(w, 2.0)
    assert r.timed_out and r.signal == signal.SIGTERM
    assert r.reason == "timed out after 2s: stopped by SIGTERM"
    assert clock.log == ["proceed", "signal SIGTERM", "finish"]
    assert clock.now == pytest.approx(1003.0)


def test_time_limit_then_grace_then_sigkill(clock):
    w = started(plan_with(stop_grace=0.5), clock, ends_after=100, term_after=None)
    r = lifecycle.run_to_end(w, 0.3)
    assert r.timed_out and r.signal == signal.SIGKILL
    assert r.reason == "timed out after 0.3s: killed by SIGKILL after a 0.5s grace period"
    assert clock.log == ["proceed", "signal SIGTERM", "signal SIGKILL", "finish"]
    assert clock.now == pytest.approx(1000.8)


def test_a_failure_while_waiting_closes_the_workload(clock):
    w = started(plan_with(), clock, ends_after=1)
    w.poll = lambda timeout=0: (_ for _ in ()).throw(E.ProtocolError("END", "EOF"))
    with pytest.raises(E.ProtocolError):
        lifecycle.run_to_end(w, None)
    assert clock.log[-1] == "close"


def supervised(clock):
    """The shared supervisor's waiter on the fake clock: blocking advances it."""
    waiter = lifecycle.Supervised()

    def block(w, seconds):
        assert seconds is not None, "blocking forever on a fake workload"
        clock.now += seconds

    waiter._block = block
    return waiter


def test_supervised_stop_request_sigterm_grace_sigkill(clock):
    waiter = supervised(clock)
    w = started(plan_with(stop_grace=1.0), clock, ends_after=100, term_after=None)
    real_poll = w.poll

    asked = []

    def poll(timeout=0):
        if clock.now >= 1000.4 and not asked:
            asked.append(clock.now)
            waiter.request_stop()  # `linx-spec stop` arrives from the supervisor's main thread
        return real_poll(timeout)

    w.poll = poll
    waiter.every = 0.2  # ticks while it waits: never after the stop
    ticks = []
    waiter.on_tick = lambda w_: ticks.append(clock.now)
    r = lifecycle.run_to_end(w, None, waiter)
    assert not r.timed_out and r.signal == signal.SIGKILL
    assert clock.log == ["proceed", "signal SIGTERM", "signal SIGKILL", "finish"]
    assert ticks and ticks[0] == pytest.approx(1000.2) and all(t < asked[0] + 1e-6 for t in ticks)


def test_a_time_limit_changed_live_applies_to_the_running_workload(clock):
    plan = plan_with(restart="no", timeout=None, stop_grace=0.1)
    waiter = supervised(clock)
    lc = lifecycle.Lifecycle(plan, waiter=waiter, final_time_limit=True)
    woke = {"done": False}
    real_block = waiter._block

    def block(w, seconds):
        if clock.now >= 1000.5 and not woke["done"]:
            woke["done"] = True
            lc.reload(plan_with(restart="no", timeout=2.0, stop_grace=0.1))  # `apply` of a new limit
            return
        real_block(w, 0.25 if seconds is None else seconds)

    waiter._block = block
    result = lc.run(lambda: FakeWorkload(plan, clock, clock.log, ends_after=100, term_after=0))
    assert result.timed_out and result.reason.startswith("timed out after 2s")
    assert clock.now == pytest.approx(1002.0)


def test_a_forwarded_sigterm_gets_the_grace_then_sigkill(clock):
    # `timeout 20 linx-spec apply` of an interactive shell (it ignores SIGTERM):
    # the forwarded TERM is followed by SIGKILL once stop_grace has passed.
    w = started(plan_with(stop_grace=2.0), clock, ends_after=None, term_after=None)
    forwarded_at = [None]
    real_poll = w.poll

    def poll(timeout=0):
        if clock.now >= 1001.0 and forwarded_at[0] is None:
            forwarded_at[0] = clock.now  # the handler forwarded SIGTERM here
        return real_poll(timeout)

    w.poll = poll
    r = lifecycle.run_to_end(w, None, forwarded=lambda: forwarded_at[0])
    assert not r.timed_out and r.signal == signal.SIGKILL
    assert r.reason == "still running 2s after the forwarded signal: killed by SIGKILL"
    assert clock.log == ["proceed", "signal SIGKILL", "finish"]
    assert 1003.0 <= clock.now <= 1003.0 + lifecycle.FORWARD_TICK


def test_a_forwarded_sigterm_obeyed_is_no_kill(clock):
    w = started(plan_with(stop_grace=2.0), clock, ends_after=1.5)
    r = lifecycle.run_to_end(w, None, forwarded=lambda: 1001.0)
    assert (r.exit_code, r.signal, r.reason) == (0, None, "")
    assert clock.log == ["proceed", "finish"]


@pytest.mark.parametrize("policy,codes,expected_runs", [
    ("no", [1, 1, 1], 1),
    ("on-failure", [1, 1, 0, 1], 3),
    ("on-failure", [1, 1, 1, 1, 1], 3),  # max_retries 2
    ("always", [0, 0, 0, 0], 3),
])
def test_restart_policy(clock, policy, codes, expected_runs):
    plan = plan_with(restart=policy, max_retries=2, backoff=0.1, max_backoff=0.15)
    codes = list(codes)
    told = []
    lc = lifecycle.Lifecycle(plan, on_restart=lambda r, d: told.append((r.exit_code, d)))
    result = lc.run(lambda: FakeWorkload(plan, clock, clock.log, code=codes.pop(0), ends_after=1))
    assert clock.log.count("spawn") == expected_runs
    assert result.restarts == expected_runs - 1
    assert [d for _, d in told] == [0.1, 0.15][:expected_runs - 1]  # doubling, capped at max_backoff
    assert [e for e in clock.log if e.startswith("sleep")] == [f"sleep {d:g}" for _, d in told]


def test_supervisor_does_not_restart_after_its_time_limit(clock):
    plan = plan_with(restart="always", max_retries=None, timeout=1.0, stop_grace=0.1)
    waiter = supervised(clock)
    lc = lifecycle.Lifecycle(plan, waiter=waiter, final_time_limit=True)
    result = lc.run(lambda: FakeWorkload(plan, clock, clock.log, ends_after=100, term_after=0))
    assert result.timed_out and clock.log.count("spawn") == 1


def test_forwarding_before_the_workload_runs_interrupts_the_setup(clock):
    plan = plan_with()

    def new():
        w = FakeWorkload(plan, clock, clock.log, ends_after=1)
        w.setup = lambda: signal.raise_signal(signal.SIGTERM)
        return w

    old = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.Lifecycle(plan, signals="forward").run(new)
    assert signal.getsignal(signal.SIGTERM) is old  # restored
    assert clock.log[-1] == "close"


def test_end_words():
    assert lifecycle.end_words(3, None) == "exit code 3"
    assert lifecycle.end_words(None, 9) == "killed by signal 9"


# --- errors: the CLI boundary ---------------------------------------------------

def test_one_exit_code_table_and_the_help_made_from_it():
    assert not hasattr(E, "EXIT_CODES")
    text = E.exit_code_help()
    codes = {cls.exit_code for cls in E._tree()}
    for code in codes:
        assert f" {code} " in text, code
    assert text == ("Exit codes: the workload's own (128+N if killed by signal N) for apply; 2 usage; "
                    "65 spec error; 66 plan error (host cannot honour the spec); 70 step error (everything "
                    "rolled back); 71 agent protocol error; 72 workload state error; 127 program could not "
                    "be executed.")


def test_the_base_is_never_raised_by_the_package():
    import pathlib
    import re

    root = pathlib.Path(E.__file__).parent
    raised = [str(p.relative_to(root)) for p in root.rglob("*.py") if re.search(r"(?<!class )\bLinxError\(", p.read_text())]
    assert raised == []


@pytest.mark.parametrize("exc", [
    E.SpecError([E.Problem("s.yaml", 3, 5, "process.command", "must not be empty")]),
    E.PlanError("no memory controller", "mount it", "cgroup.memory"),
    E.StepError("cgroup", "host", 22, "write memory.max", "/sys/fs/cgroup/memory/linx/t"),
    E.ExecError("exec", "child", 2, "execve /nope"),
    E.ParkedDeathError("spawn", "agent", "killed by signal 9", 9),
    E.ProtocolError("READY", "EOF"),
    E.StateError("no workload named `x`"),
])
def test_errors_cross_a_process_as_data_and_report_the_same(exc):
    back = E.from_record(E.to_record(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    out, again = io.StringIO(), io.StringIO()
    assert E.report(exc, out) == E.report(back, again) == type(exc).exit_code
    assert out.getvalue() == again.getvalue()
    assert out.getvalue().startswith("s.yaml:3:5:" if isinstance(exc, E.SpecError) else "linx-spec: ")


@pytest.mark.parametrize("record", [None, [], {"class": "LinxError", "args": []}, {"class": "StepError"},
                                    {"class": "StepError", "args": ["a"]}, {"class": "os.system", "args": ["x"]},
                                    {"class": "StateError", "args": [{"a": 1}]}])
def test_a_bad_error_record_is_a_protocol_error(record):
    assert type(E.from_record(record)) is E.ProtocolError


def test_the_cli_has_one_handler_for_every_command():
    import pathlib

    root = pathlib.Path(E.__file__).parent
    for name in ("commands.py", "seccomp/cli.py", "fastpath.py", "apply.py"):
        text = (root / name).read_text()
        assert "_fail" not in text, name
        assert text.count("except LinxError") == (1 if name == "commands.py" else 0), name


# --- the mount table ------------------------------------------------------------------

def test_mountinfo_line_with_escapes_and_optional_fields():
    m = mountinfo.parse_line(r"36 35 98:0 /mnt\0401 /mnt\0402 rw,noatime master:1 shared:2 - ext3 /dev/ro\134ot "
                             "rw,errors=continue\n")
    assert (m.mount_id, m.parent_id, m.dev) == (36, 35, "98:0")
    assert (m.root, m.mount_point, m.source) == ("/mnt 1", "/mnt 2", "/dev/ro\\ot")
    assert m.options == ("rw", "noatime") and m.optional == ("master:1", "shared:2")
    assert m.fstype == "ext3" and m.all_options == ("rw", "noatime", "errors=continue")


def test_mountinfo_cgroup_mounts_and_bad_lines():
    text = ("30 1 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
            "31 1 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
            "32 1 0:5 / /dev rw - devtmpfs udev rw\n")
    ms = mountinfo.parse(text)
    assert [(m.fstype, m.mount_point) for m in mountinfo.cgroup_mounts(ms)] == [
        ("cgroup", "/sys/fs/cgroup/memory"), ("cgroup2", "/sys/fs/cgroup/unified")]
    assert "memory" in ms[0].all_options
    with pytest.raises(ValueError):
        mountinfo.parse_line("30 1 0:26 / /x rw cgroup cgroup rw")
    assert any(m.mount_point == "/" for m in mountinfo.read())
