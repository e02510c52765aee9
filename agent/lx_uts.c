/* hostname and domainname of a new uts namespace; cgroupns unshared late. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lx_child.h"
#include "lx_steps.h"

int lx_cgroupns_in_child(const struct lx_settings *s, struct lx_err *e)
{
	(void)s;
	/* After the host placed us in our cgroup: the namespace's root is the
	 * cgroup we are in now, so the workload sees its own cgroup as "/". */
	if (unshare(CLONE_NEWCGROUP) < 0)
		return lx_fail(e, LX_STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP)");
	return 0;
}

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

int lx_hostname_in_child(const struct lx_settings *s, struct lx_err *e)
{
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "sethostname %s", s->hostname);
	if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
		return lx_fail(e, LX_STEP_HOSTNAME, errno, "setdomainname %s", s->domainname);
	return 0;
}
