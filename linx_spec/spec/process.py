"""`process:` what runs, as whom, where, with which environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from .base import Model


class User(Model):
    """The identity the workload runs as, inside its user namespace (if any)."""

    uid: Annotated[int, Field(ge=0, lt=2**32 - 1, description="User id inside the workload.")] = 0
    gid: Annotated[int, Field(ge=0, lt=2**32 - 1, description="Primary group id inside the workload.")] = 0
    groups: list[Annotated[int, Field(ge=0, lt=2**32 - 1)]] = Field(
        default_factory=list,
        description="Supplementary group ids. Empty by default: the workload keeps no host groups.",
    )


class Process(Model):
    """The program the workload runs."""

    command: list[str] = Field(
        min_length=1,
        description="argv of the workload. The first word is an absolute path, or a name looked up "
        "on the PATH of `env` (inside `rootfs` when one is set).",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of the workload. Nothing is inherited from the caller: the workload "
        "gets PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, HOME=/ (or the "
        "value given here) and exactly the variables listed.",
    )
    cwd: str = Field(default="/", description="Working directory inside the workload (absolute).")
    user: User = Field(default_factory=User, description="Identity inside the workload.")
    umask: Annotated[int | None, Field(ge=0, le=0o777, description="File mode creation mask, e.g. 0o022 (YAML `0o022` or 18).")] = None

    @field_validator("command")
    @classmethod
    def _no_nul(cls, v: list[str]) -> list[str]:
        for word in v:
            if "\0" in word:
                raise ValueError("command words must not contain NUL")
        if not v[0]:
            raise ValueError("the program (first word) must not be empty")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or "=" in k or "\0" in k or "\0" in val:
                raise ValueError(f"`{k}`: environment names must be non-empty, without `=` or NUL")
        return v

    @field_validator("cwd")
    @classmethod
    def _abs_cwd(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"cwd must be an absolute path, got `{v}`")
        return v
