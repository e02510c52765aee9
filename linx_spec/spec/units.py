"""Human units used across the spec: sizes, durations, CPU amounts.

Every type parses the human form into one normalized number for the plan:
`ByteSize` -> int bytes, `Duration` -> float seconds, `CpuAmount` -> float CPUs.
Zero and negatives are rejected where they are meaningless (`PositiveByteSize`...).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
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

# Bounds at the kernel's own limits (issue 14 item 9).
# Sizes: the cgroup files, rlimits and tmpfs take a signed 64-bit byte count at most.
MAX_BYTES = 2**63 - 1
# Durations: a bound any timer takes (100 years; CLOCK_MONOTONIC's timespec and
# Python's threading and signal timers hold it), far beyond any real time limit.
MAX_SECONDS = 100 * 365.25 * 86400
# CPUs: CONFIG_NR_CPUS is at most 8192 (MAXSMP): no cgroup can use more CPU time.
MAX_CPUS = 8192
_DIGITS = 40  # a longer number is no size, duration or CPU amount anyone means


def parse_size(value: object) -> int:
    """`64Mi` -> 67108864, `1G` -> 10**9, `4096` -> 4096."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like `64Mi`")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return _bytes_bounded(value, value)
    if isinstance(value, float):
        raise ValueError("a size must be whole bytes or a string like `1.5Gi`")
    if not isinstance(value, str):
        raise ValueError("a size must be a number of bytes or a string like `64Mi`")
    m = _SIZE_RE.match(value) if len(value) <= 2 * _DIGITS else None
    if not m:
        raise ValueError(f"`{value[:2 * _DIGITS]}` is not a size; use bytes or a unit: 512Ki, 64Mi, 1G, 2Gi")
    number, unit = m.group(1), m.group(2) or ""
    result = Fraction(number) * _SIZE_MUL[unit]  # exact: no float rounding of large byte counts
    if result.denominator != 1:
        raise ValueError(f"`{value}` is not a whole number of bytes")
    return _bytes_bounded(int(result), value)


def _bytes_bounded(n: int, value: object) -> int:
    value = _show(value)
    if n > MAX_BYTES:
        raise ValueError(f"`{value}` is too large: more than {MAX_BYTES} bytes (2^63-1, about 8Ei), the most the kernel takes")
    return n


_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
DURATION_PATTERN = r"^\s*((\d+(\.\d+)?)(ms|us|h|m|s))+\s*$|^\s*\d+(\.\d+)?\s*$"


def parse_duration(value: object) -> float:
    """`30s` -> 30.0, `1m30s` -> 90.0, `250ms` -> 0.25, `5` -> 5.0 seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like `1m30s`")
    if isinstance(value, (int, float)):
        return _seconds_bounded(value, value)
    if not isinstance(value, str):
        raise ValueError("a duration must be seconds or a string like `1m30s`")
    text = value.strip()
    if len(text) > 4 * _DIGITS:
        raise ValueError(f"`{text[:40]}...` is not a duration; use e.g. 30s, 1m30s, 250ms, 2h")
    if re.fullmatch(r"\d+(\.\d+)?", text):  # float() would also take `inf`, `nan`, `1e9`, `١`
        return _seconds_bounded(float(text), value)
    pos, total = 0, 0.0
    mul = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * mul[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"`{value}` is not a duration; use e.g. 30s, 1m30s, 250ms, 2h")
    return _seconds_bounded(total, value)


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, int) or value.bit_length() < 200 \
        else "a number of %d bits" % value.bit_length()
    return text if len(text) <= 40 else text[:40] + "..."


def _seconds_bounded(seconds: float, value: object) -> float:
    value = _show(value)
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > MAX_SECONDS:
        raise ValueError(f"duration {value} is more than 100 years ({MAX_SECONDS:.0f}s)")
    seconds = float(seconds)
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite number of seconds, got {value}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {value} is more than 100 years ({MAX_SECONDS:.0f}s)")
    return seconds


CPU_PATTERN = r"^\s*(\d+(\.\d+)?|\d+m)\s*$"


def parse_cpu(value: object) -> float:
    """`0.5` -> 0.5 CPUs, `500m` -> 0.5 CPUs, `2` -> 2.0 CPUs."""
    if isinstance(value, bool):
        raise ValueError("a CPU amount must be a number like 0.5 or millicores like `500m`")
    if isinstance(value, int) and value > MAX_CPUS:
        raise ValueError(f"a CPU amount is at most {MAX_CPUS} (the kernel's most CPUs), got {_show(value)}")
    if isinstance(value, (int, float)):
        cpus = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _DIGITS:
            raise ValueError(f"`{text[:_DIGITS]}...` is not a CPU amount; use e.g. 0.5, 2 or 500m")
        if re.fullmatch(r"\d+m", text):
            cpus = int(text[:-1]) / 1000
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            cpus = float(text)
        else:
            raise ValueError(f"`{value}` is not a CPU amount; use e.g. 0.5, 2 or 500m")
    else:
        raise ValueError("a CPU amount must be a number like 0.5 or millicores like `500m`")
    if not math.isfinite(cpus):
        raise ValueError(f"a CPU amount must be a finite number, got {value}")
    if cpus <= 0:
        raise ValueError(f"a CPU amount must be more than zero, got {value}")
    if cpus > MAX_CPUS:
        raise ValueError(f"a CPU amount is at most {MAX_CPUS} (the kernel's most CPUs), got {_show(value)}")
    return cpus


def _positive(fn):
    def check(value: object):
        result = fn(value)
        if result <= 0:
            raise ValueError(f"must be more than zero, got {value!r}")
        return result

    return check


# A string pattern cannot bound the number it spells; validate (pydantic) does.
_size_schema = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_BYTES},
                          {"type": "string", "pattern": SIZE_PATTERN}]}
_psize_schema = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
                           {"type": "string", "pattern": SIZE_PATTERN}]}
_dur_schema = {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
                         {"type": "string", "pattern": DURATION_PATTERN}]}
_cpu_schema = {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_CPUS},
                         {"type": "string", "pattern": CPU_PATTERN}]}

def parse_mode(value: object) -> object:
    """`0o1777`, `'01777'`, `'1777'` (strings: octal) -> 1023; a YAML 1.1 `01777` arrives as the int 1023.

    YAML 1.1 (PyYAML) reads `01777` as octal but `0o1777` (the YAML 1.2 and Python
    spelling our docs use) as a string: both spell the same mode.  An integer is taken
    as it is; a bool is no mode.
    """
    if isinstance(value, bool):
        raise ValueError(f"`{value}` is not an octal mode like 0o755")
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or len(text) > 6 or not set(text) <= set("01234567"):
            raise ValueError(f"`{value}` is not an octal mode like 0o755")
        return int(text, 8)
    return value


def mode_type(maximum: int):
    """A permission field up to `maximum` (0o777 for a umask, 0o7777 with setuid/setgid/sticky)."""
    digits = len(f"{maximum:o}")
    schema = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": maximum},
                        {"type": "string", "pattern": f"^\\s*(0[oO])?[0-7]{{1,{digits}}}\\s*$"}]}
    return Annotated[int, BeforeValidator(parse_mode), Field(ge=0, le=maximum), WithJsonSchema(schema)]


ByteSize = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(_size_schema)]
PositiveByteSize = Annotated[int, BeforeValidator(_positive(parse_size)), WithJsonSchema(_psize_schema)]
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_dur_schema)]
PositiveDuration = Annotated[float, BeforeValidator(_positive(parse_duration)), WithJsonSchema(_dur_schema)]
CpuAmount = Annotated[float, BeforeValidator(parse_cpu), WithJsonSchema(_cpu_schema)]
Mode = mode_type(0o7777)  # file permissions with the setuid, setgid and sticky bits
Umask = mode_type(0o777)

__all__ = [
    "ByteSize", "PositiveByteSize", "Mode", "Umask", "parse_mode", "Duration", "PositiveDuration", "CpuAmount",
    "parse_size", "parse_duration", "parse_cpu", "Field", "PlainSerializer", "MAX_BYTES", "MAX_SECONDS", "MAX_CPUS",
]
