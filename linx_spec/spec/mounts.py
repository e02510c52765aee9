"""`mounts:` the filesystem the workload sees: its root, its mounts, masked and
read-only paths, and /etc/hostname, /etc/hosts, /etc/resolv.conf.

Targets are paths as the workload sees them (inside `rootfs` when one is set).
Host paths (`rootfs`, bind sources, overlay layers, /etc file sources) may be
relative: they resolve against the spec file's directory.  Everything here is
checked without touching the host; linx_spec/plan/mounts.py resolves it.
"""

from __future__ import annotations

import ipaddress
import posixpath
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .base import ABS_PATH, Model
from .units import Mode, PositiveByteSize

MountFlag = Literal["nosuid", "nodev", "noexec"]

# runc's defaults (libcontainer/specconv), which Docker and Podman also use:
# kernel interfaces that leak host information or allow host-wide changes.
DEFAULT_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _no_nul(v: str, what: str) -> str:
    if "\0" in v:
        raise ValueError(f"{what} must not contain NUL")
    if not v:
        raise ValueError(f"{what} must not be empty")
    return v


def inside_path(v: str, what: str = "a target") -> str:
    """An absolute path as the workload sees it, normalized; no `..` (the root
    is a boundary, not a starting point)."""
    _no_nul(v, what)
    if not v.startswith("/"):
        raise ValueError(f"{what} must be an absolute path inside the workload, got `{v}`")
    if ".." in v.split("/"):
        raise ValueError(f"{what} must not contain `..`, got `{v}`")
    return "/" + posixpath.normpath(v).lstrip("/") if v.strip("/") else "/"


def _overlay_path(v: str) -> str:
    _no_nul(v, "an overlay layer path")
    # The overlay option parser splits lowerdir at `:` and unescapes `\`.
    if ":" in v or "\\" in v:
        raise ValueError(f"overlay layer paths must not contain `:` or `\\`, got `{v}`")
    return v


class _Entry(Model):
    """Fields every mount entry has."""

    target: str = Field(description="Mount point, an absolute path as the workload sees it (inside `rootfs`).",
                        json_schema_extra={"pattern": ABS_PATH})
    readonly: bool = Field(default=False, description="Mount read-only.")
    flags: list[MountFlag] | None = Field(
        default=None,
        description="Mount flags among nosuid, nodev, noexec. Default per type (bind: none, so the "
        "source's own flags apply; tmpfs: nosuid, nodev; devpts: nosuid, noexec; proc, sysfs, mqueue, cgroup: all three).",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        v = inside_path(v)
        if v == "/":
            raise ValueError("a mount entry cannot target `/`: use `rootfs` for the root")
        return v


MAX_FS_SOURCE_BYTES = 255  # fsconfig(FSCONFIG_SET_STRING) takes at most 255 bytes (agent/lx_mount_entry.h)


class _Fresh(Model):
    """The `source` of a fresh filesystem (its field is declared here once)."""

    source: str | None = Field(
        default=None, max_length=MAX_FS_SOURCE_BYTES,
        description="The name /proc/self/mountinfo shows for it (findmnt's SOURCE, df's Filesystem; OCI's "
        "`source`, e.g. `shm`). Default: the type, as mount(8) and runc show it.")

    @field_validator("source", check_fields=False)
    @classmethod
    def _fs_source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _no_nul(v, "a filesystem source")
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in v):
            raise ValueError(f"a filesystem source must not contain control characters, got {v!r}")
        if len(v.encode()) > MAX_FS_SOURCE_BYTES:
            raise ValueError(f"a filesystem source is at most {MAX_FS_SOURCE_BYTES} bytes (the kernel's fsconfig "
                             "limit)")
        return v


class Bind(_Entry):
    """A bind mount of a host file or directory."""

    type: Literal["bind"] = Field(description="A bind mount of a host path.")
    source: str = Field(description="Host path to bind (relative: against the spec file's directory).")
    target: str = Field(default="", description="Mount point inside the workload. Default: the source path.",
                        json_schema_extra={"pattern": "^(/[^\\u0000]*)?$"})
    recursive: bool = Field(default=True, description="Bind the mounts below the source too (rbind). With "
                            "`readonly`, they become read-only too.")
    optional: bool = Field(default=False, description="Skip this mount when the source does not exist.")

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("target") and isinstance(data.get("source"), str):
            src = data["source"]
            if not src.startswith("/"):
                raise ValueError(f"a bind of the relative source `{src}` needs an explicit `target`")
            data = {**data, "target": src}
        return data

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return _no_nul(v, "a bind source")


class Tmpfs(_Entry, _Fresh):
    """A fresh tmpfs (memory-backed filesystem)."""

    type: Literal["tmpfs"] = Field(description="A fresh tmpfs.")
    size: PositiveByteSize | None = Field(default=None, description="Size limit, e.g. `64Mi`; writes past it "
                                          "fail with ENOSPC. Default: the kernel's (half of RAM).")
    mode: Mode | None = Field(default=None, description="Permissions of the root directory, octal: `0o1777`, "
                              "`01777` or `'1777'`. Default: the kernel's, 1777.")
    uid: Annotated[int | None, Field(strict=True, ge=0, lt=2**32 - 1, description="Owner of the root directory (an id "
                                     "inside the workload's user namespace).")] = None
    gid: Annotated[int | None, Field(strict=True, ge=0, lt=2**32 - 1, description="Group of the root directory.")] = None


class Proc(_Entry, _Fresh):
    """A fresh procfs for the workload's pid namespace."""

    type: Literal["proc"] = Field(description="A fresh proc: it lists the pids of the workload's pid namespace.")
    target: str = Field(default="/proc", description="Mount point. Default: /proc.", json_schema_extra={"pattern": ABS_PATH})


class Sysfs(_Entry, _Fresh):
    """A fresh sysfs for the workload's network namespace."""

    type: Literal["sysfs"] = Field(description="A fresh sysfs (shows the workload's network interfaces).")
    target: str = Field(default="/sys", description="Mount point. Default: /sys.", json_schema_extra={"pattern": ABS_PATH})
    readonly: bool = Field(default=True, description="Mount read-only. Default: true (as runc).")


class Mqueue(_Entry, _Fresh):
    """A fresh mqueue filesystem for the workload's ipc namespace."""

    type: Literal["mqueue"] = Field(description="A fresh POSIX message queue filesystem.")
    target: str = Field(default="/dev/mqueue", description="Mount point. Default: /dev/mqueue.", json_schema_extra={"pattern": ABS_PATH})


class Devpts(_Entry, _Fresh):
    """A private devpts instance (pseudo-terminals), e.g. over a rootfs's own /dev/pts."""

    type: Literal["devpts"] = Field(description="A fresh devpts: the workload's own pseudo-terminals "
                                    "(each devpts mount is a new instance since Linux 4.7).")
    target: str = Field(default="/dev/pts", description="Mount point. Default: /dev/pts.",
                        json_schema_extra={"pattern": ABS_PATH})
    ptmxmode: Mode = Field(default=0o666, description="Permissions of its ptmx. Default: 0666 (so that a "
                           "/dev/ptmx link to it opens, as runc's default config).")
    mode: Mode = Field(default=0o620, description="Permissions of new terminals. Default: 0620.")
    gid: Annotated[int | None, Field(strict=True, ge=0, lt=2**32 - 1, description="Group of new terminals "
                                     "(`tty`, 5, in runc's default config; it must be mapped in a user "
                                     "namespace). Default: the kernel's (the workload's group).")] = None


class CgroupTree(_Entry):
    """The workload's view of the cgroup tree (OCI's `cgroup` mount), as runc mounts it."""

    type: Literal["cgroup"] = Field(description="The cgroup filesystems at /sys/fs/cgroup, rooted at the "
                                    "workload's own cgroup (needs a new `cgroup` namespace).")
    target: str = Field(default="/sys/fs/cgroup", description="Mount point. Default: /sys/fs/cgroup.",
                        json_schema_extra={"pattern": ABS_PATH})
    readonly: bool = Field(default=True, description="Mount read-only. Default: true (as engines configure it).")


class Dev(_Entry):
    """A minimal /dev: a small tmpfs holding the host's null, zero, full, random,
    urandom and tty (bind-mounted: mknod is refused in a user namespace), a
    private devpts with ptmx, a /dev/shm tmpfs and the fd, stdin, stdout,
    stderr links."""

    type: Literal["dev"] = Field(description="A minimal /dev (null, zero, full, random, urandom, tty, pts, "
                                 "ptmx, shm, fd links).")
    target: str = Field(default="/dev", description="Mount point. Default: /dev.", json_schema_extra={"pattern": ABS_PATH})
    shm_size: PositiveByteSize = Field(default=64 * 2**20, description="Size limit of <target>/shm. Default: 64Mi.")


class _Layers(Model):
    """Checks shared by an overlay entry and an overlay root (their fields are
    declared in each, with their own descriptions)."""

    @field_validator("upper", "work", check_fields=False)
    @classmethod
    def _layer(cls, v: str | None) -> str | None:
        return v if v is None else _overlay_path(v)

    @field_validator("lower", check_fields=False)
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [_overlay_path(p) for p in v]

    @model_validator(mode="after")
    def _pair(self):
        if (self.upper is None) != (self.work is None):
            raise ValueError("overlay `upper` and `work` go together: give both or neither")
        return self


class Overlay(_Entry, _Fresh, _Layers):
    """An overlay filesystem: the union of read-only lower layers and a writable upper one."""

    type: Literal["overlay"] = Field(description="An overlay filesystem.")
    lower: list[str] = Field(min_length=1, description="Read-only layers, topmost first (host paths).")
    upper: str | None = Field(default=None, description="Writable layer: every change lands here (host path). "
                              "Without it the overlay is read-only.")
    work: str | None = Field(default=None, description="Overlay's work directory, empty, on the same filesystem "
                             "as `upper` (host path). Required with `upper`.")



Mount = Annotated[
    Union[Bind, Tmpfs, Proc, Sysfs, Mqueue, Devpts, CgroupTree, Dev, Overlay],
    Field(discriminator="type"),
]


class RootOverlay(_Layers):
    """A root made of overlay layers: writes land in `upper`, the lower layers stay untouched."""

    lower: list[str] = Field(min_length=1, description="Read-only layers of the root, topmost first (host paths).")
    upper: str | None = Field(default=None, description="Writable layer (host path). Without it the root is "
                              "read-only.")
    work: str | None = Field(default=None, description="Overlay's work directory, empty, on the same filesystem "
                             "as `upper` (host path).")



MAX_DEVICES = 256  # the agent takes at most 256 mount entries in all (plan/mounts.py)


class Device(Model):
    """A device node made in the workload's filesystem (OCI `linux.devices`), as runc makes it."""

    path: str = Field(description="Where, as the workload sees it (e.g. `/dev/fuse`); inside a `dev` mount or "
                      "a `rootfs` (never in the host's own /dev).", json_schema_extra={"pattern": ABS_PATH})
    type: Literal["c", "b", "p", "u"] = Field(description="`c` character (`u`: unbuffered character, the "
                                              "same), `b` block, `p` FIFO.")
    major: Annotated[int, Field(strict=True, ge=0, lt=2**12)] | None = Field(
        default=None, description="Major number (c, b: required); the kernel's range 0..4095.")
    minor: Annotated[int, Field(strict=True, ge=0, lt=2**20)] | None = Field(
        default=None, description="Minor number (c, b: required); the kernel's range 0..1048575.")
    mode: Mode = Field(default=0o666, description="Permissions, octal (e.g. `0o660`); not masked by the "
                       "umask. Default: 0666 (as runc).")
    uid: Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1)] = Field(
        default=0, description="Owner (an id inside the workload's user namespace).")
    gid: Annotated[int, Field(strict=True, ge=0, lt=2**32 - 1)] = Field(default=0, description="Group.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        v = inside_path(v, "a device path")
        if v == "/":
            raise ValueError("a device path cannot be `/`")
        return v

    @model_validator(mode="after")
    def _numbers(self) -> "Device":
        if self.type != "p" and (self.major is None or self.minor is None):
            raise ValueError(f"a `{self.type}` device needs `major` and `minor`")
        return self


class ResolvConf(Model):
    """A generated /etc/resolv.conf."""

    nameservers: list[str] = Field(min_length=1, max_length=3, description="Name server addresses (the "
                                   "resolver uses at most 3).")
    search: list[str] = Field(default_factory=list, description="Search domains.")
    options: list[str] = Field(default_factory=list, description="Resolver options, e.g. `ndots:2`.")

    @field_validator("nameservers")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        for ip in v:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"`{ip}` is not an IP address") from None
        return v

    @field_validator("search", "options")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        for w in v:
            if not w or any(c.isspace() for c in w) or "\0" in w:
                raise ValueError(f"`{w}` must be one word")
        return v


def _form(text_tag: str, object_tag: str):
    # Lets a union of a string and a mapping report only the errors of the
    # form the user wrote, not "Input should be a valid string" as well.  The
    # tag shows in the field path of a whole-object error, so it names the form.
    return Discriminator(lambda v: text_tag if isinstance(v, str) else object_tag)


EtcSource = Annotated[
    str,
    Field(description="`generate` (written fresh for the workload), `host` (the host's own file, "
          "bound read-only) or a host path to bind read-only (relative: against the spec file)."),
]


class Etc(Model):
    """/etc files of the workload, placed over whatever the root holds."""

    hostname: EtcSource | None = Field(default=None, description="/etc/hostname: `generate` (from `hostname:`), "
                                       "`host` or a host path.")
    hosts: EtcSource | None = Field(default=None, description="/etc/hosts: `generate` (localhost and "
                                    "`hostname:`), `host` or a host path.")
    resolv_conf: Annotated[Union[Annotated[EtcSource, Tag("source")], Annotated[ResolvConf, Tag("generated")]],
                           _form("source", "generated")] | None = Field(
        default=None,
        description="/etc/resolv.conf: `host`, a host path, or `{nameservers, search, options}` to generate one.",
    )

    passwd: EtcSource | None = Field(
        default=None, max_length=4095,
        description="/etc/passwd: `generate` (the root's own file, plus an entry for `process.user.uid` when it "
        "has none: `root` for 0, else `user<UID>`, home `/`, shell /bin/sh; as podman does), `host`, a host path, "
        "or `none` (the root's file as it is). Default: `generate` when the workload has its own root "
        "(`rootfs`, or a fresh filesystem on /etc) that holds an /etc/passwd, so `id`, `whoami` and `ls -l` "
        "show a name for the mapped user; never written into the root itself (bound over it).")
    group: EtcSource | None = Field(
        default=None, max_length=4095,
        description="/etc/group: as `passwd`, for `process.user.gid` (named as the user) and each of "
        "`process.user.groups` (`group<GID>`, the user a member) that the root's file lacks.")

    @field_validator("hostname", "hosts", "resolv_conf", "passwd", "group")
    @classmethod
    def _src(cls, v: Any) -> Any:
        if isinstance(v, str):
            _no_nul(v, "an /etc file source")
        return v

    @model_validator(mode="after")
    def _resolv_generate(self) -> "Etc":
        if self.resolv_conf == "generate":
            raise ValueError("resolv_conf: `generate` needs the servers: write `{nameservers: [IP, ...]}`")
        return self


PathList = Annotated[
    Union[Literal["default"], list[str]],
    Field(description="`default` (runc's set), or a list of absolute paths inside the workload; the word "
          "`default` inside the list adds runc's set. Paths that do not exist are skipped."),
]


def _path_list(v: Any, what: str) -> Any:
    if v == "default":
        return ["default"]
    if isinstance(v, list):
        out = []
        for p in v:
            if p == "default" or not isinstance(p, str):
                out.append(p)
            else:
                out.append(inside_path(p, what))
        return out
    return v


def _list_form_schema(schema: dict[str, Any]) -> None:
    # `mounts: [...]` is accepted by the `before` validator below; say so in
    # the JSON Schema too, so that editors and check-jsonschema agree.
    mapping = dict(schema)
    schema.clear()
    schema["description"] = mapping.get("description", "")
    schema["anyOf"] = [
        {"type": "array", "items": mapping["properties"]["entries"]["items"],
         "description": "Short for `{entries: [...]}`."},
        mapping,
    ]


class Mounts(Model):
    """The filesystem of the workload (a list is short for `{entries: [...]}`).
    Needs a new mount namespace: nothing done here is visible to the host."""

    model_config = Model.model_config | {"json_schema_extra": _list_form_schema}

    rootfs: Annotated[Union[Annotated[str, Tag("path")], Annotated[RootOverlay, Tag("overlay")]],
                      _form("path", "overlay")] | None = Field(
        default=None,
        description="The workload's root: a host directory (relative: against the spec file), or overlay "
        "layers `{lower: [...], upper, work}`. The old root is detached: the workload sees only this tree "
        "and the declared mounts. Without it the host's root stays visible under the declared mounts.",
    )
    rootfs_readonly: bool = Field(
        default=False,
        description="Make the root mount read-only after every other mount is in place (the declared "
        "mounts keep their own mode). Without `rootfs`, this applies to the workload's view of the host's /.",
    )
    propagation: Literal["private", "slave"] = Field(
        default="private",
        description="Propagation of the workload's mounts, set before any mount: `private` (default: "
        "nothing crosses either way) or `slave` (host mounts appear inside, nothing goes out).",
    )
    entries: list[Mount] = Field(
        default_factory=list,
        description="Mounts, done in the order written: bind, tmpfs, proc, sysfs, mqueue, devpts, cgroup, dev, overlay "
        "(a `type` key says which). Missing mount points are created inside `rootfs` (never by following "
        "a symlink out of it); without `rootfs` they must exist.",
    )
    masked_paths: PathList = Field(
        default_factory=list,
        description="Paths made unreadable: /dev/null over files, an empty read-only tmpfs over directories. "
        "`default`: " + ", ".join(DEFAULT_MASKED_PATHS) + ".",
    )
    readonly_paths: PathList = Field(
        default_factory=list,
        description="Paths made read-only (a read-only bind of themselves). `default`: "
        + ", ".join(DEFAULT_READONLY_PATHS) + ".",
    )
    devices: list[Device] = Field(
        default_factory=list, max_length=MAX_DEVICES,
        description="Device nodes made after the entries (so inside a `dev` mount when one is declared), with "
        "the given type, numbers, mode and owner: mknod, or, inside a user namespace where the kernel refuses "
        "mknod of char and block devices, the host's node of the same path bound there (as runc). A node that "
        "exists already is left as it is.")
    etc: Etc | None = Field(default=None, description="/etc/hostname, /etc/hosts, /etc/resolv.conf: "
                            "generated or bound, placed after the entries.")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: object) -> object:
        # `mounts: [...]` is short for `mounts: {entries: [...]}`.
        if isinstance(data, list):
            return {"entries": data}
        return data

    @field_validator("rootfs")
    @classmethod
    def _rootfs(cls, v: Any) -> Any:
        if isinstance(v, str):
            _no_nul(v, "rootfs")
        return v

    @field_validator("masked_paths")
    @classmethod
    def _masked(cls, v: Any) -> Any:
        return _path_list(v, "a masked path")

    @field_validator("readonly_paths")
    @classmethod
    def _readonly(cls, v: Any) -> Any:
        return _path_list(v, "a read-only path")


def expand_paths(paths: list[str], default: tuple[str, ...]) -> list[str]:
    """`default` -> the default set; duplicates dropped, order kept."""
    out: list[str] = []
    for p in paths:
        for q in (default if p == "default" else (p,)):
            if q not in out:
                out.append(q)
    return out


__all__ = [
    "Mounts", "Mount", "Device", "Bind", "Tmpfs", "Proc", "Sysfs", "Mqueue", "Devpts", "CgroupTree", "Dev", "Overlay", "RootOverlay", "Etc",
    "ResolvConf", "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS", "expand_paths", "inside_path",
]
