"""The spec validated section by section (spec.validate, issue 18's cache miss): the
validators of sections a spec does not have are never built, and nothing a user sees
changes: the same Spec, the same errors at the same places, the same dump."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from conftest import REPO
from linx_spec import spec as spec_models
from linx_spec.spec import SECTIONS, Spec

SPECS = sorted((REPO / "specs").glob("*.yaml"))
# The bad-input corpus as data (not the hostile YAML files: the loader's own tests).
BAD = [p for p in sorted((REPO / "tests" / "bad").glob("*.yaml"))
       if not p.stem.startswith(("yaml-", "empty-"))]

BASE = {"version": 1, "process": {"command": ["/bin/true"]}}
# Each: data that fails somewhere a pydantic error can come from.
ERRORS = {
    "unknown top key": {**BASE, "netwrok": {}},
    "unknown section key": {**BASE, "network": {"interfaces": [{"name": "eth0", "type": "veth", "adress": "x"}]}},
    "bad nested value": {**BASE, "network": {"interfaces": [{"name": "eth0", "type": "veth",
                                                               "addresses": ["10.0.0.300/24"]}]}},
    "section of the wrong type": {**BASE, "mounts": "yes", "cgroup": [1]},
    "missing required": {"version": 1},
    "unknown version (a field validator, mode=before)": {**BASE, "version": 2},
    "hostname (a field validator, mode=after)": {**BASE, "hostname": "-bad-"},
    "NUL in a top-level string": {**BASE, "name": "a\0b"},
    "time without its namespace (a model validator)": {**BASE, "time": {"monotonic": "1h"}},
    "argv above the stack's quarter (a model validator across sections)": {
        **BASE, "process": {"command": ["/bin/true"] + ["x" * 60000] * 3}, "rlimits": {"stack": 65536}},
    "errors in several sections at once": {**BASE, "cgroup": {"memory": {"max": "lots"}},
                                           "seccomp": {"default": "nope"}, "domainname": 5},
}


def _errors(exc: ValidationError) -> list[tuple]:
    return [(e["type"], e["loc"], e["msg"]) for e in exc.errors(include_url=False)]


def _both(data):
    """(validate's outcome, Spec.model_validate's): the Spec, or the errors."""
    out = []
    for fn in (spec_models.validate, Spec.model_validate):
        try:
            out.append(fn(json.loads(json.dumps(data))))
        except ValidationError as exc:
            out.append(_errors(exc))
    return out


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_the_whole_models_errors(name):
    by_section, whole = _both(ERRORS[name])
    assert isinstance(whole, list), "the case must fail"
    assert by_section == whole


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_the_bad_corpus_fails_alike(path):
    data = yaml.safe_load(path.read_text())
    by_section, whole = _both(data)
    assert by_section == whole


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_specs_give_the_same_spec_and_dump(path, monkeypatch):
    monkeypatch.setenv("BUILD_SRC", "/src")
    monkeypatch.setenv("BUILD_OUT", "/out")
    from linx_spec.load import load_file

    seen, real = [], spec_models.validate
    monkeypatch.setattr(spec_models, "validate", lambda data: seen.append(copy.deepcopy(data)) or real(data))
    spec = load_file(path)  # the loader's path: spec.validate, on the data after ${VAR} expansion
    whole = Spec.model_validate(seen[0])
    assert spec == whole
    assert spec.model_fields_set == whole.model_fields_set
    assert spec_models.dump(spec) == spec.model_dump(mode="json")
    assert list(spec_models.dump(spec)) == list(Spec.model_fields)


def test_defaults_and_fields_set_are_the_whole_models():
    spec = spec_models.validate(dict(BASE))
    whole = Spec.model_validate(dict(BASE))
    assert spec == whole and spec.model_fields_set == whole.model_fields_set == {"version", "process"}
    assert spec.namespaces == whole.namespaces and spec.lifecycle == whole.lifecycle and spec.stdio == "inherit"
    assert spec_models.dump(spec) == whole.model_dump(mode="json")


def test_sections_table_matches_the_model():
    Spec.model_rebuild()
    for name, (module, model) in SECTIONS.items():
        cls = getattr(__import__(f"linx_spec.spec.{module}", fromlist=[model]), model)
        assert Spec.model_fields[name].annotation == cls | None, name
        assert spec_models.field_type(name) == cls | None
    for name, info in Spec.model_fields.items():  # every other field is always validated
        assert name in SECTIONS or not isinstance(info.annotation, str), name


# Run in a fresh interpreter: this test process has imported every section already.
_PROBE = """
import json, sys
from linx_spec.load import load_text
from linx_spec.plan.build import build_plan
from linx_spec.spec import Spec
build_plan(load_text(sys.stdin.read()))
print(json.dumps({"modules": sorted(m for m in sys.modules if m.startswith("linx_spec.spec.")),
                  "whole_spec_built": Spec.__pydantic_complete__, "all": sorted(sys.modules)}))
"""


def _probe(text: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _PROBE], input=text, env=env, cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def test_a_spec_without_network_or_mounts_does_not_build_or_import_them():
    # validated and planned (a new net namespace without `network:` too)
    seen = _probe("version: 1\nnamespaces: [user, net]\nprocess: {command: [/bin/true]}\n"
                  "seccomp: {default: allow, rules: [{syscalls: [bpf], action: errno EPERM}]}\n")
    assert seen["whole_spec_built"] is False  # the Spec's whole validator (every section) was never built
    assert "linx_spec.spec.seccomp" in seen["modules"]
    absent = {"linx_spec.spec." + m for m, _ in SECTIONS.values()} - {"linx_spec.spec.seccomp"}
    # capabilities: absent from the spec, the plan reads its default set (a table, no model built)
    absent.discard("linx_spec.spec.capabilities")
    assert absent.isdisjoint(seen["modules"]), seen["modules"]


def test_a_seccomp_spec_loads_libseccomp_without_ctypes_util_or_difflib():
    # Both were ~10 ms of every cache-miss apply of such a spec (bench/README.md): the
    # library is opened by its soname (ctypes.util only if that fails), and difflib
    # comes only with an error's "did you mean".
    seen = _probe("version: 1\nnamespaces: [user]\nprocess: {command: [/bin/true]}\n"
                  "capabilities: {keep: [chown]}\n"
                  "seccomp: {default: allow, rules: [{syscalls: [bpf, keyctl], action: errno EPERM}]}\n")
    assert "linx_spec.seccomp._libseccomp" in seen["all"]  # the names were checked with the library
    assert {"ctypes.util", "subprocess", "difflib"}.isdisjoint(seen["all"])


def test_a_misspelled_name_still_gets_its_suggestion():
    from linx_spec.errors import LinxError
    from linx_spec.load import load_text

    for text, hint in [("capabilities: {keep: [chwon]}", "did you mean `chown`?"),
                       ("seccomp: {default: allow, rules: [{syscalls: [keyclt], action: errno EPERM}]}",
                        "did you mean `keyctl`?"),
                       ("namespaces: [user, nett]", "did you mean `net`?"),
                       ("proces: {command: [x]}", "did you mean `process`?")]:
        with pytest.raises(LinxError) as e:
            load_text("version: 1\nprocess: {command: [/bin/true]}\n" + text + "\n", "s.yaml")
        assert hint in str(e.value), (text, str(e.value))


def test_a_section_present_is_imported_and_checked():
    seen = _probe("version: 1\nprocess: {command: [/bin/true]}\n"
                  "network: {interfaces: [{name: eth0, type: veth, addresses: [10.0.0.2/30]}]}\n")
    assert "linx_spec.spec.network" in seen["modules"] and "linx_spec.spec.mounts" not in seen["modules"]
    assert seen["whole_spec_built"] is False


_NO_PLUGINS = """
import json, sys
from linx_spec.cli import main
sys.argv = ["linx-spec", "validate", sys.argv[1]]
try:
    main()
except SystemExit as exc:
    code = exc.code
from pydantic.plugin import _loader
print(json.dumps({"code": code, "plugins": list(_loader.get_plugins()), "stub": not hasattr(_loader, "entry_points")}))
"""


def _with_a_plugin(tmp_path) -> dict:
    """An environment where a distribution declares a `pydantic` entry point (pydantic imports it)."""
    dist = tmp_path / "evil_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nevil = evil_plugin_module:plugin\n")
    (tmp_path / "evil_plugin_module.py").write_text("raise SystemExit('a pydantic plugin was imported')\n")
    return dict(os.environ, PYTHONPATH=f"{REPO}:{tmp_path}")


def test_the_command_validates_without_pydantic_plugins(tmp_path):
    out = subprocess.run([sys.executable, "-c", _NO_PLUGINS, str(REPO / "specs" / "hello.yaml")],
                         env=_with_a_plugin(tmp_path), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"code": 0, "plugins": [], "stub": True}


def test_without_the_stub_pydantic_would_have_imported_that_plugin(tmp_path):
    # The test above can fail: the same environment, pydantic left alone (the Python API).
    code = "from linx_spec.load import load_text; load_text('version: 1\\nprocess: {command: [/bin/true]}\\n')"
    out = subprocess.run([sys.executable, "-c", code], env=_with_a_plugin(tmp_path), cwd=REPO,
                         capture_output=True, text=True)
    assert "a pydantic plugin was imported" in out.stderr
