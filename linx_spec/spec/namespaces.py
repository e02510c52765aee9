"""`namespaces:` which namespaces are created new, and which are joined by path."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from .base import Model

NAMESPACE_NAMES = ("user", "pid", "net", "mount", "uts", "ipc", "cgroup", "time")
NamespaceName = Literal["user", "pid", "net", "mount", "uts", "ipc", "cgroup", "time"]

# Without `namespaces:` a workload gets what runc's default config gives.
DEFAULT_NAMESPACES = ("pid", "net", "mount", "uts", "ipc", "cgroup")


class Join(Model):
    """Join an existing namespace instead of creating one."""

    join: str = Field(description="Path of the namespace to join: /proc/PID/ns/net, /run/netns/NAME, a bind-mounted ns file.")

    @field_validator("join")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"a namespace path must be absolute, got `{v}`")
        return v


NsValue = Annotated[
    Union[Literal["new"], Join],
    Field(description="`new` creates the namespace; `{join: PATH}` enters an existing one."),
]


class Namespaces(Model):
    """Mapping form: each namespace is `new` or `{join: PATH}`; absent means shared with the host."""

    user: NsValue | None = None
    pid: NsValue | None = None
    net: NsValue | None = None
    mount: NsValue | None = None
    uts: NsValue | None = None
    ipc: NsValue | None = None
    cgroup: NsValue | None = None
    time: NsValue | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: object) -> object:
        # The list form `[user, pid, net]` means: create each of these.
        if isinstance(data, list):
            out: dict[str, str] = {}
            for item in data:
                if not isinstance(item, str):
                    raise ValueError("namespace list items must be names like `pid`")
                if item in out:
                    raise ValueError(f"namespace `{item}` listed twice")
                out[item] = "new"
            return out
        return data

    def created(self) -> list[str]:
        return [n for n in NAMESPACE_NAMES if getattr(self, n) == "new"]

    def joined(self) -> dict[str, str]:
        return {n: v.join for n in NAMESPACE_NAMES if isinstance(v := getattr(self, n), Join)}


def default_namespaces() -> Namespaces:
    return Namespaces(**{n: "new" for n in DEFAULT_NAMESPACES})
