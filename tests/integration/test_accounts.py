"""/etc/passwd and /etc/group for the workload's user (issue 20), checked from
inside with id(1), whoami and ls -l: by default, a root of the workload's own
that has these files gets them with an entry added for `process.user` (as
podman does); the root's files on the host are never written; `none` opts out;
a symlink planted in the root is not followed to a host file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conftest import cli

pytestmark = pytest.mark.root

# The host's own ids, 0 included: the root built under pytest's 0700 tmp dir stays reachable.
IDMAP = {"uid": [{"container": 0, "host": 0, "count": 65536}],
         "gid": [{"container": 0, "host": 0, "count": 65536}]}
SCRIPT = "id -un; id -gn; id -Gn; whoami; touch /tmp/f; ls -l /tmp/f"
ROOT_PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
ROOT_GROUP = "root:x:0:\n"


def make_root(path: Path, passwd: str | None = ROOT_PASSWD, group: str | None = ROOT_GROUP) -> Path:
    for d in ("usr", "etc", "tmp", "proc"):
        (path / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if os.path.exists(f"/usr/{link}"):
            (path / link).symlink_to(f"usr/{link}")
    if passwd is not None:
        (path / "etc/passwd").write_text(passwd)
    if group is not None:
        (path / "etc/group").write_text(group)
    return path


def apply(write_spec, root: Path, etc: dict | None = None, script: str = SCRIPT):
    mounts = {"rootfs": str(root), "entries": [{"type": "bind", "source": "/usr", "target": "/usr", "readonly": True},
                                               {"type": "tmpfs", "target": "/tmp"}]}
    if etc is not None:
        mounts["etc"] = etc
    spec = {"version": 1, "namespaces": ["user", "pid", "mount"], "idmap": IDMAP, "mounts": mounts,
            "process": {"command": ["/bin/sh", "-c", script], "user": {"uid": 1000, "gid": 1000, "groups": [2000]}}}
    return cli("apply", str(write_spec(yaml.safe_dump(spec))))


def test_generated_entries_name_the_mapped_user(write_spec, tmp_path):
    root = make_root(tmp_path / "root")
    proc = apply(write_spec, root)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["user1000", "user1000", "user1000 group2000", "user1000"]
    assert " user1000 user1000 " in lines[4]  # ls -l: owner and group by name
    # bound over the root's files, never written into them
    assert (root / "etc/passwd").read_text() == ROOT_PASSWD
    assert (root / "etc/group").read_text() == ROOT_GROUP


def test_an_entry_the_root_has_is_kept(write_spec, tmp_path):
    root = make_root(tmp_path / "root", ROOT_PASSWD + "app:x:1000:1000::/home/app:/bin/sh\n",
                     ROOT_GROUP + "app:x:1000:\n")
    proc = apply(write_spec, root, script="id -un; id -gn; grep -c :1000: /etc/passwd")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["app", "app", "1"]


def test_none_opts_out(write_spec, tmp_path):
    root = make_root(tmp_path / "root")
    proc = apply(write_spec, root, {"passwd": "none", "group": "none"}, script="id -un || echo no-name")
    assert proc.returncode == 0, proc.stderr
    assert "no-name" in proc.stdout


def test_a_root_without_passwd_is_left_alone_by_default_and_generate_creates_one(write_spec, tmp_path):
    root = make_root(tmp_path / "root", None, None)
    proc = apply(write_spec, root, script="id -un || echo no-name")
    assert "no-name" in proc.stdout and not (root / "etc/passwd").exists()
    proc = apply(write_spec, root, {"passwd": "generate", "group": "generate"}, script="id -un; id -gn")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["user1000", "user1000"]


def test_a_symlink_in_the_root_is_not_followed_to_a_host_file(write_spec, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("secret:x:1000:1000:SECRET-CONTENT:/:/bin/sh\n")
    root = make_root(tmp_path / "root", None)
    (root / "etc/passwd").symlink_to(secret)
    proc = apply(write_spec, root, {"passwd": "generate"}, script="cat /etc/passwd; id -un")
    assert "SECRET-CONTENT" not in proc.stdout + proc.stderr
