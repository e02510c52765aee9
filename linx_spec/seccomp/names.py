"""Syscall names as libseccomp knows them: is a name known, what is close to a typo.

libseccomp's table is the source of truth for names (its
seccomp_syscall_resolve_name answers for every architecture it supports), so
a name is "known" when libseccomp can place it in some filter, even if it
does not exist on this machine's architecture (`socketcall`, `_llseek`).
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from . import _libseccomp as lib

__all__ = ["check_known", "known_names", "is_known"]

# Architectures whose tables together name every syscall libseccomp knows.
_TABLE_ARCHES = ("x86_64", "x86", "x32", "aarch64", "arm", "ppc64", "s390x", "mips64", "riscv64")


@lru_cache(maxsize=1)
def known_names() -> frozenset[str]:
    """Every syscall name libseccomp knows, on any architecture (for suggestions)."""
    out: set[str] = set()
    for arch_name in _TABLE_ARCHES:
        token = lib.arch_resolve(arch_name)
        if not token:
            continue
        base = 0x40000000 if arch_name == "x32" else 0
        for nr in range(0, 1100):
            name = lib.syscall_name(token, base + nr)
            if name and not name.startswith("UNKNOWN"):
                out.add(name)
    return frozenset(out)


def is_known(name: str) -> bool:
    return lib.syscall_resolve(name) != lib.NR_SCMP_ERROR


def check_known(name: str) -> None:
    """ValueError with a did-you-mean for a name libseccomp does not know.
    Without libseccomp nothing can be checked here (the plan reports that)."""
    if not lib.available() or is_known(name):
        return
    close = difflib.get_close_matches(name, sorted(known_names()), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise ValueError(f"unknown syscall `{name}`{hint}")
