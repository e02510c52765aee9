"""The runtime directory and what is read back from it, attacked by a second
local user and by a tampered file (issue 14, item 1).

Without XDG_RUNTIME_DIR a normal user's state and plan cache live in
/tmp/linx-UID, a name any local user can take first.  These tests play both
users with real uids (forked children that drop to them; no passwd entry is
needed): the attacker makes the directory and plants a pickle that would
create a marker file when loaded, and a symlink; the victim's linx-spec must
refuse the directory with a remedy, never read from it, never run the pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess

import pytest

from conftest import REPO, cli

pytestmark = pytest.mark.root

ATTACKER, VICTIM = 64101, 64102


class _Planted:
    """Unpickling this runs `touch MARKER`: the attack of item 1."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _as(uid: int, fn, env: dict[str, str]):
    """fn() in a forked child running as uid:uid with env; returns (ok, repr of result or error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.environ.clear()
            os.environ.update(env)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            out = ("ok", repr(fn()))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = (type(exc).__name__, str(exc))
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return tuple(json.loads(data))


@pytest.fixture
def base():
    """A directory every test uid can reach (pytest's tmp_path is 0700 root)."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="linx-test-users-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def shared_tmp(base):
    """A /tmp of our own: world-writable and sticky, like the real one."""
    d = base / "tmp"
    d.mkdir()
    os.chmod(d, 0o1777)
    spec = base / "hello.yaml"
    spec.write_text((REPO / "specs" / "hello.yaml").read_text())
    os.chmod(spec, 0o644)
    # Import what the children will need while still root (the checkout may be
    # unreadable to the throwaway uids).
    import linx_spec.fastpath  # noqa: F401
    import linx_spec.rundir  # noqa: F401
    import linx_spec.state  # noqa: F401
    import linx_spec.stored  # noqa: F401
    from linx_spec.plan import Plan  # noqa: F401

    assert linx_spec.fastpath.CacheEntry._fields == ("key", "deps", "plan")  # a record: built at import
    env = {"TMPDIR": str(d), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"}
    return d, spec, env


def _victims_key(spec: str, env) -> str:
    """The cache key of the victim's spec: public data (path, text, uid), so the
    attacker can compute it as well; computed here as the victim for brevity."""
    import ast

    from linx_spec import fastpath

    ok, key = _as(VICTIM, lambda: fastpath._key(spec, open(spec, "rb").read()), env)
    assert ok == "ok", key
    return ast.literal_eval(key)


def _plant(tmp: str, key: str, marker: str, mode: int) -> str:
    """As the attacker: make the victim's runtime directory and fill it."""
    root = os.path.join(tmp, f"linx-{VICTIM}")
    os.mkdir(root, mode)
    os.chmod(root, mode)
    plans = os.path.join(root, ".plans")
    os.mkdir(plans, 0o777)
    os.chmod(plans, 0o777)
    with open(os.path.join(plans, key), "wb") as f:
        f.write(pickle.dumps({"plan": _Planted(marker), "mounts": b"", "deps": {}}))
    os.mkdir(os.path.join(root, "web"), 0o777)
    with open(os.path.join(root, "web", "state.json"), "w") as f:
        json.dump({"name": "web", "status": "running", "host_pid": 1}, f)
    with open(os.path.join(root, "web", "plan.pickle"), "wb") as f:
        f.write(pickle.dumps(_Planted(marker)))
    with open(os.path.join(root, "web", "plan.json"), "wb") as f:
        f.write(pickle.dumps(_Planted(marker)))
    return root


def test_runtime_dir_planted_by_another_user_is_refused_and_nothing_in_it_runs(shared_tmp, base):
    tmp, spec, env = shared_tmp
    marker = tmp / "pwned"  # the planted pickle's `touch` would succeed here if it ever ran
    key = _victims_key(str(spec), env)
    ok, root = _as(ATTACKER, lambda: _plant(str(tmp), key, str(marker), 0o777), env)
    assert ok == "ok", root

    def victim():
        from linx_spec import fastpath, state
        from linx_spec.errors import StateError

        seen = {"cache": repr(fastpath.load(str(spec)))}
        for what, call in (("ps", state.all_views), ("open", lambda: state.StateDir.open("web").load_plan()),
                           ("create", lambda: state.StateDir.create("web2"))):
            try:
                call()
                seen[what] = "accepted"
            except StateError as exc:
                seen[what] = str(exc)
        return seen

    ok, seen = _as(VICTIM, victim, env)
    assert ok == "ok", seen
    assert not marker.exists(), "the planted pickle ran as the victim"
    assert "'cache': 'None'" in seen  # a miss: plan again, never load it
    for what in ("ps", "open", "create"):
        assert f"owned by uid {ATTACKER}" in seen and "accepted" not in seen, seen
    assert "rm -rf" in seen  # the remedy
    assert not (tmp / f"linx-{VICTIM}" / "web2").exists()


def test_runtime_dir_that_is_a_symlink_or_writable_by_others_is_refused(shared_tmp):
    tmp, spec, env = shared_tmp
    elsewhere = tmp / "attacker-owned"

    def attacker():
        os.mkdir(elsewhere, 0o777)
        os.chmod(elsewhere, 0o777)
        os.symlink(elsewhere, tmp / f"linx-{VICTIM}")

    assert _as(ATTACKER, attacker, env)[0] == "ok"

    def victim():
        from linx_spec import state
        from linx_spec.errors import StateError

        try:
            state.StateDir.create("web")
            return "accepted"
        except StateError as exc:
            return str(exc)

    ok, said = _as(VICTIM, victim, env)
    assert ok == "ok" and "is a symlink" in said, said
    assert os.listdir(elsewhere) == []
    os.unlink(tmp / f"linx-{VICTIM}")

    # The victim's own directory, but group- and world-writable: files may have been planted.
    def victim_makes_it_wide_open():
        os.umask(0)
        os.mkdir(tmp / f"linx-{VICTIM}", 0o777)
        return victim()

    ok, said = _as(VICTIM, victim_makes_it_wide_open, env)
    assert ok == "ok" and "writable by others (mode 0777)" in said, said


def test_own_runtime_dir_readable_by_others_is_tightened_and_used(shared_tmp):
    tmp, spec, env = shared_tmp

    def victim():
        from linx_spec import state

        os.mkdir(tmp / f"linx-{VICTIM}", 0o755)
        os.chmod(tmp / f"linx-{VICTIM}", 0o755)
        sd = state.StateDir.create("web")
        mode = os.stat(tmp / f"linx-{VICTIM}").st_mode & 0o777
        sd.remove()
        return oct(mode)

    assert _as(VICTIM, victim, env) == ("ok", repr("0o700"))


def _entry(runtime) -> str:
    plans = runtime / ".plans"
    names = [n for n in os.listdir(plans) if not n.startswith(".")]
    assert len(names) == 1, names
    return str(plans / names[0])


@pytest.mark.parametrize("tamper", ["garbage", "wrong-type", "truncated", "pickle", "symlink", "nan"])
def test_tampered_cache_entry_replans_without_a_traceback(tmp_path, tamper):
    runtime = tmp_path / "run"
    marker = tmp_path / "pwned"
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nnamespaces: [pid]\nprocess: {command: [/bin/sh, -c, 'exit 3']}\n")
    env = {"LINX_RUNTIME_DIR": str(runtime)}
    assert cli("apply", str(spec), env=env).returncode == 3
    entry = _entry(runtime)
    with open(entry, "rb") as f:
        good = f.read()
    assert good.startswith(b"{") and b"pickle" not in good  # data, not code
    if tamper == "garbage":
        data = b"\x80\x04not json at all"
    elif tamper == "wrong-type":
        doc = json.loads(good)
        doc["plan"]["process"] = 5
        data = json.dumps(doc).encode()
    elif tamper == "truncated":
        data = good[: len(good) // 2]
    elif tamper == "nan":
        data = good.replace(b'"stop_grace":5.0', b'"stop_grace":NaN')
    elif tamper == "pickle":
        data = pickle.dumps({"plan": _Planted(str(marker)), "mounts": b"", "deps": {}})
    if tamper == "symlink":
        os.rename(entry, str(tmp_path / "moved"))
        os.symlink(tmp_path / "moved", entry)
    else:
        with open(entry, "wb") as f:
            f.write(data)
    proc = cli("apply", str(spec), "-v", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_tampered_plan_of_a_detached_workload_is_a_state_error(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    monkeypatch.setenv("LINX_RUNTIME_DIR", str(runtime))
    from linx_spec.errors import StateError
    from linx_spec.state import StateDir

    sd = StateDir.create("web")
    try:
        (sd.path / "plan.json").write_bytes(pickle.dumps(_Planted(str(tmp_path / "pwned"))))
        with pytest.raises(StateError, match="plan of `web` is unreadable"):
            StateDir.open("web").load_plan()
        (sd.path / "plan.json").write_text('{"name": 1}')
        with pytest.raises(StateError, match="plan of `web` is unreadable"):
            StateDir.open("web").load_plan()
    finally:
        sd.remove()
    assert not (tmp_path / "pwned").exists()


def test_exec_with_a_tampered_plan_exits_72_without_a_traceback(tmp_path):
    runtime = tmp_path / "run"
    env = {"LINX_RUNTIME_DIR": str(runtime)}
    (runtime / "web").mkdir(parents=True, mode=0o700)
    os.chmod(runtime, 0o700)
    (runtime / "web" / "state.json").write_text(json.dumps({"name": "web", "status": "running",
                                                            "host_pid": os.getpid(),
                                                            "host_pid_start": _start(os.getpid())}))
    (runtime / "web" / "plan.json").write_text("[]")
    proc = cli("exec", "web", "--", "/bin/true", env=env)
    assert proc.returncode == 72, proc.stderr
    assert "Traceback" not in proc.stderr and "unreadable" in proc.stderr


def _start(pid: int) -> int:
    from linx_spec.state import pid_start_time

    return pid_start_time(pid)


def test_nothing_in_the_package_unpickles():
    """The class of bug, not only its instances: no pickle anywhere in linx_spec."""
    out = subprocess.run(["grep", "-rlE", r"pickle\.(loads?|Unpickler)|import pickle", str(REPO / "linx_spec")],
                         capture_output=True, text=True)
    assert out.stdout == "", out.stdout

