"""Named integers for the protocol's numbers (protocol.py), without the enum module.

`import enum` (with functools, collections, operator, types) and building
protocol.py's five IntEnum/IntFlag classes took ~6 ms of a cached `apply`, whose
whole Python start is ~30 ms (bench/README.md, third round).  What the code uses
of them is small, and is kept:

    class Msg(IntEnum):
        HELLO = 0x01
    Msg.HELLO == 1, hash, struct.pack, dict keys    an int subclass: the same as 1
    Msg.HELLO.name, .value, repr <Msg.HELLO: 1>     as enum's
    str(Msg.HELLO), f"{Msg.HELLO}"                  "1", as IntEnum's since Python 3.11
    Msg(1) -> Msg.HELLO; Msg(99) -> ValueError      (MF(bits), an IntFlag: any int is accepted)
    list(Msg), isinstance(Msg.HELLO, Msg)           members in definition order, aliases left out

A member is an instance of its class, made when the class is defined (the
class's public int attributes become members); the class cannot make others.
"""

from __future__ import annotations


class _Kind(type):
    """The metaclass: collects the members, looks values up, iterates."""

    def __new__(mcls, name, bases, namespace):
        cls = super().__new__(mcls, name, bases, namespace)
        members: list = []
        by_value: dict = {}
        for key, value in namespace.items():
            if key.startswith("_") or type(value) is not int:
                continue
            member = by_value.get(value)  # a second name for a value is an alias, as in enum
            if member is None:
                member = by_value[value] = int.__new__(cls, value)
                member.name = key
                members.append(member)
            type.__setattr__(cls, key, member)
        type.__setattr__(cls, "_members", tuple(members))
        type.__setattr__(cls, "_by_value", by_value)
        return cls

    def __call__(cls, value):
        member = cls._by_value.get(value)
        if member is not None and not isinstance(value, bool):
            return member
        return cls._missing(value)

    def __iter__(cls):
        return iter(cls._members)

    def __len__(cls):
        return len(cls._members)

    def __setattr__(cls, name, value):
        raise AttributeError(f"cannot reassign {cls.__name__}.{name}")


class IntEnum(int, metaclass=_Kind):
    """Named ints; a value that names no member is a ValueError."""

    name: str

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {int(self)}>"

    __str__ = int.__repr__  # str() and format() give the number, as IntEnum's on 3.11+

    def __reduce__(self):
        return type(self), (int(self),)

    @classmethod
    def _missing(cls, value):
        raise ValueError(f"{value!r} is not a valid {cls.__name__}")


class IntFlag(IntEnum):
    """Named bits; calling the class with any int gives a value of it (its name
    the set bits' names joined by |, None for 0), as enum.IntFlag."""

    @classmethod
    def _missing(cls, value):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a valid {cls.__name__}")
        pseudo = int.__new__(cls, value)
        names = [m.name for m in cls._members if m and (m & value) == m]
        pseudo.name = "|".join(names) if value else None
        return pseudo
