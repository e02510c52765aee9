"""The agent's layout against the single step list (linx_spec/steps.py): each
child step X is `lx_X_in_child()` in agent/lx_X.c and in the child's dispatch
table, the child runs nothing unlisted, and the agent's modules include each
other without a circle."""

from __future__ import annotations

import re
from pathlib import Path

from linx_spec.steps import STEPS

AGENT = Path(__file__).resolve().parent.parent.parent / "agent"
CHILD_STEPS = [s for s in STEPS if s.side == "child"]


def test_every_child_step_lives_in_a_file_named_after_it():
    for step in CHILD_STEPS:
        source = AGENT / f"lx_{step.name}.c"
        assert source.exists(), f"child step {step.name}: no {source.name}"
        assert re.search(rf"^int lx_{step.name}_in_child\(", source.read_text(), re.M), source.name


def test_the_child_dispatches_exactly_the_listed_steps():
    text = (AGENT / "lx_child.c").read_text()
    table = re.findall(r"\{ LX_STEP_([A-Z_]+), lx_([a-z_]+)_in_child \}", text)
    assert all(const.lower() == fn for const, fn in table), table
    assert sorted(fn for _c, fn in table) == sorted(s.name for s in CHILD_STEPS)
    # Nothing but parking happens outside a step: no call of a step's in the driver.
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for call in ("setsid", "setresuid", "setresgid", "close_range", "SYS_close_range", "execve", "rt_sigaction",
                 "keyctl", "signal", "sigprocmask", "ioctl", "chdir", "umask", "unshare", "mount", "capset"):
        assert not re.search(rf"\b{call}\s*\(|\b{call}\b,", code), f"lx_child.c does `{call}` outside a listed step"
    assert code.count("prctl(") == 1  # the parked child's PR_SET_PDEATHSIG (part of spawn)


def test_step_functions_are_declared_once_in_the_steps_header():
    header = (AGENT / "lx_steps.h").read_text()
    declared = set(re.findall(r"^int lx_([a-z_]+)_in_child\(", header, re.M))
    assert declared == {s.name for s in CHILD_STEPS}


def _includes() -> dict[str, set[str]]:
    """module (file stem) -> the agent modules its .c and .h include."""
    graph: dict[str, set[str]] = {}
    for path in sorted(AGENT.glob("lx_*.[ch]")):
        deps = {Path(h).stem for h in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M)}
        graph.setdefault(path.stem, set()).update(deps - {path.stem})
    return graph


def test_no_include_circles_in_the_agent():
    graph = _includes()
    assert graph["lx_mounts"] and "lx_settings" in graph["lx_mounts"]  # the check sees real edges
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"include circle: {' -> '.join(path + [node])}"
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        state[node] = 2

    for module in graph:
        visit(module, [])


def test_lx_fail_is_its_own_module():
    assert re.search(r"^int lx_fail\(", (AGENT / "lx_fail.c").read_text(), re.M)
    others = [p.name for p in AGENT.glob("lx_*.c") if p.name != "lx_fail.c"
              and re.search(r"^int lx_fail\(", p.read_text(), re.M)]
    assert not others
