/* The no_new_privs step: after every step that needs privileges, before
 * seccomp (an unprivileged filter install requires it). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/prctl.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_no_new_privs_in_child(const struct lx_settings *s, struct lx_err *e)
{
	/* Inherited across fork and execve and never unset: setuid bits and file
	 * capabilities of anything the workload runs grant nothing (prctl(2)). */
	if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_NO_NEW_PRIVS, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}
