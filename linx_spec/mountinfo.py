"""The mount table, parsed in one place: /proc/PID/mountinfo (proc(5)).

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2) (3)  (4)   (5)      (6)      (7)   (8) (9)    (10)        (11)

Fields 4, 5 and 10 escape space, tab, newline and backslash as \\ooo (octal);
they are unescaped here.  The optional fields (7) end at the lone `-` (8).
"""

from __future__ import annotations

from .record import Record

_OCTAL_DIGITS = frozenset("01234567")


def unescape(text: str) -> str:
    """A mount table field as the kernel wrote it -> the real string: each
    backslash and three octal digits is that character (without `re`: a
    cached apply reads the mount table, and `re` is ~3 ms of its start)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while (j := text.find("\\", i)) >= 0:
        digits = text[j + 1:j + 4]
        if len(digits) == 3 and _OCTAL_DIGITS.issuperset(digits):
            out += (text[i:j], chr(int(digits, 8)))
            i = j + 4
        else:
            out.append(text[i:j + 1])
            i = j + 1
    out.append(text[i:])
    return "".join(out)


class Mount(Record):
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    dev: str  # major:minor
    root: str  # the directory of the filesystem mounted here
    mount_point: str
    options: tuple[str, ...]  # per-mount options (rw, nosuid, ...)
    optional: tuple[str, ...]  # shared:N, master:N, propagate_from:N, unbindable
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-superblock options (for cgroup v1: its controllers)

    @property
    def all_options(self) -> tuple[str, ...]:
        """Per-mount then per-superblock options, as /proc/mounts shows them together."""
        return self.options + tuple(o for o in self.super_options if o not in self.options)


def parse_line(line: str) -> Mount:
    left, sep, right = line.rstrip("\n").partition(" - ")
    head = left.split(" ")
    tail = right.split(" ")
    if not sep or len(head) < 6 or len(tail) < 3:
        raise ValueError(f"not a mountinfo line: {line[:200]!r}")
    return Mount(int(head[0]), int(head[1]), head[2], unescape(head[3]), unescape(head[4]),
                 tuple(head[5].split(",")), tuple(head[6:]), tail[0], unescape(tail[1]),
                 tuple(tail[2].split(",")))


def parse(text: str) -> list[Mount]:
    return [parse_line(line) for line in text.splitlines() if line]


def read(pid: int | str = "self") -> list[Mount]:
    """The mount table as process pid (default: this one) sees it."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse(f.read())


def cgroup_mounts(mounts: list[Mount] | None = None) -> list[Mount]:
    """The cgroup (v1) and cgroup2 mounts, in table order."""
    return [m for m in (read() if mounts is None else mounts) if m.fstype in ("cgroup", "cgroup2")]
