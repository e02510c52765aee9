"""The OCI bridge: a spec as an OCI runtime bundle's config.json, and back.

    export_config(spec, plan, base_dir)  -> Exported(config, losses)   export.py
    import_config(data, bundle_dir)      -> Imported(spec_data, losses) import_.py

Target: runtime-spec 1.0.2-dev at commit 5cfc4c3 (what Debian 12 ships as
golang-github-opencontainers-specs-dev, and what its runc 1.1.5 and crun
implement); it has domainname, process.user.umask, defaultErrnoRet and
SCMP_ACT_KILL_PROCESS, which 1.0.2 lacks.  tests/data/oci-runtime-spec holds
its JSON Schema and the tests validate every export against it.

What one side can say and the other cannot is a `Loss` (lossy.py), listed by
name: an error unless the caller accepts the losses (`--lossy`), then a
warning each.  Nothing is dropped silently.
"""

from __future__ import annotations

from .lossy import Loss

OCI_VERSION = "1.0.2-dev"
# Annotations the export writes so that import finds what the bundle was made from.
ANNOTATION_NAME = "org.linx-spec.name"
ANNOTATION_HOST_ROOT = "org.linx-spec.host-root-mounts"  # how many leading mounts stand for the host's /

__all__ = ["OCI_VERSION", "Loss", "ANNOTATION_NAME", "ANNOTATION_HOST_ROOT"]
