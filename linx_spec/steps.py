"""THE checkpoint order: one list, read top to bottom.

The child is cloned and parked (`spawn`), the host-side steps run against it
while it waits, then the child-side steps run inside it in this order, and only
then does it execve.  Each step names its side and why it sits where it does.
`linx-spec plan` prints this same list with resolved arguments, so plan and
apply cannot drift.  Step ids are shared with agent/lx_steps.h (a test compares).

A host step's `apply(plan, ctx)` is its entry point (the runner calls it and
nothing else; host/<step>.py is imported only then).  Agent and child steps
have none: the agent runs them by id.
"""

from __future__ import annotations

from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any, Callable, Literal
    from .plan.workload import Plan
    from .runner import HostContext

    Side = Literal["agent", "host", "child"]


class Step(Record):
    id: int
    name: str
    side: Side
    reason: str
    active: Callable[["Plan"], bool]
    args: Callable[["Plan"], dict[str, Any]]
    apply: Callable[["Plan", "HostContext"], None] | None = None  # host steps: the entry point


def _always(plan: "Plan") -> bool:
    return True


def _spawn_args(plan: "Plan") -> dict[str, Any]:
    return {"new": list(plan.ns_new), "join": {n: p for n, p in plan.ns_join}}


def _idmap_args(plan: "Plan") -> dict[str, Any]:
    m = plan.idmap
    return {"uid_map": m.uid_map.strip().splitlines(), "gid_map": m.gid_map.strip().splitlines(),
            "setgroups": m.setgroups}


def _cgroup_args(plan: "Plan") -> dict[str, Any]:
    return plan.cgroup.describe() if plan.cgroup is not None else {}


def _network_args(plan: "Plan") -> dict[str, Any]:
    return plan.network.describe() if plan.network is not None else {}


def _rlimits_args(plan: "Plan") -> dict[str, Any]:
    return plan.rlimits.describe() if plan.rlimits is not None else {}


def _mounts_args(plan: "Plan") -> dict[str, Any]:
    return plan.mounts.describe() if plan.mounts is not None else {}


def _seccomp_args(plan: "Plan") -> dict[str, Any]:
    return plan.seccomp.describe() if plan.seccomp is not None else {}


# Host entry points.  Imported on call: pyroute2 alone costs tens of milliseconds.
def _idmap_apply(plan: "Plan", ctx: "HostContext") -> None:
    from .host import idmap

    assert plan.idmap is not None  # active only then
    idmap.apply_from_host(plan.idmap, ctx)


def _cgroup_apply(plan: "Plan", ctx: "HostContext") -> None:
    from .host import cgroup

    assert plan.cgroup is not None
    cgroup.apply_from_host(plan.cgroup, ctx)


def _network_apply(plan: "Plan", ctx: "HostContext") -> None:
    from .host import network

    network.apply_from_host(plan.network, ctx)


def _rlimits_apply(plan: "Plan", ctx: "HostContext") -> None:
    from .host import rlimits

    assert plan.rlimits is not None
    rlimits.apply_from_host(plan.rlimits, ctx)


def _caps_args(plan: "Plan") -> dict[str, Any]:
    from .spec.capabilities import mask_names

    c = plan.capabilities
    return {"effective": mask_names(c.effective), "permitted": mask_names(c.permitted),
            "inheritable": mask_names(c.inheritable), "ambient": mask_names(c.ambient)}


def _bounding_args(plan: "Plan") -> dict[str, Any]:
    from .spec.capabilities import mask_names

    return {"keep": mask_names(plan.capabilities.bounding)}


def _user_args(plan: "Plan") -> dict[str, Any]:
    p = plan.process
    return {"uid": p.uid, "gid": p.gid, "groups": list(p.groups)}


def _cwd_args(plan: "Plan") -> dict[str, Any]:
    umask = plan.process.umask
    return {"cwd": plan.process.cwd, "umask": None if umask is None else f"{umask:04o}"}  # as umask(1) prints it


def _exec_args(plan: "Plan") -> dict[str, Any]:
    p = plan.process
    return {"path": p.exec_path, "argv": list(p.argv), "env": list(p.env)}


# The child does nothing between PROCEED and execve that is not listed here;
# child step X is `lx_X_in_child()` in agent/lx_X.c (tests/unit/test_agent_layout.py).
STEPS: list[Step] = [
    Step(1, "spawn", "agent",
         "first: clone into the new namespaces (joined ones entered before clone) and park the child "
         "on a pipe, created but not exec'd",
         _always, _spawn_args),
    Step(10, "idmap", "host",
         "before anything else: until its uid/gid maps are written the child has no identity and no "
         "capabilities in its user namespace",
         lambda p: p.idmap is not None, _idmap_args, _idmap_apply),
    Step(11, "cgroup", "host",
         "before the child runs a single instruction of its own, so every page and pid it uses is "
         "counted and limited",
         lambda p: p.cgroup is not None, _cgroup_args, _cgroup_apply),
    Step(12, "network", "host",
         "needs host privileges and the child's netns (by pid); done before the child can see its interfaces",
         lambda p: p.network is not None and (p.network.needs_netlink or bool(p.network.sysctls)),
         _network_args, _network_apply),
    Step(13, "rlimits", "host",
         "prlimit (and oom_score_adj) from the host: raising a hard limit is impossible from inside a user "
         "namespace (as runc)",
         lambda p: p.rlimits is not None, _rlimits_args, _rlimits_apply),
    Step(29, "session", "child",
         "first in the child: a session of its own (setsid, as runc), so the caller's terminal is never its "
         "controlling tty (TIOCSTI); with -t the pty becomes it",
         _always, lambda p: {}),
    Step(30, "ns_root", "child",
         "before the privileged steps: uid/gid 0 of a new user namespace (as runc's nsexec), so the files "
         "they create are owned by a mapped id",
         _always, lambda p: {}),
    Step(18, "loopback", "child",
         "lo up with one ioctl when there is no other network work (needs CAP_NET_ADMIN in the netns: "
         "before the identity switch); otherwise the network step does it",
         lambda p: p.network is not None and p.network.loopback and not p.network.needs_netlink
         and not p.network.sysctls, lambda p: {}),
    Step(19, "cgroupns", "child",
         "after the cgroup step placed the child: the namespace's root becomes the workload's own cgroup",
         lambda p: p.has_new("cgroup"), lambda p: {}),
    Step(40, "time", "child",
         "unshare the time namespace and write its offsets while no process is in it yet (as runc); "
         "after ns_root (CAP_SYS_TIME in the user namespace that owns it); execve enters it",
         lambda p: p.has_new("time"),
         lambda p: {"monotonic_ns": p.time_offsets_ns[0], "boottime_ns": p.time_offsets_ns[1]}
         if p.time_offsets_ns else {}),
    Step(20, "hostname", "child",
         "needs CAP_SYS_ADMIN in the uts namespace, so before the identity switch",
         lambda p: p.hostname is not None or p.domainname is not None,
         lambda p: {"hostname": p.hostname, "domainname": p.domainname}),
    Step(21, "mounts", "child",
         "needs CAP_SYS_ADMIN, so before the identity switch; propagation is made private before any mount",
         lambda p: p.has_new("mount") or p.mounts is not None, _mounts_args),  # or a joined one
    Step(22, "bounding", "child",
         "drop the bounding set while still privileged (needs CAP_SETPCAP), before the identity switch",
         lambda p: p.capabilities is not None, _bounding_args),
    Step(23, "user", "child",
         "setgroups, setresgid, setresuid: after the privileged steps, before the capability sets "
         "(a uid change would clear them)",
         _always, _user_args),
    Step(24, "capabilities", "child",
         "after the identity switch (kept across it with PR_SET_KEEPCAPS), then ambient, which needs "
         "permitted and inheritable",
         lambda p: p.capabilities is not None, _caps_args),
    Step(25, "cwd", "child",
         "chdir (and umask) as the final identity, so permission checks are the workload's own",
         _always, _cwd_args),
    Step(31, "keyring", "child",
         "a fresh session keyring (as runc): after the identity switch, so the workload owns it; before "
         "seccomp, which often forbids keyctl",
         _always, lambda p: {}),
    Step(32, "signals", "child",
         "every disposition default and the mask empty (raw rt_sigaction: 32 and 33 too): they survive execve; "
         "before seccomp, which may forbid rt_sigaction",
         _always, lambda p: {}),
    Step(33, "pdeathsig", "child",
         "arm PR_SET_PDEATHSIG again: the identity switch and the capability sets clear it; before seccomp, "
         "which may forbid prctl",
         _always, lambda p: {}),
    Step(34, "close_fds", "child",
         "every fd but 0-2 close-on-exec (close_range): late, so the steps above keep theirs; the status "
         "pipe stays open until execve",
         _always, lambda p: {}),
    Step(26, "no_new_privs", "child",
         "before seccomp: an unprivileged filter install requires it; nothing after it needs privileges",
         lambda p: p.no_new_privs, lambda p: {}),
    Step(27, "seccomp", "child",
         "last: the filter may forbid the syscalls of the steps before it",
         lambda p: p.seccomp is not None, _seccomp_args),
    Step(35, "init", "child",
         "after seccomp, so the init (pid 1) is filtered too: fork, then pid 1 loops forwarding signals and "
         "reaping orphans while its child goes on to exec (the plan checks the filter allows the init's "
         "syscalls)",
         lambda p: p.process.init, lambda p: {}),
    Step(28, "exec", "child",
         "execve: the workload's first instruction already runs fully constrained; success is seen as "
         "EOF on a close-on-exec pipe",
         _always, _exec_args),
]

# Ids that appear in errors but are not checkpoint steps.
EXTRA_IDS = {0: ("protocol", "agent"), 2: ("parked", "agent")}

STEP_BY_ID: dict[int, Step] = {s.id: s for s in STEPS}
for _id, (_name, _side) in EXTRA_IDS.items():
    STEP_BY_ID[_id] = Step(_id, _name, _side, "", lambda p: False, lambda p: {})  # type: ignore[arg-type]
STEP_BY_NAME: dict[str, Step] = {s.name: s for s in STEPS}


# Without no_new_privs a seccomp filter is a privileged install (seccomp(2): CAP_SYS_ADMIN), so
# it goes in while the child still holds every capability: after the mounts, before the keyring,
# the bounding set and the identity switch, as runc does (standard_init_linux.go: "without
# NoNewPrivileges seccomp is a privileged operation, so we need to do this before dropping
# capabilities").  The filter must then allow what those later steps call (keyctl, capset,
# setresuid, prctl, rt_sigaction, close_range); a step it refuses fails by name.
def _early_seccomp(plan: "Plan") -> bool:
    return plan.seccomp is not None and not plan.no_new_privs


def active_steps(plan: "Plan") -> list[Step]:
    steps = [s for s in STEPS if s.active(plan)]
    if _early_seccomp(plan):
        seccomp = STEP_BY_NAME["seccomp"]
        steps.remove(seccomp)
        # The keyring step moves up with it (Docker's default profile forbids keyctl): the
        # keyring then belongs to the pre-switch identity, as runc's.
        keyring = STEP_BY_NAME["keyring"]
        steps.remove(keyring)
        at = next(i for i, s in enumerate(steps) if s.name in ("bounding", "user"))
        steps[at:at] = [keyring, seccomp]
    return steps


def child_order(plan: "Plan") -> list[int]:
    """Child-side step ids in order, without exec (the agent always execs last)."""
    return [s.id for s in active_steps(plan) if s.side == "child" and s.name != "exec"]
