"""A signal handler that sends on the agent channel while its own thread is in the
middle of a frame (Lifecycle._forward runs in the main thread, which also drives the
channel): no deadlock, and both frames arrive whole, the interrupted one first."""

from __future__ import annotations

import threading

from linx_spec import protocol as P
from linx_spec.agent import Agent


class _Wire:
    """The channel's socket: the first write is interrupted by 'a signal'."""

    def __init__(self, agent: Agent):
        self.agent, self.out, self.fired = agent, bytearray(), False

    def sendall(self, data: bytes) -> None:
        if not self.fired:
            self.fired = True
            self.out += data[:3]  # half a frame written when the signal lands
            self.agent.signal_nowait(15)
            self.out += data[3:]
        else:
            self.out += data


def _frames(raw: bytes) -> list[P.Frame]:
    frames = []
    while raw:
        _v, _t, _s, length = P.decode_header(raw[:P.HDR_LEN])
        frames.append(P.decode(raw[:P.HDR_LEN + length]))
        raw = raw[P.HDR_LEN + length:]
    return frames


def test_a_signal_forwarded_mid_frame_is_sent_after_it_whole():
    agent = Agent.__new__(Agent)
    agent._send_lock = threading.RLock()
    agent._writing, agent._deferred, agent._seq, agent._ignore = None, [], 0, set()
    agent._sock = wire = _Wire(agent)
    done = threading.Thread(target=agent._send, args=(P.Msg.HELLO, ()), daemon=True)
    done.start()
    done.join(5)
    assert not done.is_alive(), "the handler's send deadlocked on the channel's lock"
    frames = _frames(bytes(wire.out))
    assert [f.type for f in frames] == [P.Msg.HELLO, P.Msg.SIGNAL]
    assert frames[1].get(P.A.SIGNO) == 15 and frames[1].seq in agent._ignore


def test_a_frame_read_along_with_another_is_not_waited_for():
    """The channel is read through a buffer: one recv may take two frames (here a
    skipped reply and the workload's end).  wait() must return the second from
    the buffer, not poll the socket, which has nothing more to say."""
    import socket
    import time

    agent = Agent.__new__(Agent)
    agent._send_lock = threading.RLock()
    agent._writing, agent._deferred, agent._seq, agent._ignore = None, [], 0, set()
    agent._pending, agent._wait_seq, agent._rbuf, agent._pidfd, agent.pid = {}, None, bytearray(), None, None
    agent._sock, theirs = socket.socketpair()
    with agent._sock, theirs:
        agent._ignore.add(7)  # a nudge's reply, skipped when it comes
        theirs.sendall(P.encode(P.Msg.READY, 7, [(P.A.VERSION, P.VERSION)]) + P.encode(P.Msg.EXITED, 1, [(P.A.CODE, 3)]))
        time.sleep(0.05)  # both frames are in the socket before the first read
        end = agent.wait(timeout=2)
        assert end is not None and end.exit_code == 3
        assert theirs.recv(64)[:4] == P.encode(P.Msg.WAIT, 1)[:4]  # the WAIT went out
