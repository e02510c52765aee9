"""`linx-spec seccomp ...`: export a spec's compiled filter, explain it, list the groups.

Errors go up to the main app's one handler (commands._Group), like every command's."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="The seccomp filter of a spec: export, explain; the syscall groups.\n\n"
                  "Example: linx-spec seccomp explain specs/untrusted-runner.yaml")


def _compile(spec_file: str, overrides: list[str]):
    from ..errors import PlanError
    from ..load import load_file
    from ..plan.seccomp import resolve

    spec = load_file(spec_file, overrides=overrides)
    if spec.seccomp is None:
        raise PlanError("the spec has no `seccomp:` section", "add one (see docs/seccomp.md)", "seccomp")
    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file != "-" else os.getcwd()
    return resolve(spec.seccomp, spec, base)


_SetOpt = typer.Option(None, "--set", help="Override a field: path.to.field=value (validated like the file).")


@app.command()
def export(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml", help="The spec file (- for standard input)."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the filter (- for standard output)."),
    set_: Optional[List[str]] = _SetOpt,
) -> None:
    """Write the compiled filter (struct sock_filter[], as seccomp_export_bpf writes it) to a file,
    e.g. for `bwrap --seccomp FD`.

    Example: linx-spec seccomp export specs/untrusted-runner.yaml -o filter.bpf"""
    plan = _compile(spec_file, set_ or [])
    if output == "-":
        sys.stdout.buffer.write(plan.bpf)
        sys.stdout.buffer.flush()
    else:
        try:
            with open(output, "wb") as f:
                f.write(plan.bpf)
        except OSError as exc:
            print(f"linx-spec: seccomp export: write {output}: {exc.strerror}", file=sys.stderr)
            raise typer.Exit(73) from None  # EX_CANTCREAT
    print(f"linx-spec: {plan.instructions} instructions ({len(plan.bpf)} bytes), default {plan.default}, "
          f"architectures {', '.join(plan.architectures)}" + (f" -> {output}" if output != "-" else ""),
          file=sys.stderr)


@app.command()
def explain(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml"),
    set_: Optional[List[str]] = _SetOpt,
) -> None:
    """What the filter does to each syscall a rule names; every other syscall gets the default.

    Example: linx-spec seccomp explain specs/untrusted-runner.yaml"""
    plan = _compile(spec_file, set_ or [])
    print(f"default: {plan.default}")
    print(f"architectures: {', '.join(plan.architectures)} (any other ABI: kill)")
    if plan.profile:
        print(f"profile: {plan.profile}")
    print(f"instructions: {plan.instructions}")
    width = max((len(n) for n, _ in plan.table), default=0)
    for name, what in plan.table:
        print(f"  {name:<{width}}  {what}")
    for why in plan.skipped:
        print(f"  (profile entry left out: {why})")


@app.command()
def groups(name: Optional[str] = typer.Argument(None, help="A group, e.g. @mount: list its syscalls.")) -> None:
    """The named syscall groups (usable in rules as `@name`).

    Example: linx-spec seccomp groups @mount"""
    from .groups import GROUPS, expand

    if name is not None:
        key = name if name.startswith("@") else "@" + name
        if key not in GROUPS:
            print(f"linx-spec: unknown group {name} (known: {', '.join(sorted(GROUPS))})", file=sys.stderr)
            raise typer.Exit(2)
        print(f"{key}: {GROUPS[key].summary}")
        print(" ".join(expand(key)))
        return
    for key in sorted(GROUPS):
        print(f"{key:<16} {len(expand(key)):4}  {GROUPS[key].summary}")
