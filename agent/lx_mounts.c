/* The mounts step: propagation first, so that nothing ever leaks to the host. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mount.h>

#include "lx_child.h"
#include "lx_steps.h"

#define LX_MOUNT_OPT_SLAVE 1u

int lx_mounts_in_child(const struct lx_settings *s, struct lx_err *e)
{
	unsigned long prop = (s->mount_opt & LX_MOUNT_OPT_SLAVE) ? MS_SLAVE : MS_PRIVATE;
	if (mount(NULL, "/", NULL, MS_REC | prop, NULL) < 0)
		return lx_fail(e, LX_STEP_MOUNTS, errno, "make / %s", prop == MS_SLAVE ? "rslave" : "rprivate");
	if (s->nmounts || s->rootfs)
		return lx_fail(e, LX_STEP_MOUNTS, ENOSYS, "mount entries are not supported by this agent yet");
	return 0;
}
