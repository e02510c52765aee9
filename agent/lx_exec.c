/* The exec step: execve, last.  Success is seen by the agent as EOF on the
 * close-on-exec status pipe without a failure record (lx_child.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_exec_in_child(const struct lx_settings *s, struct lx_err *e)
{
	execve(s->exec_path, s->argv, s->envp);
	return lx_fail(e, LX_STEP_EXEC, errno, "%s", s->exec_path);
}
