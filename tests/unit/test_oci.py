"""The OCI bridge without running anything: exports valid against the runtime-spec
schema, import(export(spec)) plans the same as the spec, and every field one side
cannot express is named (an error, or a warning with --lossy)."""

from __future__ import annotations

import json
import re
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


DEVICES_SPEC = """
version: 1
name: dv
process: {command: [/bin/true]}
namespaces: [pid, mount, ipc]
mounts:
  rootfs: root
  entries:
    - {type: dev}
    - {type: tmpfs, target: /cache, source: my-cache}
    - {type: mqueue}
  devices:
    - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: 0o660, uid: 0, gid: 5}
    - {path: /dev/fifo, type: p, mode: 0o600}
"""


def test_devices_and_fs_sources_round_trip(tmp_path, schema):
    (tmp_path / "root").mkdir()
    path = tmp_path / "dv.yaml"
    path.write_text(DEVICES_SPEC)
    c = export(path).config
    assert not [e.message for e in schema.iter_errors(c)]
    assert c["linux"]["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o660, "uid": 0, "gid": 5},
        {"path": "/dev/fifo", "type": "p", "fileMode": 0o600, "uid": 0, "gid": 0}]
    assert [(m["destination"], m["source"]) for m in c["mounts"]] == [
        ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "shm"), ("/cache", "my-cache"),
        ("/dev/mqueue", "mqueue")]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(c))
    res = cli("import", "oci", str(tmp_path / "b"), "-o", str(tmp_path / "back.yaml"))
    assert res.exit_code == 0, res.output
    a, b = plan_json(path), plan_json(tmp_path / "back.yaml")
    ma = next(s for s in a["steps"] if s["step"] == "mounts")["args"]["mounts"]
    mb = next(s for s in b["steps"] if s["step"] == "mounts")["args"]["mounts"]
    assert ma == mb and "node /dev/fuse (c 10:229, mode 0660, owner 0:5,create)" in ma


def test_import_takes_runtime_tools_devices():
    """validation/linux_devices: a FIFO with numbers (ignored) and Go's file mode."""
    imported = import_config(config(linux__devices=[
        {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 432, "uid": 0, "gid": 0},
        {"path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432}]), "config.json", "/")
    assert imported.spec["mounts"]["devices"] == [
        {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "mode": 0o660, "uid": 0, "gid": 0},
        {"path": "/dev/test3", "type": "p", "mode": 0o660}]
    assert not imported.losses


PROC = {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}
DEV = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
       "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
PTS = {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
       "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}
SHM = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
       "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
MQUEUE = {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}
SYSFS = {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
CGROUP = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]}
DEV_ENTRY = {"type": "dev", "target": "/dev", "flags": ["nosuid"], "shm_size": 65536 * 1024}
FRESH = [{"type": "mqueue", "target": "/dev/mqueue", "readonly": False, "flags": ["nosuid", "nodev", "noexec"]},
         {"type": "sysfs", "target": "/sys", "readonly": True, "flags": ["nosuid", "nodev", "noexec"]}]


@pytest.mark.parametrize("engine, mounts", [
    ("runtime-tools", [PROC, DEV, PTS, SHM, MQUEUE, SYSFS]),
    ("containerd", [PROC, DEV, PTS, SHM, MQUEUE, SYSFS,
                    {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}]),
    ("podman", [PROC, DEV, SYSFS, PTS, MQUEUE, CGROUP,
                {"destination": "/dev/shm", "type": "bind", "source": "/var/lib/containers/x/shm",
                 "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"]}]),
])
def test_engines_standard_mount_sets_import(engine, mounts):
    """The standard set of each engine: /dev becomes `dev` with its devpts (and shm tmpfs) folded in,
    wherever they come; what has no counterpart is named, with the option or type."""
    imported = import_config(config(mounts=mounts), "config.json", "/")
    entries = imported.spec["mounts"]["entries"]
    losses = sorted(str(x) for x in imported.losses)
    proc = {"type": "proc", "target": "/proc", "readonly": False, "flags": ["nosuid", "nodev", "noexec"]}
    if engine == "runtime-tools":
        assert entries == [proc, DEV_ENTRY, *FRESH] and losses == []
    elif engine == "containerd":
        assert entries == [proc, DEV_ENTRY, *FRESH, {"target": "/run", "size": 65536 * 1024, "mode": 0o755,
                                                      "type": "tmpfs", "readonly": False, "flags": ["nosuid"]}]
        assert losses == ["mounts[6].options: strictatime at /run: linx-spec sets only ro, nosuid, nodev, noexec "
                          "(and the type's own options)"]
    else:
        dev = {k: v for k, v in DEV_ENTRY.items() if k != "shm_size"}
        assert entries == [proc, dev, FRESH[1], FRESH[0],
                           {"target": "/dev/shm", "type": "bind", "source": "/var/lib/containers/x/shm",
                            "recursive": False, "readonly": False, "flags": ["nosuid", "nodev", "noexec"]}]
        assert [x.split(":")[0] for x in losses] == ["mounts[5]"] and "`cgroup` mount" in losses[0]
    spec = Spec.model_validate(imported.spec)  # and the spec model takes it
    assert spec.mounts.entries[1].type == "dev"


def test_a_cgroup_mount_with_a_cgroup_namespace_imports_and_exports(tmp_path):
    c = config(mounts=[CGROUP])
    c["linux"]["namespaces"].append({"type": "cgroup"})
    imported = import_config(c, "config.json", "/")
    assert imported.spec["mounts"]["entries"] == [{"target": "/sys/fs/cgroup", "type": "cgroup", "readonly": True,
                                                   "flags": ["nosuid", "nodev", "noexec"]}]
    assert not imported.losses  # rprivate and relatime: what linx-spec's mounts are anyway
    (tmp_path / "root").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: p\nprocess: {command: [/bin/true]}\nnamespaces: [mount, cgroup]\n"
                    "mounts: {rootfs: root, entries: [{type: cgroup}]}\n")
    assert export(path).config["mounts"] == [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                                              "options": ["ro", "nosuid", "nodev", "noexec"]}]


def test_a_devpts_of_its_own_imports_and_exports(tmp_path):
    """A rootfs with its own /dev (no /dev tmpfs): the devpts alone, with its options."""
    imported = import_config(config(mounts=[{"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                                             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0600",
                                                         "mode=0620", "gid=5"]}]), "config.json", "/")
    assert imported.spec["mounts"]["entries"] == [{"target": "/dev/pts", "type": "devpts", "ptmxmode": 0o600,
                                                   "mode": 0o620, "gid": 5, "readonly": False,
                                                   "flags": ["nosuid", "noexec"]}]
    assert not imported.losses
    (tmp_path / "root").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: p\nprocess: {command: [/bin/true]}\nnamespaces: [mount]\n"
                    "mounts: {rootfs: root, entries: [{type: devpts, ptmxmode: 0o600, gid: 5}]}\n")
    assert export(path).config["mounts"] == [{"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                                              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0600",
                                                          "mode=0620", "gid=5"]}]


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
    "linux.resources.devices[0]": config(linux__resources={"devices": [{"allow": False, "type": "c",
                                                                      "major": 1, "minor": 3}]}),
    "process.apparmorProfile": config(process__apparmorProfile="docker-default"),
    "process.selinuxLabel": config(process__selinuxLabel="system_u:system_r:container_t:s0"),
    "linux.mountLabel": config(linux__mountLabel="system_u:object_r:container_file_t:s0"),
    "linux.devices[0].bogus": config(linux__devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                                      "bogus": 1}]),
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
    assert sorted(str(x).split(":")[0] for x in imported.losses) == ["mounts[4]"]
    assert imported.spec["cgroup"]["devices"] == []  # deny all, allow none: runc's own additions are the runtime's
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


# containerd's default (oci/spec.go: deny all, then WithDefaultUnixDevices' nodes); podman's is alike.
CONTAINERD_DEVICES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
    for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))] + [
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"}]


def test_import_device_rules_become_the_allow_list(tmp_path):
    imported = import_config(config(linux__resources={"devices": CONTAINERD_DEVICES}), "c.json", str(tmp_path))
    assert imported.losses == []
    rules = imported.spec["cgroup"]["devices"]
    assert rules[0] == {"type": "c", "major": 1, "minor": 3, "access": "rwm"}
    assert rules[-1] == {"type": "c", "major": 136, "access": "rwm"}  # -1: any minor
    assert len(rules) == 10
    spec = load_text(f"version: 1\nprocess: {{command: [/bin/true]}}\ncgroup: {json.dumps(imported.spec['cgroup'])}\n",
                     "t.yaml")
    assert len(spec.cgroup.devices) == 10
    # In order, as the kernel applies them: an allow-all ends the restriction, a later deny-all starts again,
    # a deny taking an allow back is exact, one narrowing it is a loss.
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3},
             {"allow": True, "type": "b", "major": 8, "access": "r"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": False, "type": "b", "major": 8, "minor": 1, "access": "r"},
             {"allow": False, "type": "c", "major": 4, "minor": 1}]
    imported = import_config(config(linux__resources={"devices": rules}), "c.json", str(tmp_path))
    assert imported.spec["cgroup"]["devices"] == [{"type": "b", "major": 8, "access": "r"}]
    assert [x.field for x in imported.losses] == ["linux.resources.devices[4]"]
    imported = import_config(config(linux__resources={"devices": rules + [{"allow": True, "access": "rwm"}]}),
                             "c.json", str(tmp_path))
    assert "devices" not in imported.spec.get("cgroup", {})


@pytest.mark.parametrize("rule, where", [
    ({"allow": "yes"}, "linux.resources.devices[0].allow"),
    ({"allow": True, "type": "x"}, "linux.resources.devices[0].type"),
    ({"allow": True, "type": "c", "access": "rwx"}, "linux.resources.devices[0].access"),
    ({"allow": True, "type": "c", "major": "1"}, "linux.resources.devices[0].major"),
])
def test_import_bad_device_rules_name_the_field(rule, where, tmp_path):
    from linx_spec.errors import SpecError

    with pytest.raises(SpecError, match=rf"{where.replace('[', '.').replace(']', '.')}"):
        import_config(config(linux__resources={"devices": [rule]}), "c.json", str(tmp_path))
