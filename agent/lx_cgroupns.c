/* The cgroupns step: the cgroup namespace is unshared by the child, late. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_cgroupns_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	/* After the host placed us in our cgroup: the namespace's root is the
	 * cgroup we are in now, so the workload sees its own cgroup as "/". */
	if (unshare(CLONE_NEWCGROUP) < 0)
		return lx_fail(e, LX_STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP)");
	return 0;
}
