/* Decodes frames with the agent's own lx_proto.c and prints them as text, one
 * line a frame: "type=0x02 seq=7 version=1 | 20:u32=... 21:hex=..." so that
 * tests can compare the C view of golden frames with the Python view. */
#include <stdio.h>
#include <stdlib.h>

#include "../../agent/lx_proto.h"

int main(void)
{
	uint8_t raw[LX_HDR_LEN];
	while (fread(raw, 1, LX_HDR_LEN, stdin) == LX_HDR_LEN) {
		struct lx_hdr h;
		lx_hdr_decode(raw, &h);
		if (h.magic != LX_MAGIC || h.len > LX_MAX_PAYLOAD) {
			printf("bad header\n");
			return 1;
		}
		uint8_t *p = malloc(h.len ? h.len : 1);
		if (!p || fread(p, 1, h.len, stdin) != h.len) {
			printf("short payload\n");
			return 1;
		}
		printf("type=0x%02x seq=%u version=%u |", h.type, h.seq, h.version);
		struct lx_attr_it it = { p, h.len };
		struct lx_attrv a;
		int r;
		while ((r = lx_attr_next(&it, &a)) > 0) {
			printf(" %u:", a.type);
			for (uint32_t i = 0; i < a.len; i++)
				printf("%02x", a.val[i]);
		}
		printf(r < 0 ? " MALFORMED\n" : "\n");
		free(p);
	}
	return 0;
}
