"""`process:` what runs, as whom, where, with which environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator

from .base import ABS_PATH, Model


class User(Model):
    """The identity the workload runs as, inside its user namespace (if any)."""

    uid: Annotated[int, Field(ge=0, lt=2**32 - 1, description="User id inside the workload.")] = 0
    gid: Annotated[int, Field(ge=0, lt=2**32 - 1, description="Primary group id inside the workload.")] = 0
    groups: list[Annotated[int, Field(ge=0, lt=2**32 - 1)]] = Field(
        default_factory=list,
        description="Supplementary group ids. Empty by default: the workload keeps no host groups.",
    )


def _scalar_to_str(value: object) -> object:
    # `PORT: 8080` and `DEBUG: true` are what people write (as in Compose).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _octal(value: object) -> object:
    # YAML 1.1 reads `022` as octal but `0o022` as a string; accept both.
    if isinstance(value, str) and value.strip():
        text = value.strip().lower().removeprefix("0o")
        try:
            return int(text, 8)
        except ValueError:
            raise ValueError(f"`{value}` is not an octal mode like 0o022") from None
    return value


Umask = Annotated[
    int,
    BeforeValidator(_octal),
    Field(ge=0, le=0o777),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 511},
                              {"type": "string", "pattern": "^(0o)?[0-7]{1,3}$"}]}),
]
EnvValue = Annotated[str, BeforeValidator(_scalar_to_str), WithJsonSchema({"type": ["string", "number", "boolean"]})]


class Process(Model):
    """The program the workload runs."""

    command: list[str] = Field(
        min_length=1,
        json_schema_extra={"prefixItems": [{"type": "string", "minLength": 1}]},
        description="argv of the workload. The first word is an absolute path, or a name looked up "
        "on the PATH of `env` (inside `rootfs` when one is set).",
    )
    env: dict[str, EnvValue] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": "^[^=\\u0000]+$"}},
        description="Environment of the workload. Nothing is inherited from the caller: the workload "
        "gets PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, HOME=/ (or the "
        "value given here) and exactly the variables listed.",
    )
    cwd: str = Field(default="/", description="Working directory inside the workload (absolute).",
                     json_schema_extra={"pattern": ABS_PATH})
    user: User = Field(default_factory=User, description="Identity inside the workload.")
    umask: Umask | None = Field(default=None, description="File mode creation mask, octal: `0o022` or `'022'`.")

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
