/* The child: parked on a blocking read until PROCEED, then the steps in the
 * order given, then execve.  Single-threaded copy of the agent (no CLONE_VM),
 * so ordinary libc is safe here. */
#define _GNU_SOURCE
#include "lx_child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lx_steps.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record(int fd, uint16_t kind, uint16_t step, int err, const char *detail)
{
	struct lx_rec r = { kind, step, err, now_ns(), detail ? (uint32_t)strlen(detail) : 0 };
	char buf[sizeof(r) + 512];
	memcpy(buf, &r, sizeof(r));
	if (r.dlen > 512)
		r.dlen = 512;
	if (r.dlen)
		memcpy(buf + sizeof(r), detail, r.dlen);
	memcpy(buf, &r, sizeof(r));
	/* One write: the pipe keeps records whole (<= PIPE_BUF). */
	ssize_t n = write(fd, buf, sizeof(r) + r.dlen);
	(void)n;
}

/* In a new user namespace whose map does not contain the runner's own ids
 * (say 0 -> 200000), the child's ids are unmapped there: files it creates
 * would fail with EOVERFLOW and it would not be "root" inside.  Become uid/gid
 * 0 of the namespace first, as runc's nsexec does, when 0 is mapped. */
static int become_ns_root(struct lx_err *e)
{
	char buf[64] = "";
	int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	unsigned long inside, outside, count;
	if (sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
	    count == 4294967295UL)
		return 0; /* the initial user namespace */
	if (getuid() == 0 && getgid() == 0)
		return 0;
	if (setresgid(0, 0, 0) < 0 && errno != EINVAL)
		return lx_fail(e, LX_STEP_USER, errno, "setresgid 0 in the new user namespace");
	if (setresuid(0, 0, 0) < 0 && errno != EINVAL)
		return lx_fail(e, LX_STEP_USER, errno, "setresuid 0 in the new user namespace");
	return 0;
}

static int cwd_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (s->has_umask)
		umask((mode_t)s->umask);
	if (s->cwd && chdir(s->cwd) < 0)
		return lx_fail(e, LX_STEP_CWD, errno, "chdir %s", s->cwd);
	return 0;
}

/* Fault injection for the reliability tests (tests/integration/test_faults.py):
 * LINX_FAULT=fail:ID makes child step ID fail with EIO; pause:ID stops the
 * child there (it says so on stderr) until it is killed.  Read by the agent
 * at start; inert when unset. */
int lx_fault_step = -1;
int lx_fault_pause;

static int run_step(uint16_t step, const struct lx_settings *s, struct lx_err *e)
{
	if (lx_fault_step == step) {
		if (!lx_fault_pause)
			return lx_fail(e, step, EIO, "injected fault (LINX_FAULT)");
		dprintf(2, "linx-fault: paused at step %u\n", step);
		for (;;)
			pause();
	}
	switch (step) {
	case LX_STEP_LOOPBACK:
		return lx_loopback_in_child(s, e);
	case LX_STEP_CGROUPNS:
		return lx_cgroupns_in_child(s, e);
	case LX_STEP_HOSTNAME:
		return lx_hostname_in_child(s, e);
	case LX_STEP_MOUNTS:
		return lx_mounts_in_child(s, e);
	case LX_STEP_BOUNDING:
		return lx_bounding_in_child(s, e);
	case LX_STEP_USER:
		return lx_user_in_child(s, e);
	case LX_STEP_CAPABILITIES:
		return lx_capabilities_in_child(s, e);
	case LX_STEP_CWD:
		return cwd_in_child(s, e);
	case LX_STEP_NO_NEW_PRIVS:
		return lx_no_new_privs_in_child(s, e);
	case LX_STEP_SECCOMP:
		return lx_seccomp_in_child(s, e);
	default:
		return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "unknown child step id %u", step);
	}
}

void lx_child_main(int settings_fd, int status_fd)
{
	sigset_t all;
	struct lx_err e = { 0, 0, "" };
	struct lx_settings s;
	uint8_t lenbuf[4];
	uint32_t len;
	uint8_t *payload;

	/* The agent blocks signals for its signalfd and ignores a few; the
	 * workload must start with the defaults (masks survive execve). */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* If the agent dies, so does the parked child.  Checked again after
	 * the read: a death before prctl leaves the pipe at EOF. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	/* Parked: created, not yet exec'd, until PROCEED (or EOF: abort). */
	if (lx_read_full(settings_fd, lenbuf, 4) < 0)
		_exit(0);
	len = (uint32_t)lenbuf[0] | ((uint32_t)lenbuf[1] << 8) | ((uint32_t)lenbuf[2] << 16) |
	      ((uint32_t)lenbuf[3] << 24);
	payload = malloc(len ? len : 1);
	if (!payload || lx_read_full(settings_fd, payload, len) < 0)
		_exit(0);
	close(settings_fd);
	if (lx_settings_parse(payload, len, &s, &e) < 0) {
		record(status_fd, LX_REC_FAIL, (uint16_t)e.step, e.err, e.detail);
		_exit(127);
	}
	/* A session of its own (detached), with the pty as controlling terminal
	 * (-t): so that Ctrl-C on the terminal reaches the workload's group. */
	if (s.session && setsid() < 0) {
		record(status_fd, LX_REC_FAIL, LX_STEP_EXEC, errno, "setsid");
		_exit(127);
	}
	if (s.session == 2 && ioctl(0, TIOCSCTTY, 0) < 0) {
		record(status_fd, LX_REC_FAIL, LX_STEP_EXEC, errno, "ioctl(TIOCSCTTY) on stdin");
		_exit(127);
	}
	if (become_ns_root(&e) < 0) {
		record(status_fd, LX_REC_FAIL, (uint16_t)e.step, e.err, e.detail);
		_exit(127);
	}
	for (size_t i = 0; i < s.norder; i++) {
		record(status_fd, LX_REC_BEGIN, s.order[i], 0, NULL);
		if (run_step(s.order[i], &s, &e) < 0) {
			record(status_fd, LX_REC_FAIL, (uint16_t)e.step, e.err, e.detail);
			_exit(127);
		}
	}
	/* The identity switch clears the parent-death signal (commit_creds);
	 * set it again so that a dying agent still takes the workload along. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Nothing but 0, 1, 2 may reach the workload.  CLOEXEC rather than
	 * close, so the status pipe stays open until execve succeeds. */
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < 4096; fd++)
			if (fd != status_fd)
				close(fd);
	}
	record(status_fd, LX_REC_BEGIN, LX_STEP_EXEC, 0, NULL);
	if (lx_fault_step == LX_STEP_EXEC) {
		if (lx_fault_pause) {
			dprintf(2, "linx-fault: paused at step %u\n", LX_STEP_EXEC);
			for (;;)
				pause();
		}
		record(status_fd, LX_REC_FAIL, LX_STEP_EXEC, EIO, "injected fault (LINX_FAULT)");
		_exit(127);
	}
	execve(s.exec_path, s.argv, s.envp);
	record(status_fd, LX_REC_FAIL, LX_STEP_EXEC, errno, s.exec_path);
	_exit(127);
}
