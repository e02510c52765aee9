"""linx-spec: a declarative runner for isolated Linux workloads.

    spec = load_file("specs/hello.yaml")      # YAML -> Spec (errors point at the text)
    plan = build_plan(spec)                    # Spec -> Plan (resolved, frozen)
    result = run(plan)                         # walks the checkpoint -> Result

    with Workload(plan) as w:                  # the low-level handle
        pid = w.spawn()                        # parked: created, not yet exec'd
        w.setup(); w.proceed()                 # host steps, then child steps + execve
        result = w.wait()
"""

from .errors import (
    ExecError,
    LinxError,
    ParkedDeathError,
    PlanError,
    Problem,
    ProtocolError,
    SpecError,
    StateError,
    StepError,
)
from .load import load_file, load_text
from .plan import Plan, build_plan
from .run import Result, StepTiming, Workload, run
from .spec import Spec

__version__ = "0.1.0"

__all__ = [
    "ExecError",
    "LinxError",
    "ParkedDeathError",
    "Plan",
    "PlanError",
    "Problem",
    "ProtocolError",
    "Result",
    "Spec",
    "SpecError",
    "StateError",
    "StepError",
    "StepTiming",
    "Workload",
    "build_plan",
    "load_file",
    "load_text",
    "run",
    "__version__",
]
