"""`process:` what runs, as whom, where, with which environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from .base import ABS_PATH, Model
from .units import Umask


# execve(2) limits, checked here so that a spec that validates also execs (and fits
# the agent's frame, 1 MiB, with room for mounts and the seccomp filter):
# - MAX_ARG_STRLEN (32 pages): one argv word or `NAME=value`, its NUL included;
#   longer and execve fails with E2BIG.
# - ARGV_ENV_MAX_BYTES: argv and env together, each string with its NUL and its
#   pointer, as fs/exec.c counts them.  The kernel allows a quarter of the stack
#   rlimit (2 MiB with the usual 8 MiB stack), never less than 128 KiB; linx-spec
#   takes 512 KiB, which every stack rlimit of 2 MiB or more allows.  A smaller
#   `rlimits.stack` lowers it to what the kernel then allows (Spec checks).
MAX_ARG_STRLEN = 32 * 4096
ARGV_ENV_MAX_BYTES = 512 * 1024
EXECVE_FLOOR_BYTES = 32 * 4096  # fs/exec.c: ARG_MAX, what execve always allows
_DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}


def execve_bytes(command: list[str], env: dict[str, str]) -> int:
    """Bytes execve counts for this argv and env (the defaults PATH and HOME included)."""
    full = {**_DEFAULT_ENV, **env}
    words = [w.encode() for w in command] + [f"{k}={v}".encode() for k, v in full.items()]
    return sum(len(w) + 1 + 8 for w in words)


class User(Model):
    """The identity the workload runs as, inside its user namespace (if any)."""

    uid: Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1, description="User id inside the workload.")] = 0
    gid: Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1, description="Primary group id inside the workload.")] = 0
    groups: list[Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1)]] = Field(
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
    cwd: str = Field(default="/", description="Working directory inside the workload (absolute, shorter than "
                     "PATH_MAX: 4096 bytes).", max_length=4095, json_schema_extra={"pattern": ABS_PATH})
    user: User = Field(default_factory=User, description="Identity inside the workload.")
    umask: Umask | None = Field(default=None, description="File mode creation mask, octal: `0o022`, `022` or `'022'` (an unquoted 022 is octal in YAML 1.1).")
    init: bool = Field(default=False, description="Run a minimal init as pid 1 (as `docker --init`/tini): it "
                       "starts the program as its child, forwards every signal it receives to it, reaps "
                       "orphans and exits with the program's status (128+N when a signal N killed it). Needs "
                       "a new pid namespace. Off by default, as in docker and podman: the program's pid "
                       "becomes 2, and a program that is an init itself (systemd, tini, a supervisor) needs "
                       "none. Turn it on for a shell or `sleep` as pid 1, which ignore TERM without it.")

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

    @model_validator(mode="after")
    def _fits_execve(self) -> "Process":
        for i, word in enumerate(self.command):
            if len(word.encode()) >= MAX_ARG_STRLEN:
                raise ValueError(f"command word {i} is {len(word.encode())} bytes; execve takes at most "
                                 f"{MAX_ARG_STRLEN - 1} per word (MAX_ARG_STRLEN)")
        for k, v in self.env.items():
            size = len(f"{k}={v}".encode())
            if size >= MAX_ARG_STRLEN:
                raise ValueError(f"env `{k}` is {size} bytes as `{k}=...`; execve takes at most "
                                 f"{MAX_ARG_STRLEN - 1} per variable (MAX_ARG_STRLEN)")
        total = execve_bytes(self.command, self.env)
        if total > ARGV_ENV_MAX_BYTES:
            raise ValueError(f"command and env take {total} bytes as execve counts them (each string, its NUL "
                             f"and pointer); at most {ARGV_ENV_MAX_BYTES} (512 KiB)")
        return self

    @field_validator("cwd")
    @classmethod
    def _abs_cwd(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"cwd must be an absolute path, got `{v}`")
        if len(v.encode()) >= 4096:  # the schema counts characters; chdir(2) counts bytes
            raise ValueError(f"cwd is {len(v.encode())} bytes; a path is shorter than PATH_MAX (4096)")
        return v
