"""The `linx-spec` commands (typer): parse arguments, call the API.  linx_spec/cli.py
is the entry point; it runs a cached plan of a plain `apply FILE` without
importing this module (or typer, or pydantic).

Errors: a command lets a LinxError go; the app's group (`_Group.invoke`, the
one handler) maps it with errors.report() to the class's exit code.  The
exit-code text of the help is made from the tree (errors.exit_code_help()).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from typer.core import TyperGroup

from .apply import INTERRUPTED, apply_plan
from .errors import LinxError, exit_code_help, report

EXIT_HELP = exit_code_help()


class _Group(TyperGroup):
    """The one place where the error tree becomes exit codes, for every command
    and subcommand (`seccomp ...` included): no traceback for what is not a bug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LinxError as exc:
            raise typer.Exit(report(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(INTERRUPTED) from None


app = typer.Typer(cls=_Group, add_completion=True, no_args_is_help=True,
                  help="Declarative runner for isolated Linux workloads. " + EXIT_HELP
                  + "\n\nExample: linx-spec apply specs/hello.yaml", pretty_exceptions_enable=False)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"linx-spec {__version__}")
        raise typer.Exit(0)


class _Global:
    quiet = False  # -q before the command: as each command's own -q


def _quiet(local: bool) -> bool:
    return local or _Global.quiet


# A command whose output only confirms what it did: with -q, nothing but errors
# (which go to stderr through errors.report(), whatever -q says).
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")


def _say(text: str, quiet: bool) -> None:
    if not _quiet(quiet):
        print(text)


MAX_ROOT_PATH = 4000  # below PATH_MAX with room for NAME/state.json


def _use_root(root: str | None) -> None:
    """`--root DIR`, as runc's: the runtime directory for state and the plan cache.
    It is LINX_RUNTIME_DIR (the one mechanism, inherited by the detached supervisor),
    so it gets the same checks on every use (rundir.py: made 0700, ours alone)."""
    if root is None:
        return
    if not root or len(root) > MAX_ROOT_PATH or not root.isprintable():
        raise typer.BadParameter(f"expected a directory path of at most {MAX_ROOT_PATH} printable characters",
                                 param_hint="--root")
    import os

    os.environ["LINX_RUNTIME_DIR"] = os.path.abspath(root)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit."),
          root: Optional[str] = typer.Option(None, "--root", metavar="DIR", envvar=None,
                                             help="State directory of detached workloads and the plan cache "
                                             "(default /run/linx for root, $XDG_RUNTIME_DIR/linx otherwise; "
                                             "same as LINX_RUNTIME_DIR). Made 0700; refused unless it is yours "
                                             "alone."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only what the command is for: apply "
                                     "only the workload's output and errors, ps only names; stop, restart, "
                                     "pause, resume, diff and gc nothing but errors.")) -> None:
    _use_root(root)
    _Global.quiet = quiet


def _load_and_plan(spec_file: str, overrides: list[str], cache: bool = False, verbose: bool = False):
    from .fastpath import load_and_plan

    return load_and_plan(spec_file, overrides, cache=cache, verbose=verbose)


SetOpt = typer.Option(None, "--set", help="Override a field: path.to.field=value (validated like the file).")


def _env_override(text: str) -> str:
    key, eq, value = text.partition("=")
    if not eq or not key or "." in key:
        raise typer.BadParameter(f"`{text}`: expected K=V (K without dots)", param_hint="--env")
    return f"process.env.{key}={value}"


def _parse_duration(text: str | None) -> float | None:
    if text is None:
        return None
    from .spec.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command(epilog=EXIT_HELP)
def apply(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml", help="The spec file (- for standard input)."),
    set_: Optional[List[str]] = SetOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each checkpoint step with its duration."),
    tty: bool = typer.Option(False, "--tty", "-t", help="Give the workload a pseudo-terminal (interactive)."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Wall-clock limit, e.g. 30s or 1m30s "
                                          "(overrides lifecycle.timeout). Exit code 124 when it expires."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once the workload runs; manage it with "
                                "ps, status, logs, kill, stop, exec, delete, diff, pause, resume."),
    restart: bool = typer.Option(False, "--restart", help="When a workload of that name runs and a field "
                                 "that cannot change live differs: stop it (stop_grace honoured), start the new one."),
    revert_released: bool = typer.Option(False, "--revert-released", help="When a workload of that name runs: "
                                         "a limit linx-spec set that left the spec goes back to the value it had "
                                         "before linx-spec set it (default: left as is)."),
    init: bool = typer.Option(False, "--init", help="Run a minimal init as pid 1 that forwards signals and "
                              "reaps orphans (shorthand for --set process.init=true)."),
    env: Optional[List[str]] = typer.Option(None, "--env", "-e", help="Set an environment variable: K=V "
                                            "(shorthand for --set process.env.K=V; repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but the workload's output and "
                               "errors (no name with -d, no live-apply report, no summary)."),
) -> None:
    """Run the workload in the foreground, with inherited stdio; exit with its exit code.
    When a detached workload of that name runs, converge it live instead (see `diff`).
    With -v, a summary of its usage (exit, wall and CPU time, peak memory, OOM kills,
    pids peak) on stderr at the end.

    Example: linx-spec apply -v --env DEBUG=1 --timeout 30s specs/web.yaml"""
    limit = _parse_duration(timeout)
    overrides = (set_ or []) + [_env_override(e) for e in env or []] + (["process.init=true"] if init else [])
    plan = _load_and_plan(spec_file, overrides, cache=True, verbose=verbose)
    if limit is not None:
        import dataclasses

        plan = dataclasses.replace(plan, lifecycle=dataclasses.replace(plan.lifecycle, timeout=limit))
    raise typer.Exit(apply_plan(plan, verbose=verbose, pty=True if tty else None, detach=detach, restart=restart,
                                revert_released=revert_released, quiet=_quiet(quiet)))


DIFF_HELP = ("Exit codes: 0 nothing differs; 1 something differs; 2 usage; " + EXIT_HELP.split("; ", 2)[-1])


@app.command(epilog=DIFF_HELP)
def diff(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml"),
    set_: Optional[List[str]] = SetOpt,
    revert_released: bool = typer.Option(False, "--revert-released", help="Show released limits as reverted."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors: the exit code says it."),
) -> None:
    """What `apply` would change in the running detached workload of the spec's name,
    against what the kernel shows now: each field marked live or restart.

    Example: linx-spec diff web.yaml && echo converged"""
    from .live import diff as diff_

    p = _load_and_plan(spec_file, set_ or [])
    report = diff_(p.name, p, revert_released=revert_released)
    _say(report.text(), quiet)
    raise typer.Exit(0 if report.converged else 1)


@app.command()
def pause(name: str = typer.Argument(..., help="Workload name."), quiet: bool = QuietOpt) -> None:
    """Freeze every process of a detached workload (v1 freezer, v2 cgroup.freeze).

    Example: linx-spec pause web"""
    from .live import pause as pause_

    _say(f"{name}: {pause_(name)}", quiet)


@app.command()
def resume(name: str = typer.Argument(..., help="Workload name."), quiet: bool = QuietOpt) -> None:
    """Thaw a paused detached workload.

    Example: linx-spec resume web"""
    from .live import resume as resume_

    _say(f"{name}: {resume_(name)}", quiet)


@app.command(epilog=EXIT_HELP)
def plan(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml"),
    set_: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print the exact ordered steps `apply` would run, with resolved arguments. Changes nothing.

    Example: linx-spec plan --set cgroup.memory.max=64Mi specs/web-server.yaml"""
    from .observe import plan_record

    p = _load_and_plan(spec_file, set_ or [])
    from .audit import joined_host_namespaces

    for warning in joined_host_namespaces(p.ns_join):  # issue 14 item 10: never silent
        print(f"linx-spec: warning: {warning}", file=sys.stderr)
    record = plan_record(p)
    if as_json:
        print(json.dumps(record, indent=2))
        return
    steps = record["steps"]
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
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="Skip paths matching this glob in directories and globs (repeatable); .git, .venv, node_modules and git-ignored files are always skipped."),
) -> None:
    """Check specs without root and without touching any kernel object; exit 0 only if all are valid (65 if any is not, or nothing was found).

    Example: linx-spec validate --format github --exclude 'tests/**' ."""
    from .validate import validate_paths

    code = validate_paths(files, set_ or [], fmt, exclude or [])
    raise typer.Exit(code)


@app.command(epilog=EXIT_HELP + " audit: 3 when a score is above --threshold.")
def audit(
    files: List[str] = typer.Argument(..., metavar="SPEC.yaml...", help="Spec files."),
    set_: Optional[List[str]] = SetOpt,
    fmt: str = typer.Option("text", "--format", help="text, json, or github (::notice/::error annotations)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0, max=10,
                                              help="Exit 3 when a spec's score is above this (0-10)."),
) -> None:
    """Score how exposed the host is to each workload, 0 (closed) to 10 (most exposed), one line per check.

    Example: linx-spec audit --threshold 5 specs/*.yaml"""
    from .audit import audit_files

    raise typer.Exit(audit_files(files, set_ or [], fmt, threshold))


@app.command()
def schema(path: bool = typer.Option(False, "--path", help="Print the path of the schema file shipped with "
                                     "linx-spec instead (for editors' modelines and check-jsonschema).")) -> None:
    """Print the JSON Schema of the spec language (the file under schema/).

    Example: linx-spec schema > linx-spec.schema.json"""
    from .schema import SCHEMA_FILE, schema_json

    print(SCHEMA_FILE if path else schema_json(), end="\n" if path else "")


def _signal_number(text: str) -> int:
    import signal as _signal

    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(_signal.Signals, name))
    except AttributeError:
        raise typer.BadParameter(f"unknown signal `{text}`") from None


@app.command("ps")
def ps_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the names, one a line.")) -> None:
    """List detached workloads and their status (dead ones are reported, never shown as running).

    Example: linx-spec ps -q | xargs -n1 linx-spec stop"""
    from .views import all_views, ps_main

    if _quiet(quiet):
        for v in all_views():
            print(v.name)
    else:
        ps_main(as_json)


@app.command()
def status(name: str = typer.Argument(..., help="Workload name."),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show one detached workload: status, pids, restarts, drift from its spec, and its cgroup usage once it ended.

    Example: linx-spec status --json web"""
    from .detach import status_record, status_text
    from .live import status_lines

    if as_json:
        print(json.dumps(status_record(name), indent=2, default=str))
    else:
        print("\n".join([status_text(name), *status_lines(name)]))


@app.command()
def inspect(name: str = typer.Argument(..., help="Workload name.")) -> None:
    """Everything about one detached workload as one JSON document: its state, the
    spec (read again when the file is unchanged), the plan, and its cgroup usage (now
    while it runs, else as it ended).  The keys are stable (docs/workload.md).

    Example: linx-spec inspect web | jq .usage.figures.memory_peak_bytes"""
    from .observe import inspect as inspect_

    print(json.dumps(inspect_(name), indent=2, sort_keys=True, default=str))


def _stats(names: Optional[List[str]], interval: str, no_stream: bool, as_json: bool) -> None:
    from .observe import stats as stats_

    seconds = _parse_duration(interval)
    if seconds is None or not 0.1 <= seconds <= 3600:
        raise typer.BadParameter("between 100ms and 1h", param_hint="--interval")
    try:
        stats_(names or [], seconds, not no_stream, as_json, sys.stdout, sys.stdout.isatty())
    except KeyboardInterrupt:  # the way to end a stream, as docker stats
        pass
    except BrokenPipeError:  # `stats --json | head -1`: the reader is done, so are we
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush


_StatsNames = typer.Argument(None, metavar="[NAME...]", help="Workloads (default: every running one).")
_Interval = typer.Option("2s", "--interval", "-i", help="Time between refreshes (100ms to 1h).")
_NoStream = typer.Option(False, "--no-stream", help="Print one reading and exit.")
_StatsJson = typer.Option(False, "--json", help="One JSON array of readings per refresh, one a line.")


@app.command()
def stats(names: Optional[List[str]] = _StatsNames, interval: str = _Interval, no_stream: bool = _NoStream,
          as_json: bool = _StatsJson) -> None:
    """Live cgroup usage of detached workloads, refreshed like `docker stats`: CPU %
    (100% is one CPU), memory now / limit, its peak, pids / limit, bytes read / written
    (when the workload joined blkio or io).  v1 and v2 cgroups.  Ctrl-C ends it.

    Example: linx-spec stats --no-stream --json web"""
    _stats(names, interval, no_stream, as_json)


@app.command("top")
def top(names: Optional[List[str]] = _StatsNames, interval: str = _Interval, no_stream: bool = _NoStream,
        as_json: bool = _StatsJson) -> None:
    """The same as `stats`.

    Example: linx-spec top -i 1s"""
    _stats(names, interval, no_stream, as_json)


@app.command("kill")
def kill_(name: str = typer.Argument(...), sig: str = typer.Argument("TERM", metavar="[SIGNAL]")) -> None:
    """Send a signal (default TERM) to a detached workload.

    Example: linx-spec kill web HUP"""
    from .detach import kill

    kill(name, _signal_number(sig))


@app.command()
def stop(name: str = typer.Argument(...),
         grace: Optional[str] = typer.Option(None, "--grace", help="SIGTERM -> SIGKILL grace (default: the spec's)."),
         quiet: bool = QuietOpt) -> None:
    """Stop a detached workload: SIGTERM, a grace period, SIGKILL; it is not restarted.

    Example: linx-spec stop --grace 10s web"""
    from .detach import stop as stop_

    _say(f"{name}: {stop_(name, _parse_duration(grace))}", quiet)


@app.command()
def logs(name: str = typer.Argument(...),
         stderr_: bool = typer.Option(False, "--stderr", help="Show stderr instead of stdout."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing what it writes until it ends."),
         tail: Optional[int] = typer.Option(None, "--tail", min=0, max=1_000_000, help="Only the last N lines.")) -> None:
    """Print the output of a detached workload (when its stdout/stderr go to files).

    Example: linx-spec logs -f --tail 20 web"""
    from .detach import follow_log, logs as logs_

    path = logs_(name, "stderr" if stderr_ else "stdout")
    follow_log(name, path, tail, follow, sys.stdout.buffer)


@app.command()
def restart(name: str = typer.Argument(...),
            grace: Optional[str] = typer.Option(None, "--grace", help="SIGTERM -> SIGKILL grace (default: the spec's)."),
            quiet: bool = QuietOpt) -> None:
    """Stop a detached workload (if it runs) and start it again, detached, from the
    plan it was started with.

    Example: linx-spec restart web"""
    from .detach import restart as restart_

    name_, pid = restart_(name, _parse_duration(grace))
    _say(name_, quiet)


@app.command("wait")
def wait_(name: str = typer.Argument(...)) -> None:
    """Wait for a detached workload to end (restarts included); exit with its exit
    code (128+N if killed by signal N).

    Example: linx-spec apply -d job.yaml && linx-spec wait job"""
    from .detach import wait

    raise typer.Exit(wait(name))


@app.command()
def delete(name: str = typer.Argument(...),
           force: bool = typer.Option(False, "--force", "-f", help="Stop it first if it runs.")) -> None:
    """Remove the state of a detached workload.

    Example: linx-spec delete --force web"""
    from .detach import delete as delete_

    delete_(name, force)


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(name: str = typer.Argument(...), command: List[str] = typer.Argument(..., metavar="-- CMD..."),
          tty: bool = typer.Option(False, "--tty", "-t", help="Give the command a pseudo-terminal.")) -> None:
    """Run a command inside a running detached workload: its namespaces, cgroups,
    identity, capabilities, no_new_privs and seccomp filter.

    Example: linx-spec exec -t web -- /bin/sh"""
    from .apply import run_foreground
    from .detach import live_pid
    from .exec import exec_plan
    from .state import StateDir

    if command and command[0] == "--":
        command = command[1:]
    pid = live_pid(name)
    plan = exec_plan(StateDir.open(name).load_plan(), pid, command)
    raise typer.Exit(run_foreground(plan, pty=True if tty else None).status)


from .seccomp.cli import app as _seccomp_app  # noqa: E402 - `linx-spec seccomp export|explain|groups`

app.add_typer(_seccomp_app, name="seccomp")

from .oci.cli import export_app as _export_app, import_app as _import_app  # noqa: E402 - `export oci`, `import oci`

app.add_typer(_export_app, name="export")
app.add_typer(_import_app, name="import")


@app.command()
def gc(dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
       state: bool = typer.Option(False, "--state", help="Also remove the state of exited detached workloads."),
       quiet: bool = QuietOpt) -> None:
    """The leak census: list linx-spec's processes, cgroups, interfaces and state on
    this host, and remove leftovers of dead workloads (never anything in use).

    Example: linx-spec gc --dry-run"""
    from .census import gc as gc_

    report = gc_(dry_run=dry_run, states=state)
    for item, action in report:
        _say(f"{item.kind:<9} {item.obj:<60} {item.note:<28} {action}", quiet)
    if not report:
        _say("nothing of linx-spec's on this host", quiet)


def main() -> None:
    app()
