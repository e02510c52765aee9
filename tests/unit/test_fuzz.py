"""Bad input, generated: the spec loader never raises anything but SpecError
(instances generated from the JSON Schema, and mutated YAML), and the agent
never crashes on random or mutated frames (run under ASan and UBSan too)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AGENT_DIR, REPO
from linx_spec import SpecError, load_text
from linx_spec import protocol as P

SCHEMA = json.loads((REPO / "schema" / "linx-spec.schema.json").read_text())
EXAMPLES = [p.read_text() for p in sorted((REPO / "specs").glob("*.yaml"))] + [
    p.read_text() for p in sorted((REPO / "tests" / "bad").glob("*.yaml"))]
FUZZ = settings(max_examples=int(os.environ.get("LINX_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=list(HealthCheck))


def from_schema(schema: dict, root: dict | None = None, depth: int = 0) -> st.SearchStrategy:
    """Instances of (the subset of JSON Schema our generated schema uses).  Kept
    here rather than hypothesis-jsonschema, which breaks with current hypothesis."""
    root = root or schema
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, depth + 1))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, root, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, root, depth) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**33)), schema.get("maximum", 2**33))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6), allow_nan=False)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 80)
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 20))
    if kind == "array":
        items = from_schema(schema.get("items", {"type": "string"}), root, depth + 1)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=3 if depth < 4 else 1)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        opt = {k: from_schema(v, root, depth + 1) for k, v in props.items() if k not in required}
        req = {k: from_schema(v, root, depth + 1) for k, v in props.items() if k in required}
        if not props and isinstance(schema.get("additionalProperties"), dict):
            return st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True),
                                   from_schema(schema["additionalProperties"], root, depth + 1), max_size=3)
        return st.fixed_dictionaries(req, optional=opt if depth < 6 else {})
    return st.none() | st.integers() | st.text(max_size=5)


def _load(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml", env={})
    except SpecError as exc:
        for p in exc.problems:
            assert p.file == "fuzz.yaml" and p.message


@FUZZ
@given(from_schema(SCHEMA))
def test_instances_of_the_schema_load_or_fail_cleanly(instance):
    _load(yaml.safe_dump(instance))


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_yaml_fails_cleanly(text, data):
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["delete", "insert", "replace", "swap_lines"]))
        if op == "swap_lines":
            lines = "".join(chars).splitlines(keepends=True)
            if len(lines) > 1:
                i = data.draw(st.integers(0, len(lines) - 2))
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
            chars = list("".join(lines))
            continue
        pos = data.draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "delete" and chars:
            del chars[pos]
        else:
            ch = data.draw(st.sampled_from(list(":-[]{},#&*!|>'\"%@` \t\n0aZ\x00\u00e9$") + ["${X}", "\ufeff"]))
            if op == "insert":
                chars.insert(pos, ch)
            elif chars:
                chars[pos] = ch
    _load("".join(chars))


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20))
def test_arbitrary_documents_fail_cleanly(doc):
    try:
        text = yaml.safe_dump({"version": 1, "process": {"command": ["/bin/true"]}, "x": doc})
    except yaml.YAMLError:
        return
    _load(text)


def _agents():
    bins = [AGENT_DIR / "linx-agent"]
    asan = AGENT_DIR / "linx-agent-asan"
    subprocess.run(["make", "-s", "-C", str(AGENT_DIR), "linx-agent-asan"], check=True)
    bins.append(asan)
    return bins


AGENTS = _agents()


def _mutations(rng: random.Random) -> bytes:
    base = [
        P.encode(P.Msg.HELLO, 1),
        P.encode(P.Msg.SPAWN, 2, [(P.A.NS_FLAGS, 0), (P.A.GRACE_MS, 100)]),
        P.encode(P.Msg.PROCEED, 3, [(P.A.STEP_ORDER, P.step_order_value([23, 25])), (P.A.EXEC_PATH, "/bin/true"),
                                    (P.A.ARG, "true"), (P.A.UID, 0), (P.A.GID, 0)]),
        P.encode(P.Msg.SIGNAL, 4, [(P.A.SIGNO, 0)]),
        P.encode(P.Msg.TRACK_CGROUP, 5, [(P.A.PATH, "/nonexistent/linx-fuzz")]),
        P.encode(P.Msg.LINGER, 6),
        P.encode(P.Msg.WAIT, 7),
        P.encode(P.Msg.ABORT, 8),
    ]
    stream = bytearray()
    for _ in range(rng.randrange(1, 6)):
        frame = bytearray(rng.choice(base))
        for _ in range(rng.randrange(0, 4)):
            kind = rng.randrange(4)
            if kind == 0 and len(frame) > 12:  # flip a payload byte
                frame[rng.randrange(12, len(frame))] = rng.randrange(256)
            elif kind == 1:  # flip a header byte other than the magic
                frame[rng.randrange(2, 12)] = rng.randrange(256)
            elif kind == 2 and len(frame) > 12:  # truncate the payload, fix the length
                cut = rng.randrange(12, len(frame))
                frame = frame[:cut]
                frame[8:12] = (cut - 12).to_bytes(4, "little")
            else:  # append an attribute of random type and bytes
                extra = P.ATTR.pack(rng.randrange(64), 0, 4) + rng.randbytes(4)
                frame += extra
                frame[8:12] = (len(frame) - 12).to_bytes(4, "little")
        stream += frame
    if rng.random() < 0.2:
        stream += rng.randbytes(rng.randrange(1, 40))
    return bytes(stream)


@pytest.mark.parametrize("agent", AGENTS, ids=lambda p: p.name)
def test_agent_never_crashes_on_mutated_frames(agent, tmp_path, agent_bin):
    rng = random.Random(int(os.environ.get("LINX_FUZZ_SEED", "20261128")))
    runs = int(os.environ.get("LINX_FUZZ_FRAMES", "150"))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="halt_on_error=1:exitcode=98:print_stacktrace=1")
    for i in range(runs):
        blob = _mutations(rng)
        mine, theirs = socket.socketpair()
        proc = subprocess.Popen([str(agent), "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        theirs.close()
        try:
            mine.sendall(blob)
        except OSError:
            pass
        mine.settimeout(5)
        try:  # read replies until the agent is done with what it got
            mine.shutdown(socket.SHUT_WR)
            while mine.recv(65536):
                pass
        except OSError:
            pass
        mine.close()
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"agent hung on input {blob.hex()}")
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        assert code == 0 and "runtime error" not in err and "AddressSanitizer" not in err, (
            f"run {i}: exit {code} on input {blob.hex()}\n{err}")
