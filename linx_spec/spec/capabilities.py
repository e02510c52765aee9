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

import difflib
import os
from typing import TYPE_CHECKING, Annotated

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .base import Model

if TYPE_CHECKING:
    from ..planned import CapsPlan
    from . import Spec

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
    close = difflib.get_close_matches(name[4:].lower(), short, n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else "; see capabilities(7) for the names"
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
        # the identity and the kernel is checked here; the rest is in resolve().
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


def kernel_last_cap() -> int:
    """The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap, Linux 3.2)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return LAST_KNOWN_CAP


def own_caps(which: str = "CapEff") -> int:
    """A capability set of this process (CapEff, CapPrm, CapBnd...) from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(which + ":"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available(spec: "Spec") -> int | None:
    """The capabilities the workload can be given, or None when the child cannot set
    capabilities at all (an unprivileged runner without a user namespace)."""
    ns = spec.namespaces
    kernel_all = (1 << (kernel_last_cap() + 1)) - 1
    if "user" in ns.created() or "user" in ns.joined():
        # user_namespaces(7): a process that creates or enters a user namespace
        # has every capability in it, the bounding set included.
        return kernel_all
    if os.geteuid() != 0:
        return None
    # A root runner's agent gets the runner's bounding set at execve
    # (capabilities(7)); a container around linx-spec may have narrowed it.
    mask = own_caps("CapBnd") & kernel_all
    # Dropping from the bounding set needs CAP_SETPCAP.
    return mask if mask >> CAPABILITIES["CAP_SETPCAP"] & 1 else None


def resolve(caps: Capabilities | None, spec: "Spec") -> "CapsPlan | None":
    """The five masks the child sets before execve, equal to what the workload sees after it.

    `caps` None is the default: docker's set (DEFAULT_CAPS) as the bounding set,
    and as permitted and effective for uid 0; a non-root uid gets nothing (as in
    docker).  When the child could not change its capabilities anyway (not root,
    no user namespace) the default leaves them alone and returns None."""
    plan = _resolve(caps, spec)
    _check_seccomp(plan, spec)
    return plan


def _resolve(caps: Capabilities | None, spec: "Spec") -> "CapsPlan | None":
    from ..errors import PlanError
    from ..planned import CapsPlan

    can = available(spec)
    if can is None:
        if caps is None:
            return None  # an unprivileged process without a user namespace has nothing to drop
        raise PlanError("setting capabilities needs root, or a new user namespace",
                        "add `user` to namespaces, or run as root, or remove `capabilities`", "capabilities")
    root = spec.process.user.uid == 0

    if caps is None:
        default = names_mask(DEFAULT_CAPS) & can
        return CapsPlan(bounding=default, effective=default if root else 0, permitted=default if root else 0,
                        inheritable=0, ambient=0)

    last = kernel_last_cap()
    for s in ("keep", *_SETS):
        for name in getattr(caps, s) or ():
            if name == ALL or can >> CAPABILITIES[name] & 1:
                continue
            if CAPABILITIES[name] > last:
                raise PlanError(f"this kernel does not know {name} (its last capability is "
                                f"{CAP_NAMES.get(last, last)})", "remove it, or run on a newer kernel",
                                f"capabilities.{s}")
            raise PlanError(f"linx-spec cannot grant {name}: it is not in the runner's own bounding set "
                            "(something around linx-spec dropped it)",
                            "remove it, or add `user` to namespaces (capabilities there are the namespace's own)",
                            f"capabilities.{s}")

    if caps.keep is not None:
        keep = names_mask(caps.keep, can)
        # uid 0: execve gives permitted = effective = bounding, nothing else is
        # needed.  Another uid keeps them only through the ambient set, which
        # needs them inheritable too.
        return CapsPlan(bounding=keep, effective=keep, permitted=keep,
                        inheritable=0 if root else keep, ambient=0 if root else keep)

    sets = {s: names_mask(getattr(caps, s), can) for s in _SETS if getattr(caps, s) is not None}
    inheritable = sets.get("inheritable", 0)
    ambient = sets.get("ambient", 0)
    bounding = sets.get("bounding")
    if bounding is None:
        bounding = 0
        for mask in sets.values():
            bounding |= mask
    # What execve will set (capabilities(7)): uid 0 gets bounding | inheritable
    # (inheritable is within bounding), any other uid its ambient set.
    after_exec = bounding if root else ambient
    for s in ("permitted", "effective"):
        if s in sets and sets[s] != after_exec:
            who = f"uid {spec.process.user.uid}"
            if root:
                why = "uid 0 execs with permitted = effective = the bounding set"
                remedy = f"make {s} equal to bounding, or leave it out"
            else:
                why = f"{who} is not root: execve sets permitted and effective to the ambient set"
                remedy = (f"add the capabilities to ambient and inheritable (or use `keep:`), or leave {s} out"
                          if sets[s] & ~after_exec else f"make {s} equal to ambient, or leave it out")
            raise PlanError(f"{s} [{_listed(sets[s])}] is not what the workload would get: {why} "
                            f"([{_listed(after_exec)}]; capabilities(7))", remedy, f"capabilities.{s}")
    return CapsPlan(bounding=bounding, effective=after_exec, permitted=after_exec, inheritable=inheritable,
                    ambient=ambient)


def _check_seccomp(plan: "CapsPlan | None", spec: "Spec") -> None:
    """Without no_new_privs a seccomp filter can be installed only with CAP_SYS_ADMIN
    (seccomp(2)); the filter goes in after the capabilities step, so it must be kept."""
    from ..errors import PlanError

    if plan is None or spec.seccomp is None or spec.no_new_privs:
        return
    if not plan.effective >> CAPABILITIES["CAP_SYS_ADMIN"] & 1:
        raise PlanError("a seccomp filter without no_new_privs needs CAP_SYS_ADMIN, which the workload does not "
                        "keep (seccomp(2): the filter is installed after the capabilities are set)",
                        "leave no_new_privs on (the default), or keep sys_admin", "no_new_privs")


__all__ = [
    "CAPABILITIES", "CAP_NAMES", "DEFAULT_CAPS", "Capabilities", "CapName", "parse_name", "names_mask",
    "mask_names", "resolve", "kernel_last_cap", "own_caps", "available",
]
