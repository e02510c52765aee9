/* The zygote: a linx-agent started once per linx_spec.Runner, which forks one
 * agent per workload instead of the runner starting the agent binary for
 * each.  A fork of this small static process costs a fraction of a spawn and
 * an exec (bench/README.md, "Fifth round").  The forked agent is the agent of
 * lx_main.c from its first instruction: it gets its channel as fd 3 and its
 * stdio as 0-2, exactly what a spawned one gets, and is then the workload's
 * parent and reaper.  The zygote only forks, hands the runner a pidfd of the
 * new agent (so that the runner can wait for its end: it is not the runner's
 * child) and reaps the agents that exit.
 *
 * The zygote holds nothing of any workload: no namespace, no cgroup, no fd
 * beyond the ones in transit.  When its channel closes (the runner closed it,
 * or died) it exits; the agents it forked run on, each stopping its workload
 * when its own channel closes, as a spawned agent does.  The exchange is in
 * lx_proto.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lx_proto.h"
#include "lx_steps.h"
#include "lx_zygote.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
/* A FORK frame is a header and one attribute; anything longer is not ours. */
#define LX_FORK_MAX_PAYLOAD 64u

static struct lx_out out;

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static int reply_error(int ctl, uint32_t seq, int err, const char *detail)
{
	lx_out_begin(&out, LX_M_ERROR, seq);
	lx_out_u32(&out, LX_A_STEP, LX_STEP_SPAWN);
	lx_out_u32(&out, LX_A_ERRNO, (uint32_t)err);
	lx_out_str(&out, LX_A_DETAIL, detail);
	return lx_out_send(&out, ctl);
}

/* In the forked child: become the agent of fds[0], with fds[1..] as the stdio
 * the mask names.  Every fd is first copied above 3, so that no dup2 below
 * overwrites a source a later one still needs. */
static __attribute__((noreturn)) void become_agent(int ctl, int sfd, int *fds, size_t nfds, uint32_t mask)
{
	sigset_t none;
	close(ctl);
	close(sfd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);
	int high[LX_MAX_PASSED_FDS];
	for (size_t i = 0; i < nfds; i++) {
		high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
		if (high[i] < 0)
			_exit(127);
		close(fds[i]);
	}
	if (dup2(high[0], 3) < 0)
		_exit(127);
	size_t next = 1;
	for (int target = 0; target < 3; target++) {
		if (mask & (1u << target)) {
			if (dup2(high[next++], target) < 0)
				_exit(127);
		} else {
			close(target); /* the runner's own was closed: so is the agent's */
		}
	}
	for (size_t i = 0; i < nfds; i++)
		close(high[i]);
	_exit(lx_agent_main(3));
}

/* One request.  Returns -1 when the channel is gone or its framing lost. */
static int handle(int ctl, int sfd)
{
	uint8_t raw[LX_HDR_LEN];
	uint8_t payload[LX_FORK_MAX_PAYLOAD];
	int fds[LX_MAX_PASSED_FDS];
	size_t nfds = 0;
	struct lx_hdr h;
	char detail[160];
	if (lx_recv_fds(ctl, raw, sizeof(raw), fds, LX_MAX_PASSED_FDS, &nfds) < 0)
		goto lost;
	lx_hdr_decode(raw, &h);
	if (h.magic != LX_MAGIC || h.len > sizeof(payload)) {
		close_fds(fds, nfds);
		reply_error(ctl, h.seq, EPROTO, "not a FORK frame: framing lost, stopping");
		return -1;
	}
	if (h.len && lx_recv_fds(ctl, payload, h.len, fds, LX_MAX_PASSED_FDS, &nfds) < 0)
		goto lost;
	if (h.version != LX_VERSION || h.type != LX_M_FORK) {
		snprintf(detail, sizeof(detail), "the zygote answers FORK of version %u only (got type %#x, version %u)",
			 LX_VERSION, h.type, h.version);
		close_fds(fds, nfds); /* before the answer: once it is read, nothing of the request is held */
		reply_error(ctl, h.seq, EPROTO, detail);
		return 0;
	}
	uint32_t mask = 0;
	struct lx_attr_it it = { payload, h.len };
	struct lx_attrv a;
	int r;
	while ((r = lx_attr_next(&it, &a)) == 1) {
		if (a.type != LX_A_STDIO || lx_attr_u32(&a, &mask) < 0 || mask > 7) {
			r = -1;
			break;
		}
	}
	size_t want = 1 + (size_t)__builtin_popcount(mask);
	if (r < 0 || nfds != want) {
		snprintf(detail, sizeof(detail), "FORK with stdio mask %#x wants %zu descriptors, got %zu%s", mask, want,
			 nfds, r < 0 ? " (bad attribute)" : "");
		close_fds(fds, nfds);
		reply_error(ctl, h.seq, EINVAL, detail);
		return 0;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int err = errno;
		close_fds(fds, nfds);
		reply_error(ctl, h.seq, err, "fork an agent");
		return 0;
	}
	if (pid == 0)
		become_agent(ctl, sfd, fds, nfds, mask);
	close_fds(fds, nfds);
	/* Before the agent can be reaped (only this loop reaps), so the pid is still ours. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		int err = errno;
		/* Without a pidfd the runner cannot wait for this agent: it has cloned
		 * nothing yet (that takes a SPAWN), so it goes at once. */
		kill(pid, SIGKILL);
		reply_error(ctl, h.seq, err, "pidfd_open of the forked agent");
		return 0;
	}
	lx_out_begin(&out, LX_M_FORKED, h.seq);
	lx_out_u32(&out, LX_A_PID, (uint32_t)pid);
	r = lx_out_send_fd(&out, ctl, pidfd);
	close(pidfd);
	return r < 0 ? -1 : 0;
lost:
	close_fds(fds, nfds);
	return -1;
}

/* Every fd but 0-2 and ctl: what the runner let this process inherit is
 * not for the agents it forks (their children close all fds before exec too,
 * in the close_fds step; this keeps the zygote itself from holding them). */
static void close_inherited(int ctl)
{
	int lo = 3;
	if (ctl >= lo) {
		if (ctl > lo && syscall(SYS_close_range, lo, ctl - 1, 0) < 0)
			for (int fd = lo; fd < ctl; fd++)
				close(fd);
		lo = ctl + 1;
	}
	if (syscall(SYS_close_range, lo, ~0U, 0) < 0) {
		struct rlimit rl;
		long hi = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (long)rl.rlim_cur : 65536;
		for (long fd = lo; fd < hi; fd++)
			close((int)fd);
	}
}

static void reap_all(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static int zygote_sfd = -1;

static void zygote_signals(int sfd)
{
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof(si)) == sizeof(si))
		;
	reap_all();
}

static int zygote_frame(int ctl)
{
	return handle(ctl, zygote_sfd);
}

int lx_zygote(int ctl)
{
	sigset_t mask;
	if (fcntl(ctl, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "linx-agent --zygote: fd %d is not open: %s\n", ctl, strerror(errno));
		return 2;
	}
	close_inherited(ctl);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	zygote_sfd = lx_serve_signals(&mask);
	if (zygote_sfd < 0) {
		fprintf(stderr, "linx-agent --zygote: signalfd: %s\n", strerror(errno));
		return 1;
	}
	lx_serve(ctl, zygote_sfd, zygote_signals, zygote_frame);
	/* The agents still running are reparented and carry on. */
	reap_all();
	return 0;
}
