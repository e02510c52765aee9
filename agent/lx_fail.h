/* How an agent or child step fails: `return lx_fail(e, LX_STEP_X, errno, "what")`.
 * The step id, the errno and a detail naming the object travel to the runner
 * in an ERROR frame (lx_proto.h) and become its StepError. */
#ifndef LX_FAIL_H
#define LX_FAIL_H

struct lx_err {
	int step;
	int err;
	char detail[512];
};

/* Fills e and returns -1.  No allocation (vsnprintf into e->detail): safe in
 * the child, which is a single-threaded copy of the agent (no CLONE_VM). */
int lx_fail(struct lx_err *e, int step, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
