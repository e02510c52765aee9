"""YAML text -> Spec.  Every error carries file:line:column and the field path.

The YAML is composed into nodes (so every value keeps its position), turned
into plain data with `${VAR}` / `${VAR:-default}` expanded in strings and
`--set path=value` overrides applied, then validated by pydantic.  Each pydantic
error's location is mapped back to the node it came from; unknown keys get the
nearest known key as a suggestion.  All problems of a file are reported at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from . import spec as spec_models
from .errors import Problem, SpecError
from .spec import NAME_PATTERN, Spec
from .specfile import read_spec_bytes
from .suggest import closest

Loc = tuple[Any, ...]
# `${NAME}` and `${NAME:-default}` expand; `$${` is a literal `${`; any other `$`
# (shell's `$$`, `$1`, `$(cmd)`) is left alone, so scripts in `command` stay readable.
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Marks:
    def __init__(self, file: str):
        self.file = file
        self.value: dict[Loc, tuple[int, int]] = {}
        self.key: dict[Loc, tuple[int, int]] = {}
        self.block: set[Loc] = set()  # block collections start on the line after their key
        self.text: dict[Loc, str] | None = None  # plain scalars' source text (for --set values only)

    def at(self, loc: Loc, prefer_key: bool = False) -> tuple[int, int]:
        loc = tuple(loc)
        while True:
            if (prefer_key or loc in self.block) and loc in self.key:
                return self.key[loc]
            if loc in self.value:
                return self.value[loc]
            if loc in self.key:
                return self.key[loc]
            if not loc:
                return (0, 0)
            loc = loc[:-1]


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _expand(text: str, env: Mapping[str, str], loc: Loc, marks: _Marks, problems: list[Problem]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        line, col = marks.at(loc)
        problems.append(Problem(marks.file, line, col, _dotted(loc),
                                f"environment variable `{name}` is not set (use ${{{name}:-default}} for a default)"))
        return ""

    return _VAR.sub(sub, text)


# Hostile files (issue 14): a spec is a few hundred values.  The budget counts
# values after alias expansion, so a 1 KB "billion laughs" stops at a few MB;
# the depth bounds PyYAML's recursive composer and our own walk below it.
MAX_VALUES = 50_000
MAX_DEPTH = 64
# Tags a spec may carry (explicitly or by YAML's implicit resolution); anything
# else (`!!python/object/apply:os.system`, `!foo`, `!!binary`) is refused, not ignored.
_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}


class _Refused(Exception):
    """A hostile-file bound was hit; carries the node where it happened."""

    def __init__(self, node: yaml.Node, message: str):
        self.node, self.message = node, message


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the composer's recursion bounded by MAX_DEPTH."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node):
        # `<<: [*a, *a, ...]` copies the merged pairs (no dedup): nine merges of
        # nine merges grow like an alias bomb inside PyYAML, so bound every level.
        super().flatten_mapping(node)
        if len(node.value) > MAX_VALUES:
            raise _Refused(node, f"merge keys (`<<`) expand to more than {MAX_VALUES} entries: "
                                 "refused as an alias bomb")


class _Walk:
    """What _to_data counts across one document."""

    def __init__(self) -> None:
        self.values = 0
        self.open: set[int] = set()  # ids of the collections being walked: an alias to one is a cycle


def _to_data(node: yaml.Node, loc: Loc, marks: _Marks, ctor: yaml.constructor.SafeConstructor,
             env: Mapping[str, str] | None, problems: list[Problem], walk: _Walk) -> Any:
    walk.values += 1
    if walk.values > MAX_VALUES:
        raise _Refused(node, f"more than {MAX_VALUES} values (after expanding aliases): refused as an alias bomb")
    if len(loc) > MAX_DEPTH:
        raise _Refused(node, f"nested more than {MAX_DEPTH} levels deep")
    if node.tag not in _TAGS:
        raise _Refused(node, f"unknown YAML tag `{node.tag}`: a spec holds only plain mappings, lists and scalars")
    if id(node) in walk.open:
        raise _Refused(node, "an alias refers to a collection that contains it (a recursive structure)")
    marks.value[loc] = _mark(node)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style:
        marks.block.add(loc)
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        walk.open.add(id(node))
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode) or knode.tag not in _TAGS:
                problems.append(Problem(marks.file, *_mark(knode), _dotted(loc), "keys must be plain scalars"))
                continue
            try:
                key = ctor.construct_object(knode, deep=True)
            except (ValueError, OverflowError) as exc:
                raise _Refused(knode, f"cannot read `{knode.value[:40]}`: {exc}") from None
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(Problem(marks.file, *_mark(knode), _dotted(loc), "keys must be plain scalars"))
                continue
            if key in out:
                problems.append(Problem(marks.file, *_mark(knode), _dotted(loc + (key,)),
                                        f"duplicate key `{key}`"))
                continue
            marks.key[loc + (key,)] = _mark(knode)
            out[key] = _to_data(vnode, loc + (key,), marks, ctor, env, problems, walk)
        walk.open.discard(id(node))
        return out
    if isinstance(node, yaml.SequenceNode):
        walk.open.add(id(node))
        items = [_to_data(n, loc + (i,), marks, ctor, env, problems, walk) for i, n in enumerate(node.value)]
        walk.open.discard(id(node))
        return items
    try:
        value = ctor.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # int() of 5000 digits, a timestamp like 2024-13-45
        raise _Refused(node, f"cannot read `{node.value[:40]}`: {exc}") from None
    if marks.text is not None and not isinstance(value, str) and node.style is None:
        marks.text[loc] = node.value  # `5`, `1.0`, `true`: the text, should the field want a string
    if isinstance(value, str) and "$" in value and env is not None:
        value = _expand(value, env, loc, marks, problems)
    if isinstance(value, str) and "\0" in value:
        # YAML's "\0" escape: every string ends up in a syscall, where C would cut it at the NUL.
        problems.append(Problem(marks.file, *_mark(node), _dotted(loc), "a NUL character (\\0) is not allowed"))
    return value


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Known keys of the model that sits at loc (for `did you mean`)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            # Union branches and list items: search the annotation's models.
            return []
        # Spec's sections are typed lazily (spec.SECTIONS): their models resolve here.
        current = _model_of(spec_models.field_type(part) if current is Spec else fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    if not fields:
        return []
    names = []
    for name, f in fields.items():
        names.append(f.alias or name)
    return names


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_value(text: str, where: str = "--set") -> Any:
    """An override value is a YAML scalar or flow collection: `64Mi`, `[a, b]`, `true`.  It goes
    through the same bounds as a file (depth, aliases, tags); what is not YAML stays a string."""
    return _parse_override_value(text, where)[0]


def _parse_override_value(text: str, where: str) -> tuple[Any, dict[Loc, str]]:
    """-> (value, the source text of each plain non-string scalar in it, by its place in the value)."""
    problems: list[Problem] = []
    marks = _Marks(where)
    marks.text = {}
    try:
        loader = _Loader(text)
    except yaml.YAMLError:  # a character YAML does not allow (a control character): plain text
        return text, {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        value = _to_data(node, (), marks, loader, None, problems, _Walk())  # no ${VAR} in overrides
    except yaml.YAMLError:
        return text, {}
    except _Refused as exc:
        raise SpecError([Problem(where, 0, 0, "", exc.message)]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError([Problem(where, 0, 0, "", p.message) for p in problems])
    return value, marks.text


@dataclass(frozen=True)
class _Override:
    """One `--set path=value`, applied: where it landed in the data, and the text
    of its plain scalars (`process.command=[sleep, 5]`: the 5 may be wanted as "5")."""

    where: str  # `--set process.memory=x`, as errors name it
    loc: Loc
    texts: dict[Loc, str]

    def covers(self, loc: Loc) -> bool:
        return tuple(loc[:len(self.loc)]) == self.loc


def apply_override(data: dict, assignment: str) -> _Override:
    """`process.env.FOO=bar` sets data['process']['env']['FOO'] = 'bar'."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in assignment[:200])
    where = f"--set {shown}"  # echoed in errors: no terminal escapes from an argument
    if "=" not in assignment:
        raise SpecError([Problem(where, 0, 0, "", "expected path.to.field=value")])
    path, _, raw = assignment.partition("=")
    parts = [p for p in path.strip().split(".")]
    if not all(parts):
        raise SpecError([Problem(where, 0, 0, "", "empty field name in the path")])
    cur: Any = data
    loc: list[Any] = []
    for i, part in enumerate(parts[:-1]):
        key: Any = int(part) if isinstance(cur, list) and part.isdigit() else part
        if isinstance(cur, list):
            if not isinstance(key, int) or key >= len(cur):
                raise SpecError([Problem(where, 0, 0, "", f"`{part}` is not an index of the list")])
            cur = cur[key]
            loc.append(key)
            continue
        if not isinstance(cur, dict):
            raise SpecError([Problem(where, 0, 0, "", f"`{'.'.join(parts[:i])}` is not a mapping")])
        if key not in cur or cur[key] is None:
            cur[key] = {}
        cur = cur[key]
        loc.append(key)
    last: Any = parts[-1]
    value, texts = _parse_override_value(raw, where)
    if isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        last = int(last)
    elif not isinstance(cur, dict):
        raise SpecError([Problem(where, 0, 0, "", "cannot set a field inside a non-mapping")])
    cur[last] = value
    loc.append(last)
    return _Override(where, tuple(loc), {tuple(loc) + k: t for k, t in texts.items()})


def _override_at(loc: Loc, overrides: list[_Override]) -> _Override | None:
    """The last --set that wrote at or above loc: an error there is its error."""
    for o in reversed(overrides):
        if o.covers(loc):
            return o
    return None


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _strings_wanted(exc: ValidationError, data: Any, overrides: list[_Override]) -> bool:
    """Where a field wants a string and a --set gave `5` or `true`, use the text
    as written (pydantic decides what a field wants; YAML only guessed): -> changed."""
    changed = False
    for err in exc.errors(include_url=False):
        if err["type"] != "string_type":
            continue
        loc = _clean_loc(tuple(err["loc"]), data, err["type"])
        o = _override_at(loc, overrides)
        if o is None or loc not in o.texts:
            continue
        parent = _get(data, loc[:-1])
        if not isinstance(parent[loc[-1]], str):
            parent[loc[-1]] = o.texts[loc]
            changed = True
    return changed


def _message(err: dict, loc: Loc, marks: _Marks, file: str) -> Problem:
    etype = err["type"]
    msg = err["msg"]
    if etype == "extra_forbidden":
        name = loc[-1]
        known = _fields_at(Spec, loc[:-1])
        close = closest(str(name), known)
        hint = f"; did you mean `{close}`?" if close else (f"; known fields: {', '.join(known)}" if known else "")
        line, col = marks.at(loc, prefer_key=True)
        return Problem(file, line, col, _dotted(loc), f"unknown field{hint}")
    if etype == "missing":
        line, col = marks.at(loc[:-1])
        return Problem(file, line, col, _dotted(loc), "required field is missing")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    line, col = marks.at(loc)
    return Problem(file, line, col, _dotted(loc), msg)


def _clean_loc(loc: Loc, data: Any, etype: str = "missing") -> Loc:
    """Drop pydantic's union tags and validator labels that are not keys in the data.

    A part absent from the data is kept only when it is the last one: that is
    the missing or unknown key itself; anywhere else it is a label."""
    out: list[Any] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif (i == len(loc) - 1 and isinstance(cur, dict) and isinstance(part, str)
              and etype in ("missing", "extra_forbidden") and not any(c in part for c in "[(")):
            out.append(part)
    return tuple(out)


def load_text(text: str, file: str = "<string>", *, env: Mapping[str, str] | None = None,
              overrides: list[str] = ()) -> Spec:
    """Parse and validate one spec; SpecError with every problem found."""
    env = os.environ if env is None else env
    marks = _Marks(file)
    problems: list[Problem] = []
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise SpecError([Problem(file, 1, 1, "", "the file is empty; a spec needs at least `version` and `process`")])
            data = _to_data(node, (), marks, loader, env, problems, _Walk())
        except _Refused as exc:
            raise SpecError([Problem(file, *_mark(exc.node), "", exc.message)]) from None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{exc.context}: {what}" if exc.problem else exc.context
        raise SpecError([Problem(file, line, col, "", f"YAML syntax: {what}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, 0, 0, "", f"YAML: {exc}")]) from None
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string"}.get(type(data), type(data).__name__)
        raise SpecError([Problem(file, *marks.at(()), "", f"a spec must be a mapping (key: value), not {kind}")])
    applied = [apply_override(data, assignment) for assignment in overrides]
    spec = None
    for attempt in range(4):  # each round can only turn more --set scalars back into their text
        try:
            spec = spec_models.validate(data)
            break
        except ValidationError as exc:
            if attempt < 3 and applied and _strings_wanted(exc, data, applied):
                continue
            nul_found = any("NUL character" in p.message for p in problems)
            for err in exc.errors(include_url=False):
                if nul_found and "NUL character" in err["msg"]:
                    continue  # the same NUL, already reported at its own line by _to_data
                loc = _clean_loc(tuple(err["loc"]), data, err["type"])
                problem = _message(err, loc, marks, file)
                if (o := _override_at(loc, applied)) is not None:  # the --set's fault, not the file's
                    problem = Problem(o.where, 0, 0, "" if loc == o.loc else problem.field, problem.message)
                problems.append(problem)
            break
    if problems:
        # One problem per place, in file order.
        seen, unique = set(), []
        for p in sorted(problems, key=lambda p: (p.line, p.column, p.field)):
            if (p.line, p.column, p.field, p.message) not in seen:
                seen.add((p.line, p.column, p.field, p.message))
                unique.append(p)
        raise SpecError(unique)
    assert spec is not None
    return spec


def load_file(path: str | os.PathLike, *, env: Mapping[str, str] | None = None, overrides: list[str] = ()) -> Spec:
    """Read and validate a spec file ("-" reads standard input): a regular file, never blocking."""
    name = str(path)
    try:
        text = read_spec_bytes(name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(name, 0, 0, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    spec = load_text(text, name, env=env, overrides=overrides)
    if spec.name is None and name != "-":
        _check_default_name(Path(name).stem, name)
    return spec


def _check_default_name(stem: str, file: str) -> None:
    """Without `name:`, the workload is named after the file (plan.py): refuse a stem that is no valid name
    (a newline or other control character, a `/`...) rather than let it name cgroups and state."""
    if not re.fullmatch(NAME_PATTERN, stem):
        raise SpecError([Problem(file, 1, 1, "name",
                                 f"the workload would be named after the file, {stem!r}, which is not a valid "
                                 "name (letters, digits, `_ . -`, at most 63, starting with a letter or digit); "
                                 "add `name:` to the spec or rename the file")])
