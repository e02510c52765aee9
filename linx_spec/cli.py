"""The `linx-spec` entry point.

A plain `linx-spec ps [--json]` is handled by views.py without typer, and
`linx-spec apply FILE` with -v, -d, -q, --init, --set or --env by fastpath.py:
a cached plan runs straight away (no pydantic, no yaml either, only the
runner); on a miss it validates, plans and stores first.  Everything else goes
to the typer commands in commands.py.  Errors become exit codes in one
function, errors.report(), called here for the fast path and by the commands'
group for everything else.
"""

from __future__ import annotations

import sys


def main() -> None:
    from ._pydantic_plugins import disable

    disable()  # no plugins of other packages in spec validation (and no 17 ms looking for them)
    argv = sys.argv[1:]
    if argv[:1] == ["oci"]:  # the OCI runtime (linx-oci), its own runc-style command line
        from .oci.main import main as oci_main

        sys.exit(oci_main(argv[1:]))
    if argv in (["ps"], ["ps", "--json"]):
        # Without typer either: ps reads only views.py, whatever the count (issue 23).
        from .errors import LinxError, report
        from .views import ps_main

        try:
            sys.exit(ps_main(as_json=argv[1:] == ["--json"]))
        except LinxError as exc:
            sys.exit(report(exc))
    if argv[:1] == ["apply"]:
        from .errors import LinxError, report
        from .fastpath import try_apply

        try:
            code = try_apply(argv[1:])
        except LinxError as exc:
            code = report(exc)
        except KeyboardInterrupt:
            from .apply import INTERRUPTED

            code = INTERRUPTED
        if code is not None:
            sys.exit(code)
    from .commands import main as commands_main

    commands_main()


def __getattr__(name: str):
    # `from linx_spec.cli import app` keeps working (typer's test runner uses it).
    if name == "app":
        from .commands import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
