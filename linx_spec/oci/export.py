"""Spec -> OCI config.json (a dict), and the list of what it cannot say.

    exported = export_config(spec, plan, base_dir)
    exported.config   # JSON-ready dict, valid against the runtime-spec schema
    exported.losses   # [Loss]: fields of the spec a bundle cannot express

`plan` is `build_plan(spec, ...)` of the same spec: the export must describe
what `apply` would do on this host, so resolved values come from it (see
resolved.py); everything else is read from the Spec.  Part 2 of issue 17 (an
OCI runtime) reuses this function as its `spec -> config` step.

The mapping, section by section (docs in README "Exporting to OCI"):
- namespaces: new -> {type}, joined -> {type, path}; net is `network`.
- idmap -> linux.uidMappings/gidMappings (the default map resolved to the caller).
- process: args, env (with PATH and HOME), cwd, user (uid, gid,
  additionalGids, umask), rlimits (both sides resolved), oomScoreAdj,
  capabilities (the five resolved sets), noNewPrivileges, terminal (stdio pty).
- hostname, domainname.
- mounts.rootfs -> root.path (absolute), rootfs_readonly -> root.readonly;
  without rootfs the host's / is what the workload sees: the bundle gets an
  empty `rootfs` directory with each top-level directory of the host's /
  bound recursively onto itself (/proc excepted: runc refuses binds over it),
  their number noted in an annotation so that import can recognise them.
- mounts.entries: bind (rbind/bind, ro, rro for a recursive read-only one, flags), tmpfs (size, mode, uid, gid),
  proc, sysfs, mqueue, overlay (lowerdir/upperdir/workdir), dev (a /dev tmpfs,
  devpts at /dev/pts, a /dev/shm tmpfs: what runc's own config has; runc
  creates the same device nodes linx-spec binds).  Flags are written out even
  where they are the type's default, so the meaning does not depend on runtime
  defaults.
- masked_paths/readonly_paths -> linux.maskedPaths/readonlyPaths (expanded).
- devices -> linux.devices (path, type, major, minor, fileMode, uid, gid).
- propagation -> linux.rootfsPropagation (private, slave).
- cgroup: memory.max -> limit, swap_max -> swap (= limit + swap: OCI's swap
  is v1's memsw), cpu.max/period -> quota/period, weight -> shares (v1's
  formula, the one host/cgroup_v1.py writes), cpuset, pids, io weight and
  limits (blockIO, v1 scale); parent -> cgroupsPath PARENT/linx-NAME (without
  a parent the runtime chooses, runc: /CONTAINER-ID).
- network.sysctls -> linux.sysctl.
- seccomp: the entries the plan compiles (profile first, then rules, groups
  expanded), reversed: OCI's first match wins where linx-spec's later rule
  wins (seccomp/oci.py reads them back the same way).
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from . import ANNOTATION_HOST_ROOT, ANNOTATION_NAME, OCI_VERSION
from .lossy import Loss
from .resolved import Resolved, resolved

OCI_NAMESPACE = {"user": "user", "pid": "pid", "net": "network", "mount": "mount", "uts": "uts", "ipc": "ipc",
                 "cgroup": "cgroup", "time": "time"}
SECCOMP_ACTIONS = {"allow": "SCMP_ACT_ALLOW", "log": "SCMP_ACT_LOG", "trap": "SCMP_ACT_TRAP",
                   "kill": "SCMP_ACT_KILL_PROCESS", "kill_thread": "SCMP_ACT_KILL_THREAD"}
DEFAULT_FLAGS = {"bind": (), "overlay": (), "tmpfs": ("nosuid", "nodev"), "proc": ("nosuid", "nodev", "noexec"),
                 "sysfs": ("nosuid", "nodev", "noexec"), "mqueue": ("nosuid", "nodev", "noexec"),
                 "devpts": ("nosuid", "noexec"), "cgroup": ("nosuid", "nodev", "noexec")}
DEFAULT_STOP_GRACE = 5.0
# What `dev` becomes: the mounts of runc's own default config (runc spec).
DEV_OPTIONS = ("mode=755", "size=65536k")  # agent/lx_mounts.c's, and runc's default config's
DEVPTS_OPTIONS = ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620")
SHM_FLAGS = ("nosuid", "noexec", "nodev")
CPU_PERIOD_US = 100_000
TMPFS_MODE = 0o1777  # the kernel's default for a tmpfs root (mm/shmem.c), what linx-spec's tmpfs gets

# The Spec fields export reads (a unit test checks this against Spec.model_fields).
HANDLED = ("version", "name", "process", "namespaces", "idmap", "hostname", "domainname", "cgroup", "network",
           "capabilities", "no_new_privs", "seccomp", "mounts", "rlimits", "stdio", "lifecycle", "time")


@dataclass
class Exported:
    config: dict[str, Any]
    losses: list[Loss] = field(default_factory=list)
    rootfs_dir: str | None = None  # a directory the bundle needs created (relative to it), or None


def export_config(spec, plan, base_dir: str) -> Exported:
    """The spec as an OCI config; `plan` is build_plan() of the same spec on this host."""
    r = resolved(plan)
    out = Exported({"ociVersion": OCI_VERSION})
    c, losses = out.config, out.losses
    c["process"] = _process(spec, r, losses)
    _root_and_mounts(spec, base_dir, out)
    if spec.hostname is not None:
        c["hostname"] = spec.hostname
    if spec.domainname is not None:
        c["domainname"] = spec.domainname
    c["annotations"] = {ANNOTATION_NAME: plan.name, **c.get("annotations", {})}
    linux: dict[str, Any] = {"namespaces": _namespaces(spec)}
    if r.uid_map:
        linux["uidMappings"] = [{"containerID": a, "hostID": b, "size": n} for a, b, n in r.uid_map]
        linux["gidMappings"] = [{"containerID": a, "hostID": b, "size": n} for a, b, n in r.gid_map]
        if r.setgroups == "deny" and os.geteuid() == 0:
            losses.append(Loss("idmap.setgroups", "`deny` has no OCI field; runc run as root leaves "
                                                  "setgroups(2) allowed in the user namespace"))
    if spec.cgroup is not None:
        _cgroup(spec, plan.name, linux, losses)
        if spec.cgroup.devices is not None:
            linux.setdefault("resources", {})["devices"] = _devices(plan)
    if spec.time is not None:
        losses.append(Loss("time", "runtime-spec 1.0.2 has no time namespace offsets (1.1's linux.timeOffsets)"))
    if spec.network is not None:
        _network(spec.network, linux, losses)
    if spec.seccomp is not None:
        linux["seccomp"] = _seccomp(spec, r, base_dir, losses)
    if spec.mounts is not None:
        from ..spec.mounts import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, expand_paths

        linux["rootfsPropagation"] = spec.mounts.propagation  # private | slave: the schema's words
        masked = expand_paths(spec.mounts.masked_paths, DEFAULT_MASKED_PATHS)
        readonly = expand_paths(spec.mounts.readonly_paths, DEFAULT_READONLY_PATHS)
        if masked:
            linux["maskedPaths"] = masked
        if readonly:
            linux["readonlyPaths"] = readonly
        if spec.mounts.devices:
            linux["devices"] = [
                {"path": d.path, "type": d.type, **({} if d.type == "p" else {"major": d.major, "minor": d.minor}),
                 "fileMode": d.mode, "uid": d.uid, "gid": d.gid} for d in spec.mounts.devices]
    c["linux"] = linux
    _lifecycle(spec, losses)
    return out


def _devices(plan) -> list[dict[str, Any]]:
    """cgroup.devices -> linux.resources.devices: deny all, then the plan's rules
    (paths already resolved to type and numbers)."""
    out: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for h in plan.cgroup.hierarchies if plan.cgroup is not None else ():
        for rule in h.device_allow or ():
            kind, numbers, access = rule.split()
            major, minor = numbers.split(":")
            entry: dict[str, Any] = {"allow": True, "type": kind, "access": access}
            if major != "*":
                entry["major"] = int(major)
            if minor != "*":
                entry["minor"] = int(minor)
            out.append(entry)
    return out


def _namespaces(spec) -> list[dict[str, str]]:
    ns = spec.namespaces
    out = [{"type": OCI_NAMESPACE[n]} for n in ns.created()]
    out += [{"type": OCI_NAMESPACE[n], "path": path} for n, path in ns.joined().items()]
    return out


def _process(spec, r: Resolved, losses: list[Loss]) -> dict[str, Any]:
    p = spec.process
    user: dict[str, Any] = {"uid": p.user.uid, "gid": p.user.gid}
    if p.user.groups:
        user["additionalGids"] = list(p.user.groups)
    if p.umask is not None:
        user["umask"] = p.umask
    out: dict[str, Any] = {"terminal": _terminal(spec.stdio, losses), "user": user, "args": list(p.command),
                           "env": list(r.env), "cwd": p.cwd}
    if r.caps is not None:
        out["capabilities"] = r.caps
    if r.rlimits:
        out["rlimits"] = [{"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard}
                          for name, soft, hard in r.rlimits]
    out["noNewPrivileges"] = spec.no_new_privs
    if r.oom_score_adj is not None:
        out["oomScoreAdj"] = r.oom_score_adj
    return out


def _terminal(stdio, losses: list[Loss]) -> bool:
    if stdio == "pty":
        return True
    if stdio != "inherit":
        # null, files, per-stream settings: the engine owns a container's streams.
        losses.append(Loss("stdio", "an OCI bundle has no stdio redirection (the engine connects the "
                                    "container's streams); only inherit and pty (process.terminal) map"))
    return False


def _lifecycle(spec, losses: list[Loss]) -> None:
    lc = spec.lifecycle
    if lc.timeout is not None:
        losses.append(Loss("lifecycle.timeout", "OCI has no time limit (the engine stops containers)"))
    if lc.restart.policy != "no":
        losses.append(Loss("lifecycle.restart", f"restart policy `{lc.restart.policy}` is the engine's "
                                                "business; a bundle cannot say it"))
    if lc.stop_grace != DEFAULT_STOP_GRACE:
        losses.append(Loss("lifecycle.stop_grace", "the stop grace is given to the engine (e.g. `ctr task kill`, "
                                                   "`podman stop -t`), not written in a bundle"))
    if lc.orphan != "stop":
        losses.append(Loss("lifecycle.orphan", "`linger` has no OCI counterpart"))


def _network(net, linux: dict[str, Any], losses: list[Loss]) -> None:
    if net.interfaces:
        losses.append(Loss("network.interfaces", "OCI bundles carry no interfaces (CNI or the engine makes "
                                                 "them): " + ", ".join(i.inside for i in net.interfaces)))
    if net.routes:
        losses.append(Loss("network.routes", "OCI bundles carry no routes"))
    if not net.loopback:
        losses.append(Loss("network.loopback", "runtimes bring `lo` up in a new net namespace; `false` "
                                               "cannot be said"))
    if net.sysctls:
        linux["sysctl"] = {k.replace("/", ".") if "." not in k else k: v for k, v in net.sysctls.items()}


def _abs(path: str, base_dir: str) -> str:
    return os.path.normpath(os.path.join(base_dir, path))


def _root_and_mounts(spec, base_dir: str, out: Exported) -> None:
    from ..spec.mounts import RootOverlay

    c, losses = out.config, out.losses
    m = spec.mounts
    mounts: list[dict[str, Any]] = []
    if m is not None and isinstance(m.rootfs, str):
        c["root"] = {"path": _abs(m.rootfs, base_dir), "readonly": m.rootfs_readonly}
    elif m is not None and isinstance(m.rootfs, RootOverlay):
        losses.append(Loss("mounts.rootfs", "an overlay root: OCI's root is one directory (engines assemble "
                                            "layers themselves); exported as its top lower layer"))
        c["root"] = {"path": _abs(m.rootfs.lower[0], base_dir), "readonly": True}
    else:
        if "mount" not in spec.namespaces.created():
            losses.append(Loss("namespaces.mount", "without a new mount namespace the workload runs in the "
                                                   "host's filesystem; an OCI container always has its own root"))
        if m is not None and m.rootfs_readonly:
            losses.append(Loss("mounts.rootfs_readonly", "a read-only host root without `rootfs`: the bundle "
                                                         "binds the host's directories, read-write as the host has them"))
        c["root"] = {"path": "rootfs", "readonly": False}
        out.rootfs_dir = "rootfs"
        mounts.extend(host_root_mounts())
        c["annotations"] = {ANNOTATION_HOST_ROOT: str(len(mounts))}
    if m is not None:
        for i, entry in enumerate(m.entries):
            mounts.extend(_mount(entry, f"mounts.entries[{i}]", base_dir, losses))

        if m.etc is not None:
            mounts.extend(_etc(m.etc, base_dir, losses))
    c["mounts"] = mounts


def host_root_mounts() -> list[dict[str, Any]]:
    """Each top-level directory of the host's / bound recursively onto itself (what a workload without
    `rootfs` sees); /proc left out (runc refuses a bind over /proc)."""
    out = []
    for name in sorted(os.listdir("/")):
        path = "/" + name
        if name == "proc" or not os.path.isdir(path):
            continue
        out.append({"destination": path, "type": "bind", "source": path, "options": ["rbind"]})
    return out


def _flags(entry, kind: str) -> list[str]:
    flags = list(entry.flags) if entry.flags is not None else list(DEFAULT_FLAGS[kind])
    return (["ro"] if entry.readonly else []) + flags


def _mount(e, where: str, base_dir: str, losses: list[Loss]) -> list[dict[str, Any]]:
    kind = e.type
    if kind == "bind":
        if e.optional:
            losses.append(Loss(f"{where}.optional", "OCI mounts cannot be optional (a missing source fails "
                                                    "the container)"))
        opts = ["rbind" if e.recursive else "bind", *_flags(e, kind)]
        if e.readonly and e.recursive:
            # linx-spec makes the mounts below a read-only rbind read-only too; `ro` alone is the
            # top mount only (runc >= 1.1 knows `rro`, mount_setattr(AT_RECURSIVE)).
            opts.insert(2, "rro")
        return [{"destination": e.target, "type": "bind", "source": _abs(e.source, base_dir), "options": opts}]
    if kind == "tmpfs":
        opts = _flags(e, kind)
        if e.size is not None:
            opts.append(f"size={e.size}")
        # Written even when it is the kernel's default: runc gives a tmpfs without `mode=` the mode
        # of the directory it covers (found by tests/integration/test_oci_differential.py).
        opts.append(f"mode={e.mode if e.mode is not None else TMPFS_MODE:o}")
        if e.uid is not None:
            opts.append(f"uid={e.uid}")
        if e.gid is not None:
            opts.append(f"gid={e.gid}")
        return [{"destination": e.target, "type": "tmpfs", "source": e.source or "tmpfs", "options": opts}]
    if kind in ("proc", "sysfs", "mqueue"):
        return [{"destination": e.target, "type": kind, "source": e.source or kind, "options": _flags(e, kind)}]
    if kind == "cgroup":
        return [{"destination": e.target, "type": "cgroup", "source": "cgroup", "options": _flags(e, kind)}]
    if kind == "devpts":
        opts = _flags(e, kind) + ["newinstance", f"ptmxmode={e.ptmxmode:04o}", f"mode={e.mode:04o}"]
        if e.gid is not None:
            opts.append(f"gid={e.gid}")
        return [{"destination": e.target, "type": "devpts", "source": e.source or "devpts", "options": opts}]
    if kind == "overlay":
        opts = _flags(e, kind) + ["lowerdir=" + ":".join(_abs(p, base_dir) for p in e.lower)]
        if e.upper is not None:
            opts += [f"upperdir={_abs(e.upper, base_dir)}", f"workdir={_abs(e.work, base_dir)}"]
        return [{"destination": e.target, "type": "overlay", "source": e.source or "overlay", "options": opts}]
    if kind == "dev":
        dev_flags = ["ro"] if e.readonly else []
        dev_flags += list(e.flags) if e.flags is not None else ["nosuid", "noexec"]  # agent/lx_mounts.c's
        return [
            {"destination": e.target, "type": "tmpfs", "source": "tmpfs", "options": [*dev_flags, *DEV_OPTIONS]},
            {"destination": e.target + "/pts", "type": "devpts", "source": "devpts", "options": list(DEVPTS_OPTIONS)},
            {"destination": e.target + "/shm", "type": "tmpfs", "source": "shm",
             "options": [*SHM_FLAGS, "mode=1777", f"size={e.shm_size}"]},
        ]
    raise AssertionError(f"unknown mount type {kind}")  # the Spec's union has no other


def _etc(etc, base_dir: str, losses: list[Loss]) -> list[dict[str, Any]]:
    out = []
    for key, target in (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv_conf", "/etc/resolv.conf")):
        value = getattr(etc, key)
        if value is None:
            continue
        if not isinstance(value, str) or value == "generate":
            losses.append(Loss(f"mounts.etc.{key}", "generated /etc files are the engine's job (it writes and "
                                                    "binds them); a bundle can only bind an existing file"))
            continue
        source = target if value == "host" else _abs(value, base_dir)
        out.append({"destination": target, "type": "bind", "source": source, "options": ["bind", "ro"]})
    return out


def cpu_shares(weight: int) -> int:
    """cgroup v2 cpu.weight -> OCI cpu.shares (v1 scale), the conversion linx-spec's v1 backend writes."""
    return 2 + ((weight - 1) * 262142) // 9999


def blkio_weight(weight: int) -> int:
    """io.weight [1, 10000] -> OCI blockIO.weight (v1 scale, 10..1000), as linx-spec's v1 backend writes."""
    return 10 + ((weight - 1) * 990) // 9999


def _device_numbers(device: str) -> tuple[int, int] | None:
    if ":" in device and not device.startswith("/"):
        major, minor = device.split(":")
        return int(major), int(minor)
    try:
        st = os.stat(device)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _cgroup(spec, name: str, linux: dict[str, Any], losses: list[Loss]) -> None:
    cg = spec.cgroup
    res: dict[str, Any] = {}
    if cg.memory is not None:
        mem: dict[str, Any] = {}
        if cg.memory.max is not None:
            mem["limit"] = cg.memory.max
        if cg.memory.swap_max is not None:
            if cg.memory.max is None:
                losses.append(Loss("cgroup.memory.swap_max", "OCI's swap is memory + swap together: it needs "
                                                             "memory.max"))
            else:
                mem["swap"] = cg.memory.max + cg.memory.swap_max
        if cg.memory.high is not None:
            losses.append(Loss("cgroup.memory.high", "OCI has no memory.high (its `reservation` is v1's soft "
                                                     "limit, and runc writes memory.low for it on v2)"))
        for key in ("low", "min"):
            if getattr(cg.memory, key) is not None:
                losses.append(Loss(f"cgroup.memory.{key}", f"OCI 1.0.2 has no memory.{key} (`reservation` means "
                                                           "v1's soft limit on a v1 host, not a protection)"))
        if mem:
            res["memory"] = mem
    cpu: dict[str, Any] = {}
    if cg.cpu is not None:
        if cg.cpu.max is not None:
            period = round(cg.cpu.period * 1e6) if cg.cpu.period is not None else CPU_PERIOD_US
            cpu["quota"] = round(cg.cpu.max * period)
            cpu["period"] = period
        if cg.cpu.weight is not None:
            cpu["shares"] = cpu_shares(cg.cpu.weight)
    if cg.cpuset is not None:
        if cg.cpuset.cpus is not None:
            cpu["cpus"] = cg.cpuset.cpus
        if cg.cpuset.mems is not None:
            cpu["mems"] = cg.cpuset.mems
    if cpu:
        res["cpu"] = cpu
    if cg.pids is not None and cg.pids.max is not None:
        res["pids"] = {"limit": cg.pids.max}
    if cg.io is not None:
        blk: dict[str, Any] = {}
        if cg.io.weight is not None:
            blk["weight"] = blkio_weight(cg.io.weight)
        for i, lim in enumerate(cg.io.limits):
            numbers = _device_numbers(lim.device)
            if numbers is None:
                losses.append(Loss(f"cgroup.io.limits[{i}].device", f"{lim.device} is not a block device here: "
                                                                    "OCI names devices by major:minor"))
                continue
            for key, oci in (("read_bps", "throttleReadBpsDevice"), ("write_bps", "throttleWriteBpsDevice"),
                             ("read_iops", "throttleReadIOPSDevice"), ("write_iops", "throttleWriteIOPSDevice")):
                rate = getattr(lim, key)
                if rate is not None:
                    blk.setdefault(oci, []).append({"major": numbers[0], "minor": numbers[1], "rate": rate})
        if blk:
            res["blockIO"] = blk
    if res:
        linux["resources"] = res
    if cg.parent is not None:
        linux["cgroupsPath"] = f"{cg.parent}/linx-{name}"


def _seccomp(spec, r: Resolved, base_dir: str, losses: list[Loss]) -> dict[str, Any]:
    """The entries the plan compiles, as OCI syscalls (first match wins: reversed)."""
    from ..seccomp.compile import native_arch
    from ..seccomp.groups import expand
    from ..seccomp.oci import ALL_CAPS, Entry, load_profile

    s = spec.seccomp
    entries: list[Entry] = []
    if s.profile is not None:
        caps = frozenset(r.caps["bounding"]) if r.caps is not None else ALL_CAPS
        entries.extend(load_profile(s.profile, base_dir, native=native_arch(), caps=caps).entries)
    for k, rule in enumerate(s.rules):
        conds = tuple((a.index, a.op, a.value_int, a.mask_int) for a in rule.args)
        entries.append(Entry(tuple(rule.syscalls), rule.action, conds, f"seccomp.rules[{k}]"))
    out: dict[str, Any] = _action("defaultAction", r.seccomp_default or "allow", "defaultErrnoRet")
    out["architectures"] = ["SCMP_ARCH_" + a.upper() for a in r.seccomp_architectures]
    syscalls = []
    for e in reversed(entries):
        names: list[str] = []
        for n in e.names:
            for one in (expand(n) if n.startswith("@") else (n,)):
                if one not in names:
                    names.append(one)
        item: dict[str, Any] = {"names": names, **_action("action", e.action, "errnoRet")}
        indexes = [c[0] for c in e.conds]
        if len(set(indexes)) != len(indexes):
            losses.append(Loss(e.origin, "two conditions on one argument: OCI runtimes (runc) make each its own "
                                         "rule, ORed, where linx-spec ANDs them"))
            continue
        if e.conds:
            item["args"] = [
                {"index": i, "value": m, "valueTwo": v, "op": "SCMP_CMP_MASKED_EQ"} if op == "masked_eq"
                else {"index": i, "value": v, "op": "SCMP_CMP_" + op.upper()}
                for i, op, v, m in e.conds
            ]
        syscalls.append(item)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _action(key: str, action: str, errno_key: str) -> dict[str, Any]:
    if action.startswith("errno"):
        word = action.split()[1]
        number = int(word) if word.isdigit() else getattr(_errno, word)
        return {key: "SCMP_ACT_ERRNO", errno_key: number}
    return {key: SECCOMP_ACTIONS[action]}
