"""The OCI bridge without running anything: exports valid against the runtime-spec
schema, import(export(spec)) plans the same as the spec, and every field one side
cannot express is named (an error, or a warning with --lossy)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import referencing
import referencing.jsonschema
from typer.testing import CliRunner

from linx_spec import build_plan, load_file, load_text
from linx_spec.commands import app
from linx_spec.oci.export import HANDLED, blkio_weight, cpu_shares, export_config
from linx_spec.oci.import_ import _inverse, import_config
from linx_spec.spec import Spec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "tests" / "data" / "oci-runtime-spec"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# Plan differences a round trip may show, each tied to the loss that causes it:
# loss field -> [(step, argument or None for the whole step)].  Everything else must be equal.
EXCEPTIONS = {
    "idmap.setgroups": [("idmap", "setgroups")],  # runc as root allows setgroups(2): the import says so
    # no interfaces in a bundle: the import brings up lo alone (the child's loopback step)
    "network.interfaces": [("network", None), ("loopback", None)],
    "network.routes": [("network", None), ("loopback", None)],
}
# spec_hash hashes what the spec says, not what it does: an imported spec spells things out.
NOT_COMPARED = ("spec_hash",)


def validator() -> jsonschema.Draft4Validator:
    resources = [(p.name, referencing.Resource.from_contents(json.loads(p.read_text()),
                                                             default_specification=referencing.jsonschema.DRAFT4))
                 for p in SCHEMA_DIR.glob("*.json")]
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=referencing.Registry().with_resources(resources))


@pytest.fixture(scope="module")
def schema():
    return validator()


@pytest.fixture
def env_dirs(tmp_path, monkeypatch):
    # specs/build-sandbox.yaml binds ${BUILD_SRC}/${BUILD_OUT}: give it real directories.
    for var in ("BUILD_SRC", "BUILD_OUT"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def plan_json(path: Path) -> dict:
    res = cli("plan", str(path), "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def export(path: Path, *extra: str):
    spec = load_file(path)
    plan = build_plan(spec, source=str(path), base_dir=str(path.parent))
    return export_config(spec, plan, str(path.parent))


def test_every_spec_field_is_handled():
    assert set(HANDLED) == set(Spec.model_fields)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_export_is_valid_against_the_runtime_spec_schema(path, schema, env_dirs):
    exported = export(path)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in schema.iter_errors(exported.config)]
    assert not errors
    assert exported.config["ociVersion"] == "1.0.2-dev"


def _comparable(plan: dict, losses: set[str]) -> dict:
    out = {k: v for k, v in plan.items() if k not in NOT_COMPARED}
    steps = []
    for s in plan["steps"]:
        s = dict(s, args=dict(s["args"]))
        for loss, where in EXCEPTIONS.items():
            for step, arg in where:
                if s is not None and loss in losses and s["step"] == step:
                    if arg is None:
                        s = None
                    else:
                        s["args"].pop(arg, None)
        if s is not None:
            steps.append(s)
    out["steps"] = steps
    return out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_round_trip_plans_the_same(path, tmp_path, env_dirs):
    bundle = tmp_path / "bundle"
    res = cli("export", "oci", str(path), "-o", str(bundle), "--lossy")
    assert res.exit_code == 0, res.output
    assert (bundle / "config.json").is_file()
    losses = {line.split("left out ", 1)[1].split(":")[0] for line in res.stderr.splitlines() if "left out" in line}
    back = tmp_path / "back.yaml"
    res = cli("import", "oci", str(bundle / "config.json"), "-o", str(back))
    assert res.exit_code == 0, res.output  # what export wrote, import reads without loss
    assert _comparable(plan_json(back), losses) == _comparable(plan_json(path), losses)


SECCOMP_SPEC = """
version: 1
name: sc
process: {command: [/bin/true]}
seccomp:
  profile: default
  rules:
    - {syscalls: ["@swap", reboot], action: errno EPERM}
    - syscalls: [socket]
      action: errno EAFNOSUPPORT
      args: [{index: 0, op: eq, value: AF_INET6}]
    - syscalls: [personality]
      action: errno 4000
      args: [{index: 0, op: masked_eq, value: 8, mask: 0xff}]
    - {syscalls: [acct], action: kill}
    - {syscalls: [mincore], action: trap}
    - {syscalls: [uselib], action: kill_thread}
    - {syscalls: [sync], action: log}
"""


def test_seccomp_round_trip_with_a_profile(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(SECCOMP_SPEC)
    exported = export(path)
    sc = exported.config["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    # first match wins in OCI: the spec's last rule comes first
    assert sc["syscalls"][0] == {"names": ["sync"], "action": "SCMP_ACT_LOG"}
    assert {"names": ["acct"], "action": "SCMP_ACT_KILL_PROCESS"} in sc["syscalls"]
    assert {"names": ["uselib"], "action": "SCMP_ACT_KILL_THREAD"} in sc["syscalls"]
    masked = next(s for s in sc["syscalls"] if s["names"] == ["personality"])
    assert masked == {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4000,
                      "args": [{"index": 0, "value": 0xff, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
    assert "swapon" in next(s for s in sc["syscalls"] if "reboot" in s["names"])["names"]  # groups expanded
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(exported.config))
    assert cli("import", "oci", str(tmp_path / "b"), "-o", str(tmp_path / "back.yaml")).exit_code == 0
    a, b = plan_json(path), plan_json(tmp_path / "back.yaml")
    sa = next(s for s in a["steps"] if s["step"] == "seccomp")["args"]
    sb = next(s for s in b["steps"] if s["step"] == "seccomp")["args"]
    # Named exception: the profile's path is not kept, its entries are inline rules now.
    assert sa.pop("profile").endswith("default.json") and "profile" not in sb
    assert sa == sb


# -- what export cannot say -----------------------------------------------------

BASE = "version: 1\nname: x\nprocess: {command: [/bin/true]}\n"
EXPORT_LOSSES = {
    "lifecycle.timeout": "lifecycle: {timeout: 10s}",
    "lifecycle.restart": "lifecycle: {restart: {policy: always}}",
    "lifecycle.stop_grace": "lifecycle: {stop_grace: 1s}",
    "lifecycle.orphan": "lifecycle: {orphan: linger}",
    "stdio": "stdio: null",
    "network.interfaces": "network: {interfaces: [{name: eth0, type: veth, addresses: [10.9.0.2/24]}]}",
    "network.routes": "network:\n  interfaces: [{name: eth0, type: veth, addresses: [10.9.0.2/24]}]\n"
                      "  routes: [{to: default, via: 10.9.0.1}]",
    "network.loopback": "network: {loopback: false}",
    "cgroup.memory.high": "cgroup: {memory: {high: 64Mi}}",
    "mounts.entries[0].optional": "mounts: [{type: bind, source: /nonexistent-oci, target: /x, optional: true}]",
    "mounts.etc.hosts": "mounts: {etc: {hosts: generate}}",
    "mounts.rootfs_readonly": "mounts: {rootfs_readonly: true}",
    "namespaces.mount": "namespaces: [pid]",
}


@pytest.mark.parametrize("field", sorted(EXPORT_LOSSES))
def test_export_names_what_oci_cannot_express(field, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(BASE + EXPORT_LOSSES[field] + "\n")
    res = cli("export", "oci", str(path), "-o", str(tmp_path / "b"))
    assert res.exit_code == 66, res.output
    assert field in res.stderr and "--lossy" in res.stderr
    assert not (tmp_path / "b").exists()
    res = cli("export", "oci", str(path), "-o", str(tmp_path / "b"), "--lossy")
    assert res.exit_code == 0, res.output
    assert f"warning: left out {field}:" in res.stderr
    assert (tmp_path / "b" / "config.json").is_file()


def test_export_names_memory_protection_as_lost():
    # Through _cgroup directly: a whole export plans the spec, and planning memory.low on this
    # host's v1 memory controller is already a plan error.
    from linx_spec import load_text
    from linx_spec.oci import export as E

    s = load_text(BASE + "cgroup: {memory: {max: 64Mi, low: 16Mi, min: 8Mi}}\n")
    linux: dict = {}
    losses: list = []
    E._cgroup(s, "x", linux, losses)
    assert [loss.field for loss in losses] == ["cgroup.memory.low", "cgroup.memory.min"]
    assert linux["resources"]["memory"] == {"limit": 64 * 2**20}


def test_export_without_rootfs_binds_the_hosts_directories(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(BASE + "mounts: [{type: proc}]\n")
    c = export(path).config
    assert c["root"] == {"path": "rootfs", "readonly": False}
    n = int(c["annotations"]["org.linx-spec.host-root-mounts"])
    binds = c["mounts"][:n]
    assert {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind"]} in binds
    assert all(m["destination"] != "/proc" for m in binds)
    assert c["mounts"][n] == {"destination": "/proc", "type": "proc", "source": "proc",
                              "options": ["nosuid", "nodev", "noexec"]}
    res = cli("export", "oci", str(path), "-o", str(tmp_path / "b"))
    assert res.exit_code == 0 and (tmp_path / "b" / "rootfs").is_dir()


# -- what import cannot say -------------------------------------------------------

def config(**extra) -> dict:
    c = {"ociVersion": "1.0.2", "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
         "root": {"path": "/"}, "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
    for path, value in extra.items():
        node = c
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return c


IMPORT_LOSSES = {
    "hooks.prestart": config(hooks={"prestart": [{"path": "/bin/true"}]}),
    "linux.resources.devices": config(linux__resources={"devices": [{"allow": False, "access": "rwm"}]}),
    "process.apparmorProfile": config(process__apparmorProfile="docker-default"),
    "process.selinuxLabel": config(process__selinuxLabel="system_u:system_r:container_t:s0"),
    "linux.mountLabel": config(linux__mountLabel="system_u:object_r:container_file_t:s0"),
    "linux.devices": config(linux__devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
    "linux.sysctl.kernel.msgmax": config(linux__sysctl={"kernel.msgmax": "8192"}),
    "linux.seccomp.flags": config(linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                                                  "flags": ["SECCOMP_FILTER_FLAG_LOG"]}),
    "mounts[0]": config(mounts=[{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}]),
    "mounts[0].options": config(mounts=[{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                         "options": ["nosuid", "strictatime"]}]),
    "linux.rootfsPropagation": config(linux__rootfsPropagation="shared"),
    "process.user.username": config(process__user={"uid": 0, "gid": 0, "username": "root"}),
    "annotations.io.example": config(annotations={"io.example": "1"}),
    "linux.resources.memory.kernel": config(linux__resources={"memory": {"kernel": 1048576}}),
}


@pytest.mark.parametrize("field", sorted(IMPORT_LOSSES))
def test_import_names_what_linx_spec_cannot_express(field, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(IMPORT_LOSSES[field]))
    res = cli("import", "oci", str(tmp_path / "config.json"), "-o", str(tmp_path / "s.yaml"))
    assert res.exit_code == 65, res.output
    assert f"config.json: {field}:" in res.stderr
    assert not (tmp_path / "s.yaml").exists()
    res = cli("import", "oci", str(tmp_path / "config.json"), "-o", str(tmp_path / "s.yaml"), "--lossy")
    assert res.exit_code == 0, res.output
    assert f"warning: left out {field}:" in res.stderr
    load_file(tmp_path / "s.yaml")


@pytest.mark.parametrize("bad, where", [
    ({"ociVersion": "1.0.2", "process": {"args": "sh"}}, "process.args"),
    ({"ociVersion": "1.0.2", "process": {"args": ["sh"], "env": ["NOEQUALS"]}}, "process.env[0]"),
    ({"ociVersion": "2.0", "process": {"args": ["sh"]}}, "ociVersion"),
    ({"ociVersion": "1.0.2"}, "process.args"),
    ({"ociVersion": "1.0.2", "process": {"args": ["sh"], "user": {"uid": True}}}, "process.user.uid"),
    ({"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "linux": {"namespaces": [{"type": "bogus"}]}},
     "linux.namespaces[0].type"),
    ({"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}},
     "linux.seccomp.defaultAction"),
    ({"ociVersion": "1.0.2", "process": {"args": ["sh"], "user": {"uid": 2**40}}}, "process.user.uid"),
])
def test_import_rejects_a_malformed_config_naming_the_field(bad, where, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(bad))
    res = cli("import", "oci", str(tmp_path / "config.json"), "-o", "-")
    assert res.exit_code == 65, res.output
    assert where in res.stderr
    assert "Traceback" not in res.output


def test_import_refuses_huge_and_non_json_files(tmp_path):
    (tmp_path / "config.json").write_text("{" * 10)
    assert cli("import", "oci", str(tmp_path), "-o", "-").exit_code == 65
    (tmp_path / "config.json").write_text(" " * (5 * 2**20))
    res = cli("import", "oci", str(tmp_path), "-o", "-")
    assert res.exit_code == 65 and "larger than" in res.stderr


def test_import_keeps_dollar_text_literal(tmp_path):
    c = config(process__env=["A=${HOME}x"])
    imported = import_config(c, "config.json", str(tmp_path))
    from linx_spec.oci.cli import spec_yaml

    spec = load_text(spec_yaml(imported.spec, "config.json"), "s.yaml", env={"HOME": "/root"})
    assert spec.process.env == {"A": "${HOME}x"}


def test_runc_default_config_imports_with_named_losses(tmp_path):
    # What `runc spec` writes: the dev mounts become one `dev` entry, the cgroup mount and the
    # device rule are losses.
    c = {"ociVersion": "1.0.2-dev", "process": {"terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
         "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], "cwd": "/",
         "capabilities": {s: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                          for s in ("bounding", "effective", "permitted", "ambient")},
         "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": True},
         "root": {"path": "rootfs", "readonly": True}, "hostname": "runc",
         "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}],
         "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
                   "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                   "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
    imported = import_config(c, "config.json", str(tmp_path))
    assert sorted(str(x).split(":")[0] for x in imported.losses) == ["linux.resources.devices", "mounts[4]"]
    m = imported.spec["mounts"]
    assert m["rootfs"] == str(tmp_path / "rootfs") and m["rootfs_readonly"] is True
    assert {"type": "dev", "target": "/dev", "flags": ["nosuid"], "shm_size": 65536 * 1024} in m["entries"]
    assert imported.spec["capabilities"] == {"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                             "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]}
    assert imported.spec["stdio"] == "pty" and imported.spec["process"]["env"] == {"TERM": "xterm"}


@pytest.mark.parametrize("forward", [cpu_shares, blkio_weight])
def test_weight_conversions_invert(forward):
    for w in range(1, 10001):
        assert forward(_inverse(forward, forward(w))) == forward(w)
    assert _inverse(cpu_shares, cpu_shares(100)) == 100
