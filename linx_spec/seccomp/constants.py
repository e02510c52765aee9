"""Symbolic constants accepted as argument values: `AF_INET6`, `CLONE_NEWUSER|CLONE_NEWNS`...

Only names whose value is the same on every architecture this project builds
filters for (x86_64, x86, x32, aarch64, arm) are listed: that is what
"unambiguous" means here.  `O_DIRECTORY`, `O_NOFOLLOW`, `O_DIRECT`,
`O_LARGEFILE` and `O_TMPFILE` differ between x86 and arm and are left out on
purpose (write the number for your architecture instead).  A unit test
compiles a C program against the system headers and compares every value.
"""

from __future__ import annotations

import re
from ..suggest import closest

__all__ = ["CONSTANTS", "parse_value", "UINT64_MAX"]

UINT64_MAX = 2**64 - 1


def _table() -> dict[str, int]:
    t: dict[str, int] = {}
    # socket(2) domains (linux/socket.h)
    for i, name in enumerate(
        "UNSPEC UNIX INET AX25 IPX APPLETALK NETROM BRIDGE ATMPVC X25 INET6 ROSE DECnet NETBEUI SECURITY "
        "KEY NETLINK PACKET ASH ECONET ATMSVC RDS SNA IRDA PPPOX WANPIPE LLC IB MPLS CAN TIPC BLUETOOTH "
        "IUCV RXRPC ISDN PHONET IEEE802154 CAIF ALG NFC VSOCK KCM QIPCRTR SMC XDP MCTP".split()
    ):
        t[f"AF_{name}"] = i
    t["AF_LOCAL"] = 1
    t["AF_ROUTE"] = 16
    # socket(2) types and flags
    t.update(SOCK_STREAM=1, SOCK_DGRAM=2, SOCK_RAW=3, SOCK_RDM=4, SOCK_SEQPACKET=5, SOCK_DCCP=6,
             SOCK_PACKET=10, SOCK_NONBLOCK=0o4000, SOCK_CLOEXEC=0o2000000)
    t.update(IPPROTO_IP=0, IPPROTO_ICMP=1, IPPROTO_TCP=6, IPPROTO_UDP=17, IPPROTO_IPV6=41,
             IPPROTO_ICMPV6=58, IPPROTO_SCTP=132, IPPROTO_RAW=255)
    # clone(2) / unshare(2) flags (linux/sched.h)
    t.update(CLONE_NEWTIME=0x80, CLONE_VM=0x100, CLONE_FS=0x200, CLONE_FILES=0x400, CLONE_SIGHAND=0x800,
             CLONE_PIDFD=0x1000, CLONE_PTRACE=0x2000, CLONE_VFORK=0x4000, CLONE_PARENT=0x8000,
             CLONE_THREAD=0x10000, CLONE_NEWNS=0x20000, CLONE_SYSVSEM=0x40000, CLONE_SETTLS=0x80000,
             CLONE_PARENT_SETTID=0x100000, CLONE_CHILD_CLEARTID=0x200000, CLONE_DETACHED=0x400000,
             CLONE_UNTRACED=0x800000, CLONE_CHILD_SETTID=0x1000000, CLONE_NEWCGROUP=0x2000000,
             CLONE_NEWUTS=0x4000000, CLONE_NEWIPC=0x8000000, CLONE_NEWUSER=0x10000000,
             CLONE_NEWPID=0x20000000, CLONE_NEWNET=0x40000000, CLONE_IO=0x80000000)
    # open(2) flags that are the same on x86 and arm (asm-generic/fcntl.h)
    t.update(O_RDONLY=0, O_WRONLY=1, O_RDWR=2, O_ACCMODE=3, O_CREAT=0o100, O_EXCL=0o200, O_NOCTTY=0o400,
             O_TRUNC=0o1000, O_APPEND=0o2000, O_NONBLOCK=0o4000, O_DSYNC=0o10000, O_ASYNC=0o20000,
             O_NOATIME=0o1000000, O_CLOEXEC=0o2000000, O_SYNC=0o4010000, O_PATH=0o10000000)
    # prctl(2) options (linux/prctl.h)
    t.update(PR_SET_PDEATHSIG=1, PR_GET_PDEATHSIG=2, PR_GET_DUMPABLE=3, PR_SET_DUMPABLE=4,
             PR_GET_KEEPCAPS=7, PR_SET_KEEPCAPS=8, PR_SET_NAME=15, PR_GET_NAME=16, PR_GET_SECCOMP=21,
             PR_SET_SECCOMP=22, PR_CAPBSET_READ=23, PR_CAPBSET_DROP=24, PR_GET_SECUREBITS=27,
             PR_SET_SECUREBITS=28, PR_SET_TIMERSLACK=29, PR_GET_TIMERSLACK=30, PR_SET_MM=35,
             PR_SET_CHILD_SUBREAPER=36, PR_GET_CHILD_SUBREAPER=37, PR_SET_NO_NEW_PRIVS=38,
             PR_GET_NO_NEW_PRIVS=39, PR_SET_THP_DISABLE=41, PR_GET_THP_DISABLE=42, PR_CAP_AMBIENT=47,
             PR_SET_PTRACER=0x59616D61)
    # personality(2) (linux/personality.h)
    t.update(PER_LINUX=0, PER_LINUX32=8, UNAME26=0x20000, ADDR_NO_RANDOMIZE=0x40000,
             READ_IMPLIES_EXEC=0x400000, ADDR_LIMIT_32BIT=0x800000)
    # mount(2) flags (linux/mount.h)
    t.update(MS_RDONLY=1, MS_NOSUID=2, MS_NODEV=4, MS_NOEXEC=8, MS_SYNCHRONOUS=16, MS_REMOUNT=32,
             MS_MANDLOCK=64, MS_DIRSYNC=128, MS_NOATIME=1024, MS_NODIRATIME=2048, MS_BIND=4096,
             MS_MOVE=8192, MS_REC=16384, MS_UNBINDABLE=1 << 17, MS_PRIVATE=1 << 18, MS_SLAVE=1 << 19,
             MS_SHARED=1 << 20, MS_RELATIME=1 << 21, MS_STRICTATIME=1 << 24)
    # umount2(2)
    t.update(MNT_FORCE=1, MNT_DETACH=2, MNT_EXPIRE=4, UMOUNT_NOFOLLOW=8)
    # signals that are the same on x86 and arm (asm-generic/signal.h)
    t.update(SIGHUP=1, SIGINT=2, SIGQUIT=3, SIGILL=4, SIGTRAP=5, SIGABRT=6, SIGBUS=7, SIGFPE=8,
             SIGKILL=9, SIGUSR1=10, SIGSEGV=11, SIGUSR2=12, SIGPIPE=13, SIGALRM=14, SIGTERM=15,
             SIGCHLD=17, SIGCONT=18, SIGSTOP=19, SIGTSTP=20, SIGSYS=31)
    # ioctl(2) requests famous for escapes from a sandbox's terminal (asm-generic/ioctls.h)
    t.update(TIOCSTI=0x5412, TIOCLINUX=0x541C)
    return t


CONSTANTS: dict[str, int] = _table()

_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[0-9]+)$")


def _number(word: str) -> int:
    if word.startswith(("0x", "0X", "0b", "0B", "0o", "0O")):
        return int(word, 0)
    if len(word) > 1 and word.startswith("0"):
        return int(word, 8)  # C's leading-zero octal, as in the headers
    return int(word)


def parse_value(value: object) -> int:
    """An argument value: an integer, a constant name, a number in text, or `A|B|...`.

    Raises ValueError with a suggestion for an unknown name."""
    if isinstance(value, bool):
        raise ValueError("an argument value must be an integer or a constant name like AF_INET6")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value}: give the unsigned 64-bit value (e.g. 0xffffffff for a 32-bit -1)")
        if value > UINT64_MAX:
            raise ValueError(f"{value} does not fit in 64 bits")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an argument value must be an integer or a constant name like AF_INET6")
    total = 0
    for part in value.split("|"):
        word = part.strip()
        if _NUMBER.match(word):
            n = _number(word)
        elif word in CONSTANTS:
            n = CONSTANTS[word]
        else:
            close = closest(word, CONSTANTS)
            hint = f"; did you mean `{close}`?" if close else " (write the number instead)"
            raise ValueError(f"unknown constant `{word}`{hint}")
        total |= n
    if total > UINT64_MAX:
        raise ValueError(f"`{value}` does not fit in 64 bits")
    return total
