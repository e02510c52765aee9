/* Framing and attributes: the only C code that packs or unpacks frames. */
#include "lx_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

void lx_hdr_decode(const uint8_t raw[LX_HDR_LEN], struct lx_hdr *h)
{
	h->magic = get16(raw);
	h->version = raw[2];
	h->type = raw[3];
	h->seq = get32(raw + 4);
	h->len = get32(raw + 8);
}

int lx_attr_next(struct lx_attr_it *it, struct lx_attrv *a)
{
	if (it->left == 0)
		return 0;
	if (it->left < 8)
		return -1;
	a->type = get16(it->p);
	if (get16(it->p + 2) != 0)
		return -1;
	a->len = get32(it->p + 4);
	if (a->len > it->left - 8)
		return -1;
	a->val = it->p + 8;
	it->p += 8 + a->len;
	it->left -= 8 + a->len;
	return 1;
}

int lx_attr_u32(const struct lx_attrv *a, uint32_t *out)
{
	if (a->len != 4)
		return -1;
	*out = get32(a->val);
	return 0;
}

int lx_attr_u64(const struct lx_attrv *a, uint64_t *out)
{
	if (a->len != 8)
		return -1;
	*out = (uint64_t)get32(a->val) | ((uint64_t)get32(a->val + 4) << 32);
	return 0;
}

int lx_attr_str_ok(const struct lx_attrv *a)
{
	return memchr(a->val, 0, a->len) ? -1 : 0;
}

int lx_attr_str(const struct lx_attrv *a, char *dst, size_t cap)
{
	if (lx_attr_str_ok(a) < 0 || a->len + 1 > cap)
		return -1;
	memcpy(dst, a->val, a->len);
	dst[a->len] = 0;
	return 0;
}

void lx_out_begin(struct lx_out *o, uint8_t type, uint32_t seq)
{
	put16(o->buf, LX_MAGIC);
	o->buf[2] = LX_VERSION;
	o->buf[3] = type;
	put32(o->buf + 4, seq);
	put32(o->buf + 8, 0);
	o->len = LX_HDR_LEN;
	o->overflow = 0;
}

void lx_out_bytes(struct lx_out *o, uint16_t type, const void *v, size_t len)
{
	if (o->overflow || len > sizeof(o->buf) - o->len - 8) {
		o->overflow = 1;
		return;
	}
	put16(o->buf + o->len, type);
	put16(o->buf + o->len + 2, 0);
	put32(o->buf + o->len + 4, (uint32_t)len);
	if (len)
		memcpy(o->buf + o->len + 8, v, len);
	o->len += 8 + len;
}

void lx_out_u32(struct lx_out *o, uint16_t type, uint32_t v)
{
	uint8_t b[4];
	put32(b, v);
	lx_out_bytes(o, type, b, 4);
}

void lx_out_str(struct lx_out *o, uint16_t type, const char *s)
{
	lx_out_bytes(o, type, s, strlen(s));
}

int lx_out_send(struct lx_out *o, int fd)
{
	put32(o->buf + 8, (uint32_t)(o->len - LX_HDR_LEN));
	return lx_write_full(fd, o->buf, o->len);
}

int lx_out_send_fd(struct lx_out *o, int fd, int pass)
{
	put32(o->buf + 8, (uint32_t)(o->len - LX_HDR_LEN));
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { o->buf, o->len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pass, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(fd, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	/* The descriptor went with the first bytes; the rest as plain writes. */
	return lx_write_full(fd, o->buf + n, o->len - (size_t)n);
}

int lx_read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

int lx_recv_fds(int fd, void *buf, size_t len, int *fds, size_t max, size_t *nfds)
{
	size_t off = 0;
	while (off < len) {
		union { struct cmsghdr h; char b[CMSG_SPACE(LX_MAX_PASSED_FDS * sizeof(int))]; } ctl;
		struct iovec iov = { (char *)buf + off, len - off };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTSOCK)
			return lx_read_full(fd, (char *)buf + off, len - off);
		if (n <= 0)
			return -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t got_n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < got_n; i++) {
				int got;
				memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (*nfds < max)
					fds[(*nfds)++] = got;
				else
					close(got);
			}
		}
		/* MSG_CTRUNC: descriptors beyond the buffer were closed by the kernel. */
		off += (size_t)n;
	}
	return 0;
}

int lx_recv_full(int fd, void *buf, size_t len, int *passed)
{
	size_t n = *passed >= 0;
	return lx_recv_fds(fd, buf, len, passed, 1, &n);
}

ssize_t lx_read_file(const char *path, char *buf, size_t cap)
{
	if (cap == 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < cap - 1) {
		ssize_t n = read(fd, buf + off, cap - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = 0;
	return (ssize_t)off;
}

int lx_write_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}
