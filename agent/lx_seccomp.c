/* Installs the filter compiled on the host (libseccomp, in the plan).  Last
 * step before execve: the filter may forbid what the earlier steps need.
 * Without no_new_privs this needs CAP_SYS_ADMIN (seccomp(2)). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

int lx_seccomp_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (!s->seccomp)
		return 0;
	struct sock_fprog prog = {
		.len = (unsigned short)(s->seccomp_len / sizeof(struct sock_filter)),
		.filter = (struct sock_filter *)(uintptr_t)s->seccomp,
	};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		return lx_fail(e, LX_STEP_SECCOMP, errno, "seccomp(SECCOMP_SET_MODE_FILTER, %u instructions)",
			       prog.len);
	return 0;
}
