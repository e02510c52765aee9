"""The spec: what the user wrote, validated by pydantic.  One module per subsystem.

`Spec` is the root model of a YAML file.  Field descriptions are for users: they
become the JSON Schema descriptions that editors show.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError, PydanticKnownError

from .._lazy import lazy_exports
from .base import Model
from .lifecycle import Lifecycle, Restart
from .namespaces import NAMESPACE_NAMES, Join, Namespaces, TimeOffsets, default_namespaces
from .process import ARGV_ENV_MAX_BYTES, EXECVE_FLOOR_BYTES, Process, User, execve_bytes
from .stdio import FileStream, StdioSpec, Streams

if TYPE_CHECKING:  # imported on first use: see SECTIONS
    from .capabilities import Capabilities
    from .cgroup import Cgroup
    from .idmap import IdMap, IdRange
    from .mounts import Mounts
    from .network import Network
    from .rlimits import Rlimits
    from .seccomp import Seccomp

# The optional sections whose models are imported (and their validators built) only
# for a spec that has them: field -> (module of this package, model).  Spec names
# them by string; they resolve when a spec has one (validate) or when the whole model
# is needed (Spec.model_rebuild: the JSON Schema, Spec.model_validate, model_dump).
SECTIONS = {
    "idmap": ("idmap", "IdMap"),
    "cgroup": ("cgroup", "Cgroup"),
    "network": ("network", "Network"),
    "capabilities": ("capabilities", "Capabilities"),
    "seccomp": ("seccomp", "Seccomp"),
    "mounts": ("mounts", "Mounts"),
    "rlimits": ("rlimits", "Rlimits"),
}
_EXPORTS = {model: module for module, model in SECTIONS.values()} | {"IdRange": "idmap"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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

    @classmethod
    def model_rebuild(cls, **kwargs: Any) -> bool | None:
        """The whole model: every section's model first.  pydantic calls this on the first
        use that needs it (the JSON Schema, Spec.model_validate, model_dump)."""
        for name in SECTIONS:
            section_model(name)
        kwargs["_parent_namespace_depth"] = kwargs.get("_parent_namespace_depth", 2) + 1
        return super().model_rebuild(**kwargs)


def section_model(name: str) -> type[Model]:
    """The model of optional section `name` (imported on first use)."""
    model = SECTIONS[name][1]
    found = globals().get(model)
    return found if found is not None else __getattr__(model)


def field_type(name: str) -> Any:
    """The type of Spec's field `name`, resolved (a section's model is imported for it)."""
    return section_model(name) | None if name in SECTIONS else Spec.model_fields[name].annotation


# -- validation section by section ---------------------------------------------------------
# Spec.model_validate compiles one validator for the whole Spec: every section's models,
# ~90 ms of a cold `apply`, most of it for sections the spec does not have.  validate()
# gives the same result and the same errors from a model of Spec's fields less the
# optional sections the spec does not have: Spec's own fields, types, defaults and field
# validators, so every error's location and message is Spec's.  The Spec is then
# assembled without validating again (model_construct) and Spec's model validators, the
# checks across sections, run on it as pydantic runs them: in order, each error at the
# spec's root.  dump() serialises with the same model.
_PART_MODELS: dict[frozenset[str], type[Model]] = {}


def _part_model(sections: frozenset[str]) -> type[Model]:
    """Spec without the optional sections not in `sections` (built once per set)."""
    model = _PART_MODELS.get(sections)
    if model is not None:
        return model
    fields: dict[str, Any] = {}
    for name, info in Spec.model_fields.items():
        if name in sections or name not in SECTIONS:
            fields[name] = (field_type(name), info)
    validators = {}
    for var, dec in Spec.__pydantic_decorators__.field_validators.items():
        names = [f for f in dec.info.fields if f in fields]
        if names:
            validators[var] = field_validator(*names, mode=dec.info.mode, check_fields=False)(
                classmethod(dec.func.__func__))
    for var, dec in Spec.__pydantic_decorators__.model_validators.items():
        if dec.info.mode != "after":  # validate() runs them on the assembled Spec, where all fields are
            raise TypeError(f"Spec.{var}: a model validator of Spec must be mode='after' (spec.validate)")
    model = create_model("Spec", __base__=Model, __module__=__name__, __validators__=validators, **fields)
    _PART_MODELS[sections] = model
    return model


def _root_error(exc: ValueError | AssertionError, data: Any) -> ValidationError:
    """The ValidationError pydantic makes of a model validator's exception."""
    if isinstance(exc, (PydanticCustomError, PydanticKnownError)):
        detail: dict[str, Any] = {"type": exc, "loc": (), "input": data}
    else:
        kind = "assertion_error" if isinstance(exc, AssertionError) else "value_error"
        detail = {"type": kind, "loc": (), "input": data, "ctx": {"error": exc}}
    return ValidationError.from_exception_data("Spec", [detail])


def validate(data: Any) -> Spec:
    """`Spec.model_validate(data)`, building validators only for the sections `data` has."""
    if not isinstance(data, dict):
        return Spec.model_validate(data)
    part = _part_model(frozenset(k for k in data if k in SECTIONS)).model_validate(data)
    spec = Spec.model_construct(_fields_set=part.model_fields_set,
                                **{name: getattr(part, name) for name in type(part).model_fields})
    for dec in Spec.__pydantic_decorators__.model_validators.values():
        try:
            dec.func(spec)
        except (ValueError, AssertionError) as exc:
            raise _root_error(exc, data) from None
    return spec


def dump(spec: Spec) -> dict[str, Any]:
    """`spec.model_dump(mode="json")`, serialising only the sections the spec has."""
    sections = frozenset(name for name in SECTIONS
                         if name in spec.model_fields_set or getattr(spec, name) is not None)
    model = _part_model(sections)
    part = model.model_construct(**{name: getattr(spec, name) for name in model.model_fields})
    out = part.model_dump(mode="json")
    return {name: out.get(name) for name in Spec.model_fields}


__all__ = [
    "Spec", "Process", "User", "Namespaces", "Join", "IdMap", "IdRange", "Cgroup", "Network",
    "Capabilities", "Seccomp", "Mounts", "Rlimits", "NAMESPACE_NAMES", "NAME_PATTERN", "SPEC_VERSIONS", "Lifecycle", "Restart",
    "FileStream", "Streams", "StdioSpec",
]
