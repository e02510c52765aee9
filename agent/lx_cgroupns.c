/* The cgroupns step: the cgroup namespace is unshared by the child, late. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

/* Set in the child when an OCI `create` had it unshare while parked. */
static int unshared_parked;

int lx_cgroupns_parked(struct lx_err *e)
{
	/* Asked after the host placed us in our cgroups, as the step itself: an OCI
	 * container is in all its namespaces once `create` returns (runc's nsexec
	 * unshares it before its init parks), runtime-tools checks it then. */
	if (unshared_parked)
		return 0;
	if (unshare(CLONE_NEWCGROUP) < 0)
		return lx_fail(e, LX_STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP) while parked");
	unshared_parked = 1;
	return 0;
}

int lx_cgroupns_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	if (unshared_parked)
		return 0; /* a second unshare would make a new namespace: the one seen at create must stay */
	/* After the host placed us in our cgroup: the namespace's root is the
	 * cgroup we are in now, so the workload sees its own cgroup as "/". */
	if (unshare(CLONE_NEWCGROUP) < 0)
		return lx_fail(e, LX_STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP)");
	return 0;
}
