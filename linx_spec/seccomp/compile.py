"""Seccomp rules -> BPF bytes compiled by libseccomp, checked, ready to install
(plan/seccomp.py turns the `seccomp:` section into rules and the result into a SeccompPlan).

What the rules mean (docs/seccomp.md says the same for users):

- A syscall no rule names gets the `default` action.
- Rules apply in order (a profile's entries first, then the spec's rules);
  where two rules match the same call, the later one wins.  A rule without
  argument conditions therefore replaces everything before it for its
  syscalls; a rule with conditions wins only for the calls it matches, the
  others keep what earlier rules (or the default) gave them.
- `architectures` lists the ABIs the filter accepts; any other ABI's calls
  kill the process (libseccomp's bad-arch action, set to KILL_PROCESS).  On
  x86_64 that includes x32 calls (nr | 0x40000000), which share the x86_64
  audit arch: libseccomp sends them to the bad-arch action unless x32 is listed.

How it is compiled: libseccomp allows one comparison per argument in a rule
and gives no defined precedence between overlapping rules of one syscall
(seccomp_rule_add(3); libseccomp issue #118).  So this module first turns
each syscall's ordered rules into *disjoint* regions (rule i holds where its
own conditions hold and no later rule with another action does), rewrites
each region with at most one comparison per argument, and hands libseccomp
only rules that cannot overlap with a different action.  The exported BPF is
then run (bpf.py) on the boundary values of every comparison and checked
against the meaning above; any difference is a PlanError, never a filter
that does something else than the spec says.

Safety checks: the child still runs a few syscalls after the filter is
installed (steps.py: the seccomp step is the last before exec; after it
come only a write to the status pipe, clock_gettime and execve; PDEATHSIG
and close-on-exec are steps of their own before it); a filter that stops
any of them is a PlanError that says which rule does it.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import random
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import PlanError
from . import _libseccomp as lib
from . import bpf as _bpf
from .groups import GROUPS, expand
from .oci import Entry

__all__ = ["compile_entries", "Compiled", "check_child_needs"]

U64 = 2**64 - 1
POINT_LIMIT = 64  # values spelled out one by one for a gap between two `ne` values
TERM_LIMIT = 256  # rules one syscall may expand into (libseccomp slows down sharply past that)
MAX_LEVEL = 2  # encodings tried per syscall (see SyscallRules.lib_rules)
PROBE_LIMIT = 1024  # argument combinations checked per syscall (past that: a fixed sample)

Cond = tuple[int, str, int, int]  # (arg, op, value, mask)


class CannotExpress(Exception):
    """The rules of one syscall have no exact form as libseccomp rules."""


# --- actions ---------------------------------------------------------------
def action_value(action: str) -> int:
    """Canonical action word (spec/seccomp.py) -> libseccomp action."""
    if action == "allow":
        return lib.ACT_ALLOW
    if action == "log":
        return lib.ACT_LOG
    if action == "trap":
        return lib.ACT_TRAP
    if action == "kill":
        return lib.ACT_KILL_PROCESS
    if action == "kill_thread":
        return lib.ACT_KILL_THREAD
    word = action.split()[1]
    return lib.ACT_ERRNO(int(word) if word.isdigit() else getattr(_errno, word))


def _action_of_ret(ret: int) -> str:
    return _bpf.action_name(ret)


def _canon(action: str) -> str:
    """`errno 1` and `errno EPERM` are the same action: compare on this."""
    return _bpf.action_name(action_value(action))


# --- conditions ------------------------------------------------------------
def holds(c: Cond, args: tuple[int, ...]) -> bool:
    i, op, v, m = c
    x = args[i]
    if op == "eq":
        return x == v
    if op == "ne":
        return x != v
    if op == "lt":
        return x < v
    if op == "le":
        return x <= v
    if op == "gt":
        return x > v
    if op == "ge":
        return x >= v
    return (x & m) == v  # masked_eq


def _negate(c: Cond) -> list[Cond]:
    """not c, as a disjunction of conditions."""
    i, op, v, m = c
    flip = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "le": "gt", "gt": "le"}
    if op in flip:
        return [(i, flip[op], v, 0)]
    # (x & m) != v  <=>  some bit of m differs from v's bit
    out = []
    bit = 1
    while bit <= m:
        if m & bit:
            out.append((i, "masked_eq", (~v) & bit, bit))
        bit <<= 1
    return out


def _norm_arg(i: int, conds: list[Cond]) -> list[list[Cond]] | None:
    """A conjunction of conditions on argument i -> alternatives (ORed), each with at most
    one condition; None when it can never hold."""
    masked = [c for c in conds if c[1] == "masked_eq"]
    others = [c for c in conds if c[1] != "masked_eq"]
    eqs = {c[2] for c in others if c[1] == "eq"}
    if eqs:
        x = next(iter(eqs))
        probe = [0] * 6
        probe[i] = x
        return [[(i, "eq", x, 0)]] if all(holds(c, tuple(probe)) for c in conds) else None
    if masked:
        mask = value = 0
        for _, _, v, m in masked:
            if (value & m) != (v & mask):
                return None  # two masks disagree on a common bit
            mask |= m
            value |= v
        if others:
            raise CannotExpress(f"argument {i} is compared both with a bit mask and with a range")
        return [[(i, "masked_eq", value, mask)]] if mask else [[]]
    lo, hi, excluded = 0, U64, set()
    for _, op, v, _ in others:
        if op == "lt":
            hi = min(hi, v - 1)
        elif op == "le":
            hi = min(hi, v)
        elif op == "gt":
            lo = max(lo, v + 1)
        elif op == "ge":
            lo = max(lo, v)
        elif op == "ne":
            excluded.add(v)
    if lo > hi:
        return None
    cuts = sorted(e for e in excluded if lo <= e <= hi)
    if lo == 0 and hi == U64 and len(cuts) == 1:
        return [[(i, "ne", cuts[0], 0)]]
    pieces, start = [], lo
    for e in cuts:
        if start <= e - 1:
            pieces.append((start, e - 1))
        start = e + 1
    if start <= hi:
        pieces.append((start, hi))
    if not pieces:
        return None
    out: list[list[Cond]] = []
    for a, b in pieces:
        if a == b:
            out.append([(i, "eq", a, 0)])
        elif a == 0 and b == U64:
            out.append([])
        elif a == 0:
            out.append([(i, "le", b, 0)])
        elif b == U64:
            out.append([(i, "ge", a, 0)])
        elif b - a < POINT_LIMIT:
            out.extend([(i, "eq", x, 0)] for x in range(a, b + 1))
        else:
            raise CannotExpress(
                f"argument {i} would have to be between {a:#x} and {b:#x}, which a seccomp rule "
                f"(one comparison per argument) can only say by listing {b - a + 1} values")
    return out


def _normalize(term: list[Cond]) -> list[list[Cond]]:
    """A conjunction -> equivalent conjunctions with at most one condition per argument."""
    by_arg: dict[int, list[Cond]] = {}
    for c in term:
        by_arg.setdefault(c[0], []).append(c)
    per_arg = []
    for i in sorted(by_arg):
        alts = _norm_arg(i, by_arg[i])
        if alts is None:
            return []
        per_arg.append(alts)
    size = 1
    for alts in per_arg:
        size *= len(alts)
    if size > TERM_LIMIT:
        raise CannotExpress(f"the rules would expand into more than {TERM_LIMIT} seccomp rules")
    return [[c for part in combo for c in part] for combo in itertools.product(*per_arg)]


def _region(own: tuple[Cond, ...], beaten_by: list[tuple[Cond, ...]]) -> list[list[Cond]]:
    """own AND NOT any of beaten_by, as normalized conjunctions."""
    terms = _normalize(list(own))
    for other in beaten_by:
        alternatives = [n for c in other for n in _negate(c)]
        grown = []
        for t in terms:
            for n in alternatives:
                grown.extend(_normalize(t + [n]))
            if len(grown) > 4 * TERM_LIMIT:
                raise CannotExpress(f"the rules would expand into more than {TERM_LIMIT} seccomp rules")
        terms = _dedupe(grown)
        if len(terms) > TERM_LIMIT:
            raise CannotExpress(f"the rules would expand into more than {TERM_LIMIT} seccomp rules")
    return terms


def _dedupe(terms: Iterable[list[Cond]]) -> list[list[Cond]]:
    seen, out = set(), []
    for t in terms:
        key = tuple(sorted(t))
        if key not in seen:
            seen.add(key)
            out.append(sorted(t))
    return out


# --- per-syscall tables ------------------------------------------------------
@dataclass
class SyscallRules:
    """The ordered rules of one syscall, after unconditional rules cut the history."""

    name: str
    nr: int  # native number, or libseccomp's negative pseudo number
    base: str | None = None  # action of the last unconditional rule; None: the default
    base_origin: str = ""
    conditional: list[tuple[tuple[Cond, ...], str, str]] = field(default_factory=list)  # (conds, action, origin)

    def add(self, conds: tuple[Cond, ...], action: str, origin: str) -> None:
        if not conds:
            self.base, self.base_origin = action, origin
            self.conditional.clear()
        else:
            self.conditional.append((conds, action, origin))

    def decide(self, args: tuple[int, ...], default: str) -> tuple[str, str]:
        """(action, origin) the rules give this call."""
        for conds, action, origin in reversed(self.conditional):
            if all(holds(c, args) for c in conds):
                return action, origin
        if self.base is not None:
            return self.base, self.base_origin
        return default, "the default action"

    def outcomes(self, default: str) -> list[tuple[str, str]]:
        base = (self.base, self.base_origin) if self.base is not None else (default, "the default action")
        return [base] + [(a, o) for _, a, o in self.conditional]

    def lib_rules(self, default: str, level: int = 0) -> list[tuple[str, list[Cond]]]:
        """Disjoint (action, conditions) rules for libseccomp, without default-action ones.
        level 1 also spells out small ranges next to other comparisons as values; level 2
        also makes rules of the same action disjoint."""
        base = self.base if self.base is not None else default
        regions: list[tuple[str, list[Cond]]] = []
        # Where the default action holds nothing is emitted: the regions of the other
        # actions are disjoint from it, so the default is what remains.
        for k, (conds, action, _origin) in enumerate(self.conditional):
            if _canon(action) == _canon(default):
                continue
            later = [c for c, a, _ in self.conditional[k + 1:] if _canon(a) != _canon(action)]
            regions += [(action, t) for t in _region(conds, later)]
        if _canon(base) != _canon(default):
            beaten = [c for c, a, _ in self.conditional if _canon(a) != _canon(base)]
            regions += [(base, t) for t in _region((), beaten)]
        out: list[tuple[str, list[Cond]]] = []
        unconditional = {_canon(a) for a, t in regions if not t}
        seen = set()
        for action, t in regions:
            if _canon(action) == _canon(default):
                continue
            if t and _canon(action) in unconditional:
                continue  # a syscall-wide rule of the same action already covers it
            pieces = _split_ne(t)
            if level:
                pieces = [q for p in pieces for q in _split_ranges(p)]
            for piece in pieces:
                key = (_canon(action), tuple(piece))
                if key not in seen:
                    seen.add(key)
                    out.append((action, piece))
        # A rule whose conditions include all of another's with the same action adds nothing
        # (and libseccomp 2.5 merges such pairs badly): keep the more general one.
        out = [(a, t) for a, t in out
               if not any(_canon(b) == _canon(a) and set(u) < set(t) for b, u in out)]
        if level >= 2:
            # Every rule disjoint from every other, same action or not: libseccomp 2.5
            # also mishandles overlapping range comparisons of one action.
            disjoint: list[tuple[str, list[Cond]]] = []
            for action, t in out:
                for piece in _region(tuple(t), [tuple(u) for _, u in disjoint]):
                    disjoint.extend((action, q) for q in _split_ne(piece))
            out = disjoint
        if len(out) > TERM_LIMIT:
            raise CannotExpress(f"the rules would expand into {len(out)} seccomp rules (at most {TERM_LIMIT})")
        return out


def _split_ne(term: list[Cond]) -> list[list[Cond]]:
    """`ne v` next to other comparisons -> `le v-1` or `ge v+1`.  libseccomp 2.5 merges the
    subtrees of `ne` chains that share a 64-bit high-word test with the wrong branch (found
    by the verification below); alone in a rule, `ne` compiles correctly."""
    if len(term) < 2 or not any(c[1] == "ne" for c in term):
        return [term]
    alts = []
    for c in term:
        i, op, v, _ = c
        if op != "ne":
            alts.append([c])
            continue
        alts.append(([(i, "le", v - 1, 0)] if v > 0 else []) + ([(i, "ge", v + 1, 0)] if v < U64 else []))
    return [list(combo) for combo in itertools.product(*alts)]


def _split_ranges(term: list[Cond]) -> list[list[Cond]]:
    """Next to other comparisons, a range of at most POINT_LIMIT values -> those values
    (`eq`).  libseccomp 2.5.4 loops forever on two rules that share a range comparison
    and then compare different arguments; shared `eq` comparisons it handles."""
    if len(term) < 2:
        return [term]
    alts = []
    for c in term:
        i, op, v, _ = c
        lo, hi = {"lt": (0, v - 1), "le": (0, v), "gt": (v + 1, U64), "ge": (v, U64)}.get(op, (1, 0))
        if lo <= hi and hi - lo < POINT_LIMIT:
            alts.append([(i, "eq", x, 0) for x in range(lo, hi + 1)])
        else:
            alts.append([c])
    size = 1
    for a in alts:
        size *= len(a)
    if size > TERM_LIMIT:
        raise CannotExpress(f"the rules would expand into more than {TERM_LIMIT} seccomp rules")
    return [list(combo) for combo in itertools.product(*alts)]


def _datums(rules: SyscallRules) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for conds, _, _ in rules.conditional:
        for i, op, v, m in conds:
            vals = out.setdefault(i, {0, 1, U64, 0xFFFFFFFF, 0x100000000, 0x80000000})
            for x in (v, m) if op == "masked_eq" else (v,):
                for d in (-1, 0, 1, -(2**32), 2**32):
                    if 0 <= x + d <= U64:
                        vals.add(x + d)
            if op == "masked_eq":
                vals.add(v | (~m & U64))
                bit = 1
                while bit <= m:
                    if m & bit:
                        vals.add(v ^ bit)
                    bit <<= 1
    return out


def _probes(rules: SyscallRules, limit32: bool = False) -> list[tuple[int, ...]]:
    """Argument vectors on every side of every comparison of this syscall."""
    per_arg = _datums(rules)
    if limit32:
        per_arg = {i: {v & 0xFFFFFFFF for v in vals} for i, vals in per_arg.items()}
    if not per_arg:
        return [(0,) * 6]
    idx = sorted(per_arg)
    values = [sorted(per_arg[i]) for i in idx]
    total = 1
    for v in values:
        total *= len(v)
    out = []

    def vec(choice):
        a = [0] * 6
        for i, x in zip(idx, choice):
            a[i] = x
        return tuple(a)

    if total <= PROBE_LIMIT:
        out = [vec(c) for c in itertools.product(*values)]
    else:
        # Every value of every argument with the others at each of their first values,
        # then a fixed pseudo-random sample of the combinations.
        for k, vals in enumerate(values):
            for x in vals:
                base = [v[0] for v in values]
                base[k] = x
                out.append(vec(base))
        rnd = random.Random(0x5ECC0)
        for _ in range(PROBE_LIMIT):
            out.append(vec([rnd.choice(v) for v in values]))
    return out


# --- compilation -------------------------------------------------------------
_AUDIT_OF_TOKEN = {0x4000003E: _bpf.AUDIT_ARCH_X86_64}  # x32 calls carry the x86_64 audit arch


def arch_tokens() -> dict[str, int]:
    from ..spec.seccomp import ARCH_NAMES

    out = {}
    for name in ARCH_NAMES:
        token = lib.arch_resolve(name)
        if token:
            out[name] = token
    return out


def native_arch() -> str:
    token = lib.arch_native()
    for name, t in arch_tokens().items():
        if t == token:
            return name
    return f"{token:#x}"


@dataclass(frozen=True)
class Compiled:
    bpf: bytes
    rules: int  # libseccomp rules added
    table: dict[str, SyscallRules]
    architectures: tuple[str, ...]
    default: str


def compile_entries(entries: list[Entry], default: str, architectures: list[str],
                    verify: bool = True) -> Compiled:
    """Entries (groups allowed in names) -> checked BPF.  Raises PlanError."""
    native = native_arch()
    tokens = arch_tokens()
    arches = [native if a == "native" else a for a in architectures]
    arches = list(dict.fromkeys(arches))
    if native not in arches:
        raise PlanError(f"the filter's architectures {arches} leave out this machine's own ({native}): "
                        "every call of the workload would be killed",
                        "add `native` to seccomp.architectures", "seccomp.architectures")
    for a in arches:
        if a not in tokens:
            raise PlanError(f"libseccomp {'.'.join(map(str, lib.version()))} does not know architecture `{a}`",
                            "remove it from seccomp.architectures", "seccomp.architectures")

    table: dict[int, SyscallRules] = {}
    for entry in entries:
        for word in entry.names:
            names = expand(word) if word.startswith("@") else [word]
            for name in names:
                nr = lib.syscall_resolve(name)
                if nr == lib.NR_SCMP_ERROR:
                    if entry.from_profile or word.startswith("@"):
                        continue  # a newer kernel's syscall this libseccomp does not know: as runc
                    raise PlanError(f"unknown syscall `{name}`", "check the spelling (see docs/seccomp.md)",
                                    entry.origin)
                rules = table.setdefault(nr, SyscallRules(name, nr))
                rules.add(entry.conds, entry.action, entry.origin)

    by_name = {r.name: r for r in table.values()}
    # Each syscall starts with the plain encoding; one that libseccomp mangles (the
    # verification finds it) or loops on (the guard finds it) is encoded again with
    # ranges spelled out as values, and only then refused.
    levels = {nr: 0 for nr in table}
    while True:
        program: list[tuple[int, int, list[tuple[int, str, int, int]]]] = []
        owner: list[int] = []
        for nr, rules in sorted(table.items()):
            try:
                lib_rules = rules.lib_rules(default, level=levels[nr])
            except CannotExpress as exc:
                raise PlanError(
                    f"the rules for `{rules.name}` cannot be compiled exactly: {exc}",
                    "write the rules for this syscall so that they need fewer argument comparisons "
                    "(e.g. one rule per value with `eq`)",
                    _origins(rules)) from None
            for action, conds in lib_rules:
                lib_conds = [(i, op, m, v) if op == "masked_eq" else (i, op, v, 0) for i, op, v, m in conds]
                program.append((action_value(action), nr, lib_conds))
                owner.append(nr)
        try:
            code = lib.build_guarded(
                action_value(default),
                # Calls from an ABI the filter does not list are killed, whole process:
                # the only safe answer to an x32 or int 0x80 call nobody wrote rules for.
                # The agent sets no_new_privs in its own step; this filter is only exported.
                [(lib.ATTR_ACT_BADARCH, lib.ACT_KILL_PROCESS), (lib.ATTR_CTL_NNP, 0)],
                [tokens[a] for a in arches if a != native],
                program)
        except lib.BuildTimeout as exc:
            nr = owner[exc.at] if 0 <= exc.at < len(owner) else None
            if nr is not None and levels[nr] < MAX_LEVEL:
                levels[nr] += 1
                continue
            name = table[nr].name if nr is not None else "?"
            raise PlanError(
                f"libseccomp {'.'.join(map(str, lib.version()))} did not finish compiling the rules for "
                f"`{name}` (it loops on rules that share a range comparison and then compare other arguments)",
                "compare that argument with `eq` values, or split the rules differently",
                _origins(table[nr]) if nr is not None else "seccomp") from None
        except lib.RuleRefused as exc:
            rules = table[owner[exc.at]]
            raise PlanError(
                f"libseccomp refused a rule for `{rules.name}`: {_errno.errorcode.get(exc.errno, exc.errno)} "
                f"({os.strerror(exc.errno)})", "simplify the rules for this syscall", _origins(rules)) from None
        except lib.LibseccompError as exc:
            raise PlanError(f"libseccomp: {exc}", "", "seccomp") from None
        compiled = Compiled(code, len(program), by_name, tuple(arches), default)
        if not verify:
            return compiled
        wrong = _verify(compiled, tokens, native)
        if wrong is None:
            return compiled
        rules, message = wrong
        if rules is not None and levels[rules.nr] < MAX_LEVEL:
            levels[rules.nr] += 1
            continue
        raise PlanError(message, "simplify the argument conditions for this syscall",
                        _origins(rules) if rules else "seccomp")


def _origins(rules: SyscallRules) -> str:
    return ", ".join(dict.fromkeys([o for _, _, o in rules.conditional] + ([rules.base_origin] if rules.base_origin else [])))


def _audit(token: int) -> int:
    return _AUDIT_OF_TOKEN.get(token, token)


def _verify(c: Compiled, tokens: dict[str, int], native: str) -> tuple[SyscallRules | None, str] | None:
    """Run the BPF against the meaning of the rules: every syscall with rules, on every
    boundary of its comparisons, on every listed ABI; unlisted ABIs and x32 must die.
    Returns the first wrong answer (the syscall's rules, what is wrong), or None."""
    prog = _bpf.decode(c.bpf)

    class Wrong(Exception):
        pass

    def check(arch: str, nr: int, args: tuple[int, ...], want: str, rules: SyscallRules | None) -> None:
        got = _bpf.run(prog, nr, _audit(tokens[arch]), args)
        if _action_of_ret(got) != _canon(want):
            name = rules.name if rules else f"syscall {nr}"
            raise Wrong(rules, f"the compiled filter answers {name}{_fmt_args(args)} on {arch} with "
                               f"{_action_of_ret(got)}, but the rules say {_canon(want)}: libseccomp cannot "
                               "express these rules exactly")

    try:
        _verify_all(c, tokens, native, check)
    except Wrong as exc:
        return exc.args[0], exc.args[1]
    return None


def _verify_all(c: "Compiled", tokens: dict[str, int], native: str, check) -> None:
    prog = _bpf.decode(c.bpf)
    kill = lib.ACT_KILL_PROCESS

    for arch in c.architectures:
        token = tokens[arch]
        # libseccomp compares only the low 32 bits on 32-bit ABIs, x32 included.
        is32 = arch in ("x86", "x32", "arm", "mips", "mipsel", "ppc", "s390", "parisc", "mips64n32", "mipsel64n32")
        base = _bpf.X32_SYSCALL_BIT if arch == "x32" else 0
        # Walk the ABI's own table: on x86 a name can sit at two numbers (socket calls
        # exist both directly and behind socketcall), and names map per ABI.
        unnamed = []
        for nr in range(base, base + 1024):
            name = lib.syscall_name(token, nr)
            if not name or name.startswith("UNKNOWN"):
                continue
            rules = c.table.get(name)
            if rules is None:
                unnamed.append(nr)
                continue
            if is32 and any(v > 0xFFFFFFFF or m > 0xFFFFFFFF for conds, _, _ in rules.conditional
                            for _, _, v, m in conds):
                continue  # 32-bit ABIs see 32-bit arguments; 64-bit constants do not apply there
            for args in _probes(rules, limit32=is32):
                want, _ = rules.decide(args, c.default)
                check(arch, nr, args, want, rules)
        # Syscalls no rule names get the default (a sample: the check costs time).
        for nr in unnamed[:: max(1, len(unnamed) // 32)]:
            check(arch, nr, (0,) * 6, c.default, None)
    # ABIs not listed: killed.  x32 shares x86_64's audit arch and is told apart by its bit.
    if native == "x86_64" and "x32" not in c.architectures:
        for nr in (39, 59, 0):
            if _bpf.run(prog, nr | _bpf.X32_SYSCALL_BIT, _bpf.AUDIT_ARCH_X86_64) != kill:
                raise PlanError("the compiled filter lets x32 calls through", "report this bug", "seccomp")
    for arch, token in tokens.items():
        if arch in c.architectures or arch == "x32":
            continue
        if _bpf.run(prog, 39, _audit(token)) != kill:
            raise PlanError(f"the compiled filter does not kill calls from the {arch} ABI", "report this bug",
                            "seccomp")


def _fmt_args(args: tuple[int, ...]) -> str:
    last = max((i for i, a in enumerate(args) if a), default=-1)
    return "(" + ", ".join(hex(a) if a > 9 else str(a) for a in args[: last + 1]) + ")"


# The syscalls the child makes after installing the filter (agent/lx_child.c, after
# lx_seccomp_in_child): (name, arguments or None for "any", what a refusal breaks).
_OK = ("allow", "log")
_FATAL = ("kill", "kill_thread", "trap")


# What the init (process.init, agent/lx_init.c) calls after the filter is in, with
# arguments where they matter: a fork is clone(SIGCHLD|CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID)
# from glibc; set_robust_list's failure is ignored by glibc, so only a fatal answer breaks it.
_SIGCHLD, _SIG_BLOCK, _SIG_SETMASK, _SIGTERM = 17, 0, 2, 15
_INIT_NEEDS: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    ("clone", (0x01200000 | _SIGCHLD, 0, 0, 0x7F0000000000, 0), False),
    ("set_robust_list", (0x7F0000000000, 24), True),
    ("rt_sigprocmask", (_SIG_BLOCK, 0x7F0000000000, 0x7F0000000000, 8), False),
    ("rt_sigprocmask", (_SIG_SETMASK, 0x7F0000000000, 0, 8), False),
    ("close_range", (3, 0xFFFFFFFF, 0), False),
    ("rt_sigtimedwait", (0x7F0000000000, 0x7F0000000000, 0, 8), False),
    ("wait4", (0xFFFFFFFFFFFFFFFF, 0x7F0000000000, 1, 0), False),
    ("kill", (2, _SIGTERM), False),
    ("exit_group", (0,), False),
)


def check_child_needs(c: Compiled, init: bool = False) -> None:
    """PlanError when the filter would stop the child between installing it and execve,
    or, with `init`, stop the init that runs as pid 1 after it (rule `process.init`)."""
    default = c.default

    def answer(name: str, args: tuple[int, ...]) -> tuple[str, str]:
        rules = c.table.get(name)
        return rules.decide(args + (0,) * (6 - len(args)), default) if rules else (default, "the default action")

    def fail(msg: str, origin: str, remedy: str) -> None:
        if origin.startswith("seccomp."):
            raise PlanError(msg, remedy, origin)  # the field names the rule
        raise PlanError(f"{msg} ({origin})", remedy, "seccomp")

    # execve: any arguments (they are pointers)
    rules = c.table.get("execve")
    outcomes = rules.outcomes(default) if rules else [(default, "the default action")]
    for action, origin in outcomes:
        if action not in _OK:
            fail(f"the filter answers execve with `{action}`: the workload could never start "
                 "(the filter is installed before execve)", origin,
                 "allow execve, e.g. add a rule {syscalls: [execve], action: allow}")
    # write to the status pipe: the child reports its last step and an execve failure there
    for fd in range(3, 16):
        action, origin = answer("write", (fd, 0x7F0000000000, 40))
        if action not in _OK:
            fail(f"the filter answers write(fd {fd}) with `{action}`: the child reports to the runner "
                 "through a pipe after the filter is installed", origin, "allow write")
    action, origin = answer("clock_gettime", (1, 0x7F0000000000))
    if action in _FATAL:
        fail(f"the filter answers clock_gettime with `{action}`: the child times its last step with it",
             origin, "allow clock_gettime (it is in @default)")
    if not init:
        return
    for name, args, fatal_only in _INIT_NEEDS:
        action, origin = answer(name, args)
        if action in _FATAL or (not fatal_only and action not in _OK):
            raise PlanError(f"the filter answers {name} with `{action}` ({origin}): process.init runs as pid 1 "
                            f"after the filter is installed and needs {name} to start the program, forward "
                            "signals and reap orphans",
                            f"allow {name}, or drop process.init", "process.init")


def groups_summary() -> list[tuple[str, str, int]]:
    return [(g.name, g.summary, len(expand(g.name))) for g in GROUPS.values()]
