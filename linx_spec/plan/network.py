"""The network plan: loopback, interfaces, addresses, routes and net.* sysctls of
the workload's new net namespace, as numbers.

`resolve` is pure (it reads /sys/class/net, and for an `existing` interface what
it carries over netlink; it never writes) and turns the spec into
numbers: address families and prefix lengths, macvlan/ipvlan mode values, the
interface each route leaves by.  The step that applies it against the parked
child is host/network.py.
"""

from __future__ import annotations

import errno
import os
import sys

# The constants only: socket.py and ipaddress (imported where used) are ~5 ms a cached plan with a netns pays
import _socket as socket

from ..errors import PlanError
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any

MACVLAN_MODE = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}  # if_link.h enum macvlan_mode
IPVLAN_MODE = {"l2": 0, "l3": 1, "l3s": 2}  # if_link.h enum ipvlan_mode
SYS_CLASS_NET = "/sys/class/net"
IFF_UP = 0x1


# --- the plan ---------------------------------------------------------------------------------
class AddressPlan(Record):
    family: int  # socket.AF_INET or AF_INET6
    address: str  # compressed text form
    prefixlen: int
    broadcast: str | None = None  # IPv4 with prefix <= 30: like `ip addr add ... brd +`

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


class HostEndPlan(Record):
    name: str | None  # None: lx<pid>v<n>, chosen once the child's pid is known
    addresses: tuple[AddressPlan, ...]
    mtu: int | None
    mac: str | None
    up: bool

    def ifname(self, pid: int, index: int) -> str:
        return self.name or f"lx{pid}v{index}"


class InterfacePlan(Record):
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
    take_in_use: bool = False  # existing: `in_use: take`, move it even when it is up, addressed or routed


class RoutePlan(Record):
    family: int
    dst: str | None  # None: the default route
    dst_len: int
    gateway: str | None
    dev: str  # interface inside the workload
    metric: int | None

    def __str__(self) -> str:
        return _route_text(self.dst, self.dst_len, self.gateway, f"dev {self.dev}", self.metric)


def _route_text(dst: str | None, dst_len: int, gateway: str | None, where: str, metric: int | None) -> str:
    """As `ip route` prints it: `10.1.0.0/16 via 10.0.0.1 dev eth0 metric 5`, `default via ...`."""
    words = [f"{dst}/{dst_len}" if dst is not None else "default"]
    if gateway:
        words.append(f"via {gateway}")
    if where:
        words.append(where)
    if metric is not None:
        words.append(f"metric {metric}")
    return " ".join(words)


class SysctlPlan(Record):
    key: str  # as written in the spec
    path: str  # /proc/sys/net/...
    value: str

    @property
    def early(self) -> bool:
        """`conf.default.*` is copied into each interface when it is created: write it before."""
        return "/conf/default/" in self.path


class NetworkPlan(Record):
    loopback: bool
    interfaces: tuple[InterfacePlan, ...] = ()
    routes: tuple[RoutePlan, ...] = ()
    sysctls: tuple[SysctlPlan, ...] = ()
    rootless: bool = False  # enter the netns through the child's user namespace (forked helper)
    notes: tuple[str, ...] = ()  # what `plan` says besides the steps: the host interfaces it takes

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


def _mode_name(kind: str, mode: int | None) -> str | int | None:
    """`plan` prints the word the spec used (4 -> bridge), not if_link.h's number."""
    names = {v: k for k, v in (MACVLAN_MODE if kind == "macvlan" else IPVLAN_MODE).items()}
    return names.get(mode, mode) if mode is not None else None


def _describe_interface(i: InterfacePlan, n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"type": i.kind, "name": i.name}
    if i.parent:
        d["parent"] = i.parent
        d["mode"] = _mode_name(i.kind, i.mode)
    if i.device:
        d["device"] = i.device
        if i.take_in_use:
            d["in_use"] = "take"
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


# --- a host interface as it is now (what an `existing` one carries) ------------------------------
RTPROT_KERNEL = 2  # routes the kernel makes from addresses; they come back with them
RT_TABLE_LOCAL = 255  # the kernel's own (local and broadcast addresses)
IFAPROT_KERNEL = (1, 2, 3)  # IFA_PROTO: lo, link-local, RA: made again by the kernel once up


class AddressState(Record):
    family: int
    prefixlen: int
    address: str  # IFA_ADDRESS (the peer for a point-to-point IPv4 address)
    local: str | None  # IFA_LOCAL (IPv4)
    broadcast: str | None
    scope: int
    flags: int  # IFA_FLAGS (or ifa_flags)
    label: str | None
    proto: int = 0  # IFA_PROTO: 0 set by someone, else made by the kernel

    def __str__(self) -> str:
        return f"{self.local or self.address}/{self.prefixlen}"


class RouteState(Record):
    family: int
    table: int
    proto: int
    scope: int
    type: int
    flags: int  # rtm_flags (RTNH_F_ONLINK...)
    tos: int
    dst: str | None  # None: the default route
    dst_len: int
    gateway: str | None
    priority: int | None
    prefsrc: str | None
    pref: int | None = None  # RTA_PREF (IPv6 router preference)

    def __str__(self) -> str:
        return _route_text(self.dst, self.dst_len, self.gateway,
                           f"table {self.table}" if self.table != 254 else "", self.priority)  # 254: RT_TABLE_MAIN


class DeviceState(Record):
    """A host interface as observed before it is taken: what comes back with it."""

    name: str
    index: int
    up: bool
    mtu: int
    mac: str | None
    addresses: tuple[AddressState, ...]  # in the kernel's order (IPv4 primaries before secondaries)
    routes: tuple[RouteState, ...]  # through it alone; not the kernel's own (they follow the addresses)
    multipath: tuple[str, ...] = ()  # multipath routes with a hop through it: kept from the refusal's view only

    def in_use(self) -> list[str]:
        """What it carries, in words; empty when taking it disturbs nothing on the host."""
        out = []
        if self.up:
            out.append("up")
        if self.addresses:
            out.append("addresses " + ", ".join(map(str, self.addresses)))
        default = [str(r) for r in self.routes if r.dst_len == 0]
        if default:
            out.append("the default route (" + ", ".join(default) + ")")
        others = [str(r) for r in self.routes if r.dst_len != 0] + list(self.multipath)
        if others:
            out.append("routes " + ", ".join(others))
        return out

    def describe(self) -> str:
        carries = self.in_use()
        if not carries:
            return f"down, mtu {self.mtu}, no addresses or routes"
        if not self.up:
            carries.insert(0, "down")
        return "; ".join(carries) + f"; mtu {self.mtu}"


def observe_device(name: str) -> DeviceState | None:
    """The interface `name` of the calling thread's netns, read with pyroute2
    (None when there is none).  Read only.  OSError when netlink fails."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            try:
                links = ipr.get_links(ifname=name)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    return None
                raise
            if len(links) != 1:
                return None
            link = links[0]
            index = link["index"]
            addresses = tuple(AddressState(
                a["family"], a["prefixlen"], a.get_attr("IFA_ADDRESS"), a.get_attr("IFA_LOCAL"),
                a.get_attr("IFA_BROADCAST"), a["scope"], a.get_attr("IFA_FLAGS") or a["flags"],
                a.get_attr("IFA_LABEL"), a.get_attr("IFA_PROTO") or 0) for a in ipr.get_addr(index=index))
            routes: list[RouteState] = []
            multipath: list[str] = []
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.get_routes(family=family):
                    table = r.get_attr("RTA_TABLE") or r["table"]
                    if table == RT_TABLE_LOCAL or r["proto"] == RTPROT_KERNEL:
                        continue
                    hops = r.get_attr("RTA_MULTIPATH") or []
                    dst = r.get_attr("RTA_DST") if r["dst_len"] else None
                    if r.get_attr("RTA_OIF") == index:
                        routes.append(RouteState(
                            family, table, r["proto"], r["scope"], r["type"], r["flags"], r["tos"], dst,
                            r["dst_len"], r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_PRIORITY"),
                            r.get_attr("RTA_PREFSRC"), r.get_attr("RTA_PREF")))
                    elif any(h.get("oif") == index for h in hops):
                        multipath.append(f"{dst or 'default'}{'/' + str(r['dst_len']) if dst else ''} (multipath)")
    except NetlinkError as exc:
        raise OSError(exc.code, os.strerror(exc.code)) from None
    return DeviceState(name, index, bool(link["flags"] & IFF_UP), link.get_attr("IFLA_MTU"),
                       link.get_attr("IFLA_ADDRESS"), addresses, tuple(routes), tuple(multipath))


def refuse_in_use(state: DeviceState, itf: InterfacePlan, field: str) -> None:
    """PlanError for a host interface in use, unless the spec says `in_use: take`.
    At plan time and again when it is taken (a cached plan may be older than its use)."""
    carries = state.in_use()
    if carries and not itf.take_in_use:
        raise PlanError(f"host interface `{state.name}` is in use: " + "; ".join(carries),
                        "free it first (ip link set down, flush its addresses and routes), or set `in_use: take` "
                        "on this interface to take it anyway (it comes back as it was)", field)


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
    teardown = sys.modules.get("linx_spec.host.network_teardown")  # loaded: this process ran a veth
    if teardown is not None and teardown.pending():
        teardown.wait_for(name, set())  # our own finished workload's pair, being deleted: not "taken"
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
    root = os.geteuid() == 0
    if net is None:  # Network()'s defaults (a unit test compares), without importing the spec's network models
        return NetworkPlan(True, (), (), (), rootless=not root, notes=())
    if not root and (net.interfaces or net.routes):
        raise PlanError("network interfaces and routes need root (CAP_NET_ADMIN on the host)",
                        "run as root, or keep only `loopback` and `sysctls`",
                        "network.interfaces" if net.interfaces else "network.routes")
    interfaces: list[InterfacePlan] = []
    host_names: set[str] = set()
    notes: list[str] = []
    held = _held_by_running(spec.name) if net.interfaces else {}
    for n, itf in enumerate(net.interfaces):
        field = f"network.interfaces.{n}"
        interfaces.append(_resolve_interface(itf, field, host_names, notes, held))

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
    return NetworkPlan(net.loopback, tuple(interfaces), routes, sysctls, rootless=not root, notes=tuple(notes))


def _held_by_running(name: str | None) -> dict[str, InterfacePlan]:
    """Host interfaces the running detached workload of this name holds: its named veth
    host ends and the devices it took, by host name.  Planning its own spec again (for
    `diff`, or an `apply` that converges it live) must not refuse them as taken.  Read
    from its state directory as data, checked against the plan's types; a stale record
    only lets a later step fail plainly (EEXIST), never more."""
    import json

    from .. import rundir, stored

    if not name:
        return {}
    try:
        fd = os.open(os.path.join(rundir.root_path(), name), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                     | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if json.loads(rundir.read_file(fd, "state.json", 1 << 20)).get("status") != "running":
            return {}
        network = json.loads(rundir.read_file(fd, "plan.json", stored.MAX_BYTES)).get("network")
        running = stored.from_data(NetworkPlan, network, "network") if network is not None else None
    except (OSError, ValueError, AttributeError):
        return {}
    finally:
        os.close(fd)
    held: dict[str, InterfacePlan] = {}
    for i in running.interfaces if running is not None else ():
        if i.host is not None and i.host.name:
            held[i.host.name] = i
        if i.device:
            held[i.device] = i
    return held


def _resolve_interface(itf, field: str, host_names: set[str], notes: list[str],
                       held: dict[str, InterfacePlan]) -> InterfacePlan:
    addresses = tuple(_address(a) for a in itf.addresses)
    kind = itf.type
    if kind == "veth":
        h = itf.host
        hname = h.name if h else None
        if hname is not None:
            if _host_has(hname) and hname not in held:
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
    plan = InterfacePlan("existing", itf.inside, addresses, itf.mtu, itf.mac, itf.up, device=device,
                         take_in_use=itf.in_use == "take")
    if device in held and held[device].kind == "existing" and device not in host_names:
        # In the running workload of this name, not on the host: as it was taken.
        notes.append(f"network: host interface `{device}` is in the running workload of this name, as `{itf.inside}`")
        return plan
    if device == "lo" or not _host_has(device):
        raise PlanError(f"host interface `{device}` does not exist" if device != "lo" else
                        "`lo` cannot be moved (each net namespace has its own)",
                        "name an existing interface of this host (ip link)", f"{field}.device")
    if device in host_names:
        raise PlanError(f"`{device}` is both a veth host end and a device to move", "rename one", f"{field}.device")
    try:
        state = observe_device(device)
    except OSError as exc:
        raise PlanError(f"cannot read the state of host interface `{device}`: {exc.strerror}",
                        "check it with `ip addr show` and `ip route show table all`", f"{field}.device") from None
    if state is None:
        raise PlanError(f"host interface `{device}` does not exist", "name an existing interface of this host "
                        "(ip link)", f"{field}.device")
    refuse_in_use(state, plan, f"{field}.device")
    notes.append(f"network: takes host interface `{device}` ({state.describe()}) into the workload as "
                 f"`{plan.name}`; it comes back with its name, state, MTU, addresses and routes")
    return plan


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
