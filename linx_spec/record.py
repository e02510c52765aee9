"""Frozen records: the Plan's types without `@dataclass`'s cost at import.

`@dataclass` writes each class's __init__, __repr__, __eq__, __hash__,
__setattr__ and __delattr__ as source text and `exec`s it: 0.3-0.9 ms a class,
and importing `dataclasses` pulls in `inspect` (with ast, dis, tokenize).  A
cached `apply` builds some thirty such classes before it runs anything
(bench/README.md, third round).  Here those methods are written once, on
`Record`, and driven by each class's field tuple, taken from its annotations
when the class is defined (`__init_subclass__`: a few microseconds).

    class HostEndPlan(Record):          # as @dataclass(frozen=True)
        name: str
        addresses: tuple[str, ...] = ()

    class Frame(Record, frozen=False):  # as @dataclass
        attrs: list = Factory(list)     # as field(default_factory=list)

What the rest of the code and the tests use from dataclasses keeps working on a
record: `dataclasses.fields()`, `replace()`, `asdict()`, `astuple()` and
`is_dataclass()` find `__dataclass_fields__`, built (importing dataclasses) only
when something asks for it.  stored.py reads `_fields`/`_defaults` directly.
Instances compare and hash by their fields, as a frozen dataclass's; `repr`
prints them in the same form.  Not supported (nothing here uses them):
ClassVar, InitVar, field options other than a default or a factory, ordering,
`__post_init__`.
"""

from __future__ import annotations

_MISSING = object()


class Factory:
    """A default made per instance, as `field(default_factory=...)`."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class _DataclassFields:
    """`__dataclass_fields__`, made on first use: dataclasses is imported only then."""

    def __get__(self, obj, owner):
        made = owner.__dict__.get("_dataclass_fields")
        if made is None:
            import dataclasses

            made = {}
            for name in owner._fields:
                default = owner._defaults.get(name, _MISSING)
                if isinstance(default, Factory):
                    f = dataclasses.field(default_factory=default.make)
                elif default is _MISSING:
                    f = dataclasses.field()
                else:
                    f = dataclasses.field(default=default)
                # What @dataclass's _get_field fills in: fields() and replace() read them.
                f.name, f.type, f._field_type = name, owner._annotations[name], dataclasses._FIELD
                made[name] = f
            type.__setattr__(owner, "_dataclass_fields", made)
        return made


class Record:
    """The base of a frozen record (module docstring); `frozen=False` for a mutable one."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict = {}
    _annotations: dict = {}
    _frozen = True
    __dataclass_fields__ = _DataclassFields()

    def __init_subclass__(cls, frozen: bool = True, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__annotations__", {})
        annotations = dict(getattr(cls, "_annotations", {}))
        annotations.update(own)
        defaults = dict(getattr(cls, "_defaults", {}))
        for name in own:
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
                if isinstance(defaults[name], Factory):
                    delattr(cls, name)  # as dataclasses: no class attribute for a factory
            else:
                defaults.pop(name, None)
        fields = tuple(annotations)
        seen_default = False
        for name in fields:
            if name in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        cls._fields, cls._defaults, cls._annotations, cls._frozen = fields, defaults, annotations, frozen
        cls.__match_args__ = fields
        if not frozen:
            cls.__hash__ = None  # as a mutable dataclass with eq

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} positional arguments "
                            f"but {len(args)} were given")
        put = object.__setattr__
        for name, value in zip(fields, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
            put(self, name, value)
        defaults = self._defaults
        for name in fields[len(args):]:
            if name in kwargs:
                put(self, name, kwargs.pop(name))
                continue
            default = defaults.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
            put(self, name, default.make() if isinstance(default, Factory) else default)
        if kwargs:  # what is left named no field
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name, value):
        if self._frozen:
            _frozen_error(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self._frozen:
            _frozen_error(f"cannot delete field {name!r}")
        object.__delattr__(self, name)


def _frozen_error(message: str):
    from dataclasses import FrozenInstanceError  # an AttributeError, as a frozen dataclass raises

    raise FrozenInstanceError(message)
