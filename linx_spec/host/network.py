"""The network step: loopback, interfaces, addresses, routes and net.* sysctls of
the workload's new net namespace, set up from the host while the child is parked.

What is set up was decided by plan/network.py (resolve, pure).  `apply_from_host`
does the work against the parked child's pid; when the child execs, its network
is complete.

Reaching the child's net namespace: host/netns.py (a thread that setns()es, or
for a rootless workload a forked helper).  Talking netlink: host/netlink.py
(pyroute2's messages on a socket of ours).

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
veth deletes the pair (once the workload ended, by network_teardown.py's thread:
the kernel takes ~20 ms to answer; a rollback deletes at once); macvlan/ipvlan die with the netns; an `existing` device
is moved back to the runner's netns under its own name (we hold the child's
netns open until then) and given back the MTU, addresses, up state and routes
it had before it was taken (observed just before the move; one in use is only
taken with `in_use: take`).  Should the runner be killed first, the kernel decides
when the netns dies: virtual devices (veth, ifb, dummy: rtnl_link_ops without
netns_refund) are destroyed, physical ones return to the init netns.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Any, Callable

from ..errors import host_errors, touched, touching
from ..plan.network import (IFAPROT_KERNEL, AddressPlan, AddressState, DeviceState, InterfacePlan, NetworkPlan,
                            RoutePlan, RouteState, SysctlPlan, observe_device, refuse_in_use)
from .netlink import (IFA_ADDRESS, IFA_LOCAL, IFF_UP, NLM_F_CREATE, NLM_F_EXCL, RT_TABLE_MAIN, RTM_DELLINK,
                      RTM_GETADDR, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTN_UNICAST, RTPROT_BOOT,
                      NetlinkError, Rtnl, link_index_name, link_msg, lookup, name_of, netlink_socket, rtattrs)
from . import network_teardown
from .netns import forked_in_userns, in_child_netns, in_thread, open_ns

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
LOOPBACK_IFINDEX = 1  # include/net/net_namespace.h: lo is always ifindex 1 in a netns


# --- things done inside the child's netns (plain syscalls, no pyroute2) --------------------------
def write_sysctls(sysctls: tuple[SysctlPlan, ...]) -> None:
    for s in sysctls:
        what = f"write sysctl {s.key}={s.value}"
        with touching(what, s.path):
            try:
                fd = os.open(s.path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise touched(errno.ENOENT, what + " (no such sysctl in the workload's network namespace; "
                              "some exist only in the host's)", s.path) from None
            try:
                os.write(fd, (s.value + "\n").encode())
            finally:
                os.close(fd)


def _loopback_up_ioctl() -> None:
    # struct ifreq: char ifr_name[16]; short ifr_flags; padded to 40 bytes.
    with touching("bring lo up", "lo"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack_from("16xH", res)[0]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


# --- apply --------------------------------------------------------------------------------------
def apply_from_host(plan: NetworkPlan | None, ctx) -> None:
    """Build the workload's network while it is parked (see the module docstring for the order)."""
    if plan is None:
        return
    with touching("talk netlink"):  # what no inner label names: a netlink socket refused to send or receive
        if plan.needs_netlink:
            _Setup(plan, ctx).run()
            return
        if not plan.loopback and not plan.sysctls:
            return

        def inside() -> None:
            write_sysctls(plan.sysctls)
            if plan.loopback:
                _loopback_up_ioctl()

        if plan.rootless:
            forked_in_userns(ctx.pid, inside)
        else:
            in_child_netns(ctx.pid, inside)


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
        """One netlink request; a refusal (or the socket failing: ENOBUFS...) is labelled with `what`."""
        with touching(what):
            return fn(*args)

    def run(self) -> None:
        plan = self.plan
        early = tuple(s for s in plan.sysctls if s.early)
        late = tuple(s for s in plan.sysctls if not s.early)
        if early:
            in_child_netns(self.pid, lambda: write_sysctls(early))
        with Rtnl.here() as host:
            for n, itf in enumerate(plan.interfaces):
                self.create(host, itf, n)

        def enter() -> socket.socket:
            write_sysctls(late)
            return netlink_socket()

        # The socket pins the child's netns: it is closed before we return, or the
        # netns (and what is in it) would outlive the workload.
        with Rtnl(in_child_netns(self.pid, enter)) as child:
            inside_index = {name: index for index, name in map(link_index_name, self.nl(
                "list the workload's interfaces", child.dump, link_msg(), RTM_GETLINK))}
            for name, mover in self.moved:
                mover.inside_index = inside_index.get(name)
            if plan.loopback:
                self.nl("bring lo up (in the workload)", child.request,
                        link_msg(LOOPBACK_IFINDEX, up=True), RTM_NEWLINK)
            for itf in plan.interfaces:
                self.configure_inside(child, itf, inside_index)
            for r in plan.routes:
                self.add_route(child, r, inside_index)

    # host side ---------------------------------------------------------------------------------
    def create(self, host: Rtnl, itf: InterfacePlan, n: int) -> None:
        pid = self.pid
        new = NLM_F_CREATE | NLM_F_EXCL
        if itf.kind == "veth":
            h = itf.host
            hname = h.ifname(pid, n)
            if network_teardown.pending():  # a finished workload's pair with this name or address: gone first
                network_teardown.wait_for(hname, {a.address for a in h.addresses})
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
                    link_msg(up=h.up, attrs=attrs, kind="veth", data=[("VETH_INFO_PEER", peer_msg)]),
                    RTM_NEWLINK, new)
            idx = self.nl(f"find veth {hname} just created", lookup, host, hname)
            if idx is None:  # deleted under our feet
                raise touched(errno.ENODEV, f"find veth {hname} just created", hname)
            # After the workload ended the delete is deferred (network_teardown.py: ~20 ms
            # of RCU waits off run()); a rollback deletes at once.
            addrs = frozenset(a.address for a in h.addresses)
            self.ctx.on_undo(f"delete veth {hname}", lambda: _delete_link(idx, hname),
                             after_end=lambda: _delete_link_later(idx, hname, addrs))
            for a in h.addresses:
                owner = self.host_address_owner(host, a.address)
                if owner is not None:
                    raise touched(errno.EADDRINUSE,
                                  f"add address {a} to {hname}: the host already has {a.address} on {owner}")
                self.add_address(host, idx, a, hname)
                self.host_addrs[a.address] = idx
        elif itf.kind in ("macvlan", "ipvlan"):
            what = f"find parent interface {itf.parent} of {itf.kind} {itf.name}"
            pidx = self.nl(what, lookup, host, itf.parent)
            if pidx is None:
                raise touched(errno.ENODEV, what, itf.parent)
            attrs = [("IFLA_IFNAME", itf.name), ("IFLA_LINK", pidx), ("IFLA_NET_NS_PID", pid)]
            if itf.mtu is not None:
                attrs.append(("IFLA_MTU", itf.mtu))
            if itf.mac:
                attrs.append(("IFLA_ADDRESS", itf.mac))
            mode = "IFLA_MACVLAN_MODE" if itf.kind == "macvlan" else "IFLA_IPVLAN_MODE"
            # Created directly in the child's netns: nothing of it is ever on the
            # host, and it dies with the netns (no undo needed).
            self.nl(f"create {itf.kind} {itf.name} on {itf.parent} (in the workload)", host.request,
                    link_msg(up=itf.up, attrs=attrs, kind=itf.kind, data=[(mode, itf.mode)]), RTM_NEWLINK, new)
        else:
            what = f"find host interface {itf.device}"
            # What it carries now, as it will be given back; in use and not to be
            # taken is refused here too: a cached plan may be older than the use.
            with touching(f"read the state of host interface {itf.device}", itf.device):
                before = observe_device(itf.device)
            if before is None:
                raise touched(errno.ENODEV, what, itf.device)
            refuse_in_use(before, itf, f"network.interfaces.{n}.device")
            idx = before.index
            mover = _MoveBack(pid, itf.name, before, restore_mac=itf.mac is not None)  # holds both netns open
            try:
                # Moved and renamed in one request (do_setlink: netns first, then the name).
                self.nl(f"move {itf.device} into the workload as {itf.name}", host.request,
                        link_msg(idx, attrs=[("IFLA_NET_NS_PID", pid), ("IFLA_IFNAME", itf.name)]), RTM_NEWLINK)
            except BaseException:
                mover.close()
                raise
            self.ctx.on_undo(f"move {itf.device} back to the host", mover)
            self.moved.append((itf.name, mover))

    def host_address_owner(self, host: Rtnl, address: str) -> str | None:
        """The kernel lets two host interfaces share an address; traffic then goes to one of them."""
        if self.host_addrs is None:
            from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

            self.host_addrs = {}
            for body in self.nl("list the host's addresses", host.dump, ifaddrmsg(), RTM_GETADDR):
                family, _plen, _flags, _scope, index = struct.unpack_from("=BBBBi", body)
                found = {k: v for k, v in rtattrs(body, 8) if k in (IFA_ADDRESS, IFA_LOCAL)}
                raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
                if raw:
                    self.host_addrs[socket.inet_ntop(family, raw)] = index
        idx = self.host_addrs.get(address)
        if idx is None:
            return None
        return self.nl("name an interface", name_of, host, idx) or f"ifindex {idx}"

    # inside ------------------------------------------------------------------------------------
    def configure_inside(self, child: Rtnl, itf: InterfacePlan, inside_index: dict[str, int]) -> None:
        idx = inside_index.get(itf.name)
        if idx is None:
            raise touched(errno.ENODEV, f"find {itf.name} in the workload after creating it", itf.name)
        where = f"{itf.name} (in the workload)"
        if itf.kind == "existing" and (itf.mtu is not None or itf.mac):
            attrs: list = []
            if itf.mtu is not None:
                attrs.append(("IFLA_MTU", itf.mtu))
            if itf.mac:
                attrs.append(("IFLA_ADDRESS", itf.mac))
            self.nl(f"set MTU/MAC of {where}", child.request, link_msg(idx, attrs=attrs), RTM_NEWLINK)
        for a in itf.addresses:
            self.add_address(child, idx, a, where)
        # macvlan/ipvlan were created up; a veth peer cannot be, a moved device comes in down.
        if itf.up and itf.kind in ("veth", "existing"):
            self.nl(f"bring {where} up", child.request, link_msg(idx, up=True), RTM_NEWLINK)

    def add_address(self, nl: Rtnl, idx: int, a: AddressPlan, where: str) -> None:
        self.nl(f"add address {a} to {where}", nl.request, address_msg(idx, a), RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_route(self, child: Rtnl, r: RoutePlan, inside_index: dict[str, int]) -> None:
        if r.dev not in inside_index:
            raise touched(errno.ENODEV, f"add route {r}: no {r.dev} in the workload", r.dev)
        self.nl(f"add route {r} (in the workload)", child.request, route_msg(r, inside_index[r.dev]), RTM_NEWROUTE,
                NLM_F_CREATE | NLM_F_EXCL)


def address_msg(idx: int, a: AddressPlan):
    """RTM_NEWADDR/RTM_DELADDR body for a planned address on interface idx."""
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
    return msg


def route_msg(r: RoutePlan, oif: int):
    """RTM_NEWROUTE body for a planned route leaving by interface oif, as `ip route add` sends it."""
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    msg = rtmsg()
    msg["family"] = r.family
    msg["dst_len"] = r.dst_len
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = RTPROT_BOOT
    msg["type"] = RTN_UNICAST
    # As `ip route add`: a route without a gateway is on-link (scope link) in IPv4.
    msg["scope"] = RT_SCOPE_LINK if r.gateway is None and r.family == socket.AF_INET else 0
    attrs: list = [("RTA_OIF", oif)]
    if r.dst is not None:
        attrs.append(("RTA_DST", r.dst))
    if r.gateway:
        attrs.append(("RTA_GATEWAY", r.gateway))
    if r.metric is not None:
        attrs.append(("RTA_PRIORITY", r.metric))
    msg["attrs"] = attrs
    return msg


def _delete_link_later(idx: int, name: str, addresses: frozenset[str]) -> None:
    """Undo of a veth once its workload ended: the socket opened here, in the netns
    the veth was made from; the delete sent by network_teardown's thread."""
    nl = Rtnl.here()

    def delete() -> None:
        with host_errors("network"):
            _delete_link(idx, name, nl)

    network_teardown.defer(name, addresses, delete)


def _delete_link(idx: int, name: str, nl: Rtnl | None = None) -> None:
    """Undo of a veth: delete the host end (the kernel deletes the pair).  nl: a
    socket to use (and close), else one opened here."""
    try:
        with touching(f"delete veth {name}"), (nl or Rtnl.here()) as nl:
            # Only if the index still names our interface: ifindexes are not reused
            # soon, but a stale undo must never delete someone else's.  ENODEV: the
            # netns died first and took the pair with it.
            if name_of(nl, idx) == name:
                nl.request(link_msg(idx), RTM_DELLINK)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise


class _MoveBack:
    """Undo of an `existing` device: move it from the workload's netns back to ours,
    then give it back what it carried before it was taken (`before`).

    Holding the child's netns fd keeps the netns alive after the workload ends,
    so the device is still there to fetch (otherwise the kernel would destroy a
    virtual device, or send a physical one to the init netns, when it dies).
    A move between namespaces takes the device down and drops its addresses and
    routes on the way out (dev_close, NETDEV_UNREGISTER in the old netns) and
    keeps what the workload set (MTU, MAC): `restore` puts the host's back.
    """

    def __init__(self, pid: int, inside_name: str, before: DeviceState, restore_mac: bool = False):
        self.device = before.name
        self.inside_name = inside_name
        self.before = before
        self.restore_mac = restore_mac  # the spec set a MAC inside: set the host's again
        self.inside_index: int | None = None  # known once listed inside; else found by name
        self.child_fd = open_ns(pid, "net")
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
            with touching(f"move {self.device} back to the host"), \
                    Rtnl(in_thread(self.child_fd, netlink_socket, self.where)) as nl:
                idx = self.inside_index if self.inside_index is not None else lookup(nl, self.inside_name)
                if idx is None:
                    return
                nl.request(link_msg(idx, attrs=[("IFLA_NET_NS_FD", self.home_fd),
                                                ("IFLA_IFNAME", self.device)]), RTM_NEWLINK)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return
        finally:
            self.close()
        self.restore()

    def restore(self) -> None:
        """MTU (and MAC), addresses, up, then routes (a gateway needs its subnet's
        address on an interface that is up).  Each item is tried; the first
        refusal is raised once all were tried, naming what did not come back."""
        b = self.device
        failed: list[OSError] = []

        def attempt(what: str, fn: Callable[..., Any], *args) -> None:
            try:
                with touching(what, b):
                    fn(*args)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # the kernel made it again itself
                    failed.append(exc)

        with touching(f"find {b} back on the host", b), Rtnl.here() as nl:
            idx = lookup(nl, b)  # its ifindex may have been given to another meanwhile
            if idx is None:
                return
            state = self.before
            attrs: list = [("IFLA_MTU", state.mtu)]
            if self.restore_mac and state.mac:
                attrs.append(("IFLA_ADDRESS", state.mac))
            attempt(f"restore the MTU {state.mtu} of {b}", nl.request, link_msg(idx, attrs=attrs), RTM_NEWLINK)
            for a in state.addresses:
                if a.proto in IFAPROT_KERNEL and state.up:
                    continue  # link-local or from a router advertisement: made again once up
                attempt(f"restore address {a} of {b}", nl.request, state_address_msg(idx, a), RTM_NEWADDR,
                        NLM_F_CREATE | NLM_F_EXCL)
            if state.up:
                attempt(f"bring {b} up again", nl.request, link_msg(idx, up=True), RTM_NEWLINK)
            for r in state.routes:
                attempt(f"restore route {r} of {b}", nl.request, state_route_msg(idx, r), RTM_NEWROUTE,
                        NLM_F_CREATE | NLM_F_EXCL)
        if failed:
            raise failed[0]


# Flags of an address that a request may set (net/ipv6/addrconf.c, net/ipv4/devinet.c); the
# others (secondary, tentative, permanent, deprecated...) are the kernel's state.
IFA_F_SETTABLE = 0x02 | 0x04 | 0x10 | 0x100 | 0x200 | 0x400 | 0x800


def state_address_msg(idx: int, a: AddressState):
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    msg = ifaddrmsg()
    msg["family"] = a.family
    msg["prefixlen"] = a.prefixlen
    msg["scope"] = a.scope
    msg["index"] = idx
    attrs: list = [("IFA_ADDRESS", a.address), ("IFA_FLAGS", a.flags & IFA_F_SETTABLE)]
    for name, value in (("IFA_LOCAL", a.local), ("IFA_BROADCAST", a.broadcast), ("IFA_LABEL", a.label)):
        if value is not None:
            attrs.append((name, value))
    msg["attrs"] = attrs
    return msg


def state_route_msg(idx: int, r: RouteState):
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["tos"] = r.family, r.dst_len, r.tos
    msg["proto"], msg["scope"], msg["type"], msg["flags"] = r.proto, r.scope, r.type, r.flags
    msg["table"] = r.table if r.table < 256 else 252  # RT_TABLE_COMPAT; RTA_TABLE says which
    attrs: list = [("RTA_TABLE", r.table), ("RTA_OIF", idx)]
    for name, value in (("RTA_DST", r.dst), ("RTA_GATEWAY", r.gateway), ("RTA_PRIORITY", r.priority),
                        ("RTA_PREFSRC", r.prefsrc), ("RTA_PREF", r.pref)):
        if value is not None:
            attrs.append((name, value))
    msg["attrs"] = attrs
    return msg


def add_interface(pid: int, itf: InterfacePlan, n: int, on_undo: Callable[[str, Callable[[], None]], None]) -> None:
    """One interface into a running workload's netns (live apply, host/network_live.py):
    created as the network step creates it (a veth's host end lx<pid>v<n> with its
    addresses, the peer directly inside), then configured inside (addresses, up).
    Each object made gets its undo through on_undo(what, fn) at once, so a failure
    halfway is rolled back by the caller."""
    from types import SimpleNamespace

    # A rollback of a live change deletes at once: no deferred (after_end) delete here.
    setup = _Setup(NetworkPlan(False, (itf,)),
                   SimpleNamespace(pid=pid, on_undo=lambda what, fn, after_end=None: on_undo(what, fn)))
    with touching("talk netlink"):
        with Rtnl.here() as host:
            setup.create(host, itf, n)
        with Rtnl(in_child_netns(pid, netlink_socket)) as child:
            idx = setup.nl(f"find {itf.name} in the workload", lookup, child, itf.name)
            if idx is not None and itf.kind != "veth":  # a veth's undo (its host end) takes the pair
                on_undo(f"delete {itf.kind} {itf.name}", lambda: delete_inside(pid, idx, itf.name))
            setup.configure_inside(child, itf, {itf.name: idx} if idx is not None else {})


def delete_inside(pid: int, idx: int, name: str) -> None:
    """Delete interface `name` (ifindex idx) of the workload's netns; a veth takes its
    host end with it.  ENODEV: gone already."""
    with touching(f"delete {name} (in the workload)", name), Rtnl(in_child_netns(pid, netlink_socket)) as nl:
        try:
            if name_of(nl, idx) == name:  # the index still names it
                nl.request(link_msg(idx), RTM_DELLINK)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
