"""The capabilities plan: the five masks the child sets before execve.

Resolved against what this host lets the workload have: the kernel's last
capability (/proc/sys/kernel/cap_last_cap), and without a user namespace the
runner's own bounding set (/proc/self/status).  The names and the spec model
live in spec/capabilities.py.
"""

from __future__ import annotations

import os

from ..errors import PlanError
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec import Spec
    from ..spec.capabilities import Capabilities


class CapsPlan(Record):
    """Capability masks (bit N = capability N)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int


def kernel_last_cap() -> int:
    """The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap, Linux 3.2)."""
    from ..spec.capabilities import LAST_KNOWN_CAP

    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return LAST_KNOWN_CAP


def own_caps(which: str = "CapEff") -> int:
    """A capability set of this process (CapEff, CapPrm, CapBnd...) from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(which + ":"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available(spec: "Spec") -> int | None:
    """The capabilities the workload can be given, or None when the child cannot set
    capabilities at all (an unprivileged runner without a user namespace)."""
    from ..spec.capabilities import CAPABILITIES

    ns = spec.namespaces
    kernel_all = (1 << (kernel_last_cap() + 1)) - 1
    if "user" in ns.created() or "user" in ns.joined():
        # user_namespaces(7): a process that creates or enters a user namespace
        # has every capability in it, the bounding set included.
        return kernel_all
    if os.geteuid() != 0:
        return None
    # A root runner's agent gets the runner's bounding set at execve
    # (capabilities(7)); a container around linx-spec may have narrowed it.
    mask = own_caps("CapBnd") & kernel_all
    # Dropping from the bounding set needs CAP_SETPCAP.
    return mask if mask >> CAPABILITIES["CAP_SETPCAP"] & 1 else None


def resolve(caps: Capabilities | None, spec: "Spec") -> CapsPlan | None:
    """The five masks the child sets before execve, equal to what the workload sees after it.

    `caps` None is the default: docker's set (DEFAULT_CAPS) as the bounding set,
    and as permitted and effective for uid 0; a non-root uid gets nothing (as in
    docker).  When the child could not change its capabilities anyway (not root,
    no user namespace) the default leaves them alone and returns None."""
    plan = _resolve(caps, spec)
    return plan


def _resolve(caps: Capabilities | None, spec: "Spec") -> CapsPlan | None:
    # The names and masks are the spec's tables (imported here: a cached plan loads this module
    # without pydantic).
    from ..spec.capabilities import _SETS, ALL, CAP_NAMES, CAPABILITIES, DEFAULT_CAPS, _listed, names_mask

    can = available(spec)
    if can is None:
        if caps is None:
            return None  # an unprivileged process without a user namespace has nothing to drop
        raise PlanError("setting capabilities needs root, or a new user namespace",
                        "add `user` to namespaces, or run as root, or remove `capabilities`", "capabilities")
    root = spec.process.user.uid == 0

    if caps is None:
        default = names_mask(DEFAULT_CAPS) & can
        return CapsPlan(bounding=default, effective=default if root else 0, permitted=default if root else 0,
                        inheritable=0, ambient=0)

    last = kernel_last_cap()
    for s in ("keep", *_SETS):
        for name in getattr(caps, s) or ():
            if name == ALL or can >> CAPABILITIES[name] & 1:
                continue
            if CAPABILITIES[name] > last:
                raise PlanError(f"this kernel does not know {name} (its last capability is "
                                f"{CAP_NAMES.get(last, last)})", "remove it, or run on a newer kernel",
                                f"capabilities.{s}")
            raise PlanError(f"linx-spec cannot grant {name}: it is not in the runner's own bounding set "
                            "(something around linx-spec dropped it)",
                            "remove it, or add `user` to namespaces (capabilities there are the namespace's own)",
                            f"capabilities.{s}")

    if caps.keep is not None:
        keep = names_mask(caps.keep, can)
        # uid 0: execve gives permitted = effective = bounding, nothing else is
        # needed.  Another uid keeps them only through the ambient set, which
        # needs them inheritable too.
        return CapsPlan(bounding=keep, effective=keep, permitted=keep,
                        inheritable=0 if root else keep, ambient=0 if root else keep)

    sets = {s: names_mask(getattr(caps, s), can) for s in _SETS if getattr(caps, s) is not None}
    inheritable = sets.get("inheritable", 0)
    ambient = sets.get("ambient", 0)
    bounding = sets.get("bounding")
    if bounding is None:
        bounding = 0
        for mask in sets.values():
            bounding |= mask
    # What execve will set (capabilities(7)): uid 0 gets bounding | inheritable
    # (inheritable is within bounding), any other uid its ambient set.
    after_exec = bounding if root else ambient
    for s in ("permitted", "effective"):
        if s in sets and sets[s] != after_exec:
            who = f"uid {spec.process.user.uid}"
            if root:
                why = "uid 0 execs with permitted = effective = the bounding set"
                remedy = f"make {s} equal to bounding, or leave it out"
            else:
                why = f"{who} is not root: execve sets permitted and effective to the ambient set"
                remedy = (f"add the capabilities to ambient and inheritable (or use `keep:`), or leave {s} out"
                          if sets[s] & ~after_exec else f"make {s} equal to ambient, or leave it out")
            raise PlanError(f"{s} [{_listed(sets[s])}] is not what the workload would get: {why} "
                            f"([{_listed(after_exec)}]; capabilities(7))", remedy, f"capabilities.{s}")
    return CapsPlan(bounding=bounding, effective=after_exec, permitted=after_exec, inheritable=inheritable,
                    ambient=ambient)
