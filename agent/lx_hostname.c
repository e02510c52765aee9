/* The hostname step: hostname and domainname of a new (or joined) uts namespace. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_hostname_in_child(const struct lx_settings *s, struct lx_err *e)
{
	/* A joined uts namespace is changed (as runc), never the runtime's own. */
	if (lx_ns_guard_check(LX_GUARD_UTS, LX_STEP_HOSTNAME, "hostname", e) < 0)
		return -1;
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "sethostname %s", s->hostname);
	if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "setdomainname %s", s->domainname);
	return 0;
}
