/* The runtime's own mount and uts namespaces, remembered by the agent before it
 * joins anything, so that a child step about to change a namespace (mounts,
 * hostname) can tell a joined one from the host's.  A config that joins a
 * mount namespace by path mounts in it (as runc); if that path turned out to
 * be the runtime's own namespace (a /proc/PID/ns/mnt whose pid ended and was
 * reused by a host process between plan and spawn), pivot_root would move the
 * host's root.  The plan refuses such a path (plan/namespaces.py); this is the
 * same check where it cannot race: in the child, right before the change. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/stat.h>

#include "lx_fail.h"
#include "lx_steps.h"

static struct {
	int known;
	dev_t dev;
	ino_t ino;
} runtime_ns[2]; /* [0] mnt, [1] uts */

static const char *const ns_file[2] = { "/proc/self/ns/mnt", "/proc/self/ns/uts" };

void lx_ns_guard_record(void)
{
	struct stat st;
	for (int i = 0; i < 2; i++)
		if (stat(ns_file[i], &st) == 0) {
			runtime_ns[i].dev = st.st_dev;
			runtime_ns[i].ino = st.st_ino;
			runtime_ns[i].known = 1;
		}
}

int lx_ns_guard_check(enum lx_ns_guard which, int step, const char *what, struct lx_err *e)
{
	int i = which == LX_GUARD_MNT ? 0 : 1;
	struct stat st;
	if (!runtime_ns[i].known)
		return 0; /* no /proc when the agent started: nothing to compare with */
	if (stat(ns_file[i], &st) < 0)
		return lx_fail(e, step, errno, "%s: stat %s", what, ns_file[i]);
	if (st.st_dev == runtime_ns[i].dev && st.st_ino == runtime_ns[i].ino)
		return lx_fail(e, step, EPERM, "%s: refused: this is the runtime's own %s namespace", what,
			       i == 0 ? "mount" : "uts");
	return 0;
}
