"""The `linx-spec` command: parse arguments, call the API, map errors to exit codes.

Exit codes: the workload's own code (128+N when killed by signal N) for
`apply`; otherwise 0 ok, 2 usage, 65 spec error, 66 plan error (this host cannot
honour the spec), 70 step error (rolled back), 71 agent protocol error,
72 workload state error, 127 the program could not be executed.
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from .errors import EXIT_CODES, LinxError, SpecError

EXIT_HELP = (
    "Exit codes: the workload's own (128+N if killed by signal N) for apply; "
    "2 usage; 65 spec error; 66 plan error (host cannot honour the spec); "
    "70 step error (everything rolled back); 71 agent protocol error; "
    "72 workload state error; 127 program could not be executed."
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Declarative runner for isolated Linux workloads. " + EXIT_HELP,
                  pretty_exceptions_enable=False)


def _fail(exc: LinxError) -> "typer.Exit":
    code = exc.exit_code
    for cls, c in EXIT_CODES.items():
        if type(exc) is cls:
            code = c
    print(f"linx-spec: {exc}" if not isinstance(exc, SpecError) else str(exc), file=sys.stderr)
    return typer.Exit(code)


def _load_and_plan(spec_file: str, overrides: list[str]):
    from .load import load_file
    from .plan import build_plan

    spec = load_file(spec_file, overrides=overrides)
    import os

    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file != "-" else os.getcwd()
    return build_plan(spec, source=spec_file, base_dir=base)


SetOpt = typer.Option(None, "--set", help="Override a field: path.to.field=value (validated like the file).")


@app.command(epilog=EXIT_HELP)
def apply(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml", help="The spec file (- for standard input)."),
    set_: Optional[List[str]] = SetOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each checkpoint step with its duration."),
) -> None:
    """Run the workload in the foreground, with inherited stdio; exit with its exit code."""
    from .run import run_forwarding_signals

    def report(step: str, side: str, seconds: float) -> None:
        print(f"linx-spec: {step:<13} ({side:<5}) {seconds * 1000:8.3f} ms", file=sys.stderr)

    try:
        plan = _load_and_plan(spec_file, set_ or [])
        result = run_forwarding_signals(plan, on_step=report if verbose else None)
    except LinxError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        print("linx-spec: interrupted before the workload ran; everything was rolled back", file=sys.stderr)
        raise typer.Exit(130) from None
    if result.reason:
        print(f"linx-spec: {result.name}: {result.reason}", file=sys.stderr)
    elif result.signal is not None and verbose:
        print(f"linx-spec: {result.name}: killed by signal {result.signal}", file=sys.stderr)
    raise typer.Exit(result.status)


@app.command(epilog=EXIT_HELP)
def plan(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml"),
    set_: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print the exact ordered steps `apply` would run, with resolved arguments. Changes nothing."""
    from .steps import active_steps

    try:
        p = _load_and_plan(spec_file, set_ or [])
    except LinxError as exc:
        raise _fail(exc) from None
    steps = [{"step": s.name, "side": s.side, "args": s.args(p), "why": s.reason} for s in active_steps(p)]
    if as_json:
        print(json.dumps({"name": p.name, "spec_hash": p.spec_hash, "notes": list(p.notes), "steps": steps}, indent=2))
        return
    print(f"workload {p.name} (spec {p.spec_hash}) from {p.source}")
    for note in p.notes:
        print(f"  note: {note}")
    for i, s in enumerate(steps, 1):
        args = ", ".join(f"{k}={v}" for k, v in s["args"].items() if v not in (None, [], {}))
        print(f"{i:2}. {s['step']:<13} [{s['side']}] {args}")
        print(f"      why: {s['why']}")


@app.command(epilog=EXIT_HELP)
def validate(
    files: List[str] = typer.Argument(..., metavar="FILE|DIR|GLOB...", help="Spec files, directories (*.yaml, *.yml inside) or globs."),
    set_: Optional[List[str]] = SetOpt,
    fmt: str = typer.Option("text", "--format", help="text, json, or github (::error annotations)."),
) -> None:
    """Check specs without root and without touching any kernel object; exit 0 only if all are valid."""
    from .validate import validate_paths

    code = validate_paths(files, set_ or [], fmt)
    raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (the file under schema/)."""
    from .schema import schema_json

    print(schema_json(), end="")


def main() -> None:
    try:
        app()
    except LinxError as exc:  # pragma: no cover - commands translate their own
        sys.exit(_fail(exc).exit_code)


if __name__ == "__main__":
    main()
