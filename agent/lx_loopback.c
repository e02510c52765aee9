/* The loopback step: lo up with one ioctl when there is no other network work. */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_settings.h"
#include "lx_steps.h"

/* lo comes up DOWN in a new net namespace (netdevice(7) SIOCSIFFLAGS). */
int lx_loopback_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lx_fail(e, LX_STEP_LOOPBACK, errno, "socket(AF_INET) for lo");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		int err = errno;
		close(fd);
		return lx_fail(e, LX_STEP_LOOPBACK, err, "SIOCGIFFLAGS lo");
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
		int err = errno;
		close(fd);
		return lx_fail(e, LX_STEP_LOOPBACK, err, "bring lo up");
	}
	close(fd);
	return 0;
}
