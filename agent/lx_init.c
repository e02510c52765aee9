/* The init step (process.init, as `docker --init`/tini, `podman --init`/
 * catatonit): pid 1 of the new pid namespace forks; its child returns and goes
 * on to execve the program; pid 1 stays a tiny loop that
 *   - forwards every signal it receives to the program (tini's default, not
 *     -g: the program's own children are left to it; when the program ends,
 *     pid 1 exits and the kernel SIGKILLs whatever is left in the namespace),
 *   - reaps every orphan re-parented to it (wait4(-1)),
 *   - exits with the program's status: its exit code, or 128+N when signal N
 *     killed it, as a shell does (pid 1 cannot re-raise a default-action
 *     signal on itself inside its namespace: the kernel drops it).
 * It runs after seccomp, so pid 1 is filtered as the program is (an unfiltered
 * pid 1 of the same uid could be ptraced into running anything).  The
 * syscalls it makes after the filter is in: clone and set_robust_list (fork),
 * rt_sigprocmask, close_range, rt_sigtimedwait, wait4, kill, exit_group;
 * linx_spec/seccomp/compile.py check_child_needs refuses a filter that breaks
 * one of them (rule "process.init").
 * Signals are blocked in pid 1 and taken with sigtimedwait: a blocked signal
 * is queued even for a namespace's init (which the kernel otherwise shields
 * from signals it has no handler for: pid_namespaces(7)).  The synchronous
 * ones (SEGV, BUS, ILL, FPE, TRAP, SYS, ABRT) stay unblocked so a fault in
 * pid 1 kills it, and TTIN/TTOU too, as tini. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

static const int lx_init_unblocked[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT,
					 SIGTTIN, SIGTTOU };

static __attribute__((noreturn)) void lx_init_loop(pid_t program, const sigset_t *set)
{
	/* The status pipe and every other fd but 0-2: the runner sees the
	 * program's execve as EOF on that pipe, which pid 1 must not hold open. */
	if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	for (;;) {
		siginfo_t si;
		int sig = sigtimedwait(set, &si, NULL);
		if (sig < 0)
			continue; /* EINTR (a stop/continue); nothing else is expected */
		if (sig != SIGCHLD) {
			kill(program, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (pid != program)
				continue; /* an orphan: reaped, nothing more */
			if (WIFSIGNALED(status))
				_exit(128 + WTERMSIG(status));
			_exit(WEXITSTATUS(status));
		}
	}
}

int lx_init_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	sigset_t all, old;
	sigfillset(&all);
	for (size_t i = 0; i < sizeof(lx_init_unblocked) / sizeof(lx_init_unblocked[0]); i++)
		sigdelset(&all, lx_init_unblocked[i]);
	/* Blocked before fork: a signal or a child's death between the two
	 * stays pending for the loop. */
	if (sigprocmask(SIG_BLOCK, &all, &old) < 0)
		return lx_fail(e, LX_STEP_INIT, errno, "rt_sigprocmask(SIG_BLOCK, all)");
	pid_t program = fork();
	if (program < 0)
		return lx_fail(e, LX_STEP_INIT, errno, "fork");
	if (program == 0) {
		/* The program gets the empty mask the signals step left. */
		if (sigprocmask(SIG_SETMASK, &old, NULL) < 0)
			return lx_fail(e, LX_STEP_INIT, errno, "rt_sigprocmask(SIG_SETMASK, old)");
		return 0;
	}
	lx_init_loop(program, &all);
}
