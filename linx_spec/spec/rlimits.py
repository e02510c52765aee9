"""`rlimits:` resource limits (setrlimit(2)), by name, plus the OOM score.

    rlimits:
      nofile: 1024                 # soft = hard
      nproc: {soft: 100, hard: 200}
      as: 1Gi                      # byte-valued limits take sizes
      cpu: 1m30s                   # cpu takes a duration (whole seconds)
      core: unlimited
      stack: {soft: 8Mi}           # the hard limit stays what the workload inherits
      oom_score_adj: 500           # not an rlimit: /proc/PID/oom_score_adj, set the same way

Each limit is set from the host with prlimit(2) while the child is parked (as
runc does), so lowering works in a user namespace too; plan/rlimits.py resolves
them, host/rlimits.py applies them.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from .base import Model
from .units import DURATION_PATTERN, MAX_SECONDS, SIZE_PATTERN, parse_duration, parse_size

UNLIMITED = "unlimited"
Amount = int | Literal["unlimited"]

# name -> (RLIMIT_* number, kind, what it limits).  The numbers are those of
# asm-generic/resource.h (x86, arm, riscv...; alpha, mips and sparc differ);
# Python's resource module lacks RLIMIT_LOCKS, so the table keeps them, and a
# unit test checks them against the header and the resource module.  Kinds:
# bytes (sizes: 64Mi), count, seconds (cpu: durations, whole seconds),
# microseconds (rttime: durations), nice (0..40; getrlimit(2): the nice
# ceiling is 20 - limit), rtprio (0..99).
RLIMITS: dict[str, tuple[int, str, str]] = {
    "as": (9, "bytes", "Address space (virtual memory) of each process"),
    "core": (4, "bytes", "Largest core dump file; 0 disables core dumps"),
    "cpu": (0, "seconds", "CPU time of each process: SIGXCPU at the soft limit, SIGKILL at the hard"),
    "data": (2, "bytes", "Data segment (heap, private mappings) of each process"),
    "fsize": (1, "bytes", "Largest file a process may write: SIGXFSZ beyond it"),
    "locks": (10, "count", "flock/fcntl locks held (ignored by Linux since 2.4.25)"),
    "memlock": (8, "bytes", "Memory locked in RAM (mlock, SHM_LOCK)"),
    "msgqueue": (12, "bytes", "Bytes in POSIX message queues of the user"),
    "nice": (13, "nice", "Nice ceiling as 20 - limit (0..40): 0 = may not raise priority"),
    "nofile": (7, "count", "Open file descriptors of each process (at most fs.nr_open)"),
    "nproc": (6, "count",
              "Processes (threads) of the workload's uid; not enforced for the host's root"),
    "rss": (5, "bytes", "Resident set size (ignored by Linux since 2.6)"),
    "rtprio": (14, "rtprio", "Highest real-time priority settable without CAP_SYS_NICE (0..99)"),
    "rttime": (15, "microseconds",
               "CPU time under a real-time policy without a blocking call (a duration, e.g. 500ms)"),
    "sigpending": (11, "count", "Signals queued for the user"),
    "stack": (3, "bytes", "Main thread stack size"),
}
_MAX = {"nice": 40, "rtprio": 99}


# rlim_t is 64 bits and all ones is RLIM_INFINITY; Python's prlimit takes a
# signed 64-bit value, so anything this large is `unlimited` in practice.
_TOO_BIG = 2**63


def _amount(kind: str) -> Callable[[object], Amount]:
    def checked(value: object) -> Amount:
        number = parse(value)
        if number != UNLIMITED and number >= _TOO_BIG:
            raise ValueError(f"`{value}` is too large for a limit; use `unlimited`")
        return number

    def parse(value: object) -> Amount:
        if isinstance(value, str) and value.strip().lower() == UNLIMITED:
            return UNLIMITED
        if kind == "bytes":
            return parse_size(value)
        if kind in ("seconds", "microseconds"):
            seconds = parse_duration(value)
            if kind == "microseconds":
                return round(seconds * 1_000_000)
            if seconds != int(seconds):
                raise ValueError(f"`{value}`: cpu time is counted in whole seconds")
            return int(seconds)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number or `unlimited`, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        if kind in _MAX and value > _MAX[kind]:
            raise ValueError(f"{kind} limits go from 0 to {_MAX[kind]}, got {value}")
        return value

    return checked


def _as_number(a: Amount) -> float:
    return float("inf") if a == UNLIMITED else float(a)


class Limit(Model):
    """One resource limit; an omitted side keeps the value the workload inherits."""

    soft: Amount | None = Field(default=None, description="The soft limit, what the kernel enforces. Omitted: the "
                                "one the workload inherits, lowered to fit under `hard`.")
    hard: Amount | None = Field(default=None, description="The hard limit, the ceiling of the soft one. Omitted: "
                                "the one the workload inherits.")

    @model_validator(mode="after")
    def _order(self) -> "Limit":
        if self.soft is None and self.hard is None:
            raise ValueError("give `soft`, `hard` or both")
        if self.soft is not None and self.hard is not None and _as_number(self.soft) > _as_number(self.hard):
            raise ValueError(f"soft limit {self.soft} is above the hard limit {self.hard}")
        return self


def _limit(kind: str) -> Callable[[object], Any]:
    parse = _amount(kind)

    def before(value: object) -> Any:
        if isinstance(value, Limit):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"soft", "hard"}
            if unknown:
                raise ValueError(f"unknown key `{sorted(map(str, unknown))[0]}`; a limit is a value, "
                                 f"or {{soft: ..., hard: ...}}")
            return {k: parse(v) for k, v in value.items() if v is not None}
        one = parse(value)
        return {"soft": one, "hard": one}

    return before


def _schema(kind: str) -> dict[str, Any]:
    if kind == "bytes":
        one: list[dict[str, Any]] = [{"type": "integer", "minimum": 0, "maximum": _TOO_BIG - 1},
                                     {"type": "string", "pattern": SIZE_PATTERN}]
    elif kind in ("seconds", "microseconds"):
        one = [{"type": "number", "minimum": 0, "maximum": MAX_SECONDS}, {"type": "string", "pattern": DURATION_PATTERN}]
    else:
        one = [{"type": "integer", "minimum": 0, "maximum": _MAX.get(kind, _TOO_BIG - 1)}]
    value = [*one, {"const": UNLIMITED}]
    return {"anyOf": [*value, {"type": "null"}, {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {
            "soft": {"anyOf": value, "description": "The soft limit, what the kernel enforces. Omitted: the "
                                                    "one the workload inherits, lowered to fit under `hard`."},
            "hard": {"anyOf": value, "description": "The hard limit, the ceiling of the soft one. Omitted: "
                                                    "the limit the workload inherits."},
        },
    }]}


def _field(name: str) -> Any:
    number, kind, what = RLIMITS[name]
    unit = {"bytes": " Bytes, or a size like 64Mi.", "seconds": " Seconds, or a duration like 1m30s.",
            "microseconds": " A duration (bare numbers are seconds).", "count": "", "nice": "",
            "rtprio": ""}[kind]
    parse = _limit(kind)

    # One positional parameter: pydantic < 2.8 counts parameters, including defaulted
    # ones, and would pass ValidationInfo as a second argument.
    def before(v: object) -> object:
        return None if v is None else parse(v)

    return Annotated[
        Limit | None,
        BeforeValidator(before),
        WithJsonSchema(_schema(kind)),
        Field(default=None, description=f"RLIMIT_{name.upper()}: {what}.{unit} A value sets soft and hard; "
                                        f"`{{soft, hard}}` sets them apart; `unlimited` lifts the limit."),
    ]


class Rlimits(Model):
    """Resource limits by name (setrlimit(2)); each is a value (soft = hard), `unlimited`, or {soft, hard}."""

    as_: _field("as") = Field(default=None, alias="as")  # `as` is a Python keyword
    core: _field("core") = None
    cpu: _field("cpu") = None
    data: _field("data") = None
    fsize: _field("fsize") = None
    locks: _field("locks") = None
    memlock: _field("memlock") = None
    msgqueue: _field("msgqueue") = None
    nice: _field("nice") = None
    nofile: _field("nofile") = None
    nproc: _field("nproc") = None
    rss: _field("rss") = None
    rtprio: _field("rtprio") = None
    rttime: _field("rttime") = None
    sigpending: _field("sigpending") = None
    stack: _field("stack") = None
    oom_score_adj: Annotated[int | None, Field(
        ge=-1000, le=1000,
        description="Not an rlimit: the workload's /proc/PID/oom_score_adj (-1000..1000), written from the host "
        "like the limits. Higher is killed first by the OOM killer; -1000 never. Lowering it below what "
        "the workload inherits may need root (CAP_SYS_RESOURCE).")] = None

    def limits(self) -> dict[str, Limit]:
        """The limits given, by rlimit name (`as`, not `as_`)."""
        out = {}
        for name in RLIMITS:
            value = getattr(self, "as_" if name == "as" else name)
            if value is not None:
                out[name] = value
        return out
