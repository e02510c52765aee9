"""What linx-spec keeps on disk is data, never code: typed dataclasses <-> JSON.

A plan cached by the CLI and the plan a detached workload's `exec` reads back
were pickles; a pickle runs whatever its author put in it, so a file another
user could plant became code run as the victim (issue 14).  Here every value
is written as plain JSON and read back *against the dataclass's declared
types*: a field of the wrong type, a missing or unknown field, a number where
a string belongs, a nesting deeper than the types allow, all raise `BadData`
naming the field.  Nothing in the file chooses which class is built.

Supported field types: bool, int, float, str, bytes (base64), None, the
unions and optionals of these, Enum subclasses (by value), tuple[X, ...], tuple[A, B], list[X],
frozenset[X], dict[str|int, X] and nested frozen dataclasses.  Anything else
is a programming error, raised as TypeError when the class is first used.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from functools import lru_cache
from typing import Any, TypeVar, Union

T = TypeVar("T")

MAX_BYTES = 16 << 20  # a plan entry or state file larger than this is refused unread


class BadData(ValueError):
    """A stored document that does not match the types it is read against."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"{where or '(top)'}: {message}")


@lru_cache(maxsize=None)
def _hints(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, annotation, required) for every init field of a dataclass.  The
    annotation is evaluated only when a value of that field is read (_field_type):
    a cached plan without a network does not import the network plan's module."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, f.type, required))
    return tuple(out)


class _ModuleNames:
    """A module's names for eval(), its PEP 562 __getattr__ (lazy imports) included."""

    def __init__(self, module: Any):
        self.module = module

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise KeyError(name) from None


@lru_cache(maxsize=None)
def _field_type(cls: type, name: str, annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules.get(cls.__module__)
    return eval(annotation, vars(module) if module else {}, _ModuleNames(module))  # noqa: S307 - our own source


def field_types(cls: type) -> dict[str, Any]:
    """Every init field's type, evaluated (importing what the module names lazily)."""
    return {name: _field_type(cls, name, annotation) for name, annotation, _r in _hints(cls)}


@lru_cache(maxsize=None)
def _allows_none(annotation: Any) -> bool:
    """`X | None` written as text: None is allowed without evaluating X."""
    if not isinstance(annotation, str):
        return False
    depth, parts, start = 0, [], 0
    for i, c in enumerate(annotation):
        depth += c == "["
        depth -= c == "]"
        if c == "|" and depth == 0:
            parts.append(annotation[start:i])
            start = i + 1
    parts.append(annotation[start:])
    return "None" in (p.strip() for p in parts)


def to_data(obj: Any) -> Any:
    """A JSON-able value for obj (dataclasses by field, bytes as base64)."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        import base64  # only for bytes fields: not on the path of a plan without them

        return base64.b64encode(obj).decode("ascii")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_data(getattr(obj, name)) for name, _t, _r in _hints(type(obj))}
    if isinstance(obj, (tuple, list, frozenset, set)):
        items = sorted(obj, key=repr) if isinstance(obj, (frozenset, set)) else obj
        return [to_data(v) for v in items]
    if isinstance(obj, dict):
        # JSON keys are strings: keep pairs so that int keys come back as ints.
        return [[to_data(k), to_data(v)] for k, v in obj.items()]
    raise TypeError(f"cannot store a {type(obj).__name__}")


def from_data(tp: Any, data: Any, where: str = "") -> Any:
    """Rebuild a value of type tp from to_data's output, checking every type."""
    if tp is Any:
        raise TypeError(f"{where}: a stored type must be concrete, not Any")
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise BadData(where, f"expected an object for {tp.__name__}")
        fields = _hints(tp)
        known = {name for name, _t, _r in fields}
        extra = set(data) - known
        if extra:
            raise BadData(where, f"unknown field(s) {sorted(extra)}")
        kwargs = {}
        for name, annotation, required in fields:
            if name in data:
                if data[name] is None and _allows_none(annotation):
                    kwargs[name] = None
                    continue
                kwargs[name] = from_data(_field_type(tp, name, annotation), data[name],
                                         f"{where}.{name}" if where else name)
            elif required:
                raise BadData(where, f"missing field `{name}`")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            if isinstance(data, bool):
                raise ValueError
            return tp(data)
        except ValueError:
            raise BadData(where, f"not a {tp.__name__}: {data!r}") from None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in args:
            try:
                return from_data(arm, data, where)
            except BadData as exc:
                errors.append(str(exc))
        raise BadData(where, "matches none of " + ", ".join(_name(a) for a in args))
    if origin is typing.Literal:
        if data in args and type(data) in {type(a) for a in args}:
            return data
        raise BadData(where, f"expected one of {list(args)}")
    if tp is type(None) or tp is None:
        if data is None:
            return None
        raise BadData(where, "expected null")
    if tp is bool:
        if isinstance(data, bool):
            return data
        raise BadData(where, "expected a boolean")
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise BadData(where, "expected an integer")
    if tp is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise BadData(where, "expected a number")
    if tp is str:
        if isinstance(data, str):
            return data
        raise BadData(where, "expected a string")
    if tp is bytes:
        if isinstance(data, str):
            import base64
            import binascii

            try:
                return base64.b64decode(data.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                pass
        raise BadData(where, "expected base64 bytes")
    if origin in (tuple, list, frozenset, set):
        if not isinstance(data, list):
            raise BadData(where, "expected a list")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(data) != len(args):
                raise BadData(where, f"expected {len(args)} items, not {len(data)}")
            return tuple(from_data(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(args, data)))
        item = args[0] if args else Any
        values = [from_data(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return origin(values) if origin is not set else set(values)
    if origin is dict:
        kt, vt = args
        if not isinstance(data, list):
            raise BadData(where, "expected a list of pairs")
        out = {}
        for i, pair in enumerate(data):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise BadData(f"{where}[{i}]", "expected a [key, value] pair")
            out[from_data(kt, pair[0], f"{where}[{i}]")] = from_data(vt, pair[1], f"{where}[{i}]")
        return out
    raise TypeError(f"{where}: cannot read a stored {_name(tp)}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def dumps(obj: Any) -> bytes:
    return json.dumps(to_data(obj), separators=(",", ":"), allow_nan=False).encode()


def loads(tp: type[T], raw: bytes) -> T:
    """Parse and check; a bad document raises BadData (never anything else)."""
    if len(raw) > MAX_BYTES:
        raise BadData("", f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadData("", f"not JSON: {exc}") from None
    try:
        return from_data(tp, data)
    except RecursionError:
        raise BadData("", "nested too deeply") from None
    except BadData:
        raise
    except (TypeError, ValueError) as exc:  # a dataclass refusing a value in __post_init__
        raise BadData("", str(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a stored value")
