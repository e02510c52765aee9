"""OCI config.json (decoded) -> the data of a linx-spec spec, and what it cannot say.

    imported = import_config(data, source, bundle_dir)
    imported.spec     # a dict ready for YAML: validate it with load_text()
    imported.losses   # [Loss]: JSON paths of config.json a spec cannot express

The reverse of export.py, section by section.  The config is untrusted input:
every value is type-checked here before it is used (a wrong type is a
SpecError naming the JSON path), and the spec it becomes is validated by the
same models as a hand-written one (bounds included).  What is read is taken
out of a copy of the config; whatever is left at the end (hooks, devices,
apparmor/selinux labels, unknown keys...) is a Loss by its JSON path, so
nothing is dropped silently.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem, SpecError
from . import ANNOTATION_HOST_ROOT, ANNOTATION_NAME
from .export import DEVPTS_OPTIONS, OCI_NAMESPACE, SHM_FLAGS, TMPFS_MODE, blkio_weight, cpu_shares
from .lossy import Loss
from .resolved import RLIM_INFINITY, default_env

SPEC_NAMESPACE = {oci: ours for ours, oci in OCI_NAMESPACE.items()}
FLAG_OPTIONS = ("nosuid", "nodev", "noexec")
_SIZE_RE = re.compile(r"^(\d+)([kmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Why well-known OCI fields have no counterpart (by JSON path prefix); anything else left over
# is "no linx-spec counterpart".
REASONS = {
    "hooks": "linx-spec runs no OCI hooks",
    "process.apparmorProfile": "AppArmor profiles: linx-spec does not apply LSM labels",
    "process.selinuxLabel": "SELinux labels: linx-spec does not apply LSM labels",
    "linux.mountLabel": "SELinux mount labels: linx-spec does not apply LSM labels",
    "annotations": "annotations other than linx-spec's own have no place in a spec",
    "process.user.username": "a user name: a spec gives numeric ids",
    "linux.intelRdt": "Intel RDT: linx-spec does not set it",
    "linux.personality": "personality(2): linx-spec does not set it",
    "linux.timeOffsets": "time namespace offsets: linx-spec creates the namespace without offsets",
    "process.consoleSize": "the terminal size is the caller's (`apply -t`)",
}


@dataclass
class Imported:
    spec: dict[str, Any]
    losses: list[Loss] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(message)


def _want(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _Bad(where, f"expected {getattr(kind, '__name__', kind)}, got a boolean")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _Bad(where, f"expected {name}, got {type(value).__name__}")
    return value


def _strs(value: Any, where: str) -> list[str]:
    _want(value, list, where)
    for i, v in enumerate(value):
        _want(v, str, f"{where}[{i}]")
    return value


def _ints(value: Any, where: str) -> list[int]:
    _want(value, list, where)
    for i, v in enumerate(value):
        _want(v, int, f"{where}[{i}]")
    return value


def import_config(data: Any, source: str, bundle_dir: str) -> Imported:
    """SpecError (exit 65) with the JSON path when the config is malformed."""
    try:
        return _Importer(data, bundle_dir).run()
    except _Bad as exc:
        raise SpecError([Problem(source, 0, 0, exc.where, str(exc))]) from None


class _Importer:
    def __init__(self, data: Any, bundle_dir: str):
        self.c = copy.deepcopy(_want(data, dict, "(config)"))
        self.bundle = bundle_dir
        self.losses: list[Loss] = []
        self.spec: dict[str, Any] = {"version": 1}

    def lose(self, where: str, why: str) -> None:
        self.losses.append(Loss(where, why))

    def obj(self, parent: dict, key: str, where: str) -> dict:
        value = parent.get(key)
        return {} if value is None else _want(value, dict, where)

    def run(self) -> Imported:
        c = self.c
        version = _want(c.pop("ociVersion", None), str, "ociVersion") if "ociVersion" in c else None
        if version is None or not re.match(r"^1\.[0-9]+\.", version):
            raise _Bad("ociVersion", f"expected a runtime-spec 1.x version, got {version!r}")
        annotations = self.obj(c, "annotations", "annotations")
        name = annotations.pop(ANNOTATION_NAME, None)
        if isinstance(name, str) and _NAME_RE.match(name):
            self.spec["name"] = name
        host_root = annotations.pop(ANNOTATION_HOST_ROOT, None)
        linux = self.obj(c, "linux", "linux")
        self._namespaces(linux)
        self._idmap(linux)
        for key in ("hostname", "domainname"):
            if key in c:
                self.spec[key] = _want(c.pop(key), str, key)
        caps_bounding = self._process(self.obj(c, "process", "process"))
        self._mounts(c, linux, host_root)
        self._cgroup(linux)
        self._sysctl(linux)
        self._seccomp(linux, caps_bounding)
        for where, value in _leftovers(c, ""):
            why = next((r for k, r in REASONS.items() if where == k or where.startswith(k + ".")),
                       "no linx-spec counterpart")
            self.lose(where, why)
        return Imported(self.spec, self.losses)

    # -- namespaces and ids -------------------------------------------------

    def _namespaces(self, linux: dict) -> None:
        out: dict[str, Any] = {}
        items = linux.get("namespaces") or []
        _want(items, list, "linux.namespaces")
        for i, ns in enumerate(items):
            where = f"linux.namespaces[{i}]"
            _want(ns, dict, where)
            kind = _want(ns.pop("type", None), str, where + ".type")
            ours = SPEC_NAMESPACE.get(kind)
            if ours is None:
                raise _Bad(where + ".type", f"unknown namespace type `{kind}`")
            path = ns.pop("path", None)
            out[ours] = {"join": _want(path, str, where + ".path")} if path else "new"
            for k in ns:
                self.lose(f"{where}.{k}", "no linx-spec counterpart")
        linux.pop("namespaces", None)
        self.spec["namespaces"] = out

    def _idmap(self, linux: dict) -> None:
        idmap: dict[str, Any] = {}
        for key, ours in (("uidMappings", "uid"), ("gidMappings", "gid")):
            ranges = linux.pop(key, None) or []
            _want(ranges, list, f"linux.{key}")
            out = []
            for i, r in enumerate(ranges):
                where = f"linux.{key}[{i}]"
                _want(r, dict, where)
                out.append({"container": _want(r.pop("containerID", None), int, where + ".containerID"),
                            "host": _want(r.pop("hostID", None), int, where + ".hostID"),
                            "count": _want(r.pop("size", None), int, where + ".size")})
                for k in r:
                    self.lose(f"{where}.{k}", "no linx-spec counterpart")
            if out:
                idmap[ours] = out
        if idmap:
            self.spec["idmap"] = idmap

    # -- process --------------------------------------------------------------

    def _process(self, p: dict) -> list[str] | None:
        proc: dict[str, Any] = {}
        self.spec["process"] = proc
        if "args" not in p:
            raise _Bad("process.args", "missing: linx-spec needs the program to run")
        proc["command"] = _strs(p.pop("args"), "process.args")
        env: dict[str, str] = {}
        defaults = default_env()
        for i, item in enumerate(_strs(p.pop("env", None) or [], "process.env")):
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise _Bad(f"process.env[{i}]", f"`{item}` is not NAME=value")
            if defaults.get(name) != value:
                env[name] = value
        if env:
            proc["env"] = env
        if "cwd" in p:
            proc["cwd"] = _want(p.pop("cwd"), str, "process.cwd")
        user = self.obj(p, "user", "process.user")
        ident: dict[str, Any] = {}
        for key, ours in (("uid", "uid"), ("gid", "gid")):
            if key in user:
                ident[ours] = _want(user.pop(key), int, f"process.user.{key}")
        if "additionalGids" in user:
            ident["groups"] = _ints(user.pop("additionalGids"), "process.user.additionalGids")
        if ident:
            proc["user"] = ident
        if "umask" in user:
            proc["umask"] = _want(user.pop("umask"), int, "process.user.umask")
        p["user"] = user
        if p.pop("terminal", False) is True:
            self.spec["stdio"] = "pty"
        self.spec["no_new_privs"] = bool(_want(p.pop("noNewPrivileges", False), bool, "process.noNewPrivileges"))
        rlimits: dict[str, Any] = {}
        for i, lim in enumerate(_want(p.pop("rlimits", None) or [], list, "process.rlimits")):
            where = f"process.rlimits[{i}]"
            _want(lim, dict, where)
            kind = _want(lim.get("type"), str, where + ".type")
            name = kind.removeprefix("RLIMIT_").lower()
            from ..spec.rlimits import RLIMITS

            if not kind.startswith("RLIMIT_") or name not in RLIMITS:
                raise _Bad(where + ".type", f"unknown rlimit `{kind}`")
            rlimits[name] = {side: _rlimit(_want(lim.get(side), int, f"{where}.{side}"), name)
                             for side in ("soft", "hard")}
        if "oomScoreAdj" in p:
            rlimits["oom_score_adj"] = _want(p.pop("oomScoreAdj"), int, "process.oomScoreAdj")
        if rlimits:
            self.spec["rlimits"] = rlimits
        caps = p.pop("capabilities", None)
        bounding = None
        if caps is None:
            # runc leaves the capabilities alone: uid 0 keeps every one.
            self.spec["capabilities"] = {"bounding": ["all"]}
        else:
            _want(caps, dict, "process.capabilities")
            sets = {s: _strs(caps.pop(s, None) or [], f"process.capabilities.{s}")
                    for s in ("bounding", "effective", "inheritable", "permitted", "ambient")}
            for k in caps:
                self.lose(f"process.capabilities.{k}", "not a capability set")
            bounding = sets["bounding"]
            # execve sets permitted and effective (capabilities(7)); listing them is
            # only needed when they say something else, which the plan then refuses.
            after_exec = bounding if ident.get("uid", 0) == 0 else sets["ambient"]
            out = {"bounding": bounding}
            for s in ("permitted", "effective"):
                if set(sets[s]) != set(after_exec):
                    out[s] = sets[s]
            for s in ("inheritable", "ambient"):
                if sets[s]:
                    out[s] = sets[s]
            self.spec["capabilities"] = out
        return bounding

    # -- filesystem -------------------------------------------------------------

    def _mounts(self, c: dict, linux: dict, host_root: Any) -> None:
        mounts: dict[str, Any] = {}
        root = self.obj(c, "root", "root")
        items = _want(c.pop("mounts", None) or [], list, "mounts")
        offset = 0
        if host_root is not None:
            # The export stood for the host's /: its first N mounts bind the host's directories.
            if not (isinstance(host_root, str) and host_root.isdigit() and int(host_root) <= len(items)):
                raise _Bad(f"annotations.{ANNOTATION_HOST_ROOT}", f"expected a count of mounts, got {host_root!r}")
            offset = int(host_root)
            for i, m in enumerate(items[:offset]):
                if not (isinstance(m, dict) and m.get("type") == "bind" and m.get("source") == m.get("destination")):
                    raise _Bad(f"mounts[{i}]", "expected a bind of a host directory onto itself (the host root)")
            root.pop("path", None)
            if root.pop("readonly", False):
                mounts["rootfs_readonly"] = True
        elif "path" in root:
            mounts["rootfs"] = os.path.normpath(os.path.join(self.bundle, _want(root.pop("path"), str, "root.path")))
            mounts["rootfs_readonly"] = bool(_want(root.pop("readonly", False), bool, "root.readonly"))
        c["root"] = root
        entries = []
        folded: set[int] = set()  # a devpts and shm tmpfs folded into the `dev` entry of their /dev
        private = linux.get("rootfsPropagation") in (None, "private", "rprivate")
        for i in range(offset, len(items)):
            if i not in folded:
                entry = self._mount(items, i, folded, private)
                if entry is not None:
                    entries.append(entry)
        if entries:
            mounts["entries"] = entries
        for key, ours in (("maskedPaths", "masked_paths"), ("readonlyPaths", "readonly_paths")):
            if key in linux:
                paths = _strs(linux.pop(key), f"linux.{key}")
                if paths:
                    mounts[ours] = paths
        devices = self._device_nodes(linux)
        if devices:
            mounts["devices"] = devices
        if "rootfsPropagation" in linux:
            prop = _want(linux.pop("rootfsPropagation"), str, "linux.rootfsPropagation")
            if prop in ("private", "rprivate", "slave", "rslave"):
                mounts["propagation"] = prop.removeprefix("r")
            else:
                self.lose("linux.rootfsPropagation", f"`{prop}`: linx-spec makes the workload's mounts private "
                                                      "or slave, never shared")
        if mounts:
            self.spec["mounts"] = mounts

    def _mount(self, items: list, i: int, folded: set[int], private: bool) -> dict | None:
        where = f"mounts[{i}]"
        m = _want(items[i], dict, where)
        dest = _want(m.get("destination"), str, where + ".destination")
        kind = _want(m.get("type", "bind"), str, where + ".type")
        opts = _strs(m.get("options") or [], where + ".options")
        source = m.get("source")
        for k in m:
            if k not in ("destination", "type", "source", "options"):
                self.lose(f"{where}.{k}", "no linx-spec counterpart")
        parts = self._dev_parts(items, i, dest, opts) if kind == "tmpfs" else None
        if parts is not None:
            pts, shm = parts
            folded.update(j for j in parts if j is not None)
            entry: dict[str, Any] = {"type": "dev", "target": dest, "flags": [f for f in FLAG_OPTIONS if f in opts]}
            if "ro" in opts:
                entry["readonly"] = True
            shm_opts = _options(items[shm].get("options") or []) if shm is not None else {}
            if "size" in shm_opts:
                entry["shm_size"] = _size(shm_opts["size"], f"mounts[{shm}].options")
            return entry
        is_bind = kind == "bind" or "bind" in opts or "rbind" in opts
        # The workload's mounts are private already (propagation `private`, set before any mount).
        known = {"ro", "rw", *FLAG_OPTIONS, *(("private", "rprivate") if private else ()),
                 *(() if is_bind else ("relatime",))}  # relatime: a fresh mount's default
        entry = {"target": dest}
        named = _options(opts)
        flags = [f for f in FLAG_OPTIONS if f in opts]
        if is_bind:
            known |= {"bind", "rbind", "rro"}  # rro: what linx-spec's recursive read-only bind is anyway
            entry.update(type="bind", source=os.path.normpath(os.path.join(self.bundle, _want(source, str, where + ".source"))),
                         recursive="rbind" in opts)
        elif kind == "tmpfs":
            for key in ("size", "mode", "uid", "gid"):
                if key in named:
                    known.add(f"{key}={named[key]}")
                    entry[key] = (_size(named[key], where + ".options") if key == "size" else
                                  _number(named[key], 8 if key == "mode" else 10, where + ".options"))
            if entry.get("mode") == TMPFS_MODE:
                del entry["mode"]  # the kernel's default, which linx-spec's tmpfs gets without `mode`
            entry["type"] = "tmpfs"
        elif kind in ("proc", "sysfs", "mqueue"):
            entry["type"] = kind
        elif kind == "cgroup":
            if (self.spec.get("namespaces") or {}).get("cgroup") != "new":
                self.lose(where, f"a `cgroup` mount at {dest} without a new cgroup namespace: linx-spec mounts the "
                                 "cgroup tree only rooted at the workload's own cgroup, never the host's whole tree")
                return None
            entry["type"] = "cgroup"
        elif kind == "devpts":
            known.add("newinstance")  # every devpts mount is a new instance since Linux 4.7
            for key in ("ptmxmode", "mode", "gid"):
                if key in named:
                    known.add(f"{key}={named[key]}")
                    entry[key] = _number(named[key], 10 if key == "gid" else 8, where + ".options")
            entry["type"] = "devpts"
        elif kind == "overlay":
            for key, ours in (("lowerdir", "lower"), ("upperdir", "upper"), ("workdir", "work")):
                if key in named:
                    known.add(f"{key}={named[key]}")
                    entry[ours] = named[key].split(":") if key == "lowerdir" else named[key]
            entry["type"] = "overlay"
        else:
            self.lose(where, f"a `{kind}` mount at {dest}: linx-spec mounts bind, tmpfs, proc, sysfs, mqueue, "
                             "devpts, overlay and a minimal /dev")
            return None
        if not is_bind and source is not None and _want(source, str, where + ".source") != kind:
            entry["source"] = source  # what mountinfo shows; the type when absent
        unknown = [o for o in opts if o not in known]
        if unknown:
            self.lose(where + ".options", f"{', '.join(unknown)} at {dest}: linx-spec sets only ro, nosuid, "
                                          "nodev, noexec (and the type's own options)")
        entry["readonly"] = "ro" in opts or (is_bind and "rro" in opts)
        entry["flags"] = flags
        return entry

    def _device_nodes(self, linux: dict) -> list[dict[str, Any]]:
        """linux.devices -> mounts.devices (the bounds are the spec model's)."""
        out = []
        for i, d in enumerate(_want(linux.pop("devices", None) or [], list, "linux.devices")):
            where = f"linux.devices[{i}]"
            _want(d, dict, where)
            dev: dict[str, Any] = {"path": _want(d.pop("path", None), str, where + ".path"),
                                   "type": _want(d.pop("type", None), str, where + ".type")}
            for key, ours in (("major", "major"), ("minor", "minor"), ("fileMode", "mode"), ("uid", "uid"),
                              ("gid", "gid")):
                if d.get(key) is not None:
                    dev[ours] = _want(d.pop(key), int, f"{where}.{key}")
            if dev["type"] == "p":
                dev.pop("major", None)  # a FIFO has no numbers (runtime-tools gives some anyway)
                dev.pop("minor", None)
            if "mode" in dev:
                dev["mode"] &= 0o7777  # Go's os.FileMode may carry its own type bits above
            for k in d:
                self.lose(f"{where}.{k}", "no linx-spec counterpart")
            out.append(dev)
        return out

    @staticmethod
    def _dev_parts(items: list, i: int, dest: str, opts: list[str]) -> tuple[int | None, int | None] | None:
        """A tmpfs at /dev with a minimal /dev's options becomes linx-spec's `dev` (the runtime-spec's
        default devices, its own devpts at pts and a shm tmpfs), and the devpts and shm tmpfs the config
        mounts there are folded into it wherever they come later in the list (runtime-tools and
        containerd write them right after /dev, podman after /sys): (index of the devpts, index of the
        shm tmpfs), either None when absent or not what `dev` mounts.  None: a plain tmpfs (elsewhere
        than /dev, only with its devpts: what export writes for a `dev` at another target)."""
        if not all(o in (*FLAG_OPTIONS, "ro", "strictatime") or o.startswith(("mode=", "size=")) for o in opts):
            return None
        base = os.path.normpath(dest)
        pts = shm = None
        for j in range(i + 1, len(items)):
            x = items[j]
            d = x.get("destination") if isinstance(x, dict) else None
            if not isinstance(d, str):
                continue
            d = os.path.normpath(d)
            if d == base:
                break  # /dev mounted over again: what follows lands on that one
            x_opts = x.get("options") or []
            if not isinstance(x_opts, list) or not all(isinstance(o, str) for o in x_opts):
                continue
            if pts is None and d == base + "/pts" and x.get("type") == "devpts" \
                    and set(x_opts) <= {*DEVPTS_OPTIONS, "gid=5"} and x.get("source") in (None, "devpts"):
                pts = j
            elif shm is None and d == base + "/shm" and x.get("type") == "tmpfs" and x.get("source") in (None, "shm") \
                    and all(o in (*SHM_FLAGS, "mode=1777") or o.startswith("size=") for o in x_opts):
                shm = j
        if pts is None and base != "/dev":
            return None
        return pts, shm

    # -- cgroup, sysctls, seccomp ---------------------------------------------

    def _cgroup(self, linux: dict) -> None:
        res = self.obj(linux, "resources", "linux.resources")
        cg: dict[str, Any] = {}
        mem = self.obj(res, "memory", "linux.resources.memory")
        memory: dict[str, Any] = {}
        limit = mem.pop("limit", None)
        if limit is not None and _want(limit, int, "linux.resources.memory.limit") > 0:
            memory["max"] = limit
        swap = mem.pop("swap", None)
        if swap is not None and _want(swap, int, "linux.resources.memory.swap") > 0:
            if "max" not in memory or swap < memory["max"]:
                self.lose("linux.resources.memory.swap", "OCI's swap is memory + swap: linx-spec needs a memory "
                                                         "limit at most as large")
            else:
                memory["swap_max"] = swap - memory["max"]
        if memory:
            cg["memory"] = memory
        cpu_in = self.obj(res, "cpu", "linux.resources.cpu")
        cpu: dict[str, Any] = {}
        quota = cpu_in.pop("quota", None)
        period = cpu_in.pop("period", None)
        if quota is not None and _want(quota, int, "linux.resources.cpu.quota") > 0:
            period = _want(period, int, "linux.resources.cpu.period") if period else 100_000
            cpu["max"] = quota / period
            if period != 100_000:
                cpu["period"] = f"{period}us"
        if cpu_in.get("shares"):
            cpu["weight"] = _inverse(cpu_shares, _want(cpu_in.pop("shares"), int, "linux.resources.cpu.shares"))
        cpu_in.pop("shares", None)
        if cpu:
            cg["cpu"] = cpu
        cpuset = {ours: _want(cpu_in.pop(key), str, f"linux.resources.cpu.{key}")
                  for key, ours in (("cpus", "cpus"), ("mems", "mems")) if cpu_in.get(key)}
        if cpuset:
            cg["cpuset"] = cpuset
        pids = self.obj(res, "pids", "linux.resources.pids")
        if "limit" in pids:
            limit = _want(pids.pop("limit"), int, "linux.resources.pids.limit")
            if limit > 0:
                cg["pids"] = {"max": limit}
        blk = self.obj(res, "blockIO", "linux.resources.blockIO")
        io: dict[str, Any] = {}
        if blk.get("weight"):
            io["weight"] = _inverse(blkio_weight, _want(blk.pop("weight"), int, "linux.resources.blockIO.weight"))
        limits: dict[str, dict[str, Any]] = {}
        for key, ours in (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
                          ("throttleReadIOPSDevice", "read_iops"), ("throttleWriteIOPSDevice", "write_iops")):
            for j, d in enumerate(_want(blk.pop(key, None) or [], list, f"linux.resources.blockIO.{key}")):
                where = f"linux.resources.blockIO.{key}[{j}]"
                _want(d, dict, where)
                dev = f"{_want(d.get('major'), int, where + '.major')}:{_want(d.get('minor'), int, where + '.minor')}"
                limits.setdefault(dev, {"device": dev})[ours] = _want(d.get("rate"), int, where + ".rate")
        if limits:
            io["limits"] = list(limits.values())
        if io:
            cg["io"] = io
        if "devices" in res:
            devices = self._devices(_want(res.pop("devices"), list, "linux.resources.devices"))
            if devices is not None:
                cg["devices"] = devices
        path = linux.pop("cgroupsPath", None)
        if path is not None:
            _want(path, str, "linux.cgroupsPath")
            if not path.startswith("/"):
                self.lose("linux.cgroupsPath", f"`{path}` (systemd slice:prefix:name form): linx-spec takes a "
                                               "cgroup path")
            else:
                head, tail = os.path.split(path.rstrip("/"))
                # export writes PARENT/linx-NAME; any other path becomes the parent itself
                cg["parent"] = head if tail == f"linx-{self.spec.get('name')}" and head != "/" else path
        if cg:
            self.spec["cgroup"] = cg

    def _devices(self, rules: list) -> list[dict[str, Any]] | None:
        """linux.resources.devices (applied in order, as the v1 devices controller
        does) -> cgroup.devices, an allow-list after an implicit deny-all.  A deny-all
        rule starts the list (what comes before it is undone by it); an allow-all
        one ends the restriction; allows before any deny-all change nothing (a new
        cgroup allows all).  A deny of one device is exact when it takes a whole
        earlier allow back or touches none; anything else is a Loss."""
        allowed: list[dict[str, Any]] | None = None  # None: every device allowed
        for i, r in enumerate(rules):
            where = f"linux.resources.devices[{i}]"
            _want(r, dict, where)
            allow = _want(r.get("allow"), bool, where + ".allow")
            kind = _want(r.get("type", "a"), str, where + ".type") or "a"
            access = _want(r.get("access", "rwm"), str, where + ".access") or "rwm"
            if kind not in ("a", "b", "c"):
                raise _Bad(where + ".type", f"expected a, b or c, got {kind[:20]!r}")
            if not access or set(access) - set("rwm"):
                raise _Bad(where + ".access", f"expected letters of rwm, got {access[:20]!r}")
            numbers = []
            for key in ("major", "minor"):
                n = r.get(key)
                numbers.append("*" if n is None or n == -1 else _want(n, int, f"{where}.{key}"))
            if kind == "a":  # every device: the list starts again (deny) or ends (allow)
                if set(access) != set("rwm"):
                    self.lose(where, "an all-devices rule for only some of r, w, m")
                else:
                    allowed = None if allow else []
                continue
            rule: dict[str, Any] = {"type": kind, "access": "".join(c for c in "rwm" if c in access)}
            rule.update((k, n) for k, n in zip(("major", "minor"), numbers) if n != "*")
            if allow:
                if allowed is not None and rule not in allowed:
                    allowed.append(rule)
            elif allowed is None:
                self.lose(where, "a deny rule on an unrestricted device list (linx-spec's cgroup.devices is an "
                                 "allow-list: begin with a deny-all rule)")
            elif rule in allowed:
                allowed.remove(rule)
            elif any(_overlaps(a, rule) for a in allowed):
                self.lose(where, "a deny rule narrowing an earlier allow (linx-spec's cgroup.devices is an "
                                 "allow-list)")
            # else: it denies what is denied already: exact as it is
        return allowed

    def _sysctl(self, linux: dict) -> None:
        sysctl = self.obj(linux, "sysctl", "linux.sysctl")
        net = {}
        for key in list(sysctl):
            if key.startswith("net."):
                net[key] = _want(sysctl.pop(key), str, f"linux.sysctl.{key}")
        if net:
            self.spec["network"] = {"sysctls": net}
        for key in sysctl:
            self.lose(f"linux.sysctl.{key}", "linx-spec sets net.* sysctls of the workload's net namespace only")
        linux.pop("sysctl", None)

    def _seccomp(self, linux: dict, bounding: list[str] | None) -> None:
        if "seccomp" not in linux:
            return
        from ..seccomp.compile import native_arch
        from ..seccomp.oci import ALL_CAPS, ProfileError, parse_profile
        from ..spec.capabilities import parse_name

        data = _want(linux.pop("seccomp"), dict, "linux.seccomp")
        try:
            caps = ALL_CAPS if bounding is None else frozenset(parse_name(n) for n in bounding)
        except ValueError as exc:
            raise _Bad("process.capabilities.bounding", str(exc)) from None
        try:
            prof = parse_profile(data, "config.json", native=native_arch(), caps=caps)
        except ProfileError as exc:
            raise _Bad("linux.seccomp" + (f".{exc.where}" if exc.where else ""), str(exc).split(": ", 1)[-1]) from None
        for key in ("flags",):
            if data.get(key):
                self.lose(f"linux.seccomp.{key}", f"{data[key]}: linx-spec installs its filter without flags")
        known = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags", "listenerPath",
                 "listenerMetadata"}
        for key in data:
            if key not in known:
                self.lose(f"linux.seccomp.{key}", "no linx-spec counterpart")
        rules = []
        for e in prof.entries:
            rule: dict[str, Any] = {"syscalls": list(e.names), "action": e.action}
            if e.conds:
                rule["args"] = [{"index": i, "op": op, "value": v, **({"mask": m} if op == "masked_eq" else {})}
                                for i, op, v, m in e.conds]
            rules.append(rule)
        seccomp: dict[str, Any] = {"default": prof.default or "allow"}
        if prof.architectures:
            seccomp["architectures"] = list(prof.architectures)
        if rules:
            seccomp["rules"] = rules
        self.spec["seccomp"] = seccomp


def _options(opts: list) -> dict[str, str]:
    return {o.split("=", 1)[0]: o.split("=", 1)[1] for o in opts if isinstance(o, str) and "=" in o}


def _size(text: str, where: str) -> int:
    m = _SIZE_RE.match(text)
    if not m:
        raise _Bad(where, f"size `{text}`: expected bytes with an optional k, m or g")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _number(text: str, base: int, where: str) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise _Bad(where, f"`{text}` is not a number") from None


def _rlimit(value: int, name: str) -> int | str:
    if value >= 2**63 or value == RLIM_INFINITY:
        return "unlimited"
    if value < 0:
        raise _Bad(f"process.rlimits ({name})", f"a limit must not be negative, got {value}")
    if name == "rttime":
        return f"{value}us"
    return value


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two device rules (cgroup.devices dicts) name a common device?"""
    if "a" not in (a["type"], b["type"]) and a["type"] != b["type"]:
        return False
    return all(a.get(k) is None or b.get(k) is None or a[k] == b[k] for k in ("major", "minor"))


def _inverse(forward, value: int) -> int:
    """The weight (1..10000) whose conversion gives `value`, or the closest one."""
    lo, hi = 1, 10000
    while lo < hi:
        mid = (lo + hi) // 2
        if forward(mid) < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _leftovers(value: Any, where: str):
    """(JSON path, value) of everything not taken out of the config."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leftovers(v, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        if value:
            yield where, value
    elif value is not None and where:
        yield where, value
