/* Decodes the PROCEED payload into struct lx_settings (see lx_settings.h). */
#include "lx_settings.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lx_mount_entry.h"
#include "lx_steps.h"

static char *take_str(const struct lx_attrv *a, char **arena)
{
	char *out = *arena;
	memcpy(out, a->val, a->len);
	out[a->len] = 0;
	*arena += a->len + 1;
	return out;
}

int lx_settings_parse(const uint8_t *payload, size_t len, struct lx_settings *s, struct lx_err *e)
{
	struct lx_attr_it it = { payload, len };
	struct lx_attrv a;
	size_t nattrs = 0, nargs = 0, nenv = 0, ngroups = 0;
	int r;

	memset(s, 0, sizeof(*s));
	s->pdeathsig = SIGKILL;
	while ((r = lx_attr_next(&it, &a)) > 0) {
		nattrs++;
		if (a.type == LX_A_ARG)
			nargs++;
		else if (a.type == LX_A_ENV)
			nenv++;
		else if (a.type == LX_A_GROUP)
			ngroups++;
	}
	if (r < 0)
		return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: truncated attribute");
	if (nargs == 0)
		return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: no argv");

	s->arena = malloc(len + nattrs + 1);
	s->argv = calloc(nargs + 1, sizeof(char *));
	s->envp = calloc(nenv + 1, sizeof(char *));
	s->groups = calloc(ngroups + 1, sizeof(gid_t));
	if (!s->arena || !s->argv || !s->envp || !s->groups) {
		lx_settings_free(s);
		return lx_fail(e, LX_STEP_PROTOCOL, ENOMEM, "PROCEED: out of memory");
	}
	char *arena = s->arena;
	it.p = payload;
	it.left = len;
	while (lx_attr_next(&it, &a) > 0) {
		uint32_t v32 = 0;
		int bad = 0;
		switch (a.type) {
		case LX_A_STEP_ORDER:
			if (a.len % 2 || a.len / 2 > LX_MAX_ORDER) {
				bad = 1;
				break;
			}
			s->norder = a.len / 2;
			for (size_t i = 0; i < s->norder; i++)
				s->order[i] = (uint16_t)(a.val[2 * i] | (a.val[2 * i + 1] << 8));
			break;
		case LX_A_EXEC_PATH:
		case LX_A_ARG:
		case LX_A_ENV:
		case LX_A_CWD:
		case LX_A_HOSTNAME:
		case LX_A_DOMAINNAME:
		case LX_A_ROOTFS:
			if (lx_attr_str_ok(&a) < 0) {
				lx_settings_free(s);
				return lx_fail(e, LX_STEP_PROTOCOL, EINVAL,
					       "PROCEED: attribute %u contains a NUL byte", a.type);
			}
			if (a.type == LX_A_EXEC_PATH)
				s->exec_path = take_str(&a, &arena);
			else if (a.type == LX_A_ARG)
				s->argv[s->argc++] = take_str(&a, &arena);
			else if (a.type == LX_A_ENV)
				s->envp[s->envc++] = take_str(&a, &arena);
			else if (a.type == LX_A_CWD)
				s->cwd = take_str(&a, &arena);
			else if (a.type == LX_A_HOSTNAME)
				s->hostname = take_str(&a, &arena);
			else if (a.type == LX_A_DOMAINNAME)
				s->domainname = take_str(&a, &arena);
			else
				s->rootfs = take_str(&a, &arena);
			break;
		case LX_A_UID:
			bad = lx_attr_u32(&a, &s->uid);
			s->has_uid = 1;
			break;
		case LX_A_GID:
			bad = lx_attr_u32(&a, &s->gid);
			s->has_gid = 1;
			break;
		case LX_A_GROUP:
			bad = lx_attr_u32(&a, &v32);
			s->groups[s->ngroups++] = (gid_t)v32;
			break;
		case LX_A_UMASK:
			bad = lx_attr_u32(&a, &s->umask) || s->umask > 0777;
			s->has_umask = 1;
			break;
		case LX_A_CAP_BOUNDING:
			bad = lx_attr_u64(&a, &s->cap_bounding);
			s->has_bounding = 1;
			break;
		case LX_A_CAP_EFFECTIVE:
			bad = lx_attr_u64(&a, &s->cap_effective);
			s->has_caps = 1;
			break;
		case LX_A_CAP_PERMITTED:
			bad = lx_attr_u64(&a, &s->cap_permitted);
			s->has_caps = 1;
			break;
		case LX_A_CAP_INHERITABLE:
			bad = lx_attr_u64(&a, &s->cap_inheritable);
			s->has_caps = 1;
			break;
		case LX_A_CAP_AMBIENT:
			bad = lx_attr_u64(&a, &s->cap_ambient);
			s->has_ambient = 1;
			break;
		case LX_A_NO_NEW_PRIVS:
			bad = lx_attr_u32(&a, &v32);
			s->no_new_privs = v32 != 0;
			break;
		case LX_A_SECCOMP:
			/* struct sock_filter is 8 bytes; the kernel takes at most 4096. */
			bad = a.len == 0 || a.len % 8 || a.len / 8 > 4096;
			s->seccomp = a.val;
			s->seccomp_len = a.len;
			break;
		case LX_A_MOUNT: {
			const char *why = "too many mount entries";
			if (s->nmounts >= LX_MAX_MOUNTS || lx_mount_check(&a, &why) < 0) {
				lx_settings_free(s);
				return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: mount entry %zu: %s", s->nmounts, why);
			}
			s->mounts[s->nmounts++] = a;
			break;
		}
		case LX_A_MOUNT_OPT:
			bad = lx_attr_u32(&a, &s->mount_opt);
			break;
		case LX_A_TIME_MONOTONIC:
			bad = lx_attr_u64(&a, &s->time_monotonic_ns) || s->time_monotonic_ns > LX_TIME_MAX_NS;
			break;
		case LX_A_TIME_BOOTTIME:
			bad = lx_attr_u64(&a, &s->time_boottime_ns) || s->time_boottime_ns > LX_TIME_MAX_NS;
			break;
		case LX_A_SESSION:
			bad = lx_attr_u32(&a, &s->session) || s->session > 2;
			break;
		case LX_A_PDEATHSIG:
			bad = lx_attr_u32(&a, &s->pdeathsig) || s->pdeathsig >= 65;
			break;
		default:
			lx_settings_free(s);
			return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: unknown attribute %u", a.type);
		}
		if (bad) {
			lx_settings_free(s);
			return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: bad value for attribute %u", a.type);
		}
	}
	if (!s->exec_path || s->exec_path[0] != '/') {
		lx_settings_free(s);
		return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: exec path missing or not absolute");
	}
	if (s->norder == 0) {
		lx_settings_free(s);
		return lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "PROCEED: no step order");
	}
	return 0;
}

void lx_settings_free(struct lx_settings *s)
{
	free(s->arena);
	free(s->argv);
	free(s->envp);
	free(s->groups);
	s->arena = NULL;
	s->argv = s->envp = NULL;
	s->groups = NULL;
}
