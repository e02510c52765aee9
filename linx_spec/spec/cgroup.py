"""`cgroup:` placement of the workload and its resource limits.

    cgroup:
      parent: /linx                        # optional
      memory: {max: 64Mi, high: 48Mi, low: 16Mi, min: 8Mi, swap_max: 0}
      cpu: {max: 0.5, weight: 100}         # max in CPUs (0.5 or 500m), per period (100ms)
      cpuset: {cpus: "0", mems: "0"}
      pids: {max: 64}
      io: {weight: 100, limits: [{device: /dev/vda, read_bps: 10Mi, write_iops: 200}]}

The spec speaks one language (cgroup v2's); host/cgroup.py maps each knob to
the files of v2 or v1, whichever holds the controller on this host.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Model
from .units import ByteSize, CpuAmount, PositiveByteSize, PositiveDuration

# cpuset list syntax (cpuset(7) "List format"): 0-3,8,10-11
LIST_PATTERN = r"^\s*\d+(-\d+)?(\s*,\s*\d+(-\d+)?)*\s*$"
# A cgroup path component: no `/`, not `.` or `..`, nothing the kernel's own
# interface files could clash with (they all contain a dot after a controller name).
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_@:+-][A-Za-z0-9_.@:+-]*$")
DEVICE_PATTERN = r"^(/dev/[^\s\u0000]+|\d+:\d+)$"

CPU_PERIOD_DEFAULT = 0.1  # seconds; the kernel's default cfs period (100ms)
CPU_QUOTA_MIN_US = 1000  # sched/core.c: min_cfs_quota_period is 1ms
PID_MAX_LIMIT = 2**22  # include/linux/threads.h: no pid namespace holds more (64-bit)
IOPS_MAX = 2**63 - 1  # io.max and blkio.throttle take a 64-bit count


def parse_list(text: str) -> frozenset[int]:
    """`0-2,5` -> {0, 1, 2, 5} (cpuset(7) list format)."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"range `{part}` runs backwards")
        out.update(range(first, last + 1))
    return frozenset(out)


class Memory(Model):
    """Memory limits and protection (cgroup v2 memory.max / memory.high / memory.low / memory.min /
    memory.swap.max)."""

    max: PositiveByteSize | None = Field(
        default=None,
        description="Hard limit on the workload's memory (bytes, or 64Mi, 1G...). Past it the kernel reclaims, "
        "then the OOM killer ends a process of the workload. v1: memory.limit_in_bytes.")
    high: PositiveByteSize | None = Field(
        default=None,
        description="Throttle point below `max`: past it the workload is slowed down and reclaimed hard, never "
        "killed. v1 has no equivalent: memory.soft_limit_in_bytes (reclaimed first under host memory pressure).")
    low: ByteSize | None = Field(
        default=None,
        description="Best-effort protection (cgroup v2 memory.low): while the workload uses at most this much, "
        "the kernel reclaims its memory only when no unprotected memory is left to reclaim. 0 is no protection, "
        "what a new cgroup has. Protection reaches the workload only as far as every ancestor cgroup is protected "
        "too. cgroup v2 only: v1 has no memory protection (a plan error there).")
    min: ByteSize | None = Field(
        default=None,
        description="Hard protection (cgroup v2 memory.min): memory up to this much is never reclaimed, even "
        "under host memory pressure (the host's OOM killer runs first); at most `low` and `max`. "
        "cgroup v2 only: v1 has no memory protection (a plan error there).")
    swap_max: ByteSize | None = Field(
        default=None,
        description="Swap the workload may use on top of its memory; 0 forbids swapping. v1: "
        "memory.memsw.limit_in_bytes = max + swap_max (needs `max` and swap accounting).")

    @model_validator(mode="after")
    def _order(self) -> "Memory":
        if self.max is not None and self.high is not None and self.high > self.max:
            raise ValueError(f"memory.high ({self.high} bytes) is above memory.max ({self.max} bytes): "
                             "it would never apply")
        for key in ("low", "min"):
            value = getattr(self, key)
            if self.max is not None and value is not None and value > self.max:
                raise ValueError(f"memory.{key} ({value} bytes) is above memory.max ({self.max} bytes): "
                                 "protection past the hard limit can never be used")
        if self.min is not None and self.low is not None and self.min > self.low:
            raise ValueError(f"memory.min ({self.min} bytes) is above memory.low ({self.low} bytes): min is the "
                             "hard floor and low the best-effort protection above it")
        return self


class Cpu(Model):
    """CPU bandwidth and weight (cgroup v2 cpu.max / cpu.weight)."""

    max: CpuAmount | None = Field(
        default=None,
        description="At most this many CPUs of time per period: 0.5 (or 500m) is half a CPU, 2 is two full CPUs. "
        "v2: cpu.max; v1: cpu.cfs_quota_us / cpu.cfs_period_us.")
    period: PositiveDuration | None = Field(
        default=None,
        description="Length of the accounting period of `max` (1ms to 1s). Default: 100ms, the kernel's. "
        "Shorter periods smooth latency at some scheduling cost.")
    weight: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        default=None,
        description="Relative share of CPU under contention, 1 to 10000 (100 is the default of every cgroup). "
        "v1: cpu.shares = 2 + (weight - 1) * 262142 / 9999.")

    @model_validator(mode="after")
    def _quota(self) -> "Cpu":
        period = self.period if self.period is not None else CPU_PERIOD_DEFAULT
        if self.period is not None and not (0.001 <= self.period <= 1.0):
            raise ValueError(f"cpu.period must be between 1ms and 1s (the kernel's bounds), got {self.period}s")
        if self.period is not None and self.max is None:
            raise ValueError("cpu.period only applies with cpu.max")
        if self.max is not None and round(self.max * period * 1e6) < CPU_QUOTA_MIN_US:
            raise ValueError(f"cpu.max {self.max} CPUs over a {period * 1000:g}ms period is below the kernel's "
                             "minimum quota of 1ms; raise max or lengthen period")
        return self


class Cpuset(Model):
    """Which CPUs and memory nodes the workload may use (cpuset.cpus / cpuset.mems)."""

    cpus: str | None = Field(
        default=None, pattern=LIST_PATTERN,
        description='CPUs the workload may run on, in list format: "0", "0-3", "0,2-3". Default: the parent\'s.')
    mems: str | None = Field(
        default=None, pattern=LIST_PATTERN,
        description='NUMA memory nodes the workload may allocate from, in list format: "0", "0-1". '
        "Default: the parent's.")

    @field_validator("cpus", "mems")
    @classmethod
    def _ranges(cls, v: str | None) -> str | None:
        if v is not None:
            parse_list(v)
            return v.replace(" ", "")
        return v


class Pids(Model):
    """Process count limit (pids.max)."""

    max: Annotated[int, Field(ge=1, le=PID_MAX_LIMIT)] | None = Field(
        default=None,
        description="At most this many processes and threads at once, the workload's first process included; "
        "fork and clone fail with EAGAIN past it. At most 4194304 (PID_MAX_LIMIT, the kernel's most pids).")


class IoLimit(Model):
    """Bandwidth limits on one block device."""

    device: str = Field(
        pattern=DEVICE_PATTERN,
        description='The whole-disk block device: a path like /dev/vda, or "MAJOR:MINOR" like "8:0".')
    read_bps: PositiveByteSize | None = Field(default=None, description="Read bytes per second (10Mi...).")
    write_bps: PositiveByteSize | None = Field(default=None, description="Written bytes per second (10Mi...).")
    read_iops: Annotated[int, Field(ge=1, le=IOPS_MAX)] | None = Field(default=None, description="Read operations per second.")
    write_iops: Annotated[int, Field(ge=1, le=IOPS_MAX)] | None = Field(default=None, description="Write operations per second.")

    @model_validator(mode="after")
    def _some(self) -> "IoLimit":
        if all(getattr(self, k) is None for k in ("read_bps", "write_bps", "read_iops", "write_iops")):
            raise ValueError(f"io limit on {self.device} sets nothing: give read_bps, write_bps, read_iops "
                             "or write_iops")
        return self


class Io(Model):
    """Block I/O weight and per-device limits (cgroup v2 io.weight / io.max, v1 blkio)."""

    weight: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        default=None,
        description="Relative share of disk time, 1 to 10000 (100 is the default); effective with the BFQ "
        "scheduler or io.cost. v1: blkio.weight or blkio.bfq.weight = 10 + (weight - 1) * 990 / 9999.")
    limits: tuple[IoLimit, ...] = Field(
        default=(),
        description="Per-device bandwidth limits. v2: io.max; v1: blkio.throttle.{read,write}_{bps,iops}_device.")

    @field_validator("limits")
    @classmethod
    def _unique(cls, v: tuple[IoLimit, ...]) -> tuple[IoLimit, ...]:
        seen = set()
        for lim in v:
            if lim.device in seen:
                raise ValueError(f"device {lim.device} has two io limits entries; merge them")
            seen.add(lim.device)
        return v


MAX_DEVICE_RULES = 64
DeviceNumber = Annotated[int, Field(strict=True, ge=0, le=(1 << 20) - 1)] | Literal["*"]  # MINORBITS: 20; majors 12 bits


class DeviceRule(Model):
    """One allowed device, as systemd's DeviceAllow= and runc's linux.resources.devices: by host path, or by
    type and major:minor numbers."""

    path: str | None = Field(default=None, max_length=4095, description="A device node on the host, e.g. "
                             "/dev/null: its type and numbers are read when planning.",
                             json_schema_extra={"pattern": "^/"})
    type: Literal["c", "b", "a"] | None = Field(default=None, description="`c` character, `b` block, `a` all "
                                                "devices (with `path`: taken from the node).")
    major: DeviceNumber | None = Field(default=None, description="Major number, or `*` for any (default).")
    minor: DeviceNumber | None = Field(default=None, description="Minor number, or `*` for any (default).")
    access: str = Field(default="rwm", pattern="^[rwm]{1,3}$",
                        description="What is allowed: any of `r` read, `w` write, `m` mknod (default `rwm`).")

    @model_validator(mode="after")
    def _one_form(self) -> "DeviceRule":
        if len(set(self.access)) != len(self.access):
            raise ValueError(f"access `{self.access}` names a letter twice")
        if self.path is not None:
            if self.type is not None or self.major is not None or self.minor is not None:
                raise ValueError("give a device either by `path` or by `type`/`major`/`minor`, not both")
            if not self.path.startswith("/") or "\0" in self.path:
                raise ValueError(f"`{self.path}` is not an absolute path")
        elif self.type is None:
            raise ValueError("a device rule needs `path`, or `type` (c, b or a) with `major`/`minor`")
        elif self.type == "a" and (self.major is not None or self.minor is not None):
            raise ValueError("type `a` (all devices) takes no major or minor")
        if isinstance(self.major, int) and self.major >= 1 << 12:
            raise ValueError(f"major {self.major} is beyond the kernel's 12 bits (at most 4095)")
        return self


class Cgroup(Model):
    """Where the workload's cgroup is created and what it may use. The workload joins it before its first
    instruction; after it ends, whatever is left inside is killed and the cgroup removed."""

    parent: str | None = Field(
        default=None,
        description="cgroup path under which the workload's own cgroup `linx-<name>-<pid>` is created, relative to "
        "each hierarchy's root, e.g. /linx or /batch/jobs. Missing directories are created (and removed "
        "afterwards). Default: /linx when root; otherwise the runner's own cgroup when it is delegated to you.")
    memory: Memory | None = Field(default=None, description="Memory limits.")
    cpu: Cpu | None = Field(default=None, description="CPU bandwidth (max, in CPUs) and weight.")
    cpuset: Cpuset | None = Field(default=None, description="CPUs and memory nodes the workload may use.")
    pids: Pids | None = Field(default=None, description="Limit on processes and threads.")
    io: Io | None = Field(default=None, description="Block I/O weight and per-device bandwidth limits.")
    devices: list[DeviceRule] | None = Field(
        default=None, max_length=MAX_DEVICE_RULES,
        description="Devices allow-list: when given, every device is denied (open and mknod fail with EPERM) "
        "but these, as systemd's DevicePolicy=strict with DeviceAllow=. Enforced by the cgroup v1 devices "
        "controller; on cgroup v2 it needs a BPF device program, which linx-spec does not load yet: a plan "
        "error there. Descriptors opened before the workload (its stdio, a pty) are not checked again.")

    @field_validator("parent")
    @classmethod
    def _parent(cls, v: str | None) -> str | None:
        return v if v is None else "/" + cgroup_path(v, "parent")


MAX_CGROUP_PATH = 4096  # PATH_MAX: the whole path below a hierarchy's mount


def cgroup_path(text: str, what: str = "path") -> str:
    """A cgroup path, checked: `/a/b/` -> `a/b` (components joined, no leading
    `/`); ValueError for `..`, `.`, an interface-file name, NUL, an empty path,
    or one past PATH_MAX.  Joined below a hierarchy, it can never leave it."""
    if len(text) > MAX_CGROUP_PATH:
        raise ValueError(f"{what} is {len(text)} characters long; at most {MAX_CGROUP_PATH}")
    parts = [p for p in text.strip().split("/") if p]
    if not parts:
        raise ValueError(f"{what} `/` is the hierarchy root; name a cgroup below it, e.g. /linx")
    for p in parts:
        if p in (".", "..") or not _COMPONENT_RE.match(p):
            raise ValueError(f"`{p[:80]}` is not a usable cgroup name (letters, digits, _ . @ : + -; not . or ..)")
        if p.startswith("cgroup."):
            raise ValueError(f"`{p[:80]}` clashes with the kernel's cgroup.* interface files")
    return "/".join(parts)


__all__ = ["Cgroup", "Memory", "Cpu", "Cpuset", "Pids", "Io", "IoLimit", "parse_list"]
