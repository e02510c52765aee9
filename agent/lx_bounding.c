/* The bounding step: drop from the bounding set what the spec does not keep,
 * while still privileged: PR_CAPBSET_DROP needs CAP_SETPCAP, which the
 * identity switch (lx_user.c) may take away.  Order: lx_capabilities.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/prctl.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_bounding_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (!s->has_bounding)
		return 0;
	for (int cap = 0; cap < 64; cap++) {
		if (s->cap_bounding & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL) /* past CAP_LAST_CAP of this kernel */
				break;
			return lx_fail(e, LX_STEP_BOUNDING, errno, "drop capability %d from the bounding set", cap);
		}
	}
	return 0;
}
