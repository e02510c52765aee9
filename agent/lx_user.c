/* The identity switch: setgroups, setresgid, setresuid (man 2 setresuid).
 * Runs after the bounding set was dropped (needs CAP_SETPCAP) and before the
 * thread capability sets are written (the uid change would clear them). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lx_child.h"
#include "lx_steps.h"

static int setgroups_denied(void)
{
	char buf[16] = "";
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && strncmp(buf, "deny", 4) == 0;
}

int lx_user_in_child(const struct lx_settings *s, struct lx_err *e)
{
	/* Keep the permitted set across a switch away from uid 0; the
	 * capabilities step then sets exactly what the spec declares. */
	if (s->has_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "prctl(PR_SET_KEEPCAPS)");
	if (setgroups(s->ngroups, s->groups) < 0) {
		/* With setgroups denied (unprivileged user namespace) an empty
		 * list is what the workload has anyway. */
		if (!(errno == EPERM && s->ngroups == 0 && setgroups_denied()))
			return lx_fail(e, LX_STEP_USER, errno, "setgroups (%zu groups)", s->ngroups);
	}
	if (s->has_gid && setresgid(s->gid, s->gid, s->gid) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "setresgid %u (is the gid mapped?)", s->gid);
	if (s->has_uid && setresuid(s->uid, s->uid, s->uid) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "setresuid %u (is the uid mapped?)", s->uid);
	if (s->has_caps && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return lx_fail(e, LX_STEP_USER, errno, "prctl(PR_SET_KEEPCAPS, 0)");
	return 0;
}
