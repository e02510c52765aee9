"""The one place the OCI bridge reads a built Plan.

Export works from the Spec; only what the plan resolves against this host is
taken from `build_plan(...)`'s result: the capability masks (the default set,
`all`, what uid 0 gets at execve), the rlimits (an omitted soft or hard side is
what the workload inherits), the id maps (the default one maps the caller),
the environment (PATH and HOME filled in) and the seccomp default and ABIs
(a profile's own).  Every attribute access on the Plan is below, so a change
of the Plan types is fixed here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.capabilities import mask_names

RLIM_INFINITY = 2**64 - 1  # rlim_t all ones; the plan keeps Python's -1


@dataclass(frozen=True)
class Resolved:
    env: tuple[str, ...]  # NAME=value, PATH and HOME included
    caps: dict[str, list[str]] | None  # the five sets by name; None: left as the runner's
    rlimits: tuple[tuple[str, int, int], ...]  # (name, soft, hard), RLIM_INFINITY for unlimited
    oom_score_adj: int | None
    uid_map: tuple[tuple[int, int, int], ...]  # (inside, outside, count)
    gid_map: tuple[tuple[int, int, int], ...]
    setgroups: str | None  # allow | deny; None without a new user namespace
    seccomp_default: str | None
    seccomp_architectures: tuple[str, ...]


def _ranges(text: str) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(map(int, line.split())) for line in text.splitlines() if line.strip())  # type: ignore[misc]


def _limit(value: int) -> int:
    return RLIM_INFINITY if value < 0 or value >= RLIM_INFINITY else value


def resolved(plan) -> Resolved:
    caps = None
    if plan.capabilities is not None:
        c = plan.capabilities
        caps = {s: mask_names(getattr(c, s)) for s in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    rl = plan.rlimits
    limits = tuple((lim.name, _limit(lim.soft), _limit(lim.hard)) for lim in rl.limits) if rl is not None else ()
    idm = plan.idmap
    sc = plan.seccomp
    return Resolved(
        env=tuple(plan.process.env),
        caps=caps,
        rlimits=limits,
        oom_score_adj=rl.oom_score_adj if rl is not None else None,
        uid_map=_ranges(idm.uid_map) if idm is not None else (),
        gid_map=_ranges(idm.gid_map) if idm is not None else (),
        setgroups=idm.setgroups if idm is not None else None,
        seccomp_default=sc.default if sc is not None else None,
        seccomp_architectures=tuple(sc.architectures) if sc is not None else (),
    )


def default_env() -> dict[str, str]:
    """What the plan puts in every workload's environment unless the spec says otherwise."""
    from ..plan import DEFAULT_PATH

    return {"PATH": DEFAULT_PATH, "HOME": "/"}
