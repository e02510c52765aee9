/* linx-agent: one process per workload.  Clones the child into its
 * namespaces, parks it, lets the runner work on it, releases it on PROCEED,
 * reaps it, and stops it if the runner goes away.  See lx_proto.h for the
 * exchange.  Usage: linx-agent [--fd N]   (default 3: the control socket)
 * linx-agent --zygote [--fd N]: forks such agents on request (lx_zygote.c). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lx_child.h"
#include "lx_fail.h"
#include "lx_fault.h"
#include "lx_proto.h"
#include "lx_settings.h"
#include "lx_steps.h"
#include "lx_zygote.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define LX_NS_ALL (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWUTS | \
		   CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWTIME)
#define LX_MAX_JOINS 8
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define LX_CLONE_INTO_CGROUP 0x200000000ULL /* linux/sched.h, 5.7 */

/* struct clone_args of linux/sched.h up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88
 * bytes), spelled out: the uapi header's CLONE_* macros clash with glibc's. */
struct lx_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};
#define LX_MAX_TRACKED 64

enum lx_state { ST_IDLE, ST_PARKED, ST_RUNNING, ST_DONE };

static struct {
	int ctl;
	int sfd;
	enum lx_state state;
	pid_t child;
	int settings_w; /* parent end of the pipe the child is parked on */
	int status_r;   /* read end of the CLOEXEC status pipe */
	int exited;     /* the child was reaped */
	int releasable; /* running, pdeathsig disarmed: its end is left for the subreaper (see reap) */
	int wstatus;
	int wait_pending;
	uint32_t wait_seq;
	uint32_t grace_ms;
	int linger;
	char linger_path[4096];
	int passed_fd; /* a descriptor that came with the frame being handled, or -1 */
	int linger_dir;        /* the checked directory of linger_path, or -1 */
	char linger_name[256]; /* its last component, written relative to linger_dir */
	char *tracked[LX_MAX_TRACKED];
	int tracked_remove_only[LX_MAX_TRACKED];
	size_t ntracked;
	struct lx_out out;
} A;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void send_out(void)
{
	if (A.out.overflow) {
		uint32_t seq;
		memcpy(&seq, A.out.buf + 4, 4);
		lx_out_begin(&A.out, LX_M_ERROR, seq);
		lx_out_u32(&A.out, LX_A_STEP, LX_STEP_PROTOCOL);
		lx_out_u32(&A.out, LX_A_ERRNO, E2BIG);
		lx_out_str(&A.out, LX_A_DETAIL, "reply too large");
	}
	/* A failed send means the runner is gone; the read side notices. */
	(void)lx_out_send(&A.out, A.ctl);
}

static void send_error(uint32_t seq, int step, int err, const char *detail, const char *path)
{
	lx_out_begin(&A.out, LX_M_ERROR, seq);
	lx_out_u32(&A.out, LX_A_STEP, (uint32_t)step);
	lx_out_u32(&A.out, LX_A_ERRNO, (uint32_t)err);
	lx_out_str(&A.out, LX_A_DETAIL, detail);
	if (path)
		lx_out_str(&A.out, LX_A_PATH, path);
	send_out();
}

static void send_simple(uint8_t type, uint32_t seq)
{
	lx_out_begin(&A.out, type, seq);
	send_out();
}

static void describe_status(int st, char *buf, size_t cap)
{
	if (WIFEXITED(st))
		snprintf(buf, cap, "the child exited with code %d while parked", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, cap, "the child was killed by signal %d (%s) while parked", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, cap, "the child ended while parked (status %#x)", st);
}

static void send_parked_death(uint32_t seq)
{
	char detail[160];
	describe_status(A.wstatus, detail, sizeof(detail));
	lx_out_begin(&A.out, LX_M_ERROR, seq);
	lx_out_u32(&A.out, LX_A_STEP, LX_STEP_PARKED);
	lx_out_u32(&A.out, LX_A_ERRNO, 0);
	lx_out_str(&A.out, LX_A_DETAIL, detail);
	lx_out_u32(&A.out, LX_A_WSTATUS, (uint32_t)A.wstatus);
	send_out();
}

static void send_end(uint32_t seq)
{
	if (WIFSIGNALED(A.wstatus)) {
		lx_out_begin(&A.out, LX_M_SIGNALED, seq);
		lx_out_u32(&A.out, LX_A_SIGNO, (uint32_t)WTERMSIG(A.wstatus));
		lx_out_u32(&A.out, LX_A_CORE, WCOREDUMP(A.wstatus) ? 1 : 0);
	} else {
		lx_out_begin(&A.out, LX_M_EXITED, seq);
		lx_out_u32(&A.out, LX_A_CODE, (uint32_t)WEXITSTATUS(A.wstatus));
	}
	lx_out_u32(&A.out, LX_A_WSTATUS, (uint32_t)A.wstatus);
	send_out();
}

/* SIGKILL every pid listed in `path` (a children or cgroup.procs file) and
 * reap what is ours, until the list is empty or `rounds` passes went by.
 * 0 when the list ended empty (or the file vanished). */
static int kill_listed(const char *path, int rounds, useconds_t pause_us)
{
	char buf[8192];
	for (int round = 0; round < rounds; round++) {
		ssize_t n = lx_read_file(path, buf, sizeof(buf));
		if (n <= 0)
			return 0;
		if ((size_t)n == sizeof(buf) - 1) {
			/* Full: the last number may be cut short (12 of 1234): never kill
			 * it; the next round reads the rest once these are gone. */
			while (n > 0 && buf[n - 1] != ' ' && buf[n - 1] != '\n')
				n--;
			buf[n] = 0;
		}
		for (char *p = buf; *p;) {
			long pid = strtol(p, &p, 10);
			if (pid > 0)
				kill((pid_t)pid, SIGKILL);
			while (*p == ' ' || *p == '\n')
				p++;
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		usleep(pause_us);
	}
	return -1;
}

/* Kill whatever was reparented to us (we are a subreaper) after the main
 * child ended: nothing survives the workload, cgroup or not. */
static void kill_orphans(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
	(void)kill_listed(path, 100, 1000);
}

/* While a releasable workload runs (its PROCEED disarmed pdeathsig: an OCI
 * runtime will RELEASE it), its end is looked at, not reaped: a program that
 * ends between PROCEED and RELEASE stays a zombie that RELEASE hands to the
 * subreaper (containerd's shim sees its exit as it would runc's).  Orphans
 * reparented to us are reaped meanwhile.  Returns 1 while the child's zombie
 * is kept. */
static int keep_releasable_zombie(void)
{
	if (!A.releasable || A.state != ST_RUNNING || A.exited)
		return 0;
	for (;;) {
		siginfo_t si;
		si.si_pid = 0;
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			return 0;
		if (si.si_pid == A.child)
			return 1;
		waitpid(si.si_pid, NULL, WNOHANG); /* an orphan reparented to us */
	}
}

static void reap(void)
{
	int st;
	pid_t p;
	if (keep_releasable_zombie())
		return;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p != A.child || A.exited)
			continue; /* an orphan reparented to us */
		A.exited = 1;
		A.wstatus = st;
		if (A.state == ST_RUNNING) {
			A.state = ST_DONE;
			kill_orphans();
			if (A.wait_pending) {
				A.wait_pending = 0;
				send_end(A.wait_seq);
			}
		}
	}
}

/* Wait for the child's end for at most ms (SIGCHLD via the signalfd). */
static void wait_child(int ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)ms * 1000000u;
	while (!A.exited) {
		int64_t left = (int64_t)(deadline - mono_ns()) / 1000000;
		if (ms >= 0 && left <= 0)
			return;
		struct pollfd p = { A.sfd, POLLIN, 0 };
		int r = poll(&p, 1, ms < 0 ? -1 : (int)left + 1);
		if (r > 0) {
			struct signalfd_siginfo si;
			while (read(A.sfd, &si, sizeof(si)) == sizeof(si))
				;
		}
		reap();
	}
}

static void kill_cgroup(const char *dir)
{
	char path[4200];
	/* A workload that ended and was reaped left its cgroup empty (the usual
	 * case): one rmdir removes it.  The kernel refuses the rmdir (EBUSY) of a
	 * cgroup with any process or child cgroup inside, so only those take the
	 * long way: kill, then rmdir retried while the dead are reaped. */
	if (rmdir(dir) == 0 || errno == ENOENT)
		return;
	snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = write(fd, "1", 1);
		(void)n;
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	(void)kill_listed(path, 200, 2000);
	for (int round = 0; round < 500; round++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			break;
		if (errno != EBUSY)
			break;
		usleep(2000);
	}
}

/* The end record (`exited N` / `signaled N [core]`, under 64 bytes), written
 * as the runtime directory's own files are: a fresh O_EXCL|O_NOFOLLOW file
 * relative to the directory's fd (checked when LINGER arrived), renamed into
 * place, so a planted symlink is neither followed nor written through. */
static void write_end_file(void)
{
	char text[64], tmp[64];
	if (A.linger_dir < 0 || !A.exited)
		return;
	if (WIFSIGNALED(A.wstatus))
		snprintf(text, sizeof(text), "signaled %d%s\n", WTERMSIG(A.wstatus), WCOREDUMP(A.wstatus) ? " core" : "");
	else
		snprintf(text, sizeof(text), "exited %d\n", WEXITSTATUS(A.wstatus));
	snprintf(tmp, sizeof(tmp), ".%s.%d.tmp", "exit", (int)getpid());
	(void)unlinkat(A.linger_dir, tmp, 0); /* our own leftover (a recycled pid) */
	int fd = openat(A.linger_dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int ok = lx_write_full(fd, text, strlen(text)) == 0;
	close(fd);
	if (!ok || renameat(A.linger_dir, tmp, A.linger_dir, A.linger_name) < 0)
		(void)unlinkat(A.linger_dir, tmp, 0);
}

/* LINGER's path: its directory must be ours alone (owner, no group/other
 * write), as rundir.py demands of the runtime directory; -1 with errno. */
static int open_linger_dir(void)
{
	char dir[4096];
	char *slash = strrchr(A.linger_path, '/');
	const char *name = slash + 1;
	if (!slash || !*name || strlen(name) >= sizeof(A.linger_name) || !strcmp(name, ".") || !strcmp(name, "..")) {
		errno = EINVAL;
		return -1;
	}
	size_t n = (size_t)(slash - A.linger_path);
	memcpy(dir, A.linger_path, n);
	dir[n ? n : 1] = 0;
	if (!n)
		dir[0] = '/';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	snprintf(A.linger_name, sizeof(A.linger_name), "%s", name);
	return fd;
}

/* The runner is gone: stop the workload (or, lingering, wait for it) and
 * remove what we were told of. */
static __attribute__((noreturn)) void orphaned(void)
{
	if (A.linger && A.state == ST_RUNNING && !A.exited) {
		/* Leave the runner's session: a closing terminal is not ours. */
		setsid();
		wait_child(-1);
		kill_orphans();
	}
	write_end_file();
	if (A.child > 0 && !A.exited) {
		if (A.state == ST_RUNNING) {
			kill(A.child, SIGTERM);
			wait_child((int)A.grace_ms);
		}
		if (!A.exited) {
			kill(A.child, SIGKILL);
			wait_child(-1);
		}
		kill_orphans();
	}
	/* Reverse order: leaves before the parents they were created in. */
	for (size_t i = A.ntracked; i-- > 0;) {
		if (A.tracked_remove_only[i])
			(void)rmdir(A.tracked[i]); /* EBUSY: still used by other workloads */
		else
			kill_cgroup(A.tracked[i]);
	}
	_exit(0);
}

static const char *ns_name(uint32_t flag)
{
	switch (flag) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWNET: return "net";
	case CLONE_NEWNS: return "mount";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWCGROUP: return "cgroup";
	case CLONE_NEWTIME: return "time";
	default: return "?";
	}
}

struct lx_begin {
	uint16_t step;
	uint64_t t_ns;
};

static void steplog_drop(void)
{
	if (lx_steplog)
		munmap(lx_steplog, LX_STEPLOG_BYTES);
	lx_steplog = NULL;
}

/* The child's step log, once the child exec'd or died: copied out (at most
 * max records, whatever its count says), then unmapped.  -> records copied. */
static size_t steplog_take(struct lx_begin *out, size_t max)
{
	size_t n = 0;
	if (lx_steplog) {
		n = __atomic_load_n(&lx_steplog->n, __ATOMIC_ACQUIRE);
		if (n > max)
			n = max;
		for (size_t i = 0; i < n; i++)
			out[i] = (struct lx_begin){ lx_steplog->rec[i].step, lx_steplog->rec[i].t_ns };
	}
	steplog_drop();
	return n;
}

static void do_spawn(uint32_t seq, const uint8_t *payload, uint32_t len)
{
	struct lx_attr_it it = { payload, len };
	struct lx_attrv a;
	uint32_t flags = 0, want_cgroup = 0;
	struct { uint32_t type; char path[4096]; int fd; } joins[LX_MAX_JOINS];
	size_t njoins = 0;
	int r;
	char detail[4200];

	if (A.state != ST_IDLE)
		return send_error(seq, LX_STEP_PROTOCOL, EALREADY, "SPAWN: a child was already spawned", NULL);
	while ((r = lx_attr_next(&it, &a)) > 0) {
		if (a.type == LX_A_NS_FLAGS) {
			if (lx_attr_u32(&a, &flags) < 0 || (flags & ~(uint32_t)LX_NS_ALL))
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: bad namespace flags", NULL);
		} else if (a.type == LX_A_NS_JOIN) {
			if (njoins >= LX_MAX_JOINS || a.len < 5 || a.len - 4 >= sizeof(joins[0].path))
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: bad namespace join", NULL);
			struct lx_attrv t = { 0, 4, a.val };
			struct lx_attrv pth = { 0, a.len - 4, a.val + 4 };
			lx_attr_u32(&t, &joins[njoins].type);
			if (lx_attr_str(&pth, joins[njoins].path, sizeof(joins[njoins].path)) < 0)
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: namespace path contains NUL", NULL);
			if (__builtin_popcount(joins[njoins].type) != 1 || (joins[njoins].type & ~(uint32_t)LX_NS_ALL))
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: bad namespace type", NULL);
			njoins++;
		} else if (a.type == LX_A_GRACE_MS) {
			if (lx_attr_u32(&a, &A.grace_ms) < 0)
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: bad grace", NULL);
		} else if (a.type == LX_A_CGROUP_FD) {
			if (lx_attr_u32(&a, &want_cgroup) < 0 || want_cgroup != 1 || A.passed_fd < 0)
				return send_error(seq, LX_STEP_PROTOCOL, EINVAL,
						  "SPAWN: CGROUP_FD without a descriptor passed with the frame", NULL);
		} else {
			snprintf(detail, sizeof(detail), "SPAWN: unknown attribute %u", a.type);
			return send_error(seq, LX_STEP_PROTOCOL, EINVAL, detail, NULL);
		}
	}
	if (r < 0)
		return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "SPAWN: truncated attribute", NULL);
	struct lx_err fault;
	if (lx_fault_at(LX_STEP_SPAWN, A.ctl, &fault) < 0)
		return send_error(seq, fault.step, fault.err, fault.detail, NULL);

	/* Every namespace fd is opened before the first setns: after joining a
	 * mount or user namespace, the paths may resolve elsewhere or not at all. */
	for (size_t i = 0; i < njoins; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0) {
			int err = errno;
			for (size_t j = 0; j < i; j++)
				close(joins[j].fd);
			snprintf(detail, sizeof(detail), "open %s namespace", ns_name(joins[i].type));
			return send_error(seq, LX_STEP_SPAWN, err, detail, joins[i].path);
		}
	}
	/* Non-dumpable before joining anything (as runc's nsexec): a process of the
	 * workload (same uid, inside the namespaces we join) could otherwise
	 * ptrace the child between setns and execve, or open the agent binary
	 * through /proc/PID/exe (CVE-2016-9962, CVE-2019-5736).  The child inherits
	 * it; execve of the workload's program makes it dumpable again.  Left
	 * dumpable only when a non-root runner must still write the uid/gid maps
	 * of a new user namespace (/proc/PID/uid_map of a non-dumpable child is
	 * owned by root). */
	if (njoins > 0 && (!(flags & CLONE_NEWUSER) || geteuid() == 0) && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		int err = errno;
		for (size_t j = 0; j < njoins; j++)
			close(joins[j].fd);
		return send_error(seq, LX_STEP_SPAWN, err, "prctl(PR_SET_DUMPABLE, 0)", NULL);
	}
	lx_ns_guard_record(); /* before any setns: the runtime's own mount and uts namespaces */
	/* The user namespace first (its capabilities allow the rest), as nsenter. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < njoins; i++) {
			if ((pass == 0) != (joins[i].type == CLONE_NEWUSER))
				continue;
			if (setns(joins[i].fd, (int)joins[i].type) < 0) {
				int err = errno;
				snprintf(detail, sizeof(detail), "setns %s namespace", ns_name(joins[i].type));
				send_error(seq, LX_STEP_SPAWN, err, detail, joins[i].path);
				for (size_t j = 0; j < njoins; j++)
					close(joins[j].fd);
				/* The agent may be half-joined now: it cannot spawn again. */
				A.state = ST_DONE;
				return;
			}
		}
	}
	for (size_t i = 0; i < njoins; i++)
		close(joins[i].fd);

	/* The time namespace is unshared by the child (the time step, lx_time.c):
	 * its offsets can be written only before a process is in it, and clone(2)
	 * cannot carry the flag anyway (it collides with CSIGNAL).  The cgroup
	 * namespace is unshared by the child after the host placed it in its
	 * cgroup, so that the namespace root is the workload's own cgroup. */
	uint32_t clone_flags = flags & ~(uint32_t)(CLONE_NEWTIME | CLONE_NEWCGROUP);

	int sp[2], st[2];
	if (pipe2(sp, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0)
		return send_error(seq, LX_STEP_SPAWN, errno, "pipe2", NULL);
	/* The child's step log (lx_child.h), shared across the clone; without it
	 * (mmap failed) the child reports every step through the pipe. */
	void *log = mmap(NULL, LX_STEPLOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	lx_steplog = log == MAP_FAILED ? NULL : log;
	/* Straight into the workload's cgroup when the runner made it first (cgroup
	 * v2, 5.7+): the child never runs a cycle anywhere else, and the runner's
	 * cgroup.procs write, the slow part of the cgroup step, is not needed.
	 * Any failure (old kernel: ENOSYS or E2BIG; a joined cgroup namespace or
	 * user namespace: EPERM/EACCES/EINVAL) falls back to a plain clone, and
	 * SPAWNED says the runner must move the child itself. */
	pid_t pid = -1;
	int in_cgroup = 0, cgroup_err = 0;
	if (want_cgroup && A.passed_fd >= 0) {
		struct lx_clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.flags = (uint64_t)clone_flags | LX_CLONE_INTO_CGROUP;
		ca.exit_signal = SIGCHLD;
		ca.cgroup = (uint64_t)A.passed_fd;
		pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
		in_cgroup = pid >= 0;
		cgroup_err = pid < 0 ? errno : 0;
	}
	if (pid < 0)
		pid = (pid_t)syscall(SYS_clone, (unsigned long)clone_flags | SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0) {
		int err = errno;
		close(sp[0]); close(sp[1]); close(st[0]); close(st[1]);
		steplog_drop();
		snprintf(detail, sizeof(detail), "clone(flags=%#x)", clone_flags);
		return send_error(seq, LX_STEP_SPAWN, err, detail, NULL);
	}
	if (pid == 0) {
		close(A.ctl);
		close(A.sfd);
		if (A.passed_fd >= 0)
			close(A.passed_fd);
		close(sp[1]);
		close(st[0]);
		lx_child_main(sp[0], st[1]);
	}
	close(sp[0]);
	close(st[1]);
	A.child = pid;
	A.settings_w = sp[1];
	A.status_r = st[0];
	A.state = ST_PARKED;
	lx_out_begin(&A.out, LX_M_SPAWNED, seq);
	lx_out_u32(&A.out, LX_A_PID, (uint32_t)pid);
	if (want_cgroup)
		lx_out_u32(&A.out, LX_A_CGROUP_FD, (uint32_t)in_cgroup);
	if (cgroup_err)
		lx_out_u32(&A.out, LX_A_ERRNO, (uint32_t)cgroup_err); /* why clone3 was refused */
	send_out();
}

static void do_proceed(uint32_t seq, const uint8_t *payload, uint32_t len)
{
	struct lx_settings s;
	struct lx_err e = { 0, 0, "" };
	uint8_t lenbuf[4] = { (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24) };

	reap();
	if (A.state == ST_PARKED && A.exited)
		return send_parked_death(seq);
	if (A.state != ST_PARKED)
		return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "PROCEED: no parked child", NULL);
	/* Validate here so that a bad frame is answered without touching the child. */
	if (lx_settings_parse(payload, len, &s, &e) < 0)
		return send_error(seq, e.step, e.err, e.detail, NULL);
	int disarmed = s.pdeathsig == 0;
	lx_settings_free(&s);

	uint64_t t0 = mono_ns();
	if (lx_write_full(A.settings_w, lenbuf, 4) < 0 || lx_write_full(A.settings_w, payload, len) < 0) {
		wait_child(1000);
		if (A.exited)
			return send_parked_death(seq);
		return send_error(seq, LX_STEP_PROTOCOL, errno, "write settings to the child", NULL);
	}
	close(A.settings_w);
	A.settings_w = -1;

	/* Read status records until EOF: EOF after the exec record and without
	 * a failure record means execve succeeded (the pipe was CLOEXEC). */
	struct lx_begin piped[LX_MAX_ORDER + 4];
	size_t npiped = 0;
	int began_exec = 0, failed = 0;
	struct lx_rec rec;
	char fdetail[513] = "";
	uint32_t ferr = 0, fstep = 0;
	for (;;) {
		/* A child step may hang (a mount on a dead server, an injected
		 * pause): if the runner goes away meanwhile, stop the child rather
		 * than wait for it.  POLLRDHUP only: a request that arrives now
		 * (SIGNAL) waits until the exec is done. */
		struct pollfd pf[2] = { { A.status_r, POLLIN, 0 }, { A.ctl, POLLRDHUP, 0 } };
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if ((pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) && !(pf[0].revents & (POLLIN | POLLHUP))) {
			kill(A.child, SIGKILL);
			wait_child(-1);
			orphaned();
		}
		if (lx_read_full(A.status_r, &rec, sizeof(rec)) < 0)
			break;
		char d[513] = "";
		if (rec.dlen > 512 || (rec.dlen && lx_read_full(A.status_r, d, rec.dlen) < 0))
			break;
		d[rec.dlen] = 0;
		if (rec.kind == LX_REC_BEGIN) {
			if (npiped < sizeof(piped) / sizeof(piped[0]))
				piped[npiped++] = (struct lx_begin){ rec.step, rec.t_ns };
			if (rec.step == LX_STEP_EXEC)
				began_exec = 1; /* the pipe's word only: the log never says exec */
		} else if (rec.kind == LX_REC_FAIL) {
			failed = 1;
			fstep = rec.step;
			ferr = (uint32_t)rec.err;
			memcpy(fdetail, d, sizeof(fdetail));
		}
	}
	close(A.status_r);
	A.status_r = -1;
	uint64_t t1 = mono_ns();
	/* The steps in the order they began: the log's (all before the piped
	 * ones), then the pipe's; each step's time runs to the next one's begin. */
	struct lx_begin begins[LX_STEPLOG_MAX + LX_MAX_ORDER + 4];
	size_t nb = steplog_take(begins, LX_STEPLOG_MAX);
	for (size_t i = 0; i < npiped; i++)
		begins[nb++] = piped[i];
	uint8_t timings[LX_MAX_ORDER * 8 + 8];
	size_t ntim = 0;
	for (size_t i = 0; i + 1 < nb && ntim < LX_MAX_ORDER; i++) {
		uint32_t ns = (uint32_t)(begins[i + 1].t_ns - begins[i].t_ns);
		memcpy(timings + ntim * 8, &begins[i].step, 2);
		memset(timings + ntim * 8 + 2, 0, 2);
		memcpy(timings + ntim * 8 + 4, &ns, 4);
		ntim++;
	}
	uint16_t last_step = nb ? begins[nb - 1].step : 0;
	uint64_t last_t = nb ? begins[nb - 1].t_ns : 0;
	if (failed || !began_exec) {
		/* The child never ran the workload; it is exiting (127) or dead. */
		wait_child(-1);
		A.state = ST_DONE;
		if (failed) {
			const char *path = fstep == LX_STEP_EXEC ? fdetail : NULL;
			return send_error(seq, (int)fstep, (int)ferr, fstep == LX_STEP_EXEC ? "execve" : fdetail, path);
		}
		char detail[200];
		int st = A.wstatus;
		if (WIFSIGNALED(st))
			snprintf(detail, sizeof(detail), "the child was killed by signal %d (%s) during this step",
				 WTERMSIG(st), strsignal(WTERMSIG(st)));
		else
			snprintf(detail, sizeof(detail), "the child exited with code %d during this step",
				 WEXITSTATUS(st));
		lx_out_begin(&A.out, LX_M_ERROR, seq);
		lx_out_u32(&A.out, LX_A_STEP, last_step ? last_step : LX_STEP_PARKED);
		lx_out_u32(&A.out, LX_A_ERRNO, 0);
		lx_out_str(&A.out, LX_A_DETAIL, detail);
		lx_out_u32(&A.out, LX_A_WSTATUS, (uint32_t)st);
		send_out();
		return;
	}
	if (ntim < LX_MAX_ORDER + 1) {
		uint32_t ns = (uint32_t)(t1 - (last_t ? last_t : t0));
		uint16_t ex = LX_STEP_EXEC;
		memcpy(timings + ntim * 8, &ex, 2);
		memset(timings + ntim * 8 + 2, 0, 2);
		memcpy(timings + ntim * 8 + 4, &ns, 4);
		ntim++;
	}
	A.state = ST_RUNNING;
	A.releasable = disarmed;
	lx_out_begin(&A.out, LX_M_RUNNING, seq);
	lx_out_bytes(&A.out, LX_A_TIMING, timings, ntim * 8);
	send_out();
	reap(); /* a workload that already ended is answered on WAIT */
}

/* CGROUPNS: the parked child unshares its cgroup namespace now (after the
 * host's cgroup step), and parks again; one status record answers. */
static void do_cgroupns(uint32_t seq)
{
	static const uint8_t word[4] = { (uint8_t)LX_PARK_CGROUPNS, (uint8_t)(LX_PARK_CGROUPNS >> 8),
					 (uint8_t)(LX_PARK_CGROUPNS >> 16), (uint8_t)(LX_PARK_CGROUPNS >> 24) };
	struct lx_rec rec;
	char d[513] = "";

	reap();
	if (A.state == ST_PARKED && A.exited)
		return send_parked_death(seq);
	if (A.state != ST_PARKED || A.settings_w < 0)
		return send_error(seq, LX_STEP_PROTOCOL, EINVAL, "CGROUPNS: no parked child", NULL);
	if (lx_write_full(A.settings_w, word, 4) < 0 || lx_read_full(A.status_r, &rec, sizeof(rec)) < 0 ||
	    rec.dlen > 512 || (rec.dlen && lx_read_full(A.status_r, d, rec.dlen) < 0)) {
		int err = errno;
		wait_child(1000);
		if (A.exited)
			return send_parked_death(seq);
		return send_error(seq, LX_STEP_PROTOCOL, err, "CGROUPNS: no answer from the parked child", NULL);
	}
	if (rec.kind == LX_REC_FAIL) {
		wait_child(1000); /* it exits after a failure record */
		return send_error(seq, rec.step, rec.err, d, NULL);
	}
	send_simple(LX_M_OK, seq);
}

static void do_request(const struct lx_hdr *h, const uint8_t *payload)
{
	char detail[128];
	struct lx_attr_it it = { payload, h->len };
	struct lx_attrv a;
	uint32_t v;

	/* Anything but RELEASE or a SIGNAL means the runner keeps the workload:
	 * its end is reaped and reported as usual from now on. */
	if (h->type != LX_M_RELEASE && h->type != LX_M_SIGNAL && A.releasable) {
		A.releasable = 0;
		reap();
	}

	switch (h->type) {
	case LX_M_HELLO:
		lx_out_begin(&A.out, LX_M_READY, h->seq);
		lx_out_u32(&A.out, LX_A_VERSION, LX_VERSION);
		lx_out_u32(&A.out, LX_A_PID, (uint32_t)getpid());
		send_out();
		return;
	case LX_M_SPAWN:
		return do_spawn(h->seq, payload, h->len);
	case LX_M_TRACK_CGROUP: {
		char path[4096];
		uint32_t remove_only = 0;
		if (lx_attr_next(&it, &a) != 1 || a.type != LX_A_PATH || a.len == 0 ||
		    lx_attr_str(&a, path, sizeof(path)) < 0 || path[0] != '/')
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "TRACK_CGROUP: bad path", NULL);
		if (lx_attr_next(&it, &a) == 1 && (a.type != LX_A_REMOVE_ONLY || lx_attr_u32(&a, &remove_only) < 0))
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "TRACK_CGROUP: bad flag", NULL);
		if (A.ntracked >= LX_MAX_TRACKED)
			return send_error(h->seq, LX_STEP_PROTOCOL, ENOSPC, "TRACK_CGROUP: too many", NULL);
		A.tracked[A.ntracked] = strdup(path);
		if (!A.tracked[A.ntracked])
			return send_error(h->seq, LX_STEP_PROTOCOL, ENOMEM, "TRACK_CGROUP", NULL);
		A.tracked_remove_only[A.ntracked] = remove_only != 0;
		A.ntracked++;
		return send_simple(LX_M_OK, h->seq);
	}
	case LX_M_PROCEED:
		return do_proceed(h->seq, payload, h->len);
	case LX_M_CGROUPNS:
		return do_cgroupns(h->seq);
	case LX_M_ABORT:
		if (A.state == ST_PARKED) {
			if (!A.exited)
				kill(A.child, SIGKILL);
			wait_child(-1);
			A.state = ST_DONE;
		} else if (A.state == ST_RUNNING) {
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "ABORT: the workload already runs", NULL);
		}
		return send_simple(LX_M_ABORTED, h->seq);
	case LX_M_SIGNAL:
		if (lx_attr_next(&it, &a) != 1 || a.type != LX_A_SIGNO || lx_attr_u32(&a, &v) < 0 || v == 0 ||
		    v >= (uint32_t)NSIG)
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "SIGNAL: bad signal number", NULL);
		if (A.child <= 0 || A.exited)
			return send_error(h->seq, LX_STEP_PROTOCOL, ESRCH, "SIGNAL: no live child", NULL);
		if (kill(A.child, (int)v) < 0)
			return send_error(h->seq, LX_STEP_PROTOCOL, errno, "SIGNAL: kill", NULL);
		return send_simple(LX_M_OK, h->seq);
	case LX_M_LINGER:
		A.linger = 1;
		A.linger_path[0] = 0;
		if (A.linger_dir >= 0) {
			close(A.linger_dir);
			A.linger_dir = -1;
		}
		if (lx_attr_next(&it, &a) == 1) {
			if (a.type != LX_A_PATH || lx_attr_str(&a, A.linger_path, sizeof(A.linger_path)) < 0 ||
			    A.linger_path[0] != '/')
				return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "LINGER: bad path", NULL);
			A.linger_dir = open_linger_dir();
			if (A.linger_dir < 0)
				return send_error(h->seq, LX_STEP_PROTOCOL, errno,
						  "LINGER: the directory of the path is not ours alone", A.linger_path);
		}
		return send_simple(LX_M_OK, h->seq);
	case LX_M_RELEASE:
		/* Only a running workload: a parked one has nothing to run without
		 * us.  Its pdeathsig was disarmed (LX_A_PDEATHSIG 0) by the runner
		 * that releases it; tracked cgroups are the runner's to remove. */
		reap(); /* a releasable workload that already ended is a zombie kept for the subreaper */
		if (A.state != ST_RUNNING || A.exited)
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "RELEASE: no running workload", NULL);
		send_simple(LX_M_OK, h->seq);
		_exit(0);
	case LX_M_WAIT:
		reap();
		if (A.state == ST_DONE && A.exited && A.child > 0)
			return send_end(h->seq);
		if (A.state != ST_RUNNING)
			return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, "WAIT: no running workload", NULL);
		A.wait_pending = 1;
		A.wait_seq = h->seq;
		return;
	default:
		snprintf(detail, sizeof(detail), "unknown request type %#x", h->type);
		return send_error(h->seq, LX_STEP_PROTOCOL, EINVAL, detail, NULL);
	}
}

/* Reads one frame.  Returns 0 on a handled frame, -1 when the channel is gone
 * or the framing is lost. */
static int read_frame(void)
{
	uint8_t raw[LX_HDR_LEN];
	struct lx_hdr h;
	char detail[160];
	if (lx_recv_full(A.ctl, raw, sizeof(raw), &A.passed_fd) < 0)
		return -1;
	lx_hdr_decode(raw, &h);
	if (h.magic != LX_MAGIC) {
		send_error(h.seq, LX_STEP_PROTOCOL, EPROTO, "bad magic: framing lost, stopping", NULL);
		return -1;
	}
	if (h.len > LX_MAX_PAYLOAD) {
		snprintf(detail, sizeof(detail), "frame of %u bytes exceeds the limit of %u", h.len, LX_MAX_PAYLOAD);
		send_error(h.seq, LX_STEP_PROTOCOL, EMSGSIZE, detail, NULL);
		/* Skip the payload to keep the framing. */
		uint8_t sink[4096];
		uint32_t left = h.len;
		while (left) {
			uint32_t n = left < sizeof(sink) ? left : (uint32_t)sizeof(sink);
			if (lx_read_full(A.ctl, sink, n) < 0)
				return -1;
			left -= n;
		}
		return 0;
	}
	uint8_t *payload = malloc(h.len ? h.len : 1);
	if (!payload)
		return -1;
	if (h.len && lx_recv_full(A.ctl, payload, h.len, &A.passed_fd) < 0) {
		free(payload);
		return -1;
	}
	if (h.version != LX_VERSION) {
		snprintf(detail, sizeof(detail), "protocol version %u, this agent speaks %u", h.version, LX_VERSION);
		send_error(h.seq, LX_STEP_PROTOCOL, EPROTO, detail, NULL);
	} else {
		do_request(&h, payload);
	}
	free(payload);
	/* A descriptor belongs to the frame it came with: used by now, or never. */
	if (A.passed_fd >= 0) {
		close(A.passed_fd);
		A.passed_fd = -1;
	}
	return 0;
}

int lx_serve_signals(const sigset_t *mask)
{
	/* The runner forwards SIGINT/SIGHUP itself; a terminal's own SIGINT
	 * reaches the workload directly. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	sigprocmask(SIG_BLOCK, mask, NULL);
	return signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

void lx_serve(int ctl, int sfd, void (*on_signals)(int sfd), int (*on_frame)(int ctl))
{
	for (;;) {
		struct pollfd p[2] = { { ctl, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (p[1].revents & POLLIN)
			on_signals(sfd);
		if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && on_frame(ctl) < 0)
			return;
	}
}

/* SIGTERM to the agent is forwarded to the workload; SIGCHLD reaps. */
static void agent_signals(int sfd)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM && A.child > 0 && !A.exited)
			kill(A.child, SIGTERM);
	}
	reap();
}

static int agent_frame(int ctl)
{
	(void)ctl; /* A.ctl */
	return read_frame();
}

int lx_agent_main(int ctl)
{
	sigset_t mask;
	A.ctl = ctl;
	if (fcntl(A.ctl, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "linx-agent: fd %d is not open: %s\n", A.ctl, strerror(errno));
		return 2;
	}
	/* Orphans of the workload come to us, so that we can end them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	A.sfd = lx_serve_signals(&mask);
	if (A.sfd < 0) {
		fprintf(stderr, "linx-agent: signalfd: %s\n", strerror(errno));
		return 1;
	}
	lx_serve(A.ctl, A.sfd, agent_signals, agent_frame);
	A.releasable = 0;
	orphaned();
}

int main(int argc, char **argv)
{
	int ctl = 3, zygote = 0;
	A.settings_w = A.status_r = A.passed_fd = A.linger_dir = -1;
	A.grace_ms = 2000;
	lx_fault_init(getenv("LINX_FAULT"));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
			ctl = atoi(argv[++i]);
		else if (strcmp(argv[i], "--zygote") == 0)
			zygote = 1;
		else if (strcmp(argv[i], "--version") == 0) {
			printf("linx-agent protocol %u\n", LX_VERSION);
			return 0;
		} else {
			fprintf(stderr, "usage: linx-agent [--fd N] [--zygote]\n");
			return 2;
		}
	}
	return zygote ? lx_zygote(ctl) : lx_agent_main(ctl);
}
