/* The signals step: every disposition default and the mask empty, because
 * both survive execve for ignored and blocked signals (signal(7)): the agent
 * blocks and ignores a few of its own, and the caller may have ignored or
 * blocked others.  Raw rt_sigaction and rt_sigprocmask, because glibc refuses
 * signals 32 and 33 (its own) and would leave them ignored.  SIG_DFL is 0, so
 * an all-zero kernel struct sigaction is the default on every architecture.
 * Before seccomp, which may forbid rt_sigaction. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

/* The kernel's sigset_t, in bytes (8 where there are 64 signals). */
#define LX_SIGSET_BYTES ((_NSIG - 1) / 8)

int lx_signals_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	/* Larger than any architecture's struct sigaction: handler, flags,
	 * restorer and mask, all zero. */
	static const unsigned long dfl[8];
	static const unsigned long empty[4];
	for (int sig = 1; sig < _NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (syscall(SYS_rt_sigaction, sig, dfl, (void *)0, LX_SIGSET_BYTES) < 0)
			return lx_fail(e, LX_STEP_SIGNALS, errno, "rt_sigaction(%d, SIG_DFL)", sig);
	}
	if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, empty, (void *)0, LX_SIGSET_BYTES) < 0)
		return lx_fail(e, LX_STEP_SIGNALS, errno, "rt_sigprocmask(SIG_SETMASK, empty)");
	return 0;
}
