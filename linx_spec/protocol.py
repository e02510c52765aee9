"""The runner's half of the agent protocol: the only Python code that packs or
unpacks agent frames.  The agent's half is agent/lx_proto.h; change both in the
same commit.

    runner (Python)                      agent (C)                    child
    ---------------                      ---------                    -----
    HELLO ------------------------------>
          <------------------------------ READY {version, agent pid}
    SPAWN {ns flags, joins, grace,       open joins, setns, clone -->  parked on
           cgroup fd?} ----------------->  (clone3 CLONE_INTO_CGROUP     a pipe read
                                            with the fd, else clone)
          <------------------------------ SPAWNED {host pid, in cgroup?,
                                                   errno of a refused clone3}
    (host steps: idmap, cgroup, network, rlimits; TRACK_CGROUP per cgroup)
    TRACK_CGROUP {path, remove only?} -->
          <------------------------------ OK
    CGROUPNS --------------------------->  park word 0xfffffffe -------->  unshare the
                                           (an OCI `create`: the            cgroup ns now,
                                           container is in all its          park again
                                           namespaces when it returns) <--  record
          <------------------------------ OK | ERROR {step cgroupns, errno}
    PROCEED {step order, settings} ----->  settings over the pipe ---->  child steps,
                                           status pipe (CLOEXEC):        then execve
                                             EOF, no failure record  <--  exec worked
          <------------------------------ RUNNING {timings}
      or  <------------------------------ ERROR {step, errno, detail}
    ABORT ------------------------------>  SIGKILL the parked child
          <------------------------------ ABORTED
    SIGNAL {signo} --------------------->  kill(child, signo)
          <------------------------------ OK
    WAIT ------------------------------->  (when the workload ends)
          <------------------------------ EXITED {code} | SIGNALED {signo, core}
    LINGER {path} ---------------------->  on channel close, keep the workload
          <------------------------------ OK
    RELEASE ---------------------------->  (running workload, an OCI runtime's
          <------------------------------ OK   `start`) let go of it: exit at once;
                                           the workload is reparented to the
                                           nearest subreaper (the engine's shim)
    (channel closes) ------------------->  SIGTERM, grace, SIGKILL, kill and
                                           remove tracked cgroups, exit; or, if
                                           lingering: reap it, write its end to
                                           path, remove tracked cgroups, exit

The zygote (``linx-agent --zygote``, one per linx_spec.Runner) speaks the same
frames on its own channel and forks one agent per workload, which then speaks
the exchange above on the channel it was given:

    runner                               zygote                       agent
    FORK {stdio mask} + SCM_RIGHTS ----->  fork ------------------------>  channel as
      [channel, stdin?, stdout?, stderr?]  (bit i of the mask: fd i        fd 3, stdio
                                            rides along; absent: closed)   as 0, 1, 2
          <------------------------------ FORKED {agent pid} + SCM_RIGHTS [pidfd]
      or  <------------------------------ ERROR {step spawn, errno, detail}
    (channel closes) ------------------->  exit; the agents it forked run on,
                                           each on its own channel

Every frame, both ways: ``u16 magic 'LX' | u8 version | u8 type | u32 seq | u32 len``
(little-endian, 12 bytes), then ``len`` bytes of attributes, each
``u16 type | u16 zero | u32 len | value``.  A reply carries its request's seq.
Strings carry no NUL.  Integers are u32/u64 little-endian.  One request may
carry a file descriptor (SCM_RIGHTS on the frame's bytes): SPAWN with
CGROUP_FD=1, the cgroup v2 directory the child is cloned into; SPAWNED answers
CGROUP_FD=1 when it was, 0 when the runner must move the child itself.  A
descriptor that comes with any other frame is closed unused.
"""

from __future__ import annotations

import struct

from .intenum import IntEnum, IntFlag  # not enum's: ~6 ms of a cached apply (intenum.py)
from .record import Factory, Record

MAGIC = 0x584C
VERSION = 1
HDR = struct.Struct("<HBBII")
HDR_LEN = HDR.size  # 12
MAX_PAYLOAD = 1 << 20
ATTR = struct.Struct("<HHI")


class Msg(IntEnum):
    HELLO = 0x01
    SPAWN = 0x02
    TRACK_CGROUP = 0x03
    PROCEED = 0x04
    ABORT = 0x05
    SIGNAL = 0x06
    WAIT = 0x07
    LINGER = 0x08
    FORK = 0x09  # to the zygote (agent/lx_zygote.c)
    RELEASE = 0x0E
    CGROUPNS = 0x4C  # 76 (the protocol numbers given to the OCI lifecycle work)
    READY = 0x41
    SPAWNED = 0x42
    RUNNING = 0x43
    EXITED = 0x44
    SIGNALED = 0x45
    ABORTED = 0x46
    OK = 0x47
    FORKED = 0x48  # from the zygote
    ERROR = 0x4F


class A(IntEnum):
    """Attribute types (enum lx_attr)."""

    VERSION = 1
    PID = 2
    STEP = 3
    ERRNO = 4
    DETAIL = 5
    CODE = 6
    SIGNO = 7
    CORE = 8
    WSTATUS = 9
    TIMING = 10
    PATH = 11
    NS_FLAGS = 20
    NS_JOIN = 21
    GRACE_MS = 22
    CGROUP_FD = 23
    STEP_ORDER = 30
    EXEC_PATH = 31
    ARG = 32
    ENV = 33
    CWD = 34
    HOSTNAME = 35
    DOMAINNAME = 36
    UID = 37
    GID = 38
    GROUP = 39
    UMASK = 40
    CAP_BOUNDING = 41
    CAP_EFFECTIVE = 42
    CAP_PERMITTED = 43
    CAP_INHERITABLE = 44
    CAP_AMBIENT = 45
    NO_NEW_PRIVS = 46
    SECCOMP = 47
    MOUNT = 48
    ROOTFS = 49
    MOUNT_OPT = 50
    SESSION = 51
    REMOVE_ONLY = 52
    STDIO = 53  # FORK: bit i set = fd i of the agent rides with the frame
    TIME_MONOTONIC = 60
    TIME_BOOTTIME = 61
    PDEATHSIG = 62


U32_ATTRS = {A.VERSION, A.PID, A.STEP, A.ERRNO, A.CODE, A.SIGNO, A.CORE, A.WSTATUS, A.NS_FLAGS,
             A.GRACE_MS, A.CGROUP_FD, A.UID, A.GID, A.GROUP, A.UMASK, A.NO_NEW_PRIVS, A.MOUNT_OPT, A.SESSION, A.REMOVE_ONLY,
             A.PDEATHSIG, A.STDIO}
U64_ATTRS = {A.CAP_BOUNDING, A.CAP_EFFECTIVE, A.CAP_PERMITTED, A.CAP_INHERITABLE, A.CAP_AMBIENT,
             A.TIME_MONOTONIC, A.TIME_BOOTTIME}
STR_ATTRS = {A.DETAIL, A.PATH, A.EXEC_PATH, A.ARG, A.ENV, A.CWD, A.HOSTNAME, A.DOMAINNAME, A.ROOTFS}

MOUNT_OPT_SLAVE = 1  # A.MOUNT_OPT bits
MOUNT_OPT_READONLY_ROOT = 2


class MA(IntEnum):
    """Nested attributes of one A.MOUNT value (enum lx_mount_attr), numbered
    apart from A; an MF.ROOT entry (first) is mounted onto A.ROOTFS."""

    KIND = 0x100
    TARGET = 0x101
    SOURCE = 0x102
    FSTYPE = 0x103
    OPTION = 0x104
    FLAGS = 0x105
    CONTENT = 0x106
    MODE = 0x107
    MAJOR = 0x108
    MINOR = 0x109
    UID = 0x10a
    GID = 0x10b


class MK(IntEnum):
    """Mount kinds (enum lx_mount_kind)."""

    BIND = 1
    FS = 2
    DEV = 3
    MASK = 4
    READONLY = 5
    FILE = 6
    NODE = 7


class MF(IntFlag):
    """Mount flags (enum lx_mount_flag)."""

    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    RECURSIVE = 16
    CREATE = 32
    OPTIONAL = 64
    ROOT = 128


U32_ATTRS |= {MA.KIND, MA.FLAGS, MA.MODE, MA.MAJOR, MA.MINOR, MA.UID, MA.GID}
STR_ATTRS |= {MA.TARGET, MA.SOURCE, MA.FSTYPE, MA.OPTION}


class FrameError(ValueError):
    """A frame that does not follow the protocol."""


class Frame(Record, frozen=False):
    type: int
    seq: int
    attrs: list[tuple[int, bytes]] = Factory(list)
    version: int = VERSION

    def get(self, attr: int, default=None):
        for t, v in self.attrs:
            if t == attr:
                return _decode_value(t, v)
        return default

    def all(self, attr: int) -> list:
        return [_decode_value(t, v) for t, v in self.attrs if t == attr]


def _decode_value(t: int, v: bytes):
    if t in U32_ATTRS:
        if len(v) != 4:
            raise FrameError(f"attribute {t}: expected 4 bytes, got {len(v)}")
        return struct.unpack("<I", v)[0]
    if t in U64_ATTRS:
        if len(v) != 8:
            raise FrameError(f"attribute {t}: expected 8 bytes, got {len(v)}")
        return struct.unpack("<Q", v)[0]
    if t in STR_ATTRS:
        if b"\0" in v:
            raise FrameError(f"attribute {t}: string contains NUL")
        return v.decode("utf-8", "surrogateescape")
    return v


def attr(t: int, value) -> bytes:
    """Encode one attribute; the value's Python type decides the encoding."""
    if t in U32_ATTRS:
        v = struct.pack("<I", value & 0xFFFFFFFF)
    elif t in U64_ATTRS:
        v = struct.pack("<Q", value)
    elif isinstance(value, str):
        v = value.encode("utf-8", "surrogateescape")
        if b"\0" in v:
            raise FrameError(f"attribute {t}: string contains NUL")
    else:
        v = bytes(value)
    return ATTR.pack(t, 0, len(v)) + v


def encode(type_: int, seq: int, attrs: list[tuple[int, object]] | bytes = (), *, version: int = VERSION) -> bytes:
    if isinstance(attrs, (bytes, bytearray)):
        payload = bytes(attrs)
    else:
        payload = b"".join(attr(t, v) for t, v in attrs)
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD}")
    return HDR.pack(MAGIC, version, type_, seq, len(payload)) + payload


def decode_header(raw: bytes) -> tuple[int, int, int, int]:
    """-> (version, type, seq, len); FrameError on a bad magic or size."""
    magic, version, type_, seq, length = HDR.unpack(raw)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic:#06x}")
    if length > MAX_PAYLOAD:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {MAX_PAYLOAD}")
    return version, type_, seq, length


def decode_attrs(payload: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off < len(payload):
        if len(payload) - off < ATTR.size:
            raise FrameError("truncated attribute header")
        t, zero, length = ATTR.unpack_from(payload, off)
        off += ATTR.size
        if zero != 0 or length > len(payload) - off:
            raise FrameError("truncated or malformed attribute")
        out.append((t, payload[off:off + length]))
        off += length
    return out


def decode(raw: bytes) -> Frame:
    """Decode one whole frame (header and payload)."""
    if len(raw) < HDR_LEN:
        raise FrameError("short frame")
    version, type_, seq, length = decode_header(raw[:HDR_LEN])
    if len(raw) != HDR_LEN + length:
        raise FrameError(f"frame length {length} does not match {len(raw) - HDR_LEN} bytes")
    return Frame(type_, seq, decode_attrs(raw[HDR_LEN:]), version)


def decode_timings(raw: bytes) -> list[tuple[int, int]]:
    """TIMING attribute -> [(step id, nanoseconds)]."""
    return [(s, ns) for s, _z, ns in struct.iter_unpack("<HHI", raw)]


def ns_join_value(clone_flag: int, path: str) -> bytes:
    return struct.pack("<I", clone_flag) + path.encode("utf-8", "surrogateescape")


def step_order_value(step_ids: list[int]) -> bytes:
    return struct.pack(f"<{len(step_ids)}H", *step_ids)


def proceed_attrs(plan, order: list[int], session: int = 0) -> list[tuple[int, object]]:
    """The PROCEED payload: the child-side settings of a Plan, in step order.
    session: 1 = new session (detached), 2 = new session with fd 0 as its tty."""
    p = plan.process
    attrs: list[tuple[int, object]] = [(A.STEP_ORDER, step_order_value(order)), (A.EXEC_PATH, p.exec_path)]
    attrs += [(A.ARG, a) for a in p.argv]
    attrs += [(A.ENV, e) for e in p.env]
    attrs.append((A.CWD, p.cwd))
    if plan.hostname is not None:
        attrs.append((A.HOSTNAME, plan.hostname))
    if plan.domainname is not None:
        attrs.append((A.DOMAINNAME, plan.domainname))
    attrs += [(A.UID, p.uid), (A.GID, p.gid)]
    attrs += [(A.GROUP, g) for g in p.groups]
    if p.umask is not None:
        attrs.append((A.UMASK, p.umask))
    caps = plan.capabilities
    if caps is not None:
        attrs += [(A.CAP_BOUNDING, caps.bounding), (A.CAP_EFFECTIVE, caps.effective),
                  (A.CAP_PERMITTED, caps.permitted), (A.CAP_INHERITABLE, caps.inheritable),
                  (A.CAP_AMBIENT, caps.ambient)]
    attrs.append((A.NO_NEW_PRIVS, 1 if plan.no_new_privs else 0))
    if session:
        attrs.append((A.SESSION, session))
    if plan.time_offsets_ns is not None:
        attrs += [(A.TIME_MONOTONIC, plan.time_offsets_ns[0]), (A.TIME_BOOTTIME, plan.time_offsets_ns[1])]
    if plan.seccomp is not None:
        attrs.append((A.SECCOMP, plan.seccomp.bpf))
    if plan.mounts is not None:
        attrs += mount_attrs(plan.mounts)
    return attrs


def mount_attrs(mounts_plan) -> list[tuple[int, object]]:
    """Mount entries (nested attributes, agent/lx_mounts.c); the MountsPlan (plan/mounts.py)
    lists them in the order the child mounts."""
    return mounts_plan.encode(attr)
