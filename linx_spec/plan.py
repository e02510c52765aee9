"""Spec -> Plan: pure functions, no side effects.

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

from .errors import PlanError
from .planned import (  # noqa: F401 - re-exported: the Plan types live in planned.py
    CLONE_FLAGS,
    DEFAULT_PATH,
    CapsPlan,
    IdmapPlan,
    LifecyclePlan,
    Plan,
    ProcessPlan,
    StdioPlan,
    StreamPlan,
)

if TYPE_CHECKING:
    from .spec import Spec


def is_root() -> bool:
    return os.geteuid() == 0


def _resolve_program(word: str, env: dict[str, str], root: str | None, host_path=None) -> str:
    if "/" in word:
        if not word.startswith("/"):
            raise PlanError(
                f"program `{word}` is a relative path",
                "give an absolute path, or a bare name to look up on PATH",
                "process.command",
            )
        return word
    path = env.get("PATH", DEFAULT_PATH)
    for d in path.split(":"):
        if not d.startswith("/"):
            continue
        candidate = os.path.join(d, word)
        # host_path (the mounts plan's) also sees through bind mounts and overlay layers.
        on_host = host_path(candidate) if host_path else os.path.join(root, candidate.lstrip("/")) if root else candidate
        if on_host and os.path.isfile(on_host) and os.access(on_host, os.X_OK):
            return candidate
    where = f" inside rootfs {root}" if root else ""
    raise PlanError(
        f"program `{word}` not found on PATH{where} ({path})",
        "install it, fix the name, or give an absolute path",
        "process.command",
    )


def _plan_idmap(spec: Spec, ns_new: list[str]) -> IdmapPlan | None:
    if "user" not in ns_new:
        if spec.idmap is not None:
            raise PlanError("`idmap` is set but no new user namespace is created",
                            "add `user` to namespaces, or remove idmap", "idmap")
        return None
    uid, gid = os.geteuid(), os.getegid()
    if spec.idmap is None or (not spec.idmap.uid and not spec.idmap.gid):
        # Like `unshare -r` and bwrap: the caller's own ids become 0 inside.
        return IdmapPlan(f"0 {uid} 1\n", f"0 {gid} 1\n", "deny")
    uid_ranges = spec.idmap.uid or ()
    gid_ranges = spec.idmap.gid or ()
    if not uid_ranges or not gid_ranges:
        raise PlanError("idmap needs both `uid` and `gid` ranges (or neither, for the default)",
                        "add the missing map", "idmap")
    uid_map = "".join(f"{r.container} {r.host} {r.count}\n" for r in uid_ranges)
    gid_map = "".join(f"{r.container} {r.host} {r.count}\n" for r in gid_ranges)
    own_only = (len(uid_ranges) == 1 and uid_ranges[0].host == uid and uid_ranges[0].count == 1
                and len(gid_ranges) == 1 and gid_ranges[0].host == gid and gid_ranges[0].count == 1)
    setgroups = spec.idmap.setgroups or ("deny" if own_only and not is_root() else "allow")
    if not is_root():
        if not own_only:
            raise PlanError(
                "mapping ids other than your own needs root (the kernel allows an unprivileged "
                "process to map only its own uid and gid)",
                "run as root, or map only your own uid/gid (omit idmap for the default)", "idmap")
        if setgroups != "deny":
            raise PlanError("an unprivileged gid map requires setgroups: deny",
                            "set idmap.setgroups: deny (or run as root)", "idmap.setgroups")
    return IdmapPlan(uid_map, gid_map, setgroups)


def _mapped(ranges_text: str, ident: int) -> bool:
    for line in ranges_text.splitlines():
        inside, _outside, count = map(int, line.split())
        if inside <= ident < inside + count:
            return True
    return False


def _plan_stdio(spec: Spec, base_dir: str) -> StdioPlan:
    from .spec.stdio import FileStream

    value = "null" if spec.stdio is None else spec.stdio  # YAML's bare null
    if isinstance(value, str):
        return StdioPlan(*(StreamPlan(value),) * 3)

    def one(stream) -> StreamPlan:
        if stream is None:
            return StreamPlan("null")
        if isinstance(stream, FileStream):
            path = os.path.normpath(os.path.join(base_dir, stream.file))
            return StreamPlan("file", path, stream.mode == "append")
        return StreamPlan(stream)

    return StdioPlan(one(value.stdin), one(value.stdout), one(value.stderr))


def _plan_lifecycle(spec: Spec) -> LifecyclePlan:
    lc = spec.lifecycle
    r = lc.restart
    retries = r.max_retries if r.max_retries is not None else (3 if r.policy == "on-failure" else None)
    return LifecyclePlan(lc.timeout, lc.stop_grace, r.policy, retries, r.backoff, r.max_backoff, lc.orphan)


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
    for name in ("hostname", "domainname"):
        if getattr(spec, name) is not None and "uts" not in ns_new:
            raise PlanError(f"`{name}` would change the host's {name}: no new uts namespace",
                            "add `uts` to namespaces", name)
    idmap = _plan_idmap(spec, ns_new)

    p = spec.process
    env = {"PATH": DEFAULT_PATH, "HOME": "/"}
    env.update(p.env)
    root = None  # the mounts subsystem sets a rootfs; PATH lookup then happens inside it
    mounts_plan = None
    if spec.mounts is not None and "mount" in ns_new:
        from .host import mounts as _mounts_plan  # optional: lands with the filesystem subsystem

        mounts_plan = _mounts_plan.resolve(spec.mounts, spec, base_dir or os.getcwd())
        root = getattr(mounts_plan, "rootfs", None)
    elif spec.mounts is not None:
        raise PlanError("`mounts` needs a new mount namespace", "add `mount` to namespaces", "mounts")
    exec_path = _resolve_program(p.command[0], env, root, getattr(mounts_plan, "host_path", None))
    if idmap is not None:
        if not _mapped(idmap.uid_map, p.user.uid):
            raise PlanError(f"process.user.uid {p.user.uid} is not mapped in the user namespace",
                            "map it in idmap.uid, or choose a mapped uid", "process.user.uid")
        for g in (p.user.gid, *p.user.groups):
            if not _mapped(idmap.gid_map, g):
                raise PlanError(f"gid {g} is not mapped in the user namespace",
                                "map it in idmap.gid, or choose a mapped gid", "process.user")
        if p.user.groups and idmap.setgroups == "deny":
            raise PlanError("supplementary groups need idmap.setgroups: allow", "set it, or drop the groups",
                            "process.user.groups")
    elif not is_root() and (p.user.uid != os.geteuid() or p.user.gid != os.getegid() or p.user.groups):
        raise PlanError("changing identity without a user namespace needs root",
                        "add `user` to namespaces, or run as root", "process.user")

    notes: list[str] = []
    cgroup_plan = network_plan = rlimits_plan = caps_plan = seccomp_plan = None
    if spec.cgroup is not None:
        from .host import cgroup as _cgroup

        cgroup_plan = _cgroup.resolve(spec.cgroup, spec)
        notes.extend(getattr(cgroup_plan, "notes", ()))
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
        from .host import network as _network

        network_plan = _network.resolve(spec.network, spec)
    if spec.rlimits is not None:
        from .host import rlimits as _rlimits

        rlimits_plan = _rlimits.resolve(spec.rlimits, spec)
    # Always: an absent `capabilities:` resolves to the default set (docs/privileges.md).
    from .spec import capabilities as _caps

    caps_plan = _caps.resolve(spec.capabilities, spec)
    if spec.seccomp is not None:
        from .seccomp import compile as _seccomp

        seccomp_plan = _seccomp.resolve(spec.seccomp, spec, base_dir or os.getcwd())

    return Plan(
        name=spec.name or (Path(source).stem if source not in ("-", "<api>") else "workload"),
        source=source,
        spec_hash=hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16],
        ns_new=tuple(ns_new),
        ns_join=tuple(ns_join),
        process=ProcessPlan(
            exec_path=exec_path,
            argv=tuple(p.command),
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cwd=p.cwd,
            uid=p.user.uid,
            gid=p.user.gid,
            groups=tuple(p.user.groups),
            umask=p.umask,
        ),
        idmap=idmap,
        hostname=spec.hostname,
        domainname=spec.domainname,
        cgroup=cgroup_plan,
        network=network_plan,
        rlimits=rlimits_plan,
        capabilities=caps_plan,
        no_new_privs=spec.no_new_privs,
        seccomp=seccomp_plan,
        mounts=mounts_plan,
        stdio=_plan_stdio(spec, base_dir or os.getcwd()),
        lifecycle=_plan_lifecycle(spec),
        notes=tuple(notes),
    )
