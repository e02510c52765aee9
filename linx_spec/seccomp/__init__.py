"""The seccomp subsystem: filters compiled on the host with libseccomp, installed by the agent.

    spec/seccomp.py    the `seccomp:` section (what the user wrote)
    compile.py         rules -> BPF bytes, checked (linx_spec/plan/seccomp.py calls it: SeccompPlan)
    groups.py          named syscall groups (@mount, @privileged, @system-service...)
    oci.py             Docker / OCI JSON profiles
    constants.py       symbolic argument values (AF_INET6, CLONE_NEWUSER...)
    names.py           syscall names libseccomp knows, did-you-mean suggestions
    bpf.py             decode and run compiled filters (to check them, never to write them)
    _libseccomp.py     the ctypes binding to libseccomp.so.2
    cli.py             `linx-spec seccomp export|explain|groups`

Importing this package loads nothing: libseccomp is opened on first use.
"""
