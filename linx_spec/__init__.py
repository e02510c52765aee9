"""linx-spec: a declarative runner for isolated Linux workloads.

    spec = load_file("specs/hello.yaml")      # YAML -> Spec (errors point at the text)
    plan = build_plan(spec)                    # Spec -> Plan (resolved, frozen)
    result = run(plan)                         # walks the checkpoint -> Result

    with Runner() as runner:                   # many workloads from one process:
        result = runner.run(plan)              # each agent forked from one zygote

    with Workload(plan) as w:                  # the low-level handle
        pid = w.spawn()                        # parked: created, not yet exec'd
        w.setup(); w.proceed()                 # host steps, then child steps + execve
        result = w.wait()

    report = reconcile("web", build_plan(load_file("web.yaml")))  # converge a running
    print(report.text())                       # detached workload live; diff() only looks

Names are imported on first use (PEP 562): running a cached plan from the CLI
never pays for pydantic, yaml or typer.
"""

from __future__ import annotations


from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "ExecError": "errors",
    "LinxError": "errors",
    "ParkedDeathError": "errors",
    "PlanError": "errors",
    "Problem": "errors",
    "ProtocolError": "errors",
    "SpecError": "errors",
    "StateError": "errors",
    "StepError": "errors",
    "load_file": "load",
    "load_text": "load",
    "Plan": "plan.workload",
    "build_plan": "plan.build",
    "Result": "runner",
    "Runner": "runner",
    "StepTiming": "runner",
    "Workload": "runner",
    "run": "runner",
    "Spec": "spec",
    "Report": "live",
    "diff": "live",
    "reconcile": "live",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:  # for type checkers and editors
    from .errors import (ExecError, LinxError, ParkedDeathError, PlanError, Problem, ProtocolError,  # noqa: F401
                         SpecError, StateError, StepError)
    from .load import load_file, load_text  # noqa: F401
    from .plan.build import build_plan  # noqa: F401
    from .plan.workload import Plan  # noqa: F401
    from .runner import Result, Runner, StepTiming, Workload, run  # noqa: F401
    from .live import Report, diff, reconcile  # noqa: F401
    from .spec import Spec  # noqa: F401
