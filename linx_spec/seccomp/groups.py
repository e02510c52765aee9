"""Named syscall groups: `@mount`, `@privileged`, `@system-service`...

A rule may name a group wherever it names a syscall.  Every group that shares
a name with one of systemd's SystemCallFilter= sets (systemd.exec(5)) holds
exactly that set's members as `systemd-analyze syscall-filter` of systemd 252
(SYSTEMD_VERSION) lists them, on every architecture systemd names, so that a
reader who knows `SystemCallFilter=@system-service` gets the same calls here.
tests/unit/test_seccomp_groups.py compares every group with that command's
output (or, without systemd, with its checked-in copy in tests/data/) and
lists any difference by group and syscall.  The groups systemd lacks
(`@namespaces`, `@sandbox`) are linx-spec's own and say so in their summary;
systemd's `@known` (every call systemd knows) has no counterpart here.

A group lists syscall names and other groups (`@...`).  Names that do not
exist on an architecture of the filter are skipped for that architecture, as
systemd does: a group means "these operations, wherever they exist".  A name
this machine's libseccomp does not know yet (libseccomp 2.5.4 lacks
`uretprobe` and `riscv_hwprobe`) is skipped by the compiler as well, as runc
skips a profile's unknown names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Group", "GROUPS", "SYSTEMD_VERSION", "expand", "group_names"]

# The systemd whose `systemd-analyze syscall-filter` the shared groups equal
# (Debian 12's 252.38); the test and docs/seccomp.md name the same one.
SYSTEMD_VERSION = 252


@dataclass(frozen=True)
class Group:
    name: str  # with the leading `@`
    summary: str
    members: tuple[str, ...]


def _g(name: str, summary: str, members: str) -> Group:
    return Group(name, summary, tuple(members.split()))


_GROUPS = [
    _g("@default", "What every program needs from its first instruction: exit, memory map, thread setup, "
       "futexes, ids, clocks and sleeps, getrandom, signal return",
       """
       execve exit exit_group restart_syscall rt_sigreturn sigreturn
       brk mmap mmap2 munmap mprotect arch_prctl set_tid_address set_thread_area get_thread_area set_tls
       set_robust_list get_robust_list rseq futex futex_time64 futex_waitv membarrier sched_yield
       sched_getaffinity getrandom cacheflush riscv_flush_icache riscv_hwprobe uretprobe
       getpid getppid gettid getpgid getpgrp getsid
       getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
       getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
       getrlimit ugetrlimit prlimit64
       clock_gettime clock_gettime64 clock_getres clock_getres_time64
       clock_nanosleep clock_nanosleep_time64 nanosleep gettimeofday time pause
       """),
    _g("@aio", "Asynchronous I/O: Linux AIO and io_uring",
       """
       io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
       io_uring_setup io_uring_enter io_uring_register
       """),
    _g("@basic-io", "Read, write, seek, duplicate and close file descriptors",
       """
       read readv pread64 preadv preadv2 write writev pwrite64 pwritev pwritev2
       lseek _llseek close close_range dup dup2 dup3
       """),
    _g("@chown", "Change the owner of files",
       "chown chown32 fchown fchown32 fchownat lchown lchown32"),
    _g("@clock", "Set the system clock",
       "adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday"),
    _g("@cpu-emulation", "Emulation of other CPU modes (vm86, LDT)",
       "modify_ldt vm86 vm86old subpage_prot switch_endian"),
    _g("@debug", "Tracing, debugging and performance monitoring of processes",
       "ptrace perf_event_open pidfd_getfd lookup_dcookie rtas s390_runtime_instr sys_debug_setcontext"),
    _g("@file-system", "Files and directories: open, stat, create, rename, remove, links, xattrs, inotify",
       """
       open openat openat2 creat close access faccessat faccessat2
       stat stat64 lstat lstat64 fstat fstat64 newfstatat fstatat64 statx oldstat oldlstat oldfstat
       statfs statfs64 fstatfs fstatfs64
       chdir fchdir getcwd getdents getdents64
       mkdir mkdirat mknod mknodat rmdir unlink unlinkat rename renameat renameat2
       link linkat symlink symlinkat readlink readlinkat
       chmod fchmod fchmodat fchmodat2 truncate truncate64 ftruncate ftruncate64 fallocate
       utime utimes utimensat utimensat_time64 futimesat
       fcntl fcntl64
       getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
       setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
       inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
       """),
    _g("@io-event", "Waiting for events on file descriptors: poll, select, epoll, eventfd",
       """
       poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
       epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
       eventfd eventfd2
       """),
    _g("@ipc", "Pipes, SysV IPC, POSIX message queues, memfd, cross-process memory and process_madvise",
       """
       pipe pipe2 memfd_create ipc
       msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
       shmget shmat shmdt shmctl
       mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64
       mq_notify mq_getsetattr process_vm_readv process_vm_writev process_madvise
       """),
    _g("@keyring", "The kernel keyring", "add_key request_key keyctl"),
    _g("@memlock", "Lock memory into RAM", "mlock mlock2 mlockall munlock munlockall"),
    _g("@module", "Load and unload kernel modules", "init_module finit_module delete_module"),
    _g("@mount", "Mount, unmount and change the root of file systems",
       "mount umount umount2 pivot_root chroot fsopen fsconfig fsmount fspick move_mount open_tree "
       "mount_setattr"),
    _g("@namespaces", "Create and enter namespaces (linx-spec's own group: systemd 252 has none of this name)",
       "unshare setns"),
    _g("@network-io", "Sockets: create, connect, send and receive (network and Unix)",
       """
       socket socketpair socketcall bind listen accept accept4 connect shutdown
       getsockname getpeername getsockopt setsockopt
       send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
       """),
    _g("@obsolete", "Unusual, obsolete or never-implemented system calls",
       """
       _sysctl afs_syscall bdflush break create_module ftime get_kernel_syms getpmsg gtty idle lock
       mpx prof profil putpmsg query_module security sgetmask ssetmask stty sysfs tuxcall ulimit
       stime uselib ustat vserver
       """),
    _g("@pkey", "Memory protection keys", "pkey_alloc pkey_free pkey_mprotect"),
    _g("@privileged", "Everything that needs a capability (CAP_SYS_ADMIN and friends) to succeed",
       """
       @chown @clock @module @raw-io @reboot @swap
       _sysctl acct bpf capset chroot fanotify_init fanotify_mark nfsservctl open_by_handle_at
       pivot_root quotactl quotactl_fd setdomainname sethostname vhangup
       setuid setuid32 setreuid setreuid32 setresuid setresuid32 setfsuid setfsuid32 setgroups setgroups32
       """),
    _g("@process", "Create, wait for, signal and configure processes and threads",
       """
       clone clone3 fork vfork execveat wait4 waitid waitpid kill tkill tgkill
       rt_sigqueueinfo rt_tgsigqueueinfo pidfd_open pidfd_send_signal
       prctl capget getrusage times setns unshare swapcontext
       """),
    _g("@raw-io", "Raw access to I/O ports and PCI configuration",
       "ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write s390_pci_mmio_read s390_pci_mmio_write"),
    _g("@reboot", "Reboot the machine or load a new kernel", "reboot kexec_load kexec_file_load"),
    _g("@resources", "Change scheduling, priorities, memory policy and resource limits",
       """
       nice setpriority setrlimit ioprio_set sched_setaffinity sched_setattr sched_setparam
       sched_setscheduler set_mempolicy set_mempolicy_home_node mbind migrate_pages move_pages
       """),
    _g("@sandbox", "Confine oneself further: seccomp and Landlock (linx-spec's own group: systemd 252 has "
       "none of this name)",
       "seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self"),
    _g("@setuid", "Change user and group ids",
       """
       setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
       setresuid setresuid32 setresgid setresgid32 setgroups setgroups32
       """),
    _g("@signal", "Handle, block and wait for signals",
       """
       rt_sigaction rt_sigprocmask rt_sigpending rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
       sigaction sigprocmask sigpending sigsuspend signal sigaltstack signalfd signalfd4
       """),
    _g("@swap", "Enable and disable swap", "swapon swapoff"),
    _g("@sync", "Flush files and memory to storage",
       "sync syncfs fsync fdatasync msync sync_file_range sync_file_range2"),
    _g("@timer", "Timers and alarms",
       """
       alarm getitimer setitimer timer_create timer_delete timer_getoverrun
       timer_gettime timer_gettime64 timer_settime timer_settime64
       timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
       """),
    _g("@system-service", "What an ordinary service or command-line program uses; a good base for an allow-list",
       """
       @default @aio @basic-io @chown @file-system @io-event @ipc @keyring @memlock @network-io
       @process @resources @setuid @signal @sync @timer
       capget capset copy_file_range fadvise64 fadvise64_64 arm_fadvise64_64 flock getcpu getpriority
       get_mempolicy ioctl ioprio_get kcmp madvise mremap name_to_handle_at personality readahead readdir
       remap_file_pages sched_yield sched_getattr sched_getparam sched_getscheduler
       sched_get_priority_max sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64
       sendfile sendfile64 setfsgid setfsgid32 setfsuid setfsuid32 setpgid setsid splice tee vmsplice
       sysinfo umask uname olduname oldolduname userfaultfd
       """),
]

GROUPS: dict[str, Group] = {g.name: g for g in _GROUPS}


def group_names() -> list[str]:
    return sorted(GROUPS)


def expand(name: str, _seen: frozenset[str] = frozenset()) -> list[str]:
    """All syscall names of a group, nested groups resolved, in first-seen order."""
    if name in _seen:
        raise ValueError(f"group {name} includes itself")
    group = GROUPS[name]
    out: list[str] = []
    for member in group.members:
        items = expand(member, _seen | {name}) if member.startswith("@") else [member]
        for item in items:
            if item not in out:
                out.append(item)
    return out
