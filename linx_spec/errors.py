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
OSError on its way out (code that handles errnos still sees the OSError).  The CLI maps each class to its exit code (`EXIT_CODES`) and
shows a traceback only for bugs (anything that is not a LinxError).
"""

from __future__ import annotations

import errno as _errno
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

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
    "EXIT_CODES",
    "errno_name",
    "step_error",
    "touching",
    "touched",
    "host_errors",
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


@dataclass(frozen=True)
class Problem:
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

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(LinxError):
    """The spec is valid but this host cannot honour it."""

    exit_code = 66

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


class ParkedDeathError(StepError):
    """The child died while parked at the checkpoint (e.g. killed from outside)."""

    def __init__(self, step: str, side: str, detail: str, wait_status: int):
        self.wait_status = wait_status
        super().__init__(step, side, 0, detail)


class ProtocolError(LinxError):
    """The agent's reply was not what the protocol says (or the agent vanished)."""

    exit_code = 71

    def __init__(self, expected: str, received: str):
        self.expected = expected
        self.received = received
        super().__init__(f"agent protocol: expected {expected}, received {received}")


class StateError(LinxError):
    """Detached-workload state problems: unknown or duplicate name, stale state."""

    exit_code = 72


EXIT_CODES: dict[type[LinxError], int] = {
    SpecError: SpecError.exit_code,
    PlanError: PlanError.exit_code,
    StepError: StepError.exit_code,
    ExecError: ExecError.exit_code,
    ProtocolError: ProtocolError.exit_code,
    StateError: StateError.exit_code,
}


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


@contextmanager
def host_errors(step: str) -> Iterator[None]:
    """The boundary of a host step: an OSError becomes the step's StepError, once."""
    try:
        yield
    except OSError as exc:
        raise oserror_to_step(step, "host", exc) from None
