"""intenum.py against enum: what protocol.py's numbers are used for behaves the same."""

from __future__ import annotations

import copy
import enum
import json
import struct

import pytest

from linx_spec import intenum


class Kind(intenum.IntEnum):
    """A docstring and methods are not members."""

    BIND = 1
    FS = 2
    ALIAS = 1

    def describe(self) -> str:
        return self.name.lower()


class Flag(intenum.IntFlag):
    RDONLY = 1
    NOSUID = 2
    ROOT = 128


class RefKind(enum.IntEnum):
    BIND = 1
    FS = 2
    ALIAS = 1


class RefFlag(enum.IntFlag):
    RDONLY = 1
    NOSUID = 2
    ROOT = 128


def test_members_are_their_ints():
    assert Kind.BIND == 1 and hash(Kind.BIND) == hash(1) and {1: "x"}[Kind.BIND] == "x"
    assert struct.pack("<H", Kind.FS) == struct.pack("<H", 2)
    assert json.dumps([Kind.FS]) == "[2]"
    assert isinstance(Kind.BIND, Kind) and isinstance(Kind.BIND, int)
    assert Kind.BIND.describe() == "bind"


def test_names_values_repr_str_format_as_enum():
    for ours, ref in ((Kind.BIND, RefKind.BIND), (Kind.FS, RefKind.FS), (Flag.ROOT, RefFlag.ROOT)):
        assert (ours.name, ours.value) == (ref.name, ref.value)
        assert repr(ours) == repr(ref).replace("Ref", "")
        assert str(ours) == str(ref) and f"{ours}" == f"{ref}" and f"{ours:#x}" == f"{ref:#x}"


def test_lookup_iteration_and_aliases_as_enum():
    assert Kind(2) is Kind.FS and Kind(Kind.FS) is Kind.FS and Kind.ALIAS is Kind.BIND
    assert Kind(1).name == RefKind(1).name == "BIND"
    assert [m.name for m in Kind] == [m.name for m in RefKind] and len(Kind) == len(RefKind) == 2
    with pytest.raises(ValueError, match="3 is not a valid Kind"):
        Kind(3)
    with pytest.raises(ValueError):
        Kind(True)  # a bool is not a protocol number
    with pytest.raises(AttributeError):
        Kind.BIND = 5


def test_flags_accept_any_bits():
    assert Flag(0) == 0 and Flag(0).name is None
    assert Flag(3) == 3 and Flag(3).name == "RDONLY|NOSUID" and isinstance(Flag(3), Flag)
    assert Flag.RDONLY | Flag.ROOT == 129
    assert [f.name for f in Flag] == [f.name for f in RefFlag]


def test_copies_are_the_members():
    assert copy.deepcopy(Kind.FS) is Kind.FS and copy.copy(Kind.FS) is Kind.FS
