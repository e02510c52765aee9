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

/* Where each child step began, kept in a page the agent maps shared before
 * the clone: a store per step instead of a pipe write that wakes the agent.
 * The child unmaps it when the seccomp or init step begins (those, and exec,
 * report through the pipe), so no filtered code and no pid 1 left behind by
 * the init step holds it; execve drops it too.  The agent reads it once the
 * pipe is at EOF, bounded, as the child's word (never as the exec's proof). */
#define LX_STEPLOG_MAX 48
struct lx_steplog {
	uint32_t n; /* records written (stored last) */
	uint32_t pad;
	struct {
		uint16_t step;
		uint16_t pad16;
		uint32_t pad32;
		uint64_t t_ns;
	} rec[LX_STEPLOG_MAX];
};
#define LX_STEPLOG_BYTES 4096u
_Static_assert(sizeof(struct lx_steplog) <= LX_STEPLOG_BYTES, "the step log fits its page");
extern struct lx_steplog *lx_steplog; /* set by the agent before the clone; NULL: every step through the pipe */

#endif
