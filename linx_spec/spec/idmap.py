"""`idmap:` uid/gid maps of a new user namespace, written from the host while parked."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Model

Id = Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1)]


class IdRange(Model):
    """`count` ids starting at `container` inside map to ids starting at `host` outside."""

    container: Id = Field(description="First id inside the user namespace.")
    host: Id | Literal["self", "subordinate"] = Field(
        description="First id on the host (in the runner's user namespace); `self`: the caller's own uid or gid "
        "(count 1); `subordinate`: the next `count` ids of the caller's ranges in /etc/subuid and /etc/subgid, "
        "mapped through newuidmap/newgidmap (package uidmap) as podman and bwrap do, so a normal user gets "
        "65536 ids: `[{container: 0, host: self}, {container: 1, host: subordinate, count: 65536}]`.")
    count: Annotated[int, Field(strict=True, ge=1, lt=2**32, description="How many consecutive ids the range maps.")] = 1


class IdMap(Model):
    """Id maps for a new user namespace. Without it: the caller's own uid and gid map to 0 (like `unshare -r`)."""

    uid: list[IdRange] = Field(default_factory=list, description="uid map ranges (at most 340, none overlapping).")
    gid: list[IdRange] = Field(default_factory=list, description="gid map ranges (at most 340, none overlapping).")
    setgroups: Literal["allow", "deny"] | None = Field(
        default=None,
        description="Whether setgroups(2) is allowed inside. Default: `deny` when the map is the caller's "
        "own single id (the kernel requires it for unprivileged maps), `allow` otherwise.",
    )

    @model_validator(mode="after")
    def _no_overlap(self) -> "IdMap":
        for name in ("uid", "gid"):
            ranges = getattr(self, name)
            if len(ranges) > 340:
                raise ValueError(f"{name}: at most 340 ranges (kernel limit)")
            for side in ("container", "host"):
                # `self` and `subordinate` resolve at plan time (plan/idmap.py checks them there)
                spans = sorted((getattr(r, side), getattr(r, side) + r.count) for r in ranges
                               if isinstance(getattr(r, side), int))
                for (a0, a1), (b0, _b1) in zip(spans, spans[1:]):
                    if b0 < a1:
                        raise ValueError(f"{name} map: {side} ranges overlap at id {b0}")
            for r in ranges:
                if r.host == "self" and r.count != 1:
                    raise ValueError(f"{name} map: `host: self` maps one id (count 1), got count {r.count}")
        return self
