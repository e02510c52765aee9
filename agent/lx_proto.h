/* The agent's half of the protocol.  The Python half is linx_spec/protocol.py;
 * change both in the same commit.
 *
 *   runner (Python)                      agent (C)                    child
 *   ---------------                      ---------                    -----
 *   HELLO ------------------------------>
 *         <------------------------------ READY {version, agent pid}
 *   SPAWN {ns flags, joins, grace,       open joins, setns, clone -->  parked on
 *          cgroup fd?} ----------------->  (clone3 CLONE_INTO_CGROUP     a pipe read
 *                                           with the fd, else clone)
 *         <------------------------------ SPAWNED {host pid, in cgroup?,
 *                                                   errno of a refused clone3}
 *   (host steps: idmap, cgroup, network, rlimits; TRACK_CGROUP per cgroup)
 *   TRACK_CGROUP {path, remove only?} -->
 *         <------------------------------ OK
 *   CGROUPNS --------------------------->  park word 0xfffffffe -------->  unshare the
 *                                          (an OCI `create`: the            cgroup ns now,
 *                                          container is in all its          park again
 *                                          namespaces when it returns) <--  record
 *         <------------------------------ OK | ERROR {step cgroupns, errno}
 *   PROCEED {step order, settings} ----->  settings over the pipe ---->  child steps,
 *                                          status pipe (CLOEXEC):        then execve
 *                                            EOF, no failure record  <--  exec worked
 *         <------------------------------ RUNNING {timings}
 *     or  <------------------------------ ERROR {step, errno, detail}
 *   ABORT ------------------------------>  SIGKILL the parked child
 *         <------------------------------ ABORTED
 *   SIGNAL {signo} --------------------->  kill(child, signo)
 *         <------------------------------ OK
 *   WAIT ------------------------------->  (when the workload ends)
 *         <------------------------------ EXITED {code} | SIGNALED {signo, core}
 *   LINGER {path} ---------------------->  on channel close, keep the workload
 *                                          (path's directory: ours alone, or ERROR)
 *         <------------------------------ OK
 *   RELEASE ---------------------------->  (running workload, an OCI runtime's
 *         <------------------------------ OK   `start`) let go of it: exit at once;
 *                                          the workload is reparented to the
 *                                          nearest subreaper (the engine's shim)
 *   (channel closes) ------------------->  SIGTERM, grace, SIGKILL, kill and
 *                                          remove tracked cgroups, exit; or, if
 *                                          lingering: reap it, write its end to
 *                                          path, remove tracked cgroups, exit
 *
 * The zygote (linx-agent --zygote, one per linx_spec.Runner) speaks the same
 * frames on its own channel and forks one agent per workload, which then
 * speaks the exchange above on the channel it was given:
 *
 *   runner                               zygote                       agent
 *   FORK {stdio mask} + SCM_RIGHTS ----->  fork ------------------------>  channel as
 *     [channel, stdin?, stdout?, stderr?]  (bit i of the mask: fd i        fd 3, stdio
 *                                           rides along; absent: closed)   as 0, 1, 2
 *         <------------------------------ FORKED {agent pid} + SCM_RIGHTS [pidfd]
 *     or  <------------------------------ ERROR {step spawn, errno, detail}
 *   (channel closes) ------------------->  exit; the agents it forked run on,
 *                                          each on its own channel
 *
 * Every frame, both ways:  u16 magic 'LX' | u8 version | u8 type | u32 seq | u32 len
 * (little-endian, 12 bytes), then `len` bytes of attributes, each
 * u16 type | u16 zero | u32 len | value.  A reply carries its request's seq.
 * Strings carry no NUL (a NUL inside is an error).  Integers are u32/u64 LE.
 * One request may carry a file descriptor (SCM_RIGHTS on the frame's bytes):
 * SPAWN with CGROUP_FD=1, a cgroup v2 directory the child is cloned into.
 * A descriptor that arrives with any other frame is closed unused.
 * A child that dies while parked is answered on the next request with
 * ERROR {step=parked, wstatus}.  Bad frames are answered with
 * ERROR {step=protocol}; a bad magic loses the framing, so the agent then
 * stops the workload and exits as if the channel had closed. */
#ifndef LX_PROTO_H
#define LX_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LX_MAGIC 0x584cu /* "LX" */
#define LX_VERSION 1u
#define LX_HDR_LEN 12u
#define LX_MAX_PAYLOAD (1u << 20)
/* Written instead of the settings' length while parked: unshare the cgroup
 * namespace now and keep waiting (LX_M_CGROUPNS).  Never a settings length:
 * those are at most LX_MAX_PAYLOAD. */
#define LX_PARK_CGROUPNS 0xfffffffeu
/* Descriptors one frame may carry: FORK's channel and three stdio fds. */
#define LX_MAX_PASSED_FDS 4

enum lx_msg {
	/* requests */
	LX_M_HELLO = 0x01,
	LX_M_SPAWN = 0x02,
	LX_M_TRACK_CGROUP = 0x03,
	LX_M_PROCEED = 0x04,
	LX_M_ABORT = 0x05,
	LX_M_SIGNAL = 0x06,
	LX_M_WAIT = 0x07,
	LX_M_LINGER = 0x08,
	LX_M_FORK = 0x09, /* to the zygote */
	LX_M_RELEASE = 0x0e,
	LX_M_CGROUPNS = 0x4c, /* 76 (the protocol numbers given to the OCI lifecycle work) */
	/* events (replies) */
	LX_M_READY = 0x41,
	LX_M_SPAWNED = 0x42,
	LX_M_RUNNING = 0x43,
	LX_M_EXITED = 0x44,
	LX_M_SIGNALED = 0x45,
	LX_M_ABORTED = 0x46,
	LX_M_OK = 0x47,
	LX_M_FORKED = 0x48, /* from the zygote */
	LX_M_ERROR = 0x4f,
};

enum lx_attr {
	LX_A_VERSION = 1,   /* u32 */
	LX_A_PID = 2,       /* u32 */
	LX_A_STEP = 3,      /* u32, enum lx_step */
	LX_A_ERRNO = 4,     /* u32 */
	LX_A_DETAIL = 5,    /* str */
	LX_A_CODE = 6,      /* u32 exit code */
	LX_A_SIGNO = 7,     /* u32 */
	LX_A_CORE = 8,      /* u32 0/1 */
	LX_A_WSTATUS = 9,   /* u32 raw wait status */
	LX_A_TIMING = 10,   /* bytes: {u16 step, u16 0, u32 ns} ... */
	LX_A_PATH = 11,     /* str */

	LX_A_NS_FLAGS = 20, /* u32 CLONE_NEW* to create */
	LX_A_NS_JOIN = 21,  /* bytes: u32 CLONE_NEW* type, then the path */
	LX_A_GRACE_MS = 22, /* u32 SIGTERM -> SIGKILL grace when the runner is gone */
	LX_A_CGROUP_FD = 23, /* u32; SPAWN: 1 = a cgroup2 directory fd rides with the frame;
			      * SPAWNED: 1 = the child was cloned into it (CLONE_INTO_CGROUP),
			      * 0 = it was not (the runner moves it: cgroup.procs) */

	LX_A_STEP_ORDER = 30, /* bytes: u16 step ids, child side, in order */
	LX_A_EXEC_PATH = 31,  /* str */
	LX_A_ARG = 32,        /* str, repeated: argv */
	LX_A_ENV = 33,        /* str, repeated: NAME=value */
	LX_A_CWD = 34,        /* str */
	LX_A_HOSTNAME = 35,   /* str */
	LX_A_DOMAINNAME = 36, /* str */
	LX_A_UID = 37,        /* u32 */
	LX_A_GID = 38,        /* u32 */
	LX_A_GROUP = 39,      /* u32, repeated */
	LX_A_UMASK = 40,      /* u32 */
	LX_A_CAP_BOUNDING = 41,    /* u64 mask kept */
	LX_A_CAP_EFFECTIVE = 42,   /* u64 */
	LX_A_CAP_PERMITTED = 43,   /* u64 */
	LX_A_CAP_INHERITABLE = 44, /* u64 */
	LX_A_CAP_AMBIENT = 45,     /* u64 */
	LX_A_NO_NEW_PRIVS = 46,    /* u32 0/1 */
	LX_A_SECCOMP = 47,         /* bytes: struct sock_filter[] */
	LX_A_MOUNT = 48,           /* bytes: nested attributes, one mount (lx_mounts.c) */
	LX_A_ROOTFS = 49,          /* str */
	LX_A_MOUNT_OPT = 50,       /* u32 flags for the mounts step (lx_mounts.c) */
	LX_A_SESSION = 51,         /* u32: 2 = fd 0 becomes the controlling tty (every child gets setsid) */
	LX_A_REMOVE_ONLY = 52,     /* u32 on TRACK_CGROUP: rmdir it if empty, never kill in it */
	LX_A_STDIO = 53,           /* u32 on FORK: bit i set = fd i of the agent rides with the frame */
	LX_A_TIME_MONOTONIC = 60,  /* u64 ns: CLOCK_MONOTONIC offset of the new time namespace (lx_time.c) */
	LX_A_TIME_BOOTTIME = 61,   /* u64 ns: CLOCK_BOOTTIME offset */
	LX_A_PDEATHSIG = 62,       /* u32: signal the pdeathsig step arms; 0 disarms (default SIGKILL) */
};

/* LX_A_MOUNT_OPT bits. */
#define LX_MOUNT_OPT_SLAVE 1u         /* propagation rslave instead of rprivate */
#define LX_MOUNT_OPT_READONLY_ROOT 2u /* the root mount read-only, after every mount */

/* One mount: the value of an LX_A_MOUNT is itself a list of attributes (same
 * u16 type | u16 zero | u32 len framing), numbered apart from enum lx_attr so
 * that a nested one is never mistaken for a top-level one.  Entries run in
 * the order they come; an LX_MF_ROOT entry (first) is mounted onto
 * LX_A_ROOTFS and becomes the root. */
enum lx_mount_attr {
	LX_MA_KIND = 0x100,    /* u32 enum lx_mount_kind */
	LX_MA_TARGET = 0x101,  /* str: absolute path inside the root */
	LX_MA_SOURCE = 0x102,  /* str: host path (bind); the name mountinfo shows, at most 255 bytes (fs) */
	LX_MA_FSTYPE = 0x103,  /* str: filesystem type (fs) */
	LX_MA_OPTION = 0x104,  /* str, repeated: fsconfig `key` or `key=value` */
	LX_MA_FLAGS = 0x105,   /* u32 enum lx_mount_flag bits */
	LX_MA_CONTENT = 0x106, /* bytes: file content (file) */
	LX_MA_MODE = 0x107,    /* u32 permission bits (file); file type and permission bits (node) */
	LX_MA_MAJOR = 0x108,   /* u32 device major number (node: char, block) */
	LX_MA_MINOR = 0x109,   /* u32 device minor number (node: char, block) */
	LX_MA_UID = 0x10a,     /* u32 owner (node), an id inside the workload's user namespace */
	LX_MA_GID = 0x10b,     /* u32 group (node) */
};

enum lx_mount_kind {
	LX_MK_BIND = 1,     /* bind SOURCE (a host path) */
	LX_MK_FS = 2,       /* a fresh FSTYPE filesystem with OPTIONs */
	LX_MK_DEV = 3,      /* a minimal /dev; OPTION shm_size=BYTES */
	LX_MK_MASK = 4,     /* /dev/null over a file, an empty read-only tmpfs over a dir */
	LX_MK_READONLY = 5, /* a read-only bind of the target onto itself; RDONLY: its own mount made read-only */
	LX_MK_FILE = 6,     /* a file holding CONTENT (generated /etc files) */
	LX_MK_NODE = 7,     /* a device node or FIFO: MODE (type and permissions), MAJOR, MINOR, UID, GID */
};

enum lx_mount_flag {
	LX_MF_RDONLY = 1,
	LX_MF_NOSUID = 2,
	LX_MF_NODEV = 4,
	LX_MF_NOEXEC = 8,
	LX_MF_RECURSIVE = 16, /* bind: the mounts below the source too */
	LX_MF_CREATE = 32,    /* create a missing target (inside the root) */
	LX_MF_OPTIONAL = 64,  /* bind: skip when the source is missing */
	LX_MF_ROOT = 128,     /* fs: mounted onto LX_A_ROOTFS, becomes the root */
};

struct lx_hdr {
	uint16_t magic;
	uint8_t version;
	uint8_t type;
	uint32_t seq;
	uint32_t len;
};

/* A cursor over a payload's attributes. */
struct lx_attr_it {
	const uint8_t *p;
	size_t left;
};

struct lx_attrv {
	uint16_t type;
	uint32_t len;
	const uint8_t *val;
};

/* A frame being built in a fixed buffer (events are small). */
struct lx_out {
	uint8_t buf[65536];
	size_t len;
	int overflow;
};

void lx_hdr_decode(const uint8_t raw[LX_HDR_LEN], struct lx_hdr *h);
/* 1: got one; 0: end; -1: malformed (truncated attribute). */
int lx_attr_next(struct lx_attr_it *it, struct lx_attrv *a);
int lx_attr_u32(const struct lx_attrv *a, uint32_t *out);
int lx_attr_u64(const struct lx_attrv *a, uint64_t *out);
/* Copy a string value into dst (NUL-terminated); -1 on NUL inside or too long. */
int lx_attr_str(const struct lx_attrv *a, char *dst, size_t cap);
/* Pointer to the string value checked for NUL; caller uses a->len. */
int lx_attr_str_ok(const struct lx_attrv *a);

void lx_out_begin(struct lx_out *o, uint8_t type, uint32_t seq);
void lx_out_u32(struct lx_out *o, uint16_t type, uint32_t v);
void lx_out_bytes(struct lx_out *o, uint16_t type, const void *v, size_t len);
void lx_out_str(struct lx_out *o, uint16_t type, const char *s);
/* Whole reads and writes, retrying EINTR; -1 on error or (read) early EOF. */
int lx_read_full(int fd, void *buf, size_t len);
/* lx_read_full on a socket, keeping a descriptor passed with the bytes
 * (SCM_RIGHTS, received close-on-exec): the first one goes to *passed when it
 * is -1, any other is closed.  Plain reads when fd is not a socket. */
int lx_recv_full(int fd, void *buf, size_t len, int *passed);
/* The same, keeping up to max descriptors in fds (*nfds counts them; it may
 * start above 0), closing any beyond. */
int lx_recv_fds(int fd, void *buf, size_t len, int *fds, size_t max, size_t *nfds);
int lx_write_full(int fd, const void *buf, size_t len);
/* A small file (/proc, cgroupfs) read until EOF or until cap - 1 bytes, then
 * NUL-terminated: its length, or -1 with errno (open or read failed).
 * Async-signal-safe (the child uses it between clone and exec). */
ssize_t lx_read_file(const char *path, char *buf, size_t cap);

/* Writes the frame to fd (all of it); -1 on error. */
int lx_out_send(struct lx_out *o, int fd);
/* The same, passing the descriptor `pass` with the frame (SCM_RIGHTS). */
int lx_out_send_fd(struct lx_out *o, int fd, int pass);

#endif
