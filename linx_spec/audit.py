"""`linx-spec audit`: how exposed a workload's host is, like `systemd-analyze security`.

One line per check, each with a weight and an exposure between 0 (closed) and 1
(open); the score is the weighted mean scaled to 0-10, where 10 is most exposed
(systemd's convention).  Pure over the Spec: the only things resolved are the
seccomp filter (compiled, so a profile's answer for io_uring_setup is the real
one) and whether a joined namespace is the host's (`joined_host_namespaces`,
which reads /proc; item 10 of issue 14: `plan` and `validate` warn about it).

The score does not depend on who runs `audit` (root or not), so the
`# linx-spec audit: N/10` comments in specs/ are the same for everyone; what the
runner's identity changes is named in the check's text instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .spec import Spec

# `linx-spec audit --threshold N` exits with this code when a score is above N
# (an exit code of its own, so CI can tell "too exposed" from a spec error, 65).
EXIT_ABOVE_THRESHOLD = 3

# Capabilities that reach the host kernel or other processes even from inside a
# user namespace, or that the namespaces do not cover at all (capabilities(7)).
DANGEROUS_CAPS = (
    "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_SYS_TIME",
    "CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_BPF", "CAP_PERFMON", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE",
    "CAP_SYSLOG", "CAP_LINUX_IMMUTABLE", "CAP_AUDIT_CONTROL", "CAP_SYS_RESOURCE", "CAP_CHECKPOINT_RESTORE",
)
# Namespaces whose sharing with the host exposes the host, and how much (a weight).
NS_WEIGHTS = {"net": 500, "mount": 500, "pid": 400, "ipc": 200, "uts": 100, "cgroup": 100}
NS_WHAT = {
    "net": "host network: host interfaces, loopback services and abstract sockets",
    "mount": "host mount table: every host file the identity allows",
    "pid": "host processes: signals and /proc of every host process the identity allows",
    "ipc": "host System V IPC and POSIX message queues",
    "uts": "host hostname",
    "cgroup": "host cgroup tree paths",
}
PROC_NS_NAME = {"mount": "mnt"}  # /proc/PID/ns/<name> where it differs from ours


@dataclass(frozen=True)
class Check:
    id: str
    weight: int
    exposure: float  # 0 closed .. 1 open
    text: str  # what was found, in the user's words

    @property
    def points(self) -> float:
        return self.weight * self.exposure


@dataclass(frozen=True)
class Report:
    source: str
    name: str
    checks: tuple[Check, ...]

    @property
    def score(self) -> float:
        total = sum(c.weight for c in self.checks)
        return round(10 * sum(c.points for c in self.checks) / total, 1) if total else 0.0


# ---- item 10: which joined namespaces are the host's -----------------------------------------

def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_linx_workload(pid: int) -> bool:
    """Is `pid` a linx-spec workload or one of its descendants (a linx-agent up its parent chain)?"""
    for _ in range(64):  # bounded: a pid chain is never that deep in practice
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return False
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm == "linx-agent":
            return True
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid <= 1:
            return False
        pid = ppid
    return False


def joined_host_namespace(kind: str, path: str) -> str | None:
    """Why joining `path` (a namespace of kind `kind`) joins the host's, or None.

    The host's: the namespace of pid 1 (same device and inode as /proc/1/ns/<kind>,
    when this process may read it), the one linx-spec itself runs in, or one of a
    process that is not a linx-spec workload.  A named netns (/run/netns/NAME) or
    another bind-mounted namespace file is someone's deliberate setup: fine."""
    proc_name = PROC_NS_NAME.get(kind, kind)
    joined = _ns_id(path)
    if joined is not None and joined == _ns_id(f"/proc/1/ns/{proc_name}"):
        return f"is the {kind} namespace of pid 1 (the host's own)"
    if joined is not None and joined == _ns_id(f"/proc/self/ns/{proc_name}"):
        return f"is the {kind} namespace linx-spec itself runs in (the host's, for a runner on the host)"
    parts = os.path.normpath(path).split("/")
    if len(parts) < 3 or parts[1] != "proc":
        return None
    if parts[2] in ("self", "thread-self"):
        return f"is the {kind} namespace linx-spec itself runs in (the host's, for a runner on the host)"
    if not parts[2].isdigit() or len(parts[2]) > 10:
        return None
    pid = int(parts[2])
    if pid == 1:
        return f"is the {kind} namespace of pid 1 (the host's own)"
    if not _is_linx_workload(pid):
        return f"is a {kind} namespace of pid {pid}, a process that is not a linx-spec workload"
    return None


def joined_host_namespaces(joins: Iterable[tuple[str, str]]) -> list[str]:
    """One warning per joined namespace, (kind, path), that is the host's (see
    joined_host_namespace): a Spec's `namespaces.joined().items()` or a Plan's `ns_join`."""
    out = []
    for kind, path in joins:
        why = joined_host_namespace(kind, path)
        if why:
            out.append(f"namespaces.{kind}: {path} {why}; the workload runs in it with its capabilities")
    return out


# ---- the checks -------------------------------------------------------------------------------

def _bounding(spec: "Spec") -> list[str]:
    """The capability names the workload can ever hold (its bounding set), from the spec alone."""
    from .spec.capabilities import CAP_NAMES, DEFAULT_CAPS, names_mask

    caps = spec.capabilities
    if caps is None:
        return list(DEFAULT_CAPS)
    if caps.keep is not None:
        mask = names_mask(caps.keep)
    elif caps.bounding is not None:
        mask = names_mask(caps.bounding)
    else:
        mask = 0
        for s in ("permitted", "effective", "inheritable", "ambient"):
            mask |= names_mask(getattr(caps, s) or [])
    return [CAP_NAMES[n] for n in sorted(CAP_NAMES) if mask >> n & 1]


def _short(names: list[str]) -> str:
    return ", ".join(n[4:].lower() for n in names)


def _seccomp_plan(spec: "Spec", base_dir: str):
    """The compiled filter (None: no filter); PlanError when it cannot be compiled."""
    if spec.seccomp is None:
        return None
    from .plan import seccomp as _seccomp

    return _seccomp.resolve(spec.seccomp, spec, base_dir)


def _allows(action: str) -> bool:
    # A conditional entry ("arg0 == 1: errno EPERM; otherwise allow") is open for some calls.
    return action.startswith(("allow", "log", "trace")) or "allow" in action


def _checks(spec: "Spec", base_dir: str) -> list[Check]:
    from .spec.capabilities import DEFAULT_CAPS
    from .spec.mounts import Bind, Dev, Proc, Sysfs, expand_paths

    out: list[Check] = []
    ns = spec.namespaces
    new, joined = set(ns.created()), ns.joined()
    uid0 = spec.process.user.uid == 0

    host_joins = joined_host_namespaces(joined.items())
    out.append(Check("host-namespace-joined", 1500, 1.0 if host_joins else 0.0,
                     "; ".join(host_joins) if host_joins else "no namespace of the host is joined"))

    # Identity.
    if "user" in new or "user" in joined:
        host0 = spec.idmap is not None and any(r.host == 0 for r in spec.idmap.uid or ())
        if host0:
            out.append(Check("user-namespace", 1000, 1.0, "the uid map maps host root (uid 0) into the namespace"))
        elif spec.idmap is None or not spec.idmap.uid:
            out.append(Check("user-namespace", 1000, 0.3 if uid0 else 0.1,
                             "new user namespace with the default map: uid 0 inside is the caller's own uid "
                             "(host root when the caller is root)"))
        else:
            out.append(Check("user-namespace", 1000, 0.0, "new user namespace, host root not mapped"))
    else:
        out.append(Check("user-namespace", 1000, 1.0 if uid0 else 0.4,
                         "no user namespace: " + ("uid 0 inside is host root" if uid0 else
                                                  f"uid {spec.process.user.uid} is the same uid on the host")))

    for kind, weight in NS_WEIGHTS.items():
        if kind in new:
            text, e = f"new {kind} namespace", 0.0
        elif kind in joined:
            text, e = f"joins {joined[kind]} (counted under host-namespace-joined when it is the host's)", 0.0
        else:
            text, e = f"shares the {NS_WHAT[kind]}", 1.0
        out.append(Check(f"{kind}-namespace", weight, e, text))

    # Capabilities.
    bounding = _bounding(spec)
    dangerous = [c for c in bounding if c in DANGEROUS_CAPS]
    beyond = [c for c in bounding if c not in DEFAULT_CAPS and c not in DANGEROUS_CAPS]
    out.append(Check("capabilities-dangerous", 1500, 1.0 if dangerous else 0.0,
                     f"keeps {_short(dangerous)}" if dangerous else "no capability that reaches the host kernel"))
    out.append(Check("capabilities-beyond-docker", 500, 1.0 if beyond else 0.0,
                     f"beyond docker's default set: {_short(beyond)}" if beyond else
                     "nothing beyond docker's default set"))
    defaults = [c for c in bounding if c in DEFAULT_CAPS]
    out.append(Check("capabilities", 400, len(defaults) / len(DEFAULT_CAPS),
                     f"{len(defaults)} of docker's {len(DEFAULT_CAPS)} default capabilities in the bounding set"
                     + (" (absent `capabilities:`: docker's set)" if spec.capabilities is None else "")))
    inheritable = spec.capabilities is not None and bool(spec.capabilities.inheritable)
    out.append(Check("capabilities-inheritable", 200, 1.0 if inheritable else 0.0,
                     "inheritable set not empty (CVE-2022-29162: file capabilities gain them at execve)"
                     if inheritable else "inheritable set empty (for uid 0; `keep:` fills it for another uid)"))

    out.append(Check("no-new-privs", 700, 0.0 if spec.no_new_privs else 1.0,
                     "no_new_privs on: setuid binaries and file capabilities grant nothing" if spec.no_new_privs
                     else "no_new_privs off: a setuid binary or file capability can raise privileges"))

    # System calls.
    sc = _seccomp_plan(spec, base_dir)
    if sc is None:
        out.append(Check("seccomp", 1000, 1.0, "no seccomp filter: every system call reaches the kernel"))
    elif _allows(sc.default):
        out.append(Check("seccomp", 1000, 0.3, "seccomp deny-list (default allow): unlisted system calls reach "
                         "the kernel"))
    else:
        out.append(Check("seccomp", 1000, 0.0, f"seccomp allow-list (default {sc.default})"))
    uring = None if sc is None else dict(sc.table).get("io_uring_setup", f"{sc.default} (default)")
    open_uring = uring is None or _allows(uring)
    out.append(Check("io-uring", 500, 1.0 if open_uring else 0.0,
                     "io_uring_setup allowed: io_uring operations bypass seccomp" if open_uring
                     else f"io_uring_setup: {uring}"))

    # Filesystem.
    m = spec.mounts if "mount" in new else None
    entries = list(m.entries) if m else []
    own_root = m is not None and m.rootfs is not None
    ro_root = m is not None and m.rootfs_readonly
    if ro_root:
        text, e = "root read-only", 0.0
    elif own_root:
        text, e = "own root writable", 0.3
    else:
        text, e = "the host's / is the root, writable as far as the identity allows", 1.0
    out.append(Check("rootfs-writable", 700, e, text))
    writable_binds = [b.source for b in entries if isinstance(b, Bind) and not b.readonly]
    out.append(Check("host-paths-writable", 400, 1.0 if writable_binds else 0.0,
                     "writable host paths bound: " + ", ".join(writable_binds) if writable_binds
                     else "no writable host path bound"))

    proc_seen = not own_root or any(isinstance(x, Proc) for x in entries)
    masked: list[str] = []
    readonly: list[str] = []
    if m is not None:
        from .spec.mounts import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

        masked = expand_paths(list(m.masked_paths), DEFAULT_MASKED_PATHS)
        readonly = expand_paths(list(m.readonly_paths), DEFAULT_READONLY_PATHS)
    sys_ro = "/proc/sys" in readonly or "/proc/sys" in masked or ro_root and not any(
        isinstance(x, Proc) for x in entries)
    out.append(Check("proc-sys-writable", 600, 0.0 if not proc_seen or sys_ro else 1.0,
                     "no /proc" if not proc_seen else "/proc/sys read-only" if sys_ro
                     else "/proc/sys and /proc/sysrq-trigger writable as far as the identity allows"))
    unmasked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware") if p not in masked]
    sys_seen = not own_root or any(isinstance(x, Sysfs) for x in entries)
    unmasked = [p for p in unmasked if (p.startswith("/proc") and proc_seen) or (p.startswith("/sys") and sys_seen)]
    out.append(Check("masked-paths", 300, len(unmasked) / 4,
                     "not masked: " + ", ".join(unmasked) if unmasked else "kernel-internal files masked"))

    host_dev = not own_root or any(isinstance(b, Bind) and (b.source == "/dev" or b.source.startswith("/dev/"))
                                   for b in entries)
    minimal_dev = any(isinstance(x, Dev) for x in entries)
    # mounts.devices: each char/block node is hardware (or a kernel interface) the workload can open.
    nodes = [f"{d.path} ({d.type} {d.major}:{d.minor})" for d in (m.devices if m else ()) if d.type != "p"]
    if host_dev and not minimal_dev:
        dev_text, dev_e = "the host's /dev is reachable (disks, ttys, /dev/mem as far as the identity allows)", 1.0
    elif nodes:
        dev_text, dev_e = "a minimal /dev, plus device nodes: " + ", ".join(nodes), 0.5
    else:
        dev_text, dev_e = "only a minimal /dev (or none)", 0.0
    out.append(Check("devices", 700, dev_e, dev_text))

    # Host interfaces moved into the workload (type: existing).  `in_use: take` moves one the
    # host is using (up, addressed, routed, maybe its default route): the host loses that
    # connectivity until the workload ends, and the workload drives the host's wire directly.
    net = spec.network if "net" in new else None
    existing = [i for i in (net.interfaces if net else ()) if i.type == "existing"]
    taken = [i.device for i in existing if i.in_use == "take"]
    if taken:
        text, e = (f"takes host interface{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} even in use "
                   "(in_use: take): the host loses its addresses and routes there until the workload ends"), 1.0
    elif existing:
        text, e = (f"moves host interface{'s' if len(existing) > 1 else ''} "
                   f"{', '.join(str(i.device) for i in existing)} in, only when idle (in_use: refuse)"), 0.3
    else:
        text, e = "no host interface moved in", 0.0
    out.append(Check("host-interface-taken", 400, e, text))

    # Resources.
    cg = spec.cgroup
    pids = cg is not None and cg.pids is not None and cg.pids.max is not None
    mem = cg is not None and cg.memory is not None and cg.memory.max is not None
    out.append(Check("pids-limit", 400, 0.0 if pids else 1.0,
                     "cgroup pids.max set" if pids else "no pids limit: a fork bomb takes the host's pid space"))
    out.append(Check("memory-limit", 400, 0.0 if mem else 1.0,
                     "cgroup memory.max set" if mem else "no memory limit: the host's OOM killer decides"))
    return out


def audit(spec: "Spec", source: str = "<api>", base_dir: str | None = None) -> Report:
    """The exposure report of one spec (reads /proc for joined namespaces; changes nothing)."""
    from pathlib import Path

    name = spec.name or (Path(source).stem if source not in ("-", "<api>") else "workload")
    return Report(source, name, tuple(_checks(spec, base_dir or os.getcwd())))


def audit_files(files: list[str], overrides: list[str], fmt: str, threshold: float | None) -> int:
    """`linx-spec audit`: print the reports; EXIT_ABOVE_THRESHOLD when a score is above
    `threshold`.  A SpecError or PlanError propagates (the CLI maps it to 65 or 66)."""
    import sys

    from .load import load_file

    if fmt not in ("text", "json", "github"):
        print(f"linx-spec: unknown --format {fmt}; use text, json or github", file=sys.stderr)
        return 2
    reports = []
    for f in files:
        base = os.path.dirname(os.path.abspath(f)) if f != "-" else os.getcwd()
        reports.append(audit(load_file(f, overrides=overrides), f, base))
    if fmt == "json":
        print(format_json(reports))
    for r in reports if fmt != "json" else ():
        print(format_text(r) if fmt == "text" else format_github(r, threshold))
    above = [r for r in reports if threshold is not None and r.score > threshold]
    for r in above:
        print(f"linx-spec: {r.source}: exposure {r.score}/10 is above the threshold {threshold:g}", file=sys.stderr)
    return EXIT_ABOVE_THRESHOLD if above else 0


# ---- output ------------------------------------------------------------------------------------

def format_text(r: Report) -> str:
    lines = [f"{r.source} ({r.name})"]
    for c in sorted(r.checks, key=lambda c: -c.points):
        mark = "ok " if c.exposure == 0 else "!! " if c.exposure >= 1 else "!  "
        lines.append(f"  {mark} {c.id:<27} {c.points / 100:5.1f}/{c.weight / 100:<4.1f} {c.text}")
    lines.append(f"  exposure score: {r.score}/10 (10 = most exposed)")
    return "\n".join(lines)


def format_json(reports: list[Report]) -> str:
    return json.dumps([{"source": r.source, "name": r.name, "score": r.score,
                        "checks": [asdict(c) for c in r.checks]} for r in reports], indent=2)


def format_github(r: Report, threshold: float | None) -> str:
    level = "error" if threshold is not None and r.score > threshold else "notice"
    worst = [c for c in sorted(r.checks, key=lambda c: -c.points) if c.exposure > 0][:5]
    msg = f"linx-spec audit: {r.score}/10 exposed; " + "; ".join(f"{c.id}: {c.text}" for c in worst)
    msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{level} file={r.source}::{msg}"


__all__ = ["Check", "Report", "audit", "audit_files", "joined_host_namespaces", "joined_host_namespace", "EXIT_ABOVE_THRESHOLD",
           "format_text", "format_json", "format_github"]
