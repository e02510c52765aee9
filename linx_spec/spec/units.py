"""Human units used across the spec: sizes, durations, CPU amounts.

Every type parses the human form into one normalized number for the plan:
`ByteSize` -> int bytes, `Duration` -> float seconds, `CpuAmount` -> float CPUs.
Zero and negatives are rejected where they are meaningless (`PositiveByteSize`...).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

# Units as Kubernetes spells them: K/k, M, G, T, P, E (powers of 1000) and
# Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024).  Lowercase m, g... are refused:
# `500m` would mean milli-bytes there.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]i?|ki?|B)?\s*$")
_SIZE_MUL = {
    "": 1, "B": 1,
    "K": 10**3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([KMGTPE]i?|ki?|B)?\s*$"


def parse_size(value: object) -> int:
    """`64Mi` -> 67108864, `1G` -> 10**9, `4096` -> 4096."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like `64Mi`")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if isinstance(value, float):
        raise ValueError("a size must be whole bytes or a string like `1.5Gi`")
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string like `64Mi`")
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"`{value}` is not a size; use bytes or a unit: 512Ki, 64Mi, 1G, 2Gi")
    number, unit = m.group(1), m.group(2) or ""
    result = float(number) * _SIZE_MUL[unit]
    if result != int(result):
        raise ValueError(f"`{value}` is not a whole number of bytes")
    return int(result)


_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
DURATION_PATTERN = r"^\s*((\d+(\.\d+)?)(ms|us|h|m|s))+\s*$|^\s*\d+(\.\d+)?\s*$"


def parse_duration(value: object) -> float:
    """`30s` -> 30.0, `1m30s` -> 90.0, `250ms` -> 0.25, `5` -> 5.0 seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like `1m30s`")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration must be seconds or a string like `1m30s`")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return seconds
    pos, total = 0, 0.0
    mul = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * mul[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"`{value}` is not a duration; use e.g. 30s, 1m30s, 250ms, 2h")
    return total


CPU_PATTERN = r"^\s*(\d+(\.\d+)?|\d+m)\s*$"


def parse_cpu(value: object) -> float:
    """`0.5` -> 0.5 CPUs, `500m` -> 0.5 CPUs, `2` -> 2.0 CPUs."""
    if isinstance(value, bool):
        raise ValueError("a CPU amount must be a number like 0.5 or millicores like `500m`")
    if isinstance(value, (int, float)):
        cpus = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+m", text):
            cpus = int(text[:-1]) / 1000
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            cpus = float(text)
        else:
            raise ValueError(f"`{value}` is not a CPU amount; use e.g. 0.5, 2 or 500m")
    else:
        raise ValueError("a CPU amount must be a number like 0.5 or millicores like `500m`")
    if cpus <= 0:
        raise ValueError(f"a CPU amount must be more than zero, got {value}")
    return cpus


def _positive(fn):
    def check(value: object):
        result = fn(value)
        if result <= 0:
            raise ValueError(f"must be more than zero, got {value!r}")
        return result

    return check


_size_schema = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": SIZE_PATTERN}]}
_psize_schema = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]}
_dur_schema = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}]}
_cpu_schema = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": CPU_PATTERN}]}

ByteSize = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(_size_schema)]
PositiveByteSize = Annotated[int, BeforeValidator(_positive(parse_size)), WithJsonSchema(_psize_schema)]
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_dur_schema)]
PositiveDuration = Annotated[float, BeforeValidator(_positive(parse_duration)), WithJsonSchema(_dur_schema)]
CpuAmount = Annotated[float, BeforeValidator(parse_cpu), WithJsonSchema(_cpu_schema)]

__all__ = [
    "ByteSize", "PositiveByteSize", "Duration", "PositiveDuration", "CpuAmount",
    "parse_size", "parse_duration", "parse_cpu", "Field", "PlainSerializer",
]
