"""A thin ctypes binding to libseccomp.so.2: only what the compiler needs.

No headers and no compiler are needed: the few prototypes, the layout of
`struct scmp_arg_cmp` and the constants are taken from seccomp.h (libseccomp
2.5, stable ABI since 2.0), see seccomp_init(3), seccomp_rule_add(3),
seccomp_attr_set(3), seccomp_export_bpf(3), seccomp_syscall_resolve_name(3).

Functions return negative errno values on failure (never set errno); `Filter`
turns them into `LibseccompError(what, -rc)`.  The context is always released,
also on failure (`with Filter(...) as f:`).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from functools import lru_cache

__all__ = [
    "ACT_ALLOW", "ACT_ERRNO", "ACT_KILL_PROCESS", "ACT_KILL_THREAD", "ACT_LOG", "ACT_TRAP",
    "ARCH_NATIVE", "CMP", "Filter", "LibseccompError", "NR_SCMP_ERROR", "arch_native", "arch_resolve",
    "available", "load", "syscall_name", "syscall_resolve", "syscall_resolve_arch", "version",
]

# Actions (seccomp.h); SCMP_ACT_KILL is the thread variant.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_BASE = 0x00050000


def ACT_ERRNO(err: int) -> int:
    """SCMP_ACT_ERRNO(x): the syscall is not run and returns -x."""
    return _ACT_ERRNO_BASE | (err & 0xFFFF)


# enum scmp_compare
CMP = {"ne": 1, "lt": 2, "le": 3, "eq": 4, "ge": 5, "gt": 6, "masked_eq": 7}

# enum scmp_filter_attr
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_CTL_OPTIMIZE = 8  # 2.5+: 1 = sorted by priority, 2 = binary tree

ARCH_NATIVE = 0
NR_SCMP_ERROR = -1  # __NR_SCMP_ERROR: the name is unknown to libseccomp on every arch


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op;
    #                       scmp_datum_t datum_a; scmp_datum_t datum_b; }
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class LibseccompError(Exception):
    """A libseccomp call failed: `what` and the (positive) errno it returned."""

    def __init__(self, what: str, err: int):
        self.what = what
        self.errno = err
        name = _errno.errorcode.get(err, str(err))
        super().__init__(f"{what}: {name} ({os.strerror(err)})")


@lru_cache(maxsize=1)
def load() -> ctypes.CDLL:
    """The library, with prototypes set; OSError when it is not installed."""
    try:
        # By its soname, as the dynamic loader finds it for a linked program.  Not
        # ctypes.util first: importing it (subprocess, tempfile) and its ldconfig run
        # were ~10 ms of every cache-miss apply of a spec with seccomp (bench/README.md).
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        from ctypes.util import find_library

        lib = ctypes.CDLL(find_library("seccomp") or "libseccomp.so.2")
    u32, i32, vp, cp = ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    protos = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_arch_add": (i32, [vp, u32]),
        "seccomp_arch_remove": (i32, [vp, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [cp]),
        "seccomp_attr_set": (i32, [vp, i32, u32]),
        "seccomp_syscall_resolve_name": (i32, [cp]),
        "seccomp_syscall_resolve_name_arch": (i32, [u32, cp]),
        # returns malloc'd memory: kept as a void pointer so that it can be freed
        "seccomp_syscall_resolve_num_arch": (vp, [u32, i32]),
        "seccomp_rule_add_array": (i32, [vp, u32, i32, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
        "seccomp_export_bpf": (i32, [vp, i32]),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for fn, (restype, argtypes) in protos.items():
        f = getattr(lib, fn)
        f.restype = restype
        f.argtypes = argtypes
    return lib


def available() -> bool:
    try:
        load()
    except OSError:
        return False
    return True


def version() -> tuple[int, int, int]:
    v = load().seccomp_version().contents
    return (v.major, v.minor, v.micro)


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def arch_native() -> int:
    return load().seccomp_arch_native()


def arch_resolve(name: str) -> int:
    """Arch token for a libseccomp arch name (`x86_64`, `x86`, `x32`...); 0 if unknown."""
    return load().seccomp_arch_resolve_name(name.encode())


@lru_cache(maxsize=4096)
def syscall_resolve(name: str) -> int:
    """Native number; a negative pseudo number (__PNR_*) for a name that exists only on
    other arches; NR_SCMP_ERROR for a name libseccomp does not know at all."""
    return load().seccomp_syscall_resolve_name(name.encode())


@lru_cache(maxsize=8192)
def syscall_resolve_arch(arch: int, name: str) -> int:
    return load().seccomp_syscall_resolve_name_arch(arch, name.encode())


def syscall_name(arch: int, nr: int) -> str | None:
    ptr = load().seccomp_syscall_resolve_num_arch(arch, nr)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        _libc.free(ptr)


class Filter:
    """One scmp_filter_ctx: init, arches, attributes, rules, export, release."""

    def __init__(self, default_action: int):
        self._lib = load()
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise LibseccompError(f"seccomp_init({default_action:#x})", _errno.EINVAL)

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise LibseccompError(what, -rc)
        return rc

    def arch_add(self, token: int) -> None:
        rc = self._lib.seccomp_arch_add(self._ctx, token)
        if rc == -_errno.EEXIST:  # already there (the native arch is, after init)
            return
        self._check(rc, f"seccomp_arch_add({token:#x})")

    def arch_remove(self, token: int) -> None:
        self._check(self._lib.seccomp_arch_remove(self._ctx, token), f"seccomp_arch_remove({token:#x})")

    def attr_set(self, attr: int, value: int) -> None:
        self._check(self._lib.seccomp_attr_set(self._ctx, attr, value), f"seccomp_attr_set({attr}, {value:#x})")

    def rule_add(self, action: int, nr: int, conds: list[tuple[int, str, int, int]]) -> int:
        """conds: (arg index, op name, datum_a, datum_b); returns libseccomp's rc (<0 = -errno)."""
        arr = (_ArgCmp * max(1, len(conds)))()
        for i, (arg, op, a, b) in enumerate(conds):
            arr[i] = _ArgCmp(arg, CMP[op], a & 0xFFFFFFFFFFFFFFFF, b & 0xFFFFFFFFFFFFFFFF)
        return self._lib.seccomp_rule_add_array(self._ctx, action, nr, len(conds), arr)

    def export_bpf(self) -> bytes:
        """The filter as the kernel takes it: an array of struct sock_filter."""
        fd = os.memfd_create("linx-seccomp", os.MFD_CLOEXEC)
        try:
            self._check(self._lib.seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> "Filter":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.release()
        except Exception:
            pass


class BuildTimeout(Exception):
    """libseccomp did not finish; `at` is the index of the rule it was adding."""

    def __init__(self, at: int):
        self.at = at
        super().__init__(f"libseccomp did not finish adding rule {at}")


class RuleRefused(Exception):
    def __init__(self, at: int, err: int):
        self.at = at
        self.errno = err
        super().__init__(f"rule {at}: {_errno.errorcode.get(err, err)}")


def build_guarded(default_action: int, attrs: list[tuple[int, int]], arches: list[int],
                  rules: list[tuple[int, int, list[tuple[int, str, int, int]]]], timeout: float = 2.0) -> bytes:
    """Build and export a filter in a forked child, with a deadline.

    libseccomp 2.5.4 can loop forever in its rule tree (two rules that share a range
    comparison of one argument and then compare different arguments), so the
    planning process never calls seccomp_rule_add itself: a child does, reports each
    rule before adding it, and is killed when the deadline passes.  Raises
    BuildTimeout(index), RuleRefused(index, errno) or LibseccompError."""
    import base64
    import json
    import select
    import signal
    import struct
    import time

    load()  # resolve the library before forking
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(r)
        # Never outlive the deadline, nor the parent (which may be interrupted).
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(timeout) + 2)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        code = 0
        try:
            with Filter(default_action) as f:
                for attr, value in attrs:
                    f.attr_set(attr, value)
                for token in arches:
                    f.arch_add(token)
                for k, (action, nr, conds) in enumerate(rules):
                    os.write(w, b"P" + struct.pack("=I", k))  # progress: which rule is being added
                    rc = f.rule_add(action, nr, conds)
                    if rc < 0:
                        raise RuleRefused(k, -rc)
                data = f.export_bpf()
            reply = json.dumps(["ok", base64.b64encode(data).decode()]).encode()
        except (RuleRefused, LibseccompError) as exc:
            reply = json.dumps(["err", type(exc).__name__, getattr(exc, "at", -1), exc.errno, str(exc)]).encode()
        except BaseException as exc:  # noqa: BLE001 - report, never return into the parent's code
            reply = json.dumps(["err", "Exception", -1, 0, repr(exc)]).encode()
            code = 1
        try:
            os.write(w, b"R" + struct.pack("=I", len(reply)))
            view = memoryview(reply)
            while view:
                n = os.write(w, view)
                view = view[n:]
        finally:
            os._exit(code)
    os.close(w)
    buf = bytearray()
    last = -1
    deadline = time.monotonic() + timeout
    done = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise BuildTimeout(last)
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            # Progress records (P + rule index) until the reply (R + length + JSON).
            while len(buf) >= 5 and buf[:1] == b"P":
                last = struct.unpack("=I", bytes(buf[1:5]))[0]
                del buf[:5]
            if buf[:1] == b"R" and len(buf) >= 5:
                need = struct.unpack("=I", bytes(buf[1:5]))[0]
                if len(buf) >= 5 + need:
                    break
        done = True
    finally:
        os.close(r)
        if not done:
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still our child
        os.waitpid(pid, 0)
    if buf[:1] != b"R":
        raise LibseccompError("the libseccomp child ended without a reply", _errno.EIO)
    need = struct.unpack("=I", bytes(buf[1:5]))[0]
    # Data, not pickle: nothing the child sends can become code in the planner.
    reply = json.loads(bytes(buf[5:5 + need]))
    if reply[0] == "ok":
        return base64.b64decode(reply[1])
    _, kind, at, err, text = reply
    if kind == "RuleRefused":
        raise RuleRefused(at, err)
    raise LibseccompError(text, err or _errno.EIO)
