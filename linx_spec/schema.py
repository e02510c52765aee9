"""The JSON Schema of the spec language, generated from the pydantic models."""

from __future__ import annotations

import json

from .spec import Spec

SCHEMA_ID = "https://linx-spec.dev/schema/linx-spec.schema.json"


def schema_dict() -> dict:
    schema = Spec.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_json() -> str:
    return json.dumps(schema_dict(), indent=2, sort_keys=True) + "\n"
