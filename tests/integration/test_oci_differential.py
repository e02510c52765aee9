"""The runc differential test (issue 17): the same spec run by `linx-spec apply` and,
exported with `linx-spec export oci`, by Debian's runc; a probe inside prints what
the workload observes, and both sides must print the same.

The probe is a busybox shell script in a rootfs built here (busybox-static, the
same directory for both sides, as `mounts.rootfs` and `root.path`).  It prints:
the ids, groups, five capability sets, no_new_privs and seccomp mode from its
own /proc/self/status; the errno of syscalls a filter may refuse (mkdir,
sethostname, chdir); /proc/self/limits and oom_score_adj; which namespaces are
new (inode compared with the host's); the id maps; its mounts with their flags;
hostname and domainname; its cgroup's limits (when /sys/fs/cgroup is bound in);
its open fds, umask, cwd and environment.  One spec per section varies what that
section says; the base spec is compared too.  A difference fails the test unless
KNOWN_DIFFERENCES names it with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.root

BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static: one static binary, no libraries to copy
APPLETS = ("sh", "cat", "grep", "awk", "ls", "env", "sort", "hostname", "mkdir", "rmdir", "readlink", "cut", "pwd")

PROBE = r"""
echo "== status"
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
echo "== limits"
cat /proc/self/limits
echo "== oom_score_adj"
cat /proc/self/oom_score_adj
echo "== namespaces"
for n in user pid net mnt uts ipc cgroup time; do
  here=$(readlink /proc/self/ns/$n); host=$(grep "^$n " /host-ns | cut -d' ' -f2)
  if [ "$here" = "$host" ]; then echo "$n host"; else echo "$n new"; fi
done
echo "== idmap"
cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups
echo "== mounts"
awk '{ split($0, a, " - "); split(a[2], b, " "); o = ""; n = split($6, f, ",");
       for (i = 1; i <= n; i++) if (f[i] ~ /^(ro|rw|nosuid|nodev|noexec)$/) o = o "," f[i];
       s = ""; m = split(b[3], g, ",");
       for (i = 1; i <= m; i++) if (g[i] ~ /^(size|mode|uid|gid)=/) s = s "," g[i];
       print $5, b[1], substr(o, 2), substr(s, 2) }' /proc/self/mountinfo | sort
echo "== hostname"
hostname
cat /proc/sys/kernel/domainname
echo "== cgroup"
if [ -d /sys/fs/cgroup/memory ]; then
  while IFS=: read -r num ctrl path; do
    case $ctrl in
      memory) files="memory.limit_in_bytes memory.memsw.limit_in_bytes";;
      cpu|cpu,cpuacct) files="cpu.cfs_quota_us cpu.cfs_period_us cpu.shares";;
      pids) files="pids.max";;
      *) files="";;
    esac
    for f in $files; do echo "$f $(cat /sys/fs/cgroup/$ctrl$path/$f)"; done
  done < /proc/self/cgroup
fi
echo "== fds"
ls /proc/self/fd
echo "== umask"
umask
echo "== cwd"
pwd
echo "== env"
env | sort
echo "== syscalls"
mkdir /tmp/probe-dir 2>&1 && rmdir /tmp/probe-dir && echo "mkdir ok"
hostname probe-renamed 2>&1 && echo "sethostname ok"
(cd /tmp && echo "chdir ok") 2>&1
exit 0
"""

BASE = """version: 1
name: @NAME@
namespaces: [pid, mount, uts, ipc, net]
mounts:
  rootfs: @ROOTFS@
  entries:
    - {type: proc}
    - {type: dev}
    - {type: tmpfs, target: /tmp}
process:
  command: [/bin/sh, /probe.sh]
"""

# section -> YAML replacing or adding top-level keys of BASE
SECTIONS = {
    "base": "",
    "ids": "process:\n  command: [/bin/sh, /probe.sh]\n  user: {uid: 1000, gid: 1000, groups: [10, 20]}\n",
    "capabilities": "process:\n  command: [/bin/sh, /probe.sh]\n  user: {uid: 1000, gid: 1000}\n"
                    "capabilities: {keep: [net_bind_service, kill, sys_chroot]}\n",
    "capabilities_root": "capabilities:\n  bounding: [chown, kill, setpcap, sys_admin, net_bind_service]\n"
                         "  inheritable: [kill]\n  ambient: [kill]\n",
    "no_new_privs": "no_new_privs: false\n",
    "seccomp": "seccomp:\n  default: allow\n  rules:\n"
               "    - {syscalls: [mkdir, mkdirat], action: errno EROFS}\n"
               "    - {syscalls: [sethostname], action: errno ETXTBSY}\n"
               "    - {syscalls: [chdir], action: errno ENOTDIR}\n",
    "rlimits": "rlimits:\n  nofile: {soft: 100, hard: 200}\n  core: 0\n  nproc: 50\n  fsize: 1Mi\n"
               "  stack: 8Mi\n  cpu: 1h\n  oom_score_adj: 300\n",
    "namespaces": "namespaces: [user, pid, mount, uts, ipc, net, cgroup]\n"
                  "idmap:\n  uid: [{container: 0, host: 100000, count: 65536}]\n"
                  "  gid: [{container: 0, host: 100000, count: 65536}]\n",
    "mounts": "mounts:\n  rootfs: @ROOTFS@\n  rootfs_readonly: true\n  entries:\n"
              "    - {type: proc}\n    - {type: dev}\n"
              "    - {type: tmpfs, target: /tmp, size: 8Mi, mode: 01777, flags: [noexec]}\n"
              "    - {type: bind, source: @SHARED@, target: /mnt/shared, readonly: true, flags: [nosuid, nodev]}\n"
              "    - {type: bind, source: @SHARED@, target: /mnt/rw, recursive: false}\n"
              "    - {type: mqueue}\n    - {type: sysfs}\n"
              "  masked_paths: [/proc/kcore, /proc/keys]\n  readonly_paths: [/proc/sys]\n",
    "hostname": "hostname: probe-host\ndomainname: probe.example\n",
    "cgroup": "namespaces: [pid, mount, uts, ipc, net]\n"
              "cgroup:\n  memory: {max: 64Mi, swap_max: 0}\n  cpu: {max: 0.5, weight: 200}\n  pids: {max: 20}\n"
              "mounts:\n  rootfs: @ROOTFS@\n  entries:\n    - {type: proc}\n    - {type: dev}\n"
              "    - {type: tmpfs, target: /tmp}\n"
              "    - {type: bind, source: /sys/fs/cgroup, target: /sys/fs/cgroup, readonly: true}\n",
    "process": "process:\n  command: [/bin/sh, /probe.sh]\n  cwd: /tmp\n  umask: 0o027\n"
               "  env: {GREETING: hello, EMPTY: '', SPACED: a b c, HOME: /home/probe}\n",
}

# Lines (regexes, from the start) the probe must print in a section, so that agreement is not agreement on nothing.
EXPECTED = {
    "ids": ["== statusUid:\t1000\t1000\t1000\t1000", "== statusGroups:\t10 20 "],
    "capabilities": ["== statusCapAmb:\t0000000000040420", "== statusCapEff:\t0000000000040420"],
    "capabilities_root": ["== statusCapBnd:\t0000000000200521", "== statusCapInh:\t0000000000000020"],
    "no_new_privs": ["== statusNoNewPrivs:\t0"],
    "seccomp": ["== statusSeccomp:\t2", "== syscallsmkdir: can't create directory '/tmp/probe-dir': Read-only file system$",
                "== syscallshostname: sethostname: Text file busy"],
    "rlimits": ["== oom_score_adj300"],
    "namespaces": ["== namespacesuser new", "== namespacescgroup new", r"== idmap +0 +100000 +65536$"],
    "mounts": [r"== mounts/ \S+ ro ", r"== mounts/mnt/shared \S+ ro,nosuid,nodev ", r"== mounts/mnt/rw \S+ rw ",
               r"== mounts/tmp tmpfs rw,noexec size=8192k$", r"== mounts/dev/mqueue mqueue ",
               r"== mounts/sys sysfs ro,nosuid,nodev,noexec", r"== mounts/proc/sys proc ro,"],
    "hostname": ["== hostnameprobe-host"],
    "cgroup": ["== cgroupmemory.limit_in_bytes 67108864", "== cgroupcpu.cfs_quota_us 50000", "== cgrouppids.max 20"],
    "process": ["== umask0027", "== cwd/tmp", "== envGREETING=hello", "== envHOME=/home/probe"],
}

# (section or "*", a line of the probe's output matching this regex) -> why it differs.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("*", r"^== mounts/dev/(null|zero|full|random|urandom|tty) "):
        "linx-spec binds the host's device nodes into its /dev, runc mknods them outside a user "
        "namespace: the same devices either way, but only linx-spec's show as mounts",
    ("hostname", r"^== hostname(probe\.example|\(none\))$"):
        "runc 1.1.5 (Debian 12) ignores `domainname` (it came with runc 1.2); the export writes it",
    ("mounts", r"^== mounts/proc/(kcore|keys) "):
        "a masked file gets /dev/null bound over it: linx-spec binds the host's /dev/null (devtmpfs), "
        "runc the one in the container's /dev (a tmpfs): the same device node either way",
}


def _mask_known(section: str, lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if any(where in ("*", section) and re.search(pattern, line)
               for (where, pattern) in KNOWN_DIFFERENCES):
            continue
        out.append(line)
    return out


def _sectioned(text: str) -> list[str]:
    """Each line prefixed with its probe section, so a difference says where it is."""
    out, head = [], ""
    for line in text.splitlines():
        if line.startswith("== "):
            head = line
            continue
        out.append(f"{head}{line}")
    return out


@pytest.fixture(scope="module")
def rootfs():
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed (.ci/run installs it)")
    if shutil.which("runc") is None:
        pytest.fail("runc is not installed (.ci/run installs it)")
    # Not under pytest's 0700 tmp: the user-namespace section's root (host uid 100000) walks into it.
    base = Path(tempfile.mkdtemp(prefix="linx-oci-diff-"))
    root = base / "rootfs"
    for d in ("bin", "proc", "dev", "sys/fs/cgroup", "tmp", "mnt/shared", "mnt/rw", "etc"):
        (root / d).mkdir(parents=True)
    # As in any real root.  runc 1.1 gives a tmpfs the mode of the directory it covers, whatever its
    # `mode=` says (libcontainer/rootfs_linux.go, mountToRootfs); linx-spec gives it `mode` (1777 by
    # default), so with a 0755 /tmp here the two would differ (README: Exporting to OCI).
    os.chmod(root / "tmp", 0o1777)
    os.chmod(base, 0o755)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "probe.sh").write_text(PROBE)
    (root / "host-ns").write_text("".join(f"{n} {os.readlink(f'/proc/self/ns/{n}')}\n"
                                          for n in ("user", "pid", "net", "mnt", "uts", "ipc", "cgroup", "time")))
    shared = base / "shared"
    shared.mkdir()
    (shared / "file").write_text("x")
    os.chmod(shared, 0o755)
    try:
        yield root, shared
    finally:
        shutil.rmtree(base)


def _run_runc(bundle: Path, state: Path) -> subprocess.CompletedProcess:
    cid = f"linx-oci-{uuid.uuid4().hex[:12]}"  # runc names the cgroups after it: the leak census sees them
    try:
        return subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", cid], capture_output=True, timeout=30)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_linx_spec_and_runc_agree_from_inside(section, rootfs, tmp_path):
    root, shared = rootfs
    text = BASE.replace("@NAME@", f"ocidiff-{section.replace('_', '-')}").replace("@ROOTFS@", str(root))
    extra = SECTIONS[section].replace("@ROOTFS@", str(root)).replace("@SHARED@", str(shared))
    # a section's top-level keys replace the base's
    keys = {line.split(":")[0] for line in extra.splitlines() if line and not line.startswith(" ")}
    kept, skip = [], False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            skip = line.split(":")[0] in keys
        if not skip:
            kept.append(line)
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join(kept) + "\n" + extra)

    ours = cli("apply", str(spec))
    assert ours.returncode == 0, ours.stderr
    bundle = tmp_path / "bundle"
    exported = cli("export", "oci", str(spec), "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    theirs = _run_runc(bundle, tmp_path / "runc-state")
    assert theirs.returncode == 0, theirs.stderr

    a = _mask_known(section, _sectioned(ours.stdout))
    b = _mask_known(section, _sectioned(theirs.stdout))
    only_ours = [line for line in a if line not in b]
    only_runc = [line for line in b if line not in a]
    assert (only_ours, only_runc) == ([], []), (
        f"linx-spec and runc differ in section {section}:\n  linx-spec only: "
        + "\n    ".join(only_ours) + "\n  runc only: " + "\n    ".join(only_runc))
    assert a == b  # same lines in the same order
    assert "== status" in ours.stdout and "== syscalls" in ours.stdout  # the probe ran to its end
    for pattern in EXPECTED.get(section, ()):  # and saw what the section asks for (both sides, equal above)
        assert any(re.match(pattern, line) for line in a), f"{section}: no line matches {pattern!r}:\n{ours.stdout}"
