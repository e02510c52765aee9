"""The one exception tree of linx-spec.

    LinxError                     base; never raised itself
     +-- SpecError                the YAML is wrong: file, line, column, field   (exit 65)
     |    carries .problems: [Problem(file, line, column, field, message)]
     +-- PlanError                a valid spec this host cannot honour          (exit 66)
     |                            (no cgroup controller, not root, ...) + remedy
     +-- StepError                a checkpoint step failed: step, side, errno,  (exit 70)
     |    |                       the object touched; everything was rolled back
     |    +-- ExecError           step `exec`: the program could not be started (exit 127)
     |    +-- ParkedDeathError    the child died while parked at the checkpoint  (exit 70)
     +-- ProtocolError            the agent said something unexpected: expected (exit 71)
     |                            vs received (or the agent died)
     +-- StateError               detached-workload state: unknown name, taken  (exit 72)

One message shape everywhere, step first:
    cgroup (host): write memory.max in /sys/fs/cgroup/memory/linx/web: EINVAL (Invalid argument)

OSError is translated once, at the boundary of a step, never at every call
site: the runner runs each host step (and the undo it registers) inside
`host_errors(step)`; inside, code names the object it touches with
`with touching("write memory.max", directory):`, which only labels an
OSError on its way out (code that handles errnos still sees the OSError).
Each class carries its exit code (`exit_code`, the one table) and what it
means (`meaning`, from which the CLI's help text is made: `exit_code_help()`).
The CLI has one handler, `report()`, and shows a traceback only for bugs
(anything that is not a LinxError).  `to_record`/`from_record` carry an error
across a process boundary as data (JSON), never as code.
"""

from __future__ import annotations

import errno as _errno
import os
import sys

from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = [
    "LinxError",
    "SpecError",
    "Problem",
    "PlanError",
    "StepError",
    "ExecError",
    "ParkedDeathError",
    "ProtocolError",
    "StateError",
    "errno_name",
    "exit_code_help",
    "from_record",
    "report",
    "step_error",
    "touching",
    "touched",
    "host_errors",
    "to_record",
]


def errno_name(err: int) -> str:
    """`EINVAL (Invalid argument)` for 22; `errno 0` when there is none."""
    if not err:
        return "errno 0"
    name = _errno.errorcode.get(err, f"errno {err}")
    return f"{name} ({os.strerror(err)})"


class LinxError(Exception):
    """Base of every error linx-spec raises on purpose."""

    exit_code = 1
    meaning = ""  # for the help's exit-code text; "" on a class that shares its parent's code
    fields: tuple[str, ...] = ()  # the constructor's arguments, kept as attributes (to_record)


class Problem(Record):
    """One thing wrong in one spec file, pointing at the text."""

    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    field: str  # dotted path, e.g. `process.command`; "" for the document
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(LinxError):
    """The spec text is wrong.  Carries every problem found, not only the first."""

    exit_code = 65  # EX_DATAERR
    meaning = "spec error"
    fields = ("problems",)

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(LinxError):
    """The spec is valid but this host cannot honour it."""

    exit_code = 66
    meaning = "plan error (host cannot honour the spec)"
    fields = ("message", "remedy", "field")

    def __init__(self, message: str, remedy: str = "", field: str = ""):
        self.message = message
        self.remedy = remedy
        self.field = field
        text = f"{field}: {message}" if field else message
        if remedy:
            text += f" (remedy: {remedy})"
        super().__init__(text)


class StepError(LinxError):
    """A checkpoint step failed.  The child never ran; what was created is gone."""

    exit_code = 70  # EX_SOFTWARE
    meaning = "step error (everything rolled back)"
    fields = ("step", "side", "errno", "detail", "obj")

    def __init__(self, step: str, side: str, errno: int, detail: str, obj: str = ""):
        self.step = step
        self.side = side
        self.errno = errno
        self.detail = detail
        self.obj = obj
        text = f"{step} ({side}): {detail}"
        if obj:
            text += f" in {obj}"
        if errno:
            text += f": {errno_name(errno)}"
        super().__init__(text)


class ExecError(StepError):
    """The program could not be executed (step `exec`)."""

    exit_code = 127  # like a shell: command not found / not executable
    meaning = "program could not be executed"


class ParkedDeathError(StepError):
    """The child died while parked at the checkpoint (e.g. killed from outside)."""

    fields = ("step", "side", "detail", "wait_status")

    def __init__(self, step: str, side: str, detail: str, wait_status: int):
        self.wait_status = wait_status
        super().__init__(step, side, 0, detail)


class ProtocolError(LinxError):
    """The agent's reply was not what the protocol says (or the agent vanished)."""

    exit_code = 71
    meaning = "agent protocol error"
    fields = ("expected", "received")

    def __init__(self, expected: str, received: str):
        self.expected = expected
        self.received = received
        super().__init__(f"agent protocol: expected {expected}, received {received}")


class StateError(LinxError):
    """Detached-workload state problems: unknown or duplicate name, stale state."""

    exit_code = 72
    meaning = "workload state error"
    fields = ("message",)

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def _tree() -> list[type[LinxError]]:
    """Every class of the tree, depth first in definition order."""
    out: list[type[LinxError]] = []

    def walk(cls: type[LinxError]) -> None:
        for sub in cls.__subclasses__():
            out.append(sub)
            walk(sub)

    walk(LinxError)
    return out


def exit_code_help() -> str:
    """The exit-code sentence of the CLI's help, made from the tree."""
    codes: dict[int, str] = {}
    for cls in _tree():
        if cls.meaning and cls.exit_code not in codes:
            codes[cls.exit_code] = cls.meaning
    return ("Exit codes: the workload's own (128+N if killed by signal N) for apply; 2 usage; "
            + "; ".join(f"{code} {codes[code]}" for code in sorted(codes)) + ".")


def report(exc: LinxError, file: TextIO | None = None) -> int:
    """The CLI's one handler: say what went wrong (a spec error is already
    `file:line:column: field: message`) and return the class's exit code."""
    print(str(exc) if isinstance(exc, SpecError) else f"linx-spec: {exc}", file=file or sys.stderr)
    return exc.exit_code


def to_record(exc: LinxError) -> dict[str, Any]:
    """exc as JSON-able data: its class name and constructor arguments."""
    args: list[Any] = [getattr(exc, f) for f in type(exc).fields]
    if isinstance(exc, SpecError):
        args = [[[getattr(p, f) for f in Problem._fields] for p in exc.problems]]
    return {"class": type(exc).__name__, "args": args}


_MAX_RECORD_TEXT = 1 << 16


def from_record(record: Any) -> LinxError:
    """The inverse of to_record, for data read from another process: anything that
    does not fit the tree becomes a ProtocolError naming what arrived."""
    classes = {cls.__name__: cls for cls in _tree() if cls.fields}
    cls = classes.get(record.get("class")) if isinstance(record, dict) else None
    args = record.get("args") if cls is not None else None
    if (cls is not None and isinstance(args, list) and len(args) == len(cls.fields)
            and all(isinstance(a, (str, int, list)) and len(str(a)) < _MAX_RECORD_TEXT for a in args)):
        try:
            if cls is SpecError:
                return SpecError([Problem(*p) for p in args[0]])
            return cls(*args)
        except (TypeError, ValueError):
            pass
    return ProtocolError("an error record", repr(record)[:200])


def step_error(step: str, side: str, exc: OSError, what: str, obj: str = "") -> StepError:
    """Translate an OSError at the boundary of a step, once."""
    return StepError(step, side, exc.errno or 0, what, obj or (exc.filename or ""))


class touching:
    """`with touching(what, obj):` names what a host step was doing and the object
    (path, interface, pid) when an OSError leaves the block.  The innermost label
    wins; the error itself passes through unchanged until `host_errors` turns it
    into the step's StepError."""

    __slots__ = ("what", "obj")

    def __init__(self, what: str, obj: str = ""):
        self.what = what
        self.obj = obj

    def __enter__(self) -> "touching":
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        if isinstance(exc, OSError) and "linx_touched" not in vars(exc):
            exc.linx_touched = (self.what, self.obj)  # type: ignore[attr-defined]
        return False


def touched(err: int, what: str, obj: str = "") -> OSError:
    """An OSError for a failure seen without a failing call (a device gone meanwhile),
    labelled as `touching` would."""
    exc = OSError(err, os.strerror(err))
    exc.linx_touched = (what, obj)  # type: ignore[attr-defined]
    return exc


def oserror_to_step(step: str, side: str, exc: OSError) -> StepError:
    """The StepError of an OSError that left a step: what was touched (see
    `touching`), and the kernel's own words when netlink gave some."""
    what, obj = vars(exc).get("linx_touched", (exc.strerror or "failed", ""))
    kernel = vars(exc).get("kernel_message", "")
    detail = what + (f" (kernel: {kernel})" if kernel else "")
    return StepError(step, side, exc.errno or 0, detail, obj or (exc.filename or ""))


class host_errors:
    """`with host_errors(step):` the boundary of a host step: an OSError becomes
    the step's StepError, once.  (A class, not @contextmanager: contextlib is not
    on a cached apply's path.)"""

    __slots__ = ("step",)

    def __init__(self, step: str):
        self.step = step

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ, exc, tb) -> bool:
        if isinstance(exc, OSError):
            raise oserror_to_step(self.step, "host", exc) from None
        return False
