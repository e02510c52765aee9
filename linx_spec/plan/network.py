"""The network plan: loopback, interfaces, addresses, routes and net.* sysctls of
the workload's new net namespace, as numbers.

`resolve` is pure (it reads /sys/class/net, never writes) and turns the spec into
numbers: address families and prefix lengths, macvlan/ipvlan mode values, the
interface each route leaves by.  The step that applies it against the parked
child is host/network.py.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from ..errors import PlanError

MACVLAN_MODE = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}  # if_link.h enum macvlan_mode
IPVLAN_MODE = {"l2": 0, "l3": 1, "l3s": 2}  # if_link.h enum ipvlan_mode
SYS_CLASS_NET = "/sys/class/net"


# --- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddressPlan:
    family: int  # socket.AF_INET or AF_INET6
    address: str  # compressed text form
    prefixlen: int
    broadcast: str | None = None  # IPv4 with prefix <= 30: like `ip addr add ... brd +`

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class HostEndPlan:
    name: str | None  # None: lx<pid>v<n>, chosen once the child's pid is known
    addresses: tuple[AddressPlan, ...]
    mtu: int | None
    mac: str | None
    up: bool

    def ifname(self, pid: int, index: int) -> str:
        return self.name or f"lx{pid}v{index}"


@dataclass(frozen=True)
class InterfacePlan:
    kind: str  # veth | macvlan | ipvlan | existing
    name: str  # the name inside the workload
    addresses: tuple[AddressPlan, ...]
    mtu: int | None
    mac: str | None
    up: bool
    host: HostEndPlan | None = None  # veth
    parent: str | None = None  # macvlan, ipvlan: looked up by name when applied
    mode: int | None = None  # IFLA_MACVLAN_MODE / IFLA_IPVLAN_MODE value
    device: str | None = None  # existing


@dataclass(frozen=True)
class RoutePlan:
    family: int
    dst: str | None  # None: the default route
    dst_len: int
    gateway: str | None
    dev: str  # interface inside the workload
    metric: int | None

    def __str__(self) -> str:
        text = f"{self.dst}/{self.dst_len}" if self.dst is not None else "default"
        if self.gateway:
            text += f" via {self.gateway}"
        text += f" dev {self.dev}"
        if self.metric is not None:
            text += f" metric {self.metric}"
        return text


@dataclass(frozen=True)
class SysctlPlan:
    key: str  # as written in the spec
    path: str  # /proc/sys/net/...
    value: str

    @property
    def early(self) -> bool:
        """`conf.default.*` is copied into each interface when it is created: write it before."""
        return "/conf/default/" in self.path


@dataclass(frozen=True)
class NetworkPlan:
    loopback: bool
    interfaces: tuple[InterfacePlan, ...] = ()
    routes: tuple[RoutePlan, ...] = ()
    sysctls: tuple[SysctlPlan, ...] = ()
    rootless: bool = False  # enter the netns through the child's user namespace (forked helper)

    @property
    def needs_netlink(self) -> bool:
        return bool(self.interfaces or self.routes)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loopback": "up" if self.loopback else "down"}
        if self.interfaces:
            out["interfaces"] = [_describe_interface(i, n) for n, i in enumerate(self.interfaces)]
        if self.routes:
            out["routes"] = [str(r) for r in self.routes]
        if self.sysctls:
            out["sysctls"] = {s.path: s.value for s in self.sysctls}
        return out


def _describe_interface(i: InterfacePlan, n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"type": i.kind, "name": i.name}
    if i.parent:
        d["parent"] = i.parent
        d["mode"] = i.mode
    if i.device:
        d["device"] = i.device
    d["addresses"] = [str(a) for a in i.addresses]
    if i.mtu is not None:
        d["mtu"] = i.mtu
    if i.mac:
        d["mac"] = i.mac
    d["up"] = i.up
    if i.host is not None:
        h = i.host
        d["host"] = {"name": h.name or f"lx<pid>v{n}", "addresses": [str(a) for a in h.addresses],
                     "mtu": h.mtu, "mac": h.mac, "up": h.up}
    return d


# --- resolve: Spec -> NetworkPlan (reads the host, never writes) ---------------------------------
def _address(text: str) -> AddressPlan:
    import ipaddress  # here, not at the top: a cached plan is read back without it

    iface = ipaddress.ip_interface(text)
    net = iface.network
    if iface.version == 4:
        brd = str(net.broadcast_address) if net.prefixlen <= 30 else None
        return AddressPlan(socket.AF_INET, iface.ip.compressed, net.prefixlen, brd)
    return AddressPlan(socket.AF_INET6, iface.ip.compressed, net.prefixlen)


def _host_has(name: str) -> bool:
    return os.path.exists(os.path.join(SYS_CLASS_NET, name))


def _host_mtu(name: str) -> int | None:
    try:
        with open(os.path.join(SYS_CLASS_NET, name, "mtu")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _sysctl_path(key: str) -> str:
    # sysctl(8): a key with `/` is a path as written (so `eth0.100` keeps its dot).
    rel = key if "/" in key else key.replace(".", "/")
    return "/proc/sys/" + rel


def resolve(net, spec) -> NetworkPlan:
    """spec.network (None: the defaults) -> NetworkPlan.  PlanError for what this host cannot do."""
    from ..spec.network import Network

    if net is None:
        net = Network()
    root = os.geteuid() == 0
    if not root and (net.interfaces or net.routes):
        raise PlanError("network interfaces and routes need root (CAP_NET_ADMIN on the host)",
                        "run as root, or keep only `loopback` and `sysctls`",
                        "network.interfaces" if net.interfaces else "network.routes")
    interfaces: list[InterfacePlan] = []
    host_names: set[str] = set()
    for n, itf in enumerate(net.interfaces):
        field = f"network.interfaces.{n}"
        interfaces.append(_resolve_interface(itf, field, host_names))

    routes = tuple(_resolve_route(r, f"network.routes.{n}", interfaces, net.loopback)
                   for n, r in enumerate(net.routes))
    seen: set[tuple] = set()
    for n, r in enumerate(routes):
        key = (r.family, r.dst, r.dst_len, r.metric)
        if key in seen:
            raise PlanError(f"route `{r}` duplicates an earlier route to the same destination and metric",
                            "remove it, or give it another metric", f"network.routes.{n}")
        seen.add(key)
    sysctls = tuple(SysctlPlan(k, _sysctl_path(k), v) for k, v in net.sysctls.items())
    return NetworkPlan(net.loopback, tuple(interfaces), routes, sysctls, rootless=not root)


def _resolve_interface(itf, field: str, host_names: set[str]) -> InterfacePlan:
    addresses = tuple(_address(a) for a in itf.addresses)
    kind = itf.type
    if kind == "veth":
        h = itf.host
        hname = h.name if h else None
        if hname is not None:
            if _host_has(hname):
                raise PlanError(f"host interface `{hname}` already exists",
                                "pick another name, or omit host.name for a generated lx<pid>v<n>",
                                f"{field}.host.name")
            host_names.add(hname)
        host = HostEndPlan(
            name=hname,
            addresses=tuple(_address(a) for a in (h.addresses if h else ())),
            # The two ends of a veth with different MTUs drop what the bigger one sends.
            mtu=(h.mtu if h and h.mtu is not None else itf.mtu),
            mac=h.mac if h else None,
            up=h.up if h else True,
        )
        return InterfacePlan("veth", itf.name, addresses, itf.mtu, itf.mac, itf.up, host=host)
    if kind in ("macvlan", "ipvlan"):
        parent = itf.parent
        if not _host_has(parent):
            raise PlanError(f"parent interface `{parent}` of {kind} `{itf.name}` does not exist on this host",
                            "create it first, or name an existing interface", f"{field}.parent")
        pmtu = _host_mtu(parent)
        if itf.mtu is not None and pmtu is not None and itf.mtu > pmtu:
            raise PlanError(f"{kind} `{itf.name}` MTU {itf.mtu} is above its parent `{parent}`'s MTU {pmtu}",
                            f"use at most {pmtu}, or raise the parent's MTU", f"{field}.mtu")
        if kind == "macvlan":
            mode = MACVLAN_MODE[itf.mode or "bridge"]
        else:
            mode = IPVLAN_MODE[itf.mode or "l2"]
        return InterfacePlan(kind, itf.name, addresses, itf.mtu, itf.mac, itf.up, parent=parent, mode=mode)
    # existing
    device = itf.device
    if device == "lo" or not _host_has(device):
        raise PlanError(f"host interface `{device}` does not exist" if device != "lo" else
                        "`lo` cannot be moved (each net namespace has its own)",
                        "name an existing interface of this host (ip link)", f"{field}.device")
    if device in host_names:
        raise PlanError(f"`{device}` is both a veth host end and a device to move", "rename one", f"{field}.device")
    return InterfacePlan("existing", itf.inside, addresses, itf.mtu, itf.mac, itf.up, device=device)


def _resolve_route(r, field: str, interfaces: list[InterfacePlan], loopback: bool) -> RoutePlan:
    import ipaddress

    names = [i.name for i in interfaces] + (["lo"] if loopback else [])
    if r.dev is not None and r.dev not in names:
        raise PlanError(f"route to {r.to}: `{r.dev}` is not an interface of the workload "
                        f"({', '.join(names) or 'it has none'})", "name one of its interfaces", f"{field}.dev")
    gw = ipaddress.ip_address(r.via) if r.via is not None else None
    if r.to == "default":
        family = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        dst, dst_len = None, 0
    else:
        dnet = ipaddress.ip_network(r.to)
        family = socket.AF_INET if dnet.version == 4 else socket.AF_INET6
        dst, dst_len = (None, 0) if dnet.prefixlen == 0 else (str(dnet.network_address), dnet.prefixlen)
    dev = r.dev
    if gw is not None:
        own = [a for i in interfaces for a in i.addresses if ipaddress.ip_address(a.address) == gw]
        if own:
            raise PlanError(f"gateway {gw} is the workload's own address", "use the other end's address",
                            f"{field}.via")
        holders = [i.name for i in interfaces if (dev is None or i.name == dev) and any(
            gw in ipaddress.ip_interface(str(a)).network for a in i.addresses)]
        if not holders and not (gw.version == 6 and gw.is_link_local and dev is not None):
            where = f"`{dev}`" if dev else "any interface of the workload"
            raise PlanError(f"gateway {gw} is not on a subnet of {where}",
                            "add an address in the gateway's subnet, or fix `via`", f"{field}.via")
        dev = dev or holders[0]
    return RoutePlan(family, dst, dst_len, str(gw) if gw else None, dev, r.metric)
