/* Step ids, shared with linx_spec/steps.py (a test compares the two lists).
 * The agent keeps ids, not order: the order of the child-side steps arrives in
 * the PROCEED frame (LX_A_STEP_ORDER), read from the single list in steps.py. */
#ifndef LX_STEPS_H
#define LX_STEPS_H

enum lx_step {
	LX_STEP_PROTOCOL = 0,     /* agent: a frame that could not be understood */
	LX_STEP_SPAWN = 1,        /* agent: open joined namespaces, setns, clone */
	LX_STEP_PARKED = 2,       /* agent: the child died while parked */
	LX_STEP_IDMAP = 10,       /* host */
	LX_STEP_CGROUP = 11,      /* host */
	LX_STEP_NETWORK = 12,     /* host */
	LX_STEP_RLIMITS = 13,     /* host */
	LX_STEP_LOOPBACK = 18,    /* child */
	LX_STEP_CGROUPNS = 19,    /* child */
	LX_STEP_HOSTNAME = 20,    /* child */
	LX_STEP_MOUNTS = 21,      /* child */
	LX_STEP_BOUNDING = 22,    /* child */
	LX_STEP_USER = 23,        /* child */
	LX_STEP_CAPABILITIES = 24,/* child */
	LX_STEP_CWD = 25,         /* child */
	LX_STEP_NO_NEW_PRIVS = 26,/* child */
	LX_STEP_SECCOMP = 27,     /* child */
	LX_STEP_EXEC = 28,        /* child */
};

#endif
