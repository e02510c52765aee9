"""network with real veths, macvlans and net namespaces, checked from inside the workload.

Every interface a test creates is named lx* and every netns lx* (the leak
census looks for them); addresses are 10.23x.* and fd00:23x:* on those
interfaces only, so nothing leaves the machine.  The workload is a Python
script (the host's filesystem is visible in the workload) that prints what it
sees and does; the test asserts on that output and on what the host saw.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from linx_spec import PlanError, StepError, Workload, build_plan, load_text, run
from linx_spec.host import network_teardown

pytestmark = pytest.mark.root


def _is_mount_point(path: str) -> bool:
    from linx_spec import mountinfo

    return any(m.mount_point == path for m in mountinfo.read())


@pytest.fixture(scope="module", autouse=True)
def _iproute2_netns_dir():
    """`ip netns add` bind-mounts /run/netns onto itself the first time it is
    used; on a machine where these tests made it, they remove it again."""
    existed, mounted = os.path.isdir("/run/netns"), _is_mount_point("/run/netns")
    yield
    if not mounted and _is_mount_point("/run/netns") and not os.listdir("/run/netns"):
        subprocess.run(["umount", "/run/netns"], check=False)
    if not existed and os.path.isdir("/run/netns") and not os.listdir("/run/netns"):
        os.rmdir("/run/netns")

PY = sys.executable
IP_FREEBIND = 15  # linux/in.h: bind to an address that does not exist yet
IPV6_FREEBIND = 78  # linux/in6.h (4.15+)

# What the workload reports about itself, as one JSON line.
PROBE = r"""
import json, os, socket, subprocess, sys
def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True).stdout
links = {}
for line in ip("-o", "-d", "link").splitlines():
    parts = line.split()
    name = parts[1].rstrip(":").split("@")[0]
    links[name] = {"flags": parts[2], "mtu": int(parts[parts.index("mtu") + 1]),
                   "mac": parts[parts.index("link/ether") + 1] if "link/ether" in parts else None,
                   "kind": next((k for k in ("veth", "macvlan", "ipvlan") if k in parts), None)}
report = {
    "ifaces": sorted(n for _i, n in socket.if_nameindex()),
    "links": links,
    "addr": ip("-o", "addr"),
    "route4": ip("route"),
    "route6": ip("-6", "route"),
    "netns": os.readlink("/proc/self/ns/net"),
    "sysctl": {p: open("/proc/sys/" + p).read().strip() for p in sys.argv[1:]},
}
print(json.dumps(report))
"""


def lx_links() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith("lx")}


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def plan_of(body: str, source: str = "<api>"):
    return build_plan(load_text(body), source=source)


def run_captured(plan, tmp_path: Path):
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        result = run(plan, stdout=fo.fileno(), stderr=fe.fileno())
    return result, out.read_text(), err.read_text()


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def settled_links() -> set[str]:
    """lx_links() once the deletes of finished workloads' veths are done: run()
    returns before the kernel finished deleting a pair (host/network_teardown.py);
    settle() is where the promise that nothing remains is kept."""
    network_teardown.settle()
    return lx_links()


@pytest.fixture
def no_leaks():
    """The test's own lx* interfaces are removed by it; nothing of the runner may remain."""
    before = settled_links()
    yield before
    assert settled_links() == before


def veth_pair(a: str, b: str) -> None:
    sh(f"ip link add {a} type veth peer name {b}")


def delete_link(name: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def network_ms(result) -> float:
    return next(t.seconds for t in result.timings if t.step == "network") * 1000


# --- a veth: round trips both ways, IPv4 and IPv6 ------------------------------------------------
WORKLOAD_RT = r"""
import socket, sys
servers = []
for fam, addr in ((socket.AF_INET, "10.231.1.2"), (socket.AF_INET6, "fd00:231:1::2")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((addr, 7000))
    s.listen(4)
    s.settimeout(20)
    servers.append(s)
# workload -> host
for host in ("10.231.1.1", "fd00:231:1::1"):
    with socket.create_connection((host, 7001), timeout=20) as c:
        c.sendall(b"from-workload")
        print("client", host, c.recv(100).decode(), flush=True)
# host -> workload
for s in servers:
    conn, peer = s.accept()
    with conn:
        data = conn.recv(100)
        conn.sendall(b"echo:" + data)
        print("server", peer[0], data.decode(), flush=True)
"""


def serve_once(addr: str, port: int, reply: bytes, seen: list, family: int) -> threading.Thread:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(30)

    def body():
        try:
            conn, peer = s.accept()
            with conn:
                conn.settimeout(30)
                seen.append((peer[0], conn.recv(100).decode()))
                conn.sendall(reply)
        except OSError as exc:
            seen.append(("error", repr(exc)))
        finally:
            s.close()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def connect_retrying(addr: str, port: int, payload: bytes, deadline: float) -> str:
    while True:
        try:
            with socket.create_connection((addr, port), timeout=5) as c:
                c.sendall(payload)
                return c.recv(100).decode()
        except (ConnectionRefusedError, socket.timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_tcp_round_trip_both_ways_ipv4_and_ipv6(tmp_path, no_leaks):
    prog = script(tmp_path, "rt.py", WORKLOAD_RT)
    plan = plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}]}}
network:
  interfaces:
    - name: eth0
      addresses: [10.231.1.2/24, "fd00:231:1::2/64"]
      host: {{name: lxnrt0, addresses: [10.231.1.1/24, "fd00:231:1::1/64"]}}
""")
    seen: list = []
    threads = [serve_once("10.231.1.1", 7001, b"hello-v4", seen, socket.AF_INET),
               serve_once("fd00:231:1::1", 7001, b"hello-v6", seen, socket.AF_INET6)]
    out_path = tmp_path / "out"
    with open(out_path, "wb") as fo, Workload(plan, stdout=fo.fileno()) as w:
        w.start()
        deadline = time.monotonic() + 20
        answers = [connect_retrying("10.231.1.2", 7000, b"from-host-v4", deadline),
                   connect_retrying("fd00:231:1::2", 7000, b"from-host-v6", deadline)]
        result = w.wait()
    for t in threads:
        t.join(5)
    out = out_path.read_text()
    assert result.exit_code == 0, out
    assert answers == ["echo:from-host-v4", "echo:from-host-v6"]
    assert sorted(seen) == [("10.231.1.2", "from-workload"), ("fd00:231:1::2", "from-workload")]
    assert "client 10.231.1.1 hello-v4" in out and "client fd00:231:1::1 hello-v6" in out
    assert "server 10.231.1.1 from-host-v4" in out and "server fd00:231:1::1 from-host-v6" in out
    assert "lxnrt0" not in settled_links()  # the pair is gone with the workload



VETH_SPEC = """
version: 1
process: {command: [/bin/true]}
network:
  interfaces:
    - name: eth0
      addresses: [10.231.9.2/30]
      host: {name: lxndef0, addresses: [10.231.9.1/30]}
"""


def test_a_finished_workloads_veth_is_deleted_after_run_returns(tmp_path, no_leaks):
    # run() hands the delete to a thread (host/network_teardown.py); the same host
    # name and address are free again for the next workload at once, and settle()
    # returns only once the pair is gone.
    plan = build_plan(load_text(VETH_SPEC))
    for _ in range(3):  # back to back: the next one waits for its name, never refused
        assert run(plan).exit_code == 0
    assert network_teardown.settle() is True
    assert network_teardown.pending() == [] and "lxndef0" not in lx_links()


def test_a_pending_veth_delete_is_done_before_the_process_exits(tmp_path, no_leaks):
    # The promise across processes: a Python program (or a CLI apply) that returns
    # leaves nothing, however soon after run() it exits.
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from linx_spec import build_plan, load_text, run
from linx_spec.host import network_teardown
assert run(build_plan(load_text({VETH_SPEC!r}))).exit_code == 0
print(network_teardown.pending())
"""
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lxndef0" not in lx_links()  # right after the exit: no settle() here

# --- what the workload sees: exactly lo and its interfaces, routes, MTU, MAC, sysctls -----------
def test_the_workload_sees_exactly_its_interfaces_and_routes(tmp_path, no_leaks):
    prog = script(tmp_path, "probe.py", PROBE)
    plan = plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}, net/ipv4/ip_forward, net/ipv4/conf/eth1/rp_filter, net/ipv6/conf/eth0/accept_ra]}}
network:
  interfaces:
    - name: eth0
      addresses: [10.231.2.2/24, "fd00:231:2::2/64"]
      mtu: 1400
      mac: 02:00:0a:e7:02:02
      host: {{name: lxnsee0, addresses: [10.231.2.1/24, "fd00:231:2::1/64"]}}
    - name: eth1
      addresses: [10.231.3.2/24]
      host: {{name: lxnsee1, addresses: [10.231.3.1/24], up: false}}
  routes:
    - {{to: default, via: 10.231.3.1}}
    - {{to: "::/0", via: "fd00:231:2::1"}}
    - {{to: 10.77.0.0/16, via: 10.231.2.1, metric: 7}}
  sysctls:
    net.ipv4.ip_forward: 1
    net.ipv4.conf.eth1.rp_filter: 2
    net.ipv6.conf.default.accept_ra: 0
""")
    host_mtu = {}

    def on_step(name, side, seconds):
        if name == "network":  # the host end, seen from the host while the workload is parked
            host_mtu["lxnsee0"] = int(Path("/sys/class/net/lxnsee0/mtu").read_text())
            host_mtu["lxnsee1 up"] = Path("/sys/class/net/lxnsee1/operstate").read_text().strip()

    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        result = run(plan, stdout=fo.fileno(), stderr=fe.fileno(), on_step=on_step)
    assert result.exit_code == 0, err.read_text()
    seen = json.loads(out.read_text())
    assert seen["ifaces"] == ["eth0", "eth1", "lo"]
    links = seen["links"]
    assert "UP" in links["lo"]["flags"] and "UP" in links["eth0"]["flags"]
    assert links["eth0"]["mtu"] == 1400 and links["eth0"]["mac"] == "02:00:0a:e7:02:02"
    assert links["eth0"]["kind"] == "veth"
    assert host_mtu == {"lxnsee0": 1400, "lxnsee1 up": "down"}  # host MTU follows; `up: false` honoured
    assert "inet 127.0.0.1/8" in seen["addr"]
    assert "inet 10.231.2.2/24 brd 10.231.2.255" in seen["addr"]
    v6 = next(line for line in seen["addr"].splitlines() if "fd00:231:2::2/64" in line)
    assert "tentative" not in v6  # IFA_F_NODAD: usable at once
    assert "default via 10.231.3.1 dev eth1" in seen["route4"]
    assert "10.77.0.0/16 via 10.231.2.1 dev eth0 metric 7" in seen["route4"]
    assert "default via fd00:231:2::1 dev eth0" in seen["route6"]
    assert seen["sysctl"] == {"net/ipv4/ip_forward": "1", "net/ipv4/conf/eth1/rp_filter": "2",
                              "net/ipv6/conf/eth0/accept_ra": "0"}  # eth0 got `default` when created
    assert seen["netns"] != os.readlink("/proc/self/ns/net")


def test_net_sysctls_stay_in_the_workloads_namespace(tmp_path, no_leaks):
    prog = script(tmp_path, "probe.py", PROBE)
    key = "net/ipv4/tcp_syn_retries"
    before = Path(f"/proc/sys/{key}").read_text().strip()
    new = "3" if before != "3" else "4"
    plan = plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}, {key}]}}
network:
  sysctls: {{net.ipv4.tcp_syn_retries: {new}}}
""")
    result, out, err = run_captured(plan, tmp_path)
    assert result.exit_code == 0, err
    assert json.loads(out)["sysctl"] == {key: new}
    assert Path(f"/proc/sys/{key}").read_text().strip() == before


def test_default_is_lo_up_and_nothing_else_without_pyroute2(tmp_path):
    prog = script(tmp_path, "probe.py", PROBE)
    code = f"""
import os, sys, json
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from linx_spec import build_plan, load_text, run
plan = build_plan(load_text("version: 1\\nprocess: {{command: [{PY}, {prog}]}}\\n"))
r, w = os.pipe()
result = run(plan, stdout=w)
os.close(w)
seen = json.loads(os.read(r, 1 << 20))
print(json.dumps([result.exit_code, seen["ifaces"], seen["links"]["lo"]["flags"], "pyroute2" in sys.modules]))
"""
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env={**os.environ}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    code_, ifaces, lo_flags, imported = json.loads(proc.stdout)
    assert code_ == 0 and ifaces == ["lo"] and "UP" in lo_flags and imported is False


def test_loopback_can_be_left_down(tmp_path):
    prog = script(tmp_path, "probe.py", PROBE)
    plan = plan_of(f"version: 1\nprocess: {{command: [{PY}, {prog}]}}\nnetwork: {{loopback: false}}\n")
    result, out, err = run_captured(plan, tmp_path)
    assert result.exit_code == 0, err
    seen = json.loads(out)
    assert seen["ifaces"] == ["lo"] and ",UP" not in seen["links"]["lo"]["flags"]


ROOTLESS = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from linx_spec import StepError, build_plan, load_text, run
def spec(sysctl):
    return ("version: 1\nnamespaces: [user, net]\n"
            "process: {command: [sh, -c, 'ip -o link show lo; cat /proc/sys/net/ipv4/tcp_syn_retries']}\n"
            f"network: {{sysctls: {{{sysctl}: 2}}}}\n")
plan = build_plan(load_text(spec("net.ipv4.tcp_syn_retries")))
r, w = os.pipe()
result = run(plan, stdout=w)
os.close(w)
out = os.read(r, 65536).decode()
try:
    run(build_plan(load_text(spec("net.ipv4.no_such_knob"))))
    error = None
except StepError as exc:
    error = str(exc)
print(json.dumps({"uid": os.geteuid(), "rootless": plan.network.rootless, "code": result.exit_code, "out": out,
                  "error": error, "pyroute2": "pyroute2" in sys.modules}))
"""


def test_rootless_gets_lo_up_and_sysctls_through_its_user_namespace():
    """An unprivileged runner cannot setns into the workload's netns directly; a
    forked helper enters the workload's user namespace first."""
    repo = Path(__file__).resolve().parents[2]
    if not os.access(repo / "agent" / "linx-agent", os.X_OK) or subprocess.run(
            ["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("needs setpriv and an agent executable by others")
    with tempfile.TemporaryDirectory(prefix="linx-net-") as where:  # pytest's tmp is root-only
        os.chmod(where, 0o755)
        prog = Path(where) / "rootless.py"
        prog.write_text(ROOTLESS)
        prog.chmod(0o644)
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, str(prog),
                               str(repo)], capture_output=True, text=True, cwd="/", timeout=60,
                              env={**os.environ, "LINX_AGENT": str(repo / "agent" / "linx-agent")})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["uid"] == 65534 and seen["rootless"] and seen["code"] == 0
    assert "<LOOPBACK,UP" in seen["out"] and seen["out"].splitlines()[-1] == "2"
    assert seen["error"].startswith("network (host): write sysctl net.ipv4.no_such_knob=2") and "ENOENT" in seen["error"]
    assert seen["pyroute2"] is False


# --- macvlan (and ipvlan where the kernel has it) on a parent the test creates ------------------
# This kernel has no dummy driver; a veth end is an Ethernet device like any
# other, and its peer lets the host talk to the macvlan.
WORKLOAD_CLIENT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.create_connection((host, port), timeout=20) as c:
    c.sendall(sys.argv[3].encode())
    print("reply", c.recv(100).decode(), flush=True)
print("ifaces", sorted(n for _i, n in socket.if_nameindex()), flush=True)
"""


@pytest.fixture
def parent():
    veth_pair("lxnpar0", "lxnpar1")
    sh("ip addr add 10.231.5.1/24 dev lxnpar1 && ip link set lxnpar1 up && ip link set lxnpar0 up")
    yield "lxnpar0"
    delete_link("lxnpar0")


@pytest.mark.parametrize("kind, mode", [("macvlan", "bridge"), ("ipvlan", "l2")])
def test_macvlan_and_ipvlan_on_a_host_parent(tmp_path, no_leaks, parent, kind, mode):
    probe = subprocess.run(["ip", "link", "add", "lxnprobe", "link", parent, "type", kind],
                           capture_output=True, text=True)
    if probe.returncode != 0 and "Unknown device type" not in probe.stderr:
        raise AssertionError(probe.stderr)
    has_driver = probe.returncode == 0
    if has_driver:
        delete_link("lxnprobe")
    prog = script(tmp_path, "client.py", WORKLOAD_CLIENT)
    plan = plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}, 10.231.5.1, "7002", "via-{kind}"]}}
network:
  interfaces:
    - {{name: {kind[:2]}0, type: {kind}, parent: {parent}, mode: {mode}, addresses: [10.231.5.7/24]}}
""")
    if not has_driver:
        # This kernel lacks the driver (CONFIG_IPVLAN here): the step must say
        # so plainly, leave nothing behind (no_leaks) and never run the child.
        with pytest.raises(StepError) as info:
            run_captured(plan, tmp_path)
        assert info.value.step == "network" and kind in str(info.value), str(info.value)
        return
    seen: list = []
    t = serve_once("10.231.5.1", 7002, b"hello-" + kind.encode(), seen, socket.AF_INET)
    result, out, err = run_captured(plan, tmp_path)
    t.join(5)
    assert result.exit_code == 0, err
    assert f"reply hello-{kind}" in out
    assert f"ifaces ['lo', '{kind[:2]}0']" in out
    assert seen == [("10.231.5.7", f"via-{kind}")]
    assert Path(f"/sys/class/net/{parent}").exists()  # the parent is untouched


# --- an existing host interface, moved in and back ----------------------------------------------
def test_an_existing_interface_is_moved_in_and_comes_back(tmp_path, no_leaks):
    veth_pair("lxnmv0", "lxnmv1")
    try:
        sh("ip addr add 10.231.6.1/24 dev lxnmv1 && ip link set lxnmv1 up")
        ifindex = int(Path("/sys/class/net/lxnmv0/ifindex").read_text())
        prog = script(tmp_path, "client.py", WORKLOAD_CLIENT)
        plan = plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}, 10.231.6.1, "7003", moved]}}
network:
  interfaces:
    - {{type: existing, device: lxnmv0, name: eth5, addresses: [10.231.6.2/24], mtu: 1300}}
""")
        during = {}

        def on_step(name, side, seconds):
            if name == "network":
                during["on host"] = Path("/sys/class/net/lxnmv0").exists()

        seen: list = []
        t = serve_once("10.231.6.1", 7003, b"hello-moved", seen, socket.AF_INET)
        out = tmp_path / "out"
        with open(out, "wb") as fo:
            result = run(plan, stdout=fo.fileno(), on_step=on_step)
        t.join(5)
        assert result.exit_code == 0
        assert "reply hello-moved" in out.read_text() and "ifaces ['eth5', 'lo']" in out.read_text()
        assert seen == [("10.231.6.2", "moved")]
        assert during == {"on host": False}
        # Back under its own name, with its ifindex and its own MTU; addresses set inside went with the move.
        assert Path("/sys/class/net/lxnmv0").exists()
        assert int(Path("/sys/class/net/lxnmv0/ifindex").read_text()) == ifindex
        assert int(Path("/sys/class/net/lxnmv0/mtu").read_text()) == 1500
        assert "10.231.6.2" not in subprocess.run(["ip", "-o", "addr", "show", "lxnmv0"], capture_output=True,
                                                  text=True).stdout
    finally:
        delete_link("lxnmv0")


def test_a_moved_interface_comes_back_when_a_later_step_fails(tmp_path, no_leaks):
    veth_pair("lxnmb0", "lxnmb1")
    try:
        plan, marker = failing(tmp_path, """\
  interfaces: [{type: existing, device: lxnmb0, name: eth0}]
  sysctls: {net.ipv4.no_such_knob: 1}""")
        before = lx_links()
        with pytest.raises(StepError, match="write sysctl net.ipv4.no_such_knob=1"):
            run_captured(plan, tmp_path)
        assert not marker.exists()
        assert lx_links() == before  # lxnmb0 is back on the host, under its own name
    finally:
        delete_link("lxnmb0")


# --- an existing host interface in use (issue 14 item 6) ---------------------------------------------
def busy_pair(a: str, b: str) -> None:
    """a veth end the host uses: up, MTU 1400, IPv4 and IPv6 addresses, a route of each
    family through it, and a default route (in a table of its own: the host's real
    default route is never touched)."""
    veth_pair(a, b)
    sh(f"ip link set {a} mtu 1400 && ip link set {b} up && ip link set {a} up"
       f" && ip addr add 10.231.12.1/24 dev {a} && ip addr add 10.231.12.7/24 dev {a}"
       f" && ip -6 addr add fd00:231:12::1/64 dev {a} nodad"
       f" && ip route add 10.231.13.0/24 via 10.231.12.9 dev {a}"
       f" && ip -6 route add fd00:231:13::/64 via fd00:231:12::9 dev {a}"
       f" && ip route add default via 10.231.12.254 dev {a} table 231")


def host_view(dev: str) -> dict:
    """What the host sees of dev, by iproute2 (not by our own bookkeeping)."""
    def out(*args):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout

    link = out("-o", "link", "show", "dev", dev).split()
    addrs = sorted(f"{w[2]} {w[3]}" for w in (line.split() for line in out("-o", "addr", "show", "dev", dev).splitlines()))
    routes = sorted(out("route", "show", "table", "all", "dev", dev).splitlines()
                    + out("-6", "route", "show", "table", "all", "dev", dev).splitlines())
    return {"name": link[1].split("@")[0], "flags": link[2], "mtu": int(link[link.index("mtu") + 1]),
            "addresses": addrs, "routes": routes}


def settled_view(dev: str, expected: dict) -> dict:
    """The view once IPv6 has settled (the link-local address is tentative for a
    second after the link comes up, and its local route appears after that)."""
    deadline = time.monotonic() + 10
    while True:
        view = host_view(dev)
        if view == expected or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def test_an_existing_interface_in_use_is_refused_unless_the_spec_says_take(tmp_path, no_leaks):
    """Issue 14 item 6: it was taken without a word and came back down, without
    addresses or routes.  Refused at plan time, and again when applied: a plan
    made while it was free may run once it is in use."""
    veth_pair("lxnbz0", "lxnbz1")
    try:
        free = plan_of("""
version: 1
process: {command: [/bin/true]}
network: {interfaces: [{type: existing, device: lxnbz0, name: eth0}]}
""")
        assert "network: takes host interface `lxnbz0` (down, mtu 1500, no addresses or routes)" in free.notes[0]
        delete_link("lxnbz0")
        busy_pair("lxnbz0", "lxnbz1")
        before = host_view("lxnbz0")
        with pytest.raises(PlanError) as err:
            plan_of("""
version: 1
process: {command: [/bin/true]}
network: {interfaces: [{type: existing, device: lxnbz0, name: eth0}]}
""")
        assert err.value.field == "network.interfaces.0.device" and err.value.exit_code == 66
        for carried in ("host interface `lxnbz0` is in use: up", "10.231.12.1/24", "10.231.12.7/24",
                        "fd00:231:12::1/64", "the default route (default via 10.231.12.254 table 231)",
                        "10.231.13.0/24 via 10.231.12.9", "fd00:231:13::/64 via fd00:231:12::9"):
            assert carried in err.value.message, err.value.message
        with pytest.raises(PlanError, match="host interface `lxnbz0` is in use: up"):
            run_captured(free, tmp_path)
        assert host_view("lxnbz0") == before  # not touched
    finally:
        delete_link("lxnbz0")


TAKE = """
version: 1
process: {{command: {command}}}
rlimits: {{nofile: 256}}
network:
  interfaces:
    - {{type: existing, device: {device}, name: eth7, in_use: take, addresses: [10.231.14.2/24], mtu: 1300}}
"""


def test_a_taken_interface_is_seen_inside_and_comes_back_as_it_was(tmp_path, no_leaks):
    busy_pair("lxntk0", "lxntk1")
    try:
        before = host_view("lxntk0")
        ifindex = int(Path("/sys/class/net/lxntk0/ifindex").read_text())
        prog = script(tmp_path, "probe.py", PROBE)
        plan = plan_of(TAKE.format(command=json.dumps([PY, prog]), device="lxntk0"))
        assert plan.notes[0].startswith("network: takes host interface `lxntk0` (up; addresses 10.231.12.1/24")
        result, out, err = run_captured(plan, tmp_path)
        assert result.exit_code == 0, err
        seen = json.loads(out)
        assert seen["ifaces"] == ["eth7", "lo"] and seen["links"]["eth7"]["mtu"] == 1300
        assert "10.231.14.2/24" in seen["addr"] and "10.231.12.1" not in seen["addr"]  # only what the spec gave
        assert settled_view("lxntk0", before) == before
        assert int(Path("/sys/class/net/lxntk0/ifindex").read_text()) == ifindex
    finally:
        delete_link("lxntk0")


@pytest.mark.parametrize("step", ["rlimits", "capabilities"])
def test_a_taken_interface_comes_back_as_it_was_when_a_later_step_fails(tmp_path, no_leaks, monkeypatch, step):
    """A host step after the network one (rlimits), and a child step (capabilities)."""
    busy_pair("lxntf0", "lxntf1")
    try:
        before = host_view("lxntf0")
        marker = tmp_path / "ran"
        plan = plan_of(TAKE.format(command=json.dumps(["/bin/touch", str(marker)]), device="lxntf0"))
        monkeypatch.setenv("LINX_FAULT", f"fail:{step}")
        with pytest.raises(StepError, match="injected fault") as err:
            run_captured(plan, tmp_path)
        assert err.value.step == step
        assert not marker.exists()
        assert settled_view("lxntf0", before) == before
    finally:
        delete_link("lxntf0")


def test_a_taken_interface_comes_back_as_it_was_when_the_start_is_interrupted(tmp_path, no_leaks):
    """SIGINT to `linx-spec apply` while it is parked after the network step."""
    import signal

    from conftest import start_cli

    busy_pair("lxnti0", "lxnti1")
    try:
        before = host_view("lxnti0")
        marker = tmp_path / "ran"
        spec = tmp_path / "take.yaml"
        spec.write_text(TAKE.format(command=json.dumps(["/bin/touch", str(marker)]), device="lxnti0"))
        proc = start_cli("apply", str(spec), env={"LINX_FAULT": "pause:rlimits"}, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
        try:
            line, deadline = "", time.monotonic() + 30
            while "linx-fault: paused" not in line and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    break
            assert "linx-fault: paused" in line, line + proc.stderr.read()
            assert not Path("/sys/class/net/lxnti0").exists()  # taken
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130
            assert "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert not marker.exists()
        assert settled_view("lxnti0", before) == before
    finally:
        delete_link("lxnti0")


def test_without_the_move_back_the_kernel_destroys_a_virtual_device():
    """What happens when the runner dies before its undo: the netns dies, and the
    kernel destroys a virtual device in it (veth, ifb, dummy: no netns_refund);
    a physical NIC would go to the init netns instead (default_device_exit_net)."""
    veth_pair("lxnk0", "lxnk1")
    sh("ip netns add lxnkill")
    try:
        sh("ip link set lxnk0 netns lxnkill")
        assert not Path("/sys/class/net/lxnk0").exists() and Path("/sys/class/net/lxnk1").exists()
    finally:
        sh("ip netns del lxnkill")
    for _ in range(100):  # the netns is cleaned up asynchronously (cleanup_net)
        if not Path("/sys/class/net/lxnk1").exists():
            break
        time.sleep(0.05)
    assert not Path("/sys/class/net/lxnk0").exists() and not Path("/sys/class/net/lxnk1").exists()


# --- joining a named netns ----------------------------------------------------------------------
def test_joining_a_named_netns_uses_it_as_it_is(tmp_path):
    sh("ip netns add lxntest")
    try:
        prog = script(tmp_path, "probe.py", PROBE)
        plan = plan_of(f"""
version: 1
namespaces: {{pid: new, mount: new, net: {{join: /run/netns/lxntest}}}}
process: {{command: [{PY}, {prog}]}}
""")
        assert plan.network is None
        result, out, err = run_captured(plan, tmp_path)
        assert result.exit_code == 0, err
        seen = json.loads(out)
        assert seen["netns"] == f"net:[{os.stat('/run/netns/lxntest').st_ino}]"
        assert seen["ifaces"] == ["lo"] and ",UP" not in seen["links"]["lo"]["flags"]  # untouched: lo still down
        with pytest.raises(PlanError, match="used as it is"):
            plan_of(f"""
version: 1
namespaces: {{net: {{join: /run/netns/lxntest}}}}
process: {{command: [{PY}, {prog}]}}
network: {{loopback: true}}
""")
    finally:
        sh("ip netns del lxntest")


# --- failures half-way: named, rolled back, the child never runs ---------------------------------
def failing(tmp_path, network: str):
    marker = tmp_path / "ran"
    plan = plan_of(f"""
version: 1
process: {{command: [/bin/touch, {marker}]}}
network:
{network}
""")
    return plan, marker


def assert_rolled_back(plan, marker: Path, tmp_path: Path, *fragments: str) -> StepError:
    before = settled_links()  # not a pending delete of an earlier test: the rollback itself is synchronous
    with pytest.raises(StepError) as err:
        run_captured(plan, tmp_path)
    assert err.value.step == "network" and err.value.side == "host"
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert not marker.exists()  # the child never ran
    assert lx_links() == before  # every interface created so far is gone
    return err.value


def test_a_taken_host_name_rolls_back_the_interfaces_before_it(tmp_path, no_leaks):
    plan, marker = failing(tmp_path, """\
  interfaces:
    - {name: eth0, addresses: [10.231.7.2/24], host: {name: lxnfa0, addresses: [10.231.7.1/24]}}
    - {name: eth1, host: {name: lxnfb0}}""")
    veth_pair("lxnfb0", "lxnfb1")  # taken between plan and apply
    try:
        assert_rolled_back(plan, marker, tmp_path, "network (host): create veth lxnfb0 (peer eth1 in the workload)",
                           "EEXIST")
        assert Path("/sys/class/net/lxnfb0").exists()  # not ours: left alone
    finally:
        delete_link("lxnfb0")


def test_a_missing_parent_is_a_plan_error_or_a_named_step_error(tmp_path, no_leaks, parent):
    with pytest.raises(PlanError, match="parent interface `lxnnope` of macvlan `mv0` does not exist"):
        failing(tmp_path, "  interfaces: [{name: mv0, type: macvlan, parent: lxnnope}]")
    plan, marker = failing(tmp_path, """\
  interfaces:
    - {name: eth0, host: {name: lxnfc0}}
    - {name: mv0, type: macvlan, parent: lxnpar0}""")
    delete_link(parent)  # gone between plan and apply
    assert_rolled_back(plan, marker, tmp_path, "find parent interface lxnpar0 of macvlan mv0", "ENODEV")


def test_an_address_the_host_already_uses_is_refused(tmp_path, no_leaks):
    veth_pair("lxnfd0", "lxnfd1")
    try:
        sh("ip addr add 10.231.8.1/24 dev lxnfd1")
        plan, marker = failing(tmp_path, """\
  interfaces:
    - {name: eth0, addresses: [10.231.8.2/24], host: {name: lxnfe0, addresses: [10.231.8.1/24]}}""")
        assert_rolled_back(plan, marker, tmp_path,
                           "add address 10.231.8.1/24 to lxnfe0: the host already has 10.231.8.1 on lxnfd1",
                           "EADDRINUSE")
    finally:
        delete_link("lxnfd0")


def test_a_route_the_kernel_refuses_names_it_and_rolls_back(tmp_path, no_leaks):
    # The prefix route of eth0's own address already exists: the kernel says EEXIST.
    plan, marker = failing(tmp_path, """\
  interfaces:
    - {name: eth0, addresses: [10.231.9.2/24], host: {name: lxnff0}}
  routes:
    - {to: 10.231.9.0/24, dev: eth0}""")
    assert_rolled_back(plan, marker, tmp_path, "add route 10.231.9.0/24 dev eth0 (in the workload)", "EEXIST")


def test_an_unknown_sysctl_names_it_and_rolls_back(tmp_path, no_leaks):
    plan, marker = failing(tmp_path, """\
  interfaces: [{name: eth0, host: {name: lxnfg0}}]
  sysctls: {net.ipv4.no_such_knob: 1}""")
    err = assert_rolled_back(plan, marker, tmp_path, "write sysctl net.ipv4.no_such_knob=1", "ENOENT")
    assert err.obj == "/proc/sys/net/ipv4/no_such_knob"


# --- 20 at once: distinct, working networks ------------------------------------------------------
WORKLOAD_PAR = r"""
import socket, sys
i = sys.argv[1]
for gw in (f"10.232.{i}.1", f"fd00:232:{i}::1"):
    with socket.create_connection((gw, 7000), timeout=30) as c:
        c.sendall(f"w{i}".encode())
        print("reply", gw, c.recv(100).decode(), flush=True)
print("ifaces", sorted(n for _i, n in socket.if_nameindex()), flush=True)
"""


def test_twenty_workloads_in_parallel_get_distinct_working_networks(tmp_path, no_leaks):
    prog = script(tmp_path, "par.py", WORKLOAD_PAR)
    n = 20
    seen: dict[int, list] = {i: [] for i in range(n)}
    threads = []
    for i in range(n):
        threads.append(serve_once(f"10.232.{i}.1", 7000, f"host{i}".encode(), seen[i], socket.AF_INET))
        threads.append(serve_once(f"fd00:232:{i}::1", 7000, f"host{i}".encode(), seen[i], socket.AF_INET6))
    plans = [plan_of(f"""
version: 1
process: {{command: [{PY}, {prog}, "{i}"]}}
network:
  interfaces:
    - name: eth0
      addresses: [10.232.{i}.2/24, "fd00:232:{i}::2/64"]
      host: {{name: lxnp{i}, addresses: [10.232.{i}.1/24, "fd00:232:{i}::1/64"]}}
  routes: [{{to: default, via: 10.232.{i}.1}}, {{to: "::/0", via: "fd00:232:{i}::1"}}]
""") for i in range(n)]

    def one(i: int):
        out = tmp_path / f"out{i}"
        with open(out, "wb") as fo:
            result = run(plans[i], stdout=fo.fileno())
        return result, out.read_text()

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for t in threads:
        t.join(5)
    for i, (result, out) in enumerate(results):
        assert result.exit_code == 0, out
        assert f"reply 10.232.{i}.1 host{i}" in out and f"reply fd00:232:{i}::1 host{i}" in out
        assert "ifaces ['eth0', 'lo']" in out
        assert sorted(seen[i]) == [(f"10.232.{i}.2", f"w{i}"), (str(ipaddress.ip_address(f"fd00:232:{i}::2")), f"w{i}")]
    times = sorted(network_ms(r) for r, _ in results)
    print(f"\nnetwork step, 20 in parallel: median {statistics.median(times):.2f} ms, max {times[-1]:.2f} ms")


