"""What `ps` and `status` show of a detached workload: its state.json read as
data, liveness by pid *and* start time, and the table.

Kept to the standard library's cheapest modules and rundir.py (the directory
check): `linx-spec ps` reads only this for every workload (issue 23: 500 of
them under 200 ms, a cold interpreter included), never a plan, never a
per-workload import.  state.py builds on it for everything else.

    classify(name, state, read_end) -> View   running | starting | restarting |
                                              exited | failed | dead
    all_views(root) -> [View]                 every NAME/state.json under root
"""

from __future__ import annotations

import os
import time

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_STATE_BYTES = 1 << 20  # a state.json larger than this is refused unread
MAX_END_BYTES = 64  # the agent's `exit` file: "exited N" / "signaled N [core]"
# "ending": the workload has ended and its supervisor, alive, is recording how
# (usage, undo) and whether it restarts: not over yet for `wait` or `logs -f`.
ACTIVE = ("running", "starting", "restarting", "ending")


def __getattr__(name: str):
    # NAME_RE compiled on first use: lifecycle.py imports end_words on a cached
    # apply's path, which has no other use for `re` (~3 ms of its start)
    if name == "NAME_RE":
        return _name_re()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _name_re():
    global _NAME_RE
    if _NAME_RE is None:
        import re

        _NAME_RE = re.compile(_NAME_PATTERN)
    return _NAME_RE


_NAME_RE = None


def end_words(exit_code: int | None, signo: int | None) -> str:
    """`exit code N` or `killed by signal N`: the one wording of how a workload ended."""
    return f"exit code {exit_code}" if signo is None else f"killed by signal {signo}"


def pid_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has ended
        return None
    return int(fields[19])


def _pid(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 1 << 22 else None  # PID_MAX_LIMIT


def alive(pid: object, start: object) -> bool:
    pid = _pid(pid)
    return pid is not None and type(start) is int and pid_start_time(pid) == start


class View:
    """What `ps` and `status` show."""

    __slots__ = ("name", "status", "detail", "state")

    def __init__(self, name: str, status: str, detail: str, state: dict):
        self.name = name
        self.status = status  # running | starting | restarting | ending | exited | failed | dead
        self.detail = detail
        self.state = state

    def __repr__(self) -> str:
        return f"View({self.name!r}, {self.status!r}, {self.detail!r})"


def read_bounded(dir_fd: int, name: str, limit: int) -> bytes:
    """A regular file relative to a checked directory, no symlink followed, at
    most limit bytes (ValueError beyond); OSError when absent."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{name} is larger than {limit} bytes")
    return data


def parse_state(raw: bytes) -> dict:
    import json  # here: lifecycle.py imports this module on a cached apply's path, json ~4 ms with re

    state = json.loads(raw)
    if not isinstance(state, dict):
        raise ValueError("not a JSON object")
    return state


def parse_end(text: str) -> tuple[str, int] | None:
    """The agent's `exit` file: ("exited", code) or ("signaled", signo); None
    when empty; ValueError when it is anything else."""
    words = text.split()
    if not words:
        return None
    if words[0] not in ("exited", "signaled") or len(words) not in (2, 3) or not words[1].isdigit() \
            or (len(words) == 3 and words[2] != "core") or int(words[1]) > 255:
        raise ValueError(f"a malformed exit record {text[:40]!r}")
    return words[0], int(words[1])


def classify(name: str, state: dict, read_end) -> View:
    """The status from the recorded one and what the kernel says now; read_end()
    -> the `exit` file's text ("" when absent), read only when it matters."""
    status = state.get("status", "dead")
    if not isinstance(status, str):
        return View(name, "dead", "a malformed state (status)", state)
    if status in ("running", "starting"):
        if alive(state.get("host_pid"), state.get("host_pid_start")):
            return View(name, "running", f"pid {state['host_pid']}", state)
        if alive(state.get("supervisor_pid"), state.get("supervisor_pid_start")):
            # Its supervisor lives and writes the outcome next (a restart, or the
            # end with its usage): before an `exit` record, which may be a
            # lingering agent's of an earlier run.
            if status == "starting":
                return View(name, "starting", "", state)
            return View(name, "ending", "ended; its supervisor is recording how", state)
        try:
            end = parse_end(read_end())
        except (OSError, ValueError) as exc:
            return View(name, "dead", f"its exit record is unreadable ({exc})", state)
        if end is not None:
            kind, code = end
            fields = {"exit_code": code, "signal": None} if kind == "exited" else {"exit_code": None, "signal": code}
            words = end_words(code, None) if kind == "exited" else end_words(None, code)
            return View(name, "exited", words, state | fields)
        return View(name, "dead", "the workload and its supervisor are gone (killed?)", state)
    detail = state.get("detail", "")
    detail = detail if isinstance(detail, str) else ""
    if status == "restarting":
        if alive(state.get("supervisor_pid"), state.get("supervisor_pid_start")):
            return View(name, "restarting", detail, state)
        return View(name, "dead", "its supervisor is gone during a restart backoff (killed?)", state)
    return View(name, status, detail, state)


def view_in(root_fd: int, name: str) -> View | None:
    """One workload's view, its directory found relative to the checked root's
    fd; None when there is no workload of that name (no directory, no state.json)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError:
        return None  # absent, or not a directory (supervisor.sock, a planted symlink)
    try:
        try:
            state = parse_state(read_bounded(fd, "state.json", MAX_STATE_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return View(name, "dead", f"state of `{name}` is unreadable: {exc}", {})

        def read_end() -> str:
            try:
                return read_bounded(fd, "exit", MAX_END_BYTES).decode("ascii")
            except FileNotFoundError:
                return ""
            except UnicodeDecodeError as exc:
                raise ValueError(str(exc)) from None

        return classify(name, state, read_end)
    finally:
        os.close(fd)


def all_views() -> list[View]:
    """Every detached workload of the runtime directory (none when it does not exist)."""
    from . import rundir

    root_fd = rundir.open_root(create=False)
    if root_fd is None:
        return []
    try:
        views = (view_in(root_fd, n) for n in sorted(os.listdir(root_fd)) if _name_re().match(n))
        return [v for v in views if v is not None]
    finally:
        os.close(root_fd)


def format_ps(views: list[View]) -> str:
    rows = [("NAME", "STATUS", "PID", "STARTED", "RESTARTS", "DETAIL")]
    for v in views:
        st = v.state
        started = st.get("started")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) \
            if isinstance(started, (int, float)) and not isinstance(started, bool) and started > 0 else "-"
        rows.append((v.name, v.status, str(st.get("host_pid", "-")) if v.status == "running" else "-", started,
                     str(st.get("restarts", 0)), v.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)


def ps_main(as_json: bool) -> int:
    """`linx-spec ps [--json]` without the command framework (cli.py's fast path)."""
    import sys

    views = all_views()
    try:
        if as_json:
            import json

            print(json.dumps([record(v) for v in views], indent=2, default=str))
        else:
            print(format_ps(views))
        sys.stdout.flush()
    except BrokenPipeError:  # `ps | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def record(v: View) -> dict:
    """`ps --json` / `status --json`: the state file's fields, then the view's
    status and detail (what is true now, not what was recorded)."""
    return {**v.state, "name": v.name, "status": v.status, "detail": v.detail}
