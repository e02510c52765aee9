/* The close_fds step: nothing but 0, 1, 2 may reach the workload (a leaked fd
 * is a way out: CVE-2024-21626).  Close-on-exec rather than close, so the
 * status pipe stays open until execve succeeds, and so that the steps after
 * this one keep theirs.  close_range(2) needs Linux 5.11; before it, every fd
 * below the limit one by one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int lx_close_fds_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return 0;
	if (errno != ENOSYS && errno != EINVAL)
		return lx_fail(e, LX_STEP_CLOSE_FDS, errno, "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)");
	struct rlimit rl;
	int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1048576 ? (int)rl.rlim_cur : 1048576;
	for (int fd = 3; fd < max; fd++) {
		int flags = fcntl(fd, F_GETFD);
		if (flags >= 0 && !(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return lx_fail(e, LX_STEP_CLOSE_FDS, errno, "fcntl(%d, F_SETFD, FD_CLOEXEC)", fd);
	}
	return 0;
}
