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

/* Mark one fd close-on-exec; EBADF (not open) is not an error. */
static int lx_cloexec(int fd, struct lx_err *e)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags >= 0 && !(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
		return lx_fail(e, LX_STEP_CLOSE_FDS, errno, "fcntl(%d, F_SETFD, FD_CLOEXEC)", fd);
	return 0;
}

/* The open fds from /proc/self/fd, read with getdents64 into a stack buffer
 * (no allocation).  Returns 1 when the listing was read whole, 0 when it
 * could not be (no /proc, or a filter refusing openat/getdents64), -1 on a
 * failure to mark an fd. */
static int lx_cloexec_listed(int dirfd, struct lx_err *e)
{
	char buf[4096];
	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
		if (n < 0)
			return 0;
		if (n == 0)
			return 1;
		for (long off = 0; off < n;) {
			struct { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
			off += d->reclen;
			int fd = 0, digits = 0;
			for (const char *c = d->name; *c >= '0' && *c <= '9' && fd < 1 << 24; c++, digits++)
				fd = fd * 10 + (*c - '0');
			if (digits == 0 || d->name[digits] != 0 || fd < 3 || fd == dirfd)
				continue;
			if (lx_cloexec(fd, e) < 0)
				return -1;
		}
	}
}

int lx_close_fds_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	/* Any failure of close_range falls back to fd by fd: ENOSYS before 5.11,
	 * EINVAL without the flag (5.10), and whatever errno a seccomp profile
	 * installed before this step gives it (an OCI profile without
	 * noNewPrivileges is installed early, as runc does, and may not allow
	 * close_range; runc's own fallback uses fcntl too). */
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return 0;
	int dirfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd >= 0) {
		int r = lx_cloexec_listed(dirfd, e);
		close(dirfd);
		if (r != 0)
			return r < 0 ? -1 : 0;
	}
	struct rlimit rl;
	int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1048576 ? (int)rl.rlim_cur : 1048576;
	for (int fd = 3; fd < max; fd++)
		if (lx_cloexec(fd, e) < 0)
			return -1;
	return 0;
}
