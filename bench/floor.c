/* floor: the kernel work of one isolated workload and nothing else.
 *
 * The benchmark's lower bound (bench/run).  One process per workload, like
 * linx-spec's agent: clone into the namespaces, park the child on a pipe,
 * write its id maps, place it in fresh cgroups with limits, give it a veth,
 * release it; the child makes / private, drops capabilities, sets
 * no_new_privs, installs a deny-list seccomp filter and execs.  The parent
 * waits and removes the cgroups.  No YAML, no protocol, no checks beyond
 * errno: whatever linx-spec or a peer spends above this is overhead.
 *
 *   floor [--ns user,pid,mount,uts,ipc,net] [--cgroup DIR:FILE=VAL,...]...
 *         [--lo] [--caps-drop N,N...] [--seccomp] [--veth PEER,HOSTCIDR,PEERCIDR]
 *         -- PROG [ARG...]
 *
 * --lo: the child sets lo up in its new netns (bwrap, runc, crun and linx-spec
 * all do by default).
 *
 * Helper modes, so that the peers get the same kernel objects the same way:
 *   floor --print-bpf                      the seccomp filter, for bwrap --seccomp FD
 *   floor --rusage -- CMD...               run CMD, print its tree's peak RSS (wait4) on
 *        stderr; fork, not vfork: a vforked child inherits its parent's high-water mark
 *   floor --veth-hook PEER,HOSTCIDR,PEERCIDR   OCI createRuntime hook (state on stdin)
 *   floor --wrap [--cgroup ...] [--veth-bwrap PEER,HOSTCIDR,PEERCIDR] -- bwrap ...
 *        bwrap has no cgroup or veth support: the wrapper places bwrap in the
 *        cgroups before exec, and configures the veth while bwrap blocks on
 *        --block-fd 11 (bwrap reports its child's pid on --info-fd 10).
 *
 * --cgroup DIR:... creates DIR/floor-<pid> (removed after the workload), writes
 * each FILE=VAL in it, then attaches the child: one --cgroup per hierarchy
 * (cgroup v1: memory and pids), or one for the cgroup2 directory.
 * Host veth names are made unique with the pid (lbf<pid>, lbh<pid>, lbw<pid>):
 * the kernel deletes a veth with its peer's namespace, asynchronously, so a
 * fixed name could still exist when the next workload starts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CG 8
#define MAX_FILES 4

static void die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(125);
}

/* --- seccomp: the same deny list as the bench specs (bench/run DENY) ------ */
#if defined(__x86_64__)
#define LX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define LX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "floor: add this architecture's AUDIT_ARCH"
#endif

static const int deny[] = {
	__NR_add_key, __NR_keyctl, __NR_request_key, __NR_kexec_load, __NR_kexec_file_load,
	__NR_init_module, __NR_finit_module, __NR_delete_module, __NR_reboot, __NR_swapon,
	__NR_swapoff, __NR_acct, __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
	__NR_open_by_handle_at,
};
#define NDENY (sizeof(deny) / sizeof(deny[0]))

/* arch check, (x32 on x86_64: deny), one compare per syscall, allow. */
static size_t build_bpf(struct sock_filter *f)
{
	size_t n = 0;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LX_AUDIT_ARCH, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, (unsigned char)(NDENY + 1), 0);
#endif
	for (size_t i = 0; i < NDENY; i++)
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)deny[i],
						      (unsigned char)(NDENY - i), 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
	return n;
}

/* --- netlink: a veth pair, the peer in the child's netns, both ends up ---- */
struct nlreq {
	struct nlmsghdr h;
	char buf[1024];
};

static struct rtattr *rta_add(struct nlmsghdr *h, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
	return a;
}

static void rta_end(struct nlmsghdr *h, struct rtattr *nest)
{
	nest->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)nest);
}

static int nl_talk(int sk, struct nlmsghdr *h)
{
	static unsigned seq;
	char reply[4096];
	h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	h->nlmsg_seq = ++seq;
	if (send(sk, h, h->nlmsg_len, 0) < 0)
		return -1;
	ssize_t n = recv(sk, reply, sizeof(reply), 0);
	if (n < 0)
		return -1;
	struct nlmsghdr *r = (struct nlmsghdr *)reply;
	if (r->nlmsg_type == NLMSG_ERROR) {
		int err = ((struct nlmsgerr *)NLMSG_DATA(r))->error;
		if (err) {
			errno = -err;
			return -1;
		}
	}
	return 0;
}

static void parse_cidr(const char *cidr, struct in_addr *a, unsigned char *prefix)
{
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s", cidr);
	char *slash = strchr(tmp, '/');
	*prefix = 24;
	if (slash) {
		*slash = 0;
		*prefix = (unsigned char)atoi(slash + 1);
	}
	if (inet_pton(AF_INET, tmp, a) != 1) {
		errno = EINVAL;
		die(cidr);
	}
}

static int nl_addr_up(int sk, int ifindex, const char *cidr)
{
	struct nlreq r;
	struct in_addr a;
	unsigned char prefix;
	parse_cidr(cidr, &a, &prefix);
	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	r.h.nlmsg_type = RTM_NEWADDR;
	r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	struct ifaddrmsg *ifa = NLMSG_DATA(&r.h);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = prefix;
	ifa->ifa_index = (unsigned)ifindex;
	rta_add(&r.h, IFA_LOCAL, &a, 4);
	rta_add(&r.h, IFA_ADDRESS, &a, 4);
	if (nl_talk(sk, &r.h) < 0)
		return -1;
	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	r.h.nlmsg_type = RTM_NEWLINK;
	struct ifinfomsg *ifi = NLMSG_DATA(&r.h);
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return nl_talk(sk, &r.h);
}

/* spec: PEER,HOSTCIDR,PEERCIDR; the host end is named host_name. */
static void make_veth(pid_t pid, const char *host_name, const char *spec)
{
	char peer[IFNAMSIZ], hcidr[64], pcidr[64];
	if (sscanf(spec, "%15[^,],%63[^,],%63s", peer, hcidr, pcidr) != 3) {
		errno = EINVAL;
		die("--veth PEER,HOSTCIDR,PEERCIDR");
	}
	int sk = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (sk < 0)
		die("netlink socket");
	struct nlreq r;
	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	r.h.nlmsg_type = RTM_NEWLINK;
	r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rta_add(&r.h, IFLA_IFNAME, host_name, strlen(host_name) + 1);
	struct rtattr *linkinfo = rta_add(&r.h, IFLA_LINKINFO, NULL, 0);
	rta_add(&r.h, IFLA_INFO_KIND, "veth", 4);
	struct rtattr *data = rta_add(&r.h, IFLA_INFO_DATA, NULL, 0);
	struct ifinfomsg peer_ifi;
	memset(&peer_ifi, 0, sizeof(peer_ifi));
	struct rtattr *peerinfo = rta_add(&r.h, VETH_INFO_PEER, &peer_ifi, sizeof(peer_ifi));
	rta_add(&r.h, IFLA_IFNAME, peer, strlen(peer) + 1);
	uint32_t p32 = (uint32_t)pid;
	rta_add(&r.h, IFLA_NET_NS_PID, &p32, 4);
	rta_end(&r.h, peerinfo);
	rta_end(&r.h, data);
	rta_end(&r.h, linkinfo);
	if (nl_talk(sk, &r.h) < 0)
		die("create veth");
	int hidx = (int)if_nametoindex(host_name);
	if (!hidx || nl_addr_up(sk, hidx, hcidr) < 0)
		die("host end: address, up");
	close(sk);

	/* The peer end from inside the child's netns: sockets keep the netns
	 * they were created in, so enter, work, and come back. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int target = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0)
		die("enter the child's netns");
	sk = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int pidx = (int)if_nametoindex(peer);
	if (sk < 0 || !pidx || nl_addr_up(sk, pidx, pcidr) < 0)
		die("peer end: address, up");
	if (setns(self, CLONE_NEWNET) < 0)
		die("back to our netns");
	close(sk);
	close(self);
	close(target);
}

/* --- cgroups --------------------------------------------------------------- */
struct cg {
	char dir[4096];
	char *files[MAX_FILES];
	char *vals[MAX_FILES];
	int nfiles;
};
static struct cg cgs[MAX_CG];
static int ncg;

static void parse_cgroup(char *arg)
{
	if (ncg >= MAX_CG) {
		errno = E2BIG;
		die("--cgroup");
	}
	struct cg *c = &cgs[ncg++];
	char *colon = strchr(arg, ':');
	if (colon)
		*colon = 0;
	snprintf(c->dir, sizeof(c->dir), "%s/floor-%d", arg, (int)getpid());
	for (char *tok = colon ? strtok(colon + 1, ",") : NULL; tok && c->nfiles < MAX_FILES; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			errno = EINVAL;
			die("--cgroup DIR:FILE=VAL");
		}
		*eq = 0;
		c->files[c->nfiles] = tok;
		c->vals[c->nfiles++] = eq + 1;
	}
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	close(fd);
}

static void cgroups_create(void)
{
	for (int i = 0; i < ncg; i++) {
		if (mkdir(cgs[i].dir, 0755) < 0)
			die(cgs[i].dir);
		for (int j = 0; j < cgs[i].nfiles; j++)
			write_file(cgs[i].dir, cgs[i].files[j], cgs[i].vals[j]);
	}
}

static void cgroups_attach(pid_t pid)
{
	char text[32];
	snprintf(text, sizeof(text), "%d", (int)pid);
	for (int i = 0; i < ncg; i++)
		write_file(cgs[i].dir, "cgroup.procs", text);
}

static void cgroups_remove(void)
{
	/* A v1 memory cgroup can refuse rmdir for a moment after its last task
	 * exited (EBUSY while the exit is being accounted): retry briefly. */
	for (int i = 0; i < ncg; i++)
		for (int tries = 0; rmdir(cgs[i].dir) < 0 && errno == EBUSY && tries < 1000; tries++)
			usleep(100);
}

/* --- the child ------------------------------------------------------------- */
struct child_args {
	unsigned long ns;
	int park;
	int lo;
	uint64_t drop;
	int seccomp;
	char **argv;
};

static void drop_caps(uint64_t drop)
{
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	uint64_t all = last >= 63 ? ~0ull : ((1ull << (last + 1)) - 1);
	for (int c = 0; c <= last; c++)
		if ((drop >> c) & 1)
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
				die("PR_CAPBSET_DROP");
	uint64_t keep = all & ~drop;
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)keep, (uint32_t)keep, 0 },
		{ (uint32_t)(keep >> 32), (uint32_t)(keep >> 32), 0 },
	};
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset");
}

static void child(struct child_args *a)
{
	char c;
	/* Parked until the parent has written the maps and placed us. */
	if (read(a->park, &c, 1) != 1)
		_exit(125);
	close(a->park);
	if ((a->ns & CLONE_NEWNS) && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / rprivate");
	if (a->lo) {
		/* Needs CAP_NET_ADMIN over the netns: before the capabilities drop. */
		struct ifreq ifr;
		int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
		if (sk < 0 || ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
			die("lo flags");
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0)
			die("lo up");
		close(sk);
	}
	if (a->drop)
		drop_caps(a->drop);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs");
	if (a->seccomp) {
		struct sock_filter f[64];
		struct sock_fprog prog = { (unsigned short)build_bpf(f), f };
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			die("seccomp");
	}
	execv(a->argv[0], a->argv);
	die(a->argv[0]);
}

static unsigned long parse_ns(const char *list)
{
	static const struct { const char *n; unsigned long f; } t[] = {
		{ "user", CLONE_NEWUSER }, { "pid", CLONE_NEWPID }, { "mount", CLONE_NEWNS },
		{ "uts", CLONE_NEWUTS },   { "ipc", CLONE_NEWIPC }, { "net", CLONE_NEWNET },
	};
	unsigned long flags = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
		size_t i;
		for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
			if (strcmp(tok, t[i].n) == 0)
				break;
		if (i == sizeof(t) / sizeof(t[0])) {
			errno = EINVAL;
			die(tok);
		}
		flags |= t[i].f;
	}
	return flags;
}

static int status_code(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* --- helper: OCI createRuntime hook ------------------------------------------ */
static int veth_hook(const char *spec)
{
	char state[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(state) - 1 && (r = read(0, state + n, sizeof(state) - 1 - n)) > 0)
		n += (size_t)r;
	state[n] = 0;
	char *p = strstr(state, "\"pid\"");
	if (!p || !(p = strchr(p, ':'))) {
		errno = EINVAL;
		die("hook: no pid in the OCI state");
	}
	pid_t pid = (pid_t)atoi(p + 1);
	char name[IFNAMSIZ];
	snprintf(name, sizeof(name), "lbh%d", (int)pid);
	make_veth(pid, name, spec);
	return 0;
}

/* --- helper: bwrap in a cgroup, with a veth ---------------------------------- */
static int wrap(char **argv, const char *veth)
{
	int info[2], block[2];
	if (veth && (pipe2(info, O_CLOEXEC) < 0 || pipe2(block, O_CLOEXEC) < 0))
		die("pipe2");
	cgroups_create();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		cgroups_attach(getpid());
		if (veth) {
			/* bwrap ... --info-fd 10 --block-fd 11 (set by bench/run) */
			if (dup2(info[1], 10) < 0 || dup2(block[0], 11) < 0)
				die("dup2");
		}
		execvp(argv[0], argv);
		die(argv[0]);
	}
	if (veth) {
		close(info[1]);
		close(block[0]);
		char buf[512];
		size_t n = 0;
		ssize_t r;
		/* bwrap writes {"child-pid": N} and closes (or keeps) the fd: read
		 * until the number is complete. */
		char *p = NULL;
		while (n < sizeof(buf) - 1 && (r = read(info[0], buf + n, sizeof(buf) - 1 - n)) > 0) {
			n += (size_t)r;
			buf[n] = 0;
			if ((p = strstr(buf, "\"child-pid\"")) && strchr(p, '}'))
				break;
		}
		if (!p || !(p = strchr(p, ':'))) {
			errno = EPROTO;
			die("bwrap --info-fd");
		}
		char name[IFNAMSIZ];
		snprintf(name, sizeof(name), "lbw%d", (int)getpid());
		make_veth((pid_t)atoi(p + 1), name, veth);
		if (write(block[1], "1", 1) != 1)
			die("unblock bwrap");
		close(block[1]);
		close(info[0]);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	cgroups_remove();
	return status_code(st);
}

static int rusage_of(char **argv)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execvp(argv[0], argv);
		die(argv[0]);
	}
	int st;
	struct rusage ru;
	while (wait4(pid, &st, 0, &ru) < 0)
		if (errno != EINTR)
			die("wait4");
	fprintf(stderr, "floor-rusage maxrss_kib=%ld\n", ru.ru_maxrss);
	return status_code(st);
}

int main(int argc, char **argv)
{
	unsigned long ns = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
	uint64_t drop = 0;
	int seccomp = 0, do_wrap = 0, do_rusage = 0, lo = 0;
	const char *veth = NULL, *veth_bwrap = NULL;
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--print-bpf") == 0) {
			struct sock_filter f[64];
			size_t n = build_bpf(f);
			return fwrite(f, sizeof(f[0]), n, stdout) == n ? 0 : 1;
		} else if (strcmp(a, "--veth-hook") == 0 && v) {
			return veth_hook(v);
		} else if (strcmp(a, "--rusage") == 0) {
			do_rusage = 1;
		} else if (strcmp(a, "--wrap") == 0) {
			do_wrap = 1;
		} else if (strcmp(a, "--ns") == 0 && v) {
			ns = parse_ns(v);
			i++;
		} else if (strcmp(a, "--cgroup") == 0 && v) {
			parse_cgroup(argv[++i]);
		} else if (strcmp(a, "--caps-drop") == 0 && v) {
			char buf[256];
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
				drop |= 1ull << atoi(tok);
			i++;
		} else if (strcmp(a, "--lo") == 0) {
			lo = 1;
		} else if (strcmp(a, "--seccomp") == 0) {
			seccomp = 1;
		} else if (strcmp(a, "--veth") == 0 && v) {
			veth = v;
			i++;
		} else if (strcmp(a, "--veth-bwrap") == 0 && v) {
			veth_bwrap = v;
			i++;
		} else {
			fprintf(stderr, "floor: unknown argument %s (see the comment at the top of floor.c)\n", a);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "floor: no program after --\n");
		return 2;
	}
	if (do_rusage)
		return rusage_of(argv + i);
	if (do_wrap)
		return wrap(argv + i, veth_bwrap);

	int park[2];
	if (pipe2(park, O_CLOEXEC) < 0)
		die("pipe2");
	struct child_args ca = { ns, park[0], lo, drop, seccomp, argv + i };
	pid_t pid = (pid_t)syscall(SYS_clone, ns | SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0)
		die("clone");
	if (pid == 0) {
		close(park[1]);
		child(&ca);
	}
	close(park[0]);
	if (ns & CLONE_NEWUSER) {
		char base[64], map[64];
		snprintf(base, sizeof(base), "/proc/%d", (int)pid);
		write_file(base, "setgroups", "deny");
		snprintf(map, sizeof(map), "0 %d 1\n", (int)getuid());
		write_file(base, "uid_map", map);
		snprintf(map, sizeof(map), "0 %d 1\n", (int)getgid());
		write_file(base, "gid_map", map);
	}
	cgroups_create();
	cgroups_attach(pid);
	if (veth) {
		char name[IFNAMSIZ];
		snprintf(name, sizeof(name), "lbf%d", (int)getpid());
		make_veth(pid, name, veth);
	}
	if (write(park[1], "1", 1) != 1)
		die("release the child");
	close(park[1]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	cgroups_remove();
	return status_code(st);
}
