"""The Plan: what `build_plan` resolved, frozen.  Numbers not names, absolute
paths, sizes in bytes, compiled seccomp bytes.

Only plain dataclasses live here, importing nothing heavy: the runner, the
agent driver and a plan cached by the CLI load this module without pydantic
(linx_spec/plan.py builds Plans; linx_spec/spec/ is what the user wrote).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLONE_FLAGS = {
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class IdmapPlan:
    uid_map: str  # the exact text written to /proc/PID/uid_map
    gid_map: str
    setgroups: str  # "allow" | "deny"


@dataclass(frozen=True)
class ProcessPlan:
    exec_path: str
    argv: tuple[str, ...]
    env: tuple[str, ...]  # NAME=value
    cwd: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    umask: int | None


@dataclass(frozen=True)
class CapsPlan:
    """Capability masks (bit N = capability N)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int


@dataclass(frozen=True)
class StreamPlan:
    kind: str  # inherit | null | file | pty
    path: str | None = None  # absolute, for file
    append: bool = True


@dataclass(frozen=True)
class StdioPlan:
    stdin: StreamPlan = StreamPlan("inherit")
    stdout: StreamPlan = StreamPlan("inherit")
    stderr: StreamPlan = StreamPlan("inherit")

    @property
    def pty(self) -> bool:
        return self.stdin.kind == "pty"


@dataclass(frozen=True)
class LifecyclePlan:
    timeout: float | None = None  # seconds
    stop_grace: float = 5.0
    restart: str = "no"  # no | on-failure | always
    max_retries: int | None = None
    backoff: float = 1.0
    max_backoff: float = 30.0
    orphan: str = "stop"  # stop | linger


@dataclass(frozen=True)
class Plan:
    name: str
    source: str  # the spec file ("-" for stdin, "<api>" for a Spec built in Python)
    spec_hash: str
    ns_new: tuple[str, ...]
    ns_join: tuple[tuple[str, str], ...]  # (name, path)
    process: ProcessPlan
    idmap: IdmapPlan | None = None
    hostname: str | None = None
    domainname: str | None = None
    cgroup: Any = None  # host/cgroup.py: CgroupPlan
    network: Any = None  # host/network.py: NetworkPlan
    rlimits: Any = None  # host/rlimits.py: RlimitsPlan
    capabilities: CapsPlan | None = None
    no_new_privs: bool = True
    seccomp: Any = None  # seccomp/: SeccompPlan (compiled BPF bytes)
    mounts: Any = None  # mounts plan (agent/lx_mounts.c)
    stdio: StdioPlan = StdioPlan()
    lifecycle: LifecyclePlan = LifecyclePlan()
    notes: tuple[str, ...] = field(default=())  # what the plan decided and why

    @property
    def grace_seconds(self) -> float:
        return self.lifecycle.stop_grace

    @property
    def clone_flags(self) -> int:
        flags = 0
        for name in self.ns_new:
            flags |= CLONE_FLAGS[name]
        return flags

    def has_new(self, ns: str) -> bool:
        return ns in self.ns_new
