"""The mounts step's plan: `mounts:` resolved against this host.

`resolve()` is pure: it reads the host (do the sources exist, which kernel is
this) and never writes.  Host paths become absolute (relative ones against the
spec file's directory); every entry becomes one `MountEntry` in the order the
child runs them: the root's overlay (if any), the spec's entries as written,
the device nodes, the /etc files, the read-only paths, then the masked paths
(last, so nothing mounted later can uncover them).  The child does all of it (agent/lx_mounts.c);
there is no host-side apply.
"""

from __future__ import annotations

import os
import posixpath
import stat

from ..errors import PlanError
from ..protocol import MA, MF, MK, MOUNT_OPT_READONLY_ROOT, MOUNT_OPT_SLAVE, A
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from typing import Callable
    from ..spec.mounts import Mounts

# The spec's classes are imported inside resolve(): a cached plan (MountsPlan)
# is loaded and run without pydantic.

MAX_ENTRIES = 256  # LX_MAX_MOUNTS in agent/lx_settings.h
MIN_KERNEL = (5, 12)  # mount_setattr; openat2 (5.6), open_tree/fsopen/move_mount (5.2)
_FLAG_BITS = {"nosuid": MF.NOSUID, "nodev": MF.NODEV, "noexec": MF.NOEXEC}
# Default flags per type (bind: none, the source's own apply).
_DEFAULT_FLAGS = {"tmpfs": ("nosuid", "nodev"), "proc": ("nosuid", "nodev", "noexec"),
                  "sysfs": ("nosuid", "nodev", "noexec"), "mqueue": ("nosuid", "nodev", "noexec"),
                  "devpts": ("nosuid", "noexec"), "cgroup": ("nosuid", "nodev", "noexec"), "overlay": (), "bind": ()}
# Which namespace a fresh filesystem takes its contents from: inside a user
# namespace the kernel mounts it only if that namespace is the workload's own.
_NEEDS_NS = {"proc": "pid", "sysfs": "net", "mqueue": "ipc"}
# Options of a cgroup v1 superblock that are not what selects the hierarchy.
_CGROUP_GENERIC = {"rw", "ro", "relatime", "nosuid", "nodev", "noexec", "clone_children", "xattr", "noprefix",
                   "cpuset_v2_mode", "favordynmods"}
_KIND_NAMES = {MK.BIND: "bind", MK.FS: "fs", MK.DEV: "dev", MK.MASK: "mask", MK.READONLY: "readonly",
               MK.FILE: "file", MK.NODE: "node"}
_NODE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class MountEntry(Record):
    """One mount, as the child runs it (one LX_A_MOUNT attribute)."""

    kind: MK
    target: str  # inside the root; "" for the root itself (MF.ROOT)
    flags: int = 0  # MF bits
    source: str | None = None  # bind: absolute host path; fs: the name mountinfo shows (None: the type)
    fstype: str | None = None  # fs: tmpfs, proc, sysfs, mqueue, overlay
    options: tuple[str, ...] = ()  # fsconfig `key=value` / `key`
    content: bytes | None = None  # file
    mode: int = 0o644  # file: permission bits; node: file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits
    what: str = ""  # how `plan` names it (e.g. "generated")
    major: int = 0  # node
    minor: int = 0  # node
    uid: int = 0  # node
    gid: int = 0  # node

    def nested(self) -> list[tuple[int, object]]:
        out: list[tuple[int, object]] = [(MA.KIND, int(self.kind)), (MA.FLAGS, int(self.flags))]
        if self.target:
            out.append((MA.TARGET, self.target))
        if self.source is not None:
            out.append((MA.SOURCE, self.source))
        if self.fstype is not None:
            out.append((MA.FSTYPE, self.fstype))
        out += [(MA.OPTION, o) for o in self.options]
        if self.content is not None:
            out += [(MA.CONTENT, self.content), (MA.MODE, self.mode)]
        if self.kind == MK.NODE:
            out += [(MA.MODE, self.mode), (MA.MAJOR, self.major), (MA.MINOR, self.minor), (MA.UID, self.uid),
                    (MA.GID, self.gid)]
        return out

    def describe(self) -> str:
        flags = [n for n, bit in (("ro", MF.RDONLY), ("rec", MF.RECURSIVE), ("nosuid", MF.NOSUID),
                                  ("nodev", MF.NODEV), ("noexec", MF.NOEXEC), ("optional", MF.OPTIONAL),
                                  ("create", MF.CREATE)) if self.flags & bit]
        opts = [o for o in self.options if not o.startswith(("lowerdir=", "upperdir=", "workdir="))]
        tail = " (" + ",".join(opts + flags) + ")" if opts or flags else ""
        if self.kind == MK.BIND:
            return f"bind {self.source} -> {self.target}{tail}"
        if self.kind == MK.FS:
            where = self.target or "/"
            if self.fstype == "overlay":
                layers = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in self.options if "=" in o}
                src = " lower=" + layers.get("lowerdir", "")
                if "upperdir" in layers:
                    src += f" upper={layers['upperdir']} work={layers.get('workdir')}"
                return f"overlay{src} -> {where}{tail}"
            named = f" {self.source}" if self.source and self.source != self.fstype else ""
            return f"{self.fstype}{named} -> {where}{tail}"
        if self.kind == MK.FILE:
            return f"file {self.target} ({self.what}, {len(self.content or b'')} bytes{',ro' if self.flags & MF.RDONLY else ''})"
        if self.kind == MK.NODE:
            kind = {stat.S_IFCHR: "c", stat.S_IFBLK: "b", stat.S_IFIFO: "p"}[stat.S_IFMT(self.mode)]
            numbers = "" if kind == "p" else f" {self.major}:{self.minor}"
            return (f"node {self.target} ({kind}{numbers}, mode {stat.S_IMODE(self.mode):04o}, "
                    f"owner {self.uid}:{self.gid}{',create' if self.flags & MF.CREATE else ''})")
        return f"{_KIND_NAMES[self.kind]} {self.target}{tail}"


class MountsPlan(Record):
    """The mounts step, resolved: what agent/lx_mounts.c does, in order."""

    rootfs: str | None  # absolute host path of the root (an overlay root: its top lower layer)
    propagation: str  # private | slave
    rootfs_readonly: bool
    entries: tuple[MountEntry, ...]
    root_layers: tuple[str, ...] = ()  # host dirs making up the root, topmost first
    absent: tuple[str, ...] = ()  # optional bind sources left out as missing (the plan cache watches them)
    read: tuple[str, ...] = ()  # host files whose content the plan holds (a root's /etc/passwd; watched too)

    def describe(self) -> dict:
        return {
            "rootfs": self.rootfs,
            "propagation": self.propagation,
            "rootfs_readonly": self.rootfs_readonly,
            "mounts": [e.describe() for e in self.entries],
        }

    def encode(self, attr: Callable[[int, object], bytes]) -> list[tuple[int, object]]:
        """The PROCEED attributes of this step; `attr` packs one (protocol.attr)."""
        opt = (MOUNT_OPT_SLAVE if self.propagation == "slave" else 0) | (
            MOUNT_OPT_READONLY_ROOT if self.rootfs_readonly else 0)
        out: list[tuple[int, object]] = [(A.MOUNT_OPT, opt)]
        if self.rootfs is not None:
            out.append((A.ROOTFS, self.rootfs))
        for e in self.entries:
            out.append((A.MOUNT, b"".join(attr(t, v) for t, v in e.nested())))
        return out

    def host_path(self, path: str) -> str | None:
        """Where `path` (as the workload will see it) lives on the host now, with
        symlinks resolved as inside the workload; None when it will only exist
        once mounted (a tmpfs, a generated file).  plan/process.py looks the program up
        on PATH with it."""
        parts = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        hops = 0
        while parts:
            done.append(parts.pop(0))
            where = self._host_of("/" + "/".join(done))
            if where is None:
                return None
            if os.path.islink(where):
                hops += 1
                if hops > 40:
                    return None
                link = os.readlink(where)
                done.pop()
                parts = [p for p in link.split("/") if p and p != "."] + parts
                if link.startswith("/"):
                    done = []
            elif done[-1] == "..":
                done = done[:-2]
        return self._host_of("/" + "/".join(done))

    def _host_of(self, path: str) -> str | None:
        # The last mount covering the path is on top.
        for e in reversed(self.entries):
            if not e.target or not (path == e.target or path.startswith(e.target + "/")):
                continue
            if e.kind == MK.BIND and e.source:
                return e.source + path[len(e.target):]
            if e.kind in (MK.FS, MK.DEV, MK.FILE):
                return None
        rel = path.lstrip("/")
        if not self.root_layers:
            return path
        for layer in self.root_layers:
            candidate = os.path.join(layer, rel)
            if os.path.lexists(candidate):
                return candidate
        return os.path.join(self.root_layers[0], rel)


def _cgroup_tree(e, flags: int, create: int, base: str) -> list[MountEntry]:
    """`cgroup`: what runc mounts for OCI's cgroup mount, from this host's hierarchies.  Pure v2: a
    cgroup2 at the target.  Otherwise a tmpfs (mode 755) holding, for each hierarchy mounted under
    /sys/fs/cgroup on the host, a fresh mount of that hierarchy under the same name (v1 by its
    controllers, `name=` included; cgroup2 as `unified`), then the whole tree made read-only at
    once (its directories had to be created first).  In the workload's new cgroup namespace each
    is rooted at its own cgroup (cgroup_namespaces(7)); the step that unshares it runs before the mounts."""
    from .. import mountinfo

    table = [m for m in mountinfo.cgroup_mounts()
             if m.mount_point == base or m.mount_point.startswith(base + "/")]
    rdonly = int(MF.RDONLY) if e.readonly else 0
    if any(m.fstype == "cgroup2" and m.mount_point == base for m in table):
        return [MountEntry(MK.FS, e.target, flags | rdonly | create, fstype="cgroup2")]
    out = [MountEntry(MK.FS, e.target, (flags & ~int(MF.RDONLY)) | create, fstype="tmpfs", options=("mode=755",))]
    seen: set[str] = set()
    for m in table:
        name = m.mount_point[len(base) + 1:]
        if not name or "/" in name or name in seen:
            continue  # a tree's own tmpfs, or a mount deeper down: not a hierarchy of the standard layout
        seen.add(name)
        if m.fstype == "cgroup2":
            out.append(MountEntry(MK.FS, f"{e.target}/{name}", flags | rdonly | int(MF.CREATE), fstype="cgroup2"))
            continue
        opts = tuple(o for o in m.super_options
                     if o not in _CGROUP_GENERIC and ("=" not in o or o.startswith("name=")))
        if opts:
            out.append(MountEntry(MK.FS, f"{e.target}/{name}", flags | rdonly | int(MF.CREATE), fstype="cgroup",
                                  options=opts))
    if rdonly:
        out.append(MountEntry(MK.READONLY, e.target, int(MF.RDONLY)))  # the tmpfs itself, in place
    return out


def _kernel() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def _host(base_dir: str, path: str) -> str:
    return posixpath.normpath(os.path.join(base_dir, path))


def _dir(path: str, field: str, what: str) -> str:
    if not os.path.isdir(path):
        raise PlanError(f"{what} `{path}` is not a directory on this host" if os.path.exists(path)
                        else f"{what} `{path}` does not exist", "create it, or fix the path", field)
    return path


def _refuse_host_root(path: str, what: str, field: str) -> None:
    """Refuse a root that is the host's own `/`: mount points would be created
    in the host's directories.  Identity is device and inode (os.stat follows
    symlinks), never the string: `//`, `/./`, `/..`, a symlink to `/`,
    /proc/1/root and a bind mount of `/` elsewhere all name the same directory."""
    st, host_root = os.stat(path), os.stat("/")
    if (st.st_dev, st.st_ino) == (host_root.st_dev, host_root.st_ino):
        raise PlanError(f"{what} `{path}` is the host's root directory (same device and inode as `/`)",
                        "omit rootfs to keep the host's root, or point it at a directory holding the "
                        "workload's own root", field)


def _flags(entry, default_kind: str) -> int:
    names = entry.flags if entry.flags is not None else _DEFAULT_FLAGS[default_kind]
    bits = MF(0)
    for n in names:
        bits |= _FLAG_BITS[n]
    if entry.readonly:
        bits |= MF.RDONLY
    return int(bits)


def _overlay_options(lower: list[str], upper: str | None, work: str | None, base_dir: str, field: str) -> tuple[str, ...]:
    lowers = [_dir(_host(base_dir, p), f"{field}.lower", "overlay lower layer") for p in lower]
    opts = ["lowerdir=" + ":".join(lowers)]
    if upper is not None and work is not None:
        up = _dir(_host(base_dir, upper), f"{field}.upper", "overlay upper layer")
        wk = _dir(_host(base_dir, work), f"{field}.work", "overlay work directory")
        if os.stat(up).st_dev != os.stat(wk).st_dev:
            raise PlanError(f"overlay upper `{up}` and work `{wk}` are on different filesystems",
                            "put the work directory next to the upper one", field)
        opts += [f"upperdir={up}", f"workdir={wk}"]
    return tuple(opts)


def _etc_bind(value: str, target: str, base_dir: str, field: str) -> MountEntry:
    """An /etc file bound read-only from the host: its own (`host`) or a given path."""
    source = target if value == "host" else _host(base_dir, value)
    if not os.path.isfile(source):
        raise PlanError(f"`{source}` is not a file on this host", "fix the path, or use `generate`", field)
    return MountEntry(MK.BIND, target, int(MF.RDONLY), source=source)


def _etc_entries(m: Mounts, spec, base_dir: str) -> list[tuple[str, MountEntry]]:
    """(field, entry) for /etc/hostname, /etc/hosts, /etc/resolv.conf."""
    from ..spec.mounts import ResolvConf

    etc = m.etc
    out: list[tuple[str, MountEntry]] = []
    if etc is None:
        return out
    for name, target in (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv_conf", "/etc/resolv.conf")):
        value = getattr(etc, name)
        field = f"mounts.etc.{name}"
        if value is None:
            continue
        if isinstance(value, ResolvConf):
            text = "".join(f"nameserver {ip}\n" for ip in value.nameservers)
            if value.search:
                text += "search " + " ".join(value.search) + "\n"
            if value.options:
                text += "options " + " ".join(value.options) + "\n"
            out.append((field, MountEntry(MK.FILE, target, content=text.encode(), what="generated")))
        elif value == "generate":
            if name == "hostname":
                if spec.hostname is None:
                    raise PlanError("etc.hostname: generate needs a `hostname:`", "set `hostname:`, or use `host`",
                                    field)
                text = spec.hostname + "\n"
            else:
                text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                if spec.hostname is not None:
                    text += f"127.0.1.1\t{spec.hostname}\n"
            out.append((field, MountEntry(MK.FILE, target, content=text.encode(), what="generated")))
        else:
            out.append((field, _etc_bind(value, target, base_dir, field)))
    return out


MAX_ETC_BYTES = 256 * 1024  # a root's /etc/passwd or /etc/group read into the plan (the agent's frame is 1 MiB)


def _read_in_root(layers: tuple[str, ...], rel: str, field: str) -> tuple[str | None, str | None]:
    """(text, host path) of `rel` (e.g. "etc/passwd") in the first root layer
    that has it, or (None, None).  Walked by fds with O_NOFOLLOW: a symlink
    planted in the root (`etc/passwd -> /etc/shadow`) must not make the runner
    copy a host file into the workload's view; such a file counts as absent.
    Non-blocking and regular files only: a FIFO there must not hang the plan."""
    *dirs, leaf = rel.split("/")
    for layer in layers:
        fds: list[int] = []
        try:
            fds.append(os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            for d in dirs:
                fds.append(os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
            fds.append(os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1]))
            if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
                return None, None
            data = os.read(fds[-1], MAX_ETC_BYTES + 1)
        except OSError:
            continue  # not in this layer (or not a plain path): the next one, as overlayfs looks
        finally:
            for fd in fds:
                os.close(fd)
        if len(data) > MAX_ETC_BYTES:
            raise PlanError(f"`{os.path.join(layer, rel)}` is over {MAX_ETC_BYTES // 1024} KiB; too big to merge "
                            "an entry into", "set it to `none` (or a host path)", field)
        return data.decode("utf-8", "replace"), os.path.join(layer, rel)
    return None, None


def _ids_listed(text: str) -> set[int]:
    """The ids (third field) of a passwd or group file's entries."""
    ids = set()
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            ids.add(int(parts[2]))
    return ids


def _names_listed(text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def account_entries(base: str, kind: str, uid: int, gid: int, groups: tuple[int, ...]) -> str:
    """`base` (a root's /etc/passwd or /etc/group) with the workload's user and
    groups added where it lacks them, as podman adds its passwd entry."""
    have, names = _ids_listed(base), _names_listed(base)
    user = "root" if uid == 0 else f"user{uid}"
    if kind == "passwd":
        lines = [] if uid in have or user in names else [f"{user}:x:{uid}:{gid}:linx-spec workload:/:/bin/sh"]
    else:
        lines = []
        primary = "root" if gid == 0 else (user if gid == uid else f"group{gid}")
        if gid not in have and primary not in names:
            lines.append(f"{primary}:x:{gid}:")
            names.add(primary)
        for g in groups:
            name = "root" if g == 0 else f"group{g}"
            if g not in have and g != gid and name not in names:
                lines.append(f"{name}:x:{g}:{user}")
                names.add(name)
    if not lines:
        return base
    return base + ("" if not base or base.endswith("\n") else "\n") + "\n".join(lines) + "\n"


def _account_entries(m: Mounts, spec, base_dir: str, layers: tuple[str, ...], etc_fresh: bool,
                     read: list[str]) -> list[tuple[str, MountEntry]]:
    """(field, entry) for /etc/passwd and /etc/group (Etc.passwd's description:
    the default is `generate` when the workload has a root of its own)."""
    out: list[tuple[str, MountEntry]] = []
    own_root = bool(layers) or etc_fresh
    u = spec.process.user
    for name in ("passwd", "group"):
        field = f"mounts.etc.{name}"
        value = getattr(m.etc, name) if m.etc is not None else None
        if value == "none" or (value is None and not own_root):
            continue
        target = f"/etc/{name}"
        if value in (None, "generate"):
            if value == "generate" and not own_root:
                raise PlanError(f"etc.{name}: generate needs a root of the workload's own (the host's {target} is "
                                "its own business)", "set `rootfs`, mount a tmpfs on /etc, or use `host`", field)
            base, path = (None, None) if etc_fresh else _read_in_root(layers, f"etc/{name}", field)
            if base is None and value is None and not etc_fresh:
                continue  # the default binds over a file the root has, or into a fresh /etc; never creates one
            if path is not None:
                read.append(path)
            text = account_entries(base or "", name, u.uid, u.gid, tuple(u.groups))
            out.append((field, MountEntry(MK.FILE, target, content=text.encode(), what="generated")))
        else:
            out.append((field, _etc_bind(value, target, base_dir, field)))
    return out


def resolve(spec_mounts: Mounts, spec, base_dir: str) -> MountsPlan:
    """Spec `mounts:` -> MountsPlan for this host (reads, never writes)."""
    from ..spec.mounts import (DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, Bind, CgroupTree, Dev, Devpts, Mqueue,
                               Overlay, Proc, RootOverlay, Sysfs, Tmpfs, expand_paths)

    m = spec_mounts
    ns_new = set(spec.namespaces.created())
    in_userns = "user" in ns_new
    entries: list[MountEntry] = []
    rootfs: str | None = None
    layers: tuple[str, ...] = ()

    if isinstance(m.rootfs, str):
        rootfs = _dir(_host(base_dir, m.rootfs), "mounts.rootfs", "rootfs")
        _refuse_host_root(rootfs, "rootfs", "mounts.rootfs")
        layers = (rootfs,)
    elif isinstance(m.rootfs, RootOverlay):
        opts = _overlay_options(m.rootfs.lower, m.rootfs.upper, m.rootfs.work, base_dir, "mounts.rootfs")
        lowers = opts[0][len("lowerdir="):].split(":")
        upper = opts[1][len("upperdir="):] if len(opts) > 1 else None
        # Mounted onto its top lower layer: a directory that surely exists, and
        # covering it is harmless (the mount lives in the workload's namespace)
        # unless it is the host's `/`.  Lower layers below the top may be `/`.
        rootfs = lowers[0]
        _refuse_host_root(rootfs, "the overlay root's top lower layer", "mounts.rootfs.lower.0")
        layers = tuple(([upper] if upper else []) + lowers)
        entries.append(MountEntry(MK.FS, "", int(MF.ROOT), fstype="overlay", options=opts))

    # Without a rootfs, mount points are never created: that would write into
    # the host's own directories.  Inside a fresh filesystem declared earlier
    # (a tmpfs, /dev, an overlay) they may be.
    fresh: list[str] = []
    absent: list[str] = []

    def create_flag(target: str) -> int:
        if rootfs is not None or any(target.startswith(f + "/") for f in fresh):
            return int(MF.CREATE)
        if not os.path.lexists(target):
            raise PlanError(f"mount point `{target}` does not exist on this host, and without `rootfs` none is "
                            "created (it would be made in the host's own filesystem)",
                            "create it, mount a tmpfs above it first, or use a rootfs", current_field)
        return 0

    for i, e in enumerate(m.entries):
        current_field = f"mounts.entries.{i}"
        needs = _NEEDS_NS.get(e.type)
        if needs and in_userns and needs not in ns_new:
            raise PlanError(f"a fresh {e.type} inside a user namespace needs a new {needs} namespace "
                            "(the kernel mounts it only for a namespace the workload owns)",
                            f"add `{needs}` to namespaces", current_field)
        if isinstance(e, CgroupTree):
            if "cgroup" not in ns_new:
                raise PlanError("a cgroup mount needs a new cgroup namespace: without one the workload would "
                                "see (and, read-write, change) the host's whole cgroup tree",
                                "add `cgroup` to namespaces", current_field)
            tree = _cgroup_tree(e, _flags(e, "cgroup") & ~int(MF.RDONLY), create_flag(e.target), "/sys/fs/cgroup")
            fresh.append(e.target)
            entries.extend(tree)
            continue
        if isinstance(e, Bind):
            source = _host(base_dir, e.source)
            flags = _flags(e, "bind") | (int(MF.RECURSIVE) if e.recursive else 0)
            if not os.path.exists(source):
                if not e.optional:
                    raise PlanError(f"bind source `{source}` does not exist", "create it, fix the path, or set "
                                    "`optional: true`", current_field + ".source")
                absent.append(source)
                continue
            flags |= int(MF.OPTIONAL) if e.optional else 0
            entry = MountEntry(MK.BIND, e.target, flags | create_flag(e.target), source=source)
        elif isinstance(e, Tmpfs):
            opts = []
            if e.size is not None:
                opts.append(f"size={e.size}")
            if e.mode is not None:
                opts.append(f"mode={e.mode:o}")
            if e.uid is not None:
                opts.append(f"uid={e.uid}")
            if e.gid is not None:
                opts.append(f"gid={e.gid}")
            entry = MountEntry(MK.FS, e.target, _flags(e, "tmpfs") | create_flag(e.target), fstype="tmpfs",
                               options=tuple(opts), source=e.source)
        elif isinstance(e, (Proc, Sysfs, Mqueue)):
            entry = MountEntry(MK.FS, e.target, _flags(e, e.type) | create_flag(e.target), fstype=e.type,
                               source=e.source)
        elif isinstance(e, Devpts):
            # newinstance: a no-op since Linux 4.7 (every mount is a new instance), kept as runc writes it.
            opts = ["newinstance", f"ptmxmode={e.ptmxmode:04o}", f"mode={e.mode:04o}"]
            if e.gid is not None:
                opts.append(f"gid={e.gid}")
            entry = MountEntry(MK.FS, e.target, _flags(e, "devpts") | create_flag(e.target), fstype="devpts",
                               options=tuple(opts), source=e.source)
        elif isinstance(e, Dev):
            entry = MountEntry(MK.DEV, e.target, create_flag(e.target), options=(f"shm_size={e.shm_size}",))
        elif isinstance(e, Overlay):
            opts = _overlay_options(e.lower, e.upper, e.work, base_dir, current_field)
            entry = MountEntry(MK.FS, e.target, _flags(e, "overlay") | create_flag(e.target), fstype="overlay",
                               options=opts, source=e.source)
        else:  # pragma: no cover - the spec's union is closed
            raise AssertionError(e)
        if entry.kind in (MK.FS, MK.DEV):
            fresh.append(entry.target)
        entries.append(entry)

    for i, d in enumerate(m.devices):
        current_field = f"mounts.devices.{i}"
        parent = posixpath.dirname(d.path)
        if rootfs is None and not any(parent == f or parent.startswith(f + "/") for f in fresh):
            raise PlanError(f"device `{d.path}`: without `rootfs` it would be made in the host's own "
                            f"{parent}", "declare a `dev` mount (or a tmpfs) above it, or use a rootfs",
                            current_field)
        entries.append(MountEntry(MK.NODE, d.path, int(MF.CREATE), mode=_NODE_TYPES[d.type] | d.mode,
                                  major=d.major or 0, minor=d.minor or 0, uid=d.uid, gid=d.gid))
    for current_field, entry in _etc_entries(m, spec, base_dir):
        entries.append(MountEntry(entry.kind, entry.target, entry.flags | create_flag(entry.target),
                                  source=entry.source, content=entry.content, what=entry.what))
    read: list[str] = []
    for current_field, entry in _account_entries(m, spec, base_dir, layers, "/etc" in fresh, read):
        entries.append(MountEntry(entry.kind, entry.target, entry.flags | create_flag(entry.target),
                                  source=entry.source, content=entry.content, what=entry.what))
    for p in expand_paths(list(m.readonly_paths), DEFAULT_READONLY_PATHS):
        entries.append(MountEntry(MK.READONLY, p))
    for p in expand_paths(list(m.masked_paths), DEFAULT_MASKED_PATHS):
        entries.append(MountEntry(MK.MASK, p))

    if len(entries) > MAX_ENTRIES:
        raise PlanError(f"{len(entries)} mounts: the agent takes at most {MAX_ENTRIES}", "merge some", "mounts")
    if (entries or rootfs or m.rootfs_readonly) and _kernel() < MIN_KERNEL:
        raise PlanError(f"mounts need Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer (mount_setattr, openat2); "
                        f"this is {os.uname().release}", "upgrade the kernel, or drop `mounts`", "mounts")
    return MountsPlan(rootfs=rootfs, propagation=m.propagation, rootfs_readonly=m.rootfs_readonly,
                      entries=tuple(entries), root_layers=layers, absent=tuple(absent), read=tuple(read))
