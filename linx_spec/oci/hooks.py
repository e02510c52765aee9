"""runtime-spec hooks (config.md#posix-platform-hooks): when each kind runs here.

    create:  spawn + host steps (the child parked)
             prestart, createRuntime   runtime namespaces       a failure fails create
             createContainer           the container's namespaces (entered with setns;
                                       the mount namespace is the container's before its
                                       mounts: linx-spec's child mounts and pivots at start)
    start:   startContainer            the container's namespaces, before the child steps
                                       (same caveat); a failure fails start, nothing runs
             (child steps, execve)
             poststart                 runtime namespaces; a failure is a warning
    delete:  poststop                  after everything was removed; a failure is a warning

Each hook gets the state JSON on stdin, its own env (nothing inherited), runs
at most `timeout` seconds (then SIGKILL and a failure), and must exit 0.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from typing import Any, Callable

from ..errors import StepError
from .record import HOOK_KINDS, Hook

MAX_HOOKS = 64  # per kind
MAX_TIMEOUT = 24 * 3600
NS_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")  # user first: it grants the rest


class _Bad(ValueError):
    pass


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise _Bad(f"{where}: expected a list of strings without NUL")
    return tuple(value)


def parse(hooks: Any) -> dict[str, tuple[Hook, ...]]:
    """config.json's `hooks` object -> Hooks by kind; ValueError naming the JSON path."""
    if hooks is None:
        return {}
    if not isinstance(hooks, dict):
        raise _Bad("hooks: expected an object")
    out: dict[str, tuple[Hook, ...]] = {}
    for kind, items in hooks.items():
        if kind not in HOOK_KINDS:
            raise _Bad(f"hooks.{kind}: not a hook kind ({', '.join(HOOK_KINDS)})")
        if not isinstance(items, list) or len(items) > MAX_HOOKS:
            raise _Bad(f"hooks.{kind}: expected a list of at most {MAX_HOOKS} hooks")
        parsed = []
        for i, h in enumerate(items):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise _Bad(f"{where}.path: expected an absolute path")
            if "\0" in h["path"] or len(h["path"]) > 4096:
                raise _Bad(f"{where}.path: NUL or longer than 4096")
            timeout = h.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                        or not 0 < timeout <= MAX_TIMEOUT):
                raise _Bad(f"{where}.timeout: expected seconds, 1 to {MAX_TIMEOUT}")
            for key in h:
                if key not in ("path", "args", "env", "timeout"):
                    raise _Bad(f"{where}.{key}: unknown field")
            parsed.append(Hook(h["path"], _strs(h.get("args") or [], f"{where}.args"),
                               _strs(h.get("env") or [], f"{where}.env"), timeout))
        if parsed:
            out[kind] = tuple(parsed)
    return out


def _enter(pid: int) -> Callable[[], None]:
    """preexec_fn: setns into every namespace of pid that differs from ours (fds opened first)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    for ns in NS_ORDER:
        path = f"/proc/{pid}/ns/{ns}"
        try:
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino:
                continue
            fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            continue

    def enter() -> None:
        for fd in fds:
            if libc.setns(fd, 0) != 0:
                os._exit(126)

    enter.fds = fds  # type: ignore[attr-defined]
    return enter


def run(kind: str, hooks: dict[str, tuple[Hook, ...]], state: dict, *, enter_pid: int | None = None) -> None:
    """Run every hook of `kind` in order; StepError (step `hook`) on the first failure."""
    data = json.dumps(state).encode()
    for i, h in enumerate(hooks.get(kind, ())):
        what = f"{kind}[{i}] {h.path}"
        env = dict(e.split("=", 1) for e in h.env if "=" in e)
        enter = _enter(enter_pid) if enter_pid else None
        try:
            proc = subprocess.Popen(list(h.args) or [h.path], executable=h.path, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True,
                                    preexec_fn=enter, cwd="/")
        except OSError as exc:
            raise StepError("hook", "host", exc.errno or 0, f"{what}: cannot run it", h.path) from None
        finally:
            for fd in getattr(enter, "fds", ()):
                os.close(fd)
        try:
            _, err = proc.communicate(data, timeout=h.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise StepError("hook", "host", 62, f"{what}: timed out after {h.timeout}s (killed)", h.path) from None
        except BrokenPipeError:  # a hook that does not read its stdin is fine
            _, err = proc.communicate()
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            code = proc.returncode
            words = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise StepError("hook", "host", 0, f"{what}: {words}" + (f": {tail}" if tail else ""), h.path)


def run_warn(kind: str, hooks: dict[str, tuple[Hook, ...]], state: dict, warn: Callable[[str], None]) -> None:
    """poststart and poststop: a failure is a warning, and the remaining hooks still run."""
    for i, h in enumerate(hooks.get(kind, ())):
        try:
            run(kind, {kind: (h,)}, state)
        except StepError as exc:
            warn(f"{kind}[{i}]: {exc.detail}")
