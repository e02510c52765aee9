"""Privileges on the real kernel (issue 6), checked from inside the workload: the
capability sets it reads from its own /proc/self/status, a low port it can or
cannot bind, a setuid-root binary that does or does not make it root, limits it
hits, the identity and umask it has."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


pytestmark = pytest.mark.root

# Bit numbers written out from capabilities(7), not taken from linx-spec's table.
CHOWN, KILL, NET_BIND_SERVICE, NET_RAW, SYS_ADMIN = 0, 5, 10, 13, 21
DOCKER = (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31)  # moby's default set

# The workload's shell reads its own status with a builtin: no execve in between.
SELF_STATUS = ('while IFS= read -r l; do case $l in Cap*|Uid*|Gid*|Groups*|NoNewPrivs*) echo "$l";; esac; '
               'done < /proc/self/status')
USERNS = """namespaces: [user, pid, net, mount]
idmap:
  uid: [{container: 0, host: 100000, count: 65536}]
  gid: [{container: 0, host: 100000, count: 65536}]"""
HOSTNS = "namespaces: [pid, net, mount]"
NOBODY = 4242  # a uid with no processes on this host


def hexmask(*bits: int) -> str:
    mask = 0
    for b in bits:
        mask |= 1 << b
    return f"{mask:016x}"


def status_of(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key] = " ".join(value.split())
    return fields


def spec(ns: str, uid: int, body: str, command: str) -> str:
    return f"""version: 1
{ns}
process:
  command: [/bin/sh, -c, '{command}']
  user: {{uid: {uid}, gid: {uid}}}
{body}
"""


def caps_line(st: dict[str, str]) -> tuple[str, ...]:
    return st["CapBnd"], st["CapPrm"], st["CapEff"], st["CapInh"], st["CapAmb"]


@pytest.mark.parametrize("ns,uid,caps,expected", [
    pytest.param(HOSTNS, 0, "capabilities: {keep: [chown, CAP_NET_BIND_SERVICE]}",
                 (hexmask(CHOWN, NET_BIND_SERVICE),) * 3 + (hexmask(),) * 2, id="root-keep"),
    pytest.param(HOSTNS, 0, "capabilities:\n  bounding: [chown, kill, net_bind_service]\n  inheritable: [kill]\n"
                            "  ambient: [kill]",
                 (hexmask(CHOWN, KILL, NET_BIND_SERVICE),) * 3 + (hexmask(KILL),) * 2, id="root-full-ambient"),
    pytest.param(HOSTNS, 0, "", (hexmask(*DOCKER),) * 3 + (hexmask(),) * 2, id="root-default-docker-set"),
    pytest.param(HOSTNS, 0, "capabilities: {keep: []}", (hexmask(),) * 5, id="root-keep-nothing"),
    pytest.param(USERNS, 0, "capabilities: {keep: [sys_admin, kill]}",
                 (hexmask(KILL, SYS_ADMIN),) * 3 + (hexmask(),) * 2, id="userns-root-keep"),
    pytest.param(USERNS, 1000, "capabilities: {keep: [net_bind_service]}", (hexmask(NET_BIND_SERVICE),) * 5,
                 id="userns-uid1000-keep"),
    pytest.param(HOSTNS, NOBODY, "capabilities:\n  bounding: [chown, net_raw]\n  inheritable: [net_raw]\n"
                                 "  ambient: [net_raw]",
                 (hexmask(CHOWN, NET_RAW),) + (hexmask(NET_RAW),) * 4, id="host-uid4242-full"),
    pytest.param(HOSTNS, NOBODY, "", (hexmask(*DOCKER),) + (hexmask(),) * 4, id="host-uid4242-default"),
    pytest.param(USERNS, 1000, "", (hexmask(*DOCKER),) + (hexmask(),) * 4, id="userns-uid1000-default"),
])
def test_capability_sets_inside_are_exactly_the_declared_ones(run_spec, ns, uid, caps, expected):
    result, out, err = run_spec(spec(ns, uid, caps, SELF_STATUS))
    assert result.exit_code == 0, err
    st = status_of(out)
    assert st["Uid"] == f"{uid} {uid} {uid} {uid}"
    assert caps_line(st) == expected


BIND_80 = """import errno, socket
s = socket.socket()
try:
    s.bind(("0.0.0.0", 80))
    print("bound")
except OSError as e:
    print(errno.errorcode[e.errno])"""


@pytest.mark.parametrize("ns,uid", [(HOSTNS, NOBODY), (USERNS, 1000)], ids=["host-uid", "userns-uid"])
@pytest.mark.parametrize("caps,expected", [
    ("capabilities: {keep: [net_bind_service]}", "bound"),
    ("capabilities: {keep: [chown, kill]}", "EACCES"),
    ("", "EACCES"),  # the default gives a non-root uid nothing
])
def test_port_80_binds_only_with_net_bind_service(run_spec, shared_dir, ns, uid, caps, expected):
    # A new net namespace: only its own (down) loopback, nothing of the host's;
    # its ip_unprivileged_port_start is the default 1024.
    script = script_in(shared_dir, "bind80.py", BIND_80)
    result, out, err = run_spec(f"""version: 1
{ns}
process:
  command: [python3, -I, -S, {script}]
  user: {{uid: {uid}, gid: {uid}}}
{caps}
""")
    assert result.exit_code == 0, err
    assert out.strip() == expected


@pytest.fixture
def shared_dir():
    """A directory every uid can reach (pytest's own tmp dirs are root-only), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="linx-priv-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def script_in(d: Path, name: str, text: str) -> Path:
    path = d / name
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


SETUID_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
"""


@pytest.fixture
def setuid_root_binary(shared_dir):
    """A small program printing its euid, owned by root with the setuid bit."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the setuid test program")
    src, exe = script_in(shared_dir, "euid.c", SETUID_C), shared_dir / "euid"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    return exe


@pytest.mark.parametrize("nnp,expected_euid,expected_flag", [("true", NOBODY, "1"), ("false", 0, "0")])
def test_setuid_root_binary_gains_nothing_with_no_new_privs(run_spec, setuid_root_binary, nnp, expected_euid,
                                                            expected_flag):
    result, out, err = run_spec(f"""version: 1
namespaces: [pid, mount]
no_new_privs: {nnp}
process:
  command: [/bin/sh, -c, 'grep NoNewPrivs /proc/self/status; id -u; {setuid_root_binary}']
  user: {{uid: {NOBODY}, gid: {NOBODY}}}
""")
    assert result.exit_code == 0, err
    flag, uid, euid = out.strip().splitlines()
    assert flag.split() == ["NoNewPrivs:", expected_flag]
    assert uid == str(NOBODY)
    assert euid == f"euid={expected_euid}"


OPEN_UNTIL_FULL = """import errno, re, resource
print(re.search(r"Max open files.*", open("/proc/self/limits").read()).group(0).split()[3:5])
fds = []
try:
    while True:
        fds.append(open("/dev/null"))
except OSError as e:
    print(len(fds), errno.errorcode[e.errno])
for f in fds:
    f.close()
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 100000))
    print("raised")
except (ValueError, OSError) as e:
    print("raise refused")"""


@pytest.mark.parametrize("ns,uid", [(HOSTNS, NOBODY), (USERNS, 0)], ids=["host-uid", "userns-root"])
@pytest.mark.parametrize("soft,hard", [(32, 64), (16, 40)])
def test_nofile_is_visible_and_enforced_and_the_hard_limit_cannot_be_raised_inside(run_spec, shared_dir, ns,
                                                                                    uid, soft, hard):
    script = script_in(shared_dir, "open_until_full.py", OPEN_UNTIL_FULL)
    result, out, err = run_spec(f"""version: 1
{ns}
process:
  command: [python3, -I, -S, {script}]
  user: {{uid: {uid}, gid: {uid}}}
rlimits:
  nofile: {{soft: {soft}, hard: {hard}}}
""")
    assert result.exit_code == 0, err
    limits, opened, refused = out.strip().splitlines()
    assert limits == str([str(soft), str(hard)])
    assert opened == f"{soft - 3} EMFILE"  # 0, 1 and 2 are open
    assert refused == "raise refused"  # no CAP_SYS_RESOURCE inside (a user namespace never has it)


FORK_UNTIL_REFUSED = """import errno, os, time
children = []
for i in range(50):
    try:
        pid = os.fork()
    except OSError as e:
        print(len(children), errno.errorcode[e.errno])
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
else:
    print(len(children), "no limit")
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)"""


@pytest.mark.parametrize("nproc,expected", [(4, "3 EAGAIN"), (8, "7 EAGAIN"), (None, "50 no limit")])
def test_nproc_is_enforced_for_a_non_root_uid(run_spec, shared_dir, nproc, expected):
    # uid 1000 of a user namespace mapped to host 101000: no other process
    # counts against it, and RLIMIT_NPROC spares only the host's root.
    script = script_in(shared_dir, "fork_until_refused.py", FORK_UNTIL_REFUSED)
    limit = f"rlimits: {{nproc: {nproc}}}" if nproc else ""
    result, out, err = run_spec(f"""version: 1
{USERNS}
process:
  command: [python3, -I, -S, {script}]
  user: {{uid: 1000, gid: 1000}}
{limit}
""")
    assert result.exit_code == 0, err
    assert out.strip() == expected


@pytest.mark.parametrize("ns,uid,groups", [
    (USERNS, 1000, [10, 20]),
    (HOSTNS, NOBODY, [5, 4243]),
    (HOSTNS, 0, []),
], ids=["userns", "host-uid", "host-root"])
def test_identity_switch_is_visible(run_spec, ns, uid, groups):
    result, out, err = run_spec(f"""version: 1
{ns}
process:
  command: [/bin/sh, -c, '{SELF_STATUS}']
  user: {{uid: {uid}, gid: {uid + 1}, groups: {groups}}}
""")
    assert result.exit_code == 0, err
    st = status_of(out)
    assert st["Uid"] == " ".join([str(uid)] * 4)
    assert st["Gid"] == " ".join([str(uid + 1)] * 4)
    assert st["Groups"] == " ".join(map(str, groups))  # the host's groups are gone


def test_umask_and_oom_score_adj_inside(run_spec, shared_dir):
    os.chmod(shared_dir, 0o777)
    result, out, err = run_spec(f"""version: 1
{USERNS}
process:
  command: [/bin/sh, -c, 'umask; touch f; stat -c %a f; cat /proc/self/oom_score_adj']
  user: {{uid: 1000, gid: 1000}}
  cwd: {shared_dir}
  umask: 0o027
rlimits:
  oom_score_adj: 733
""")
    assert result.exit_code == 0, err
    assert out.split() == ["0027", "640", "733"]


def test_rlimits_and_oom_score_adj_are_applied_while_parked(tmp_path):
    """Seen from the host too, before the workload runs: the child is parked."""
    from linx_spec import Workload, build_plan, load_text

    plan = build_plan(load_text("""version: 1
namespaces: [pid]
process: {command: [/bin/true]}
rlimits: {nofile: {soft: 77, hard: 99}, core: 0, oom_score_adj: 321}
""", "t.yaml"))
    with Workload(plan) as w:
        pid = w.spawn()
        w.setup()
        limits = Path(f"/proc/{pid}/limits").read_text()
        oom = Path(f"/proc/{pid}/oom_score_adj").read_text().strip()
        w.abort()
    assert "Max open files            77                   99" in limits
    assert "Max core file size        0                    0" in limits
    assert oom == "321"


@pytest.mark.parametrize("body,field", [
    ("capabilities: {bounding: [chown, kill], permitted: [chown]}", "capabilities.permitted"),
    ("capabilities: {keep: [chown, net_bind_servce]}", "capabilities.keep[1]"),
    ("capabilities: {permitted: [kill], ambient: [kill]}", "capabilities.ambient"),
    ("rlimits: {nofile: {soft: 10, hard: 5}}", "rlimits.nofile"),
    ("rlimits: {nofile: 5000000}", "rlimits.nofile"),
])
def test_invalid_combinations_fail_before_anything_is_created(write_spec, monkeypatch, body, field):
    from typer.testing import CliRunner

    import linx_spec.agent
    from linx_spec.cli import app

    started = []
    monkeypatch.setattr(linx_spec.agent.Agent, "__init__", lambda self, *a, **kw: started.append(a))
    path = write_spec(f"version: 1\nprocess: {{command: [/bin/true]}}\n{body}\n")
    r = CliRunner().invoke(app, ["apply", str(path)])
    assert r.exit_code in (65, 66), r.output
    assert field in r.output
    assert "Traceback" not in r.output
    assert started == []  # no agent, so no child, no kernel object
