"""The terminal side of `apply -t`: the caller's terminal in raw mode, proxied
to the workload's pseudo-terminal, the window size copied at start and on
SIGWINCH, and the terminal restored whatever happens.

Ctrl-C is a byte in raw mode: it travels to the pty, whose line discipline
sends SIGINT to the workload's foreground process group (the workload is the
session leader with the pty as controlling terminal)."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
import tty

from .runner import Result, Workload


def copy_winsize(src_fd: int, dst_fd: int) -> None:
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def proxy_terminal(w: Workload, timeout: float | None = -1, stdin: int = 0, stdout: int = 1) -> Result:
    """Shuttle bytes between the caller's terminal and the workload's pty until
    the workload ends; returns its Result."""
    master = w.pty_master
    is_tty = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if is_tty else None
    old_winch = signal.getsignal(signal.SIGWINCH)
    limit = w.plan.lifecycle.timeout if timeout == -1 else timeout
    started = time.monotonic()
    if is_tty:
        copy_winsize(stdin, master)
        signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    try:
        if is_tty:
            tty.setraw(stdin, termios.TCSANOW)
        end = w.poll(0)
        inputs = [master, w.agent.fileno()] + ([stdin] if True else [])
        master_open = True
        while end is None:
            if limit is not None and time.monotonic() - started > limit:
                end, how = w.stop(w.plan.lifecycle.stop_grace)
                result = w._finish(end, f"timed out after {limit:g}s: {how}", True)
                _drain(master, stdout)
                return result
            try:
                ready, _, _ = select.select(inputs, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: the slave side is closed
                        raise
                    data = b""
                if data:
                    _write_all(stdout, data)
                else:
                    inputs.remove(master)
                    master_open = False
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data and master_open:
                    _write_all(master, data)
                elif not data:
                    inputs.remove(stdin)
            if w.agent.fileno() in ready or not master_open:
                end = w.poll(0 if master_open else 0.2)
        _drain(master, stdout)
        return w._finish(end, "", False)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
        signal.signal(signal.SIGWINCH, old_winch)


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


__all__ = ["proxy_terminal", "copy_winsize", "set_winsize", "sys"]
