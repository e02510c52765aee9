"""The terminal side of `apply -t`: the caller's terminal in raw mode, proxied
to the workload's pseudo-terminal, the window size copied at start and on
SIGWINCH, and the terminal restored whatever happens.

Ctrl-C is a byte in raw mode: it travels to the pty, whose line discipline
sends SIGINT to the workload's foreground process group (the workload is the
session leader with the pty as controlling terminal)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import time
import tty

from typing import TYPE_CHECKING, Iterator

from .lifecycle import Waiter, run_to_end

if TYPE_CHECKING:
    from .agent import End
    from .runner import Result, Workload


def copy_winsize(src_fd: int, dst_fd: int) -> None:
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal(Waiter):
    """The lifecycle's waiter for a workload with a pty: while it runs, shuttle
    bytes between the caller's terminal (stdin/stdout) and the pty master."""

    TICK = 0.2

    def __init__(self, stdin: int = 0, stdout: int = 1):
        self.stdin = stdin
        self.stdout = stdout
        self._inputs: list[int] = []
        self._master_open = False
        self._line_open = False  # the last byte sent was not the end of a line

    def spawned(self, w: Workload) -> None:
        if os.isatty(self.stdin):
            copy_winsize(self.stdin, w.pty_master)  # before the workload can ask for it

    @contextlib.contextmanager
    def attached(self, w: Workload) -> Iterator[None]:
        master, stdin = w.pty_master, self.stdin
        is_tty = os.isatty(stdin)
        saved = termios.tcgetattr(stdin) if is_tty else None
        old_winch = signal.getsignal(signal.SIGWINCH)
        if is_tty:
            copy_winsize(stdin, master)
            signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
        self._inputs = [master, w.agent.fileno(), stdin]
        self._master_open = True
        try:
            if is_tty:
                tty.setraw(stdin, termios.TCSANOW)
            yield
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
            signal.signal(signal.SIGWINCH, old_winch)

    def wait(self, w: Workload, timeout: float | None) -> End | None:
        master, agent_fd = w.pty_master, w.agent.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        end = w.poll(0)
        while end is None:
            left = self.TICK if deadline is None else min(self.TICK, max(0.0, deadline - time.monotonic()))
            try:
                ready, _, _ = select.select(self._inputs, [], [], left)
            except InterruptedError:
                ready = []
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: the slave side is closed
                        raise
                    data = b""
                if data:
                    _write_all(self.stdout, data)
                else:
                    self._inputs.remove(master)
                    self._master_open = False
            if self.stdin in ready:
                data = os.read(self.stdin, 65536)
                if data and self._master_open:
                    _write_all(master, data)
                    self._line_open = not data.endswith((b"\n", b"\r"))
                elif not data:
                    self._inputs.remove(self.stdin)
                    if self._master_open:
                        _send_eof(master, self._line_open)
            if agent_fd in ready or not self._master_open:
                end = w.poll(0 if self._master_open else left)
            if end is None and deadline is not None and time.monotonic() >= deadline:
                return None
        return end

    def ended(self, w: Workload) -> None:
        _drain(w.pty_master, self.stdout)


def proxy_terminal(w: Workload, timeout: float | None = -1, stdin: int = 0, stdout: int = 1) -> Result:
    """Shuttle bytes between the caller's terminal and the workload's pty until
    the workload ends (stopping it at the time limit); returns its Result."""
    return run_to_end(w, w.plan.lifecycle.timeout if timeout == -1 else timeout, Terminal(stdin, stdout))


def _send_eof(master: int, line_open: bool) -> None:
    """End of the caller's input, as a terminal says it: the VEOF character (^D),
    after a newline that ends a partial line (the line discipline, and readline,
    read ^D as end of file only at the start of a line)."""
    try:
        veof = termios.tcgetattr(master)[6][termios.VEOF]
        _write_all(master, (b"\n" if line_open else b"") + (veof if isinstance(veof, bytes) else bytes([veof])))
    except OSError:
        pass


def _drain(master: int, stdout: int) -> None:
    while True:
        ready, _, _ = select.select([master], [], [], 0)
        if not ready:
            return
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(stdout, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


__all__ = ["Terminal", "proxy_terminal", "copy_winsize", "set_winsize"]
