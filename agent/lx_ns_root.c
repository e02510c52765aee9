/* The ns_root step.  In a new user namespace whose map does not contain the
 * runner's own ids (say 0 -> 200000), the child's ids are unmapped there:
 * files it creates would fail with EOVERFLOW and it would not be "root"
 * inside.  Become uid/gid 0 of the namespace first, as runc's nsexec does,
 * when 0 is mapped; in the initial user namespace, or already 0, nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_proto.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_ns_root_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	char buf[64];
	if (lx_read_file("/proc/self/uid_map", buf, sizeof(buf)) <= 0)
		return 0;
	unsigned long inside, outside, count;
	if (sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
	    count == 4294967295UL)
		return 0; /* the initial user namespace */
	if (getuid() == 0 && getgid() == 0)
		return 0;
	if (setresgid(0, 0, 0) < 0 && errno != EINVAL)
		return lx_fail(e, LX_STEP_NS_ROOT, errno, "setresgid 0 in the new user namespace");
	if (setresuid(0, 0, 0) < 0 && errno != EINVAL)
		return lx_fail(e, LX_STEP_NS_ROOT, errno, "setresuid 0 in the new user namespace");
	return 0;
}
