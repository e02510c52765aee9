"""`seccomp:` a syscall filter, compiled by libseccomp on the host, installed last.

    seccomp:
      default: errno EPERM            # allow | log | trap | kill | kill_thread | errno NAME|N
      architectures: [native, x86]    # default: [native]; x32 only when listed
      profile: ./docker.json          # optional Docker/OCI JSON profile, imported first
      rules:                          # then these, on top: a later rule wins
        - syscalls: ["@mount", unshare]
          action: errno EPERM
        - syscalls: [socket]
          action: errno EAFNOSUPPORT
          args: [{index: 0, op: eq, value: AF_INET6}]

The spec keeps what the user wrote (checked: action words, errno names,
constant names, known syscall names and groups); the plan resolves it into
BPF bytes (linx_spec/plan/seccomp.py, with linx_spec/seccomp/compile.py).
"""

from __future__ import annotations

import errno as _errno
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from .base import Model
from ..suggest import closest

__all__ = ["Seccomp", "Rule", "ArgCondition", "parse_action", "ARCH_NAMES", "canonical_arch"]

MAX_ERRNO = 4095  # the kernel returns -min(data, MAX_ERRNO) for SECCOMP_RET_ERRNO
_KEYWORDS = {"allow": "allow", "log": "log", "trap": "trap", "kill": "kill", "kill_process": "kill",
             "kill_thread": "kill_thread"}


def _errno_word(word: object) -> str:
    """`EPERM`, `eperm`, 1, "1" -> `EPERM`; numbers without a name stay numbers."""
    if isinstance(word, bool):
        raise ValueError("errno must be a name like EPERM or a number")
    if isinstance(word, int) or (isinstance(word, str) and word.strip().isdigit()):
        n = int(word)
        if not 0 <= n <= MAX_ERRNO:
            raise ValueError(f"errno {n} is out of range (0..{MAX_ERRNO})")
        return _errno.errorcode.get(n, str(n))
    if not isinstance(word, str):
        raise ValueError("errno must be a name like EPERM or a number")
    name = word.strip().upper()
    if name in _errno.errorcode.values():
        return name
    close = closest(name, list(_errno.errorcode.values()))
    hint = f"; did you mean `{close}`?" if close else ""
    raise ValueError(f"unknown errno `{word}`{hint}")


def parse_action(value: object) -> str:
    """Any accepted spelling -> the canonical one: `allow`, `log`, `trap`, `kill`,
    `kill_thread`, `errno EPERM` (or `errno 4000` for a number without a name)."""
    if isinstance(value, dict):
        if set(value) != {"errno"}:
            raise ValueError("an action mapping has one key: `errno` (e.g. {errno: EPERM})")
        return f"errno {_errno_word(value['errno'])}"
    if not isinstance(value, str):
        raise ValueError("an action is allow, log, trap, kill, kill_thread, or `errno NAME`")
    words = value.strip().split()
    if not words:
        raise ValueError("an action must not be empty")
    head = words[0].lower()
    if head == "errno":
        if len(words) > 2:
            raise ValueError(f"`{value}`: write `errno NAME` or `errno NUMBER`")
        # A bare `errno` means EPERM, as runc does when errnoRet is absent.
        return f"errno {_errno_word(words[1]) if len(words) == 2 else 'EPERM'}"
    if len(words) == 1 and head in _KEYWORDS:
        return _KEYWORDS[head]
    close = closest(head, [*_KEYWORDS, "errno"])
    hint = f"; did you mean `{close}`?" if close else ""
    raise ValueError(f"unknown action `{value}`{hint} (allow, log, trap, kill, kill_thread, errno NAME)")


_ACTION_SCHEMA = {
    "anyOf": [
        # The keywords as an enum (editors complete them), then `errno NAME|NUMBER`.
        {"type": "string", "enum": [*_KEYWORDS, "errno", "errno EPERM", "errno ENOSYS", "errno EACCES"]},
        {"type": "string", "pattern": r"^\s*errno\s+([A-Za-z][A-Za-z0-9]*|[0-9]+)\s*$"},
        {"type": "object",
         "properties": {"errno": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": MAX_ERRNO}],
                                  "description": "The error the call fails with: a name like EPERM, or a number."}},
         "required": ["errno"], "additionalProperties": False},
    ]
}
Action = Annotated[str, BeforeValidator(parse_action), WithJsonSchema(_ACTION_SCHEMA)]

# libseccomp's architecture names (seccomp_arch_resolve_name), and common aliases.
ARCH_NAMES = ("x86_64", "x86", "x32", "aarch64", "arm", "mips", "mipsel", "mips64", "mipsel64",
              "mips64n32", "mipsel64n32", "parisc", "parisc64", "ppc", "ppc64", "ppc64le", "s390", "s390x",
              "riscv64")
_ARCH_ALIASES = {"amd64": "x86_64", "i386": "x86", "i686": "x86", "arm64": "aarch64"}


def canonical_arch(name: str) -> str:
    """`native`, a libseccomp name, a `SCMP_ARCH_*` token or an alias (amd64, i386, arm64)."""
    word = name.strip().lower()
    if word.startswith("scmp_arch_"):
        word = word[len("scmp_arch_"):]
    word = _ARCH_ALIASES.get(word, word)
    if word == "native" or word in ARCH_NAMES:
        return word
    close = closest(word, ["native", *ARCH_NAMES])
    hint = f"; did you mean `{close}`?" if close else ""
    raise ValueError(f"unknown architecture `{name}`{hint}")


_VALUE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
                           {"type": "string", "pattern": r"^[A-Za-z0-9_| ]+$"}]}
ArgValue = Annotated[int | str, WithJsonSchema(_VALUE_SCHEMA)]


class ArgCondition(Model):
    """One comparison of a syscall argument; all conditions of a rule must hold."""

    index: Annotated[int, Field(ge=0, le=5, description="Argument number, 0 to 5 (0 is the first argument).")]
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"] = Field(
        description="Comparison, unsigned 64-bit: eq, ne, lt, le, gt, ge, or masked_eq "
        "((argument & mask) == value).")
    value: ArgValue = Field(
        description="Number, or a constant name such as AF_INET6, CLONE_NEWUSER, O_WRONLY, PR_SET_NAME "
        "(several joined with `|`).")
    mask: ArgValue | None = Field(default=None, description="For masked_eq only: the bits compared.")

    @field_validator("value", "mask")
    @classmethod
    def _known_value(cls, v: int | str | None) -> int | str | None:
        from ..seccomp.constants import parse_value

        if v is not None:
            parse_value(v)
        return v

    @model_validator(mode="after")
    def _mask_with_masked_eq(self) -> "ArgCondition":
        if self.op == "masked_eq":
            if self.mask is None:
                raise ValueError("op masked_eq needs a `mask`")
            if self.value_int & ~self.mask_int:
                raise ValueError(f"value {self.value_int:#x} has bits outside mask {self.mask_int:#x}: "
                                 "the rule could never match")
        elif self.mask is not None:
            raise ValueError("`mask` is only for op masked_eq")
        return self

    @property
    def value_int(self) -> int:
        from ..seccomp.constants import parse_value

        return parse_value(self.value)

    @property
    def mask_int(self) -> int:
        from ..seccomp.constants import parse_value

        return parse_value(self.mask) if self.mask is not None else 0


_SYSCALL_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def check_syscall_name(name: str) -> None:
    """ValueError (with a suggestion) for a name that is neither a group nor a syscall
    libseccomp knows.  Without libseccomp only the spelling is checked here; the plan
    checks again."""
    from ..seccomp import groups

    if name.startswith("@"):
        if name not in groups.GROUPS:
            close = closest(name, groups.group_names())
            hint = f"; did you mean `{close}`?" if close else f" (groups: {', '.join(groups.group_names())})"
            raise ValueError(f"unknown syscall group `{name}`{hint}")
        return
    if not _SYSCALL_RE.match(name):
        raise ValueError(f"`{name}` is not a syscall name (lower case letters, digits, `_`) or a @group")
    from ..seccomp import names

    names.check_known(name)


class Rule(Model):
    """An action for some syscalls, optionally only when their arguments match."""

    syscalls: list[str] = Field(
        min_length=1,
        description="Syscall names (`mount`, `openat`) and groups (`@privileged`; see docs/seccomp.md).")
    action: Action = Field(
        description="allow, log, trap (SIGSYS the caller can catch), kill (the whole process), "
        "kill_thread, or `errno NAME` / `errno NUMBER` / {errno: NAME}: the call fails with that error.")
    args: list[ArgCondition] = Field(
        default_factory=list,
        description="Argument conditions, all of which must hold (AND). For OR, write several rules.")

    @field_validator("syscalls")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            check_syscall_name(name)
        return v


class Seccomp(Model):
    """A seccomp filter, installed in the child as its last step before execve."""

    default: Action | None = Field(
        default=None,
        description="Action for every syscall no rule names: `errno EPERM` (or `errno ENOSYS`, which "
        "programs take as \"not implemented\") for an allow-list, `allow` for a deny-list. Required "
        "unless a profile gives it.")
    architectures: list[str] | None = Field(
        default=None,
        description="ABIs the filter accepts: `native` plus compat ABIs such as x86 (32-bit programs) or x32. "
        "Calls from any other ABI kill the process. Default: the profile's, else [native].")
    profile: str | None = Field(
        default=None,
        description="A Docker/OCI seccomp JSON profile imported first (a path, relative to the spec file), "
        "or `default` for the profile shipped with linx-spec. The rules below are applied on top of it.")
    rules: list[Rule] = Field(
        default_factory=list,
        description="Rules in order; where two rules match the same call, the later one wins.")

    @field_validator("architectures")
    @classmethod
    def _arches(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out: list[str] = []
        for name in v:
            arch = canonical_arch(name)
            if arch in out:
                raise ValueError(f"architecture `{name}` listed twice")
            out.append(arch)
        if not out:
            raise ValueError("list at least `native`")
        return out

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\0" in v):
            raise ValueError("profile must be a path or the name of a shipped profile")
        return v

    @model_validator(mode="after")
    def _default_given(self) -> "Seccomp":
        if self.default is None and self.profile is None:
            raise ValueError("give `default:` (e.g. `errno EPERM` for an allow-list, `allow` for a deny-list)")
        return self
