"""Import Docker and OCI seccomp profiles (JSON) into the compiler's entries.

Both shapes are read (runtime-spec config-linux.md "Seccomp", moby's
profiles/seccomp): `defaultAction`, `defaultErrnoRet`, `architectures` or
`archMap` (+ `subArchitectures`), and `syscalls` entries with `names` (or the
older `name`), `action`, `errnoRet`, `args` (`index`, `value`, `valueTwo`,
`op`) and Docker's `includes` / `excludes` (`caps`, `arches`, `minKernel`).

Meaning kept from runc and Docker:
- SCMP_ACT_KILL is libseccomp's thread kill (`kill_thread`); SCMP_ACT_KILL_PROCESS is `kill`.
- SCMP_CMP_MASKED_EQ: `value` is the mask and `valueTwo` the expected value.
- args of one entry are ANDed, except that when an entry compares the same
  argument twice each comparison becomes a rule of its own (ORed), as runc does.
- When several entries match a call, the first one wins (runtime-spec); the
  compiler works "later wins", so the entries are handed over in reverse.
- includes.caps: all listed capabilities must be in the workload's bounding
  set; excludes.caps: none of them may be.  arches name the machine's
  architecture in Go's words (amd64, arm64...) or libseccomp's.

SCMP_ACT_TRACE and SCMP_ACT_NOTIFY (a tracer or a listener) cannot be
honoured by linx-spec and are errors; `flags` are ignored (reported).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# The spec's helpers are imported where used: the seccomp plan (plan/seccomp.py,
# which imports this module through compile.py) stays free of pydantic.
MAX_ERRNO = 4095  # as spec/seccomp.py: the kernel returns -min(data, MAX_ERRNO)

__all__ = ["Entry", "Profile", "ProfileError", "load_profile", "parse_profile", "BUILTIN_PROFILES", "ALL_CAPS"]

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN_PROFILES = {"default": "default.json"}
ALL_CAPS = None  # the workload holds every capability (uid 0 without a capabilities section)

_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_LOG": "log",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill",
}
_UNSUPPORTED = {"SCMP_ACT_TRACE": "a ptrace tracer", "SCMP_ACT_NOTIFY": "a seccomp listener (user notification)"}
_OPS = {"SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le", "SCMP_CMP_EQ": "eq",
        "SCMP_CMP_GE": "ge", "SCMP_CMP_GT": "gt", "SCMP_CMP_MASKED_EQ": "masked_eq"}
# Go's GOARCH words (Docker's `arches`) -> libseccomp's names.
_GOARCH = {"amd64": "x86_64", "386": "x86", "arm64": "aarch64", "mipsle": "mipsel", "mips64le": "mipsel64",
           "mips3l64n32": "mipsel64n32"}


class ProfileError(ValueError):
    """A profile that cannot be read or imported; `where` is a JSON path."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


Cond = tuple[int, str, int, int]  # (arg index, op, value, mask) - mask only for masked_eq


@dataclass(frozen=True)
class Entry:
    """One rule for the compiler: names, a canonical action, ANDed conditions."""

    names: tuple[str, ...]
    action: str
    conds: tuple[Cond, ...]
    origin: str  # where it came from, for messages: `seccomp.rules[2]`, `profile syscalls[14]`
    from_profile: bool = False


@dataclass(frozen=True)
class Profile:
    source: str
    default: str | None
    architectures: tuple[str, ...] | None
    entries: tuple[Entry, ...]
    skipped: tuple[str, ...] = field(default=())  # entries left out by includes/excludes, with why
    ignored: tuple[str, ...] = field(default=())  # fields read but not honoured (flags)


def _kernel_version() -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
    return tuple(int(x) for x in m.groups() if x is not None) if m else (0,)


def _version(text: str, where: str) -> tuple[int, ...]:
    if not isinstance(text, str) or not re.fullmatch(r"\d+(\.\d+){0,2}", text.strip()):
        raise ProfileError(where, f"minKernel must look like 4.8, got {text!r}")
    return tuple(int(x) for x in text.strip().split("."))


def _action(name: object, errno_ret: object, default_errno: object, where: str) -> str:
    if not isinstance(name, str):
        raise ProfileError(where, "action must be a string like SCMP_ACT_ALLOW")
    if name in _ACTIONS:
        return _ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        ret = errno_ret if errno_ret is not None else default_errno
        if ret is None:
            ret = 1  # EPERM: runc's choice when errnoRet is absent
        if isinstance(ret, bool) or not isinstance(ret, int) or not 0 <= ret <= MAX_ERRNO:
            raise ProfileError(where, f"errnoRet must be a number 0..{MAX_ERRNO}, got {ret!r}")
        from ..spec.seccomp import parse_action

        return parse_action({"errno": ret})
    if name in _UNSUPPORTED:
        raise ProfileError(where, f"{name} needs {_UNSUPPORTED[name]}, which linx-spec does not run")
    raise ProfileError(where, f"unknown action `{name}`")


def _arch(name: object, where: str) -> str:
    if not isinstance(name, str):
        raise ProfileError(where, "architecture must be a string like SCMP_ARCH_X86_64")
    try:
        from ..spec.seccomp import canonical_arch

        return canonical_arch(name)
    except ValueError as exc:
        raise ProfileError(where, str(exc)) from None


def _arches_of(data: dict, native: str) -> tuple[str, ...] | None:
    if data.get("archMap") is not None:
        if not isinstance(data["archMap"], list):
            raise ProfileError("archMap", "must be a list")
        for i, item in enumerate(data["archMap"]):
            where = f"archMap[{i}]"
            if not isinstance(item, dict):
                raise ProfileError(where, "must be an object")
            if _arch(item.get("architecture"), where + ".architecture") != native:
                continue
            subs = item.get("subArchitectures") or []
            return (native, *(_arch(s, f"{where}.subArchitectures") for s in subs))
        return (native,)  # Docker: a machine the map does not name gets only its own ABI
    if data.get("architectures") is not None:
        if not isinstance(data["architectures"], list):
            raise ProfileError("architectures", "must be a list")
        return tuple(_arch(a, f"architectures[{i}]") for i, a in enumerate(data["architectures"]))
    return None


def _arch_words(native: str) -> set[str]:
    words = {native}
    words.update(go for go, arch in _GOARCH.items() if arch == native)
    return words


def _caps_norm(names: object, where: str) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProfileError(where, "must be a list of capability names")
    return [n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper() for n in names]


def _selected(entry: dict, where: str, caps: frozenset[str] | None, native: str,
              kernel: tuple[int, ...]) -> str:
    """'' when the entry applies to this workload, else why it was left out."""
    words = _arch_words(native)
    inc = entry.get("includes") or {}
    exc = entry.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise ProfileError(where, "includes and excludes must be objects")
    if inc.get("arches"):
        if not {str(a).lower() for a in inc["arches"]} & words:
            return f"only for {', '.join(inc['arches'])}"
    if exc.get("arches"):
        if {str(a).lower() for a in exc["arches"]} & words:
            return f"not for {', '.join(exc['arches'])}"
    if inc.get("caps"):
        need = _caps_norm(inc["caps"], where + ".includes.caps")
        if caps is not ALL_CAPS and not set(need) <= caps:
            return f"needs {', '.join(need)}"
    if exc.get("caps"):
        unwanted = _caps_norm(exc["caps"], where + ".excludes.caps")
        if caps is ALL_CAPS or set(unwanted) & caps:
            return f"not with {', '.join(unwanted)}"
    if inc.get("minKernel"):
        if kernel < _version(inc["minKernel"], where + ".includes.minKernel"):
            return f"needs kernel {inc['minKernel']}"
    return ""


def _conds(args: object, where: str) -> list[tuple[Cond, ...]]:
    """ANDed condition groups of one entry ([()] when it has none)."""
    if not args:
        return [()]
    if not isinstance(args, list):
        raise ProfileError(where, "args must be a list")
    conds: list[Cond] = []
    for i, a in enumerate(args):
        w = f"{where}[{i}]"
        if not isinstance(a, dict):
            raise ProfileError(w, "must be an object")
        index, op, value, two = a.get("index"), a.get("op"), a.get("value", 0), a.get("valueTwo", 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            raise ProfileError(w + ".index", f"must be 0..5, got {index!r}")
        if op not in _OPS:
            raise ProfileError(w + ".op", f"unknown comparison {op!r} ({', '.join(_OPS)})")
        for k, v in (("value", value), ("valueTwo", two)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise ProfileError(f"{w}.{k}", f"must be an unsigned 64-bit number, got {v!r}")
        if _OPS[op] == "masked_eq":
            conds.append((index, "masked_eq", two, value))
        else:
            conds.append((index, _OPS[op], value, 0))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [(c,) for c in conds]  # runc: one rule per comparison when an argument repeats
    return [tuple(conds)]


def parse_profile(data: object, source: str, *, native: str, caps: frozenset[str] | None,
                  kernel: tuple[int, ...] | None = None) -> Profile:
    """A decoded JSON profile -> Profile; ProfileError with a JSON path when it is wrong."""
    if not isinstance(data, dict):
        raise ProfileError("", "a seccomp profile is a JSON object")
    kernel = kernel or _kernel_version()
    default_errno = data.get("defaultErrnoRet")
    default = None
    if data.get("defaultAction") is not None:
        default = _action(data["defaultAction"], default_errno, None, "defaultAction")
    arches = _arches_of(data, native)
    ignored = []
    if data.get("flags"):
        ignored.append(f"flags {data['flags']}")
    if data.get("listenerPath"):
        raise ProfileError("listenerPath", "a seccomp listener (user notification) is not supported")
    syscalls = data.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise ProfileError("syscalls", "must be a list")
    entries: list[Entry] = []
    skipped: list[str] = []
    for i, item in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(item, dict):
            raise ProfileError(where, "must be an object")
        names = item.get("names")
        if names is None and "name" in item:
            names = [item["name"]]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ProfileError(where + ".names", "must be a non-empty list of syscall names")
        action = _action(item.get("action"), item.get("errnoRet"), default_errno, where + ".action")
        why = _selected(item, where, caps, native, kernel)
        if why:
            skipped.append(f"{where} ({', '.join(names[:3])}{'...' if len(names) > 3 else ''}): {why}")
            continue
        for group in _conds(item.get("args"), where + ".args"):
            entries.append(Entry(tuple(names), action, group, f"profile {source} {where}", True))
    # First match wins in a profile (runtime-spec); the compiler's later-wins order is the reverse.
    entries.reverse()
    return Profile(source, default, arches, tuple(entries), tuple(skipped), tuple(ignored))


def resolve_path(profile: str, base_dir: str) -> Path:
    """A shipped profile name (`default`) or a path relative to the spec's directory."""
    if "/" not in profile and not profile.endswith(".json"):
        if profile not in BUILTIN_PROFILES:
            raise ProfileError("", f"no shipped profile named `{profile}` (shipped: "
                               f"{', '.join(BUILTIN_PROFILES)}; a file needs a `/` or `.json`)")
        return BUILTIN_DIR / BUILTIN_PROFILES[profile]
    path = Path(profile)
    return path if path.is_absolute() else Path(base_dir) / path


def load_profile(profile: str, base_dir: str, *, native: str, caps: frozenset[str] | None) -> Profile:
    path = resolve_path(profile, base_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError("", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError("", f"{path} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError("", f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    return parse_profile(data, str(path), native=native, caps=caps)
