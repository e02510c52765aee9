/* The pdeathsig step.  The child sets PR_SET_PDEATHSIG when it is cloned (so
 * a dying agent takes the parked child along), but the identity switch and
 * the capability sets clear it (commit_creds, kernel/cred.c): set it again
 * after them, before seccomp, which may forbid prctl.  An OCI runtime's
 * container outlives the agent (RELEASE): there it is disarmed (signal 0),
 * clearing also what the clone armed when the identity did not change. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_pdeathsig_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (prctl(PR_SET_PDEATHSIG, (unsigned long)s->pdeathsig, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_PDEATHSIG, errno, "prctl(PR_SET_PDEATHSIG, %u)", s->pdeathsig);
	return 0;
}
