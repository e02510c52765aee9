"""`linx-spec validate`: many files, all problems, formats for people and machines.
Needs no root and touches no kernel object (spec validation only)."""

from __future__ import annotations

import glob
import json
import os
import sys

from .audit import joined_host_namespaces
from .errors import Problem, SpecError
from .load import load_file


def expand_paths(args: list[str]) -> tuple[list[str], list[Problem]]:
    files: list[str] = []
    missing: list[Problem] = []
    for arg in args:
        if os.path.isdir(arg):
            for root, _dirs, names in os.walk(arg):
                files += sorted(os.path.join(root, n) for n in names if n.endswith((".yaml", ".yml")))
        elif any(c in arg for c in "*?["):
            matched = sorted(glob.glob(arg, recursive=True))
            if not matched:
                missing.append(Problem(arg, 0, 0, "", "no file matches this pattern"))
            files += matched
        elif os.path.exists(arg) or arg == "-":
            files.append(arg)
        else:
            missing.append(Problem(arg, 0, 0, "", "no such file"))
    return files, missing


def validate_paths(args: list[str], overrides: list[str], fmt: str) -> int:
    files, problems = expand_paths(args)
    ok: list[str] = []
    for f in files:
        try:
            spec = load_file(f, overrides=overrides)
            ok.append(f)
            for warning in joined_host_namespaces(spec.namespaces.joined().items()):  # issue 14 item 10
                print(f"{f}: warning: {warning}", file=sys.stderr)
        except SpecError as exc:
            problems += exc.problems
    if fmt == "json":
        print(json.dumps({"valid": ok, "problems": [p.__dict__ for p in problems]}, indent=2))
    elif fmt == "github":
        for p in problems:
            msg = (f"{p.field}: " if p.field else "") + p.message
            msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            loc = f"file={p.file}" + (f",line={p.line},col={p.column}" if p.line else "")
            print(f"::error {loc}::{msg}")
    else:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(f"{len(ok)} valid, {len(files) - len(ok)} invalid", file=sys.stderr)
    if fmt not in ("text", "json", "github"):
        print(f"linx-spec: unknown --format {fmt}; use text, json or github", file=sys.stderr)
        return 2
    return 0 if not problems else 65
