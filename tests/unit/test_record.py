"""record.Record against @dataclass: the same behaviour for what the code and the
tests use (construction, defaults, equality, hashing, repr, frozenness and the
dataclasses functions), without its per-class exec."""

from __future__ import annotations

import dataclasses

import pytest

from linx_spec.record import Factory, Record


class Part(Record):
    name: str
    addresses: tuple[str, ...] = ()
    mtu: int | None = None


class Whole(Record):
    part: Part
    notes: tuple[str, ...] = ()


class Mutable(Record, frozen=False):
    kind: int
    attrs: list = Factory(list)


@dataclasses.dataclass(frozen=True)
class DataPart:
    name: str
    addresses: tuple[str, ...] = ()
    mtu: int | None = None


def test_construction_positional_keyword_and_defaults():
    assert Part("eth0").addresses == () and Part("eth0").mtu is None
    p = Part("eth0", ("10.0.0.1/24",), mtu=1400)
    assert (p.name, p.addresses, p.mtu) == ("eth0", ("10.0.0.1/24",), 1400)
    with pytest.raises(TypeError, match="missing required argument: 'name'"):
        Part()
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Part("eth0", nope=1)
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        Part("eth0", name="eth1")
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4"):
        Part("eth0", (), 1, 2)


def test_equality_hash_and_repr_as_a_frozen_dataclass():
    a, b = Part("eth0", ("x",)), Part("eth0", ("x",))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Part("eth1", ("x",))
    assert a != DataPart("eth0", ("x",))  # another class is never equal, as with dataclasses
    assert repr(a) == repr(DataPart("eth0", ("x",))).replace("DataPart", "Part")


def test_frozen_and_mutable():
    p = Part("eth0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "eth1"
    with pytest.raises(AttributeError):
        del p.name
    m, n = Mutable(1), Mutable(1)
    m.attrs.append((1, b"x"))
    assert n.attrs == [] and m != n  # the factory makes one list per instance
    m.kind = 2
    assert m.kind == 2
    with pytest.raises(TypeError):
        hash(m)


def test_dataclasses_functions_see_the_fields():
    w = Whole(Part("eth0", ("a",)), notes=("n",))
    assert dataclasses.is_dataclass(w) and dataclasses.is_dataclass(Whole)
    assert [f.name for f in dataclasses.fields(Part)] == ["name", "addresses", "mtu"]
    assert [f.name for f in dataclasses.fields(w)] == ["part", "notes"]
    assert dataclasses.fields(Part)[1].default == () and dataclasses.fields(Part)[0].default is dataclasses.MISSING
    assert dataclasses.fields(Mutable)[1].default_factory is list
    assert dataclasses.replace(w, notes=()) == Whole(Part("eth0", ("a",)))
    assert dataclasses.asdict(w) == {"part": {"name": "eth0", "addresses": ("a",), "mtu": None}, "notes": ("n",)}
    assert dataclasses.astuple(Part("x")) == ("x", (), None)


def test_a_default_before_a_required_field_is_refused_as_by_dataclass():
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        class Bad(Record):
            a: int = 1
            b: int


def test_a_subclass_extends_the_fields():
    class More(Part):
        extra: int = 0

    assert More._fields == ("name", "addresses", "mtu", "extra")
    assert [f.name for f in dataclasses.fields(More)] == ["name", "addresses", "mtu", "extra"]
    assert [f.name for f in dataclasses.fields(Part)] == ["name", "addresses", "mtu"]
