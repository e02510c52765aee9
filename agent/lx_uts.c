/* hostname and domainname of a new uts namespace; cgroupns unshared late. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "lx_child.h"
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

int lx_hostname_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "sethostname %s", s->hostname);
	if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "setdomainname %s", s->domainname);
	return 0;
}
