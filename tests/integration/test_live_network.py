"""Changing a running workload's network live (issue 16), against the real kernel:
addresses, routes, sysctls and interfaces of a detached workload's netns are
observed by `diff` and converged by `apply`, checked from inside the workload
(`linx-spec exec ... ip`, its own /proc/sys) and from the host (ping over the
veth), with the same pid before and after.  A change the kernel refuses rolls the
network back to what was observed; an apply SIGKILLed halfway leaves a `diff` of the
remainder.  Interfaces are lx<pid>v<n> (the leak census knows them), addresses
10.236-239.* on them only; the session's census checks that nothing is left."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, cli

from .test_lifecycle import runtime  # noqa: F401 - the fixture: a private runtime dir, emptied after

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (veths, netns)")

NAME = "lxlnet"
# {eth0}: more addresses of eth0; {more}: more interfaces; {net}: routes and sysctls.
SPEC = """
version: 1
name: lxlnet
namespaces: [pid, mount, net]
network:
  interfaces:
    - name: eth0
      type: veth
      addresses: [10.236.0.2/24{eth0}]
      host: {{addresses: [10.236.0.1/24]}}
{more}{net}
process:
  command: [/bin/sh, -c, 'while :; do sleep 0.1; done']
"""


def spec(write_spec, eth0: str = "", more: str = "", net: str = ""):
    return str(write_spec(SPEC.format(eth0=eth0, more=more, net=net)))


def host_pid(runtime) -> int:
    return json.loads((runtime / NAME / "state.json").read_text())["host_pid"]


def inside(*argv: str) -> str:
    """A command run inside the workload (its namespaces): its stdout."""
    proc = cli("exec", NAME, "--", *argv)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def addresses_inside(dev: str = "eth0") -> set[str]:
    return {line.split()[3] for line in inside("/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", dev).splitlines()}


def _echo(s: socket.socket, address: str, ident: int, seq: int) -> None:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"linx-live"
    padded = body + b"\0" * (len(body) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    total = (total >> 16) + (total & 0xFFFF)
    s.sendto(body[:2] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + body[4:], (address, 0))


def ping(address: str, timeout: float = 1.0) -> bool:
    """ICMP echoes from the host (a raw socket: no ping binary needed), one every 0.5 s,
    until one is answered or `timeout` passes.  A loaded machine may need a few
    seconds for the neighbour to resolve: a check that it answers waits up to 5 s."""
    ident = os.getpid() & 0xFFFF
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        seq = 0
        while (left := deadline - time.monotonic()) > 0:
            seq += 1
            try:
                _echo(s, address, ident, seq)
            except OSError:  # no route to it at all
                return False
            until = min(deadline, time.monotonic() + 0.5)
            while (wait := until - time.monotonic()) > 0:
                s.settimeout(wait)
                try:
                    data, (src, _port) = s.recvfrom(2048)
                except TimeoutError:
                    break
                icmp = data[(data[0] & 0x0F) * 4:]
                if src == address and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                    return True
    return False


def answers(address: str) -> bool:
    return ping(address, timeout=5.0)


def start(write_spec, runtime, **parts) -> int:
    out = cli("apply", "-d", spec(write_spec, **parts))
    assert out.returncode == 0, out.stderr
    return host_pid(runtime)


def test_an_address_added_is_reachable_then_released_or_removed(write_spec, runtime):
    pid = start(write_spec, runtime)
    assert cli("diff", spec(write_spec)).returncode == 0  # the same file: nothing differs
    assert not ping("10.236.0.3")
    more = spec(write_spec, eth0=", 10.236.0.3/24")
    d = cli("diff", more)
    assert d.returncode == 1, d.stderr
    assert "live     network.interfaces.eth0.addresses: absent -> 10.236.0.3/24" in d.stdout, d.stdout
    out = cli("apply", more)
    assert out.returncode == 0, out.stderr
    assert "network.interfaces.eth0.addresses: absent -> 10.236.0.3/24" in out.stdout
    assert addresses_inside() == {"10.236.0.2/24", "10.236.0.3/24"}
    assert answers("10.236.0.3")  # from the host end, over the veth
    assert cli("apply", more).stdout.strip() == f"{NAME}: unchanged"
    # Left the spec, with --revert-released: removed (linx-spec made it).
    out = cli("apply", "--revert-released", spec(write_spec))
    assert out.returncode == 0 and "revert   network.interfaces.eth0.addresses: 10.236.0.3/24 -> absent" \
        in out.stdout, out.stdout
    assert addresses_inside() == {"10.236.0.2/24"}
    assert not ping("10.236.0.3") and answers("10.236.0.2")
    # Without it: released, left as it is, and no longer owned.
    assert cli("apply", more).returncode == 0
    out = cli("apply", spec(write_spec))
    assert out.returncode == 0 and "release  network.interfaces.eth0.addresses: 10.236.0.3/24 -> (left as is)" \
        in out.stdout, out.stdout
    assert addresses_inside() == {"10.236.0.2/24", "10.236.0.3/24"} and answers("10.236.0.3")
    assert not any("10.236.0.3" in k for k in json.loads((runtime / NAME / "state.json").read_text())["last_applied"])
    assert host_pid(runtime) == pid and os.path.exists(f"/proc/{pid}")
    assert cli("diff", spec(write_spec)).returncode == 0


def test_a_route_and_a_sysctl_change_live(write_spec, runtime):
    pid = start(write_spec, runtime, net="  sysctls: {net.ipv4.conf.eth0.rp_filter: '1'}\n")
    assert inside("cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").strip() == "1"
    new = spec(write_spec, net="  routes: [{to: 10.237.0.0/16, via: 10.236.0.1}]\n"
                               "  sysctls: {net.ipv4.conf.eth0.rp_filter: '2', net.ipv4.ip_forward: '1'}\n")
    d = cli("diff", new)
    assert d.returncode == 1
    assert "live     network.sysctls.net.ipv4.conf.eth0.rp_filter: 1 -> 2" in d.stdout, d.stdout
    assert "live     network.sysctls.net.ipv4.ip_forward: 0 -> 1" in d.stdout
    assert "live     network.routes: absent -> 10.237.0.0/16 via 10.236.0.1 dev eth0" in d.stdout
    out = cli("apply", new)
    assert out.returncode == 0, out.stderr
    assert inside("cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").strip() == "2"
    assert inside("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert "10.237.0.0/16 via 10.236.0.1 dev eth0" in inside("/usr/sbin/ip", "route")
    assert host_pid(runtime) == pid
    # Released with --revert-released: the route goes, the sysctls get the values a new netns has.
    out = cli("apply", "--revert-released", spec(write_spec))
    assert out.returncode == 0, out.stderr
    assert "10.237.0.0/16" not in inside("/usr/sbin/ip", "route")
    assert inside("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "0"
    assert cli("diff", spec(write_spec)).returncode == 0 and host_pid(runtime) == pid


def test_drift_made_by_hand_shows_in_diff_and_status_and_apply_restores_it(write_spec, runtime):
    pid = start(write_spec, runtime)
    subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "addr", "del", "10.236.0.2/24", "dev", "eth0"], check=True)
    assert not ping("10.236.0.2")
    d = cli("diff", spec(write_spec))
    assert d.returncode == 1 and "live     network.interfaces.eth0.addresses: absent -> 10.236.0.2/24" in d.stdout
    assert "drift:    network.interfaces.eth0.addresses: kernel has absent, applied 10.236.0.2/24" \
        in cli("status", NAME).stdout
    out = cli("apply", spec(write_spec))
    assert out.returncode == 0, out.stderr
    assert addresses_inside() == {"10.236.0.2/24"} and answers("10.236.0.2")
    assert cli("diff", spec(write_spec)).returncode == 0 and host_pid(runtime) == pid


VETH1 = "    - {{name: eth1, type: veth, up: {up}, addresses: [10.238.0.2/24], host: {{addresses: [10.238.0.1/24]}}}}\n"


def test_a_veth_added_live_then_removed_with_its_host_end(write_spec, runtime):
    pid = start(write_spec, runtime)
    new = spec(write_spec, more=VETH1.format(up="true"))
    out = cli("apply", new)
    assert out.returncode == 0, out.stderr
    assert f"live     network.interfaces.eth1: absent -> veth, host end lx{pid}v1, 10.238.0.2/24" in out.stdout
    assert os.path.exists(f"/sys/class/net/lx{pid}v1") and answers("10.238.0.2")
    assert addresses_inside("eth1") == {"10.238.0.2/24"}
    out = cli("apply", "--revert-released", spec(write_spec))
    assert out.returncode == 0 and "revert   network.interfaces.eth1: veth -> absent" in out.stdout, out.stdout
    assert "eth1" not in inside("/usr/sbin/ip", "-o", "link") and not os.path.exists(f"/sys/class/net/lx{pid}v1")
    assert host_pid(runtime) == pid and answers("10.236.0.2")


def test_a_failed_network_change_is_rolled_back_and_the_workload_runs_on(write_spec, runtime):
    pid = start(write_spec, runtime)
    # eth1 is down: its subnet is not routed, so the gateway is unreachable and the
    # kernel refuses the route, after eth1 and eth0's new address were made.
    bad = spec(write_spec, eth0=", 10.236.0.4/24", more=VETH1.format(up="false"),
               net="  routes: [{to: 10.239.0.0/16, via: 10.238.0.1, dev: eth1}]\n")
    out = cli("apply", bad)
    assert out.returncode == 70, out.stdout + out.stderr
    assert "network.routes: absent -> 10.239.0.0/16 via 10.238.0.1 dev eth1" in out.stdout
    assert "add route 10.239.0.0/16 via 10.238.0.1 dev eth1 (in the workload)" in out.stdout, out.stdout
    assert "rolled back" in out.stdout and "Traceback" not in out.stderr
    # As observed before: no eth1 (nor its host end), no new address; the same workload.
    assert "eth1" not in inside("/usr/sbin/ip", "-o", "link") and not os.path.exists(f"/sys/class/net/lx{pid}v1")
    assert addresses_inside() == {"10.236.0.2/24"} and answers("10.236.0.2")
    assert host_pid(runtime) == pid and os.path.exists(f"/proc/{pid}")
    d = cli("diff", bad)
    assert d.returncode == 1 and "network.interfaces.eth1: absent" in d.stdout
    assert not any(k.startswith("net:link:eth1") for k in json.loads(
        (runtime / NAME / "state.json").read_text()).get("last_applied", {}))


KILLER = textwrap.dedent("""
    import os, signal, sys
    from linx_spec import build_plan, load_file, reconcile
    from linx_spec.host import network_live

    made = []
    real = network_live.Session.add_address
    def add_then_die(self, ifname, a):
        if made:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between two addresses
        real(self, ifname, a)
        made.append(a)
    network_live.Session.add_address = add_then_die

    plan = build_plan(load_file(sys.argv[1]), source=sys.argv[1])
    reconcile(plan.name, plan)
""")


def test_apply_killed_mid_change_leaves_the_workload_and_a_diff_of_the_remainder(write_spec, runtime):
    pid = start(write_spec, runtime)
    new = spec(write_spec, eth0=", 10.236.0.5/24, 10.236.0.6/24")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", KILLER, new], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert os.path.exists(f"/proc/{pid}") and host_pid(runtime) == pid
    assert addresses_inside() == {"10.236.0.2/24", "10.236.0.5/24"}
    d = cli("diff", new)
    assert d.returncode == 1 and "10.236.0.5" not in d.stdout, d.stdout
    assert "network.interfaces.eth0.addresses: absent -> 10.236.0.6/24" in d.stdout
    # The address made before the kill is owned (its `before` was recorded first):
    # released and reverted like any other.
    assert cli("apply", new).returncode == 0 and cli("diff", new).returncode == 0
    assert cli("apply", "--revert-released", spec(write_spec)).returncode == 0
    assert addresses_inside() == {"10.236.0.2/24"} and host_pid(runtime) == pid


def test_a_macvlan_added_live_then_removed(write_spec, runtime):
    # Its parent: one end of a veth pair of the test's own; the other end is the host's way in.
    subprocess.run("ip link add lxlpar0 type veth peer name lxlpar1 && ip addr add 10.239.5.1/24 dev lxlpar1 && "
                   "ip link set lxlpar1 up && ip link set lxlpar0 up", shell=True, check=True)
    try:
        pid = start(write_spec, runtime)
        mv = "    - {name: mv0, type: macvlan, parent: lxlpar0, mode: bridge, addresses: [10.239.5.7/24]}\n"
        out = cli("apply", spec(write_spec, more=mv))
        assert out.returncode == 0, out.stderr
        assert "live     network.interfaces.mv0: absent -> macvlan on lxlpar0, 10.239.5.7/24" in out.stdout
        assert addresses_inside("mv0") == {"10.239.5.7/24"} and answers("10.239.5.7")
        out = cli("apply", "--revert-released", spec(write_spec))
        assert out.returncode == 0 and "revert   network.interfaces.mv0: macvlan -> absent" in out.stdout, out.stdout
        assert "mv0" not in inside("/usr/sbin/ip", "-o", "link") and not ping("10.239.5.7")
        assert host_pid(runtime) == pid
    finally:
        subprocess.run(["ip", "link", "del", "lxlpar0"], capture_output=True)


def test_its_own_named_host_end_is_not_refused_as_taken_but_another_workloads_is(write_spec, runtime):
    named = SPEC.replace("host: {{addresses", "host: {{name: lxlnh0, addresses")
    path = str(write_spec(named.format(eth0="", more="", net="")))
    assert cli("apply", "-d", path).returncode == 0
    pid = host_pid(runtime)
    assert os.path.exists("/sys/class/net/lxlnh0")
    assert cli("diff", path).returncode == 0
    more = str(write_spec(named.format(eth0=", 10.236.0.7/24", more="", net="")))
    out = cli("apply", more)
    assert out.returncode == 0, out.stderr
    assert answers("10.236.0.7") and host_pid(runtime) == pid
    other = cli("plan", "--set", "name=lxother", path)
    assert other.returncode == 66 and "host interface `lxlnh0` already exists" in other.stderr, other.stderr


def test_a_route_replaced_live_is_put_back_by_revert_released(write_spec, runtime):
    """A route of the workload's own (here made by hand, as the workload or an admin
    would) replaced by the spec's, same destination and metric: released with
    --revert-released, the route it replaced comes back, checked inside the netns;
    without the flag, released routes are left as they are."""
    pid = start(write_spec, runtime)
    subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "route", "add", "10.237.0.0/16", "via", "10.236.0.9",
                    "dev", "eth0"], check=True)
    routed = spec(write_spec, net="  routes: [{to: 10.237.0.0/16, via: 10.236.0.1}]\n")
    out = cli("apply", routed)
    assert out.returncode == 0, out.stderr
    assert "network.routes: 10.237.0.0/16 via 10.236.0.9 dev eth0 -> 10.237.0.0/16 via 10.236.0.1 dev eth0" \
        in out.stdout, out.stdout
    assert "10.237.0.0/16 via 10.236.0.1 dev eth0" in inside("/usr/sbin/ip", "route")
    out = cli("apply", "--revert-released", spec(write_spec))
    assert out.returncode == 0, out.stderr
    assert "revert   network.routes: 10.237.0.0/16 via 10.236.0.1 dev eth0 -> 10.237.0.0/16 via 10.236.0.9 dev eth0" \
        in out.stdout, out.stdout
    routes = inside("/usr/sbin/ip", "route")
    assert "10.237.0.0/16 via 10.236.0.9 dev eth0" in routes and "via 10.236.0.1" not in routes, routes
    assert not any("route" in k for k in json.loads((runtime / NAME / "state.json").read_text())["last_applied"])
    # Replaced again, then released without the flag: left as the spec made it.
    assert cli("apply", routed).returncode == 0
    out = cli("apply", spec(write_spec))
    assert out.returncode == 0 and "release  network.routes" in out.stdout, out.stdout
    assert "10.237.0.0/16 via 10.236.0.1 dev eth0" in inside("/usr/sbin/ip", "route")
    assert host_pid(runtime) == pid
