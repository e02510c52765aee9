"""The spec: what the user wrote, validated by pydantic.  One module per subsystem.

`Spec` is the root model of a YAML file.  Field descriptions are for users: they
become the JSON Schema descriptions that editors show.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from .base import Model
from .capabilities import Capabilities
from .cgroup import Cgroup
from .idmap import IdMap, IdRange
from .lifecycle import Lifecycle, Restart
from .mounts import Mounts
from .namespaces import NAMESPACE_NAMES, Join, Namespaces, TimeOffsets, default_namespaces
from .network import Network
from .process import ARGV_ENV_MAX_BYTES, EXECVE_FLOOR_BYTES, Process, User, execve_bytes
from .rlimits import Rlimits
from .seccomp import Seccomp
from .stdio import FileStream, StdioSpec, Streams

SPEC_VERSIONS = (1,)
_HOSTNAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class Spec(Model):
    """A linx-spec workload: the program, its namespaces and every constraint on it."""

    version: Annotated[int, Field(description="Spec language version. This linx-spec reads version 1.",
                                  json_schema_extra={"enum": list(SPEC_VERSIONS)})]
    name: Annotated[
        str | None,
        Field(pattern=NAME_PATTERN, description="Name of the workload (cgroup and state names derive from it). Default: the file name."),
    ] = None
    process: Process = Field(description="The program to run and its identity, environment and working directory.")
    namespaces: Namespaces = Field(
        default_factory=default_namespaces,
        description="Namespaces of the workload: a list of names to create (`[user, pid, net]`), or a mapping "
        "of name to `new` or `{join: PATH}`. Default: pid, net, mount, uts, ipc, cgroup (as runc). "
        "Namespaces not named are shared with the host.",
    )
    idmap: IdMap | None = Field(default=None, description="uid/gid maps of a new user namespace.")
    hostname: Annotated[str | None, Field(description="Hostname inside a new uts namespace.", max_length=64,
                                          json_schema_extra={"pattern": _HOSTNAME_RE.pattern})] = None
    domainname: Annotated[str | None, Field(description="NIS domain name inside a new uts namespace (at most 64 "
                                            "bytes, __NEW_UTS_LEN).", max_length=64)] = None
    cgroup: Cgroup | None = Field(default=None, description="cgroup placement and resource limits.")
    network: Network | None = Field(default=None, description="Network interfaces, addresses and routes of a new net namespace.")
    capabilities: Capabilities | None = Field(
        default=None,
        description="Capability sets of the workload, by name: `keep: [net_bind_service]`, or the full form "
        "(bounding, permitted, effective, inheritable, ambient). Absent: docker's default set (chown, "
        "dac_override, fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service, net_raw, sys_chroot, "
        "mknod, audit_write, setfcap) bounds the workload, and uid 0 has it; another uid has none. "
        "See docs/privileges.md.",
    )
    no_new_privs: bool = Field(
        default=True,
        description="Set PR_SET_NO_NEW_PRIVS so that setuid binaries and file capabilities grant nothing. On by default.",
    )
    seccomp: Seccomp | None = Field(default=None, description="A seccomp filter, installed last, just before execve.")
    mounts: Mounts | None = Field(default=None, description="Filesystem: mounts, root and masked paths.")
    rlimits: Rlimits | None = Field(
        default=None,
        description="Resource limits by name (`nofile: 1024`, `nproc: {soft: 100, hard: 200}`, `as: 1Gi`), set "
        "from the host with prlimit before the workload runs; also `oom_score_adj`.",
    )
    time: TimeOffsets | None = Field(default=None, description="Clock offsets of the workload's new time "
                                     "namespace (`namespaces: [time]`): `{monotonic: 1h, boottime: 24h}`.")
    stdio: StdioSpec | None = "inherit"  # a bare YAML `null` means /dev/null
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Time limit, stop grace, restarts, orphan behaviour.")

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, v: Any) -> Any:
        if isinstance(v, bool) or v not in SPEC_VERSIONS:
            raise ValueError(
                f"unknown spec version {v!r}; this linx-spec reads version "
                + ", ".join(map(str, SPEC_VERSIONS))
            )
        return v

    @model_validator(mode="after")
    def _argv_fits_the_stack(self) -> "Spec":
        # fs/exec.c: argv + env may take a quarter of the stack rlimit the workload
        # execs with (at most 6 MiB, at least 128 KiB); a small `rlimits.stack` lowers it.
        stack = self.rlimits.stack if self.rlimits is not None else None
        if stack is None:
            return self
        soft = stack.soft if stack.soft is not None else stack.hard
        if not isinstance(soft, int):
            return self
        allowed = max(min(soft // 4, 6 << 20), EXECVE_FLOOR_BYTES)
        total = execve_bytes(self.process.command, self.process.env)
        if allowed < ARGV_ENV_MAX_BYTES and total > allowed:
            raise ValueError(f"process: command and env take {total} bytes as execve counts them; with "
                             f"rlimits.stack {soft} execve allows {allowed} (a quarter of the stack)")
        return self

    @model_validator(mode="after")
    def _time_needs_its_namespace(self) -> "Spec":
        if self.time is not None and self.namespaces.time != "new":
            raise ValueError("time: offsets are for a new time namespace: add `time` to namespaces (a joined "
                             "one keeps the offsets it was made with)")
        return self

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 64 or not _HOSTNAME_RE.match(v)):
            raise ValueError(f"`{v}` is not a valid hostname (letters, digits, `-`, dots; at most 64)")
        return v


__all__ = [
    "Spec", "Process", "User", "Namespaces", "Join", "IdMap", "IdRange", "Cgroup", "Network",
    "Capabilities", "Seccomp", "Mounts", "Rlimits", "NAMESPACE_NAMES", "NAME_PATTERN", "SPEC_VERSIONS", "Lifecycle", "Restart",
    "FileStream", "Streams", "StdioSpec",
]
