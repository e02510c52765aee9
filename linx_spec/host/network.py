"""The network step: loopback, interfaces, addresses, routes and net.* sysctls of
the workload's new net namespace, set up from the host while the child is parked.

What is set up was decided by plan/network.py (resolve, pure).  `apply_from_host`
does the work against the parked child's pid; when the child execs, its network
is complete.

Reaching the child's net namespace.  A netlink socket belongs for its whole life
to the netns of the task that created it, and /proc/sys/net shows the netns of
the task that opens a file in it (net_ctl_header_lookup uses `current`).  setns()
changes only the calling *thread* (namespaces are per task), so a short-lived
thread enters /proc/PID/ns/net, writes the sysctls, creates a netlink socket and
ends; no other thread of the runner ever changes netns.  That costs ~0.2 ms;
pyroute2's `IPRoute(netns=...)` forks a helper process for the same (~6 ms).
Without root (a rootless workload owns its user namespace) the netns can only be
entered through that user namespace, and setns(CLONE_NEWUSER) refuses
multi-threaded callers: a forked child does it (lo and sysctls only; interfaces
need CAP_NET_ADMIN on the host).

Order (each line needs the one before):
  1. net.*.conf.default.* sysctls: interfaces copy them when they are created
  2. interfaces, from the host's netlink socket: veth pairs with the peer created
     directly in the child's netns (IFLA_NET_NS_PID) under its final name,
     macvlan/ipvlan on the host parent likewise (created up), existing devices
     moved and renamed in one RTM_NEWLINK; each host-side object gets its undo
     at once
  3. veth host ends (created up): addresses, refused if the host already has one
  4. inside: the other sysctls (net.ipv4.conf.eth0.* needs eth0), lo up,
     MTU/MAC of moved devices, addresses (IPv6 with IFA_F_NODAD: usable at once,
     no duplicate address detection wait), up, then routes (a gateway must be
     on a subnet of an interface that is up)
pyroute2 is imported only for 2-4 (its import costs ~120 ms): the default plan,
lo up and maybe sysctls, uses an ioctl and plain files.

What remains after the workload: nothing of ours.  Deleting the host end of a
veth deletes the pair; macvlan/ipvlan die with the netns; an `existing` device
is moved back to the runner's netns under its own name (we hold the child's
netns open until then).  Should the runner be killed first, the kernel decides
when the netns dies: virtual devices (veth, ifb, dummy: rtnl_link_ops without
netns_refund) are destroyed, physical ones return to the init netns.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import socket
import struct
import threading
from typing import Any, Callable

from ..errors import StepError, step_error
from ..plan.network import AddressPlan, InterfacePlan, NetworkPlan, RoutePlan, SysctlPlan

STEP = "network"
SIDE = "host"
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
NETLINK_ROUTE = 0
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
LOOPBACK_IFINDEX = 1  # include/net/net_namespace.h: lo is always ifindex 1 in a netns


# --- entering the child's net namespace -------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)


class _Failed(Exception):
    """A failure inside the child's netns, carried back as (what, errno, object)."""

    def __init__(self, what: str, err: int, obj: str = "", kernel: str = ""):
        super().__init__(what, err, obj, kernel)
        self.what, self.err, self.obj, self.kernel = what, err, obj, kernel

    def step_error(self) -> StepError:
        detail = self.what + (f" (kernel: {self.kernel})" if self.kernel else "")
        return StepError(STEP, SIDE, self.err, detail, self.obj)


def _setns(fd: int, nstype: int, path: str) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise _Failed("enter the workload's namespace", err, path)


def _open_ns(pid: int, kind: str) -> int:
    path = f"/proc/{pid}/ns/{kind}"
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _Failed(f"open the workload's {kind} namespace", exc.errno or 0, path) from None


def _in_thread(netns_fd: int, fn: Callable[[], Any], where: str) -> Any:
    """fn() in a new thread that entered netns_fd (opened from `where`); the caller's
    threads never change netns."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            _setns(netns_fd, CLONE_NEWNET, where)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        # The thread ends here, and its netns with it: nothing to restore.

    t = threading.Thread(target=body, name="linx-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _in_child_netns(pid: int, fn: Callable[[], Any]) -> Any:
    fd = _open_ns(pid, "net")
    try:
        return _in_thread(fd, fn, f"/proc/{pid}/ns/net")
    finally:
        os.close(fd)


def _forked_in_userns(pid: int, fn: Callable[[], None]) -> None:
    """Rootless: fn() in a forked child that entered the workload's user, then net, namespace.

    setns(CLONE_NEWUSER) needs a single-threaded caller (user_namespaces(7)); a
    fork has one thread.  Only plain syscalls run in the child, then _exit.
    """
    user_fd = _open_ns(pid, "user")
    try:
        net_fd = _open_ns(pid, "net")
    except BaseException:
        os.close(user_fd)
        raise
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            report = b""
            try:
                os.close(r)
                _setns(user_fd, CLONE_NEWUSER, f"/proc/{pid}/ns/user")
                _setns(net_fd, CLONE_NEWNET, f"/proc/{pid}/ns/net")
                fn()
            except _Failed as exc:
                report = json.dumps([exc.what, exc.err, exc.obj, exc.kernel]).encode()
            except BaseException as exc:  # noqa: BLE001
                report = json.dumps([f"network helper: {exc!r}", errno.EIO, "", ""]).encode()
            try:
                os.write(w, report)
            finally:
                os._exit(0)
        os.close(w)
        w = -1
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.waitpid(child, 0)
    finally:
        for fd in (r, w, user_fd, net_fd):
            if fd >= 0:
                os.close(fd)
    if chunks:
        what, err, obj, kernel = json.loads(b"".join(chunks))
        raise _Failed(what, err, obj, kernel)


# --- things done inside the child's netns (plain syscalls, no pyroute2) --------------------------
def _write_sysctls(sysctls: tuple[SysctlPlan, ...]) -> None:
    for s in sysctls:
        try:
            fd = os.open(s.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, (s.value + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            what = f"write sysctl {s.key}={s.value}"
            if exc.errno == errno.ENOENT:
                what += " (no such sysctl in the workload's network namespace; some exist only in the host's)"
            raise _Failed(what, exc.errno or 0, s.path) from None


def _loopback_up_ioctl() -> None:
    # struct ifreq: char ifr_name[16]; short ifr_flags; padded to 40 bytes.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
            flags = struct.unpack_from("16xH", res)[0]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    except OSError as exc:
        raise _Failed("bring lo up", exc.errno or 0, "lo") from None


def _netlink_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    except OSError as exc:
        raise _Failed("open a netlink socket in the workload's netns", exc.errno or 0) from None


# --- netlink: pyroute2 encodes, we send and read the acks ---------------------------------------
# pyroute2's IPRoute costs ~0.2 ms of Python per request (asyncio, argument
# filters, full decoding of replies); the kernel needs ~5 us for most of them.
# So requests are encoded with pyroute2's message classes and sent on a socket
# of ours, and replies are read here: an ack, or the two attributes we need.
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


class _NlError(Exception):
    def __init__(self, code: int, kernel: str):
        super().__init__(code, kernel)
        self.code, self.kernel = code, kernel


def _attrs(data: bytes, offset: int):
    """(type, payload) of each rtattr from offset on (nested flag bits masked)."""
    end = len(data)
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4: offset + length]
        offset += (length + 3) & ~3


class _Rtnl:
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
    def here(cls) -> "_Rtnl":
        return cls(_netlink_socket())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "_Rtnl":
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
    def _error(flags: int, body: bytes) -> _NlError | None:
        code = -struct.unpack_from("=i", body)[0]
        if code == 0:
            return None
        kernel = ""
        if flags & NLM_F_ACK_TLVS:
            # struct nlmsgerr: error, then our header (and our payload, unless capped).
            skip = 4 + _NLMSGHDR.size
            if not flags & NLM_F_CAPPED:
                skip = 4 + _NLMSGHDR.unpack_from(body, 4)[0]
            for kind, value in _attrs(body, (skip + 3) & ~3):
                if kind == NLMSGERR_ATTR_MSG:
                    kernel = value.rstrip(b"\0").decode(errors="replace")
        return _NlError(code, kernel)

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
                raise self._error(rflags, body) or _NlError(errno.EPROTO, "empty reply")
            return body
        raise _NlError(errno.EPROTO, "no reply")


def _link_msg(index: int = 0, up: bool = False, attrs: list | None = None, kind: str | None = None,
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


def _link_index_name(body: bytes) -> tuple[int, str]:
    # struct ifinfomsg: family, pad, type, index (int), flags, change: 16 bytes.
    index = struct.unpack_from("=i", body, 4)[0]
    for kind, value in _attrs(body, 16):
        if kind == IFLA_IFNAME:
            return index, value.rstrip(b"\0").decode()
    return index, ""


def _lookup(nl: _Rtnl, name: str) -> int | None:
    try:
        return _link_index_name(nl.get(_link_msg(attrs=[("IFLA_IFNAME", name)]), RTM_GETLINK))[0]
    except _NlError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _name_of(nl: _Rtnl, index: int) -> str | None:
    try:
        return _link_index_name(nl.get(_link_msg(index=index), RTM_GETLINK))[1]
    except _NlError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


# --- apply --------------------------------------------------------------------------------------
def apply_from_host(plan: NetworkPlan | None, ctx) -> None:
    """Build the workload's network while it is parked (see the module docstring for the order)."""
    if plan is None:
        return
    try:
        if plan.needs_netlink:
            _Setup(plan, ctx).run()
            return
        if not plan.loopback and not plan.sysctls:
            return

        def inside() -> None:
            _write_sysctls(plan.sysctls)
            if plan.loopback:
                _loopback_up_ioctl()

        if plan.rootless:
            _forked_in_userns(ctx.pid, inside)
        else:
            _in_child_netns(ctx.pid, inside)
    except _Failed as exc:
        raise exc.step_error() from None
    except OSError as exc:  # a netlink socket refused to send or receive
        raise step_error(STEP, SIDE, exc, "talk netlink") from None


class _Setup:
    """Steps 1-4 for one workload; every host-side object is put on the undo list as it is made."""

    def __init__(self, plan: NetworkPlan, ctx):
        self.plan = plan
        self.ctx = ctx
        self.pid = ctx.pid
        self.host_addrs: dict[str, int] | None = None
        self.moved: list[tuple[str, _MoveBack]] = []

    @staticmethod
    def nl(what: str, fn: Callable[..., Any], *args) -> Any:
        """One netlink request; the kernel's refusal becomes _Failed naming the object."""
        try:
            return fn(*args)
        except _NlError as exc:
            kernel = exc.kernel if exc.kernel and exc.kernel != os.strerror(exc.code) else ""
            raise _Failed(what, exc.code, "", kernel) from None
        except OSError as exc:  # the socket itself failed (ENOBUFS, ...)
            raise _Failed(what, exc.errno or 0) from None

    def run(self) -> None:
        plan = self.plan
        early = tuple(s for s in plan.sysctls if s.early)
        late = tuple(s for s in plan.sysctls if not s.early)
        if early:
            _in_child_netns(self.pid, lambda: _write_sysctls(early))
        with _Rtnl.here() as host:
            for n, itf in enumerate(plan.interfaces):
                self.create(host, itf, n)

        def enter() -> socket.socket:
            _write_sysctls(late)
            return _netlink_socket()

        # The socket pins the child's netns: it is closed before we return, or the
        # netns (and what is in it) would outlive the workload.
        with _Rtnl(_in_child_netns(self.pid, enter)) as child:
            inside_index = {name: index for index, name in map(_link_index_name, self.nl(
                "list the workload's interfaces", child.dump, _link_msg(), RTM_GETLINK))}
            for name, mover in self.moved:
                mover.inside_index = inside_index.get(name)
            if plan.loopback:
                self.nl("bring lo up (in the workload)", child.request,
                        _link_msg(LOOPBACK_IFINDEX, up=True), RTM_NEWLINK)
            for itf in plan.interfaces:
                self.configure_inside(child, itf, inside_index)
            for r in plan.routes:
                self.add_route(child, r, inside_index)

    # host side ---------------------------------------------------------------------------------
    def create(self, host: _Rtnl, itf: InterfacePlan, n: int) -> None:
        pid = self.pid
        new = NLM_F_CREATE | NLM_F_EXCL
        if itf.kind == "veth":
            h = itf.host
            hname = h.ifname(pid, n)
            peer: list = [("IFLA_IFNAME", itf.name), ("IFLA_NET_NS_PID", pid)]
            if itf.mtu is not None:
                peer.append(("IFLA_MTU", itf.mtu))
            if itf.mac:
                peer.append(("IFLA_ADDRESS", itf.mac))
            attrs: list = [("IFLA_IFNAME", hname)]
            if h.mtu is not None:
                attrs.append(("IFLA_MTU", h.mtu))
            if h.mac:
                attrs.append(("IFLA_ADDRESS", h.mac))
            # The peer is created in the child's netns under its final name: the
            # host never sees an `eth0` of ours, and "name taken" is about the host end.
            # The peer cannot be brought up in this request (veth_open: ENOTCONN until
            # the pair is complete); configure_inside does it.
            peer_msg = {"attrs": peer}
            self.nl(f"create veth {hname} (peer {itf.name} in the workload)", host.request,
                    _link_msg(up=h.up, attrs=attrs, kind="veth", data=[("VETH_INFO_PEER", peer_msg)]),
                    RTM_NEWLINK, new)
            idx = self.nl(f"find veth {hname} just created", _lookup, host, hname)
            if idx is None:  # deleted under our feet
                raise _Failed(f"find veth {hname} just created", errno.ENODEV, hname)
            self.ctx.on_undo(f"delete veth {hname}", lambda: _delete_link(idx, hname))
            for a in h.addresses:
                owner = self.host_address_owner(host, a.address)
                if owner is not None:
                    raise _Failed(f"add address {a} to {hname}: the host already has {a.address} on {owner}",
                                  errno.EADDRINUSE)
                self.add_address(host, idx, a, hname)
                self.host_addrs[a.address] = idx
        elif itf.kind in ("macvlan", "ipvlan"):
            what = f"find parent interface {itf.parent} of {itf.kind} {itf.name}"
            pidx = self.nl(what, _lookup, host, itf.parent)
            if pidx is None:
                raise _Failed(what, errno.ENODEV, itf.parent)
            attrs = [("IFLA_IFNAME", itf.name), ("IFLA_LINK", pidx), ("IFLA_NET_NS_PID", pid)]
            if itf.mtu is not None:
                attrs.append(("IFLA_MTU", itf.mtu))
            if itf.mac:
                attrs.append(("IFLA_ADDRESS", itf.mac))
            mode = "IFLA_MACVLAN_MODE" if itf.kind == "macvlan" else "IFLA_IPVLAN_MODE"
            # Created directly in the child's netns: nothing of it is ever on the
            # host, and it dies with the netns (no undo needed).
            self.nl(f"create {itf.kind} {itf.name} on {itf.parent} (in the workload)", host.request,
                    _link_msg(up=itf.up, attrs=attrs, kind=itf.kind, data=[(mode, itf.mode)]), RTM_NEWLINK, new)
        else:
            what = f"find host interface {itf.device}"
            idx = self.nl(what, _lookup, host, itf.device)
            if idx is None:
                raise _Failed(what, errno.ENODEV, itf.device)
            mover = _MoveBack(pid, itf.device, itf.name)  # holds both netns open until undo
            try:
                # Moved and renamed in one request (do_setlink: netns first, then the name).
                self.nl(f"move {itf.device} into the workload as {itf.name}", host.request,
                        _link_msg(idx, attrs=[("IFLA_NET_NS_PID", pid), ("IFLA_IFNAME", itf.name)]), RTM_NEWLINK)
            except BaseException:
                mover.close()
                raise
            self.ctx.on_undo(f"move {itf.device} back to the host", mover)
            self.moved.append((itf.name, mover))

    def host_address_owner(self, host: _Rtnl, address: str) -> str | None:
        """The kernel lets two host interfaces share an address; traffic then goes to one of them."""
        if self.host_addrs is None:
            from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

            self.host_addrs = {}
            for body in self.nl("list the host's addresses", host.dump, ifaddrmsg(), RTM_GETADDR):
                family, _plen, _flags, _scope, index = struct.unpack_from("=BBBBi", body)
                found = {k: v for k, v in _attrs(body, 8) if k in (IFA_ADDRESS, IFA_LOCAL)}
                raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
                if raw:
                    self.host_addrs[socket.inet_ntop(family, raw)] = index
        idx = self.host_addrs.get(address)
        if idx is None:
            return None
        return self.nl("name an interface", _name_of, host, idx) or f"ifindex {idx}"

    # inside ------------------------------------------------------------------------------------
    def configure_inside(self, child: _Rtnl, itf: InterfacePlan, inside_index: dict[str, int]) -> None:
        idx = inside_index.get(itf.name)
        if idx is None:
            raise _Failed(f"find {itf.name} in the workload after creating it", errno.ENODEV, itf.name)
        where = f"{itf.name} (in the workload)"
        if itf.kind == "existing" and (itf.mtu is not None or itf.mac):
            attrs: list = []
            if itf.mtu is not None:
                attrs.append(("IFLA_MTU", itf.mtu))
            if itf.mac:
                attrs.append(("IFLA_ADDRESS", itf.mac))
            self.nl(f"set MTU/MAC of {where}", child.request, _link_msg(idx, attrs=attrs), RTM_NEWLINK)
        for a in itf.addresses:
            self.add_address(child, idx, a, where)
        # macvlan/ipvlan were created up; a veth peer cannot be, a moved device comes in down.
        if itf.up and itf.kind in ("veth", "existing"):
            self.nl(f"bring {where} up", child.request, _link_msg(idx, up=True), RTM_NEWLINK)

    def add_address(self, nl: _Rtnl, idx: int, a: AddressPlan, where: str) -> None:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        msg = ifaddrmsg()
        msg["family"] = a.family
        msg["prefixlen"] = a.prefixlen
        msg["index"] = idx
        attrs: list = [("IFA_ADDRESS", a.address)]
        if a.family == socket.AF_INET:
            attrs.append(("IFA_LOCAL", a.address))
            if a.broadcast:
                attrs.append(("IFA_BROADCAST", a.broadcast))
        else:
            attrs.append(("IFA_FLAGS", IFA_F_NODAD))  # usable at once: no 1-2 s of tentative state
        msg["attrs"] = attrs
        self.nl(f"add address {a} to {where}", nl.request, msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_route(self, child: _Rtnl, r: RoutePlan, inside_index: dict[str, int]) -> None:
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        msg = rtmsg()
        msg["family"] = r.family
        msg["dst_len"] = r.dst_len
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["type"] = RTN_UNICAST
        # As `ip route add`: a route without a gateway is on-link (scope link) in IPv4.
        msg["scope"] = RT_SCOPE_LINK if r.gateway is None and r.family == socket.AF_INET else 0
        if r.dev not in inside_index:
            raise _Failed(f"add route {r}: no {r.dev} in the workload", errno.ENODEV, r.dev)
        attrs: list = [("RTA_OIF", inside_index[r.dev])]
        if r.dst is not None:
            attrs.append(("RTA_DST", r.dst))
        if r.gateway:
            attrs.append(("RTA_GATEWAY", r.gateway))
        if r.metric is not None:
            attrs.append(("RTA_PRIORITY", r.metric))
        msg["attrs"] = attrs
        self.nl(f"add route {r} (in the workload)", child.request, msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)


def _delete_link(idx: int, name: str) -> None:
    """Undo of a veth: delete the host end (the kernel deletes the pair)."""
    try:
        with _Rtnl.here() as nl:
            # Only if the index still names our interface: ifindexes are not reused
            # soon, but a stale undo must never delete someone else's.  ENODEV: the
            # netns died first and took the pair with it.
            if _name_of(nl, idx) == name:
                nl.request(_link_msg(idx), RTM_DELLINK)
    except _NlError as exc:
        if exc.code != errno.ENODEV:
            raise StepError(STEP, SIDE, exc.code, f"delete veth {name}") from None


class _MoveBack:
    """Undo of an `existing` device: move it from the workload's netns back to ours.

    Holding the child's netns fd keeps the netns alive after the workload ends,
    so the device is still there to fetch (otherwise the kernel would destroy a
    virtual device, or send a physical one to the init netns, when it dies).
    """

    def __init__(self, pid: int, device: str, inside_name: str):
        self.device = device
        self.inside_name = inside_name
        self.inside_index: int | None = None  # known once listed inside; else found by name
        self.child_fd = _open_ns(pid, "net")
        self.where = f"/proc/{pid}/ns/net"
        try:
            self.home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self.child_fd)
            raise

    def close(self) -> None:
        for fd in (self.child_fd, self.home_fd):
            if fd >= 0:
                os.close(fd)
        self.child_fd = self.home_fd = -1

    def __call__(self) -> None:
        try:
            if self.child_fd < 0:
                return
            with _Rtnl(_in_thread(self.child_fd, _netlink_socket, self.where)) as nl:
                idx = self.inside_index if self.inside_index is not None else _lookup(nl, self.inside_name)
                if idx is not None:
                    nl.request(_link_msg(idx, attrs=[("IFLA_NET_NS_FD", self.home_fd),
                                                     ("IFLA_IFNAME", self.device)]), RTM_NEWLINK)
        except _NlError as exc:
            if exc.code != errno.ENODEV:
                raise StepError(STEP, SIDE, exc.code, f"move {self.device} back to the host"
                                + (f" (kernel: {exc.kernel})" if exc.kernel else "")) from None
        except _Failed as exc:
            raise exc.step_error() from None
        finally:
            self.close()
