"""The netlink transport of the network step: pyroute2 encodes, we send and read the acks.

pyroute2 stays the netlink library: its message classes (ifinfmsg, ifaddrmsg,
rtmsg) build every request.  What is ours is only the socket loop below, and
only for speed (measured):
    pyroute2's IPRoute costs ~0.2 ms of Python per request (asyncio, argument
    filters, full decoding of replies); the kernel needs ~5 us for most of them.
    So requests are encoded with pyroute2's message classes and sent on a socket
    of ours, and replies are read here: an ack, or the two attributes we need.
pyroute2 itself is imported only when a message is built (its import costs
~120 ms): the default plan, lo up and maybe sysctls, never loads it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ..errors import touching

NETLINK_ROUTE = 0
IFF_UP = 0x1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x200, 0x400, 0x300
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # flags of an ack
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1  # what `ip route add` sends
_NLMSGHDR = struct.Struct("=IHHII")
REPLY_TIMEOUT_S = 10
_RTATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a request: its errno, and its own words (extended ack) when
    it gave some (the step's error shows them as `(kernel: ...)`)."""

    def __init__(self, code: int, kernel: str):
        super().__init__(code, os.strerror(code))
        self.code, self.kernel = code, kernel
        if kernel and kernel != os.strerror(code):
            self.kernel_message = kernel


def rtattrs(data: bytes, offset: int):
    """(type, payload) of each rtattr from offset on (nested flag bits masked)."""
    end = len(data)
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4: offset + length]
        offset += (length + 3) & ~3


class Rtnl:
    """A NETLINK_ROUTE socket of ours (in whichever netns it was created in)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.seq = 0
        try:
            sock.bind((0, 0))
            # The kernel's own words on errors (extack), without echoing our request back.
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            # The kernel always answers; a stuck answer should fail the step, not hang it.
            sock.settimeout(REPLY_TIMEOUT_S)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def here(cls) -> "Rtnl":
        return cls(netlink_socket())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, msg, kind: int, flags: int) -> int:
        self.seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = self.seq
        msg["header"]["pid"] = 0
        msg.encode()
        # pyroute2's buffer may be longer than the message: send exactly nlmsg_len bytes.
        self.sock.sendto(msg.data[:msg["header"]["length"]], (0, 0))  # to the kernel (port 0)
        return self.seq

    def _replies(self, seq: int):
        while True:
            data = self.sock.recv(1 << 18)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                if mseq == seq:
                    yield kind, flags, data[offset + _NLMSGHDR.size: offset + length]
                offset += (length + 3) & ~3

    @staticmethod
    def _error(flags: int, body: bytes) -> NetlinkError | None:
        code = -struct.unpack_from("=i", body)[0]
        if code == 0:
            return None
        kernel = ""
        if flags & NLM_F_ACK_TLVS:
            # struct nlmsgerr: error, then our header (and our payload, unless capped).
            skip = 4 + _NLMSGHDR.size
            if not flags & NLM_F_CAPPED:
                skip = 4 + _NLMSGHDR.unpack_from(body, 4)[0]
            for kind, value in rtattrs(body, (skip + 3) & ~3):
                if kind == NLMSGERR_ATTR_MSG:
                    kernel = value.rstrip(b"\0").decode(errors="replace")
        return NetlinkError(code, kernel)

    def request(self, msg, kind: int, flags: int = 0) -> None:
        seq = self._send(msg, kind, flags | NLM_F_ACK)
        for rkind, rflags, body in self._replies(seq):
            if rkind == NLMSG_ERROR:
                err = self._error(rflags, body)
                if err:
                    raise err
                return

    def dump(self, msg, kind: int) -> list[bytes]:
        out: list[bytes] = []
        seq = self._send(msg, kind, NLM_F_DUMP)
        for rkind, rflags, body in self._replies(seq):
            if rkind == NLMSG_DONE:
                return out
            if rkind == NLMSG_ERROR:
                err = self._error(rflags, body)
                if err:
                    raise err
                return out
            out.append(body)
        return out

    def get(self, msg, kind: int) -> bytes:
        seq = self._send(msg, kind, 0)
        for rkind, rflags, body in self._replies(seq):
            if rkind == NLMSG_ERROR:
                raise self._error(rflags, body) or NetlinkError(errno.EPROTO, "empty reply")
            return body
        raise NetlinkError(errno.EPROTO, "no reply")


def link_msg(index: int = 0, up: bool = False, attrs: list | None = None, kind: str | None = None,
              data: list | None = None):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # pyroute2 only when interfaces exist

    msg = ifinfmsg()
    msg["index"] = index
    if up:
        msg["flags"] = msg["change"] = IFF_UP
    msg["attrs"] = list(attrs or [])
    if kind is not None:
        info: list = [("IFLA_INFO_KIND", kind)]
        if data:
            info.append(("IFLA_INFO_DATA", {"attrs": data}))
        msg["attrs"].append(("IFLA_LINKINFO", {"attrs": info}))
    return msg


def link_index_name(body: bytes) -> tuple[int, str]:
    # struct ifinfomsg: family, pad, type, index (int), flags, change: 16 bytes.
    index = struct.unpack_from("=i", body, 4)[0]
    for kind, value in rtattrs(body, 16):
        if kind == IFLA_IFNAME:
            return index, value.rstrip(b"\0").decode()
    return index, ""


def lookup(nl: Rtnl, name: str) -> int | None:
    try:
        return link_index_name(nl.get(link_msg(attrs=[("IFLA_IFNAME", name)]), RTM_GETLINK))[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def name_of(nl: Rtnl, index: int) -> str | None:
    try:
        return link_index_name(nl.get(link_msg(index=index), RTM_GETLINK))[1]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def netlink_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's netns."""
    with touching("open a netlink socket"):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
