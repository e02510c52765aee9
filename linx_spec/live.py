"""Converge a running workload to a new plan, live (the `reconcile` of the API):
observe -> diff -> converge -> Report.

    diff(target, plan) -> Report        what apply would change; writes nothing
    reconcile(target, plan, restart=False, revert_released=False) -> Report
    pause(name) / resume(name)          v1 freezer.state, else v2 cgroup.freeze

`target` is the name of a running detached workload (its state: state.py) or a
running `runner.Workload`.  Each field of the new plan is one of:

    live      cgroup limits (memory, cpu, cpuset, pids, io) on v1 and v2,
              rlimits (prlimit(2) on every process of the workload), and the
              network of its own netns: addresses, routes, net.* sysctls, a
              veth/macvlan/ipvlan added or removed.  Compared with what the
              kernel shows *now* (host/cgroup_live.py, host/network_live.py), so
              a value changed behind our back shows as drift and is restored
    restart   namespaces, program, env, user, capabilities, seccomp, mounts,
              rootfs, stdio, lifecycle, the cgroup hierarchies, and in the
              network: loopback, an interface's kind/MTU/MAC/state/host end, an
              `existing` device, anything of a rootless workload:
              refused (PlanError, exit 66) unless restart=True, which stops the
              old workload (its stop_grace honoured) and starts the new one
    release   a knob linx-spec set (last_applied) that left the spec: left as
              the kernel has it, or with revert_released written back to the
              value observed before linx-spec first set it (`before`)

Ownership is three-way, as Linx's last_applied: state.json keeps, per knob
linx-spec set, the value it wrote and the value it found before.  A knob the
spec never named is never read for change and never written.

Failure: each knob is written on its own (one failed write does not stop the
others; Report.failed names it, the CLI exits 70) and the workload is never
stopped by a failed live change.  The network changes depend on each other (a
route needs its gateway's address): the first one refused ends them, and what
this apply changed in the netns is undone, newest first, back to the observed
state; the network's ownership stays as it was.  Crash safety: the `before` values are
recorded *before* the first write, the kernel is written next, the new plan
and last_applied last; an apply SIGKILLed in between leaves the recorded plan
older than the kernel, and the next diff, which observes the kernel, shows the
remainder.
"""

from __future__ import annotations

import dataclasses
import os
import resource
from dataclasses import dataclass, field
from typing import Any

from .errors import LinxError, PlanError, StateError, StepError, oserror_to_step
from .plan.cgroup import CgroupPlan
from .plan.workload import Plan

# Plan fields that only a new workload can change (the clone flags, what the
# child did before execve, the supervisor's own settings).
RESTART_FIELDS = ("ns_new", "ns_join", "process", "idmap", "hostname", "domainname", "capabilities",
                  "no_new_privs", "seccomp", "mounts", "stdio", "lifecycle", "time_offsets_ns")
_FIELD_NAMES = {"ns_new": "namespaces", "ns_join": "namespaces (join)", "idmap": "user (idmap)",
                "mounts": "mounts (rootfs)", "no_new_privs": "no_new_privs", "time_offsets_ns": "time"}
# The supervisor's settings that change live (its thread re-reads plan.json
# on a reload): plan field -> the spec's words.
LIVE_LIFECYCLE = {"timeout": "lifecycle.timeout", "restart": "lifecycle.restart.policy",
                  "max_retries": "lifecycle.restart.max_retries", "backoff": "lifecycle.restart.backoff",
                  "max_backoff": "lifecycle.restart.max_backoff", "reconcile_interval": "lifecycle.reconcile.interval"}
SUPERVISOR = "the supervisor"
_MAX_KNOBS = 256
_MAX_TEXT = 4096


@dataclass
class Change:
    field: str  # the spec's words: cgroup.memory.max, rlimits.nofile, process.argv
    target: str  # the object: `memory.max in /sys/fs/cgroup/linx/linx-web-42`, `pid 42`
    observed: str
    wanted: str
    how: str  # live | restart | release | revert
    error: str = ""

    def line(self) -> str:
        text = f"{self.how:<8} {self.field}"
        if self.how != "restart" or self.observed or self.wanted:
            text += f": {self.observed} -> {self.wanted}"
        if self.target:
            text += f"  ({self.target})"
        if self.error:
            text += f"  FAILED: {self.error}"
        return text


@dataclass
class Report:
    name: str
    changes: list[Change] = field(default_factory=list)  # what differs (diff) / was attempted (apply)
    applied: list[Change] = field(default_factory=list)
    failed: list[Change] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)  # fields only a restart changes
    warnings: list[str] = field(default_factory=list)
    last_applied: dict[str, dict[str, str]] = field(default_factory=dict)
    restarted_pid: int | None = None  # apply --restart: the new workload's host pid

    @property
    def converged(self) -> bool:
        """Nothing left to do: no difference (diff), or every change made (apply)."""
        pending = [c for c in self.changes if c not in self.applied]
        return not pending and not self.failed and (not self.needs_restart or self.restarted_pid is not None)

    def text(self) -> str:
        if not self.changes and not self.needs_restart:
            return f"{self.name}: unchanged"
        lines = [c.line() for c in self.changes]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(f"{self.name}: {line}" for line in lines)


# --- the target ---------------------------------------------------------------------------------

@dataclass
class _Target:
    name: str
    pid: int
    plan: Plan
    state: Any = None  # StateDir of a detached workload
    workload: Any = None  # runner.Workload given by the caller

    def load_owned(self) -> dict[str, dict[str, str]] | None:
        raw = self.state.read().get("last_applied") if self.state is not None else \
            getattr(self.workload, "last_applied", None)
        if raw is None:
            return None
        # state.json is data another process wrote: checked before use.
        if (not isinstance(raw, dict) or len(raw) > _MAX_KNOBS or not all(
                isinstance(k, str) and isinstance(v, dict) and len(k) < _MAX_TEXT and all(
                    isinstance(x, str) and len(x) < _MAX_TEXT for x in (*v.keys(), *v.values()))
                and {"field", "value", "before"} <= set(v) for k, v in raw.items())):
            raise StateError(f"the last_applied record of `{self.name}` is malformed; "
                             f"`linx-spec apply --restart` starts it afresh")
        return raw

    def save(self, owned: dict[str, dict[str, str]], plan: Plan | None = None,
             host_ends: list[dict[str, Any]] | None = None) -> None:
        if self.state is not None:
            changes: dict[str, Any] = {"last_applied": owned}
            if plan is not None:
                self.state.save_plan(plan)
                changes["spec_hash"] = plan.spec_hash
            pid = self.pid
            from .state import HOST_ENDS

            def change(state: dict[str, Any]) -> None:
                state.update(changes)
                if host_ends:  # added to what the supervisor has of this workload's, in one locked update
                    kept = [e for e in state.get(HOST_ENDS) or () if isinstance(e, dict) and e.get("pid") == pid]
                    state[HOST_ENDS] = (kept + host_ends)[-_MAX_HOST_ENDS:]

            self.state.modify(change)
        else:
            self.workload.last_applied = owned
            if plan is not None:
                self.workload.plan = plan


def _target(name_or_workload: Any) -> _Target:
    if isinstance(name_or_workload, str):
        from .detach import live_pid
        from .state import StateDir

        pid = live_pid(name_or_workload)
        sd = StateDir.open(name_or_workload)
        return _Target(name_or_workload, pid, sd.load_plan(), state=sd)
    w = name_or_workload
    if not getattr(w, "pid", 0):
        raise StateError("the workload has not been spawned")
    return _Target(w.plan.name, w.pid, w.plan, workload=w)


# --- what differs ------------------------------------------------------------------------------

def _walk(prefix: str, old: Any, new: Any) -> list[str]:
    """Dotted names of the fields that differ, one level into dataclasses."""
    if old == new:
        return []
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        out = [f"{prefix}.{f.name}" for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
        return out or [prefix]
    return [prefix]


def restart_fields(old: Plan, new: Plan) -> list[str]:
    """The fields whose change needs a new workload."""
    out: list[str] = []
    for name in RESTART_FIELDS:
        was = getattr(old, name)
        if name == "lifecycle":  # what the supervisor changes live is compared in _compute
            # summary only concerns a foreground apply: never a reason to restart a running one
            was = dataclasses.replace(was, summary=new.lifecycle.summary,
                                      **{f: getattr(new.lifecycle, f) for f in LIVE_LIFECYCLE})
        out += _walk(_FIELD_NAMES.get(name, name), was, getattr(new, name))
    out += network_restart_fields(old.network, new.network)
    oc, nc = old.cgroup, new.cgroup
    if isinstance(oc, CgroupPlan) != isinstance(nc, CgroupPlan):
        out.append("cgroup")
    elif isinstance(oc, CgroupPlan) and isinstance(nc, CgroupPlan):
        # Live only within the cgroups that exist: every hierarchy of the new plan
        # must be one the workload is in (same parent), and on v2 its controllers
        # already enabled for the leaf.  On v1 a co-mounted hierarchy's leaf has
        # every file of its controllers, whichever the plan lists.
        have = {(h.version, h.mount, h.parent): set(h.controllers) for h in oc.hierarchies}
        for h in nc.hierarchies:
            ctrls = have.get((h.version, h.mount, h.parent))
            if ctrls is None or (h.version == 2 and not set(h.controllers) <= ctrls):
                out.append(f"cgroup ({h.label} at {h.mount}: a cgroup or controller the running workload lacks)")
        # The v1 devices list is written once (devices.allow/deny cannot be read back as written).
        if ([h.device_allow for h in oc.hierarchies if h.device_allow is not None]
                != [h.device_allow for h in nc.hierarchies if h.device_allow is not None]):
            out.append("cgroup.devices")
    return out


@dataclass
class _Work:
    """A computed diff and what converging it needs."""

    report: Report
    writes: list[tuple[Change, Any, str]]  # (change, knob, value to write)
    rlimits: list[tuple[Change, Any]]
    owned: dict[str, dict[str, str]]  # last_applied after a full success
    intents: dict[str, dict[str, str]]  # knobs set for the first time: their `before`, recorded first
    fs: Any
    pids: list[int]
    net_ops: list[tuple[Change, Any]] = field(default_factory=list)  # (change, fn(Session)), in order
    links_added: list[tuple[Change, Any, int]] = field(default_factory=list)  # (change, InterfacePlan, n)


def _fs(fs: Any):
    from .host.cgroup import CgroupFs

    return fs or CgroupFs()


def _initial_owned(t: _Target, knobs_now: list, fs: Any) -> dict[str, dict[str, str]]:
    """Before any live apply, linx-spec owns what the start wrote; `before` is what a new
    cgroup held (and for rlimits, what the runner passes on)."""
    from .host.cgroup_live import fresh_value

    owned = {}
    for k in knobs_now:
        owned[k.key] = {"field": k.field, "file": k.file, "value": k.value, "before": fresh_value(k, fs)}
    for lim in t.plan.rlimits.limits if t.plan.rlimits else ():
        soft, hard = resource.getrlimit(lim.resource)
        owned[f"rlimit:{lim.name}"] = {"field": f"rlimits.{lim.name}", "file": str(lim.resource),
                                       "value": f"{lim.soft} {lim.hard}", "before": f"{soft} {hard}"}
    return owned


def _workload_pids(t: _Target, leaves: dict[str, str], fs: Any) -> list[int]:
    for leaf in leaves.values():
        pids = sorted(fs.procs(leaf))
        if pids:
            return pids
    return [t.pid]


def _show_limit(value: int) -> str:
    from .plan.rlimits import show

    return show(value)


def _compute(t: _Target, new: Plan, fs: Any, revert_released: bool) -> _Work:
    from .host import cgroup_live as L
    from .host.cgroup import human_bytes

    fs = _fs(fs)
    report = Report(t.name)
    report.needs_restart = restart_fields(t.plan, new)
    report.changes += [Change(f, "", "", "", "restart") for f in report.needs_restart]
    leaves: dict[str, str] = {}
    if isinstance(t.plan.cgroup, CgroupPlan):
        leaves = L.leaves_of(t.pid, t.plan.cgroup, t.name)
    old_knobs = L.knobs(t.plan.cgroup, leaves) if isinstance(t.plan.cgroup, CgroupPlan) else []
    owned = t.load_owned()
    if owned is None:
        owned = _initial_owned(t, old_knobs, fs)
    _seed_network(t, owned)
    new_owned = dict(owned)
    intents: dict[str, dict[str, str]] = {}
    writes: list[tuple[Change, Any, str]] = []
    want = L.knobs(new.cgroup, leaves) if isinstance(new.cgroup, CgroupPlan) else []
    for k in want:
        observed = L.observe(k, fs)
        entry = owned.get(k.key)
        before = entry["before"] if entry else (observed or "").strip()
        new_owned[k.key] = {"field": k.field, "file": k.file, "value": k.value, "before": before}
        if entry is None:
            intents[k.key] = new_owned[k.key]
        if L.same(k.file, observed, k.value):
            continue
        c = Change(k.field, f"{k.file} in {k.leaf}", L.shown(k.file, observed), L.shown(k.file, k.value), "live")
        report.changes.append(c)
        writes.append((c, k, k.value))
        used = L.usage(k, fs)
        if used is not None and k.file in L.USAGE_FILE and k.value != "max" and int(k.value) < used:
            report.warnings.append(f"{k.field} {human_bytes(int(k.value))} is below the current usage "
                                   f"{human_bytes(used)}: the kernel reclaims, and may OOM-kill")
    # Released: owned knobs the new spec no longer names.
    wanted_keys = {k.key for k in want}
    by_key = {k.key: k for k in old_knobs}
    for key, entry in owned.items():
        if key.startswith("rlimit:") or key in wanted_keys:
            continue
        del new_owned[key]
        k = by_key.get(key)
        if k is None:  # no longer in a leaf of this workload (a restart since): forget it
            continue
        observed = L.observe(k, fs)
        if revert_released and not L.same(k.file, observed, entry["before"]):
            c = Change(entry["field"], f"{k.file} in {k.leaf}", L.shown(k.file, observed),
                       L.shown(k.file, entry["before"]), "revert")
            writes.append((c, k, entry["before"]))
        else:
            c = Change(entry["field"], f"{k.file} in {k.leaf}", L.shown(k.file, observed), "(left as is)", "release")
        report.changes.append(c)
    # rlimits of the running processes.
    rl: list[tuple[Change, Any]] = []
    new_limits = {lim.name: lim for lim in (new.rlimits.limits if new.rlimits else ())}
    for name, lim in new_limits.items():
        key = f"rlimit:{name}"
        try:
            soft, hard = resource.prlimit(t.pid, lim.resource)
        except OSError:
            continue  # gone: the next step (or the caller) notices
        entry = owned.get(key)
        new_owned[key] = {"field": f"rlimits.{name}", "file": str(lim.resource), "value": f"{lim.soft} {lim.hard}",
                          "before": entry["before"] if entry else f"{soft} {hard}"}
        if entry is None:
            intents[key] = new_owned[key]
        if (soft, hard) != (lim.soft, lim.hard):
            c = Change(f"rlimits.{name}", f"pid {t.pid} and its processes",
                       f"{_show_limit(soft)}:{_show_limit(hard)}", f"{_show_limit(lim.soft)}:{_show_limit(lim.hard)}",
                       "live")
            report.changes.append(c)
            rl.append((c, lim))
    for key in [k for k in owned if k.startswith("rlimit:") and k[7:] not in new_limits]:
        del new_owned[key]
        report.changes.append(Change(owned[key]["field"], f"pid {t.pid}", "", "(left as is)", "release"))
    for f, words in LIVE_LIFECYCLE.items():
        was, wanted = getattr(t.plan.lifecycle, f), getattr(new.lifecycle, f)
        if was != wanted:
            report.changes.append(Change(words, SUPERVISOR, _show_setting(was), _show_setting(wanted), "live"))
    links_added: list[tuple[Change, Any, int]] = []
    net_ops = _network(t, new, owned, new_owned, intents, report, revert_released, links_added)
    report.last_applied = owned
    return _Work(report, writes, rl, new_owned, intents, fs, _workload_pids(t, leaves, fs), net_ops, links_added)


# --- network: addresses, routes, sysctls, interfaces of the workload's netns ---------------------
# Keys of last_applied: net:link:IFNAME, net:addr:IFNAME:ADDRESS, net:route:ROUTE_KEY,
# net:sysctl:PATH.  `before` is ABSENT for an object linx-spec made (a revert deletes it),
# `present` for one it found as the spec wants it (never deleted), REPLACED for a route
# it replaced (`was` keeps that route: a revert puts it back), a sysctl's value for a sysctl.
ABSENT = "absent"
REPLACED = "replaced"
_LIVE_KINDS = ("veth", "macvlan", "ipvlan")  # made live; an `existing` device is taken only at start
_SYSCTL_ROOT = "/proc/sys/net/"
# The order of a network convergence: conf.default.* before the interfaces that copy
# it, interfaces before their own sysctls and routes, addresses before the routes whose
# gateway they reach, deletions of interfaces last (they have no undo).
_EARLY_SYSCTL, _ADD_LINK, _SYSCTL, _DEL_ADDR, _ADD_ADDR, _DEL_ROUTE, _SET_ROUTE, _DEL_LINK = range(8)


def network_restart_fields(old: Any, new: Any) -> list[str]:
    """The network fields only a new workload can change; the rest (addresses, routes,
    sysctls, a veth, macvlan or ipvlan added or removed) is live."""
    if old == new:
        return []
    if old is None or new is None or old.rootless or new.rootless:
        return _walk("network", old, new)  # no netns of its own, or one entered without CAP_NET_ADMIN
    out = ["network.loopback"] if old.loopback != new.loopback else []
    before = {i.name: i for i in old.interfaces}
    after = {i.name: i for i in new.interfaces}
    for name, i in after.items():
        was = before.get(name)
        if was is None:
            if i.kind not in _LIVE_KINDS:
                out.append(f"network.interfaces.{name} (an `existing` device is taken only at start)")
        elif dataclasses.replace(was, addresses=()) != dataclasses.replace(i, addresses=()):
            out.append(f"network.interfaces.{name} (its type, MTU, MAC, state or host end)")
    out += [f"network.interfaces.{name} (an `existing` device goes back only when the workload ends)"
            for name, i in before.items() if name not in after and i.kind not in _LIVE_KINDS]
    return out


def _route_key(r: Any) -> str:
    from .host.network_live import route_key

    return "net:route:" + route_key(r.family, r.dst, r.dst_len, r.metric)


_ROUTE_INTS = {"family": (0, 255), "table": (0, 2**32 - 1), "proto": (0, 255), "scope": (0, 255),
               "type": (0, 255), "flags": (0, 2**32 - 1), "tos": (0, 255), "dst_len": (0, 128)}
_ROUTE_OPTIONAL = {"priority": (0, 2**32 - 1), "pref": (0, 255)}
_IFNAMSIZ = 16


def route_record(route: tuple[Any, str]) -> str:
    """A route linx-spec replaced (as observed, with its device), as last_applied keeps it."""
    import json

    state, dev = route
    return json.dumps({**dataclasses.asdict(state), "dev": dev}, sort_keys=True)


def route_from_record(text: str) -> tuple[Any, str] | None:
    """route_record's text read back from state.json, checked field by field before
    it becomes a netlink request: a unicast route of the main table, addresses of
    its family, a device name the kernel could have.  None when it is not that."""
    import ipaddress
    import json
    import socket

    from .host.netlink import RT_TABLE_MAIN, RTN_UNICAST
    from .plan.network import RouteState

    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or set(raw) != {f.name for f in dataclasses.fields(RouteState)} | {"dev"}:
        return None

    def number(key: str, bounds: tuple[int, int], optional: bool = False) -> bool:
        v = raw[key]
        return (optional and v is None) or (type(v) is int and bounds[0] <= v <= bounds[1])

    if not (all(number(k, b) for k, b in _ROUTE_INTS.items()) and all(number(k, b, True)
                                                                        for k, b in _ROUTE_OPTIONAL.items())):
        return None
    family, dev = raw["family"], raw.pop("dev")
    if family not in (socket.AF_INET, socket.AF_INET6) or raw["table"] != RT_TABLE_MAIN or raw["type"] != RTN_UNICAST \
            or raw["dst_len"] > (32 if family == socket.AF_INET else 128):
        return None
    if not (isinstance(dev, str) and 0 < len(dev) < _IFNAMSIZ and dev.isprintable() and "/" not in dev
            and not any(c.isspace() for c in dev) and dev not in (".", "..")):
        return None
    for key in ("dst", "gateway", "prefsrc"):
        v = raw[key]
        if v is None:
            continue
        try:
            if not isinstance(v, str) or ipaddress.ip_address(v).version != (4 if family == socket.AF_INET else 6):
                return None
        except ValueError:
            return None
    if (raw["dst"] is None) != (raw["dst_len"] == 0):
        return None
    return RouteState(**raw), dev


# The host ends of veths a live apply added, kept in state.json (HOST_ENDS) beside last_applied:
# the supervisor deletes them when the workload ends, as it deletes those made at
# start (its undo list does not have these).  Else a netns that outlives the workload
# (an `ip netns attach`, a process that joined it) would keep them, with their host
# addresses, which the next start of the same spec then finds taken.
_MAX_HOST_ENDS = 64
_MAX_INDEX = 2**31 - 1


def _host_ends(t: _Target, added: list[tuple[Any, int]]) -> list[dict[str, Any]]:
    """Records of the veth host ends just added to workload t (name, ifindex on the
    host, host addresses, the workload's pid)."""
    out: list[dict[str, Any]] = []
    veths = [(itf, n) for itf, n in added if itf.kind == "veth" and itf.host is not None]
    if t.state is None or not veths:
        return out
    from .host.netlink import Rtnl, lookup

    with Rtnl.here() as nl:
        for itf, n in veths:
            name = itf.host.ifname(t.pid, n)
            try:
                index = lookup(nl, name)
            except OSError:
                index = None
            if index is not None:
                out.append({"name": name, "index": index, "pid": t.pid,
                            "addresses": sorted(a.address for a in itf.host.addresses)})
    return out


def host_ends_of(state: dict[str, Any], pid: int, plan: Plan) -> list[tuple[str, int, frozenset[str]]]:
    """The recorded host ends of workload `pid` (the supervisor's, once it ended),
    checked as data: a name it could have (lx<pid>v<n>, or a veth's host.name in its
    plan), an ifindex, addresses.  The delete itself still checks that the ifindex
    names that interface."""
    import ipaddress
    import re

    from .state import HOST_ENDS

    net = plan.network
    named = {itf.host.name for itf in (net.interfaces if net else ()) if itf.kind == "veth" and itf.host
             and itf.host.name}
    raw = state.get(HOST_ENDS)
    out = []
    for e in raw[:_MAX_HOST_ENDS] if isinstance(raw, list) else ():
        if not (isinstance(e, dict) and e.get("pid") == pid and type(e.get("index")) is int
                and 0 < e["index"] <= _MAX_INDEX and isinstance(e.get("name"), str)
                and (re.fullmatch(rf"lx{pid}v\d{{1,4}}", e["name"]) or e["name"] in named)
                and isinstance(e.get("addresses"), list) and len(e["addresses"]) <= _MAX_HOST_ENDS
                and all(isinstance(a, str) and len(a) < 64 for a in e["addresses"])):
            continue
        try:
            for a in e["addresses"]:
                ipaddress.ip_address(a)
        except ValueError:
            continue
        out.append((e["name"], e["index"], frozenset(e["addresses"])))
    return out


def _seed_network(t: _Target, owned: dict[str, dict[str, str]]) -> None:
    """Before the first live change of its network, linx-spec owns what the start made
    (the plan last converged): objects it created (`before` absent) and the sysctls it
    wrote (`before`: what a new netns holds)."""
    net = t.plan.network
    if net is None or net.rootless or any(k.startswith("net:") for k in owned):
        return
    from .host.network_live import address_key, fresh_sysctl

    for itf in net.interfaces:
        owned[f"net:link:{itf.name}"] = {"field": f"network.interfaces.{itf.name}", "file": itf.name,
                                         "value": itf.kind, "before": ABSENT}
        for a in itf.addresses:
            ak = address_key(str(a))
            owned[f"net:addr:{itf.name}:{ak}"] = {"field": f"network.interfaces.{itf.name}.addresses",
                                                  "file": itf.name, "value": ak, "before": ABSENT}
    for r in net.routes:
        owned[_route_key(r)] = {"field": "network.routes", "file": r.dev, "value": str(r), "before": ABSENT}
    for s in net.sysctls:
        owned[f"net:sysctl:{s.path}"] = {"field": f"network.sysctls.{s.key}", "file": s.path, "value": s.value,
                                         "before": fresh_sysctl(s.path) or ""}


def _sysctl_path_ok(path: str) -> bool:
    """A path read back from state.json, before it is written to: a net.* sysctl, no `..`."""
    return path.startswith(_SYSCTL_ROOT) and ".." not in path.split("/") and "\0" not in path


def _network(t: _Target, new: Plan, owned: dict[str, dict[str, str]], new_owned: dict[str, dict[str, str]],
             intents: dict[str, dict[str, str]], report: Report, revert_released: bool,
             links_added: list[tuple[Change, Any, int]]) -> list[tuple[Change, Any]]:
    """Observe the workload's netns, diff it against the new plan and last_applied; ->
    the changes, in the order they are made (each a Change and fn(Session))."""
    net, old_net = new.network, t.plan.network
    if net is None or old_net is None or any(f.startswith("network") for f in report.needs_restart):
        return []
    mine = {k: v for k, v in owned.items() if k.startswith("net:")}
    if not (net.interfaces or net.routes or net.sysctls or mine):
        return []  # nothing wanted, nothing owned: the netns is not even entered
    from .host import network_live as N

    paths = tuple(dict.fromkeys([s.path for s in net.sysctls] + [
        v["file"] for k, v in mine.items() if k.startswith("net:sysctl:") and _sysctl_path_ok(v["file"])]))
    try:
        seen = N.observe(t.pid, paths)
    except OSError as exc:
        raise oserror_to_step("network", "host", exc) from None
    where = f"the netns of pid {t.pid}"
    ops: list[tuple[int, Change, Any]] = []

    def own(key: str, entry: dict[str, str]) -> None:
        prior = owned.get(key)
        if prior is not None:
            entry["before"] = prior["before"]
            entry.pop("was", None)
            if "was" in prior:
                entry["was"] = prior["was"]
        new_owned[key] = entry
        if prior is None:
            intents[key] = entry

    for s in net.sysctls:
        cur = seen.sysctls.get(s.path)
        own(f"net:sysctl:{s.path}", {"field": f"network.sysctls.{s.key}", "file": s.path, "value": s.value,
                                     "before": cur or ""})
        if cur is None or cur.split() != s.value.split():
            c = Change(f"network.sysctls.{s.key}", f"{s.path} in {where}", "(none)" if cur is None else cur, s.value,
                       "live")
            ops.append((_EARLY_SYSCTL if s.early else _SYSCTL, c,
                        lambda S, s=s, cur=cur: S.write_sysctl(s.key, s.path, s.value, cur)))
    for n, itf in enumerate(net.interfaces):
        present = seen.addresses.get(itf.name, {})
        exists = itf.name in seen.links
        own(f"net:link:{itf.name}", {"field": f"network.interfaces.{itf.name}", "file": itf.name, "value": itf.kind,
                                     "before": "present" if exists else ABSENT})
        for a in itf.addresses:
            ak = N.address_key(str(a))
            own(f"net:addr:{itf.name}:{ak}", {"field": f"network.interfaces.{itf.name}.addresses", "file": itf.name,
                                              "value": ak, "before": "present" if ak in present else ABSENT})
            if exists and ak not in present:
                c = Change(f"network.interfaces.{itf.name}.addresses", f"{itf.name} in {where}", ABSENT, ak, "live")
                ops.append((_ADD_ADDR, c, lambda S, name=itf.name, a=a: S.add_address(name, a)))
        if exists:
            continue
        if itf.kind not in _LIVE_KINDS:
            report.needs_restart.append(f"network.interfaces.{itf.name} (gone from the workload; an `existing` "
                                        "device is taken only at start)")
            continue
        words = itf.kind + (f", host end {itf.host.ifname(t.pid, n)}" if itf.host else "") + \
            (f" on {itf.parent}" if itf.parent else "") + "".join(f", {a}" for a in itf.addresses)
        c = Change(f"network.interfaces.{itf.name}", where, ABSENT, words, "live")
        ops.append((_ADD_LINK, c, lambda S, itf=itf, n=n: S.add_interface(itf, n)))
        links_added.append((c, itf, n))
    for r in net.routes:
        key = _route_key(r)
        cur = seen.routes.get(key[len("net:route:"):])
        same = cur is not None and cur[1] == r.dev and N.same_gateway(cur[0].gateway, r.gateway)
        entry = {"field": "network.routes", "file": r.dev, "value": str(r),
                 "before": ABSENT if cur is None else "present" if same else REPLACED}
        if cur is not None and not same:
            entry["was"] = route_record(cur)  # what --revert-released puts back
        own(key, entry)
        if same:
            continue
        was = ABSENT if cur is None else f"{cur[0]} dev {cur[1]}"
        c = Change("network.routes", f"main table of {where}", was, str(r), "live")
        ops.append((_SET_ROUTE, c, lambda S, r=r, cur=cur: S.set_route(r, cur)))
    ops += _released_network(t, mine, new_owned, seen, revert_released, where)
    ops.sort(key=lambda op: op[0])  # stable: the spec's order within a phase
    report.changes += [c for _phase, c, _fn in ops]
    return [(c, fn) for _phase, c, fn in ops if fn is not None]


def _released_network(t: _Target, mine: dict[str, dict[str, str]], new_owned: dict[str, dict[str, str]], seen: Any,
                      revert: bool, where: str) -> list[tuple[int, Change, Any]]:
    """Owned network objects the new spec no longer names: left as they are, or with
    --revert-released put back as they were before linx-spec (made: deleted; a
    sysctl: its old value).  fn None: a release, nothing to do."""
    from .host.network_live import address_key

    ops: list[tuple[int, Change, Any]] = []
    released = {k: v for k, v in mine.items() if k not in new_owned}
    gone_links = {v["file"] for k, v in released.items() if k.startswith("net:link:") and revert
                  and v["before"] == ABSENT and v["file"] in seen.links}
    for key, entry in released.items():
        kind = key.split(":", 2)[1]
        name, value, before = entry["file"], entry["value"], entry["before"]
        undo = revert and before == ABSENT
        if kind == "link":
            if name not in seen.links:
                continue
            phase, shown, fn = _DEL_LINK, entry["value"], (lambda S, name=name: S.delete_interface(name))
        elif kind == "addr":
            try:
                state = seen.addresses.get(name, {}).get(address_key(value))
            except ValueError:
                continue  # not an address: the record is not ours to act on
            if state is None or name in gone_links:
                continue  # gone already, or goes with its interface
            phase, shown, fn = _DEL_ADDR, value, (lambda S, name=name, st=state: S.delete_address(name, st))
        elif kind == "route":
            cur = seen.routes.get(key[len("net:route:"):])
            if cur is None or cur[1] in gone_links:
                continue
            was = route_from_record(entry.get("was", "")) if before == REPLACED else None
            if revert and was is not None and was[1] in seen.links and was[1] not in gone_links:
                # It replaced a route of the same destination and metric: that one comes back.
                ops.append((_SET_ROUTE, Change(entry["field"], f"main table of {where}", f"{cur[0]} dev {cur[1]}",
                                               f"{was[0]} dev {was[1]}", "revert"),
                            lambda S, was=was, cur=cur: S.restore_route(was, cur)))
                continue
            phase, shown, fn = _DEL_ROUTE, value, (lambda S, cur=cur: S.delete_route(cur))
        elif kind == "sysctl" and _sysctl_path_ok(name):
            cur = seen.sysctls.get(name)
            if cur is None:
                continue
            undo = revert and before != "" and cur.split() != before.split()
            phase, shown = _SYSCTL, cur
            fn = (lambda S, p=name, f=entry["field"], b=before, c=cur: S.write_sysctl(f, p, b, c))
        else:
            continue
        target = f"main table of {where}" if kind == "route" else f"{name} in {where}"
        if undo:
            ops.append((phase, Change(entry["field"], target, shown, before if kind == "sysctl" else ABSENT, "revert"),
                        fn))
        else:
            ops.append((phase, Change(entry["field"], target, shown, "(left as is)", "release"), None))
    return ops


def _converge_network(t: _Target, ops: list[tuple[Change, Any]], report: Report,
                      owned: dict[str, dict[str, str]]) -> None:
    """Make the network changes in order; at the first failure undo what this apply
    changed in the netns (newest first), so it is as observed before, and keep the
    ownership it had.  The workload is never stopped."""
    from .host.network_live import Session

    with Session(t.pid) as session:
        for n, (c, fn) in enumerate(ops):
            try:
                fn(session)
            except OSError as exc:
                c.error = str(oserror_to_step("network", "host", exc))
                report.failed.append(c)
                done = [d for d, _fn in ops[:n]]
                stuck = session.rollback()
                report.applied = [a for a in report.applied if a not in done]
                report.warnings.append(f"network: {c.field} failed; the workload's network was rolled back to the "
                                       f"state observed before this apply ({len(done)} change(s) undone, "
                                       f"{len(ops) - n - 1} not attempted)")
                report.warnings += [f"network: could not roll back: {w}" for w in stuck]
                for key in [k for k in owned if k.startswith("net:")]:
                    del owned[key]
                owned.update({k: v for k, v in report.last_applied.items() if k.startswith("net:")})
                return
            report.applied.append(c)


def _show_setting(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}s" if isinstance(value, float) else str(value)


# --- the API --------------------------------------------------------------------------------------

def diff(name_or_workload: Any, plan: Plan, *, fs: Any = None, revert_released: bool = False) -> Report:
    """What reconcile() would change, against what the kernel shows now.  Writes nothing."""
    return _compute(_target(name_or_workload), plan, fs, revert_released).report


def reconcile(name_or_workload: Any, plan: Plan, *, restart: bool = False, revert_released: bool = False,
              fs: Any = None) -> Report:
    """Converge the running workload to `plan` (module docstring).  Raises PlanError
    (nothing touched) when a field needs a restart and restart is False.  A detached
    workload's is done under its apply lock (state.py): another live apply of it, or
    its supervisor's reconcile tick, waits or skips, so that neither records its plan
    and last_applied over a convergence it did not see."""
    if not isinstance(name_or_workload, str):
        return _reconcile(_target(name_or_workload), plan, restart, revert_released, fs)
    from .state import StateDir

    with StateDir.open(name_or_workload).applying():
        return _reconcile(_target(name_or_workload), plan, restart, revert_released, fs)


def reconcile_saved(name: str) -> Report | None:
    """lifecycle.reconcile's tick (the supervisor): restore the plan last applied,
    read under the apply lock; None when a live apply holds it (that apply converges)."""
    from .state import StateDir

    sd = StateDir.open(name)
    with sd.applying(wait=False) as held:
        if held is None:
            return None
        return _reconcile(_target(name), sd.load_plan(), False, False, None)


def _reconcile(t: _Target, plan: Plan, restart: bool, revert_released: bool, fs: Any) -> Report:
    work = _compute(t, plan, fs, revert_released)
    report = work.report
    if report.needs_restart:
        if not restart:
            raise PlanError("these fields cannot change while the workload runs: " + ", ".join(report.needs_restart),
                            f"apply with --restart to stop `{t.name}` (stop_grace {t.plan.lifecycle.stop_grace:g}s) "
                            "and start the new one", "")
        return _restart(t, plan, report)
    if not report.changes:
        return report  # unchanged: nothing written, not even the state
    if work.intents:
        # `before` first: an apply killed after its first write still knows what to revert to.
        t.save({**work.report.last_applied, **work.intents})
    owned = dict(work.owned)
    for c, k, value in work.writes:
        from .host.cgroup_live import write

        try:
            write(k, value, work.fs)
        except OSError as exc:
            c.error = str(oserror_to_step("cgroup", "host", exc))
            report.failed.append(c)
            prior = report.last_applied.get(k.key)
            if prior is not None:
                owned[k.key] = prior  # still ours, at the value we last set
            else:
                owned.pop(k.key, None)
            continue
        report.applied.append(c)
    for c, lim in work.rlimits:
        try:
            for pid in work.pids:
                try:
                    resource.prlimit(pid, lim.resource, (lim.soft, lim.hard))
                except ProcessLookupError:
                    pass  # ended meanwhile
        except OSError as exc:
            c.error = str(StepError("rlimits", "host", exc.errno or 0, f"prlimit {lim.name}", c.target))
            report.failed.append(c)
            continue
        report.applied.append(c)
    if work.net_ops:
        _converge_network(t, work.net_ops, report, owned)
    host_ends = _host_ends(t, [(itf, n) for c, itf, n in work.links_added if c in report.applied])
    report.applied += [c for c in report.changes if c.how == "release"]
    supervisor = [c for c in report.changes if c.target == SUPERVISOR]
    if report.failed:  # the plan is not saved: the supervisor keeps its settings too
        for c in supervisor:
            c.error = "not applied: another change failed"
        report.failed += supervisor
    t.save(owned, plan if not report.failed else None, host_ends)
    report.last_applied = owned
    if supervisor and not report.failed:
        if t.state is not None:
            from .detach import notify_reload

            notify_reload(t.name)  # its thread reads plan.json again
        report.applied += supervisor
    return report


def _restart(t: _Target, plan: Plan, report: Report) -> Report:
    if t.state is None:
        raise PlanError("a restart is needed, and only a detached workload (by name) is restarted by apply",
                        "stop the workload and run the new plan", "")
    from .detach import start_detached, stop

    stop(t.name)  # TERM, its stop_grace, KILL; the supervisor does not restart it
    t.state.remove()
    _name, pid = start_detached(plan)
    report.restarted_pid = pid
    report.applied = list(report.changes)
    return report


def _freeze(name: str, on: bool) -> str:
    from .host.cgroup_live import set_frozen

    t = _target(name)
    if not isinstance(t.plan.cgroup, CgroupPlan):
        raise StateError(f"`{name}` has no cgroup of its own to freeze")
    try:
        set_frozen(t.pid, t.plan.cgroup, t.name, on)
    except OSError as exc:
        raise oserror_to_step("pause" if on else "resume", "host", exc) from None
    t.state.update(paused=on)
    return "paused" if on else "resumed"


def status_lines(name: str) -> list[str]:
    """For `status NAME`: paused or not, and drift: the limits the kernel holds now
    that differ from the plan last applied."""
    from .state import StateDir

    sd = StateDir.open(name)
    view = sd.view()
    if view.status != "running":
        return []
    lines = ["paused:   yes (linx-spec resume NAME)"] if view.state.get("paused") else []
    try:
        report = diff(name, sd.load_plan())
    except LinxError as exc:
        return lines + [f"drift:    unknown ({exc})"]
    found = [c for c in report.changes if c.how == "live"]
    if not found:
        return lines + ["drift:    none"]
    return lines + [f"drift:    {c.field}: kernel has {c.observed}, applied {c.wanted} ({c.target})" for c in found]


def pause(name: str) -> str:
    """Freeze every process of the detached workload `name` (v1 freezer, v2 cgroup.freeze)."""
    return _freeze(name, True)


def resume(name: str) -> str:
    """Thaw what pause() froze."""
    return _freeze(name, False)


def running(name: str) -> bool:
    """A detached workload of that name runs now (apply then converges it).  Cheap:
    a stat before any import when there is none."""
    from . import rundir

    if not os.path.exists(os.path.join(rundir.root_path(), name, "state.json")):
        return False
    from .state import StateDir

    try:
        return StateDir.open(name).view().status == "running"
    except StateError:
        return False


__all__ = ["Change", "Report", "diff", "reconcile", "reconcile_saved", "pause", "resume", "restart_fields", "running", "status_lines"]
