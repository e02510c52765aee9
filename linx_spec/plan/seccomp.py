"""The seccomp plan: the `seccomp:` section compiled into checked BPF bytes.

resolve() reads the profile file, asks the compiler (seccomp/compile.py, which
uses libseccomp) and checks that the filter lets the child reach execve; the
Plan keeps only bytes and figures, so running a cached plan needs neither
libseccomp nor pydantic.
"""

from __future__ import annotations


from ..errors import PlanError
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any
    from ..seccomp.compile import Cond, SyscallRules
    from ..seccomp.oci import Entry


class SeccompPlan(Record):
    """The compiled filter and what it was made from."""

    bpf: bytes  # struct sock_filter[], as seccomp_export_bpf wrote it
    instructions: int
    default: str
    architectures: tuple[str, ...]
    profile: str | None = None
    rules: int = 0  # libseccomp rules
    syscalls: int = 0  # syscalls with at least one rule
    skipped: tuple[str, ...] = ()  # profile entries left out (includes/excludes) and why
    table: tuple[tuple[str, str], ...] = ()  # (syscall, what the rules do) for `seccomp explain`

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default, "architectures": list(self.architectures)}
        if self.profile:
            out["profile"] = self.profile
        out["syscalls"] = self.syscalls
        out["instructions"] = self.instructions
        return out


def _workload_caps(spec) -> frozenset[str] | None:
    """Capability names in the workload's bounding set, for a profile's includes/excludes
    (Docker matches them against the bounding set), from the same resolution the plan
    uses (plan/caps.py: an absent section is the default set)."""
    from ..seccomp.oci import ALL_CAPS

    if spec is None:
        return ALL_CAPS
    from ..spec.capabilities import mask_names
    from . import caps

    caps_plan = caps.resolve(spec.capabilities, spec)
    # None: the child cannot change its capabilities and keeps the runner's own.
    mask = caps_plan.bounding if caps_plan is not None else caps.own_caps("CapBnd")
    return frozenset(mask_names(mask))


def _entries_of_rules(spec_seccomp) -> list[Entry]:
    from ..seccomp.oci import Entry

    out = []
    for k, rule in enumerate(spec_seccomp.rules):
        conds = tuple((a.index, a.op, a.value_int, a.mask_int) for a in rule.args)
        out.append(Entry(tuple(rule.syscalls), rule.action, conds, f"seccomp.rules[{k}]"))
    return out


def resolve(spec_seccomp, spec, base_dir: str) -> SeccompPlan:
    """The `seccomp:` section -> a compiled, checked filter.  Pure: reads the profile
    file and asks libseccomp; PlanError for what cannot be honoured."""
    from ..seccomp import _libseccomp as lib
    from ..seccomp import bpf as _bpf
    from ..seccomp.compile import _canon, check_child_needs, compile_entries, native_arch
    from ..seccomp.oci import ProfileError, load_profile

    if not lib.available():
        raise PlanError("libseccomp.so.2 is not installed: seccomp filters are compiled with it",
                        "install libseccomp2 (Debian/Ubuntu) or libseccomp (Fedora)", "seccomp")
    native = native_arch()
    entries: list[Entry] = []
    profile_path = None
    skipped: tuple[str, ...] = ()
    default = spec_seccomp.default
    arches = list(spec_seccomp.architectures) if spec_seccomp.architectures else None
    if spec_seccomp.profile is not None:
        try:
            prof = load_profile(spec_seccomp.profile, base_dir, native=native, caps=_workload_caps(spec))
        except ProfileError as exc:
            raise PlanError(f"seccomp profile `{spec_seccomp.profile}`: {exc}",
                            "fix the profile (Docker/OCI seccomp JSON)", "seccomp.profile") from None
        profile_path = prof.source
        skipped = prof.skipped
        entries.extend(prof.entries)
        if default is None:
            default = prof.default
        if arches is None and prof.architectures is not None:
            arches = list(prof.architectures)
        if default is None:
            raise PlanError(f"the profile {prof.source} has no defaultAction and the spec gives no default",
                            "set seccomp.default", "seccomp.default")
    entries.extend(_entries_of_rules(spec_seccomp))
    compiled = compile_entries(entries, default, arches or ["native"])
    n = len(compiled.bpf) // 8
    if n > _bpf.BPF_MAXINSNS:
        raise PlanError(f"the compiled filter has {n} instructions; the kernel takes at most {_bpf.BPF_MAXINSNS}",
                        "use fewer argument conditions or fewer rules with different actions", "seccomp")
    # Without no_new_privs the install needs CAP_SYS_ADMIN: plan/caps.py checks that.
    check_child_needs(compiled, init=spec.process.init)
    table = tuple(sorted((name, _summary(r, compiled.default)) for name, r in compiled.table.items()))
    return SeccompPlan(
        bpf=compiled.bpf,
        instructions=n,
        default=_canon(compiled.default),
        architectures=compiled.architectures,
        profile=profile_path,
        rules=compiled.rules,
        syscalls=len(compiled.table),
        skipped=skipped,
        table=table,
    )


def _summary(r: SyscallRules, default: str) -> str:
    from ..seccomp.compile import _canon

    base = _canon(r.base) if r.base is not None else f"{_canon(default)} (default)"
    if not r.conditional:
        return base
    parts = []
    for conds, action, _ in r.conditional:
        parts.append(" and ".join(_fmt_cond(c) for c in conds) + f": {_canon(action)}")
    return f"{'; '.join(reversed(parts))}; otherwise {base}"


def _fmt_cond(c: Cond) -> str:
    i, op, v, m = c
    sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
    if op == "masked_eq":
        return f"arg{i} & {m:#x} == {v:#x}"
    return f"arg{i} {sym[op]} {v:#x}" if v > 9 else f"arg{i} {sym[op]} {v}"
