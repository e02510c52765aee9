/* The child, between clone and execve: parked on a blocking read until
 * PROCEED, then the child-side steps (lx_steps.h) in the order given, then
 * exec.  It reports to the agent over a close-on-exec status pipe. */
#ifndef LX_CHILD_H
#define LX_CHILD_H

#include <stdint.h>

/* Runs in the child right after clone; never returns. */
__attribute__((noreturn)) void lx_child_main(int settings_fd, int status_fd);

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
