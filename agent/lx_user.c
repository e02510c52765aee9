/* The identity switch: setgroups, setresgid, setresuid (setresuid(2)), in that
 * order: setgroups and setresgid need CAP_SETGID, which the switch away from
 * uid 0 clears from the effective set (capabilities(7), "Effect of user ID
 * changes on capabilities").  Runs after the bounding set was dropped (that
 * needs CAP_SETPCAP) and before the thread capability sets are written. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_user_in_child(const struct lx_settings *s, struct lx_err *e)
{
	/* Without KEEPCAPS the switch away from uid 0 empties the permitted set,
	 * and capset could then grant nothing; with it the permitted set stays
	 * (effective and ambient are cleared all the same) and the capabilities
	 * step narrows it to exactly what the spec declares.  As runc. */
	if (s->has_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "prctl(PR_SET_KEEPCAPS)");
	if (setgroups(s->ngroups, s->groups) < 0) {
		/* EPERM with no groups asked for: setgroups is denied in this user
		 * namespace (user_namespaces(7)), where the list is empty already, or
		 * the runner is unprivileged and runs the workload as itself (plan.py
		 * refuses any other identity then), so it keeps the caller's groups
		 * as any program it starts would. */
		if (!(errno == EPERM && s->ngroups == 0))
			return lx_fail(e, LX_STEP_USER, errno, "setgroups (%zu groups)", s->ngroups);
	}
	if (s->has_gid && setresgid(s->gid, s->gid, s->gid) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "setresgid %u (is the gid mapped?)", s->gid);
	if (s->has_uid && setresuid(s->uid, s->uid, s->uid) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "setresuid %u (is the uid mapped?)", s->uid);
	/* Off again at once: nothing later may keep capabilities across another
	 * uid change (execve clears the flag anyway). */
	if (s->has_caps && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "prctl(PR_SET_KEEPCAPS, 0)");
	return 0;
}
