"""The JSON Schema of the spec language, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from .spec import Spec

# No `$id`: the project has no web address of its own, and an invented one (it
# used to be https://linx-spec.dev/..., a domain nobody here owns) would name a
# schema anyone could serve.  Without `$id` a schema's base URI is where it was
# read from (JSON Schema 2020-12, section 9.1.1): the file below, whose path
# `linx-spec schema --path` prints for editors' modelines and check-jsonschema.
# The same document as a file: shipped inside the installed package (setup.py
# copies it there), or the checked-in schema/ of a source checkout.  Point an
# editor's `# yaml-language-server: $schema=` modeline at it (docs/ci.md).
_PACKAGED = Path(__file__).with_name("linx-spec.schema.json")
SCHEMA_FILE = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parent.parent / "schema" / "linx-spec.schema.json"


def _hoist_descriptions(node: object) -> None:
    """`x: Foo | None = Field(description=...)` puts the text beside the anyOf;
    a field typed by an Annotated union puts it inside.  Editors show the
    property's own description, so lift it up where it is missing."""
    if isinstance(node, dict):
        for prop in (node.get("properties") or {}).values():
            if isinstance(prop, dict) and "description" not in prop:
                for branch in prop.get("anyOf", []) + prop.get("oneOf", []):
                    if isinstance(branch, dict) and "description" in branch:
                        prop["description"] = branch["description"]
                        break
        for value in node.values():
            _hoist_descriptions(value)
    elif isinstance(node, list):
        for value in node:
            _hoist_descriptions(value)


def schema_dict() -> dict:
    schema = Spec.model_json_schema(mode="validation")
    _hoist_descriptions(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_json() -> str:
    return json.dumps(schema_dict(), indent=2, sort_keys=True) + "\n"
