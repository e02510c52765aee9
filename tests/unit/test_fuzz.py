"""Bad input, generated: the spec loader never raises anything but SpecError
(instances generated from the JSON Schema, mutated YAML, and the hostile classes
of issue 14: alias bombs, deep nesting, tags, NULs, huge and non-finite numbers,
random bytes), `validate` and `plan` exit 0/65/66/70 and never print a traceback,
and the agent never crashes on random or mutated frames (under ASan and UBSan too)."""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
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


# --- hostile input classes (issue 14 items 8, 9): the loader and the CLI ----------------

NUMERIC_FIELDS = [  # (path to the field, YAML prefix/suffix around the value)
    "cgroup: {memory: {max: %s}}", "cgroup: {memory: {swap_max: %s}}", "cgroup: {cpu: {max: %s}}",
    "cgroup: {cpu: {max: 1, period: %s}}", "cgroup: {cpu: {weight: %s}}", "cgroup: {pids: {max: %s}}",
    "cgroup: {io: {limits: [{device: /dev/vda, read_bps: %s, write_iops: %s}]}}",
    "lifecycle: {timeout: %s}", "lifecycle: {stop_grace: %s}",
    "lifecycle: {restart: {policy: always, backoff: %s, max_backoff: %s, max_retries: %s}}",
    "rlimits: {nofile: %s}", "rlimits: {cpu: %s}", "rlimits: {rttime: %s}", "rlimits: {as: %s}",
    "rlimits: {stack: {soft: %s}}", "rlimits: {oom_score_adj: %s}", "rlimits: {nice: %s}",
    "process: {command: [/bin/true], user: {uid: %s, gid: %s, groups: [%s]}, umask: %s}",
    "idmap: {uid: [{container: %s, host: %s, count: %s}]}",
    "mounts: {entries: [{type: tmpfs, target: /t, size: %s, mode: %s, uid: %s}]}",
    "network: {interfaces: [{name: e0, mtu: %s}], routes: [{to: default, via: 10.0.0.1, metric: %s}]}",
    "seccomp: {default: allow, rules: [{syscalls: [kill], action: errno %s, args: [{index: 0, op: eq, value: %s}]}]}",
]
NUMBERS = st.one_of(
    st.sampled_from([".inf", "-.inf", ".nan", ".NaN", "1e26", "1.0e+26", "-1", "0", "-0.0", "4194305", "2147483648",
                     "4294967295", "4294967296", "9223372036854775807", "9223372036854775808",
                     "18446744073709551616", "99999999999999999999999Ei", "99999999999999999999h", "16Ei", "8Ei",
                     "0x7fffffffffffffff", "0o777", "0o1000", "1_000", "'1000'", "true", "null", "[]", "{}",
                     "9" * 400, "9" * 5000, "1" + "0" * 30 + "m", "1.5", "500m", "1m30s", "2024-13-45", "~"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", ".inf").replace("nan", ".nan")),
)


def _alias_bomb(levels: int, width: int) -> str:
    out = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        out.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(out) + "\n"


HOSTILE = st.one_of(
    st.builds(lambda lv, w: "version: 1\nprocess: {command: [/bin/true]}\n" + _alias_bomb(lv, w),
              st.integers(2, 12), st.integers(2, 12)),
    st.builds(lambda n, o, c: o * n + c * n, st.integers(1, 200_000), st.sampled_from(["[", "{a: ", "- "]),
              st.sampled_from(["", "]", "}"])),
    st.builds(lambda tag, where: where % tag,
              st.sampled_from(["!!python/object/apply:os.system", "!!python/name:os.system", "!foo", "!!binary",
                               "!!set", "!!omap", "!<tag:example.com,2000:x>", "!", "!!str", "!!int"]),
              st.sampled_from(["version: 1\nprocess: %s [/bin/true]\n", "version: 1\nprocess: {command: %s [x]}\n",
                               "version: 1\nprocess: {command: [/bin/true], cwd: %s /}\n",
                               "version: 1\n%s process: {command: [/bin/true]}\n"])),
    st.builds(lambda field, pre, post: f"version: 1\nprocess: {{command: [/bin/true]}}\n{field}: \"{pre}\\0{post}\"\n",
              st.sampled_from(["hostname", "domainname", "name"]), st.text(max_size=5), st.text(max_size=5)),
    st.builds(lambda where, a, b: 'version: 1\nprocess: {command: ["/bin/true", "%s"], cwd: "%s", env: {A: "%s"}}\n'
              % ("\\0" if where == 0 else a, "/\\0" if where == 1 else "/", "\\0" if where == 2 else b),
              st.integers(0, 2), st.text("ab", max_size=3), st.text("ab", max_size=3)),
    st.builds(lambda tmpl, nums: "version: 1\nprocess: {command: [/bin/true]}\n" * ("process:" not in tmpl)
              + ("version: 1\n" if "process:" in tmpl else "") + tmpl % tuple(nums[:tmpl.count("%s")]) + "\n",
              st.sampled_from(NUMERIC_FIELDS), st.lists(NUMBERS, min_size=4, max_size=4)),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
)


@FUZZ
@given(HOSTILE)
def test_hostile_classes_fail_cleanly_in_the_loader(text):
    _load(text)


def _cli_examples() -> int:
    return int(os.environ.get("LINX_FUZZ_CLI_EXAMPLES", "12"))


@settings(max_examples=_cli_examples(), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(HOSTILE, min_size=1, max_size=6), st.sampled_from(["validate", "plan"]))
def test_hostile_classes_never_give_a_traceback_from_the_cli(tmp_path_factory, texts, command):
    from conftest import cli

    d = tmp_path_factory.mktemp("fuzz")
    files = []
    for i, text in enumerate(texts):
        f = d / f"f{i}.yaml"
        f.write_bytes(text.encode("utf-8", "surrogatepass"))
        files.append(str(f))
    # validate takes them all in one process; plan takes one file (the first).
    args = [command, *files] if command == "validate" else [command, files[0]]
    proc = cli(*args, timeout=60)
    assert proc.returncode in (0, 65, 66, 70), (args, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


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
        _ended_cleanly(proc, f"run {i}: input {blob.hex()}")


def _ended_cleanly(proc: subprocess.Popen, what: str) -> None:
    """The agent (or zygote) exits 0 within 15 s, with no sanitizer report."""
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"hung: {what}")
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert code == 0 and "runtime error" not in err and "AddressSanitizer" not in err, f"{what}: exit {code}\n{err}"


def _fork_mutations(rng: random.Random) -> list[tuple[bytes, int]]:
    """Frames for the zygote, each with how many descriptors ride along."""
    out = []
    for seq in range(1, rng.randrange(2, 6)):
        mask = rng.randrange(8)
        frame = bytearray(P.encode(P.Msg.FORK, seq, [(P.A.STDIO, mask)]))
        nfds = 1 + bin(mask).count("1")
        for _ in range(rng.randrange(0, 3)):
            kind = rng.randrange(4)
            if kind == 0:
                frame[rng.randrange(12, len(frame))] = rng.randrange(256)
            elif kind == 1:
                frame[rng.randrange(2, 12)] = rng.randrange(256)
            elif kind == 2:
                nfds = rng.randrange(0, 6)  # too few or too many descriptors
            else:
                frame += P.ATTR.pack(rng.randrange(64), 0, 4) + rng.randbytes(4)
                frame[8:12] = (len(frame) - 12).to_bytes(4, "little")
        out.append((bytes(frame), nfds))
    return out


@pytest.mark.parametrize("agent", AGENTS, ids=lambda p: p.name)
def test_zygote_never_crashes_on_mutated_fork_frames(agent, agent_bin):
    """The zygote (linx-agent --zygote, linx_spec.Runner's) on FORK frames with
    flipped bytes, extra attributes and the wrong number of descriptors: it
    answers each it can read, forks only for a well-formed one, exits 0 when its
    channel closes, and the agents it forked end when their channels close."""
    rng = random.Random(int(os.environ.get("LINX_FUZZ_SEED", "20261201")))
    runs = int(os.environ.get("LINX_FUZZ_FRAMES", "150")) // 3
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="halt_on_error=1:exitcode=98:print_stacktrace=1")
    for i in range(runs):
        frames = _fork_mutations(rng)
        mine, theirs = socket.socketpair()
        proc = subprocess.Popen([str(agent), "--zygote", "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        theirs.close()
        channels, forked = [], []
        mine.settimeout(5)
        try:
            for frame, nfds in frames:
                pairs = [socket.socketpair() for _ in range(nfds)]
                channels += [a for a, _ in pairs]
                fds = [b.fileno() for _, b in pairs]
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
                mine.sendmsg([frame], anc)
                for _, b in pairs:
                    b.close()
                raw, anc_in, _, _ = mine.recvmsg(256, socket.CMSG_SPACE(16))
                if not raw:
                    break  # framing lost: the zygote said so and left
                for _, _, blob in anc_in:
                    forked += list(struct.unpack(f"{len(blob) // 4}i", blob))
        except OSError:
            pass
        mine.close()
        for c in channels:
            c.close()  # every forked agent sees its channel close and exits
        _ended_cleanly(proc, f"run {i}: frames {[f.hex() for f, _ in frames]}")
        for pidfd in forked:  # each forked agent ended (its pidfd readable)
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            assert p.poll(10000), f"run {i}: a forked agent outlived its channel"
            os.close(pidfd)
