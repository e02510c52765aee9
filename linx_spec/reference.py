"""docs/reference.md, the field reference, generated from the models' JSON Schema.

Every field with its type, default, bounds, an example where the model gives one,
and the description editors show.  A unit test fails when the checked-in file
drifts; regenerate with `python -m linx_spec.reference > docs/reference.md`.
"""

from __future__ import annotations

import json

from .schema import schema_dict

_BOUNDS = (("minimum", ">= {}"), ("maximum", "<= {}"), ("exclusiveMinimum", "> {}"), ("exclusiveMaximum", "< {}"),
           ("minLength", "length >= {}"), ("maxLength", "length <= {}"), ("minItems", ">= {} items"),
           ("maxItems", "<= {} items"), ("pattern", "matches `{}`"))
_MAX_ENUM = 8


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


class _Writer:
    def __init__(self, schema: dict):
        self.defs = schema.get("$defs", {})
        self.rows: list[tuple[str, str, str, str, str]] = []

    def deref(self, node: dict) -> dict:
        seen = 0
        while "$ref" in node and seen < 16:
            node = self.defs[node["$ref"].rsplit("/", 1)[1]]
            seen += 1
        return node

    def branches(self, node: dict) -> list[dict]:
        if len(node.get("allOf", [])) == 1:  # pydantic < 2.9 wraps a described $ref in allOf
            node = {**node, **node["allOf"][0]}
            del node["allOf"]
        out = []
        for b in node.get("anyOf", node.get("oneOf", [node])):
            if b is node:
                out.append(b)
            elif b.get("type") != "null":
                out += self.branches(b)
        return out

    def type_of(self, node: dict) -> str:
        kinds = []
        for b in self.branches(node):
            if "$ref" in b:
                kinds.append("mapping")
                continue
            if "enum" in b:
                values = [json.dumps(v) for v in b["enum"]]
                kinds.append("one of " + (", ".join(values) if len(values) <= _MAX_ENUM
                                          else ", ".join(values[:_MAX_ENUM]) + f", ... ({len(values)})"))
            elif "const" in b:
                kinds.append(json.dumps(b["const"]))
            elif b.get("type") == "array":
                kinds.append("list of " + self.type_of(b.get("items", {})) if b.get("items") else "list")
            elif b.get("type") == "object" and isinstance(b.get("additionalProperties"), dict):
                kinds.append("map of " + self.type_of(b["additionalProperties"]))
            elif "type" in b:
                kinds.append(b["type"] if isinstance(b["type"], str) else " | ".join(b["type"]))
        return " or ".join(dict.fromkeys(kinds)) or "any"

    def bounds_of(self, node: dict) -> str:
        found = []
        for b in [node, *self.branches(node)]:
            for key, fmt in _BOUNDS:
                if key in b:
                    found.append(fmt.format(b[key]))
            if b.get("type") == "array" and isinstance(b.get("items"), dict):
                for key, fmt in _BOUNDS:
                    if key in b["items"]:
                        found.append("each " + fmt.format(b["items"][key]))
        return "; ".join(dict.fromkeys(found))

    def walk(self, obj: dict, prefix: str, depth: int = 0) -> None:
        obj = self.deref(obj)
        for name, prop in (obj.get("properties") or {}).items():
            path = f"{prefix}.{name}" if prefix else name
            default = prop.get("default")
            example = (prop.get("examples") or [None])[0]
            for b in self.branches(prop):
                example = example if example is not None else (b.get("examples") or [None])[0]
            required = name in obj.get("required", [])
            self.rows.append((f"`{path}`" + (" (required)" if required else ""), self.type_of(prop),
                              "" if default is None else f"`{json.dumps(default)}`", self.bounds_of(prop),
                              (prop.get("description") or "") +
                              ("" if example is None else f" Example: `{json.dumps(example)}`.")))
            if depth >= 6:
                continue
            for b in self.branches(prop):
                target = b.get("items", b) if b.get("type") == "array" else b
                if "$ref" in target:
                    self.walk(target, path + ("[]" if target is not b else ""), depth + 1)


def reference_markdown() -> str:
    schema = schema_dict()
    w = _Writer(schema)
    w.walk(schema, "")
    lines = [
        "# Spec field reference",
        "",
        "<!-- Generated from the models by `python -m linx_spec.reference > docs/reference.md`;",
        "     a unit test fails when this file drifts. Do not edit by hand. -->",
        "",
        "Every field of a linx-spec YAML file. `a.b[]` is a field of each item of the",
        "list `a.b`. Sizes take suffixes (`64Mi`, `1G`), durations take units",
        "(`1m30s`, `500ms`). Guides: [process, stdio, lifecycle](workload.md),",
        "[filesystem](filesystem.md), [network](network.md), [cgroup](cgroup.md),",
        "[privileges](privileges.md), [seccomp](seccomp.md), [CI and editors](ci.md).",
    ]
    def top(path: str) -> str:
        return path.split("`")[1].split(".")[0].removesuffix("[]")

    nested = {top(r[0]) for r in w.rows if "." in r[0].split("`")[1]}
    section = None
    for path, typ, default, bounds, desc in w.rows:
        here = top(path) if top(path) in nested else "top level"
        if here != section:
            section = here
            title = here if here == "top level" else f"`{here}`"
            lines += ["", f"## {title}", "", "| field | type | default | bounds | description |",
                      "|---|---|---|---|---|"]
        lines.append(f"| {path} | {_cell(typ)} | {_cell(default)} | {_cell(bounds)} | {_cell(desc)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - the regeneration command
    print(reference_markdown(), end="")
