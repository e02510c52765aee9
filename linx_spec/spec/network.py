"""`network:` interfaces, addresses, routes and sysctls of a new net namespace.

    network:
      loopback: true                       # default: lo is up in a new net namespace
      interfaces:
        - name: eth0                       # the name inside the workload
          type: veth                       # veth | macvlan | ipvlan | existing
          addresses: [10.10.0.2/24, fd00:10::2/64]
          mtu: 1500
          mac: 02:00:0a:0a:00:02
          host: {name: lxweb0, addresses: [10.10.0.1/24, fd00:10::1/64]}
        - {name: mv0, type: macvlan, parent: lxpar0, mode: bridge, addresses: [10.20.0.5/24]}
        - {name: eth1, type: existing, device: lxnic1}   # refused while lxnic1 is in use,
                                                         # unless `in_use: take`
      routes:
        - {to: default, via: 10.10.0.1}
        - {to: "::/0", via: "fd00:10::1"}
      sysctls:
        net.ipv4.ip_unprivileged_port_start: 0

Only shapes are checked here (addresses parse, names fit IFNAMSIZ, one address
family per route); plan/network.py resolves the rest against this host
(parents exist, gateways are on a declared subnet, root for interfaces).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from .base import Model

# dev_valid_name() in net/core/dev.c: 1..15 bytes (IFNAMSIZ is 16 with the NUL),
# not `.` or `..`, no `/`, `:` or whitespace.  `%` is refused too: the kernel
# would treat `eth%d` as a template and pick a name itself.
IFNAMSIZ = 16
_IFNAME_RE = re.compile(r"^[^/:%\s]{1,15}$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_SYSCTL_RE = re.compile(r"^net([./][A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*)+$")

MACVLAN_MODES = ("private", "vepa", "bridge", "passthru")
IPVLAN_MODES = ("l2", "l3", "l3s")
ETH_MIN_MTU = 68  # include/linux/if_ether.h; IPv4 needs at least 68
ETH_MAX_MTU = 65535
IPV6_MIN_MTU = 1280  # RFC 8200; below it the kernel disables IPv6 on the interface


def check_ifname(name: str) -> str:
    if name in (".", "..") or not _IFNAME_RE.match(name) or len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"`{name}` is not a valid interface name (1 to 15 bytes; no `/`, `:`, `%` or spaces)")
    return name


def _check_mac(value: str) -> str:
    if not _MAC_RE.match(value):
        raise ValueError(f"`{value}` is not a MAC address like 02:00:0a:00:00:02")
    first = int(value[:2], 16)
    if first & 1:
        raise ValueError(f"`{value}` is a multicast MAC address (lowest bit of the first byte set)")
    if value.replace(":", "").strip("0") == "":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return value.lower()


def _check_address(value: str) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"`{value}` is not an address with a prefix length, like 10.0.0.2/24 or fd00::2/64") from None
    if "/" not in value:
        raise ValueError(f"`{value}`: give the prefix length, e.g. {value}/24 or {value}/64")
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise ValueError(f"`{value}` cannot be an interface address (unspecified, multicast or loopback)")
    net = iface.network
    if ip.version == 4 and net.prefixlen <= 30:
        if ip == net.broadcast_address:
            raise ValueError(f"`{value}` is the broadcast address of {net}")
        if ip == net.network_address:
            raise ValueError(f"`{value}` is the network address of {net}")
    return f"{ip.compressed}/{net.prefixlen}"


def _check_ip(value: str) -> str:
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise ValueError(f"`{value}` is not an IPv4 or IPv6 address") from None


def _sysctl_value(value: object) -> object:
    # `1`, `true` and `"1"` all mean 1; sysctl files take text.
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return value


IfName = Annotated[str, BeforeValidator(lambda v: check_ifname(v) if isinstance(v, str) else v),
                   Field(min_length=1, max_length=15)]
Address = Annotated[str, BeforeValidator(lambda v: _check_address(v) if isinstance(v, str) else v),
                    WithJsonSchema({"type": "string", "description": "An address with its prefix length: "
                                    "10.0.0.2/24 or fd00::2/64."})]
Mac = Annotated[str, BeforeValidator(lambda v: _check_mac(v) if isinstance(v, str) else v),
                WithJsonSchema({"type": "string", "pattern": _MAC_RE.pattern})]
Mtu = Annotated[int, Field(ge=ETH_MIN_MTU, le=ETH_MAX_MTU)]
SysctlValue = Annotated[str, BeforeValidator(_sysctl_value),
                        WithJsonSchema({"type": ["string", "integer", "boolean"]})]


def _unique(items: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what} `{item}` is listed twice")
        seen.add(item)


def _ipv6_mtu(addresses: list[str], mtu: int | None, where: str) -> None:
    if mtu is not None and mtu < IPV6_MIN_MTU and any(":" in a for a in addresses):
        raise ValueError(f"{where}: IPv6 needs an MTU of at least {IPV6_MIN_MTU}, got {mtu} "
                         "(the kernel disables IPv6 on the interface below it)")


class HostEnd(Model):
    """The host's end of a veth pair."""

    name: IfName | None = Field(
        default=None,
        description="Name of the host end (at most 15 bytes). Default: `lx<pid>v<n>`, unique per workload.")
    addresses: list[Address] = Field(
        default_factory=list,
        description="Addresses of the host end with prefix lengths (IPv4 and IPv6), e.g. 10.0.0.1/24. "
        "IPv6 addresses skip duplicate address detection, so they work at once.")
    mtu: Mtu | None = Field(default=None, description="MTU of the host end. Default: the MTU of the workload's end.")
    mac: Mac | None = Field(default=None, description="MAC address of the host end. Default: random.")
    up: bool = Field(default=True, description="Bring the host end up.")

    @model_validator(mode="after")
    def _check(self) -> "HostEnd":
        _unique(self.addresses, "address")
        _ipv6_mtu(self.addresses, self.mtu, "host")
        return self


class Interface(Model):
    """One interface of the workload: a veth pair, a macvlan/ipvlan on a host parent, or a host interface moved in."""

    name: IfName | None = Field(
        default=None,
        description="Name inside the workload, e.g. eth0 (at most 15 bytes). Required, except for `existing` "
        "where it defaults to the device's own name.")
    type: Literal["veth", "macvlan", "ipvlan", "existing"] = Field(
        default="veth",
        description="`veth`: a pair, one end in the workload, the other on the host (see `host`). "
        "`macvlan`/`ipvlan`: a child of the host interface `parent`. "
        "`existing`: the host interface `device` is moved into the workload and moved back when it ends.")
    addresses: list[Address] = Field(
        default_factory=list,
        description="Addresses with prefix lengths (IPv4 and IPv6), e.g. 10.0.0.2/24, fd00::2/64. "
        "IPv6 addresses skip duplicate address detection, so they work at once.")
    mtu: Mtu | None = Field(
        default=None, description="MTU. Default: the kernel's (1500 for veth; the parent's for macvlan/ipvlan).")
    mac: Mac | None = Field(default=None, description="MAC address, e.g. 02:00:0a:00:00:02. Default: random "
                            "(ipvlan always shares its parent's).")
    up: bool = Field(default=True, description="Bring the interface up.")
    host: HostEnd | None = Field(default=None, description="veth only: the host end's name, addresses and state.")
    parent: IfName | None = Field(default=None, description="macvlan/ipvlan only: the host interface they sit on.")
    mode: Literal["private", "vepa", "bridge", "passthru", "l2", "l3", "l3s"] | None = Field(
        default=None,
        description="macvlan: private, vepa, bridge (default) or passthru. ipvlan: l2 (default), l3 or l3s.")
    device: IfName | None = Field(
        default=None, description="existing only: the host interface moved into the workload.")
    in_use: Literal["refuse", "take"] = Field(
        default="refuse",
        description="existing only: what to do when `device` is in use on the host (up, with addresses, or "
        "in routes, the default route among them). `refuse` (default): a plan error naming what it carries. "
        "`take`: move it anyway; when the workload ends (or the start fails) it comes back with the name, "
        "up/down state, MTU, addresses and routes it had before it was taken.")

    @model_validator(mode="after")
    def _check(self) -> "Interface":
        t = self.type
        if self.name is None and t != "existing":
            raise ValueError(f"a {t} interface needs a `name` (the name inside the workload, e.g. eth0)")
        if self.name == "lo":
            raise ValueError("`lo` is the loopback interface; it is configured with `loopback`")
        if self.host is not None and t != "veth":
            raise ValueError("`host` is only for veth interfaces")
        if self.parent is None and t in ("macvlan", "ipvlan"):
            raise ValueError(f"a {t} interface needs a `parent` (the host interface it sits on)")
        if self.parent is not None and t not in ("macvlan", "ipvlan"):
            raise ValueError("`parent` is only for macvlan and ipvlan interfaces")
        if self.mode is not None:
            modes = {"macvlan": MACVLAN_MODES, "ipvlan": IPVLAN_MODES}.get(t)
            if modes is None:
                raise ValueError("`mode` is only for macvlan and ipvlan interfaces")
            if self.mode not in modes:
                raise ValueError(f"{t} mode `{self.mode}` is not one of {', '.join(modes)}")
        if self.in_use != "refuse" and t != "existing":
            raise ValueError("`in_use` is only for existing interfaces (a host interface moved in)")
        if (self.device is None) == (t == "existing"):
            raise ValueError("`device` names the host interface of an `existing` interface (and only there)")
        if t == "ipvlan" and self.mac is not None:
            raise ValueError("an ipvlan interface always has its parent's MAC address: remove `mac`")
        _unique(self.addresses, "address")
        _ipv6_mtu(self.addresses, self.mtu, self.name or self.device or "")
        return self

    @property
    def inside(self) -> str:
        """The name inside the workload."""
        return self.name or self.device or ""


class Route(Model):
    """A route inside the workload."""

    to: str = Field(description="Destination: `default` (the family follows `via`), or a prefix like "
                    "10.1.0.0/16, 0.0.0.0/0, ::/0.")
    via: Annotated[str | None, BeforeValidator(lambda v: _check_ip(v) if isinstance(v, str) else v)] = Field(
        default=None, description="Gateway address. Must be on the subnet of one of the workload's interfaces.")
    dev: IfName | None = Field(
        default=None, description="Interface inside the workload. Default: the one whose subnet holds `via`.")
    metric: Annotated[int | None, Field(ge=0, lt=2**32, description="Route metric (priority); lower wins.")] = None

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if v == "default":
            return v
        try:
            return ipaddress.ip_network(v, strict=True).compressed
        except ValueError as exc:
            if "host bits set" in str(exc):
                net = ipaddress.ip_network(v, strict=False)
                raise ValueError(f"`{v}` has host bits set; did you mean {net}?") from None
            raise ValueError(f"`{v}` is not `default` or a prefix like 10.1.0.0/16 or fd00:1::/64") from None

    @model_validator(mode="after")
    def _check(self) -> "Route":
        if self.to == "default" and self.via is None:
            raise ValueError("`to: default` takes its family from `via`; without a gateway write 0.0.0.0/0 "
                             "or ::/0 and name the `dev`")
        if self.via is None and self.dev is None:
            raise ValueError("a route needs `via` (a gateway) or `dev` (an on-link route), or both")
        if self.via is not None and self.to != "default":
            if ipaddress.ip_network(self.to).version != ipaddress.ip_address(self.via).version:
                raise ValueError(f"route to {self.to} via {self.via} mixes IPv4 and IPv6")
        return self


class Network(Model):
    """Network of a new net namespace: loopback, interfaces, routes and net.* sysctls."""

    loopback: bool = Field(default=True, description="Bring `lo` up (with 127.0.0.1 and ::1). On by default.")
    interfaces: list[Interface] = Field(
        default_factory=list,
        description="Interfaces of the workload besides `lo`. The workload sees exactly these and `lo`.")
    routes: list[Route] = Field(
        default_factory=list,
        description="Routes inside the workload. Each interface's own subnets are routed without listing them.")
    sysctls: dict[str, SysctlValue] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": _SYSCTL_RE.pattern}},
        description="net.* sysctls of the workload's network namespace, e.g. `net.ipv4.ip_forward: 1`, "
        "written after its interfaces exist (so net.ipv4.conf.eth0.* works) and before addresses are set.")

    @model_validator(mode="after")
    def _check(self) -> "Network":
        _unique([i.inside for i in self.interfaces], "interface")
        _unique([i.device for i in self.interfaces if i.device], "device")
        _unique([i.host.name for i in self.interfaces if i.host and i.host.name], "host interface")
        # The kernel would accept one address on two interfaces; traffic would then go to one of them.
        _unique([a.split("/")[0] for i in self.interfaces for a in i.addresses], "workload address")
        _unique([a.split("/")[0] for i in self.interfaces if i.host for a in i.host.addresses], "host address")
        for key, value in self.sysctls.items():
            if not _SYSCTL_RE.match(key) or ".." in key.split("/") or "//" in key:
                raise ValueError(f"`{key}` is not a net.* sysctl (like net.ipv4.ip_forward or "
                                 "net/ipv4/conf/eth0.100/rp_filter)")
            if "\n" in value or "\0" in value:
                raise ValueError(f"sysctl `{key}`: the value must be one line")
        return self
