"""Reading compiled filters: decode `struct sock_filter` arrays and run them.

Not a compiler: libseccomp writes every filter.  This is a small interpreter
of classic BPF as the kernel runs it for seccomp (kernel/seccomp.c,
Documentation/userspace-api/seccomp_filter.rst), used to *check* what
libseccomp produced: the plan's safety checks ask it what the filter answers
to the syscalls the child still makes, and the compiler compares its answers
with the rules' meaning before a filter is accepted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Insn", "decode", "run", "action_name", "RET_ACTION_FULL", "RET_DATA",
           "AUDIT_ARCH_X86_64", "AUDIT_ARCH_I386", "X32_SYSCALL_BIT"]

# The returned action's high bits (seccomp.h: SECCOMP_RET_*), most restrictive first.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
BPF_MAXINSNS = 4096  # include/uapi/linux/bpf_common.h: the kernel refuses longer programs


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


def decode(bpf: bytes) -> list[Insn]:
    if len(bpf) % _SOCK_FILTER.size:
        raise ValueError(f"{len(bpf)} bytes is not a whole number of sock_filter instructions")
    return [Insn(*t) for t in _SOCK_FILTER.iter_unpack(bpf)]


def _seccomp_data(nr: int, arch: int, args: tuple[int, ...], ip: int = 0) -> bytes:
    full = tuple(args) + (0,) * (6 - len(args))
    return struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, ip,
                       *(a & 0xFFFFFFFFFFFFFFFF for a in full))


def run(bpf: bytes | list[Insn], nr: int, arch: int, args: tuple[int, ...] = (), ip: int = 0) -> int:
    """What the filter returns for one syscall (the full 32-bit SECCOMP_RET_* value)."""
    prog = decode(bpf) if isinstance(bpf, (bytes, bytearray)) else bpf
    data = _seccomp_data(nr, arch, args, ip)
    a = x = 0
    mem = [0] * 16
    pc = 0
    m32 = 0xFFFFFFFF
    while True:
        if pc >= len(prog):
            raise ValueError("filter ran past its end without returning")
        ins = prog[pc]
        cls = ins.code & 0x07
        if cls == 0x00:  # BPF_LD
            mode = ins.code & 0xE0
            if mode == 0x20:  # ABS, always BPF_W for seccomp
                a = struct.unpack_from("=I", data, ins.k)[0]
            elif mode == 0x00:  # IMM
                a = ins.k
            elif mode == 0x60:  # MEM
                a = mem[ins.k]
            elif mode == 0x80:  # LEN
                a = len(data)
            else:
                raise ValueError(f"unsupported load {ins.code:#x} at {pc}")
        elif cls == 0x01:  # BPF_LDX
            mode = ins.code & 0xE0
            if mode == 0x00:
                x = ins.k
            elif mode == 0x60:
                x = mem[ins.k]
            elif mode == 0x80:
                x = len(data)
            else:
                raise ValueError(f"unsupported ldx {ins.code:#x} at {pc}")
        elif cls == 0x02:  # BPF_ST
            mem[ins.k] = a
        elif cls == 0x03:  # BPF_STX
            mem[ins.k] = x
        elif cls == 0x04:  # BPF_ALU
            op = ins.code & 0xF0
            src = x if ins.code & 0x08 else ins.k
            if op == 0x00:
                a = (a + src) & m32
            elif op == 0x10:
                a = (a - src) & m32
            elif op == 0x20:
                a = (a * src) & m32
            elif op == 0x30:
                if src == 0:
                    return RET_KILL_THREAD  # the kernel's verifier forbids it; never reached
                a = a // src
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & m32
            elif op == 0x70:
                a >>= src
            elif op == 0x80:
                a = (-a) & m32
            elif op == 0x90:
                a = a % src if src else 0
            elif op == 0xA0:
                a ^= src
            else:
                raise ValueError(f"unsupported alu {ins.code:#x} at {pc}")
        elif cls == 0x05:  # BPF_JMP
            op = ins.code & 0xF0
            src = x if ins.code & 0x08 else ins.k
            if op == 0x00:  # JA
                pc += 1 + ins.k
                continue
            if op == 0x10:
                cond = a == src
            elif op == 0x20:
                cond = a > src
            elif op == 0x30:
                cond = a >= src
            elif op == 0x40:
                cond = bool(a & src)
            else:
                raise ValueError(f"unsupported jump {ins.code:#x} at {pc}")
            pc += 1 + (ins.jt if cond else ins.jf)
            continue
        elif cls == 0x06:  # BPF_RET
            return (a if ins.code & 0x10 else ins.k) & m32
        elif cls == 0x07:  # BPF_MISC
            if ins.code & 0xF8 == 0x80:  # TXA
                a = x
            else:  # TAX
                x = a
        pc += 1


def action_name(ret: int) -> str:
    """`allow`, `errno EPERM`, `kill`... for a SECCOMP_RET_* value (the spec's words)."""
    import errno as _errno

    act = ret & RET_ACTION_FULL
    data = ret & RET_DATA
    if act == RET_KILL_PROCESS:
        return "kill"
    if act == RET_KILL_THREAD:
        return "kill_thread"
    if act == RET_TRAP:
        return "trap"
    if act == RET_ERRNO:
        return f"errno {_errno.errorcode.get(data, data)}"
    if act == RET_LOG:
        return "log"
    if act == RET_ALLOW:
        return "allow"
    if act == RET_TRACE:
        return f"trace {data}"
    if act == RET_USER_NOTIF:
        return "notify"
    return f"{ret:#x}"
