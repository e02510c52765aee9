"""The runtime directory: where detached workloads' state and the plan cache live.

    $LINX_RUNTIME_DIR            when set, or `linx-spec --root DIR` (which sets it)
    /run/linx                    root
    $XDG_RUNTIME_DIR/linx        others, when the session has one
    /tmp/linx-UID                others without one (su, cron, many ssh sessions)

The last one sits in a directory every local user can write, so another user
can make `/tmp/linx-UID` first and fill it (issue 14).  As tmux does for its
socket directory and podman for its /tmp fallback, the directory is therefore
made 0700 and checked on *every* use, through an fd opened with O_NOFOLLOW:
it must be a directory owned by us that no one else can write.  One that is
only readable by others (an older linx-spec made /run/linx 0755) is tightened
to 0700, which is safe because only we (or root) can have written into it.
Anything else is refused with the remedy; nothing in it is read.

Files inside are created relative to the checked directory's fd with
O_CREAT|O_EXCL|O_NOFOLLOW and renamed into place, so a planted symlink can
neither be followed nor be written through.
"""

from __future__ import annotations

import os
import stat

from .errors import StateError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def root_path() -> str:
    env = os.environ.get("LINX_RUNTIME_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/linx"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "linx")
    tmp = os.environ.get("TMPDIR", "")
    return os.path.join(tmp if tmp.startswith("/") else "/tmp", f"linx-{os.geteuid()}")


def check_dir_fd(fd: int, path: str) -> None:
    """Refuse a directory that is not ours alone; tighten one that is only readable."""
    st = os.fstat(fd)
    uid = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(path, f"runtime directory {path} is not a directory")
    if st.st_uid != uid:
        raise _refused(path, f"runtime directory {path} is owned by uid {st.st_uid}, not by you (uid {uid}): "
                         "someone else made it, so nothing in it can be trusted")
    if st.st_mode & 0o022:
        raise _refused(path, f"runtime directory {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                         "files in it may have been planted")
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o700)


def _refused(path: str, problem: str) -> StateError:
    return StateError(f"{problem} (remedy: remove it (`rm -rf {path}`, as its owner or root) and run "
                      "again, or point LINX_RUNTIME_DIR (or XDG_RUNTIME_DIR) at a directory only you can write)")


def open_root(create: bool = True) -> int | None:
    """An fd of the checked runtime directory (the caller closes it); None if it
    does not exist and create is False."""
    path = root_path()
    if create:
        parent = os.path.dirname(path.rstrip("/")) or "/"
        os.makedirs(parent, mode=0o755, exist_ok=True)
    return _open_checked(path, None, create, f"runtime directory {path}", path)


def open_subdir(parent_fd: int, name: str, create: bool, where: str) -> int | None:
    """A subdirectory of a checked directory, itself checked the same way."""
    return _open_checked(name, parent_fd, create, where, where)


def _open_checked(name: str, dir_fd: int | None, create: bool, label: str, path: str) -> int | None:
    """mkdir 0700 (when create), open with O_NOFOLLOW, check_dir_fd; None when absent."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise _refused(path, f"{label} vanished while being made") from None
        return None
    except OSError as exc:
        if _is_link(name, dir_fd):  # ELOOP or ENOTDIR: a symlink where our directory should be
            raise _refused(path, f"{label} is a symlink") from None
        raise _refused(path, f"{label}: {os.strerror(exc.errno or 0)}") from None
    try:
        check_dir_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(name: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def write_file(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Write name atomically: a fresh O_EXCL|O_NOFOLLOW temp file, then rename."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)  # our own leftover from a killed run with a recycled pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def read_file(dir_fd: int, name: str, limit: int) -> bytes:
    """Read a regular file of ours (no symlink, owned by us, not writable by
    others, at most limit bytes); OSError or ValueError otherwise."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name} is not a regular file")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError(f"{name} is not ours alone (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_size > limit:
            raise ValueError(f"{name} is larger than {limit} bytes")
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)
