"""Reading a spec file: regular files only, never blocking, bounded in size.

Its own module, free of yaml and pydantic, so that the plan cache (fastpath.py)
reads the file the same way without importing them.  A FIFO or a device given
as SPEC must not block `apply`, `plan` or `validate`: the file is opened with
O_NONBLOCK (open(2) on a FIFO with no writer then returns at once), checked
with fstat to be a regular file, and read only up to MAX_SPEC_BYTES.
"""

from __future__ import annotations

import os
import stat
import sys

from .errors import Problem, SpecError

# The largest spec argv + env can hold is well under 1 MiB (spec/process.py,
# ARGV_ENV_MAX_BYTES); 4 MiB leaves room for comments and long seccomp lists.
MAX_SPEC_BYTES = 4 << 20


def _refuse(name: str, message: str) -> SpecError:
    return SpecError([Problem(name, 0, 0, "", message)])


def read_spec_bytes(name: str) -> bytes:
    """The bytes of spec file `name` ("-": standard input); SpecError otherwise."""
    if name == "-":
        data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    else:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise _refuse(name, f"cannot read: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                        else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                        else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
                raise _refuse(name, f"is {kind}; a spec must be a regular file")
            if st.st_size > MAX_SPEC_BYTES:
                raise _refuse(name, f"is {st.st_size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
            chunks, total = [], 0
            while total <= MAX_SPEC_BYTES:
                chunk = os.read(fd, min(1 << 20, MAX_SPEC_BYTES + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            data = b"".join(chunks)
        except OSError as exc:
            raise _refuse(name, f"cannot read: {exc.strerror}") from None
        finally:
            os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise _refuse(name, f"is more than {MAX_SPEC_BYTES} bytes; a spec is at most that")
    return data
