/* The mounts step, in the child's new mount namespace:
 *
 *   1. propagation rprivate (or rslave) on /, before any mount, so nothing
 *      done here ever reaches the host; with nothing else to do, stop here
 *      (the common case costs one syscall);
 *   2. the root: the rootfs bound onto itself (pivot_root wants a mount
 *      point), or an overlay mounted onto it; without rootfs, the host's /;
 *   3. the entries, in the order the plan gives them (the spec's entries,
 *      then device nodes, /etc files, read-only paths, masked paths);
 *   4. pivot_root(".", ".") then umount2(".", MNT_DETACH): the old root is
 *      gone without needing a directory for it (pivot_root(2), NOTES);
 *   5. the root mount read-only, last, so the steps above could still
 *      create mount points in it.
 *
 * Every mount goes through the new mount API (Linux 5.12: open_tree,
 * fsopen/fsmount, move_mount, mount_setattr), onto an O_PATH fd of the
 * target that openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) resolved
 * inside the root: a symlink planted in a rootfs (`etc -> /host/dir`) is
 * followed as if the root were /, so no mount ever lands outside it, and no
 * proc magic link can hop out either.  Read-only binds set MOUNT_ATTR_RDONLY
 * with mount_setattr on the detached clone (recursively for rbinds): it only
 * adds flags, so the nosuid/nodev/noexec flags the kernel locks on mounts
 * inherited by a user namespace are kept as they are -- what runc gets by
 * reading statvfs flags back into its MS_REMOUNT -- and a recursive bind is
 * read-only all the way down, which MS_REMOUNT cannot do. */
#define _GNU_SOURCE
#include "lx_steps.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lx_fail.h"
#include "lx_mount_entry.h"
#include "lx_settings.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct lx_mctx {
	int root; /* O_PATH fd of the directory targets resolve in */
	struct lx_err *e;
};

/* Open PATH as seen from inside the root: absolute symlinks and `..` stay
 * inside it (RESOLVE_IN_ROOT), and proc magic links are refused. */
static int in_root(int root, const char *path, int flags)
{
	struct open_how how;
	const char *rel = path;
	int fd;

	while (*rel == '/')
		rel++;
	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)(O_PATH | O_CLOEXEC | flags);
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	/* EAGAIN: a concurrent rename raced the `..` check; just retry. */
	for (int i = 0; i < 16; i++) {
		fd = (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	return fd;
}

/* Create the missing components of PATH inside the root, one at a time:
 * each parent is (re)resolved with in_root, and the new component is made
 * with mkdirat/openat(O_CREAT|O_EXCL) relative to it, which never follow a
 * symlink.  A dangling symlink on the way (`etc -> /host/dir`, or Debian's
 * `resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`) is read and its
 * target created instead, as seen from inside the root (as runc's
 * securejoin): the new components land inside the root whatever the link says. */
static int create_in_root(struct lx_mctx *c, const char *path, int want_dir, int depth)
{
	char buf[4096], link[4096], next[4096];
	char *p;
	int parent = -1;

	if (depth > 40)
		return lx_fail(c->e, LX_STEP_MOUNTS, ELOOP, "mount point %s: too many symlinks", path);
	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf; *p == '/'; p++)
		;
	while (*p) {
		char *slash = strchr(p, '/');
		int last = !slash || !slash[1];
		if (slash)
			*slash = 0;
		int fd = in_root(c->root, buf, 0);
		if (fd < 0 && errno == ENOENT) {
			int at = parent >= 0 ? parent : c->root;
			int r;
			if (last && !want_dir) {
				r = openat(at, p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (r >= 0)
					close(r);
			} else {
				r = mkdirat(at, p, 0755);
			}
			if (r < 0) {
				int err = errno;
				ssize_t n = err == EEXIST ? readlinkat(at, p, link, sizeof(link) - 1) : -1;
				if (parent >= 0)
					close(parent);
				if (n > 0) {
					/* The link replaces its own component: relative links
					 * continue from the parent, absolute ones from the root
					 * (in_root keeps both inside it). */
					link[n] = 0;
					int len = snprintf(next, sizeof(next), "%.*s/%s%s%s",
							   link[0] == '/' ? 0 : (int)(p - buf), buf, link,
							   slash && slash[1] ? "/" : "", slash && slash[1] ? slash + 1 : "");
					if (len < 0 || (size_t)len >= sizeof(next))
						return lx_fail(c->e, LX_STEP_MOUNTS, ENAMETOOLONG, "mount point %s", path);
					return create_in_root(c, next, want_dir, depth + 1);
				}
				return lx_fail(c->e, LX_STEP_MOUNTS, err, "create mount point %s: %s %s", path,
					       last && !want_dir ? "file" : "directory", buf);
			}
			fd = in_root(c->root, buf, 0);
		}
		if (fd < 0) {
			int err = errno;
			if (parent >= 0)
				close(parent);
			return lx_fail(c->e, LX_STEP_MOUNTS, err, "mount point %s: open %s inside the root%s", path, buf,
				       err == ELOOP ? " (a symlink loop, or a /proc magic link: never followed)" : "");
		}
		if (parent >= 0)
			close(parent);
		parent = fd;
		if (!slash)
			break;
		*slash = '/';
		p = slash + 1;
	}
	return parent >= 0 ? parent : in_root(c->root, "/", 0);
}

static int open_target(struct lx_mctx *c, const struct lx_mount *m, int want_dir)
{
	int fd = in_root(c->root, m->target, 0);
	if (fd >= 0)
		return fd;
	if (errno == ENOENT && (m->flags & LX_MF_CREATE))
		return create_in_root(c, m->target, want_dir, 0);
	if (errno == ENOENT)
		return lx_fail(c->e, LX_STEP_MOUNTS, ENOENT,
			       "mount point %s does not exist (without rootfs none is created on the host)", m->target);
	return lx_fail(c->e, LX_STEP_MOUNTS, errno, "open mount point %s inside the root%s", m->target,
		       errno == ELOOP ? " (a symlink loop, or a /proc magic link: never followed)" : "");
}

static uint64_t attr_bits(uint32_t flags)
{
	uint64_t a = 0;
	if (flags & LX_MF_RDONLY)
		a |= MOUNT_ATTR_RDONLY;
	if (flags & LX_MF_NOSUID)
		a |= MOUNT_ATTR_NOSUID;
	if (flags & LX_MF_NODEV)
		a |= MOUNT_ATTR_NODEV;
	if (flags & LX_MF_NOEXEC)
		a |= MOUNT_ATTR_NOEXEC;
	return a;
}

/* Only adds flags (attr_clr stays 0): locked flags are never cleared. */
static int add_attrs(int tree, uint32_t flags, int recursive)
{
	struct mount_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.attr_set = attr_bits(flags);
	if (!attr.attr_set)
		return 0;
	return mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr));
}

static int attach(int tree, int target)
{
	return move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* The filesystem context's message log: "e tmpfs: Invalid uid '4242'\n"
 * (level letter first), read as "tmpfs: Invalid uid '4242'". */
static void fs_log(int fs, char *buf, size_t cap)
{
	ssize_t n = read(fs, buf, cap - 1);
	size_t len = n > 0 ? (size_t)n : 0;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	buf[len] = 0;
	if (len > 2 && buf[1] == ' ')
		memmove(buf, buf + 2, len - 1);
}

/* A fresh, detached filesystem: fsopen, its source, one fsconfig per option,
 * fsmount.  The source is what /proc/self/mountinfo, findmnt and df show
 * (mount(2) gets it as its first argument; the new API leaves it "none"
 * unless set): the OCI mount's `source`, else the type, as runc and mount(8)
 * do; runtimetest finds mounts by it.  fsconfig takes at most 255 bytes of a
 * string value (strndup_user(value, 256)): the plan and lx_mount_parse bound it.
 * On failure the filesystem's own message (read from the context fd) goes
 * into the detail: "tmpfs: Bad value for 'size'" says more than EINVAL. */
static int fresh_fs(struct lx_mctx *c, const char *fstype, const char *source, const char *const *opts,
		    size_t nopts, uint32_t flags, const char *target)
{
	char key[256], log[256] = "";
	int fs = fsopen(fstype, FSOPEN_CLOEXEC);
	if (fs < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, errno, "fsopen %s for %s", fstype, target);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "source", source && source[0] ? source : fstype, 0) < 0) {
		int err = errno;
		fs_log(fs, log, sizeof(log));
		close(fs);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "%s for %s: source %s%s%s", fstype, target,
			       source && source[0] ? source : fstype, log[0] ? ": " : "", log);
	}
	for (size_t i = 0; i < nopts; i++) {
		const char *eq = strchr(opts[i], '=');
		int r;
		if (eq) {
			snprintf(key, sizeof(key), "%.*s", (int)(eq - opts[i]), opts[i]);
			r = fsconfig(fs, FSCONFIG_SET_STRING, key, eq + 1, 0);
		} else {
			r = fsconfig(fs, FSCONFIG_SET_FLAG, opts[i], NULL, 0);
		}
		if (r < 0) {
			int err = errno;
			fs_log(fs, log, sizeof(log));
			close(fs);
			return lx_fail(c->e, LX_STEP_MOUNTS, err, "%s for %s: option %s%s%s", fstype, target, opts[i],
				       log[0] ? ": " : "", log);
		}
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int err = errno;
		fs_log(fs, log, sizeof(log));
		close(fs);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "create %s for %s%s%s", fstype, target, log[0] ? ": " : "",
			       log);
	}
	int mnt = fsmount(fs, FSMOUNT_CLOEXEC, (unsigned)attr_bits(flags));
	int err = errno;
	close(fs);
	if (mnt < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "fsmount %s for %s", fstype, target);
	return mnt;
}

static int do_bind(struct lx_mctx *c, const struct lx_mount *m)
{
	int rec = (m->flags & LX_MF_RECURSIVE) != 0;
	struct stat st;
	int tree = open_tree(AT_FDCWD, m->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0));
	if (tree < 0) {
		if (errno == ENOENT && (m->flags & LX_MF_OPTIONAL))
			return 0;
		/* EINVAL for a non-recursive bind in a user namespace: the kernel
		 * refuses to reveal what locked mounts below the source cover. */
		return lx_fail(c->e, LX_STEP_MOUNTS, errno, "bind %s onto %s: clone the source%s", m->source, m->target,
			       !rec && errno == EINVAL ? " (non-recursive binds of a tree with mounts below "
							 "are refused in a user namespace)" : "");
	}
	if (add_attrs(tree, m->flags, rec) < 0 || fstat(tree, &st) < 0) {
		int err = errno;
		close(tree);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "bind %s onto %s: set mount flags", m->source, m->target);
	}
	int t = open_target(c, m, S_ISDIR(st.st_mode));
	if (t < 0) {
		close(tree);
		return -1;
	}
	int r = attach(tree, t);
	int err = errno;
	close(t);
	close(tree);
	if (r < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "bind %s onto %s", m->source, m->target);
	return 0;
}

static int do_fs(struct lx_mctx *c, const struct lx_mount *m)
{
	int mnt = fresh_fs(c, m->fstype, m->source, m->options, m->noptions, m->flags, m->target);
	if (mnt < 0)
		return -1;
	int t = open_target(c, m, 1);
	if (t < 0) {
		close(mnt);
		return -1;
	}
	int r = attach(mnt, t);
	int err = errno;
	close(t);
	close(mnt);
	if (r < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "mount %s onto %s", m->fstype, m->target);
	return 0;
}

/* The host's device nodes, bind-mounted: mknod is refused in a user
 * namespace, and a tmpfs mounted there is nodev for device nodes anyway. */
static const char *const lx_devices[] = { "null", "zero", "full", "random", "urandom", "tty" };
#define LX_NDEV (sizeof(lx_devices) / sizeof(lx_devices[0]))
static const char *const lx_dev_links[][2] = {
	{ "fd", "/proc/self/fd" },      { "stdin", "/proc/self/fd/0" }, { "stdout", "/proc/self/fd/1" },
	{ "stderr", "/proc/self/fd/2" }, { "ptmx", "pts/ptmx" },
};

static int do_dev(struct lx_mctx *c, const struct lx_mount *m)
{
	int clones[LX_NDEV];
	char path[64], shm_size[96] = "size=67108864";
	int dev = -1, t = -1, sub = -1, mnt = -1, rc = -1;

	for (size_t i = 0; i < LX_NDEV; i++)
		clones[i] = -1;
	for (size_t i = 0; i < m->noptions; i++)
		if (strncmp(m->options[i], "shm_size=", 9) == 0)
			snprintf(shm_size, sizeof(shm_size), "size=%s", m->options[i] + 9);
	/* Cloned before the new /dev covers the host's (without rootfs they are
	 * the same path). */
	for (size_t i = 0; i < LX_NDEV; i++) {
		snprintf(path, sizeof(path), "/dev/%s", lx_devices[i]);
		clones[i] = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (clones[i] < 0 && errno != ENOENT) {
			lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: clone the host's %s", m->target, path);
			goto out;
		}
	}
	static const char *const dev_opts[] = { "mode=755", "size=65536k" };
	dev = fresh_fs(c, "tmpfs", "tmpfs", dev_opts, 2, LX_MF_NOSUID | LX_MF_NOEXEC, m->target);
	if (dev < 0)
		goto out;
	/* Filled while still detached: nobody else can see it yet. */
	for (size_t i = 0; i < LX_NDEV; i++) {
		int f = openat(dev, lx_devices[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (f < 0) {
			lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: create %s", m->target, lx_devices[i]);
			goto out;
		}
		close(f);
	}
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: mkdir pts, shm", m->target);
		goto out;
	}
	for (size_t i = 0; i < sizeof(lx_dev_links) / sizeof(lx_dev_links[0]); i++) {
		if (symlinkat(lx_dev_links[i][1], dev, lx_dev_links[i][0]) < 0) {
			lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: symlink %s", m->target, lx_dev_links[i][0]);
			goto out;
		}
	}
	t = open_target(c, m, 1);
	if (t < 0)
		goto out;
	if (attach(dev, t) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "mount the dev tmpfs onto %s", m->target);
		goto out;
	}
	/* From here `dev` is the attached tmpfs's root: mounts go below it. */
	for (size_t i = 0; i < LX_NDEV; i++) {
		if (clones[i] < 0)
			continue;
		sub = openat(dev, lx_devices[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0 || attach(clones[i], sub) < 0) {
			lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: bind the host's /dev/%s", m->target, lx_devices[i]);
			goto out;
		}
		close(sub);
		sub = -1;
	}
	/* A private devpts instance (each devpts mount is one since 4.7):
	 * ptmxmode=0666 so that pts/ptmx, which /dev/ptmx points at, opens. */
	static const char *const pts_opts[] = { "newinstance", "ptmxmode=0666", "mode=0620" };
	mnt = fresh_fs(c, "devpts", "devpts", pts_opts, 3, LX_MF_NOSUID | LX_MF_NOEXEC, "pts");
	if (mnt < 0)
		goto out;
	sub = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0 || attach(mnt, sub) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: mount devpts onto pts", m->target);
		goto out;
	}
	close(sub);
	close(mnt);
	sub = mnt = -1;
	const char *shm_opts[] = { "mode=1777", shm_size };
	mnt = fresh_fs(c, "tmpfs", "shm", shm_opts, 2, LX_MF_NOSUID | LX_MF_NODEV | LX_MF_NOEXEC, "shm");
	if (mnt < 0)
		goto out;
	sub = openat(dev, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0 || attach(mnt, sub) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "dev %s: mount tmpfs onto shm", m->target);
		goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; i < LX_NDEV; i++)
		if (clones[i] >= 0)
			close(clones[i]);
	if (dev >= 0)
		close(dev);
	if (t >= 0)
		close(t);
	if (sub >= 0)
		close(sub);
	if (mnt >= 0)
		close(mnt);
	return rc;
}

/* Masked: /dev/null over a file, an empty read-only tmpfs over a directory
 * (as runc).  A path that does not exist is skipped: the default set names
 * files that only some kernels have. */
static int do_mask(struct lx_mctx *c, const struct lx_mount *m)
{
	struct stat st;
	int t = in_root(c->root, m->target, 0);
	int over;
	if (t < 0)
		return errno == ENOENT ? 0 : lx_fail(c->e, LX_STEP_MOUNTS, errno, "mask %s: open it inside the root",
						      m->target);
	if (fstat(t, &st) < 0) {
		int err = errno;
		close(t);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "mask %s: stat", m->target);
	}
	if (S_ISDIR(st.st_mode)) {
		over = fresh_fs(c, "tmpfs", "tmpfs", NULL, 0, LX_MF_RDONLY | LX_MF_NOSUID | LX_MF_NODEV | LX_MF_NOEXEC, m->target);
		if (over < 0) {
			close(t);
			return -1;
		}
	} else {
		/* The host's /dev/null: still reachable, the root is not pivoted yet. */
		over = open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (over < 0 || add_attrs(over, LX_MF_RDONLY | LX_MF_NOSUID | LX_MF_NOEXEC, 0) < 0) {
			int err = errno;
			close(t);
			if (over >= 0)
				close(over);
			return lx_fail(c->e, LX_STEP_MOUNTS, err, "mask %s: clone /dev/null", m->target);
		}
	}
	int r = attach(over, t);
	int err = errno;
	close(over);
	close(t);
	if (r < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "mask %s", m->target);
	return 0;
}

/* Read-only: a recursive bind of the path onto itself, read-only all the way down.
 * With LX_MF_RDONLY the target is the root of a mount made by an entry before
 * (the cgroup tree's tmpfs, whose directories had to be created first): that
 * mount itself is made read-only in place, nothing stacked on it. */
static int do_readonly(struct lx_mctx *c, const struct lx_mount *m)
{
	int t = in_root(c->root, m->target, 0);
	if (t < 0)
		return errno == ENOENT ? 0 : lx_fail(c->e, LX_STEP_MOUNTS, errno,
						      "read-only %s: open it inside the root", m->target);
	if (m->flags & LX_MF_RDONLY) {
		int r = add_attrs(t, LX_MF_RDONLY, 0);
		int err = errno;
		close(t);
		return r < 0 ? lx_fail(c->e, LX_STEP_MOUNTS, err, "read-only %s: set the mount read-only", m->target) : 0;
	}
	int tree = open_tree(t, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	int r = tree < 0 ? -1 : add_attrs(tree, LX_MF_RDONLY, 1);
	if (r == 0)
		r = attach(tree, t);
	int err = errno;
	if (tree >= 0)
		close(tree);
	close(t);
	if (r < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "read-only %s: bind it onto itself read-only", m->target);
	return 0;
}

/* A device node or FIFO (OCI linux.devices), made as runc makes it: mknodat
 * in the parent directory, resolved inside the root like every target, with
 * the exact mode (umask 0 around it: the child is single-threaded, and the cwd
 * step sets the workload's umask later) and chowned without following a
 * link.  A node that exists already is left as it is (runc: EEXIST is fine).
 * In a user namespace the kernel refuses mknod of char and block devices
 * (EPERM): the host's node of the same path is bound onto an empty file
 * instead -- only if it is the very device asked for (type and numbers), so a
 * config cannot have an arbitrary host file bound in under a device's name. */
static int do_node(struct lx_mctx *c, const struct lx_mount *m)
{
	char dir[4096];
	const char *slash = strrchr(m->target, '/');
	const char *base = slash + 1;
	dev_t rdev = makedev(m->major, m->minor);
	struct stat st;
	int parent, r, err;

	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, EINVAL, "device %s: not a file name", m->target);
	snprintf(dir, sizeof(dir), "%.*s", slash == m->target ? 1 : (int)(slash - m->target), m->target);
	parent = in_root(c->root, dir, O_DIRECTORY);
	if (parent < 0 && errno == ENOENT && (m->flags & LX_MF_CREATE))
		parent = create_in_root(c, dir, 1, 0);
	else if (parent < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, errno, "device %s: open %s inside the root", m->target, dir);
	if (parent < 0)
		return -1;
	mode_t old = umask(0);
	r = mknodat(parent, base, (mode_t)m->mode, S_ISFIFO(m->mode) ? 0 : rdev);
	err = errno;
	umask(old);
	if (r < 0 && err == EEXIST) {
		close(parent);
		return 0;
	}
	if (r < 0 && err == EPERM && !S_ISFIFO(m->mode)) {
		/* The host's node: still reachable by its path, the root is not pivoted yet. */
		int tree = open_tree(AT_FDCWD, m->target, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), t = -1;
		if (tree < 0 || fstat(tree, &st) < 0) {
			err = errno;
			lx_fail(c->e, LX_STEP_MOUNTS, err, "device %s: mknod is refused here (a user namespace), and the "
				"host's %s cannot be bound instead", m->target, m->target);
		} else if ((st.st_mode & S_IFMT) != (m->mode & S_IFMT) || st.st_rdev != rdev) {
			lx_fail(c->e, LX_STEP_MOUNTS, ENODEV, "device %s: mknod is refused here (a user namespace), and the "
				"host's %s is not the device %u:%u to bind instead", m->target, m->target, m->major, m->minor);
		} else {
			/* An empty file as the mount point, made here (O_EXCL: never someone else's). */
			int f = openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (f >= 0) {
				close(f);
				t = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			}
			if (t < 0 || attach(tree, t) < 0)
				lx_fail(c->e, LX_STEP_MOUNTS, errno, "device %s: bind the host's node", m->target);
			else
				r = 0;
		}
		if (t >= 0)
			close(t);
		if (tree >= 0)
			close(tree);
		close(parent);
		return r;
	}
	if (r < 0) {
		close(parent);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "device %s: mknod", m->target);
	}
	r = fchownat(parent, base, (uid_t)m->uid, (gid_t)m->gid, AT_SYMLINK_NOFOLLOW);
	err = errno;
	close(parent);
	if (r < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "device %s: chown %u:%u", m->target, m->uid, m->gid);
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A file with the given content (generated /etc files), written into a
 * small private tmpfs -- never into the rootfs or the host -- and bound onto
 * the target.  The tmpfs is attached only for the moment it takes to clone
 * the file out of it (cloning out of a detached mount needs Linux 6.15):
 * stacked on the root, where nothing looks, then detached again; the bound
 * file keeps its superblock alive. */
static int do_file(struct lx_mctx *c, const struct lx_mount *m, int *cwd_moved)
{
	static const char *const opts[] = { "mode=755", "size=1m", "nr_inodes=16" };
	int staging = fresh_fs(c, "tmpfs", "tmpfs", opts, 3, LX_MF_NOSUID | LX_MF_NODEV | LX_MF_NOEXEC, m->target);
	int f = -1, file = -1, t = -1, rc = -1;
	if (staging < 0)
		return -1;
	f = openat(staging, "file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (f < 0 || write_all(f, m->content, m->content_len) < 0 || fchmod(f, (mode_t)m->mode) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "write the content of %s into a tmpfs", m->target);
		goto out;
	}
	if (attach(staging, c->root) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "attach the tmpfs holding %s", m->target);
		goto out;
	}
	file = open_tree(staging, "file", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	int err = errno;
	/* umount2 of "." reaches the mount whose root is the cwd, without a
	 * path to it (the same move as after pivot_root). */
	*cwd_moved = 1;
	if (fchdir(staging) < 0 || umount2(".", MNT_DETACH) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "detach the tmpfs holding %s", m->target);
		goto out;
	}
	if (file < 0 || add_attrs(file, m->flags, 0) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, file < 0 ? err : errno, "clone the file holding %s", m->target);
		goto out;
	}
	t = open_target(c, m, 0);
	if (t < 0)
		goto out;
	if (attach(file, t) < 0) {
		lx_fail(c->e, LX_STEP_MOUNTS, errno, "bind the generated %s", m->target);
		goto out;
	}
	rc = 0;
out:
	if (f >= 0)
		close(f);
	if (file >= 0)
		close(file);
	if (t >= 0)
		close(t);
	close(staging);
	return rc;
}

static int open_root(struct lx_mctx *c, const struct lx_settings *s, struct lx_mount *m, size_t *first)
{
	const char *why = "";
	*first = 0;
	if (!s->rootfs) {
		c->root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (c->root < 0)
			return lx_fail(c->e, LX_STEP_MOUNTS, errno, "open /");
		return 0;
	}
	if (s->nmounts && lx_mount_parse(&s->mounts[0], m, &why) == 0 && (m->flags & LX_MF_ROOT)) {
		/* An overlay root, mounted onto the rootfs path (its top layer). */
		int mnt = fresh_fs(c, m->fstype, m->source, m->options, m->noptions, m->flags, "the root");
		if (mnt < 0)
			return -1;
		if (move_mount(mnt, "", AT_FDCWD, s->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
			int err = errno;
			close(mnt);
			return lx_fail(c->e, LX_STEP_MOUNTS, err, "mount the %s root onto %s", m->fstype, s->rootfs);
		}
		c->root = mnt;
		*first = 1;
		return 0;
	}
	/* pivot_root needs the new root to be a mount point: bind it onto itself
	 * (recursively: in a user namespace the mounts below are locked to it). */
	int tree = open_tree(AT_FDCWD, s->rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return lx_fail(c->e, LX_STEP_MOUNTS, errno, "rootfs %s: clone it", s->rootfs);
	if (move_mount(tree, "", AT_FDCWD, s->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		int err = errno;
		close(tree);
		return lx_fail(c->e, LX_STEP_MOUNTS, err, "rootfs %s: bind it onto itself", s->rootfs);
	}
	c->root = tree;
	return 0;
}

int lx_mounts_in_child(const struct lx_settings *s, struct lx_err *e)
{
	static struct lx_mount m; /* 12 KiB: the child is single-threaded */
	struct lx_mctx c = { -1, e };
	unsigned long prop = (s->mount_opt & LX_MOUNT_OPT_SLAVE) ? MS_SLAVE : MS_PRIVATE;
	const char *why = "";
	size_t first;
	int cwd = -1, cwd_moved = 0, rc = -1;

	/* A joined mount namespace is mounted in (as runc), never the runtime's own. */
	if (lx_ns_guard_check(LX_GUARD_MNT, LX_STEP_MOUNTS, "mounts", e) < 0)
		return -1;
	if (mount(NULL, "/", NULL, MS_REC | prop, NULL) < 0)
		return lx_fail(e, LX_STEP_MOUNTS, errno, "make / %s", prop == MS_SLAVE ? "rslave" : "rprivate");
	if (!s->nmounts && !s->rootfs && !(s->mount_opt & LX_MOUNT_OPT_READONLY_ROOT))
		return 0;

	if (!s->rootfs) {
		cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cwd < 0)
			return lx_fail(e, LX_STEP_MOUNTS, errno, "open the working directory");
	}
	if (open_root(&c, s, &m, &first) < 0)
		goto out;
	for (size_t i = first; i < s->nmounts; i++) {
		int r;
		if (lx_mount_parse(&s->mounts[i], &m, &why) < 0) {
			lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "mount entry %zu: %s", i, why);
			goto out;
		}
		if (m.flags & LX_MF_ROOT) {
			lx_fail(e, LX_STEP_PROTOCOL, EINVAL, "mount entry %zu: a root entry comes first, with a rootfs", i);
			goto out;
		}
		switch (m.kind) {
		case LX_MK_BIND: r = do_bind(&c, &m); break;
		case LX_MK_FS: r = do_fs(&c, &m); break;
		case LX_MK_DEV: r = do_dev(&c, &m); break;
		case LX_MK_MASK: r = do_mask(&c, &m); break;
		case LX_MK_READONLY: r = do_readonly(&c, &m); break;
		case LX_MK_NODE: r = do_node(&c, &m); break;
		default: r = do_file(&c, &m, &cwd_moved); break;
		}
		if (r < 0)
			goto out;
	}
	if (s->rootfs) {
		/* The old root is stacked onto "." by pivot_root and detached from
		 * there: no put_old directory is needed inside the new root. */
		if (fchdir(c.root) < 0)
			lx_fail(e, LX_STEP_MOUNTS, errno, "chdir into the rootfs %s", s->rootfs);
		else if (syscall(SYS_pivot_root, ".", ".") < 0)
			lx_fail(e, LX_STEP_MOUNTS, errno, "pivot_root into %s", s->rootfs);
		else if (umount2(".", MNT_DETACH) < 0)
			lx_fail(e, LX_STEP_MOUNTS, errno, "detach the old root");
		else if (chdir("/") < 0)
			lx_fail(e, LX_STEP_MOUNTS, errno, "chdir /");
		else
			rc = 0;
		if (rc < 0)
			goto out;
		rc = -1;
	}
	if (s->mount_opt & LX_MOUNT_OPT_READONLY_ROOT) {
		/* Last: the steps above could still create mount points in it.  Not
		 * recursive: the declared mounts keep their own mode. */
		struct mount_attr attr;
		memset(&attr, 0, sizeof(attr));
		attr.attr_set = MOUNT_ATTR_RDONLY;
		if (mount_setattr(AT_FDCWD, "/", 0, &attr, sizeof(attr)) < 0) {
			lx_fail(e, LX_STEP_MOUNTS, errno, "make the root read-only");
			goto out;
		}
	}
	rc = 0;
out:
	if (cwd >= 0) {
		if (cwd_moved && fchdir(cwd) < 0 && rc == 0)
			rc = lx_fail(e, LX_STEP_MOUNTS, errno, "return to the working directory");
		close(cwd);
	}
	if (c.root >= 0)
		close(c.root);
	return rc;
}
