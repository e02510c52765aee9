"""What editors get from the JSON Schema: enums to complete, a file to point at."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, cli
from linx_spec.schema import SCHEMA_FILE, schema_dict
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


def test_schema_file_is_the_checked_in_schema_without_an_invented_id():
    assert SCHEMA_FILE.read_text() == (REPO / "schema" / "linx-spec.schema.json").read_text()
    text = SCHEMA_FILE.read_text()
    # No web address we do not own: the schema's base URI is the file it is read from.
    assert "$id" not in json.loads(text) and "linx-spec.dev" not in text


def test_schema_path_names_the_shipped_file_and_check_jsonschema_accepts_every_example(tmp_path):
    out = cli("schema", "--path")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.is_absolute() and path.read_text() == cli("schema").stdout
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    if not Path(tool).exists():
        pytest.fail("check-jsonschema (the test extra) is not installed")
    specs = sorted(str(p) for p in (REPO / "specs").glob("*.yaml"))
    ok = subprocess.run([tool, "--schemafile", str(path), *specs], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprocess: {command: [/bin/true]}\ncapabilities: {keep: [net_bind_servic]}\n")
    refused = subprocess.run([tool, "--schemafile", str(path), str(bad)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "net_bind_servic" in refused.stdout + refused.stderr
