"""stored.py: what is read back from disk is checked against the declared types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from linx_spec import stored
from linx_spec.stored import BadData


@dataclass(frozen=True)
class Inner:
    n: int
    data: bytes = b""


@dataclass(frozen=True)
class Outer:
    name: str
    items: tuple[Inner, ...]
    pair: tuple[str, int]
    maybe: Inner | None = None
    table: dict[int, str] | None = None
    ratio: float = 1.0
    flag: bool = False


SAMPLE = Outer("a", (Inner(1, b"\x00\xff"), Inner(2)), ("x", 3), Inner(4), {5: "five"}, 0.5, True)


def test_round_trip_keeps_every_type():
    back = stored.loads(Outer, stored.dumps(SAMPLE))
    assert back == SAMPLE
    assert isinstance(back.items, tuple) and isinstance(back.table, dict) and 5 in back.table


@pytest.mark.parametrize("doc, where", [
    (b'{"name": 1, "items": [], "pair": ["x", 3]}', "name"),
    (b'{"name": "a", "items": [{"n": "1"}], "pair": ["x", 3]}', "items[0].n"),
    (b'{"name": "a", "items": [], "pair": ["x", 3], "evil": 1}', "unknown field"),
    (b'{"name": "a", "items": []}', "missing field `pair`"),
    (b'{"name": "a", "items": [], "pair": ["x", true]}', "pair[1]"),
    (b'{"name": "a", "items": [], "pair": ["x", 3, 4]}', "expected 2 items"),
    (b'{"name": "a", "items": [], "pair": ["x", 3], "ratio": NaN}', "not JSON"),
    (b'{"name": "a", "items": [{"n": 1, "data": "not base64!"}], "pair": ["x", 3]}', "base64"),
    (b'[' * 100000, "not JSON"),
    (b'\x80\x04\x95pickle', "not JSON"),
    (b'"a string"', "expected an object"),
])
def test_bad_documents_raise_bad_data_naming_the_field(doc, where):
    with pytest.raises(BadData, match=where.replace("[", r"\[").replace("]", r"\]")):
        stored.loads(Outer, doc)


def test_oversized_document_is_refused_unread():
    with pytest.raises(BadData, match="larger than"):
        stored.loads(Outer, b" " * (stored.MAX_BYTES + 1))


def test_a_type_that_cannot_be_checked_is_a_programming_error():
    @dataclass(frozen=True)
    class Loose:
        x: Any

    with pytest.raises(TypeError):
        stored.from_data(Loose, {"x": 1})


def test_every_example_specs_plan_survives_the_round_trip():
    """The plans that the CLI caches and `exec` reads back: equal after JSON."""
    import glob
    import os

    from linx_spec import PlanError, build_plan, load_file
    from linx_spec.plan import Plan

    done = 0
    for f in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "specs", "*.yaml"))):
        try:
            plan = build_plan(load_file(f), source=f, base_dir=os.path.dirname(os.path.abspath(f)))
        except PlanError:
            continue  # this host cannot honour it (not root, a bind source missing)
        assert stored.loads(Plan, stored.dumps(plan)) == plan, f
        done += 1
    assert done >= 3


def test_a_bad_document_is_bad_data_in_a_process_without_json_imported():
    """stored.loads uses json's C scanner, which raises its error through
    json.decoder: without it imported (a cached apply) that is a SystemError."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nfrom linx_spec import stored\nassert 'json.decoder' not in sys.modules\n"
            "for doc in (b'{\"a\": }', b'[1, 2', b'{\"k\": \"v\"} x', b'\"\\\\x\"'):\n"
            "    try:\n        stored.loads(dict, doc)\n    except stored.BadData as exc:\n"
            "        print('bad data:', exc)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("bad data: (top): not JSON") == 4, proc.stdout
