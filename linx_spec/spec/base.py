"""The base of every spec model: unknown keys are errors, values are frozen, and no
string carries a NUL.

Every string of a spec ends up in a syscall (a path, an argv word, an env entry,
a hostname, an interface name), where C would cut it at the first NUL: `cwd:
"/tmp\\0/../etc"` would validate as one path and be used as another.  So no
string field of any model may hold one, and the JSON Schema says so too: every
string property without a pattern of its own gets NUL_FREE (patterns of their
own exclude NUL themselves).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

NUL_FREE = "^[^\\u0000]*$"
ABS_PATH = "^/[^\\u0000]*$"  # an absolute path, NUL-free


def _nul_free_schema(node: Any) -> None:
    """Give every string schema below `node` (not across $ref: each model does its own) the NUL_FREE pattern."""
    if isinstance(node, list):
        for item in node:
            _nul_free_schema(item)
        return
    if not isinstance(node, dict) or "$ref" in node:
        return
    kind = node.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if is_string and not any(k in node for k in ("pattern", "enum", "const", "format")):
        node["pattern"] = NUL_FREE
    for key in ("items", "prefixItems", "additionalProperties", "anyOf", "oneOf", "allOf", "propertyNames"):
        if key in node:
            _nul_free_schema(node[key])


def _model_schema(schema: dict[str, Any], _cls: type) -> None:
    for prop in (schema.get("properties") or {}).values():
        _nul_free_schema(prop)


def _nul_in(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, (list, tuple, frozenset, set)):
        return any(_nul_in(v) for v in value)
    if isinstance(value, dict):
        return any(_nul_in(k) or _nul_in(v) for k, v in value.items())
    return False  # sub-models check their own fields


class Model(BaseModel):
    """Every section of the spec derives from this."""

    # defer_build: a model's validator is compiled on its first use, not when its module is
    # imported; spec.validate() builds one validator for the sections a spec has.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_extra=_model_schema,
                              defer_build=True)

    @model_validator(mode="after")
    def _strings_without_nul(self) -> "Model":
        for name in type(self).model_fields:
            if _nul_in(getattr(self, name)):
                raise ValueError(f"`{name}`: a NUL character (\\0) is not allowed in a string")
        return self
