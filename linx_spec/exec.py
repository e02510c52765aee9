"""`linx-spec exec NAME -- CMD`: a command inside a running workload, as docker
exec: all its namespaces (every fd opened before the first setns, by the
agent), its cgroups, and the same identity, capabilities, no_new_privs and
seccomp filter as the workload itself."""

from __future__ import annotations

import dataclasses
import os

from .errors import PlanError, step_error
from .plan import DEFAULT_PATH, Plan, _resolve_program

NS_FILES = {"user": "user", "pid": "pid", "net": "net", "mount": "mnt", "uts": "uts", "ipc": "ipc",
            "cgroup": "cgroup", "time": "time"}


def _same_ns(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_ino == os.stat(b).st_ino
    except OSError:
        return False


def _cgroup_mounts() -> dict[str, str]:
    """hierarchy key ("0" for cgroup2, else the sorted controller list) -> mount point."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, opts = right.split()[:3]
            mnt = left.split()[4]
            if fstype == "cgroup2":
                out.setdefault("0", mnt)
            elif fstype == "cgroup":
                names = sorted(o for o in opts.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                                        "noexec", "clone_children", "xattr")
                               and not o.startswith("release_agent"))
                out.setdefault(",".join(names), mnt)
    return out


def _cgroups_of(pid: int | str) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            key = "0" if hid == "0" else ",".join(sorted(controllers.split(",")))
            out[key] = path
    return out


@dataclasses.dataclass(frozen=True)
class JoinCgroups:
    """Host step of an exec: the new process joins the target's cgroups."""

    target: int

    def describe(self) -> dict:
        return {"join_cgroups_of": self.target}

    def apply_from_host(self, ctx) -> None:
        mounts = _cgroup_mounts()
        mine = _cgroups_of("self")
        for key, path in _cgroups_of(self.target).items():
            # Where the target shares our cgroup there is nothing to join (and
            # it is not ours to write to).
            if mine.get(key) == path or key not in mounts:
                continue
            procs = os.path.join(mounts[key], path.lstrip("/"), "cgroup.procs")
            try:
                with open(procs, "w") as f:
                    f.write(str(ctx.pid))
            except OSError as exc:
                raise step_error("cgroup", "host", exc, "join the workload's cgroup", procs) from None


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
    exec_path = _resolve_program(command[0], {"PATH": proc_env.get("PATH", DEFAULT_PATH)}, root)
    process = dataclasses.replace(plan.process, exec_path=exec_path, argv=tuple(command),
                                  env=tuple(f"{k}={v}" for k, v in proc_env.items()), cwd=cwd or plan.process.cwd)
    return dataclasses.replace(
        plan, ns_new=(), ns_join=tuple(joins), idmap=None, hostname=None, domainname=None,
        cgroup=JoinCgroups(target), network=None, mounts=None, process=process,
        lifecycle=dataclasses.replace(plan.lifecycle, restart="no", timeout=None, orphan="stop"),
        stdio=type(plan.stdio)())
