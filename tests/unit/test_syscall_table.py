"""The syscall table shipped with the package (seccomp/syscalls.txt): `validate`
catches unknown syscall names without libseccomp, and the table follows libseccomp."""

from __future__ import annotations

import pytest

from linx_spec import SpecError, load_text
from linx_spec.seccomp import _libseccomp as lib
from linx_spec.seccomp import names

SPEC = """version: 1
name: t
process: {command: [/bin/true]}
seccomp:
  default: allow
  rules:
    - syscalls: [{names}]
      action: errno EPERM
"""


@pytest.fixture
def no_libseccomp(monkeypatch):
    def missing():
        raise OSError("libseccomp.so.2: cannot open shared object file")

    monkeypatch.setattr(lib, "load", missing)
    assert not lib.available()


def test_without_libseccomp_unknown_names_fail_with_a_suggestion(no_libseccomp):
    with pytest.raises(SpecError) as exc:
        load_text(SPEC.replace("{names}", "read, opne, socketcall"), "t.yaml")
    (problem,) = exc.value.problems
    assert problem.line == 7 and "unknown syscall `opne`; did you mean `open`?" in problem.message
    load_text(SPEC.replace("{names}", "read, openat2, socketcall, _llseek, io_uring_setup, '@mount'"), "t.yaml")


@pytest.mark.skipif(not lib.available(), reason="drift test needs libseccomp")
def test_shipped_table_matches_libseccomp():
    table = names.shipped_names()
    assert names.known_names() <= table, "libseccomp knows names the shipped table lacks: regenerate syscalls.txt"
    header = names.TABLE_FILE.read_text().splitlines()[0]
    if f"libseccomp {'.'.join(map(str, lib.version()))} " in header:
        assert names.TABLE_FILE.read_text() == names.table_text(), (
            "syscalls.txt drifted: python -m linx_spec.seccomp.names > linx_spec/seccomp/syscalls.txt")
    for name in table:  # every shipped name is one libseccomp accepts
        assert names.is_known(name), name
