"""`linx-spec exec NAME -- CMD`: a command inside a running workload, as docker
exec: all its namespaces (every fd opened before the first setns, by the
agent), its cgroups, and the same identity, capabilities, no_new_privs and
seccomp filter as the workload itself."""

from __future__ import annotations

import dataclasses
import os

from .errors import PlanError
from .plan.cgroup import JoinCgroupsPlan
from .plan.process import DEFAULT_PATH, resolve_program
from .plan.workload import Plan

NS_FILES = {"user": "user", "pid": "pid", "net": "net", "mount": "mnt", "uts": "uts", "ipc": "ipc",
            "cgroup": "cgroup", "time": "time"}


def _same_ns(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_ino == os.stat(b).st_ino
    except OSError:
        return False


def exec_plan(plan: Plan, target: int, command: list[str], *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> Plan:
    """The plan of a command run inside the running workload `target` (host pid)."""
    if not command:
        raise PlanError("exec needs a command", "give it after --: linx-spec exec NAME -- CMD...")
    joins = []
    for name, file in NS_FILES.items():
        path = f"/proc/{target}/ns/{file}"
        if not os.path.exists(path):
            continue
        if not _same_ns(path, f"/proc/self/ns/{file}"):
            joins.append((name, path))
    proc_env = dict(e.split("=", 1) for e in plan.process.env)
    if env:
        proc_env.update(env)
    root = f"/proc/{target}/root"
    exec_path = resolve_program(command[0], {"PATH": proc_env.get("PATH", DEFAULT_PATH)}, root)
    process = dataclasses.replace(plan.process, exec_path=exec_path, argv=tuple(command),
                                  env=tuple(f"{k}={v}" for k, v in proc_env.items()), cwd=cwd or plan.process.cwd)
    return dataclasses.replace(
        plan, ns_new=(), ns_join=tuple(joins), idmap=None, hostname=None, domainname=None,
        cgroup=JoinCgroupsPlan(target), network=None, mounts=None, process=process,
        lifecycle=dataclasses.replace(plan.lifecycle, restart="no", timeout=None, orphan="stop"),
        stdio=type(plan.stdio)())
