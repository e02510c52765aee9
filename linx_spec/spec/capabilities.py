"""`capabilities:` the capability sets of the workload, by name.

    capabilities:
      keep: [net_bind_service, CAP_CHOWN]     # the simple form: these, nothing else

    capabilities:                              # the full form (capabilities(7))
      bounding: [net_bind_service, chown]
      inheritable: [net_bind_service]
      ambient: [net_bind_service]

Names are case-insensitive, `CAP_` is optional, `all` means every capability
this kernel knows.  The plan's masks are what the workload sees in
/proc/self/status after execve (for a program without file capabilities), so
only sets execve preserves can be declared; see docs/privileges.md for the
rules and for the default when `capabilities:` is absent.

Why the rules (capabilities(7), "Transformation of capabilities during execve()"):
uid 0 execs with permitted = effective = bounding | inheritable; any other uid
execs with permitted = effective = ambient.  The ambient set is always a subset
of permitted and inheritable (PR_CAP_AMBIENT_RAISE refuses anything else), and
capset(2) refuses an inheritable capability outside the bounding set.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .base import Model
from ..suggest import closest


# linux/capability.h, in number order; CAP_CHECKPOINT_RESTORE (40) is the last as
# of Linux 5.9.  A unit test compares this table with the installed header.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_NAMES: dict[int, str] = {n: name for name, n in CAPABILITIES.items()}
LAST_KNOWN_CAP = max(CAP_NAMES)
ALL = "ALL"  # the normalized spelling of `all` in a list

# Docker's default set (moby oci/caps/defaults.go), also what a runner user
# expects when the spec says nothing: enough for ordinary daemons (chown files,
# bind low ports, drop to another uid), nothing that reaches the host kernel
# (no SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_PTRACE, ...).
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def parse_name(value: object) -> str:
    """`net_bind_service`, `CAP_NET_BIND_SERVICE`, `Net_Bind_Service` -> `CAP_NET_BIND_SERVICE`;
    `all` -> `ALL`.  Unknown names raise ValueError with the nearest known name."""
    if not isinstance(value, str):
        raise ValueError(f"a capability is a name like `net_bind_service`, got {value!r}")
    text = value.strip().upper()
    if text == ALL:
        return ALL
    name = text if text.startswith("CAP_") else "CAP_" + text
    if name in CAPABILITIES:
        return name
    short = [n[4:].lower() for n in CAPABILITIES]
    close = closest(name[4:].lower(), short)
    hint = f"; did you mean `{close}`?" if close else "; see capabilities(7) for the names"
    raise ValueError(f"unknown capability `{value}`{hint}")


CapName = Annotated[
    str,
    BeforeValidator(parse_name),
    # An enum so that editors complete the names: the four usual spellings of each
    # (net_admin, NET_ADMIN, cap_net_admin, CAP_NET_ADMIN); mixed case passes only pydantic.
    WithJsonSchema({
        "type": "string",
        "enum": sorted({form for cap in CAPABILITIES for form in (cap[4:].lower(), cap[4:], cap.lower(), cap)}) + [
            "all", "ALL"],
        "description": "A capability name, case-insensitive, `CAP_` optional (`net_bind_service`, "
                       "`CAP_CHOWN`), or `all`.",
        "examples": ["net_bind_service", "CAP_CHOWN", "all"],
    }),
]
CapList = list[CapName]

_SETS = ("bounding", "permitted", "effective", "inheritable", "ambient")


def names_mask(names: list[str] | tuple[str, ...], all_mask: int | None = None) -> int:
    """Names (normalized) -> bit mask; `ALL` is every known capability (or all_mask)."""
    full = all_mask if all_mask is not None else (1 << (LAST_KNOWN_CAP + 1)) - 1
    mask = 0
    for name in names:
        mask |= full if name == ALL else 1 << CAPABILITIES[name]
    return mask


def mask_names(mask: int) -> list[str]:
    """Bit mask -> canonical names in number order (`CAP_CHOWN`, ...)."""
    return [CAP_NAMES.get(n, str(n)) for n in range(mask.bit_length()) if mask >> n & 1]


def _listed(mask: int) -> str:
    return ", ".join(n[4:].lower() if n.startswith("CAP_") else n for n in mask_names(mask))


class Capabilities(Model):
    """Capability sets of the workload: `keep` (the simple form) or the five sets (the full form)."""

    keep: CapList | None = Field(
        default=None,
        description="The simple form: the workload has exactly these capabilities, everything else is "
        "dropped (from every set, the bounding set too). For uid 0 they are the bounding, permitted and "
        "effective sets (as docker's --cap-add); for any other uid they are also inheritable and ambient, "
        "so that a non-root program really has them after execve. `[]` drops every capability.",
    )
    bounding: CapList | None = Field(
        default=None,
        description="The full form: the bounding set, the limit of what the workload and its children can "
        "ever gain (setuid binaries and file capabilities included). Default: the union of the other sets "
        "listed.",
    )
    permitted: CapList | None = Field(
        default=None,
        description="The full form: the permitted set. execve decides it: uid 0 gets the bounding set, any "
        "other uid its ambient set; that is the default, and a list given here must equal it.",
    )
    effective: CapList | None = Field(
        default=None,
        description="The full form: the effective set (what the kernel checks). Like `permitted`: execve "
        "sets it to the permitted set, which is the default; a list given here must equal it.",
    )
    inheritable: CapList | None = Field(
        default=None,
        description="The full form: the inheritable set, within the bounding set. Default: empty. Every "
        "ambient capability must be listed here too.",
    )
    ambient: CapList | None = Field(
        default=None,
        description="The full form: the ambient set, kept across execve of programs without file "
        "capabilities; the way a non-root uid keeps a capability. Must be within permitted and "
        "inheritable. Default: empty.",
    )

    @field_validator(*_SETS)
    @classmethod
    def _within_earlier_sets(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # Fields validate in declaration order (keep, bounding, permitted, effective,
        # inheritable, ambient), so each set is checked against those before it and
        # the error points at the set that breaks the rule.  Only what holds whatever
        # the identity and the kernel is checked here; the rest is in plan/caps.py resolve().
        if value is None:
            return value
        if info.data.get("keep") is not None:
            raise ValueError("`keep` is the simple form; list the sets of the full form without it")
        mask = names_mask(value)
        rules = {
            "effective": [("permitted", "effective must be within permitted")],
            "ambient": [("permitted", "ambient must be within permitted and inheritable"),
                        ("inheritable", "ambient must be within permitted and inheritable")],
        }.get(info.field_name, [])
        if info.field_name != "bounding":
            rules.insert(0, ("bounding", "nothing can be kept outside the bounding set"))
        for other, why in rules:
            listed = info.data.get(other)
            if listed is None and not (other == "inheritable" and mask):
                continue  # an omitted bounding or permitted is derived to fit (resolve)
            missing = mask & ~names_mask(listed or [])
            if missing:
                raise ValueError(f"{_listed(missing)} not in {other} ({why}; capabilities(7))")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> "Capabilities":
        if self.keep is None and all(getattr(self, s) is None for s in _SETS):
            raise ValueError("list the capabilities to keep (`keep: [net_bind_service]`, or `keep: []` to drop "
                             "every capability), or the sets of the full form")
        return self


__all__ = [
    "CAPABILITIES", "CAP_NAMES", "DEFAULT_CAPS", "Capabilities", "CapName", "parse_name", "names_mask",
    "mask_names",
]
