"""A running workload's network, live: observe what its net namespace holds now, and
change it one object at a time, each change recording its undo (live.py decides what).

    observe(pid, sysctl_paths) -> NetSeen    links, addresses, routes of the main
                                             table, and the named net.* sysctls,
                                             read inside the workload's netns
    Session(pid)                             add/delete an address, set/delete a
                                             route, write a sysctl, add/delete an
                                             interface; rollback() undoes, newest
                                             first, what this session changed
    fresh_sysctl(path)                       what a new netns holds (the `before` of
                                             a sysctl set when the workload started)

The netns is entered by a short-lived thread (host/netns.py): the netlink socket it
opens stays in that netns for its whole life, and /proc/sys/net shows the netns of
the task that opens a file in it.  What is read back comes from a netns whose
workload may hold CAP_NET_ADMIN there: every dump is bounded (MAX_OBJECTS) and
only objects linx-spec wants or owns are ever changed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

from ..errors import touched, touching
from ..plan.network import AddressPlan, AddressState, InterfacePlan, RoutePlan, RouteState
from .netlink import (IFF_UP, NLM_F_CREATE, NLM_F_EXCL, RT_TABLE_MAIN, RTM_GETADDR, RTM_GETLINK, RTM_NEWADDR,
                      RTM_NEWROUTE, RTN_UNICAST, NetlinkError, Rtnl, link_index_name, link_msg, lookup, netlink_socket,
                      rtattrs)
from .netns import CLONE_NEWNET, _libc, in_child_netns
from .network import (address_msg, add_interface, delete_inside, route_msg, state_address_msg, state_route_msg,
                      write_sysctls)

RTM_DELADDR, RTM_DELROUTE, RTM_GETROUTE = 21, 25, 26
NLM_F_REPLACE = 0x100
IFLA_LINKINFO, IFLA_INFO_KIND = 18, 1
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS, IFA_PROTO = 1, 2, 3, 4, 8, 11
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE, RTA_PREF = 1, 4, 5, 6, 7, 15, 20
RTPROT_KERNEL = 2
IP6_RT_PRIO_USER = 1024  # include/net/ip6_route.h: the metric of an IPv6 route that names none
MAX_OBJECTS = 4096  # links, addresses or routes read back from one netns
MAX_SYSCTL_BYTES = 4096


@dataclass(frozen=True)
class Link:
    index: int
    kind: str | None  # IFLA_INFO_KIND: veth, macvlan...; None for a physical device or lo
    up: bool


@dataclass
class NetSeen:
    """What the workload's netns holds now."""

    links: dict[str, Link] = field(default_factory=dict)
    addresses: dict[str, dict[str, AddressState]] = field(default_factory=dict)  # ifname -> address_key -> state
    routes: dict[str, tuple[RouteState, str]] = field(default_factory=dict)  # route_key -> (route, dev name)
    sysctls: dict[str, str | None] = field(default_factory=dict)  # /proc/sys path -> value (None: none)


def address_key(text: str) -> str:
    """`10.0.0.2/24`, `fd00::2/64` in one canonical spelling."""
    iface = ipaddress.ip_interface(text)
    return f"{iface.ip.compressed}/{iface.network.prefixlen}"


def route_key(family: int, dst: str | None, dst_len: int, metric: int | None) -> str:
    """A route's identity in a table, as the kernel's: family, destination, metric."""
    if metric is None:
        metric = IP6_RT_PRIO_USER if family == socket.AF_INET6 else 0
    v = 6 if family == socket.AF_INET6 else 4
    where = f"{ipaddress.ip_address(dst).compressed}/{dst_len}" if dst is not None and dst_len else "default"
    return f"{v}:{where}:{metric}"


def same_gateway(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _read_sysctl(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, MAX_SYSCTL_BYTES).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _bounded(items: list[bytes], what: str) -> list[bytes]:
    if len(items) > MAX_OBJECTS:
        raise touched(errno.E2BIG, f"read the workload's {what}: more than {MAX_OBJECTS}")
    return items


def _text(family: int, raw: bytes | None) -> str | None:
    return socket.inet_ntop(family, raw) if raw else None


def observe(pid: int, sysctl_paths: tuple[str, ...] = ()) -> NetSeen:
    """Read the workload's netns (module docstring).  OSError, labelled, when it cannot."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    def inside() -> tuple[dict[str, str | None], socket.socket]:
        values = {}
        for p in sysctl_paths:
            with touching("read sysctl", p):
                values[p] = _read_sysctl(p)
        return values, netlink_socket()

    seen = NetSeen()
    with touching("talk netlink"):
        seen.sysctls, sock = in_child_netns(pid, inside)
        with Rtnl(sock) as nl:
            names: dict[int, str] = {}
            with touching("list the workload's interfaces"):
                for body in _bounded(nl.dump(link_msg(), RTM_GETLINK), "interfaces"):
                    index, name = link_index_name(body)
                    flags = struct.unpack_from("=I", body, 8)[0]
                    kind = None
                    for k, v in rtattrs(body, 16):
                        if k == IFLA_LINKINFO:
                            kind = next((x.rstrip(b"\0").decode(errors="replace") for t, x in rtattrs(v, 0)
                                         if t == IFLA_INFO_KIND), None)
                    names[index] = name
                    seen.links[name] = Link(index, kind, bool(flags & IFF_UP))
            with touching("list the workload's addresses"):
                for body in _bounded(nl.dump(ifaddrmsg(), RTM_GETADDR), "addresses"):
                    family, plen, flags, scope, index = struct.unpack_from("=BBBBi", body)
                    a = dict(rtattrs(body, 8))
                    label = a[IFA_LABEL].rstrip(b"\0").decode(errors="replace") if IFA_LABEL in a else None
                    st = AddressState(family, plen, _text(family, a.get(IFA_ADDRESS)), _text(family, a.get(IFA_LOCAL)),
                                      _text(family, a.get(IFA_BROADCAST)), scope,
                                      struct.unpack("=I", a[IFA_FLAGS])[0] if IFA_FLAGS in a else flags, label,
                                      a[IFA_PROTO][0] if IFA_PROTO in a else 0)
                    if index in names and st.address:
                        seen.addresses.setdefault(names[index], {})[address_key(str(st))] = st
            with touching("list the workload's routes"):
                for body in _bounded(nl.dump(rtmsg(), RTM_GETROUTE), "routes"):
                    family, dst_len, _src, tos, table, proto, scope, rtype, flags = struct.unpack_from("=BBBBBBBBI",
                                                                                                          body)
                    a = dict(rtattrs(body, 12))
                    if RTA_TABLE in a:
                        table = struct.unpack("=I", a[RTA_TABLE])[0]
                    oif = struct.unpack("=i", a[RTA_OIF])[0] if RTA_OIF in a else None
                    if table != RT_TABLE_MAIN or rtype != RTN_UNICAST or proto == RTPROT_KERNEL or oif not in names:
                        continue  # the kernel's own, another table, or multipath: never ours
                    prio = struct.unpack("=I", a[RTA_PRIORITY])[0] if RTA_PRIORITY in a else None
                    r = RouteState(family, table, proto, scope, rtype, flags, tos,
                                   _text(family, a.get(RTA_DST)) if dst_len else None, dst_len,
                                   _text(family, a.get(RTA_GATEWAY)), prio, _text(family, a.get(RTA_PREFSRC)),
                                   a[RTA_PREF][0] if RTA_PREF in a else None)
                    seen.routes[route_key(family, r.dst, dst_len, prio)] = (r, names[oif])
    return seen


def fresh_sysctl(path: str) -> str | None:
    """The value `path` has in a new net namespace (a throwaway one, made by a thread
    that unshares and ends); an interface's conf.<ifname>.* is read as conf.default.*,
    which a new interface copies.  None when it cannot be known."""
    parts = path.split("/")  # ['', 'proc', 'sys', 'net', 'ipv4', 'conf', IFNAME, KEY]
    if len(parts) == 8 and parts[4] in ("ipv4", "ipv6") and parts[5] == "conf" and parts[6] not in ("all", "default"):
        parts[6] = "default"
    probe = "/".join(parts)
    box: dict[str, str | None] = {}

    def body() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            return
        try:
            box["value"] = _read_sysctl(probe)
        except OSError:
            pass

    t = threading.Thread(target=body, name="linx-netns-fresh", daemon=True)
    t.start()
    t.join()
    return box.get("value")


Undo = tuple[str, Callable[[], None]]


class Session:
    """Changes to one workload's netns, each with its undo recorded at once (rollback)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.undos: list[Undo] = []
        self._nl: Rtnl | None = None

    @property
    def nl(self) -> Rtnl:
        """A netlink socket inside the workload's netns, opened on first use (and again
        after an interface was added: its index is looked up fresh)."""
        if self._nl is None:
            with touching("talk netlink"):
                self._nl = Rtnl(in_child_netns(self.pid, netlink_socket))
        return self._nl

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def index(self, name: str, what: str) -> int:
        with touching(what, name):
            idx = lookup(self.nl, name)
        if idx is None:
            raise touched(errno.ENODEV, f"{what}: no {name} in the workload", name)
        return idx

    def _request(self, what: str, obj: str, msg, kind: int, flags: int = 0) -> None:
        with touching(what, obj):
            self.nl.request(msg, kind, flags)

    def _undo(self, what: str, fn: Callable[[], None]) -> None:
        self.undos.append((what, fn))

    # addresses ---------------------------------------------------------------------------------
    def add_address(self, ifname: str, a: AddressPlan) -> None:
        idx = self.index(ifname, f"add address {a}")
        self._request(f"add address {a} to {ifname} (in the workload)", ifname, address_msg(idx, a), RTM_NEWADDR,
                      NLM_F_CREATE | NLM_F_EXCL)
        self._undo(f"remove address {a} from {ifname}", lambda: self._gone_ok(
            f"remove address {a} from {ifname}", ifname, address_msg(idx, a), RTM_DELADDR))

    def delete_address(self, ifname: str, a: AddressState) -> None:
        idx = self.index(ifname, f"remove address {a}")
        self._gone_ok(f"remove address {a} from {ifname} (in the workload)", ifname, state_address_msg(idx, a),
                      RTM_DELADDR)
        self._undo(f"add address {a} to {ifname} again", lambda: self._request(
            f"add address {a} to {ifname} again", ifname, state_address_msg(idx, a), RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL))

    # routes ------------------------------------------------------------------------------------
    def set_route(self, r: RoutePlan, old: tuple[RouteState, str] | None) -> None:
        """Add r, or replace `old` (same destination and metric, another gateway or device) by it."""
        idx = self.index(r.dev, f"set route {r}")
        flags = NLM_F_CREATE | (NLM_F_REPLACE if old else NLM_F_EXCL)
        self._request(f"{'replace' if old else 'add'} route {r} (in the workload)", r.dev, route_msg(r, idx),
                      RTM_NEWROUTE, flags)
        if old is None:
            self._undo(f"remove route {r}", lambda: self._gone_ok(f"remove route {r}", r.dev, route_msg(r, idx),
                                                                  RTM_DELROUTE))
        else:
            self._undo(f"put route {old[0]} back", lambda: self._replace_route(old, "put route {} back"))

    def restore_route(self, old: tuple[RouteState, str], cur: tuple[RouteState, str]) -> None:
        """Put back `old`, the route linx-spec replaced, in place of `cur` (same
        destination and metric): --revert-released of a replaced route."""
        self._replace_route(old, "put route {} back (in the workload)")
        self._undo(f"put route {cur[0]} back", lambda: self._replace_route(cur, "put route {} back"))

    def _replace_route(self, route: tuple[RouteState, str], what: str) -> None:
        state, dev = route
        self._request(what.format(state), dev, state_route_msg(self.index(dev, what.format(state)), state),
                      RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)

    def delete_route(self, old: tuple[RouteState, str]) -> None:
        state, dev = old
        idx = self.index(dev, f"remove route {state}")
        self._gone_ok(f"remove route {state} (in the workload)", dev, state_route_msg(idx, state), RTM_DELROUTE)
        self._undo(f"add route {state} again", lambda: self._request(
            f"add route {state} again", dev, state_route_msg(idx, state), RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL))

    # sysctls -----------------------------------------------------------------------------------
    def write_sysctl(self, key: str, path: str, value: str, old: str | None) -> None:
        from ..plan.network import SysctlPlan

        in_child_netns(self.pid, lambda: write_sysctls((SysctlPlan(key, path, value),)))
        if old is not None:
            self._undo(f"write sysctl {key}={old} again", lambda: in_child_netns(
                self.pid, lambda: write_sysctls((SysctlPlan(key, path, old),))))

    # interfaces --------------------------------------------------------------------------------
    def add_interface(self, itf: InterfacePlan, n: int) -> None:
        add_interface(self.pid, itf, n, self._undo)

    def delete_interface(self, name: str) -> None:
        """Last in a session: it has no undo (a veth's host end and addresses go with it)."""
        delete_inside(self.pid, self.index(name, f"delete {name}"), name)

    # ---------------------------------------------------------------------------------------------
    def _gone_ok(self, what: str, obj: str, msg, kind: int) -> None:
        """A delete; the object being gone already (ESRCH, EADDRNOTAVAIL, ENODEV) is success."""
        try:
            self._request(what, obj, msg, kind)
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                raise

    def rollback(self) -> list[str]:
        """Undo this session's changes, newest first; each is tried.  -> what could not be undone."""
        failed = []
        for what, fn in reversed(self.undos):
            try:
                fn()
            except OSError as exc:
                failed.append(f"{what}: {exc.strerror or exc}")
        self.undos.clear()
        return failed


__all__ = ["Link", "NetSeen", "Session", "address_key", "fresh_sysctl", "observe", "route_key", "same_gateway"]
