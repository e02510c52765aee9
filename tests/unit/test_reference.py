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
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| `")}
    command = rows["`process.command` (required)"]
    assert command[1] == "list of string" and ">= 1 items" in command[3]
    cwd = rows["`process.cwd`"]
    assert cwd[1] == "string" and cwd[2] == '`"/"`' and "matches `^/" in cwd[3]
    for path in ("`lifecycle.restart.max_retries`", "`stdio.stdout.mode`", "`rlimits.nofile`"):
        assert path in rows, path
