/* Child-side steps: each returns 0, or -1 through lx_fail() with errno and detail.
 * They run in the cloned child, single-threaded, in the order PROCEED gives. */
#ifndef LX_CHILD_H
#define LX_CHILD_H

#include "lx_settings.h"

/* Runs in the child right after clone; never returns. */
__attribute__((noreturn)) void lx_child_main(int settings_fd, int status_fd);

int lx_cgroupns_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_hostname_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_loopback_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_mounts_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_bounding_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_user_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_capabilities_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_no_new_privs_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_seccomp_in_child(const struct lx_settings *s, struct lx_err *e);

extern int lx_fault_step, lx_fault_pause;

/* Status records the child writes to the CLOEXEC status pipe. */
enum lx_rec_kind { LX_REC_BEGIN = 1, LX_REC_FAIL = 2 };
struct lx_rec {
	uint16_t kind;
	uint16_t step;
	int32_t err;
	uint64_t t_ns;
	uint32_t dlen;
} __attribute__((packed));

#endif
