/* One mount entry, decoded from the nested attributes of an LX_A_MOUNT value
 * (layout: enum lx_mount_attr in lx_proto.h).  Used by the agent, to answer a
 * malformed PROCEED without touching the child, and by the mounts step. */
#include "lx_mount_entry.h"

#include <string.h>
#include <sys/stat.h>

static int copy_str(const struct lx_attrv *a, char *dst, size_t cap, const char **why, const char *what)
{
	if (dst[0]) {
		*why = what;
		return -1;
	}
	if (lx_attr_str(a, dst, cap) < 0 || !dst[0]) {
		*why = "a string is empty, too long or holds a NUL";
		return -1;
	}
	return 0;
}

int lx_mount_parse(const struct lx_attrv *a, struct lx_mount *m, const char **why)
{
	struct lx_attr_it it = { a->val, a->len };
	struct lx_attrv n;
	size_t optlen = 0;
	int r, has_kind = 0;

	memset(m, 0, sizeof(*m));
	m->mode = 0644;
	while ((r = lx_attr_next(&it, &n)) > 0) {
		switch (n.type) {
		case LX_MA_KIND:
			if (has_kind++ || lx_attr_u32(&n, &m->kind) < 0 || m->kind < LX_MK_BIND || m->kind > LX_MK_NODE) {
				*why = "bad or repeated kind";
				return -1;
			}
			break;
		case LX_MA_FLAGS:
			if (lx_attr_u32(&n, &m->flags) < 0 || m->flags >= 2 * LX_MF_ROOT) {
				*why = "bad flags";
				return -1;
			}
			break;
		case LX_MA_MODE:
			if (lx_attr_u32(&n, &m->mode) < 0 || m->mode > 0177777) {
				*why = "bad mode";
				return -1;
			}
			break;
		case LX_MA_MAJOR:
		case LX_MA_MINOR:
		case LX_MA_UID:
		case LX_MA_GID: {
			uint32_t *dst = n.type == LX_MA_MAJOR ? &m->major : n.type == LX_MA_MINOR ? &m->minor
							  : n.type == LX_MA_UID ? &m->uid : &m->gid;
			if (lx_attr_u32(&n, dst) < 0) {
				*why = "bad device number or owner";
				return -1;
			}
			break;
		}
		case LX_MA_TARGET:
			if (copy_str(&n, m->target, sizeof(m->target), why, "repeated target") < 0)
				return -1;
			break;
		case LX_MA_SOURCE:
			if (copy_str(&n, m->source, sizeof(m->source), why, "repeated source") < 0)
				return -1;
			break;
		case LX_MA_FSTYPE:
			if (copy_str(&n, m->fstype, sizeof(m->fstype), why, "repeated fstype") < 0)
				return -1;
			break;
		case LX_MA_OPTION:
			if (m->noptions >= LX_MOUNT_MAX_OPTIONS || n.len == 0 || optlen + n.len + 1 > sizeof(m->optbuf) ||
			    lx_attr_str(&n, m->optbuf + optlen, sizeof(m->optbuf) - optlen) < 0) {
				*why = "too many, empty or too long options";
				return -1;
			}
			m->options[m->noptions++] = m->optbuf + optlen;
			optlen += n.len + 1;
			break;
		case LX_MA_CONTENT:
			m->content = n.val;
			m->content_len = n.len;
			break;
		default:
			*why = "unknown nested attribute";
			return -1;
		}
	}
	if (r < 0) {
		*why = "truncated nested attribute";
		return -1;
	}
	if (!has_kind) {
		*why = "no kind";
		return -1;
	}
	if (!(m->flags & LX_MF_ROOT) && m->target[0] != '/') {
		*why = "target missing or not absolute";
		return -1;
	}
	if ((m->flags & LX_MF_ROOT) && m->kind != LX_MK_FS) {
		*why = "only a fresh filesystem can be the root";
		return -1;
	}
	if (m->kind != LX_MK_NODE && m->mode > 07777) {
		*why = "bad mode";
		return -1;
	}
	if (m->kind == LX_MK_NODE) {
		uint32_t type = m->mode & S_IFMT;
		/* The kernel's ranges (MAJOR: 12 bits, MINOR: 20); (uid_t)-1 means "unchanged" to chown. */
		if ((type != S_IFCHR && type != S_IFBLK && type != S_IFIFO) || m->major >= 1u << 12 ||
		    m->minor >= 1u << 20 || m->uid == UINT32_MAX || m->gid == UINT32_MAX) {
			*why = "node: bad type, device number or owner";
			return -1;
		}
	}
	if (m->kind == LX_MK_BIND && m->source[0] != '/') {
		*why = "bind source missing or not absolute";
		return -1;
	}
	if (m->kind == LX_MK_FS && !m->fstype[0]) {
		*why = "fstype missing";
		return -1;
	}
	/* fsconfig(FSCONFIG_SET_STRING) takes at most 255 bytes of a value. */
	if (m->kind == LX_MK_FS && strlen(m->source) > LX_MOUNT_MAX_FS_SOURCE) {
		*why = "fs source longer than 255 bytes";
		return -1;
	}
	return 0;
}

int lx_mount_check(const struct lx_attrv *a, const char **why)
{
	struct lx_mount m;
	return lx_mount_parse(a, &m, why);
}

