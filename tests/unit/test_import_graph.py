"""No import circles in linx_spec (lazy imports inside functions count; imports
under `if TYPE_CHECKING:` do not: they never run).  The lifecycle sits below
runner.py, tty.py, detach.py and supervisor.py: they import it, it imports none
of them."""

from __future__ import annotations

from importgraph import cycles, graph

GRAPH = graph()


def test_no_import_circles():
    assert cycles(GRAPH) == []


def test_the_lifecycle_depends_on_nothing_that_uses_it():
    assert GRAPH["linx_spec.lifecycle"] <= {"linx_spec.errors", "linx_spec.views"}
    assert GRAPH["linx_spec.views"] <= {"linx_spec.rundir"}  # `ps` reads nothing more
    assert GRAPH["linx_spec.tty"] <= {"linx_spec.lifecycle"}
    for user in ("linx_spec.runner", "linx_spec.tty", "linx_spec.detach", "linx_spec.apply", "linx_spec.supervisor"):
        assert "linx_spec.lifecycle" in GRAPH[user], user


def test_the_graph_sees_lazy_imports():
    # apply.py imports runner.py and tty.py inside functions; the graph must see that.
    assert {"linx_spec.runner", "linx_spec.tty"} <= GRAPH["linx_spec.apply"]
