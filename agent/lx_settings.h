/* The child-side settings carried by PROCEED, parsed once in the agent (to
 * answer bad frames with an ERROR) and again in the child from the same bytes. */
#ifndef LX_SETTINGS_H
#define LX_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lx_fail.h"
#include "lx_proto.h"

#define LX_MAX_ORDER 32
#define LX_MAX_MOUNTS 256
/* A time namespace offset: at most 100 years (linx_spec/spec/namespaces.py's
 * bound); the kernel refuses a clock beyond KTIME_SEC_MAX / 2 (~146 years). */
#define LX_TIME_MAX_NS (100ull * 366 * 86400 * 1000000000ull)

struct lx_settings {
	uint16_t order[LX_MAX_ORDER];
	size_t norder;
	char *exec_path;
	char **argv; /* NULL-terminated */
	size_t argc;
	char **envp; /* NULL-terminated */
	size_t envc;
	char *cwd;
	char *hostname;
	char *domainname;
	int has_uid, has_gid;
	uint32_t uid, gid;
	gid_t *groups;
	size_t ngroups;
	int has_umask;
	uint32_t umask;
	int has_bounding, has_caps, has_ambient;
	uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
	int no_new_privs;
	const uint8_t *seccomp;
	size_t seccomp_len;
	struct lx_attrv mounts[LX_MAX_MOUNTS];
	size_t nmounts;
	char *rootfs;
	uint32_t mount_opt;
	uint32_t session; /* LX_A_SESSION: 2 = fd 0 becomes the controlling tty */
	uint64_t time_monotonic_ns, time_boottime_ns; /* LX_A_TIME_*: offsets of the new time namespace */
	uint32_t pdeathsig; /* LX_A_PDEATHSIG: what the pdeathsig step arms (0: disarm) */
	/* storage */
	char *arena;
};

/* 0 on success; -1 with e filled (step protocol, EINVAL, what was wrong). */
int lx_settings_parse(const uint8_t *payload, size_t len, struct lx_settings *s, struct lx_err *e);
void lx_settings_free(struct lx_settings *s);

#endif
