"""`linx-oci` (and `linx-spec oci ...`): the OCI runtime command line, as runc's.

    linx-oci [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] [--debug] COMMAND ...
      create --bundle B [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
      run [--detach] (create's flags) ID     create, start, wait; exits with the container's code
      start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
      list [--format table|json] [-q] | ps [--format table|json] ID
      exec [--process F | ARGS] [--detach] [--pid-file F] [--console-socket S] [--tty] ... ID [CMD...]
      update [--resources FILE|-] [--memory N] [--pids-limit N] [--cpu-quota N] ... ID
      pause ID | resume ID | events [--stats] [--interval 5s] ID
      features | --version

Flags are parsed as urfave/cli (runc's parser) does: `--flag value`, `--flag=value`,
one or two dashes, flags before the positional arguments (also accepted after them).
Global flags a shim passes that mean nothing here (--debug, --criu, --rootless)
are accepted.  Only what the command needs is imported: state, kill, list and
ps start without pydantic or yaml.
"""

from __future__ import annotations

import json
import os
import sys

VERSION_TEXT = "linx-oci version {v}\nspec: 1.0.2-dev\n"
EX_USAGE = 2

GLOBAL_VALUE = {"root", "log", "log-format", "criu", "rootless"}
GLOBAL_BOOL = {"debug", "systemd-cgroup", "help", "h", "version", "v"}

# command -> (flags with a value, boolean flags, aliases)
COMMANDS: dict[str, tuple[set[str], set[str], dict[str, str]]] = {
    "create": ({"bundle", "pid-file", "console-socket", "preserve-fds"}, {"no-pivot", "no-new-keyring"},
               {"b": "bundle"}),
    "run": ({"bundle", "pid-file", "console-socket", "preserve-fds"}, {"no-pivot", "no-new-keyring", "detach"},
            {"b": "bundle", "d": "detach"}),
    "start": (set(), set(), {}),
    "state": (set(), set(), {}),
    "kill": (set(), {"all"}, {"a": "all"}),
    "delete": (set(), {"force"}, {"f": "force"}),
    "list": ({"format"}, {"quiet"}, {"f": "format", "q": "quiet"}),
    "ps": ({"format"}, set(), {"f": "format"}),
    "exec": ({"process", "pid-file", "console-socket", "cwd", "user", "env", "cap", "preserve-fds",
              "process-label", "apparmor", "cgroup"},
             {"detach", "tty", "no-new-privs", "ignore-paused"},
             {"p": "process", "d": "detach", "t": "tty", "u": "user", "e": "env", "c": "cap"}),
    "features": (set(), set(), {}),
    # oci/cgroups.py
    "update": ({"resources", "memory", "memory-swap", "memory-reservation", "cpu-share", "cpu-period", "cpu-quota",
                "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "cpu-burst", "cpu-rt-period",
                "cpu-rt-runtime", "cpu-idle", "kernel-memory", "kernel-memory-tcp", "l3-cache-schema",
                "mem-bw-schema"}, set(), {"r": "resources"}),
    "pause": (set(), set(), {}),
    "resume": (set(), set(), {}),
    "events": ({"interval"}, {"stats"}, {}),
}
REPEATED = {"env", "cap", "cgroup"}


class Usage(Exception):
    pass


def _flag(token: str) -> tuple[str, str | None] | None:
    if not token.startswith("-") or token in ("-", "--"):
        return None
    name, eq, value = token.lstrip("-").partition("=")
    return name, (value if eq else None)


def _value(argv: list[str], i: int, name: str, value: str | None) -> tuple[str, int]:
    """A flag's value: given with `=`, or the next word; -> (value, index of the last word used)."""
    if value is not None:
        return value, i
    if i + 1 >= len(argv):
        raise Usage(f"flag --{name} needs a value")
    return argv[i + 1], i + 1


def parse_global(argv: list[str]) -> tuple[dict, list[str]]:
    opts: dict = {}
    i = 0
    while i < len(argv):
        f = _flag(argv[i])
        if f is None:
            break
        name, value = f
        if name in GLOBAL_VALUE:
            opts[name], i = _value(argv, i, name, value)
        elif name in GLOBAL_BOOL:
            opts[name] = value not in ("false", "0")
        else:
            raise Usage(f"unknown global flag -{'-' if len(name) > 1 else ''}{name}")
        i += 1
    return opts, argv[i:]


def parse_command(cmd: str, argv: list[str]) -> tuple[dict, list[str]]:
    with_value, booleans, aliases = COMMANDS[cmd]
    opts: dict = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            args += argv[i + 1:]
            break
        f = _flag(token)
        # After the id, exec's own command line is the program's (its flags included).
        if f is None or (cmd == "exec" and len(args) >= 1):
            args.append(token)
            i += 1
            continue
        name, value = f
        name = aliases.get(name, name)
        if name in with_value:
            value, i = _value(argv, i, name, value)
            if name in REPEATED:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value
        elif name in booleans:
            opts[name] = value not in ("false", "0")
        elif name in ("help", "h"):
            raise Usage(f"usage: see `linx-oci --help`")
        else:
            raise Usage(f"{cmd}: unknown flag {token}")
        i += 1
    return opts, args


def _one_id(cmd: str, args: list[str], extra: int = 0) -> str:
    if not 1 <= len(args) <= 1 + extra:
        raise Usage(f"{cmd}: expected the container id" + (f" and at most {extra} more argument" if extra else ""))
    return args[0]


def parse_signal(text: str) -> int:
    import signal

    t = text.upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = t if t.startswith("SIG") else "SIG" + t
        if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
            base = signal.SIGRTMIN if name.startswith("SIGRTMIN") else signal.SIGRTMAX
            off = name[8:]
            try:
                n = base + int(off) if off else base
            except ValueError:
                n = 0
            if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
                return n
        sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(sig, signal.Signals):
            return int(sig)
    raise Usage(f"kill: unknown signal `{text[:40]}`")


HELP = __doc__.split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g, rest = parse_global(argv)
        if g.get("version"):
            from importlib.metadata import PackageNotFoundError, version

            try:
                v = version("linx-spec")
            except PackageNotFoundError:
                v = "0+unknown"
            sys.stdout.write(VERSION_TEXT.format(v=v))
            return 0
        if g.get("help") or not rest:
            print(HELP)
            return 0 if g.get("help") else EX_USAGE
        cmd, rest = rest[0], rest[1:]
        if cmd not in COMMANDS:
            raise Usage(f"unknown command `{cmd[:40]}`")
        opts, args = parse_command(cmd, rest)
        if g.get("log-format", "text") not in ("text", "json"):
            raise Usage("--log-format: text or json")
    except Usage as exc:
        print(f"linx-oci: {exc}", file=sys.stderr)
        return EX_USAGE
    from .runtime import Log

    log = Log(g.get("log"), g.get("log-format", "text"))
    if g.get("systemd-cgroup"):
        # Refused, not ignored: the engine would otherwise expect a systemd scope that is not there.
        log("error", "--systemd-cgroup is not supported: linx-oci manages cgroupfs directly (on this hybrid host "
                     "the v1 hierarchies, as `linx-spec apply`); configure the engine with cgroupfs "
                     "(containerd: SystemdCgroup = false; podman: --cgroup-manager=cgroupfs)")
        return 66
    try:
        return _dispatch(cmd, opts, args, g, log)
    except Usage as exc:
        print(f"linx-oci: {exc}", file=sys.stderr)
        return EX_USAGE


def _dispatch(cmd: str, opts: dict, args: list[str], g: dict, log) -> int:
    from ..errors import LinxError
    from .record import Root

    root = Root(g.get("root"))
    try:
        if cmd == "features":
            from .features import features

            print(json.dumps(features(), indent=2))
            return 0
        if cmd == "list":
            return _list(root, opts)
        if cmd in ("create", "run"):
            from . import runtime

            if "bundle" not in opts:
                opts["bundle"] = os.getcwd()
            if opts.get("preserve-fds", "0") != "0":
                raise Usage(f"{cmd}: --preserve-fds is not supported (the container gets fds 0-2 only)")
            c = root.container(_one_id(cmd, args))
            if cmd == "run":
                return runtime.run(c, opts["bundle"], pid_file=opts.get("pid-file"),
                                   console_socket=opts.get("console-socket"), detach=bool(opts.get("detach")), log=log)
            return runtime.create(c, opts["bundle"], pid_file=opts.get("pid-file"),
                                  console_socket=opts.get("console-socket"), log=log)
        if cmd == "exec":
            from .exec_ import exec_command

            if not args:
                raise Usage("exec: expected the container id")
            return exec_command(root.container(args[0]), args[1:], opts, log)
        cid = _one_id(cmd, args, 1 if cmd == "kill" else 0)
        c = root.container(cid)
        if cmd == "state":
            from .record import state_json

            print(json.dumps(state_json(c.load()), indent=2))
        elif cmd == "start":
            from .runtime import start

            start(c)
        elif cmd == "kill":
            from .runtime import kill

            kill(c, parse_signal(args[1]) if len(args) > 1 else 15, bool(opts.get("all")))
        elif cmd == "delete":
            from .runtime import delete

            delete(c, bool(opts.get("force")), log)
        elif cmd == "ps":
            return _ps(c, opts)
        elif cmd in ("update", "pause", "resume", "events"):
            from .cgroups import command

            return command(cmd, c, opts)
        return 0
    except LinxError as exc:
        log("error", str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _list(root, opts: dict) -> int:
    from ..errors import StateError
    from .record import state_json

    states = []
    for cid in root.ids():
        try:
            states.append(state_json(root.container(cid).load()))
        except StateError:
            continue
    fmt = opts.get("format", "table")
    if opts.get("quiet"):
        print("\n".join(s["id"] for s in states))
    elif fmt == "json":
        print(json.dumps(states))
    elif fmt == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root")
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        print("\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    else:
        raise Usage("list: --format table or json")
    return 0


def _ps(c, opts: dict) -> int:
    from .record import cgroup_pids

    pids = cgroup_pids(c.load())
    fmt = opts.get("format", "table")
    if fmt == "json":
        print(json.dumps(pids))
        return 0
    if fmt != "table":
        raise Usage("ps: --format table or json")
    import subprocess

    out = subprocess.run(["ps", "-ef"], capture_output=True, text=True, check=False).stdout.splitlines()
    if not out:
        return 1
    print(out[0])
    for line in out[1:]:
        fields = line.split()
        if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) in pids:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
