"""What editors get from the JSON Schema: enums to complete, a file to point at."""

from __future__ import annotations

import json

import jsonschema

from conftest import REPO
from linx_spec.schema import SCHEMA_FILE, SCHEMA_ID, schema_dict
from linx_spec.spec.capabilities import CAPABILITIES


def _validator():
    return jsonschema.Draft202012Validator(schema_dict())


def _spec(**extra):
    return {"version": 1, "process": {"command": ["/bin/true"]}, **extra}


def test_capability_names_are_an_enum_of_every_capability():
    cap = schema_dict()["$defs"]["Capabilities"]["properties"]["keep"]["anyOf"][0]["items"]
    for name in CAPABILITIES:
        assert {name, name.lower(), name[4:], name[4:].lower()} <= set(cap["enum"])
    v = _validator()
    assert v.is_valid(_spec(capabilities={"keep": ["net_bind_service", "CAP_CHOWN", "all"]}))
    assert not v.is_valid(_spec(capabilities={"keep": ["net_bind_servic"]}))


def test_seccomp_actions_complete_and_errno_forms_still_validate():
    v = _validator()
    for action in ("allow", "kill_thread", "errno", "errno EPERM", "errno 38", {"errno": "EACCES"}):
        assert v.is_valid(_spec(seccomp={"default": action})), action
    for action in ("alow", "errno E PERM", "kill now"):
        assert not v.is_valid(_spec(seccomp={"default": action})), action
    enums = [b["enum"] for b in schema_dict()["$defs"]["Rule"]["properties"]["action"]["anyOf"] if "enum" in b]
    assert enums and {"allow", "log", "trap", "kill", "kill_thread", "errno EPERM"} <= set(enums[0])


def test_schema_file_is_the_checked_in_schema_with_its_id():
    assert SCHEMA_FILE.read_text() == (REPO / "schema" / "linx-spec.schema.json").read_text()
    assert json.loads(SCHEMA_FILE.read_text())["$id"] == SCHEMA_ID
    assert SCHEMA_ID.endswith("/" + SCHEMA_FILE.name)
