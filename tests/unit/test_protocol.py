"""Golden frames decoded by both halves of the protocol, and the agent's
behaviour on bad frames (it answers with an error, never crashes)."""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import AGENT_BIN, REPO
from linx_spec import protocol as P
from linx_spec.steps import EXTRA_IDS, STEPS

GOLDEN = REPO / "tests" / "golden"

# name -> (frame built by Python, the exact bytes it must be)
GOLDEN_FRAMES = {
    "hello": (P.encode(P.Msg.HELLO, 1), None),
    "spawn": (
        P.encode(P.Msg.SPAWN, 2, [(P.A.NS_FLAGS, 0x10000000 | 0x20000000), (P.A.GRACE_MS, 2000),
                                  (P.A.NS_JOIN, P.ns_join_value(0x40000000, "/run/netns/x"))]),
        None,
    ),
    "proceed": (
        P.encode(P.Msg.PROCEED, 3, [(P.A.STEP_ORDER, P.step_order_value([20, 23, 25, 26])),
                                    (P.A.EXEC_PATH, "/bin/echo"), (P.A.ARG, "echo"), (P.A.ARG, "hi"),
                                    (P.A.ENV, "PATH=/bin"), (P.A.CWD, "/"), (P.A.UID, 0), (P.A.GID, 0),
                                    (P.A.CAP_BOUNDING, 1 << 10), (P.A.NO_NEW_PRIVS, 1)]),
        None,
    ),
    "error": (
        P.encode(P.Msg.ERROR, 3, [(P.A.STEP, 28), (P.A.ERRNO, 2), (P.A.DETAIL, "execve"),
                                  (P.A.PATH, "/no/such/bin")]),
        None,
    ),
}


def _golden_file(name: str) -> Path:
    return GOLDEN / f"{name}.hex"


@pytest.mark.parametrize("name", sorted(GOLDEN_FRAMES))
def test_python_encoding_matches_the_golden_bytes(name):
    frame, _ = GOLDEN_FRAMES[name]
    golden = bytes.fromhex(_golden_file(name).read_text().split("#")[0].replace("\n", "").replace(" ", ""))
    assert frame == golden


def test_golden_header_layout_is_as_drawn():
    raw = bytes.fromhex(_golden_file("hello").read_text().split("#")[0].replace("\n", "").replace(" ", ""))
    # u16 magic 'LX' | u8 version | u8 type | u32 seq | u32 len
    assert raw[:2] == b"LX" and raw[2] == 1 and raw[3] == 0x01
    assert struct.unpack("<II", raw[4:12]) == (1, 0)


@pytest.fixture(scope="module")
def c_decoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "lx_golden"
    subprocess.run(["cc", "-std=gnu11", "-Wall", "-Werror", "-o", str(out), str(GOLDEN / "lx_golden.c"),
                    str(REPO / "agent" / "lx_proto.c")], check=True)
    return out


@pytest.mark.parametrize("name", sorted(GOLDEN_FRAMES))
def test_c_side_decodes_golden_frames_like_python(name, c_decoder):
    raw = bytes.fromhex(_golden_file(name).read_text().split("#")[0].replace("\n", "").replace(" ", ""))
    c_view = subprocess.run([str(c_decoder)], input=raw, capture_output=True, check=True).stdout.decode().strip()
    f = P.decode(raw)
    py_view = f"type=0x{f.type:02x} seq={f.seq} version={f.version} |" + "".join(
        f" {t}:{v.hex()}" for t, v in f.attrs)
    assert c_view == py_view


def test_python_decodes_typed_values_of_golden_frames():
    raw = bytes.fromhex(_golden_file("error").read_text().split("#")[0].replace("\n", "").replace(" ", ""))
    f = P.decode(raw)
    assert (f.type, f.get(P.A.STEP), f.get(P.A.ERRNO), f.get(P.A.DETAIL), f.get(P.A.PATH)) == (
        P.Msg.ERROR, 28, 2, "execve", "/no/such/bin")
    raw = bytes.fromhex(_golden_file("proceed").read_text().split("#")[0].replace("\n", "").replace(" ", ""))
    f = P.decode(raw)
    assert f.all(P.A.ARG) == ["echo", "hi"] and f.get(P.A.CAP_BOUNDING) == 1 << 10


def test_frame_errors_in_python():
    with pytest.raises(P.FrameError):
        P.decode(b"XX" + bytes(10))
    with pytest.raises(P.FrameError):
        P.decode_attrs(b"\x01\x00\x00\x00\xff\x00\x00\x00")
    with pytest.raises(P.FrameError):
        P.encode(P.Msg.PROCEED, 1, [(P.A.ARG, "a\0b")])


def test_step_ids_match_the_agent_header():
    header = (REPO / "agent" / "lx_steps.h").read_text()
    c_ids = {name.lower(): int(num) for name, num in re.findall(r"LX_STEP_([A-Z_]+)\s*=\s*(\d+)", header)}
    py_ids = {s.name: s.id for s in STEPS} | {name: i for i, (name, _side) in EXTRA_IDS.items()}
    assert c_ids == py_ids


def test_message_and_attribute_ids_match_the_agent_header():
    header = (REPO / "agent" / "lx_proto.h").read_text()
    c_msgs = {n: int(v, 16) for n, v in re.findall(r"LX_M_([A-Z_]+)\s*=\s*(0x[0-9a-f]+)", header)}
    assert c_msgs == {m.name: m.value for m in P.Msg}
    c_attrs = {n: int(v) for n, v in re.findall(r"LX_A_([A-Z_0-9]+)\s*=\s*(\d+)", header)}
    assert c_attrs == {a.name: a.value for a in P.A}
    assert re.search(r"LX_VERSION (\d+)u", header).group(1) == str(P.VERSION)
    assert int(re.search(r"LX_MAX_PAYLOAD \(1u << (\d+)\)", header).group(1)) == P.MAX_PAYLOAD.bit_length() - 1


class RawAgent:
    """An agent driven with raw bytes, to test what it does with bad frames."""

    def __init__(self):
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen([str(AGENT_BIN), "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        self.sock.settimeout(10)

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def recv(self) -> P.Frame:
        hdr = self._exact(P.HDR_LEN)
        _v, _t, _s, length = P.decode_header(hdr)
        return P.decode(hdr + self._exact(length))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "agent closed the channel"
            buf += chunk
        return buf

    def close(self) -> int:
        self.sock.close()
        return self.proc.wait(10)


@pytest.fixture
def raw_agent(agent_bin):
    a = RawAgent()
    yield a
    a.close()


def test_agent_answers_hello_with_ready(raw_agent):
    raw_agent.send(P.encode(P.Msg.HELLO, 9))
    f = raw_agent.recv()
    assert (f.type, f.seq, f.get(P.A.VERSION), f.get(P.A.PID)) == (P.Msg.READY, 9, 1, raw_agent.proc.pid)


def test_agent_rejects_wrong_version_before_cloning(raw_agent):
    raw_agent.send(P.encode(P.Msg.SPAWN, 4, [(P.A.NS_FLAGS, 0)], version=2))
    f = raw_agent.recv()
    assert f.type == P.Msg.ERROR and f.get(P.A.STEP) == 0 and "version 2" in f.get(P.A.DETAIL)
    # still alive, and nothing was cloned
    assert not open(f"/proc/{raw_agent.proc.pid}/task/{raw_agent.proc.pid}/children").read().strip()
    raw_agent.send(P.encode(P.Msg.HELLO, 5))
    assert raw_agent.recv().type == P.Msg.READY


def test_agent_survives_oversized_frame(raw_agent):
    big = P.MAX_PAYLOAD + 10
    raw_agent.send(P.HDR.pack(P.MAGIC, 1, P.Msg.PROCEED, 6, big) + bytes(big))
    f = raw_agent.recv()
    assert f.type == P.Msg.ERROR and "exceeds" in f.get(P.A.DETAIL)
    raw_agent.send(P.encode(P.Msg.HELLO, 7))
    assert raw_agent.recv().type == P.Msg.READY


def test_agent_rejects_nul_in_strings_and_malformed_attributes(raw_agent):
    raw_agent.send(P.encode(P.Msg.SPAWN, 1, [(P.A.NS_FLAGS, 0)]))
    assert raw_agent.recv().type == P.Msg.SPAWNED
    bad_str = P.ATTR.pack(P.A.ARG, 0, 3) + b"a\0b"
    payload = P.attr(P.A.STEP_ORDER, P.step_order_value([23])) + P.attr(P.A.EXEC_PATH, "/bin/true") + bad_str
    raw_agent.send(P.HDR.pack(P.MAGIC, 1, P.Msg.PROCEED, 2, len(payload)) + payload)
    f = raw_agent.recv()
    assert f.type == P.Msg.ERROR and "NUL" in f.get(P.A.DETAIL)
    truncated = P.ATTR.pack(P.A.ARG, 0, 100) + b"abc"
    raw_agent.send(P.HDR.pack(P.MAGIC, 1, P.Msg.PROCEED, 3, len(truncated)) + truncated)
    f = raw_agent.recv()
    assert f.type == P.Msg.ERROR and "truncated" in f.get(P.A.DETAIL)
    raw_agent.send(P.encode(P.Msg.SIGNAL, 4, [(P.A.SIGNO, 0)]))
    assert raw_agent.recv().type == P.Msg.ERROR
    raw_agent.send(P.encode(0x33, 5))
    assert "unknown request" in raw_agent.recv().get(P.A.DETAIL)
    # the parked child is still there and can be aborted
    raw_agent.send(P.encode(P.Msg.ABORT, 6))
    assert raw_agent.recv().type == P.Msg.ABORTED


def _send_with_fd(a: RawAgent, raw: bytes, fd: int) -> None:
    sent = a.sock.sendmsg([raw], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    a.sock.sendall(raw[sent:])


def _agent_holds(pid: int, target: str) -> bool:
    fds = f"/proc/{pid}/fd"
    return any(os.readlink(os.path.join(fds, n)) == target for n in os.listdir(fds))


def test_agent_closes_a_descriptor_that_comes_with_the_wrong_frame(raw_agent):
    r, w = os.pipe()
    try:
        _send_with_fd(raw_agent, P.encode(P.Msg.HELLO, 1), r)
        assert raw_agent.recv().type == P.Msg.READY
        # The reply precedes the frame's cleanup; a second frame's reply follows it.
        raw_agent.send(P.encode(P.Msg.HELLO, 2))
        assert raw_agent.recv().type == P.Msg.READY
        target = os.readlink(f"/proc/self/fd/{r}")
        assert not _agent_holds(raw_agent.proc.pid, target)  # not kept: only SPAWN takes one
    finally:
        os.close(r)
        os.close(w)


def test_agent_spawn_cgroup_fd_needs_a_descriptor(raw_agent):
    raw_agent.send(P.encode(P.Msg.SPAWN, 2, [(P.A.NS_FLAGS, 0), (P.A.CGROUP_FD, 1)]))
    f = raw_agent.recv()
    assert f.type == P.Msg.ERROR and f.get(P.A.STEP) == 0 and "CGROUP_FD without a descriptor" in f.get(P.A.DETAIL)
    assert not open(f"/proc/{raw_agent.proc.pid}/task/{raw_agent.proc.pid}/children").read().strip()


def test_agent_spawn_with_an_unusable_cgroup_fd_falls_back_to_a_plain_clone(raw_agent, tmp_path):
    # A plain directory is no cgroup: clone3 refuses it, the agent clones without it
    # and says so, and the runner then moves the child itself.
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _send_with_fd(raw_agent, P.encode(P.Msg.SPAWN, 3, [(P.A.NS_FLAGS, 0), (P.A.CGROUP_FD, 1)]), fd)
        f = raw_agent.recv()
    finally:
        os.close(fd)
    assert f.type == P.Msg.SPAWNED and f.get(P.A.CGROUP_FD) == 0 and f.get(P.A.PID) > 0
    assert f.get(P.A.ERRNO) == errno.EBADF  # cgroup_get_from_file(): not a cgroup
    raw_agent.send(P.encode(P.Msg.HELLO, 5))
    assert raw_agent.recv().type == P.Msg.READY
    assert not _agent_holds(raw_agent.proc.pid, str(tmp_path))  # closed once the clone is done
    raw_agent.send(P.encode(P.Msg.ABORT, 4))
    assert raw_agent.recv().type == P.Msg.ABORTED


def test_agent_bad_magic_is_an_error_then_a_clean_exit(agent_bin):
    a = RawAgent()
    a.send(b"ZZ" + bytes(10))
    f = a.recv()
    assert f.type == P.Msg.ERROR and "magic" in f.get(P.A.DETAIL)
    assert a.close() == 0


def test_agent_random_garbage_never_crashes(agent_bin):
    import random

    rng = random.Random(1234)
    for _ in range(30):
        a = RawAgent()
        kind = rng.randrange(3)
        if kind == 0:
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        else:
            t = rng.choice(list(P.Msg)[:7])
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
            blob = P.HDR.pack(P.MAGIC, 1, t, 1, len(payload)) + payload
        try:
            a.send(blob)
        except OSError:
            pass
        code = a.close()
        assert code == 0, (kind, blob.hex())


def test_agent_version_flag(agent_bin):
    out = subprocess.run([str(AGENT_BIN), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"linx-agent protocol {P.VERSION}"
