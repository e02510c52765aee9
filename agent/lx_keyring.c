/* The keyring step: a fresh, anonymous session keyring, as runc does
 * (KEYCTL_JOIN_SESSION_KEYRING, keyctl(2)).  Otherwise the workload possesses
 * the caller's session keyring and can search and read every key in it.
 * After the identity switch, so the keyring belongs to (and is counted
 * against) the workload's own uid; before seccomp, which often forbids keyctl
 * (Docker's default profile does).  A kernel without keys (ENOSYS) has no
 * keyring to leak. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

#define LX_KEYCTL_JOIN_SESSION_KEYRING 1 /* linux/keyctl.h */

int lx_keyring_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	if (syscall(SYS_keyctl, LX_KEYCTL_JOIN_SESSION_KEYRING, (char *)0) < 0 && errno != ENOSYS)
		return lx_fail(e, LX_STEP_KEYRING, errno, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
	return 0;
}
