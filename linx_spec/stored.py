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
frozenset[X], dict[str|int, X] and nested records (record.py) and frozen dataclasses.  Anything else
is a programming error, raised as TypeError when the class is first used.
"""

from __future__ import annotations

import sys

from .intenum import IntEnum
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

# Neither typing, enum nor dataclasses is imported here (with inspect, ~10 ms of a
# cached apply): a type that is a typing construct, an Enum or a plain dataclass
# exists only if its module imported them already, so it is checked through
# sys.modules.  Records (record.py: the Plan's types) are read directly.
_UNION = type(int | None)

MAX_BYTES = 16 << 20  # a plan entry or state file larger than this is refused unread


class BadData(ValueError):
    """A stored document that does not match the types it is read against."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"{where or '(top)'}: {message}")


_HINTS: dict = {}


def _hints(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, annotation, required) for every init field of a record or dataclass.
    The annotation is evaluated only when a value of that field is read (_field_type):
    a cached plan without a network does not import the network plan's module."""
    out = _HINTS.get(cls)
    if out is not None:
        return out
    if issubclass(cls, Record):
        out = tuple((name, cls._annotations[name], name not in cls._defaults) for name in cls._fields)
    else:
        import dataclasses

        out = tuple((f.name, f.type, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                    for f in dataclasses.fields(cls) if f.init)
    _HINTS[cls] = out
    return out


def _is_structure(tp: Any) -> bool:
    """A record or dataclass class (not an instance)."""
    if not isinstance(tp, type):
        return False
    return issubclass(tp, Record) or (("dataclasses" in sys.modules) and sys.modules["dataclasses"].is_dataclass(tp))


def _is_structure_value(obj: Any) -> bool:
    return isinstance(obj, Record) or (not isinstance(obj, type) and _is_structure(type(obj)))


class _ModuleNames:
    """A module's names for eval(), its PEP 562 __getattr__ (lazy imports) included."""

    def __init__(self, module: Any):
        self.module = module

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise KeyError(name) from None


_FIELD_TYPES: dict = {}


def _field_type(cls: type, name: str, annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    tp = _FIELD_TYPES.get((cls, name), _FIELD_TYPES)
    if tp is _FIELD_TYPES:
        module = sys.modules.get(cls.__module__)
        tp = eval(annotation, vars(module) if module else {}, _ModuleNames(module))  # noqa: S307 - our own source
        _FIELD_TYPES[(cls, name)] = tp
    return tp


def field_types(cls: type) -> dict[str, Any]:
    """Every init field's type, evaluated (importing what the module names lazily)."""
    return {name: _field_type(cls, name, annotation) for name, annotation, _r in _hints(cls)}


_ALLOWS_NONE: dict = {}


def _allows_none(annotation: Any) -> bool:
    """`X | None` written as text: None is allowed without evaluating X."""
    if not isinstance(annotation, str):
        return False
    known = _ALLOWS_NONE.get(annotation)
    if known is not None:
        return known
    depth, parts, start = 0, [], 0
    for i, c in enumerate(annotation):
        depth += c == "["
        depth -= c == "]"
        if c == "|" and depth == 0:
            parts.append(annotation[start:i])
            start = i + 1
    parts.append(annotation[start:])
    known = _ALLOWS_NONE[annotation] = "None" in (p.strip() for p in parts)
    return known


def _enum_type(tp: Any) -> bool:
    """An Enum (enum.py's) or an IntEnum of intenum.py (the protocol's numbers)."""
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return True
    enum = sys.modules.get("enum")
    return enum is not None and isinstance(tp, type) and issubclass(tp, enum.Enum)


def _typing_is(tp: Any, name: str) -> bool:
    """tp is typing.<name> (Any, Union, Literal), without importing typing."""
    typing = sys.modules.get("typing")
    return typing is not None and tp is getattr(typing, name)


def to_data(obj: Any) -> Any:
    """A JSON-able value for obj (dataclasses by field, bytes as base64)."""
    if _enum_type(type(obj)):
        return obj.value
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        import binascii  # not base64.py, which imports re: ~4 ms of a cached apply with a filter

        return binascii.b2a_base64(obj, newline=False).decode("ascii")  # = base64.b64encode
    if _is_structure_value(obj):
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
    if _typing_is(tp, "Any"):
        raise TypeError(f"{where}: a stored type must be concrete, not Any")
    if _is_structure(tp):
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
    if _enum_type(tp):
        try:
            if isinstance(data, bool):
                raise ValueError
            return tp(data)
        except ValueError:
            raise BadData(where, f"not a {tp.__name__}: {data!r}") from None
    origin = getattr(tp, "__origin__", None)  # typing.get_origin/get_args, for the forms above
    args = getattr(tp, "__args__", ())
    if isinstance(tp, _UNION) or (origin is not None and _typing_is(origin, "Union")):
        errors = []
        for arm in args:
            try:
                return from_data(arm, data, where)
            except BadData as exc:
                errors.append(str(exc))
        raise BadData(where, "matches none of " + ", ".join(_name(a) for a in args))
    if origin is not None and _typing_is(origin, "Literal"):
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
            import binascii

            try:  # = base64.b64decode(validate=True)
                return binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
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
        if not args:
            raise TypeError(f"{where}: a stored {_name(tp)} needs its item type")
        item = args[0]
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
    import json

    return json.dumps(to_data(obj), separators=(",", ":"), allow_nan=False).encode()


def loads(tp: type[T], raw: bytes) -> T:
    """Parse and check; a bad document raises BadData (never anything else)."""
    if len(raw) > MAX_BYTES:
        raise BadData("", f"larger than {MAX_BYTES} bytes")
    try:
        data = _parse_json(raw)
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


class _Strict:
    """What json's C scanner reads from a JSONDecoder: json.loads' defaults, and
    NaN/Infinity refused."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse_constant)


_WHITESPACE = " \t\n\r"  # JSON's


def _parse_json(raw: bytes) -> Any:
    """json.loads(raw) with NaN and Infinity refused, through the C scanner that
    json.loads itself uses: the json package imports `re` (with enum, functools,
    collections: ~4 ms of a cached apply) for its pure-Python fallback."""
    try:
        from _json import make_scanner
    except ImportError:  # pragma: no cover - a Python without the accelerator
        import json

        return json.loads(raw, parse_constant=_refuse_constant)
    text = raw.decode("utf-8")  # what dumps writes (ASCII); anything else is not ours
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = make_scanner(_Strict)(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except SystemError:
        # The scanner raises json.decoder.JSONDecodeError only if json.decoder is
        # imported already, else this: the document is bad; json says how.
        import json

        return json.loads(raw, parse_constant=_refuse_constant)
    if len(text.rstrip(_WHITESPACE)) != end:
        raise ValueError(f"Extra data: char {end}")
    return value
