/* The child: parked on a blocking read until PROCEED, then the steps in the
 * order given, then execve.  Single-threaded copy of the agent (no CLONE_VM),
 * so ordinary libc is safe here.  Everything it does between PROCEED and
 * execve is a listed step (linx_spec/steps.py), one file each (lx_steps.h);
 * before PROCEED it only arms PR_SET_PDEATHSIG and waits (part of spawn). */
#define _GNU_SOURCE
#include "lx_child.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_fault.h"
#include "lx_proto.h"
#include "lx_settings.h"
#include "lx_steps.h"

typedef int (*lx_step_fn)(const struct lx_settings *s, struct lx_err *e);

static const struct {
	uint16_t id;
	lx_step_fn fn;
} child_steps[] = {
	{ LX_STEP_SESSION, lx_session_in_child },
	{ LX_STEP_NS_ROOT, lx_ns_root_in_child },
	{ LX_STEP_LOOPBACK, lx_loopback_in_child },
	{ LX_STEP_CGROUPNS, lx_cgroupns_in_child },
	{ LX_STEP_TIME, lx_time_in_child },
	{ LX_STEP_HOSTNAME, lx_hostname_in_child },
	{ LX_STEP_MOUNTS, lx_mounts_in_child },
	{ LX_STEP_BOUNDING, lx_bounding_in_child },
	{ LX_STEP_USER, lx_user_in_child },
	{ LX_STEP_CAPABILITIES, lx_capabilities_in_child },
	{ LX_STEP_CWD, lx_cwd_in_child },
	{ LX_STEP_KEYRING, lx_keyring_in_child },
	{ LX_STEP_SIGNALS, lx_signals_in_child },
	{ LX_STEP_PDEATHSIG, lx_pdeathsig_in_child },
	{ LX_STEP_CLOSE_FDS, lx_close_fds_in_child },
	{ LX_STEP_NO_NEW_PRIVS, lx_no_new_privs_in_child },
	{ LX_STEP_SECCOMP, lx_seccomp_in_child },
	{ LX_STEP_INIT, lx_init_in_child },
	{ LX_STEP_EXEC, lx_exec_in_child },
};

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
	if (r.dlen > 512)
		r.dlen = 512;
	memcpy(buf, &r, sizeof(r));
	if (r.dlen)
		memcpy(buf + sizeof(r), detail, r.dlen);
	/* One write: the pipe keeps records whole (<= PIPE_BUF). */
	ssize_t n = write(fd, buf, sizeof(r) + r.dlen);
	(void)n;
}

struct lx_steplog *lx_steplog;

/* A step begins: into the shared step log while the child has it, else (the
 * seccomp, init and exec steps, a full log, no log) a record on the pipe.  The
 * log goes before the seccomp or init step: its munmap is then never filtered,
 * and pid 1 of the init step does not keep it. */
static void begin(int status_fd, uint16_t step)
{
	if (lx_steplog && (step == LX_STEP_SECCOMP || step == LX_STEP_INIT)) {
		munmap(lx_steplog, LX_STEPLOG_BYTES);
		lx_steplog = NULL;
	}
	if (lx_steplog && step != LX_STEP_EXEC) {
		uint32_t n = lx_steplog->n;
		if (n < LX_STEPLOG_MAX) {
			lx_steplog->rec[n].step = step;
			lx_steplog->rec[n].t_ns = now_ns();
			__atomic_store_n(&lx_steplog->n, n + 1, __ATOMIC_RELEASE);
			return;
		}
	}
	record(status_fd, LX_REC_BEGIN, step, 0, NULL);
}

/* The step's own function, behind the fault hook of the reliability tests. */
static int run_step(uint16_t step, const struct lx_settings *s, struct lx_err *e)
{
	if (lx_fault_at(step, -1, e) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(child_steps) / sizeof(child_steps[0]); i++)
		if (child_steps[i].id == step)
			return child_steps[i].fn(s, e);
	return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "unknown child step id %u", step);
}

static __attribute__((noreturn)) void fail(int status_fd, const struct lx_err *e)
{
	record(status_fd, LX_REC_FAIL, (uint16_t)e->step, e->err, e->detail);
	_exit(127);
}

void lx_child_main(int settings_fd, int status_fd)
{
	struct lx_err e = { 0, 0, "" };
	struct lx_settings s;
	uint8_t lenbuf[4];
	uint32_t len;
	uint8_t *payload;

	/* If the agent dies, so does the parked child.  Checked again after
	 * the read: a death before prctl leaves the pipe at EOF.  (The identity
	 * switch clears it: the pdeathsig step arms it again.) */
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	/* Parked: created, not yet exec'd, until PROCEED (or EOF: abort).  The
	 * one word that is not a length asks for the cgroup namespace now. */
	for (;;) {
		if (lx_read_full(settings_fd, lenbuf, 4) < 0)
			_exit(0);
		len = (uint32_t)lenbuf[0] | ((uint32_t)lenbuf[1] << 8) | ((uint32_t)lenbuf[2] << 16) |
		      ((uint32_t)lenbuf[3] << 24);
		if (len != LX_PARK_CGROUPNS)
			break;
		if (lx_cgroupns_parked(&e) < 0)
			fail(status_fd, &e);
		record(status_fd, LX_REC_BEGIN, LX_STEP_CGROUPNS, 0, NULL);
	}
	payload = malloc(len ? len : 1);
	if (!payload || lx_read_full(settings_fd, payload, len) < 0)
		_exit(0);
	close(settings_fd);
	if (lx_settings_parse(payload, len, &s, &e) < 0)
		fail(status_fd, &e);
	for (size_t i = 0; i < s.norder; i++) {
		if (s.order[i] == LX_STEP_EXEC)
			continue; /* always last, below */
		begin(status_fd, s.order[i]);
		if (run_step(s.order[i], &s, &e) < 0)
			fail(status_fd, &e);
	}
	begin(status_fd, LX_STEP_EXEC);
	run_step(LX_STEP_EXEC, &s, &e);
	fail(status_fd, &e);
}
