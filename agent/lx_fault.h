/* Fault injection for the reliability tests (tests/integration/test_reliability.py),
 * acting inside the production frame sequence: LINX_FAULT=fail:ID makes step ID
 * (spawn in the agent, or a child step) fail with EIO; pause:ID stops there,
 * saying "linx-fault: paused at step ID" on stderr.  The runner translates step
 * names to ids and handles the host steps itself.  Read once at the agent's
 * start; inert when unset. */
#ifndef LX_FAULT_H
#define LX_FAULT_H

struct lx_err;

void lx_fault_init(const char *spec);

/* 0 when no fault is set for `step`.  A fail: -1 with e filled.  A pause:
 * blocks until `hangup_fd` (the agent's control channel) hangs up, then
 * fails; with hangup_fd < 0 (the child) for ever: the agent kills a paused
 * child when its runner goes away. */
int lx_fault_at(int step, int hangup_fd, struct lx_err *e);

#endif
