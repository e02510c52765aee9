"""`linx-oci features`: what this runtime implements, in runc's JSON shape
(runtime-spec features.md, as runc 1.1 prints it).  Every list is taken from
the code that implements it, never typed again here."""

from __future__ import annotations

from . import OCI_VERSION
from .record import HOOK_KINDS

# The mount options import_.py understands (the rest of an entry's options is a loss).
MOUNT_OPTIONS = ("bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "slave", "rslave",
                 "size", "mode", "uid", "gid")


def features() -> dict:
    from ..seccomp.oci import _ACTIONS, _OPS
    from ..spec.capabilities import CAPABILITIES
    from .export import OCI_NAMESPACE

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(OCI_NAMESPACE.values()),
            "capabilities": sorted(f"CAP_{name.upper()}" if not name.startswith("CAP_") else name
                                   for name in CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(_ACTIONS) + ["SCMP_ACT_ERRNO"],
                        "operators": sorted(_OPS), "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                                                             "SCMP_ARCH_AARCH64"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.linx-spec.runtime": "linx-oci"},
    }
