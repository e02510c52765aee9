/* Step ids, shared with linx_spec/steps.py (a test compares the two lists),
 * and the child-side step functions, one file each: step X is lx_X_in_child()
 * in lx_X.c (a test checks that too).  The agent keeps ids, not order: the
 * order of the child-side steps arrives in the PROCEED frame
 * (LX_A_STEP_ORDER), read from the single list in steps.py; exec is always last. */
#ifndef LX_STEPS_H
#define LX_STEPS_H

enum lx_step {
	LX_STEP_PROTOCOL = 0,     /* agent: a frame that could not be understood */
	LX_STEP_SPAWN = 1,        /* agent: open joined namespaces, setns, clone (lx_main.c) */
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
	LX_STEP_SESSION = 29,     /* child */
	LX_STEP_NS_ROOT = 30,     /* child */
	LX_STEP_KEYRING = 31,     /* child */
	LX_STEP_SIGNALS = 32,     /* child */
	LX_STEP_PDEATHSIG = 33,   /* child */
	LX_STEP_CLOSE_FDS = 34,   /* child */
	LX_STEP_INIT = 35,        /* child: forks; only the child returns (lx_init.c) */
	LX_STEP_TIME = 40,        /* child: unshare(CLONE_NEWTIME), its offsets; execve enters it */
};

struct lx_settings;
struct lx_err;

/* Each returns 0, or -1 through lx_fail() with the step, errno and detail.
 * They run in the cloned child, single-threaded, in the order PROCEED gives. */
int lx_session_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_ns_root_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_loopback_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_cgroupns_in_child(const struct lx_settings *s, struct lx_err *e);
/* lx_ns_guard.c: the agent records its own mount and uts namespaces before any
 * setns; a child step refuses to change them (EPERM naming `what`). */
enum lx_ns_guard { LX_GUARD_MNT = 0, LX_GUARD_UTS = 1 };
void lx_ns_guard_record(void);
int lx_ns_guard_check(enum lx_ns_guard which, int step, const char *what, struct lx_err *e);
/* The same unshare while still parked (LX_M_CGROUPNS); the step is then a no-op. */
int lx_cgroupns_parked(struct lx_err *e);
int lx_time_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_hostname_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_mounts_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_bounding_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_user_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_capabilities_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_cwd_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_keyring_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_signals_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_pdeathsig_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_close_fds_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_no_new_privs_in_child(const struct lx_settings *s, struct lx_err *e);
int lx_seccomp_in_child(const struct lx_settings *s, struct lx_err *e);
/* Returns 0 in the program's process; pid 1 never returns (it exits with the
 * program's status). */
int lx_init_in_child(const struct lx_settings *s, struct lx_err *e);
/* Returns only on failure. */
int lx_exec_in_child(const struct lx_settings *s, struct lx_err *e);

#endif
