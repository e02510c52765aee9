"""`linx-spec validate`: many files, all problems, formats for people and machines.
Needs no root and touches no kernel object (spec validation only).

Arguments are files, directories or globs.  A directory is walked for *.yaml and
*.yml, skipping `.git`, `.venv`, `node_modules` and `__pycache__`, what git ignores
there (`git check-ignore`, when the directory is in a git work tree) and paths
matching an `--exclude` glob.  Only regular files are read: a FIFO or device met
in a walk or a glob is reported, never opened (it could block or have effects).
Exit codes: 0 all valid; 65 a problem, or nothing was validated at all (an empty
tree in CI is a mistake, not a success); 2 a bad `--format`, checked before work.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import stat
import subprocess
import sys

from .audit import joined_host_namespaces
from .errors import Problem, SpecError
from .load import load_file

FORMATS = ("text", "json", "github")
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox"})
SUFFIXES = (".yaml", ".yml")
EXIT_INVALID = 65
EXIT_USAGE = 2


def _excluded(path: str, excludes: list[str]) -> bool:
    norm = os.path.normpath(path)
    parts = norm.split(os.sep)
    return any(fnmatch.fnmatch(norm, pat) or fnmatch.fnmatch(parts[-1], pat) or
               any(fnmatch.fnmatch(p, pat) for p in parts[:-1]) for pat in excludes)


def _git_ignored(directory: str, paths: list[str]) -> set[str]:
    """The paths git ignores (.gitignore, .git/info/exclude, core.excludesFile); none
    when git is missing or the directory is not in a work tree."""
    if not paths:
        return set()
    try:
        proc = subprocess.run(["git", "-C", directory, "check-ignore", "-z", "--stdin"],
                              input="\0".join(os.path.abspath(p) for p in paths) + "\0",
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if proc.returncode not in (0, 1):  # 128: not a git work tree
        return set()
    return {p for p in proc.stdout.split("\0") if p}


def _not_regular(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a directory" if stat.S_ISDIR(mode) else "not a file")
    return f"not a regular file ({kind}); not read"


def _walk(top: str, excludes: list[str]) -> tuple[list[str], list[Problem]]:
    found: list[str] = []
    for root, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not _excluded(os.path.join(root, d), excludes))
        found += sorted(os.path.join(root, n) for n in names
                        if n.endswith(SUFFIXES) and not _excluded(os.path.join(root, n), excludes))
    ignored = _git_ignored(top, found)
    files: list[str] = []
    problems: list[Problem] = []
    for f in found:
        if os.path.abspath(f) in ignored:
            continue
        why = _not_regular(f)
        if why:
            problems.append(Problem(f, 0, 0, "", why))
        else:
            files.append(f)
    return files, problems


def expand_paths(args: list[str], excludes: list[str] = ()) -> tuple[list[str], list[Problem]]:
    files: list[str] = []
    problems: list[Problem] = []
    excludes = list(excludes)
    for arg in args:
        if os.path.isdir(arg):
            got, bad = _walk(arg, excludes)
            if not got and not bad:
                problems.append(Problem(arg, 0, 0, "", "no *.yaml or *.yml file here (nothing to validate)"))
            files += got
            problems += bad
        elif any(c in arg for c in "*?["):
            matched = [m for m in sorted(glob.glob(arg, recursive=True))
                       if not os.path.isdir(m) and not _excluded(m, excludes)]
            if not matched:
                problems.append(Problem(arg, 0, 0, "", "no file matches this pattern"))
            for m in matched:
                why = _not_regular(m)
                if why:
                    problems.append(Problem(m, 0, 0, "", why))
                else:
                    files.append(m)
        elif os.path.exists(arg) or arg == "-":
            # A file named directly is read as given (load.py decides about FIFOs).
            files.append(arg)
        else:
            problems.append(Problem(arg, 0, 0, "", "no such file"))
    return files, problems


def _github_property(value: str) -> str:
    # Workflow command properties: %, CR, LF, `:` and `,` are escaped (actions/toolkit's escapeProperty).
    return (value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            .replace(":", "%3A").replace(",", "%2C"))


def _github_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_annotation(p: Problem) -> str:
    msg = (f"{p.field}: " if p.field else "") + p.message
    loc = f"file={_github_property(p.file)}" + (f",line={p.line},col={p.column}" if p.line else "")
    return f"::error {loc}::{_github_data(msg)}"


def validate_paths(args: list[str], overrides: list[str], fmt: str, excludes: list[str] = ()) -> int:
    if fmt not in FORMATS:
        print(f"linx-spec: unknown --format {fmt!r}; use text, json or github", file=sys.stderr)
        return EXIT_USAGE
    files, problems = expand_paths(args, excludes)
    ok: list[str] = []
    for f in files:
        try:
            spec = load_file(f, overrides=overrides)
            ok.append(f)
            for warning in joined_host_namespaces(spec.namespaces.joined().items()):  # issue 14 item 10
                print(f"{f}: warning: {warning}", file=sys.stderr)
        except SpecError as exc:
            problems += exc.problems
    if not files and not problems:
        problems.append(Problem("", 0, 0, "", "nothing to validate"))
    if fmt == "json":
        print(json.dumps({"valid": ok, "problems": [p.__dict__ for p in problems]}, indent=2))
    elif fmt == "github":
        for p in problems:
            print(github_annotation(p))
    else:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(f"{len(ok)} valid, {len(files) - len(ok)} invalid", file=sys.stderr)
    return 0 if ok and not problems else EXIT_INVALID
