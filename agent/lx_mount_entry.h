/* One mount entry, decoded from the nested attributes of an LX_A_MOUNT value
 * (layout: enum lx_mount_attr in lx_proto.h).  Decoded once in the agent, to
 * answer a malformed PROCEED without touching the child, and again in the
 * child by the mounts step (lx_mounts.c). */
#ifndef LX_MOUNT_ENTRY_H
#define LX_MOUNT_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "lx_proto.h"

#define LX_MOUNT_MAX_OPTIONS 16
#define LX_MOUNT_MAX_FS_SOURCE 255 /* fsconfig: strndup_user(value, 256) */

struct lx_mount {
	uint32_t kind;  /* enum lx_mount_kind */
	uint32_t flags; /* enum lx_mount_flag bits */
	uint32_t mode;  /* file kind: permission bits; node kind: file type and permission bits */
	uint32_t major, minor, uid, gid; /* node kind */
	char target[4096];
	char source[4096];
	char fstype[64];
	const char *options[LX_MOUNT_MAX_OPTIONS];
	size_t noptions;
	char optbuf[4096];
	const uint8_t *content; /* file kind: points into the PROCEED payload */
	size_t content_len;
};

/* 0, or -1 with *why saying what is wrong (a static string). */
int lx_mount_parse(const struct lx_attrv *a, struct lx_mount *m, const char **why);
/* The same check without keeping the result. */
int lx_mount_check(const struct lx_attrv *a, const char **why);

#endif
