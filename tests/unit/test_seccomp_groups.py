"""The named syscall groups against systemd's: every group that shares a name with one of
systemd's SystemCallFilter= sets holds exactly its members, checked against
`systemd-analyze syscall-filter` when it is installed and against the checked-in copy of
its output (tests/data/systemd-syscall-filter-<version>.txt) always."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from linx_spec.seccomp.groups import GROUPS, SYSTEMD_VERSION

ROOT = Path(__file__).resolve().parents[2]
COPY = ROOT / "tests" / "data" / f"systemd-syscall-filter-{SYSTEMD_VERSION}.txt"

# Groups only linx-spec has; their summaries say so.
OURS_ONLY = {
    "@namespaces": "unshare and setns in one word; systemd restricts namespaces with RestrictNamespaces= instead",
    "@sandbox": "seccomp and Landlock, which systemd 252 leaves ungrouped (`@known` only)",
}
# Groups only systemd has, and why linx-spec has none.
SYSTEMD_ONLY = {
    "@known": "every syscall systemd knows, for its own deny-the-unknown filters; libseccomp's table plays "
              "that part here (an unknown name in a rule is an error)",
}
# Deliberate differences in the shared groups: (group, syscall or @group, "+" we add / "-" we drop) -> why.
# Each must also be named in the group's summary.  None so far: the shared groups equal systemd's.
DIFFERENCES: dict[tuple[str, str, str], str] = {}

# systemd 252 has 28 groups besides @known; fewer parsed means the parser or the output broke.
SHARED_AT_LEAST = 28


def parse_syscall_filter(text: str) -> dict[str, frozenset[str]]:
    """`systemd-analyze syscall-filter` output -> {group: its direct members (names and @groups)}.

    A group starts at a line `@name` in column 0; its members are the indented lines after
    it, the first of them an indented `# description`; a blank line or a `#` in column 0
    (the "Ungrouped System Calls" list, a header) ends it."""
    groups: dict[str, set[str]] = {}
    current: set[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            current = None
        elif line.startswith("@"):
            name = line.strip()
            assert re.fullmatch(r"@[a-z0-9-]+", name) and name not in groups, f"line {number}: {line!r}"
            current = groups[name] = set()
        elif line[0].isspace() and current is not None:
            word = line.strip()
            if not word.startswith("#"):
                assert re.fullmatch(r"@[a-z0-9-]+|[a-z0-9_]+", word), f"line {number}: {line!r}"
                current.add(word)
        else:
            raise AssertionError(f"line {number}: unexpected {line!r}")
    return {name: frozenset(members) for name, members in groups.items()}


def differences(systemd: dict[str, frozenset[str]], label: str) -> list[str]:
    """Every difference between linx-spec's groups and systemd's, by group and syscall,
    except the documented ones."""
    out = []
    for name in sorted(set(GROUPS) - set(systemd) - set(OURS_ONLY)):
        out.append(f"{name}: linx-spec's, not in {label} and not listed as our own")
    for name in sorted(set(systemd) - set(GROUPS) - set(SYSTEMD_ONLY)):
        out.append(f"{name}: in {label}, missing here")
    for name in sorted(set(GROUPS) & set(systemd)):
        ours = set(GROUPS[name].members)
        extra = {m for m in ours - systemd[name] if (name, m, "+") not in DIFFERENCES}
        lacking = {m for m in systemd[name] - ours if (name, m, "-") not in DIFFERENCES}
        if extra:
            out.append(f"{name}: linx-spec has, {label} has not: {', '.join(sorted(extra))}")
        if lacking:
            out.append(f"{name}: {label} has, linx-spec has not: {', '.join(sorted(lacking))}")
    return out


def check_parsed(systemd: dict[str, frozenset[str]]) -> None:
    """The comparison cannot pass on an empty or half-read output."""
    shared = set(systemd) & set(GROUPS)
    assert len(shared) >= SHARED_AT_LEAST, f"parsed only {sorted(systemd)}"
    assert all(systemd[name] for name in systemd), [name for name in systemd if not systemd[name]]
    assert {"@default", "@file-system"} <= systemd["@system-service"]
    assert "execve" in systemd["@default"] and "mount" in systemd["@mount"]
    assert sum(len(systemd[name]) for name in shared) > 400


def systemd_analyze() -> tuple[int, str, str]:
    """(major version, full version, `syscall-filter` output) of this machine's systemd-analyze."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (the checked-in copy is compared instead)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "SYSTEMD_COLORS": "0",
           "SYSTEMD_PAGER": "cat", "SYSTEMD_LOG_LEVEL": "err"}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=30,
                             check=True).stdout
    m = re.match(r"systemd (\d+) \(([^)]*)\)", version)
    assert m, version
    out = subprocess.run([exe, "syscall-filter"], capture_output=True, text=True, env=env, timeout=30,
                         check=True).stdout
    return int(m[1]), m[2], out


def test_every_shared_group_equals_systemds_checked_in_copy():
    header = COPY.read_text().splitlines()[0]
    assert header.startswith(f"# systemd-analyze syscall-filter of systemd {SYSTEMD_VERSION} ("), header
    systemd = parse_syscall_filter(COPY.read_text())
    check_parsed(systemd)
    diff = differences(systemd, f"systemd {SYSTEMD_VERSION} (copy)")
    assert not diff, "\n".join(diff)


def test_every_shared_group_equals_this_machines_systemd():
    major, full, out = systemd_analyze()
    if major != SYSTEMD_VERSION:
        pytest.skip(f"systemd {full} here; the groups follow systemd {SYSTEMD_VERSION} (compared with its copy)")
    systemd = parse_syscall_filter(out)
    check_parsed(systemd)
    diff = differences(systemd, f"systemd {full}")
    assert not diff, "\n".join(diff)
    # The copy is this systemd's output (a point release may move a syscall: regenerate both).
    assert systemd == parse_syscall_filter(COPY.read_text()), f"{COPY.name} is not systemd {full}'s output"


def test_the_comparison_names_each_difference_by_group_and_syscall():
    systemd = dict(parse_syscall_filter(COPY.read_text()))
    systemd["@debug"] = systemd["@debug"] | {"kcmp"}
    systemd["@clock"] = systemd["@clock"] - {"settimeofday"}
    systemd["@frobnicate"] = frozenset({"read"})
    del systemd["@swap"]
    assert differences(systemd, "systemd") == [
        "@swap: linx-spec's, not in systemd and not listed as our own",
        "@frobnicate: in systemd, missing here",
        "@clock: linx-spec has, systemd has not: settimeofday",
        "@debug: systemd has, linx-spec has not: kcmp",
    ]
    with pytest.raises(AssertionError):
        check_parsed({name: members for name, members in systemd.items() if name < "@n"})
    with pytest.raises(AssertionError, match="line 2"):
        parse_syscall_filter("@mount\nmount\n")


def test_own_groups_say_so_and_documented_differences_are_in_the_summary():
    for name in OURS_ONLY:
        assert "linx-spec's own group" in GROUPS[name].summary, name
    for name in set(GROUPS) - set(OURS_ONLY):
        assert "linx-spec's own" not in GROUPS[name].summary, name
    for (group, member, sign), why in DIFFERENCES.items():
        assert why and member in GROUPS[group].summary, (group, member, sign)


def test_docs_name_the_systemd_version():
    docs = (ROOT / "docs" / "seccomp.md").read_text()
    assert f"systemd {SYSTEMD_VERSION}" in docs
    assert COPY.name in docs
