"""Live apply of the network (issue 16) with a fake netns: what `diff` derives from
what it observes, the order of the changes, release and revert, and the rollback of
a failed change.  (The real kernel: tests/integration/test_live_network.py.)"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
from types import SimpleNamespace

import pytest

from linx_spec import build_plan, diff, load_text, reconcile, stored
from linx_spec.errors import touched
from linx_spec.host import network_live as N
from linx_spec.live import network_restart_fields
from linx_spec.plan import network as PN
from linx_spec.plan.network import AddressPlan, AddressState, HostEndPlan, InterfacePlan, NetworkPlan, RoutePlan, \
    RouteState, SysctlPlan

FORWARD = "/proc/sys/net/ipv4/ip_forward"


def addr(text: str) -> AddressPlan:
    return PN._address(text)


def veth(name: str, *addresses: str, host_name: str | None = None, mtu: int | None = None) -> InterfacePlan:
    return InterfacePlan("veth", name, tuple(map(addr, addresses)), mtu, None, True,
                         host=HostEndPlan(host_name, (), mtu, None, True))


def route(dst: str, via: str, dev: str = "eth0") -> RoutePlan:
    net, plen = dst.split("/")
    return RoutePlan(socket.AF_INET, net, int(plen), via, dev, None)


def net(*interfaces, routes=(), sysctls=None) -> NetworkPlan:
    return NetworkPlan(True, tuple(interfaces), tuple(routes),
                       tuple(SysctlPlan(k, "/proc/sys/" + k.replace(".", "/"), v) for k, v in (sysctls or {}).items()))


def plan_with(network: NetworkPlan):
    base = build_plan(load_text("version: 1\nname: web\nprocess: {command: [/bin/true]}\n", "t.yaml"))
    return dataclasses.replace(base, network=network)


def seen_state(addresses=("10.0.0.2/24",), routes=(), sysctls=None, links=("lo", "eth0")) -> N.NetSeen:
    seen = N.NetSeen(sysctls=dict(sysctls or {}))
    for n, name in enumerate(links, 1):
        seen.links[name] = N.Link(n, None if name == "lo" else "veth", True)
    for a in addresses:
        ip, plen = a.split("/")
        seen.addresses.setdefault("eth0", {})[a] = AddressState(socket.AF_INET, int(plen), ip, ip, None, 0, 0x80,
                                                               "eth0")
    for dst, via in routes:
        ip, plen = dst.split("/")
        r = RouteState(socket.AF_INET, 254, 3, 0, 1, 0, 0, ip, int(plen), via, None, None)
        seen.routes[N.route_key(socket.AF_INET, ip, int(plen), None)] = (r, "eth0")
    return seen


class FakeSession:
    """Records each change as (method, what); `fail` names a method that raises; the
    rollback undoes what was recorded, newest first."""

    log: list = []
    fail: str = ""

    def __init__(self, pid):
        self.done: list = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _do(self, name, what):
        if name == FakeSession.fail:
            raise touched(errno.ENETUNREACH, f"{name} {what} (in the workload)")
        self.done.append((name, what))
        FakeSession.log.append((name, what))

    def add_address(self, ifname, a):
        self._do("add_address", f"{ifname} {a}")

    def delete_address(self, ifname, a):
        self._do("delete_address", f"{ifname} {a}")

    def set_route(self, r, old):
        self._do("set_route", str(r))

    def delete_route(self, old):
        self._do("delete_route", str(old[0]))

    def write_sysctl(self, key, path, value, old):
        self._do("write_sysctl", f"{path}={value}")

    def add_interface(self, itf, n):
        self._do("add_interface", itf.name)

    def delete_interface(self, name):
        self._do("delete_interface", name)

    def rollback(self):
        FakeSession.log += [("undo", what) for _name, what in reversed(self.done)]
        self.done.clear()
        return []


@pytest.fixture
def fake(monkeypatch):
    """-> a holder whose .seen is what observe() returns; Session is FakeSession."""
    holder = SimpleNamespace(seen=seen_state(), observed=0)

    def observe(pid, paths=()):
        holder.observed += 1
        return holder.seen

    monkeypatch.setattr(N, "observe", observe)
    monkeypatch.setattr(N, "Session", FakeSession)
    monkeypatch.setattr(N, "fresh_sysctl", lambda path: "0")
    FakeSession.log, FakeSession.fail = [], ""
    return holder


def target(network: NetworkPlan):
    return SimpleNamespace(pid=os.getpid(), plan=plan_with(network))


def test_which_network_fields_are_live_and_which_need_a_restart():
    old = net(veth("eth0", "10.0.0.2/24"))
    assert network_restart_fields(old, net(veth("eth0", "10.0.0.2/24", "10.0.0.3/24"), routes=[
        route("10.9.0.0/16", "10.0.0.1")], sysctls={"net.ipv4.ip_forward": "1"})) == []
    assert network_restart_fields(old, net(veth("eth0", "10.0.0.2/24"), veth("eth1"))) == []  # a veth added
    assert network_restart_fields(old, net()) == []  # removed: released (or deleted with --revert-released)
    assert network_restart_fields(old, net(veth("eth0", "10.0.0.2/24", mtu=1400))) == [
        "network.interfaces.eth0 (its type, MTU, MAC, state or host end)"]
    moved = InterfacePlan("existing", "eth9", (), None, None, True, device="lxdev0")
    assert network_restart_fields(old, net(veth("eth0", "10.0.0.2/24"), moved)) == [
        "network.interfaces.eth9 (an `existing` device is taken only at start)"]
    assert network_restart_fields(old, dataclasses.replace(old, loopback=False)) == ["network.loopback"]
    assert network_restart_fields(old, None) == ["network"]
    assert network_restart_fields(dataclasses.replace(old, rootless=True), net()) != []


def test_diff_observes_the_netns_and_lists_the_changes_in_the_order_they_are_made(fake):
    t = target(net(veth("eth0", "10.0.0.2/24")))
    fake.seen = seen_state(sysctls={FORWARD: "0"})
    new = plan_with(net(veth("eth0", "10.0.0.2/24", "10.0.0.3/24"), veth("eth1", "10.1.0.2/24"),
                        routes=[route("10.9.0.0/16", "10.0.0.1")], sysctls={"net.ipv4.ip_forward": "1"}))
    d = diff(t, new)
    assert [(c.field, c.observed, c.wanted, c.how) for c in d.changes] == [
        ("network.interfaces.eth1", "absent", f"veth, host end lx{os.getpid()}v1, 10.1.0.2/24", "live"),
        ("network.sysctls.net.ipv4.ip_forward", "0", "1", "live"),
        ("network.interfaces.eth0.addresses", "absent", "10.0.0.3/24", "live"),
        ("network.routes", "absent", "10.9.0.0/16 via 10.0.0.1 dev eth0", "live"),
    ]
    assert not d.converged and FakeSession.log == []  # diff changes nothing


def test_an_unchanged_network_is_not_touched_and_an_empty_one_not_even_observed(fake):
    t = target(net(veth("eth0", "10.0.0.2/24"), routes=[route("10.9.0.0/16", "10.0.0.1")]))
    fake.seen = seen_state(routes=[("10.9.0.0/16", "10.0.0.1")])
    report = reconcile(t, t.plan)
    assert report.text() == "web: unchanged" and FakeSession.log == []
    fake.observed = 0
    bare = target(net())
    assert reconcile(bare, bare.plan).text() == "web: unchanged" and fake.observed == 0


def test_drift_a_route_through_another_gateway_is_replaced(fake):
    t = target(net(veth("eth0", "10.0.0.2/24"), routes=[route("10.9.0.0/16", "10.0.0.1")]))
    fake.seen = seen_state(routes=[("10.9.0.0/16", "10.0.0.9")])
    report = reconcile(t, t.plan)
    assert [(c.field, c.observed, c.wanted) for c in report.applied] == [
        ("network.routes", "10.9.0.0/16 via 10.0.0.9 dev eth0", "10.9.0.0/16 via 10.0.0.1 dev eth0")]
    assert FakeSession.log == [("set_route", "10.9.0.0/16 via 10.0.0.1 dev eth0")] and report.converged


def test_a_failed_change_rolls_back_the_network_and_keeps_the_ownership(fake):
    t = target(net(veth("eth0", "10.0.0.2/24")))
    new = plan_with(net(veth("eth0", "10.0.0.2/24", "10.0.0.3/24"), veth("eth1", "10.1.0.2/24"),
                        routes=[route("10.9.0.0/16", "10.1.0.1", "eth1")]))
    FakeSession.fail = "set_route"
    report = reconcile(t, new)
    assert [c.field for c in report.failed] == ["network.routes"]
    assert "network (host): set_route" in report.failed[0].error and "ENETUNREACH" in report.failed[0].error
    assert FakeSession.log == [("add_interface", "eth1"), ("add_address", "eth0 10.0.0.3/24"),
                               ("undo", "eth0 10.0.0.3/24"), ("undo", "eth1")]
    assert report.applied == [] and any("rolled back" in w for w in report.warnings)
    assert sorted(k for k in t.last_applied if k.startswith("net:")) == ["net:addr:eth0:10.0.0.2/24",
                                                                         "net:link:eth0"]
    assert t.plan is not new  # not recorded as applied: the next diff shows it all again


def test_a_released_address_is_left_unless_reverted_and_then_only_if_linx_spec_made_it(fake):
    t = target(net(veth("eth0", "10.0.0.2/24", "10.0.0.3/24")))
    fake.seen = seen_state(addresses=("10.0.0.2/24", "10.0.0.3/24"))
    without = plan_with(net(veth("eth0", "10.0.0.2/24")))
    assert [(c.field, c.observed, c.wanted, c.how) for c in diff(t, without).changes] == [
        ("network.interfaces.eth0.addresses", "10.0.0.3/24", "(left as is)", "release")]
    report = reconcile(t, without, revert_released=True)
    assert [(c.observed, c.wanted, c.how) for c in report.applied] == [("10.0.0.3/24", "absent", "revert")]
    assert FakeSession.log == [("delete_address", "eth0 10.0.0.3/24")]
    assert "net:addr:eth0:10.0.0.3/24" not in t.last_applied


def test_a_released_interface_is_deleted_with_revert_and_its_addresses_go_with_it(fake):
    t = target(net(veth("eth0", "10.0.0.2/24"), veth("eth1", "10.1.0.2/24")))
    fake.seen = seen_state(links=("lo", "eth0", "eth1"))
    fake.seen.addresses["eth1"] = {"10.1.0.2/24": AddressState(socket.AF_INET, 24, "10.1.0.2", "10.1.0.2", None, 0,
                                                               0x80, "eth1")}
    reconcile(t, plan_with(net(veth("eth0", "10.0.0.2/24"))), revert_released=True)
    assert FakeSession.log == [("delete_interface", "eth1")]


def test_a_sysctl_record_outside_net_is_never_written(fake):
    t = target(net(veth("eth0", "10.0.0.2/24")))
    t.last_applied = {"net:sysctl:/proc/sys/kernel/core_pattern": {
        "field": "network.sysctls.x", "file": "/proc/sys/kernel/core_pattern", "value": "|/tmp/x", "before": "core"}}
    fake.seen = seen_state(sysctls={"/proc/sys/kernel/core_pattern": "|/tmp/x"})
    reconcile(t, t.plan, revert_released=True)
    assert FakeSession.log == []


def test_the_running_workloads_own_host_interfaces_are_not_refused_as_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(tmp_path))
    d = tmp_path / "web"
    d.mkdir(mode=0o700)
    p = plan_with(net(veth("eth0", "10.0.0.2/24", host_name="lxweb0")))
    for name, data in (("state.json", json.dumps({"status": "running"}).encode()), ("plan.json", stored.dumps(p))):
        (d / name).write_bytes(data)
        os.chmod(d / name, 0o600)
    assert set(PN._held_by_running("web")) == {"lxweb0"}
    assert PN._held_by_running("other") == {}
    (d / "state.json").write_text(json.dumps({"status": "exited"}))
    assert PN._held_by_running("web") == {}
    (d / "state.json").write_text(json.dumps({"status": "running"}))
    (d / "plan.json").write_text('{"network": {"interfaces": "not a list"}}')
    assert PN._held_by_running("web") == {}  # checked against the plan's types


def test_keys_compare_as_the_kernel_does():
    assert N.address_key("fd00:0::02/64") == N.address_key("fd00::2/64") == "fd00::2/64"
    # An IPv6 route that names no metric gets 1024 from the kernel; IPv4 gets 0.
    assert N.route_key(socket.AF_INET6, "fd00:9::", 64, None) == N.route_key(socket.AF_INET6, "fd00:9::", 64, 1024)
    assert N.route_key(socket.AF_INET, "10.9.0.0", 16, None) == N.route_key(socket.AF_INET, "10.9.0.0", 16, 0)
    assert N.route_key(socket.AF_INET, None, 0, None) == "4:default:0"
    assert N.same_gateway("fd00::1", "fd00:0::1") and not N.same_gateway("10.0.0.1", None)


def test_a_replaced_route_read_back_from_state_is_checked_before_it_is_sent():
    from linx_spec.live import route_from_record, route_record

    was = (RouteState(socket.AF_INET, 254, 3, 0, 1, 0, 0, "10.237.0.0", 16, "10.236.0.9", None, None), "eth0")
    assert route_from_record(route_record(was)) == was
    v6 = (RouteState(socket.AF_INET6, 254, 3, 0, 1, 0, 0, None, 0, "fd00::1", 1024, None, 0), "eth1")
    assert route_from_record(route_record(v6)) == v6
    good = json.loads(route_record(was))
    for bad in ({"table": 100}, {"type": 2}, {"family": 17}, {"dst_len": 33}, {"dst_len": True},
                {"gateway": "fd00::1"}, {"gateway": "10.0.0.300"}, {"dst": None}, {"priority": -1},
                {"priority": 2**32}, {"dev": "../../etc"}, {"dev": "a" * 16}, {"dev": ""}, {"dev": "e th0"},
                {"tos": "0"}, {"extra": 1}):
        assert route_from_record(json.dumps({**good, **bad})) is None, bad
    assert route_from_record("not json") is None and route_from_record("[]") is None
    assert route_from_record(json.dumps({k: v for k, v in good.items() if k != "dev"})) is None


def test_the_recorded_host_ends_of_live_veths_are_checked_before_the_supervisor_deletes_one():
    """state.json is data: only names this workload's veths could have (lx<pid>v<n>, or a
    host.name in its plan), real ifindexes and addresses; other runs' records are not acted on."""
    from linx_spec.live import host_ends_of
    from linx_spec.state import HOST_ENDS

    plan = build_plan(load_text("version: 1\nname: lxhe\nnamespaces: [net]\nnetwork:\n  interfaces:\n"
                                "    - {name: eth0, type: veth, host: {name: lxhe0}}\n"
                                "process: {command: [/bin/true]}\n"), source="t.yaml")
    good = [{"name": "lx42v1", "index": 7, "pid": 42, "addresses": ["10.0.0.1"]},
            {"name": "lxhe0", "index": 8, "pid": 42, "addresses": []}]
    bad = [{"name": "eth0", "index": 2, "pid": 42, "addresses": []},  # not a name of ours
           {"name": "lx43v1", "index": 9, "pid": 42, "addresses": []},  # another workload's
           {"name": "lx42v1", "index": 9, "pid": 43, "addresses": []},  # another run's
           {"name": "lx42v2", "index": 0, "pid": 42, "addresses": []},
           {"name": "lx42v2", "index": True, "pid": 42, "addresses": []},
           {"name": "lx42v2", "index": 9, "pid": 42, "addresses": ["nope"]},
           {"name": "lx42v2", "index": 9, "pid": 42}, "lx42v2"]
    assert host_ends_of({HOST_ENDS: good + bad}, 42, plan) == [
        ("lx42v1", 7, frozenset({"10.0.0.1"})), ("lxhe0", 8, frozenset())]
    assert host_ends_of({HOST_ENDS: "lx42v1"}, 42, plan) == [] and host_ends_of({}, 42, plan) == []
