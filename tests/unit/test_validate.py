"""`linx-spec validate` over a tree, as CI runs it on a repository."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import REPO, cli
from linx_spec.validate import validate_paths

GOOD = (REPO / "specs" / "hello.yaml").read_text()
BAD = "version: 1\nname: x\nprocess: {command: []}\n"


def _tree(tmp_path):
    (tmp_path / "deploy").mkdir(parents=True)
    (tmp_path / "deploy" / "web.yaml").write_text(GOOD)
    for skipped in (".git/x", ".venv/lib", "node_modules/pkg", "build/out", "vendor/lib"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "broken.yaml").write_text(BAD)
    return tmp_path


def test_a_tree_skips_vcs_venv_node_modules_git_ignored_and_excluded(tmp_path, capsys):
    root = _tree(tmp_path)
    shutil.rmtree(root / ".git")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("/build/\n")
    assert validate_paths([str(root)], [], "json", ["vendor"]) == 0
    out = capsys.readouterr().out
    assert '"valid": [\n    "' + str(root / "deploy" / "web.yaml") + '"\n  ]' in out
    # without the exclusion, the vendored broken spec counts; without git, so does build/
    assert validate_paths([str(root)], [], "text") == 65
    assert "vendor/lib/broken.yaml" in capsys.readouterr().err
    shutil.rmtree(root / ".git")
    assert validate_paths([str(root)], [], "text", ["vendor"]) == 65
    err = capsys.readouterr().err
    assert "build/out/broken.yaml" in err and "node_modules" not in err and ".venv" not in err


def test_nothing_validated_is_a_failure(tmp_path, capsys):
    (tmp_path / "README.md").write_text("no specs here\n")
    assert validate_paths([str(tmp_path)], [], "text") == 65
    assert "nothing to validate" in capsys.readouterr().err
    only_skipped = _tree(tmp_path / "t")
    (only_skipped / "deploy" / "web.yaml").unlink()
    assert validate_paths([str(only_skipped)], [], "text", ["vendor", "build"]) == 65


def test_fifos_and_devices_in_a_walk_or_glob_are_refused_not_opened(tmp_path, capsys):
    (tmp_path / "web.yaml").write_text(GOOD)
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it for reading would block forever
    os.symlink("/dev/zero", tmp_path / "zero.yml")
    assert validate_paths([str(tmp_path)], [], "text") == 65
    err = capsys.readouterr().err
    assert "pipe.yaml: not a regular file (a FIFO); not read" in err
    assert "zero.yml: not a regular file (a device); not read" in err
    assert validate_paths([str(tmp_path / "*.y*ml")], [], "text") == 65
    assert "(a FIFO)" in capsys.readouterr().err


def test_format_is_checked_before_any_work(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    proc = cli("validate", "--format", "xml", str(tmp_path / "pipe.yaml"), timeout=20)
    assert proc.returncode == 2
    assert "unknown --format 'xml'; use text, json or github" in proc.stderr
    assert proc.stdout == ""


def test_github_annotations_escape_the_file_property(tmp_path):
    bad = tmp_path / "a,b:c%d.yaml"
    bad.write_text(BAD)
    proc = cli("validate", "--format", "github", "--exclude", "nothing-matches", str(tmp_path))
    assert proc.returncode == 65
    (line,) = proc.stdout.splitlines()
    escaped = str(tmp_path).replace("%", "%25").replace(":", "%3A").replace(",", "%2C") + "/a%2Cb%3Ac%25d.yaml"
    assert line.startswith(f"::error file={escaped},line=3,col=20::process.command: "), line


@pytest.mark.parametrize("name", ["x\ny.yaml", "x\r.yaml"])
def test_github_annotations_escape_newlines_in_file_names(tmp_path, name):
    from linx_spec.errors import Problem
    from linx_spec.validate import github_annotation

    line = github_annotation(Problem(str(tmp_path / name), 1, 1, "f", "bad\nthing"))
    assert "\n" not in line and "\r" not in line and line.endswith("::f: bad%0Athing")


def test_pre_commit_hook_entry_passes_the_examples_and_fails_a_bad_spec(tmp_path):
    import re
    import sys

    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks["linx-spec-validate"]
    assert hook["language"] == "python"
    program, *args = hook["entry"].split()
    assert program == "linx-spec"  # the installed command (bin/linx-spec)
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True).stdout.split()
    files = [f for f in tracked if re.search(hook["files"], f)] or [
        str(p.relative_to(REPO)) for p in (REPO / "specs").glob("*.yaml")]  # a tree without git
    assert "specs/hello.yaml" in files and not any(f.startswith("tests/") for f in files)
    entry = [sys.executable, "-m", "linx_spec.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # pre-commit runs the entry from the repository root with the staged files appended
    assert subprocess.run([*entry, *files], cwd=REPO, env=env, capture_output=True).returncode == 0
    bad = tmp_path / "specs" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(BAD)
    proc = subprocess.run([*entry, "specs/bad.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 65 and "specs/bad.yaml:3:20: process.command" in proc.stderr
    # The audit hook: the examples pass its default threshold; a wide-open spec does not.
    audit = hooks["linx-spec-audit"]
    program, *args = audit["entry"].split()
    assert program == "linx-spec" and audit["files"] == hook["files"]
    entry = [sys.executable, "-m", "linx_spec.cli", *args]
    assert subprocess.run([*entry, *files], cwd=REPO, env=env, capture_output=True).returncode == 0
    wide = tmp_path / "specs" / "wide.yaml"
    wide.write_text("version: 1\nname: wide\nnamespaces: []\ncapabilities: {keep: [all]}\nno_new_privs: false\n"
                    "process: {command: [/bin/true]}\n")
    proc = subprocess.run([*entry, "specs/wide.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
