"""`namespaces:` which namespaces are created new, and which are joined by path."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from .base import ABS_PATH, Model
from .units import Duration
from ..suggest import closest

NAMESPACE_NAMES = ("user", "pid", "net", "mount", "uts", "ipc", "cgroup", "time")
NamespaceName = Literal["user", "pid", "net", "mount", "uts", "ipc", "cgroup", "time"]

# Without `namespaces:` a workload gets what runc's default config gives.
DEFAULT_NAMESPACES = ("pid", "net", "mount", "uts", "ipc", "cgroup")


class Join(Model):
    """Join an existing namespace instead of creating one."""

    join: str = Field(description="Path of the namespace to join: /proc/PID/ns/net, /run/netns/NAME, a bind-mounted ns file.",
                      json_schema_extra={"pattern": ABS_PATH})

    @field_validator("join")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"a namespace path must be absolute, got `{v}`")
        return v


def _ns_kind(value: Any) -> str:
    return "join" if isinstance(value, (dict, Join)) else "new"


def _ns_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value != "new":
        raise ValueError(f"expected `new` or `{{join: PATH}}`, got `{value}`")
    if not isinstance(value, (str, dict, Join)):
        raise ValueError("expected `new` or `{join: PATH}`")
    return value


NsValue = Annotated[
    Union[Annotated[Literal["new"], Tag("new")], Annotated[Join, Tag("join")]],
    Discriminator(_ns_kind),
    BeforeValidator(_ns_shorthand),
    Field(description="`new` creates the namespace; `{join: PATH}` enters an existing one."),
]


def _list_form_schema(schema: dict[str, Any]) -> None:
    # The list form is accepted by the `before` validator below; say so in the
    # JSON Schema too, so editors and check-jsonschema agree with pydantic.
    mapping = dict(schema)
    schema.clear()
    schema["description"] = mapping.pop("description", "")
    schema["anyOf"] = [
        {"type": "array", "items": {"enum": list(NAMESPACE_NAMES)}, "uniqueItems": True,
         "description": "Names of the namespaces to create."},
        mapping,
    ]


class Namespaces(Model):
    """A list of namespace names to create, or a mapping of name to `new` or `{join: PATH}`.
    Namespaces not named are shared with the host."""

    model_config = Model.model_config | {"json_schema_extra": _list_form_schema}

    user: NsValue | None = Field(default=None, description="User namespace: own uids/gids and capabilities (see idmap).")
    pid: NsValue | None = Field(default=None, description="PID namespace: the workload is pid 1 and sees only its descendants.")
    net: NsValue | None = Field(default=None, description="Network namespace: own interfaces, routes, sockets (see network).")
    mount: NsValue | None = Field(default=None, description="Mount namespace: own mount table (see mounts); nothing propagates to the host.")
    uts: NsValue | None = Field(default=None, description="UTS namespace: own hostname and domainname.")
    ipc: NsValue | None = Field(default=None, description="IPC namespace: own System V IPC and POSIX message queues.")
    cgroup: NsValue | None = Field(default=None, description="cgroup namespace: the workload sees its own cgroup as `/`.")
    time: NsValue | None = Field(default=None, description="Time namespace: own CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets.")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: object) -> object:
        # The list form `[user, pid, net]` means: create each of these.
        if isinstance(data, list):
            out: dict[str, str] = {}
            for item in data:
                if not isinstance(item, str):
                    raise ValueError("namespace list items must be names like `pid`")
                if item not in NAMESPACE_NAMES:
                    close = closest(item, NAMESPACE_NAMES)
                    hint = f"did you mean `{close}`?" if close else "known: " + ", ".join(NAMESPACE_NAMES)
                    raise ValueError(f"unknown namespace `{item}`; {hint}")
                if item in out:
                    raise ValueError(f"namespace `{item}` listed twice")
                out[item] = "new"
            return out
        return data

    def created(self) -> list[str]:
        return [n for n in NAMESPACE_NAMES if getattr(self, n) == "new"]

    def joined(self) -> dict[str, str]:
        return {n: v.join for n in NAMESPACE_NAMES if isinstance(v := getattr(self, n), Join)}


class TimeOffsets(Model):
    """Clock offsets of a new time namespace (time_namespaces(7)): what the
    workload's CLOCK_MONOTONIC and CLOCK_BOOTTIME (and /proc/uptime) read is the
    host's plus these.  At most 100 years each (the kernel's own bound is
    KTIME_SEC_MAX / 2, about 146 years, for the clock's value)."""

    monotonic: Duration = Field(default=0.0, description="Added to CLOCK_MONOTONIC inside, e.g. `3600s`, `1h`.")
    boottime: Duration = Field(default=0.0, description="Added to CLOCK_BOOTTIME (and /proc/uptime) inside, "
                               "e.g. `24h`.")


def default_namespaces() -> Namespaces:
    return Namespaces(**{n: "new" for n in DEFAULT_NAMESPACES})
