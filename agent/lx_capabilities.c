/* Capabilities, in runc's order (libcontainer finalizeNamespace):
 *   1. bounding  drop the bounding set while still privileged: PR_CAPBSET_DROP
 *                needs CAP_SETPCAP, which the identity switch may take away;
 *   2. user      (lx_user.c) PR_SET_KEEPCAPS, setgroups, setresgid, setresuid:
 *                the switch away from uid 0 clears effective and ambient and,
 *                without KEEPCAPS, permitted;
 *   3. capabilities  capset(2) effective, permitted, inheritable from the kept
 *                permitted set, then the ambient set, which the kernel allows
 *                only within permitted and inheritable (prctl(2)).
 * Then no_new_privs (lx_no_new_privs.c), before seccomp.
 * capabilities(7), prctl(2), capset(2). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_capabilities_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (s->has_caps) {
		/* Version 3: two 32-bit words per set, capabilities 0-63. */
		struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct data[2];
		for (int i = 0; i < 2; i++) {
			data[i].effective = (uint32_t)(s->cap_effective >> (32 * i));
			data[i].permitted = (uint32_t)(s->cap_permitted >> (32 * i));
			data[i].inheritable = (uint32_t)(s->cap_inheritable >> (32 * i));
		}
		if (syscall(SYS_capset, &hdr, data) < 0)
			return lx_fail(e, LX_STEP_CAPABILITIES, errno,
				       "capset effective=%#llx permitted=%#llx inheritable=%#llx",
				       (unsigned long long)s->cap_effective, (unsigned long long)s->cap_permitted,
				       (unsigned long long)s->cap_inheritable);
	}
	if (s->has_ambient) {
		/* Ambient last: a raise needs the capability in permitted and
		 * inheritable, which capset just wrote.  Clear first: the set may
		 * hold what the agent inherited (a root identity keeps it). */
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
			/* Before Linux 4.3 there is no ambient set: nothing to clear,
			 * and nothing can be raised. */
			if (!(errno == EINVAL && s->cap_ambient == 0))
				return lx_fail(e, LX_STEP_CAPABILITIES, errno, "clear the ambient set");
		}
		for (int cap = 0; cap < 64; cap++) {
			if (!(s->cap_ambient & (1ULL << cap)))
				continue;
			if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
				return lx_fail(e, LX_STEP_CAPABILITIES, errno,
					       "raise ambient capability %d (must be in permitted and inheritable)", cap);
		}
	}
	return 0;
}
