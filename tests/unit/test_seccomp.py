"""Seccomp without root: the spec forms, groups and constants against their sources,
the compiled BPF run through the interpreter (bpf.py) against the rules' meaning,
the plan's safety checks, Docker/OCI profile import, and the CLI."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli
from linx_spec import PlanError, SpecError, build_plan, load_text
from linx_spec.seccomp import _libseccomp as lib
from linx_spec.seccomp import bpf
from linx_spec.plan.seccomp import resolve
from linx_spec.seccomp.compile import SyscallRules, _canon, compile_entries
from linx_spec.seccomp.constants import CONSTANTS, parse_value
from linx_spec.seccomp.groups import GROUPS, expand, group_names
from linx_spec.seccomp.oci import ALL_CAPS, Entry, ProfileError, parse_profile
from linx_spec.spec.seccomp import parse_action

X86_64 = bpf.AUDIT_ARCH_X86_64
NATIVE_IS_X86_64 = lib.available() and lib.arch_native() == X86_64
needs_x86_64 = pytest.mark.skipif(not NATIVE_IS_X86_64, reason="x86_64 syscall numbers and ABIs")
NR = {n: lib.syscall_resolve(n) for n in ("getpid", "mount", "umount2", "unshare", "socket", "execve", "write",
                                          "prctl", "close_range", "close", "uname", "mkdir", "personality",
                                          "clone", "clone3", "keyctl")}


def spec_of(seccomp: str, extra: str = ""):
    return load_text(f"version: 1\nprocess:\n  command: [/bin/true]\n{extra}seccomp:\n{seccomp}", "sc.yaml")


def plan_of(seccomp: str, extra: str = "", base_dir: str = "/"):
    spec = spec_of(seccomp, extra)
    return resolve(spec.seccomp, spec, base_dir)


def answer(plan_or_bytes, name: str, *args: int, arch: int = X86_64) -> str:
    code = plan_or_bytes if isinstance(plan_or_bytes, bytes) else plan_or_bytes.bpf
    return bpf.action_name(bpf.run(code, NR.get(name) or lib.syscall_resolve(name), arch, args))


# --- the spec ----------------------------------------------------------------------
@pytest.mark.parametrize("written, canonical", [
    ("allow", "allow"), ("LOG", "log"), ("trap", "trap"), ("kill", "kill"), ("kill_process", "kill"),
    ("kill_thread", "kill_thread"), ("errno", "errno EPERM"), ("errno EACCES", "errno EACCES"),
    ("errno eacces", "errno EACCES"), ("errno 13", "errno EACCES"), ("errno 0", "errno 0"),
    ("errno 4000", "errno 4000"), ({"errno": "ENOSYS"}, "errno ENOSYS"), ({"errno": 1}, "errno EPERM"),
])
def test_action_spellings_normalize(written, canonical):
    assert parse_action(written) == canonical


@pytest.mark.parametrize("written, message", [
    ("alow", "did you mean `allow`"), ("errno EPREM", "did you mean `EPERM`"), ("errno 5000", "out of range"),
    ({"errn": 1}, "one key"), ("errno 1 2", "errno NAME"), (3, "an action is"),
])
def test_bad_actions_say_what_is_wrong(written, message):
    with pytest.raises(ValueError, match=message):
        parse_action(written)


def test_a_typo_in_a_syscall_name_is_a_spec_error_with_a_suggestion_and_a_line():
    with pytest.raises(SpecError) as exc:
        spec_of("  default: allow\n  rules:\n    - syscalls: [mount, unshar]\n      action: kill\n")
    assert "did you mean `unshare`" in str(exc.value)
    assert exc.value.problems[0].line == 7 and "seccomp.rules[0].syscalls" in exc.value.problems[0].field


def test_unknown_group_and_constant_suggest_the_known_one():
    with pytest.raises(SpecError, match="did you mean `@privileged`"):
        spec_of("  default: allow\n  rules: [{syscalls: ['@privileges'], action: kill}]\n")
    with pytest.raises(SpecError, match="did you mean `AF_INET6`"):
        spec_of("  default: allow\n  rules: [{syscalls: [socket], action: kill, "
                "args: [{index: 0, op: eq, value: AF_INT6}]}]\n")


@pytest.mark.parametrize("args, message", [
    ("{index: 0, op: masked_eq, value: 1}", "needs a `mask`"),
    ("{index: 0, op: eq, value: 1, mask: 1}", "only for op masked_eq"),
    ("{index: 0, op: masked_eq, value: 3, mask: 1}", "bits outside mask"),
    ("{index: 6, op: eq, value: 1}", "less than or equal to 5"),
    ("{index: 0, op: eq, value: -1}", "unsigned 64-bit"),
    ("{index: 0, op: between, value: 1}", "eq"),
])
def test_argument_conditions_are_checked(args, message):
    with pytest.raises(SpecError, match=message):
        spec_of(f"  default: allow\n  rules: [{{syscalls: [socket], action: kill, args: [{args}]}}]\n")


def test_default_is_required_without_a_profile_and_architectures_are_normalized():
    with pytest.raises(SpecError, match="give `default:`"):
        spec_of("  rules: []\n")
    spec = spec_of("  default: allow\n  architectures: [native, i386, SCMP_ARCH_X32]\n")
    assert spec.seccomp.architectures == ["native", "x86", "x32"]
    with pytest.raises(SpecError, match="did you mean `x86_64`"):
        spec_of("  default: allow\n  architectures: [x86_46]\n")


def test_constant_values_and_expressions():
    assert parse_value("AF_INET6") == 10
    assert parse_value("CLONE_NEWUSER|CLONE_NEWNS") == 0x10020000
    assert parse_value("0x10 | 0o1 | 010") == 0x10 | 1 | 8
    assert parse_value(2**64 - 1) == 2**64 - 1
    for bad in ("O_DIRECTORY", "", True, 2**64):
        with pytest.raises(ValueError):
            parse_value(bad)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc and the C headers")
def test_every_constant_matches_the_system_headers(tmp_path):
    headers = ["sys/socket.h", "netinet/in.h", "sched.h", "fcntl.h", "sys/prctl.h", "sys/personality.h",
               "sys/mount.h", "signal.h", "sys/ioctl.h", "linux/sched.h"]
    body = "\n".join(f'#ifdef {n}\n printf("{n} %llu\\n", (unsigned long long)({n}));\n#else\n'
                     f' printf("{n} missing\\n");\n#endif' for n in sorted(CONSTANTS))
    src = tmp_path / "c.c"
    src.write_text("#define _GNU_SOURCE\n#include <stdio.h>\n" + "".join(f"#include <{h}>\n" for h in headers)
                   + f"int main(void) {{\n{body}\n return 0;\n}}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "c"), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "c")], check=True, capture_output=True, text=True).stdout
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    # The personality flags are enum members in glibc, not macros.
    checked = {n: v for n, v in seen.items() if v != "missing"}
    assert len(checked) > len(CONSTANTS) * 0.9
    assert {n: int(v) for n, v in checked.items()} == {n: CONSTANTS[n] for n in checked}


# --- groups ------------------------------------------------------------------------
# Calls newer than libseccomp 2.5.4's table that systemd's groups list (the compiler skips
# them until libseccomp knows them): x86_64's uretprobe (Linux 6.11), riscv_hwprobe (6.4).
NEWER_THAN_LIBSECCOMP = {"uretprobe", "riscv_hwprobe"}


def test_every_name_in_every_group_is_known_to_libseccomp_and_resolves_here():
    x86, x32 = lib.arch_resolve("x86"), lib.arch_resolve("x32")
    other_arch_only = []
    for group in group_names():
        for name in expand(group):
            nr = lib.syscall_resolve(name)
            if nr == lib.NR_SCMP_ERROR and name in NEWER_THAN_LIBSECCOMP:
                continue
            assert nr != lib.NR_SCMP_ERROR, f"{group}: libseccomp does not know `{name}`"
            if nr < 0 and lib.syscall_resolve_arch(x86, name) < 0 and lib.syscall_resolve_arch(x32, name) < 0:
                other_arch_only.append(name)
    # Only names of other architectures (ppc, s390, arm, m68k, mips, riscv) and socketcall's
    # sub-calls may be missing here, and no group may consist of them alone.
    assert set(other_arch_only) <= {"subpage_prot", "switch_endian", "rtas", "sys_debug_setcontext", "send",
                                    "recv", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
                                    "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
                                    "swapcontext", "sync_file_range2", "arm_fadvise64_64", "set_tls",
                                    "cacheflush", "riscv_flush_icache"}, other_arch_only
    for group in group_names():
        assert any(lib.syscall_resolve(n) >= 0 for n in expand(group)), group


@needs_x86_64
def test_native_numbers_agree_with_the_kernel_headers():
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no asm/unistd_64.h")
    kernel = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)", header.read_text())}
    names = {n for g in group_names() for n in expand(g)}
    for name in names & set(kernel):
        assert lib.syscall_resolve(name) == kernel[name], name


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_compiles_as_an_allow_list_and_as_a_deny_list(group):
    for default, action in (("errno EPERM", "allow"), ("allow", "errno EPERM")):
        c = compile_entries([Entry((group,), action, (), "test")], default, ["native", "x86"])
        assert len(c.bpf) % 8 == 0 and len(c.bpf) // 8 <= bpf.BPF_MAXINSNS
        for name in expand(group):
            nr = lib.syscall_resolve(name)
            if nr >= 0:
                assert bpf.action_name(bpf.run(c.bpf, nr, lib.arch_native())) == action, name


def test_groups_nest_and_system_service_covers_what_a_program_needs_first():
    assert set(expand("@chown")) <= set(expand("@privileged"))
    service = set(expand("@system-service"))
    assert {"execve", "brk", "mmap", "openat", "read", "write", "exit_group", "rt_sigaction"} <= service
    assert not {"mount", "reboot", "init_module", "swapon", "ptrace"} & service


# --- compiled filters, run through the interpreter -------------------------------
def test_deny_list_answers_exactly_as_declared():
    p = plan_of("  default: allow\n  rules:\n"
                "    - {syscalls: [mount, umount2], action: errno EACCES}\n"
                "    - {syscalls: [unshare], action: {errno: EINVAL}}\n"
                "    - {syscalls: [uname], action: kill}\n"
                "    - {syscalls: [mkdir], action: trap}\n")
    assert answer(p, "mount") == "errno EACCES" and answer(p, "umount2") == "errno EACCES"
    assert answer(p, "unshare") == "errno EINVAL"
    assert answer(p, "uname") == "kill"
    assert answer(p, "mkdir") == "trap"
    assert answer(p, "getpid") == "allow"
    assert p.describe()["instructions"] == p.instructions == len(p.bpf) // 8


def test_argument_rule_denies_inet6_sockets_only():
    p = plan_of("  default: allow\n  rules:\n    - syscalls: [socket]\n      action: errno EAFNOSUPPORT\n"
                "      args: [{index: 0, op: eq, value: AF_INET6}]\n")
    assert answer(p, "socket", 10, 1, 0) == "errno EAFNOSUPPORT"
    assert answer(p, "socket", 2, 1, 0) == "allow"
    assert answer(p, "socket", 10 + 2**32, 1, 0) == "allow"  # 64-bit comparison


@needs_x86_64
def test_x32_and_x86_calls_die_unless_their_abi_is_listed():
    native_only = plan_of("  default: allow\n")
    assert bpf.run(native_only.bpf, NR["getpid"] | bpf.X32_SYSCALL_BIT, X86_64) == bpf.RET_KILL_PROCESS
    assert bpf.run(native_only.bpf, 20, bpf.AUDIT_ARCH_I386) == bpf.RET_KILL_PROCESS
    assert bpf.run(native_only.bpf, 39, 0xC00000B7) == bpf.RET_KILL_PROCESS  # aarch64's audit arch
    both = plan_of("  default: allow\n  architectures: [native, x86, x32]\n"
                   "  rules: [{syscalls: [getpid], action: errno EPERM}]\n")
    assert bpf.action_name(bpf.run(both.bpf, NR["getpid"] | bpf.X32_SYSCALL_BIT, X86_64)) == "errno EPERM"
    assert bpf.action_name(bpf.run(both.bpf, 20, bpf.AUDIT_ARCH_I386)) == "errno EPERM"  # i386 getpid
    assert bpf.action_name(bpf.run(both.bpf, 64, bpf.AUDIT_ARCH_I386)) == "allow"  # i386 getppid


def test_a_later_rule_wins_and_an_unconditional_one_resets_the_syscall():
    p = plan_of("  default: errno EPERM\n  rules:\n"
                "    - {syscalls: ['@system-service'], action: allow}\n"
                "    - {syscalls: [socket], action: errno EAFNOSUPPORT, args: [{index: 0, op: eq, value: AF_INET6}]}\n"
                "    - {syscalls: [socket], action: errno EACCES, args: [{index: 1, op: eq, value: SOCK_RAW}]}\n"
                "    - {syscalls: [mkdir], action: kill, args: [{index: 1, op: gt, value: 0o777}]}\n"
                "    - {syscalls: [mkdir], action: errno EROFS}\n")
    assert answer(p, "socket", 2, 1) == "allow"
    assert answer(p, "socket", 10, 1) == "errno EAFNOSUPPORT"
    assert answer(p, "socket", 10, 3) == "errno EACCES"  # both match: the later rule wins
    assert answer(p, "socket", 2, 3) == "errno EACCES"
    assert answer(p, "mkdir", 0, 0o7777) == "errno EROFS"  # the unconditional rule replaced the kill
    assert answer(p, "reboot") == "errno EPERM"


def test_masked_eq_compares_the_masked_bits():
    p = plan_of("  default: allow\n  rules:\n    - syscalls: [clone]\n      action: errno EPERM\n"
                "      args: [{index: 0, op: masked_eq, mask: CLONE_NEWUSER|CLONE_NEWNET, value: CLONE_NEWUSER}]\n")
    assert answer(p, "clone", 0x10000000 | 17) == "errno EPERM"
    assert answer(p, "clone", 0x50000000) == "allow"
    assert answer(p, "clone", 17) == "allow"


_OPS = ["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"]
_ACTIONS = ["allow", "errno EPERM", "errno EACCES", "kill", "trap", "log"]
_cond = st.tuples(st.integers(0, 2), st.sampled_from(_OPS), st.integers(0, 12), st.integers(0, 15)).map(
    lambda c: (c[0], c[1], c[2] & c[3], c[3]) if c[1] == "masked_eq" else (c[0], c[1], c[2], 0))
_entry = st.tuples(st.sampled_from(["socket", "mkdir"]), st.sampled_from(_ACTIONS),
                   st.lists(_cond, max_size=2, unique_by=lambda c: c[0]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entry, min_size=1, max_size=4), st.sampled_from(_ACTIONS[:3]),
       st.lists(st.tuples(st.integers(0, 14), st.integers(0, 14), st.integers(0, 14)), min_size=20, max_size=20))
def test_compiled_filters_mean_what_the_rules_say(entries, default, probes):
    """Whatever libseccomp makes of overlapping rules, an accepted filter answers every
    call as the rules' meaning (later wins) says; what cannot be expressed is a plan error."""
    es = [Entry((name,), action, tuple(conds), f"rules[{k}]") for k, (name, action, conds) in enumerate(entries)]
    try:
        c = compile_entries(es, default, ["native"])
    except PlanError:
        return
    table = {}
    for e in es:
        table.setdefault(e.names[0], SyscallRules(e.names[0], lib.syscall_resolve(e.names[0]))).add(
            e.conds, e.action, e.origin)
    for name, rules in table.items():
        for args in probes:
            want, _ = rules.decide(args + (0, 0, 0), default)
            got = bpf.action_name(bpf.run(c.bpf, rules.nr, lib.arch_native(), args))
            assert got == _canon(want), (name, args)


def test_libseccomp_mistakes_are_caught_and_encoded_again():
    """libseccomp 2.5 mangles `ne` next to other comparisons and loops on shared ranges;
    the compiler finds both (verification, a deadline) and still produces exact filters."""
    mangled = [Entry(("mkdir",), "errno EPERM", (), "r0"),
               Entry(("mkdir",), "allow", ((0, "eq", 0, 0), (1, "ne", 1, 0)), "r1"),
               Entry(("mkdir",), "allow", ((0, "eq", 1, 0), (1, "ne", 0, 0)), "r2")]
    looping = [Entry(("mkdir",), "errno EPERM", ((0, "lt", 8, 0),), "r0"),
               Entry(("mkdir",), "kill", ((1, "ne", 4, 0), (2, "masked_eq", 3, 3)), "r1")]
    for entries in (mangled, looping):
        c = compile_entries(entries, "allow", ["native"])
        rules = c.table["mkdir"]
        for args in itertools.product(range(10), repeat=3):
            want, _ = rules.decide(args + (0, 0, 0), "allow")
            assert bpf.action_name(bpf.run(c.bpf, NR["mkdir"], lib.arch_native(), args)) == _canon(want)


def test_rules_no_seccomp_rule_can_express_are_plan_errors():
    with pytest.raises(PlanError, match="cannot be compiled exactly") as exc:
        plan_of("  default: errno EPERM\n  rules:\n"
                "    - {syscalls: [socket], action: allow, args: [{index: 0, op: ne, value: 1}]}\n"
                "    - {syscalls: [socket], action: kill, args: [{index: 0, op: eq, value: 100000}]}\n")
    assert "seccomp.rules" in exc.value.field


# --- safety checks ----------------------------------------------------------------
@pytest.mark.parametrize("rules, says", [
    ("[{syscalls: [execve], action: errno EPERM}]", "execve"),
    ("[{syscalls: ['@process', execve], action: kill}]", "execve"),
    ("[{syscalls: [write], action: kill, args: [{index: 0, op: ge, value: 3}]}]", "write"),
])
def test_a_filter_that_stops_the_child_before_execve_is_a_plan_error(rules, says):
    with pytest.raises(PlanError, match=says) as exc:
        plan_of(f"  default: allow\n  rules: {rules}\n")
    assert exc.value.field.startswith("seccomp.rules[0]")
    assert exc.value.remedy


def test_tolerable_refusals_pass_the_safety_checks():
    plan_of("  default: allow\n  rules: [{syscalls: [close_range], action: errno ENOSYS},"
            " {syscalls: [write], action: errno EBADF, args: [{index: 0, op: eq, value: 1}]},"
            " {syscalls: [prctl], action: errno EPERM, args: [{index: 0, op: ne, value: PR_SET_PDEATHSIG}]}]\n")
    with pytest.raises(PlanError, match="default action"):
        plan_of("  default: kill\n  rules: [{syscalls: ['@basic-io'], action: allow}]\n")
    plan_of("  default: errno EPERM\n  rules: [{syscalls: ['@system-service'], action: allow}]\n")
    # PDEATHSIG and close-on-exec are steps before the filter (steps.py): it may forbid them.
    plan_of("  default: allow\n  rules: [{syscalls: [prctl, close_range, close], action: kill}]\n")


def test_a_filter_without_this_machines_abi_is_refused():
    with pytest.raises(PlanError, match="leave out this machine's own"):
        plan_of("  default: allow\n  architectures: [aarch64]\n" if NATIVE_IS_X86_64 else
                "  default: allow\n  architectures: [x86_64]\n")


def test_without_no_new_privs_the_filter_goes_in_before_the_capabilities_drop():
    # A privileged install (seccomp(2)): while the child still holds CAP_SYS_ADMIN, as runc.
    from linx_spec.steps import active_steps

    plan = build_plan(spec_of("  default: allow\n", "  user: {uid: 1000, gid: 1000}\nno_new_privs: false\n"
                              "namespaces: [user, pid]\nidmap: {uid: [{container: 0, host: 100000, count: 2000}], "
                              "gid: [{container: 0, host: 100000, count: 2000}]}\n"))
    names = [s.name for s in active_steps(plan)]
    assert names.index("seccomp") < names.index("bounding") < names.index("user") < names.index("capabilities")


# --- Docker / OCI profiles ----------------------------------------------------------
DOCKERISH = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["@system-service-is-not-a-profile-name"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["s390x"]}},
        {"names": ["read", "write", "exit_group", "execve", "close", "close_range", "prctl"], "action": "SCMP_ACT_ALLOW"},
        {"name": "getpid", "action": "SCMP_ACT_KILL"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"names": ["uname"], "action": "SCMP_ACT_LOG", "comment": "the first match wins: this one"},
        {"names": ["uname"], "action": "SCMP_ACT_TRAP"},
        {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"},
    ],
}


def test_docker_profile_fields_are_honoured():
    prof = parse_profile(DOCKERISH, "p.json", native="x86_64", caps=frozenset({"CAP_CHOWN"}))
    assert prof.default == "errno EPERM"
    assert prof.architectures == ("x86_64", "x86", "x32")
    c = compile_entries(list(prof.entries), prof.default, list(prof.architectures))
    run = lambda name, *a: bpf.action_name(bpf.run(c.bpf, lib.syscall_resolve(name), lib.arch_native(), a))  # noqa: E731
    assert run("getpid") == "kill_thread"  # SCMP_ACT_KILL is libseccomp's thread kill
    assert run("mount") == "errno EPERM"  # needs CAP_SYS_ADMIN, which the workload lacks
    assert run("unshare") == "errno ENOSYS"
    assert run("personality", 0) == run("personality", 8) == "allow"  # same index twice: ORed
    assert run("personality", 0x40000) == "errno EPERM"
    assert run("clone", 17) == "allow" and run("clone", 0x10000000 | 17) == "errno EPERM"
    assert run("uname") == "log"
    assert any("needs CAP_SYS_ADMIN" in s for s in prof.skipped)
    assert any("needs kernel 99.0" in s for s in prof.skipped)
    with_admin = parse_profile(DOCKERISH, "p.json", native="x86_64", caps=ALL_CAPS)
    c2 = compile_entries(list(with_admin.entries), with_admin.default, ["native"])
    assert bpf.action_name(bpf.run(c2.bpf, NR["mount"], lib.arch_native())) == "allow"
    assert bpf.action_name(bpf.run(c2.bpf, NR["unshare"], lib.arch_native())) == "errno EPERM"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(defaultAction="SCMP_ACT_NOTIFY"), "listener"),
    (lambda d: d["syscalls"].append({"names": ["read"], "action": "SCMP_ACT_TRACE"}), "tracer"),
    (lambda d: d["syscalls"].append({"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                     "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}), r"index: must be 0..5"),
    (lambda d: d["syscalls"].append({"names": [], "action": "SCMP_ACT_ALLOW"}), "non-empty"),
    (lambda d: d["syscalls"].append({"names": ["read"], "action": "SCMP_ACT_ALOW"}), "unknown action"),
])
def test_profile_mistakes_name_the_place(mutate, message):
    data = json.loads(json.dumps(DOCKERISH))
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "p.json", native="x86_64", caps=ALL_CAPS)


def test_a_spec_imports_a_profile_file_and_adds_rules_on_top(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(DOCKERISH))
    p = plan_of("  profile: ./p.json\n  rules:\n    - {syscalls: [getpid], action: allow}\n"
                "    - {syscalls: [mount], action: errno EACCES}\n", base_dir=str(tmp_path))
    assert p.profile == str(tmp_path / "p.json")
    assert answer(p, "getpid") == "allow"  # the spec's rule beats the profile's kill
    assert answer(p, "mount") == "errno EACCES"
    assert answer(p, "keyctl") == "errno EPERM"  # the profile's default
    (tmp_path / "bad.json").write_text("{\"defaultAction\": ")
    with pytest.raises(PlanError, match=r"bad.json:1:\d+: not JSON") as exc:
        plan_of("  profile: bad.json\n", base_dir=str(tmp_path))
    assert exc.value.field == "seccomp.profile"


def test_the_shipped_default_profile_compiles_and_denies_what_it_says():
    p = plan_of("  profile: default\n")
    assert "x86" in p.architectures or not NATIVE_IS_X86_64
    assert answer(p, "keyctl") == "errno EPERM"
    assert answer(p, "socket", 40) == "errno EPERM" and answer(p, "socket", 2) == "allow"  # no vsock
    # The default capability set has no CAP_SYS_ADMIN: no mounts, no new namespaces.
    assert answer(p, "mount") == "errno EPERM"
    assert answer(p, "clone", 0x10000000 | 17) == "errno EPERM" and answer(p, "clone", 0x3D0F00) == "allow"
    assert answer(p, "clone3") == "errno ENOSYS"
    assert answer(p, "personality", 0x40000) == "errno EPERM" and answer(p, "personality", 8) == "allow"
    assert answer(p, "chroot") == "allow"  # CAP_SYS_CHROOT is in the default set
    assert answer(p, "read") == answer(p, "execve") == "allow"


# --- the CLI ---------------------------------------------------------------------------
def test_plan_shows_the_filter_size_and_export_writes_the_same_bytes(write_spec, tmp_path):
    path = write_spec("version: 1\nnamespaces: [user]\nprocess: {command: [/bin/true]}\n"
                      "seccomp:\n  default: allow\n  rules: [{syscalls: ['@mount'], action: errno EPERM}]\n")
    out = cli("plan", str(path))
    assert out.returncode == 0, out.stderr
    m = re.search(r"seccomp .*instructions=(\d+)", out.stdout)
    assert m, out.stdout
    exported = cli("seccomp", "export", str(path), "-o", str(tmp_path / "f.bpf"))
    assert exported.returncode == 0, exported.stderr
    data = (tmp_path / "f.bpf").read_bytes()
    assert len(data) // 8 == int(m.group(1))
    assert bpf.action_name(bpf.run(data, NR["mount"], lib.arch_native())) == "errno EPERM"
    assert "instructions" in exported.stderr


def test_cli_export_without_a_seccomp_section_and_explain_and_groups(write_spec):
    path = write_spec("version: 1\nprocess: {command: [/bin/true]}\n")
    out = cli("seccomp", "export", str(path), "-o", "/dev/null")
    assert out.returncode == 66 and "no `seccomp:` section" in out.stderr
    path = write_spec("version: 1\nprocess: {command: [/bin/true]}\nseccomp:\n  default: allow\n"
                      "  rules: [{syscalls: [socket], action: errno EAFNOSUPPORT, "
                      "args: [{index: 0, op: eq, value: AF_INET6}]}]\n")
    out = cli("seccomp", "explain", str(path))
    assert out.returncode == 0 and re.search(r"socket\s+arg0 == 0xa: errno EAFNOSUPPORT; otherwise allow", out.stdout)
    out = cli("seccomp", "groups", "@mount")
    assert out.returncode == 0 and "umount2" in out.stdout


def test_binding_layout_and_version():
    assert lib.version() >= (2, 5, 0)
    assert lib._ArgCmp.__sizeof__(lib._ArgCmp()) >= 24 and lib.ctypes.sizeof(lib._ArgCmp) == 24
    assert lib.syscall_name(lib.arch_native(), NR["getpid"]) == "getpid"
