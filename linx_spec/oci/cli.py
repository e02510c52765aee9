"""`linx-spec export oci SPEC -o DIR` and `linx-spec import oci config.json -o SPEC.yaml`.

Errors go up to the main app's one handler (commands._Group), like every command's."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

export_app = typer.Typer(no_args_is_help=True, help="Write a spec in another format: `export oci` (an OCI bundle).\n\n"
                         "Example: linx-spec export oci specs/web-server.yaml -o bundle")
import_app = typer.Typer(no_args_is_help=True, help="Read another format into a spec: `import oci` (config.json).\n\n"
                         "Example: linx-spec import oci bundle/config.json -o web.yaml")

MAX_CONFIG_BYTES = 4 * 2**20  # a config.json is a few KiB; seccomp profiles make it ~100 KiB
EX_CANTCREAT = 73

_Lossy = typer.Option(False, "--lossy", help="Leave out what the other side cannot express, with a warning "
                      "each (without it: an error listing them).")


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        print(f"linx-spec: write {path}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(EX_CANTCREAT) from None


def _warn(losses) -> None:
    from .lossy import warnings

    for line in warnings(losses):
        print(f"linx-spec: {line}", file=sys.stderr)


@export_app.command("oci")
def export_oci(
    spec_file: str = typer.Argument(..., metavar="SPEC.yaml", help="The spec file (- for standard input)."),
    output: str = typer.Option(..., "-o", "--output", metavar="DIR", help="The bundle directory (created if "
                               "missing); config.json is written there."),
    lossy: bool = _Lossy,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: path.to.field=value."),
) -> None:
    """Write an OCI runtime bundle's config.json (runtime-spec 1.0.2-dev) that runs the spec's workload.

    Example: linx-spec export oci specs/untrusted-runner.yaml -o bundle && runc run --bundle bundle c1"""
    from ..load import load_file
    from ..plan import build_plan
    from .export import export_config
    from .lossy import ExportLossError

    spec = load_file(spec_file, overrides=set_ or [])
    base = os.path.dirname(os.path.abspath(spec_file)) if spec_file != "-" else os.getcwd()
    plan = build_plan(spec, source=spec_file, base_dir=base)
    exported = export_config(spec, plan, base)
    if exported.losses and not lossy:
        raise ExportLossError(exported.losses)
    _warn(exported.losses)
    try:
        os.makedirs(output, mode=0o755, exist_ok=True)
        if exported.rootfs_dir:
            os.makedirs(os.path.join(output, exported.rootfs_dir), mode=0o755, exist_ok=True)
    except OSError as exc:
        print(f"linx-spec: create {output}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(EX_CANTCREAT) from None
    _write(os.path.join(output, "config.json"), json.dumps(exported.config, indent=2) + "\n")
    print(f"linx-spec: {os.path.join(output, 'config.json')}", file=sys.stderr)


def _escape(value):
    # The loader expands ${VAR}; text from a config is literal.
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def spec_yaml(spec_data: dict, source: str) -> str:
    """The imported spec as YAML text, checked by the same loader as any spec (SpecError if not valid)."""
    import yaml

    from ..load import load_text

    text = f"# imported from {source} by linx-spec import oci\n" + yaml.safe_dump(
        _escape(spec_data), sort_keys=False, default_flow_style=None, width=100)
    load_text(text, f"{source} (imported)", env={})
    return text


def read_config(path: str):
    from ..errors import Problem, SpecError

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise SpecError([Problem(path, 0, 0, "", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SpecError([Problem(path, 0, 0, "", f"larger than {MAX_CONFIG_BYTES} bytes; not a config.json")])
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(path, 0, 0, "", f"not UTF-8 text: {exc.reason}")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError([Problem(path, exc.lineno, exc.colno, "", f"not JSON: {exc.msg}")]) from None
    except RecursionError:
        raise SpecError([Problem(path, 0, 0, "", "nested too deeply")]) from None


@import_app.command("oci")
def import_oci(
    config: str = typer.Argument(..., metavar="config.json", help="An OCI bundle's config.json (or its directory)."),
    output: str = typer.Option(..., "-o", "--output", metavar="SPEC.yaml", help="Where to write the spec (- for "
                               "standard output)."),
    lossy: bool = _Lossy,
) -> None:
    """Write a linx-spec spec that runs what an OCI config.json describes.

    Example: linx-spec import oci --lossy bundle/config.json -o back.yaml"""
    from .import_ import import_config
    from .lossy import import_error

    if os.path.isdir(config):
        config = os.path.join(config, "config.json")
    imported = import_config(read_config(config), config, os.path.dirname(os.path.abspath(config)))
    if imported.losses and not lossy:
        raise import_error(config, imported.losses)
    text = spec_yaml(imported.spec, config)
    _warn(imported.losses)
    if output == "-":
        sys.stdout.write(text)
    else:
        _write(output, text)
