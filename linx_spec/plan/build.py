"""Spec -> Plan: `build_plan` calls each subsystem's resolve() in this package.

A `Plan` is resolved and frozen: numbers instead of names, absolute paths,
sizes in bytes, compiled seccomp bytes.  Planning may *read* the host (is this
root, which cgroup hierarchy, does the program exist) but never changes it;
what the host cannot honour is a `PlanError` with a remedy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PlanError
from . import caps, idmap, lifecycle, process, stdio
from .cgroup import CgroupPlan
from .idmap import is_root
from .mounts import MountsPlan, _kernel
from .network import NetworkPlan
from .rlimits import RlimitsPlan
from .seccomp import SeccompPlan
from .workload import Plan

if TYPE_CHECKING:
    from ..spec import Spec

TIME_EXEC_KERNEL = (6, 0)  # execve enters the time namespace the child unshared (agent/lx_time.c)


def spec_hash(spec: Spec) -> str:
    """What `status` and `inspect` compare a spec file with: its validated content's hash."""
    from ..spec import dump  # spec.model_dump(), without building the sections the spec lacks

    return hashlib.sha256(json.dumps(dump(spec), sort_keys=True).encode()).hexdigest()[:16]


def build_plan(spec: Spec, source: str = "<api>", base_dir: str | None = None) -> Plan:
    """Resolve a validated Spec into a Plan for this host (reads, never writes)."""
    ns = spec.namespaces
    ns_new = ns.created()
    ns_join = list(ns.joined().items())
    if not is_root() and "user" not in ns_new and (ns_new or ns_join):
        raise PlanError(
            "creating or joining namespaces needs root, or a new user namespace",
            "add `user` to namespaces (your own uid is mapped to 0 inside), or run as root",
            "namespaces")
    if ns_join:
        from .namespaces import check_joined

        check_joined(ns_join)
    joined = dict(ns_join)
    for name, value in (("hostname", spec.hostname), ("domainname", spec.domainname)):
        if value is not None and "uts" not in ns_new:
            if "uts" not in joined:
                raise PlanError(f"`{name}` would change the host's {name}: no new uts namespace",
                                "add `uts` to namespaces", name)
            from .namespaces import check_not_runtimes_own

            check_not_runtimes_own("uts", joined["uts"], name)  # set in the joined one, as runc
    idmap_plan = idmap.resolve(spec, ns_new)
    if "time" in ns_new and _kernel() < TIME_EXEC_KERNEL:
        raise PlanError(f"a new time namespace needs Linux 6.0 or newer here: the child unshares it and its "
                        f"execve enters it (\"fs/exec: switch timens when a task gets a new mm\"); this is "
                        f"{os.uname().release}", "upgrade the kernel, or drop `time` from namespaces", "namespaces.time")
    time_offsets = None
    if spec.time is not None:
        time_offsets = (round(spec.time.monotonic * 1e9), round(spec.time.boottime * 1e9))

    root = None  # with a rootfs, PATH lookup happens inside it
    mounts_plan: MountsPlan | None = None
    if spec.mounts is not None and "mount" not in ns_new:
        if "mount" not in joined:
            raise PlanError("`mounts` needs a new mount namespace, or a joined one", "add `mount` to namespaces",
                            "mounts")
        from .namespaces import check_not_runtimes_own

        check_not_runtimes_own("mount", joined["mount"], "mounts")  # mounted in the joined one, as runc
    if spec.mounts is not None:
        from . import mounts

        mounts_plan = mounts.resolve(spec.mounts, spec, base_dir or os.getcwd())
        root = mounts_plan.rootfs
    process_plan = process.resolve(spec, idmap_plan, root, mounts_plan.host_path if mounts_plan else None)
    if process_plan.init and "pid" not in ns_new:
        raise PlanError("process.init needs a new pid namespace: the init reaps orphans as its pid 1",
                        "add `pid` to namespaces, or drop process.init", "process.init")

    notes: list[str] = []
    cgroup_plan: CgroupPlan | None = None
    network_plan: NetworkPlan | None = None
    rlimits_plan: RlimitsPlan | None = None
    seccomp_plan: SeccompPlan | None = None
    if spec.cgroup is not None:
        from . import cgroup

        cgroup_plan = cgroup.resolve(spec.cgroup, spec)
        notes.extend(cgroup_plan.notes)
    # A new net namespace always gets the network step (lo up by default, without
    # pyroute2); a joined one is used as it is (docs/network.md).
    if spec.network is not None or "net" in ns_new:
        if "net" not in ns_new:
            joined = dict(ns_join).get("net")
            if joined:
                raise PlanError(f"`network` configures a new net namespace; the joined one ({joined}) is used "
                                "as it is", "configure it beforehand (ip netns exec NAME ...), or use `net: new`",
                                "network")
            raise PlanError("`network` needs a new net namespace", "add `net` to namespaces", "network")
        from . import network

        network_plan = network.resolve(spec.network, spec)
        notes.extend(network_plan.notes)
    if spec.rlimits is not None:
        from . import rlimits

        rlimits_plan = rlimits.resolve(spec.rlimits, spec)
    # Always: an absent `capabilities:` resolves to the default set (docs/privileges.md).
    caps_plan = caps.resolve(spec.capabilities, spec)
    if spec.seccomp is not None:
        from . import seccomp

        seccomp_plan = seccomp.resolve(spec.seccomp, spec, base_dir or os.getcwd())

    return Plan(
        name=spec.name or (Path(source).stem if source not in ("-", "<api>") else "workload"),
        source=source,
        spec_hash=spec_hash(spec),
        ns_new=tuple(ns_new),
        ns_join=tuple(ns_join),
        process=process_plan,
        idmap=idmap_plan,
        hostname=spec.hostname,
        domainname=spec.domainname,
        cgroup=cgroup_plan,
        network=network_plan,
        rlimits=rlimits_plan,
        capabilities=caps_plan,
        no_new_privs=spec.no_new_privs,
        seccomp=seccomp_plan,
        mounts=mounts_plan,
        time_offsets_ns=time_offsets,
        stdio=stdio.resolve(spec, base_dir or os.getcwd()),
        lifecycle=lifecycle.resolve(spec),
        notes=tuple(notes),
    )
