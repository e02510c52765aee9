"""network without root: the spec section, resolve() against a fake /sys/class/net,
the plan's rules for joined and shared net namespaces, the netlink reply parsing,
and the promise that pyroute2 is not imported unless interfaces are declared."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from linx_spec import PlanError, SpecError, build_plan, load_text
from linx_spec.errors import StepError, host_errors
from linx_spec.host import netlink as NL
from linx_spec.host import network as N
from linx_spec.plan import network as PN
from linx_spec.steps import active_steps

REPO = Path(__file__).resolve().parents[2]


def spec_of(network: str, namespaces: str = ""):
    text = "version: 1\nprocess: {command: [/bin/true]}\n" + namespaces + "network:\n" + network
    return load_text(text, "net.yaml")


@pytest.fixture
def host(monkeypatch, tmp_path):
    """A root runner whose /sys/class/net holds lxpar0 (MTU 1500) and lxnic0."""
    import linx_spec.plan.caps as caps

    monkeypatch.setattr(caps.os, "geteuid", lambda: 0)
    monkeypatch.setattr(caps, "own_caps", lambda which="CapEff": (1 << 41) - 1)
    net = tmp_path / "class-net"
    for name in ("lxpar0", "lxnic0", "lxtaken", "lxbusy0"):
        (net / name).mkdir(parents=True)
        (net / name / "mtu").write_text("1500\n")
    monkeypatch.setattr(PN, "SYS_CLASS_NET", str(net))
    monkeypatch.setattr(PN, "observe_device", lambda name: HOST_DEVICES.get(name))
    return monkeypatch


# What plan/network.py reads over netlink for an `existing` interface, faked for the host above.
_BUSY_ROUTES = (
    PN.RouteState(socket.AF_INET, 254, 4, 0, 1, 0, 0, None, 0, "10.7.0.254", None, None),
    PN.RouteState(socket.AF_INET, 254, 4, 0, 1, 0, 0, "10.8.0.0", 16, "10.7.0.9", 100, None))
HOST_DEVICES = {
    "lxnic0": PN.DeviceState("lxnic0", 7, False, 1500, "02:00:00:00:00:07", (), ()),
    "lxbusy0": PN.DeviceState("lxbusy0", 8, True, 1500, "02:00:00:00:00:08", (
        PN.AddressState(socket.AF_INET, 24, "10.7.0.1", "10.7.0.1", None, 0, 0x80, "lxbusy0"),), _BUSY_ROUTES),
}


def plan_of(network: str, namespaces: str = "") -> PN.NetworkPlan:
    return build_plan(spec_of(network, namespaces)).network


# --- the spec --------------------------------------------------------------------------------
FULL = """\
  interfaces:
    - name: eth0
      addresses: [10.1.0.2/24, "FD00:1::2/64"]
      mtu: 1400
      mac: 02:00:0A:01:00:02
      host: {name: lxweb0, addresses: [10.1.0.1/24, "fd00:1::1/64"]}
    - {name: mv0, type: macvlan, parent: lxpar0, addresses: [10.2.0.5/16]}
    - {name: iv0, type: ipvlan, parent: lxpar0, mode: l3}
    - {type: existing, device: lxnic0, addresses: [10.3.0.2/30]}
  routes:
    - {to: default, via: 10.1.0.1}
    - {to: "::/0", via: "fd00:1::1", metric: 5}
    - {to: 10.9.0.0/16, dev: mv0}
  sysctls:
    net.ipv4.ip_forward: 1
    net/ipv4/conf/eth0/rp_filter: "2"
    net.ipv6.conf.default.accept_ra: false
"""


def test_a_full_spec_loads_and_normalises():
    net = spec_of(FULL).network
    eth0 = net.interfaces[0]
    assert eth0.addresses == ["10.1.0.2/24", "fd00:1::2/64"]  # compressed, lower case
    assert eth0.mac == "02:00:0a:01:00:02"
    assert net.interfaces[3].inside == "lxnic0"  # existing: the device's own name by default
    assert net.sysctls == {"net.ipv4.ip_forward": "1", "net/ipv4/conf/eth0/rp_filter": "2",
                           "net.ipv6.conf.default.accept_ra": "0"}


@pytest.mark.parametrize("network, message", [
    ("  interfaces: [{name: abcdefghijklmnop}]", "not a valid interface name"),
    ("  interfaces: [{name: a/b}]", "not a valid interface name"),
    ("  interfaces: [{name: 'eth%d'}]", "not a valid interface name"),
    ("  interfaces: [{name: lo}]", "`lo` is the loopback interface"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2]}]", "give the prefix length"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.255/24]}]", "broadcast address of 10.0.0.0/24"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.0/24]}]", "network address"),
    ("  interfaces: [{name: eth0, addresses: [224.0.0.1/4]}]", "cannot be an interface address"),
    ("  interfaces: [{name: eth0, addresses: [127.0.0.2/8]}]", "cannot be an interface address"),
    ("  interfaces: [{name: eth0, addresses: [300.0.0.1/24]}]", "not an address with a prefix length"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2/24, 10.0.0.2/24]}]", "listed twice"),
    ("  interfaces: [{name: eth0, mac: '03:00:00:00:00:01'}]", "multicast MAC"),
    ("  interfaces: [{name: eth0, mac: '02:00:00:00:01'}]", "not a MAC address"),
    ("  interfaces: [{name: eth0, mtu: 67}]", "greater than or equal to 68"),
    ("  interfaces: [{name: eth0, mtu: 1200, addresses: ['fd00::2/64']}]", "IPv6 needs an MTU of at least 1280"),
    ("  interfaces: [{name: mv0, type: macvlan}]", "needs a `parent`"),
    ("  interfaces: [{name: eth0, parent: lxpar0}]", "`parent` is only for macvlan and ipvlan"),
    ("  interfaces: [{name: mv0, type: macvlan, parent: p, mode: l2}]", "macvlan mode `l2` is not one of"),
    ("  interfaces: [{name: mv0, type: macvlan, parent: p, mode: fast}]", "Input should be"),
    ("  interfaces: [{name: eth0, mode: bridge}]", "`mode` is only for macvlan and ipvlan"),
    ("  interfaces: [{name: iv0, type: ipvlan, parent: p, mac: '02:00:00:00:00:01'}]", "parent's MAC"),
    ("  interfaces: [{name: mv0, type: macvlan, parent: p, host: {}}]", "`host` is only for veth"),
    ("  interfaces: [{type: existing}]", "`device` names the host interface"),
    ("  interfaces: [{type: veth}]", "needs a `name`"),
    ("  interfaces: [{name: eth0, type: vxlan}]", "Input should be"),
    ("  interfaces: [{name: eth0}, {name: eth0}]", "interface `eth0` is listed twice"),
    ("  interfaces: [{name: a, host: {name: lxh}}, {name: b, host: {name: lxh}}]", "host interface `lxh` is listed twice"),
    ("  interfaces: [{name: a, addresses: [10.0.0.2/24]}, {name: b, addresses: [10.0.0.2/16]}]",
     "workload address `10.0.0.2` is listed twice"),
    ("  interfaces: [{name: a, host: {addresses: ['fd00::1/64']}}, {name: b, host: {addresses: ['fd00::1/64']}}]",
     "host address `fd00::1` is listed twice"),
    ("  routes: [{to: default}]", "takes its family from `via`"),
    ("  routes: [{to: 10.0.0.1/24, via: 10.0.0.1}]", "has host bits set; did you mean 10.0.0.0/24"),
    ("  routes: [{to: 10.0.0.0/24, via: 'fd00::1'}]", "mixes IPv4 and IPv6"),
    ("  routes: [{to: 10.0.0.0/24}]", "needs `via`"),
    ("  routes: [{to: default, via: 10.0.0.300}]", "not an IPv4 or IPv6 address"),
    ("  sysctls: {kernel.pid_max: 1}", "not a net.* sysctl"),
    ("  sysctls: {net/ipv4/../../kernel/x: 1}", "not a net.* sysctl"),
])
def test_bad_network_specs_name_the_field(network, message):
    with pytest.raises(SpecError) as err:
        spec_of(network)
    text = str(err.value)
    assert message in text, text
    assert "network" in text and "net.yaml:" in text


# --- resolve -----------------------------------------------------------------------------------
def test_resolve_turns_everything_into_numbers(host):
    plan = plan_of(FULL)
    eth0, mv0, iv0, moved = plan.interfaces
    assert [(a.family, a.address, a.prefixlen, a.broadcast) for a in eth0.addresses] == [
        (socket.AF_INET, "10.1.0.2", 24, "10.1.0.255"), (socket.AF_INET6, "fd00:1::2", 64, None)]
    assert eth0.mtu == 1400 and eth0.host.mtu == 1400  # the host end follows the workload's end
    assert eth0.host.name == "lxweb0" and eth0.host.up
    assert (mv0.kind, mv0.parent, mv0.mode) == ("macvlan", "lxpar0", 4)  # MACVLAN_MODE_BRIDGE by default
    assert (iv0.kind, iv0.mode) == ("ipvlan", 1)  # IPVLAN_MODE_L3
    assert (moved.kind, moved.device, moved.name, moved.addresses[0].broadcast) == ("existing", "lxnic0", "lxnic0",
                                                                                     "10.3.0.3")
    r4, r6, r9 = plan.routes
    assert (r4.family, r4.dst, r4.dst_len, r4.gateway, r4.dev) == (socket.AF_INET, None, 0, "10.1.0.1", "eth0")
    assert (r6.family, r6.dst, r6.gateway, r6.dev, r6.metric) == (socket.AF_INET6, None, "fd00:1::1", "eth0", 5)
    assert (r9.dst, r9.dst_len, r9.gateway, r9.dev) == ("10.9.0.0", 16, None, "mv0")
    assert [(s.path, s.value, s.early) for s in plan.sysctls] == [
        ("/proc/sys/net/ipv4/ip_forward", "1", False),
        ("/proc/sys/net/ipv4/conf/eth0/rp_filter", "2", False),
        ("/proc/sys/net/ipv6/conf/default/accept_ra", "0", True)]
    assert plan.loopback and not plan.rootless and plan.needs_netlink


def test_describe_is_what_plan_prints(host):
    plan = build_plan(spec_of(FULL))
    step = next(s for s in active_steps(plan) if s.name == "network")
    args = step.args(plan)
    json.dumps(args)  # printable as it is
    assert args["loopback"] == "up"
    assert args["interfaces"][0]["host"]["name"] == "lxweb0"
    assert args["interfaces"][1] == {"type": "macvlan", "name": "mv0", "parent": "lxpar0", "mode": "bridge",
                                     "addresses": ["10.2.0.5/16"], "up": True}
    assert args["routes"] == ["default via 10.1.0.1 dev eth0", "default via fd00:1::1 dev eth0 metric 5",
                              "10.9.0.0/16 dev mv0"]


def test_a_generated_host_name_starts_with_lx_and_fits(host):
    end = plan_of("  interfaces: [{name: eth0}]").interfaces[0].host
    assert end.name is None
    name = end.ifname(4194304, 12)  # the largest pid_max, a two-digit index
    assert name.startswith("lx") and len(name) <= 15


@pytest.mark.parametrize("network, field, message", [
    ("  interfaces: [{name: mv0, type: macvlan, parent: lxnope}]", "network.interfaces.0.parent",
     "parent interface `lxnope` of macvlan `mv0` does not exist"),
    ("  interfaces: [{name: mv0, type: macvlan, parent: lxpar0, mtu: 9000}]", "network.interfaces.0.mtu",
     "above its parent `lxpar0`'s MTU 1500"),
    ("  interfaces: [{type: existing, device: lxnope}]", "network.interfaces.0.device", "does not exist"),
    ("  interfaces: [{type: existing, device: lo}]", "network.interfaces.0.device", "`lo` cannot be moved"),
    ("  interfaces: [{name: eth0, host: {name: lxtaken}}]", "network.interfaces.0.host.name",
     "host interface `lxtaken` already exists"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2/24]}]\n  routes: [{to: default, via: 10.5.0.1}]",
     "network.routes.0.via", "gateway 10.5.0.1 is not on a subnet of any interface"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2/24]}, {name: eth1, addresses: [10.1.0.2/24]}]\n"
     "  routes: [{to: default, via: 10.0.0.1, dev: eth1}]", "network.routes.0.via", "not on a subnet of `eth1`"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2/24]}]\n  routes: [{to: default, via: 10.0.0.2}]",
     "network.routes.0.via", "is the workload's own address"),
    ("  interfaces: [{name: eth0}]\n  routes: [{to: 10.0.0.0/8, dev: eth9}]", "network.routes.0.dev",
     "`eth9` is not an interface of the workload"),
    ("  interfaces: [{name: eth0, addresses: [10.0.0.2/24]}]\n"
     "  routes: [{to: default, via: 10.0.0.1}, {to: 0.0.0.0/0, via: 10.0.0.3}]", "network.routes.1",
     "duplicates an earlier route"),
])
def test_what_this_host_cannot_do_is_a_plan_error(host, network, field, message):
    with pytest.raises(PlanError) as err:
        plan_of(network)
    assert err.value.field == field
    assert message in err.value.message, err.value.message
    assert err.value.remedy


def test_interfaces_need_root(host):
    host.setattr(PN.os, "geteuid", lambda: 1000)
    with pytest.raises(PlanError) as err:
        PN.resolve(spec_of("  interfaces: [{name: eth0}]").network, None)
    assert "need root" in str(err.value) and err.value.field == "network.interfaces"
    # lo and sysctls need no root: they go through the workload's own user namespace.
    plan = PN.resolve(spec_of("  sysctls: {net.ipv4.ip_forward: 1}").network, None)
    assert plan.rootless and not plan.needs_netlink


# --- the plan: new, joined and shared net namespaces -------------------------------------------
def test_a_new_net_namespace_gets_lo_up_by_default(host):
    plan = build_plan(load_text("version: 1\nprocess: {command: [/bin/true]}\n"))
    assert plan.network == PN.NetworkPlan(loopback=True, rootless=False)
    assert not plan.network.needs_netlink
    # lo alone is one ioctl in the child (the loopback step), not a host step
    names = [s.name for s in active_steps(plan)]
    assert "loopback" in names and "network" not in names
    off = plan_of("  loopback: false")
    assert not off.loopback and off.describe() == {"loopback": "down"}


def test_no_network_section_plans_as_the_models_defaults(host):
    from linx_spec.spec.network import Network

    assert PN.resolve(None, None) == PN.resolve(Network(), None)


def test_a_joined_net_namespace_is_used_as_it_is(host):
    joined = "namespaces: {pid: new, net: {join: /run/netns/lxsomething}}\n"
    plan = build_plan(load_text("version: 1\nprocess: {command: [/bin/true]}\n" + joined))
    assert plan.network is None and "network" not in [s.name for s in active_steps(plan)]
    with pytest.raises(PlanError) as err:
        plan_of("  loopback: true", joined)
    assert "the joined one (/run/netns/lxsomething) is used as it is" in err.value.message
    assert err.value.field == "network" and "ip netns exec" in err.value.remedy


def test_network_without_a_net_namespace_is_refused(host):
    with pytest.raises(PlanError) as err:
        plan_of("  loopback: true", "namespaces: [pid, mount]\n")
    assert "needs a new net namespace" in err.value.message


# --- netlink reply parsing (golden bytes, as the kernel sends them) -----------------------------
def _rtattr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def test_an_ack_with_the_kernels_message_is_decoded():
    # struct nlmsgerr {int error; struct nlmsghdr msg;} + capped, then NLMSGERR_ATTR_MSG.
    body = struct.pack("=i", -101) + struct.pack("=IHHII", 40, 24, 0x605, 7, 0) + _rtattr(1, b"Nexthop has invalid gateway\0")
    err = NL.Rtnl._error(NL.NLM_F_CAPPED | NL.NLM_F_ACK_TLVS, body)
    assert (err.code, err.kernel) == (101, "Nexthop has invalid gateway")
    assert NL.Rtnl._error(0, struct.pack("=i", 0) + b"\0" * 16) is None
    plain = NL.Rtnl._error(0, struct.pack("=i", -17) + b"\0" * 16)
    assert (plain.code, plain.kernel) == (17, "")


def test_a_link_message_gives_index_and_name():
    body = struct.pack("=BxHiII", 0, 1, 42, 0, 0) + _rtattr(4, struct.pack("=I", 1500)) + _rtattr(3, b"lxweb0\0")
    assert NL.link_index_name(body) == (42, "lxweb0")


def test_netlink_failures_become_step_errors_naming_the_object():
    def refuse():
        raise NL.NetlinkError(17, "")

    with pytest.raises(StepError) as failed:
        with host_errors("network"):  # the runner's boundary of the step
            N._Setup.nl("create veth lxweb0 (peer eth0 in the workload)", refuse)
    err = failed.value
    assert str(err) == "network (host): create veth lxweb0 (peer eth0 in the workload): EEXIST (File exists)"
    assert (err.step, err.side, err.errno) == ("network", "host", 17)

    def unreachable():
        raise NL.NetlinkError(101, "Nexthop has invalid gateway")

    with pytest.raises(StepError) as failed:
        with host_errors("network"):
            N._Setup.nl("add route default via 10.0.0.1 dev eth0 (in the workload)", unreachable)
    assert str(failed.value) == ("network (host): add route default via 10.0.0.1 dev eth0 (in the "
                                              "workload) (kernel: Nexthop has invalid gateway): ENETUNREACH "
                                              "(Network is unreachable)")


# --- pyroute2 stays unimported without interfaces -----------------------------------------------
def test_pyroute2_is_not_imported_to_plan_or_for_lo_only():
    code = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
os.geteuid = lambda: 0
import linx_spec.plan.caps as caps
caps.own_caps = lambda which="CapEff": (1 << 41) - 1
from linx_spec import build_plan, load_text
from linx_spec.host import network
plan = build_plan(load_text("version: 1\\nprocess: {{command: [/bin/true]}}\\nnetwork:\\n  sysctls: {{net.ipv4.ip_forward: 1}}\\n"))
assert plan.network.sysctls
print("pyroute2" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- an existing interface in use (issue 14 item 6) ----------------------------------------------
def test_an_existing_interface_in_use_is_refused_naming_what_it_carries(host):
    with pytest.raises(PlanError) as err:
        plan_of("  interfaces: [{type: existing, device: lxbusy0, name: eth0}]")
    assert err.value.exit_code == 66 and err.value.field == "network.interfaces.0.device"
    assert err.value.message == ("host interface `lxbusy0` is in use: up; addresses 10.7.0.1/24; the default "
                                 "route (default via 10.7.0.254); routes 10.8.0.0/16 via 10.7.0.9 metric 100")
    assert "in_use: take" in err.value.remedy
    # Each one alone is enough.
    base = HOST_DEVICES["lxbusy0"]
    for alone in (dataclasses.replace(base, addresses=(), routes=()),
                  dataclasses.replace(base, up=False, routes=()),
                  dataclasses.replace(base, up=False, addresses=(), routes=_BUSY_ROUTES[1:]),
                  dataclasses.replace(base, up=False, addresses=(), routes=(), multipath=("10.9.0.0/16 (multipath)",))):
        assert len(alone.in_use()) == 1
    assert HOST_DEVICES["lxnic0"].in_use() == []


def test_in_use_take_says_in_the_plan_what_it_takes(host):
    plan = build_plan(spec_of("  interfaces: [{type: existing, device: lxbusy0, name: eth0, in_use: take}]\n"
                              "  routes: []"))
    (itf,) = plan.network.interfaces
    assert itf.take_in_use and itf.device == "lxbusy0"
    step = next(s for s in active_steps(plan) if s.name == "network")
    assert step.args(plan)["interfaces"][0]["in_use"] == "take"
    assert plan.notes == (
        "network: takes host interface `lxbusy0` (up; addresses 10.7.0.1/24; the default route (default via "
        "10.7.0.254); routes 10.8.0.0/16 via 10.7.0.9 metric 100; mtu 1500) into the workload as `eth0`; it "
        "comes back with its name, state, MTU, addresses and routes",)
    free = build_plan(spec_of("  interfaces: [{type: existing, device: lxnic0}]"))
    assert "in_use" not in next(s for s in active_steps(free) if s.name == "network").args(free)["interfaces"][0]
    assert free.notes == ("network: takes host interface `lxnic0` (down, mtu 1500, no addresses or routes) into "
                          "the workload as `lxnic0`; it comes back with its name, state, MTU, addresses and routes",)


def test_in_use_is_only_for_existing_interfaces():
    with pytest.raises(SpecError, match="`in_use` is only for existing interfaces"):
        spec_of("  interfaces: [{name: eth0, in_use: take}]")
    with pytest.raises(SpecError, match="in_use"):
        spec_of("  interfaces: [{type: existing, device: lxnic0, in_use: always}]")
