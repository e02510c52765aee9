/* The time step: a time namespace of the workload's own, with its clock
 * offsets (time_namespaces(7)).  The offsets of a time namespace can be written
 * only while no process is in it, so, as runc's nsexec does, the child
 * unshares it (it then applies to its children, and since Linux 6.0 to its own
 * next execve: "fs/exec: switch timens when a task gets a new mm") and writes
 * /proc/self/timens_offsets, which names that not-yet-entered namespace.
 * After ns_root: CAP_SYS_TIME in the user namespace that owns the new time
 * namespace (the workload's own, when it has one) is needed for the write. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

int lx_time_in_child(const struct lx_settings *s, struct lx_err *e)
{
	char text[128];
	if (unshare(CLONE_NEWTIME) < 0)
		return lx_fail(e, LX_STEP_TIME, errno, "unshare(CLONE_NEWTIME)");
	if (!s->time_monotonic_ns && !s->time_boottime_ns)
		return 0;
	/* clock ids: CLOCK_MONOTONIC 1, CLOCK_BOOTTIME 7 (the names need Linux 5.6's parser too) */
	int n = snprintf(text, sizeof(text), "1 %llu %llu\n7 %llu %llu\n",
			 (unsigned long long)(s->time_monotonic_ns / 1000000000u),
			 (unsigned long long)(s->time_monotonic_ns % 1000000000u),
			 (unsigned long long)(s->time_boottime_ns / 1000000000u),
			 (unsigned long long)(s->time_boottime_ns % 1000000000u));
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return lx_fail(e, LX_STEP_TIME, errno, "open /proc/self/timens_offsets");
	ssize_t w = write(fd, text, (size_t)n);
	int err = errno;
	close(fd);
	if (w != n)
		return lx_fail(e, LX_STEP_TIME, w < 0 ? err : EIO, "write /proc/self/timens_offsets");
	return 0;
}
