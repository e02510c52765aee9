"""`linx-spec audit` (issue 14, "Also deliver") and the warning for joining the
host's namespaces (issue 14 item 10), through the CLI."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import REPO, cli
from linx_spec import load_text
from linx_spec.audit import EXIT_ABOVE_THRESHOLD, audit

SPECS = sorted((REPO / "specs").glob("*.yaml"))
SCORE_COMMENT = re.compile(r"^# linx-spec audit: (\d+(?:\.\d)?)/10\b", re.M)

BASE = """version: 1
namespaces: [user, pid, net, mount, uts, ipc, cgroup]
process: {command: [/bin/true]}
"""


def score(text: str) -> float:
    return audit(load_text(text)).score


def check(text: str, check_id: str):
    return {c.id: c for c in audit(load_text(text)).checks}[check_id]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_states_its_true_score(path):
    found = SCORE_COMMENT.findall(path.read_text())
    assert len(found) == 1, f"{path.name}: add one comment `# linx-spec audit: N/10`"
    out = cli("audit", "--format", "json", str(path))
    assert out.returncode == 0, out.stderr
    actual = json.loads(out.stdout)[0]["score"]
    assert float(found[0]) == actual, f"{path.name} says {found[0]}/10, audit gives {actual}/10: update the comment"


def test_hardened_example_scores_lowest():
    out = cli("audit", "--format", "json", *map(str, SPECS))
    scores = {r["source"]: r["score"] for r in json.loads(out.stdout)}
    hardened = scores.pop(str(REPO / "specs" / "untrusted-runner.yaml"))
    assert hardened < min(scores.values()), scores


def test_each_weakening_raises_the_score():
    base = score(BASE)
    for extra in ("no_new_privs: false", "capabilities: {keep: [sys_admin]}", "capabilities: {keep: [sys_nice]}",
                  "mounts: [{type: bind, source: /tmp, target: /mnt}]"):
        assert score(BASE + extra + "\n") > base, extra
    # CVE-2022-29162: a non-empty inheritable set is exposure of its own.
    assert (score(BASE + "capabilities: {bounding: [chown], inheritable: [chown]}\n")
            > score(BASE + "capabilities: {bounding: [chown]}\n"))
    # Sharing a namespace with the host.
    assert score(BASE.replace("net, ", "")) > base


def test_host_root_without_user_namespace_is_worst_identity():
    shared = BASE.replace("[user, ", "[")
    assert check(shared, "user-namespace").exposure == 1.0
    other = shared.replace("process: {command: [/bin/true]}", "process: {command: [/bin/true], user: {uid: 1000, gid: 1000}}")
    assert 0 < check(other, "user-namespace").exposure < 1.0
    mapped_root = BASE + "idmap:\n  uid: [{container: 0, host: 0, count: 1}]\n  gid: [{container: 0, host: 0, count: 1}]\n"
    assert check(mapped_root, "user-namespace").exposure == 1.0
    far = mapped_root.replace("host: 0", "host: 200000")
    assert check(far, "user-namespace").exposure == 0.0


def test_io_uring_denied_only_when_the_filter_denies_io_uring_setup():
    allow = BASE + "seccomp: {default: allow, rules: [{syscalls: [mount], action: errno EPERM}]}\n"
    assert check(allow, "io-uring").exposure == 1.0
    assert check(BASE, "io-uring").exposure == 1.0  # no filter at all
    deny = BASE + "seccomp: {default: allow, rules: [{syscalls: [io_uring_setup], action: errno EPERM}]}\n"
    assert check(deny, "io-uring").exposure == 0.0
    allow_list = BASE + "seccomp: {default: errno EPERM, rules: [{syscalls: [read, write, execve, exit_group, prctl, close_range, close, fcntl], action: allow}]}\n"
    c = check(allow_list, "io-uring")
    assert c.exposure == 0.0 and "errno EPERM" in c.text


def test_taking_a_host_interface_in_use_is_scored():
    def net(in_use: str | None) -> str:
        if in_use is None:
            return BASE
        return BASE + ("network:\n  interfaces: [{type: existing, device: lxnic1"
                       + (f", in_use: {in_use}" if in_use != "refuse" else "") + "}]\n")
    none, refuse, take = (check(net(x), "host-interface-taken") for x in (None, "refuse", "take"))
    assert none.exposure == 0.0 and "no host interface" in none.text
    assert 0 < refuse.exposure < take.exposure == 1.0
    assert "lxnic1" in take.text and "in_use: take" in take.text and take.weight == 400
    assert score(net(None)) < score(net("refuse")) < score(net("take"))


def test_threshold_exit_code_and_formats(tmp_path):
    spec = tmp_path / "open.yaml"
    spec.write_text(BASE.replace("[user, pid, net, mount, uts, ipc, cgroup]", "[pid]"))
    above = cli("audit", "--threshold", "1", str(spec))
    assert above.returncode == EXIT_ABOVE_THRESHOLD == 3
    assert "above the threshold 1" in above.stderr and "exposure score:" in above.stdout
    below = cli("audit", "--threshold", "10", str(spec))
    assert below.returncode == 0, below.stderr
    gh = cli("audit", "--format", "github", "--threshold", "1", str(spec))
    assert gh.stdout.startswith(f"::error file={spec}::linx-spec audit: ") and gh.returncode == 3
    data = json.loads(cli("audit", "--format", "json", str(spec)).stdout)
    assert data[0]["score"] > 5 and {c["id"] for c in data[0]["checks"]} >= {"seccomp", "io-uring", "pids-limit"}
    assert cli("audit", "--format", "yaml", str(spec)).returncode == 2


def test_bad_spec_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprocess: {command: []}\n")
    out = cli("audit", str(bad))
    assert out.returncode == 65 and "Traceback" not in out.stderr and "bad.yaml" in out.stderr


# ---- item 10: joining the host's namespaces is never silent -----------------------------------

def joining(path: str) -> str:
    return f"""version: 1
namespaces:
  user: new
  net: {{join: {path}}}
  pid: new
process: {{command: [/bin/true]}}
"""


@pytest.fixture
def foreign_pid():
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.mark.parametrize("path", ["/proc/1/ns/net", "/proc/self/ns/net", "FOREIGN"])
def test_joining_a_host_namespace_warns_in_plan_and_validate(tmp_path, path, foreign_pid):
    path = path.replace("FOREIGN", f"/proc/{foreign_pid}/ns/net")
    spec = tmp_path / "join.yaml"
    spec.write_text(joining(path))
    for args in (("validate", str(spec)), ("plan", str(spec))):
        out = cli(*args)
        assert out.returncode == 0, out.stderr  # a warning, not an error
        assert f"warning: namespaces.net: {path} is " in out.stderr, (args, out.stderr)
    c = check(joining(path), "host-namespace-joined")
    assert c.exposure == 1.0 and path in c.text


def test_a_named_netns_does_not_warn(tmp_path):
    spec = tmp_path / "named.yaml"
    spec.write_text(joining("/run/netns/lx-audit-none"))
    out = cli("validate", str(spec))
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    assert check(joining("/run/netns/lx-audit-none"), "host-namespace-joined").exposure == 0.0
