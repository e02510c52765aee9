"""docs/reference.md is generated from the models and kept in step with them."""

from __future__ import annotations

from conftest import REPO
from linx_spec.reference import reference_markdown
from linx_spec.schema import schema_dict

REFERENCE = REPO / "docs" / "reference.md"


def test_reference_md_has_not_drifted():
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/reference.md is stale: python -m linx_spec.reference > docs/reference.md")


def test_reference_names_every_field_with_type_default_and_bounds():
    text = reference_markdown()
    schema = schema_dict()
    for name in schema["properties"]:
        assert f"| `{name}`" in text, name
    for needle in ("| `process.command` (required) | list of string |  | >= 1 items |",
                   "| `process.cwd` | string | `\"/\"` | matches `^/` |",
                   "| `lifecycle.restart.max_retries` |", "| `stdio.stdout.mode` |", "| `rlimits.nofile` |"):
        assert needle in text, needle
