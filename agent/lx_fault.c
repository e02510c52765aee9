#define _GNU_SOURCE
#include "lx_fault.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lx_fail.h"

static int fault_step = -1;
static int fault_pause;

void lx_fault_init(const char *spec)
{
	if (!spec || (strncmp(spec, "fail:", 5) != 0 && strncmp(spec, "pause:", 6) != 0))
		return;
	const char *id = strchr(spec, ':') + 1;
	char *end;
	long n = strtol(id, &end, 10);
	if (end == id || *end || n < 0 || n > 0xffff)
		return;
	fault_pause = spec[0] == 'p';
	fault_step = (int)n;
}

int lx_fault_at(int step, int hangup_fd, struct lx_err *e)
{
	if (step != fault_step)
		return 0;
	if (!fault_pause)
		return lx_fail(e, step, EIO, "injected fault (LINX_FAULT)");
	dprintf(2, "linx-fault: paused at step %d\n", step);
	if (hangup_fd < 0) {
		for (;;)
			pause();
	}
	for (;;) {
		struct pollfd p = { hangup_fd, POLLRDHUP, 0 };
		if (poll(&p, 1, -1) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return lx_fail(e, step, ECONNRESET, "the runner went away while paused (LINX_FAULT)");
	}
}
