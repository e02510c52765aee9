/* The session step: the workload always starts in a session of its own, as
 * runc's init does.  Sharing the caller's session would leave the caller's
 * terminal as its controlling tty, and ioctl(TIOCSTI) on it types commands
 * into the caller's shell (tty_ioctl(4); allowed without CAP_SYS_ADMIN on the
 * controlling tty when dev.tty.legacy_tiocsti=1).  With -t the pty on fd 0
 * becomes its controlling terminal, so Ctrl-C on it reaches the workload. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_session_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (setsid() < 0)
		return lx_fail(e, LX_STEP_SESSION, errno, "setsid");
	if (s->session == 2 && ioctl(0, TIOCSCTTY, 0) < 0)
		return lx_fail(e, LX_STEP_SESSION, errno, "ioctl(TIOCSCTTY) on stdin");
	return 0;
}
