/* The cwd step: umask and chdir as the final identity, so that the
 * permission checks of the chdir are the workload's own. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_cwd_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (s->has_umask)
		umask((mode_t)s->umask);
	if (s->cwd && chdir(s->cwd) < 0)
		return lx_fail(e, LX_STEP_CWD, errno, "chdir %s", s->cwd);
	return 0;
}
