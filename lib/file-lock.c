/* SPDX-License-Identifier: MIT */
/*
 * QEMU-compatible image locks (see file-lock.h). The byte layout and the
 * permission bits are QEMU's, as of 7.2 (Debian 12's qemu-utils) and still
 * today: block/file-posix.c RAW_LOCK_PERM_BASE 100, RAW_LOCK_SHARED_BASE 200,
 * raw_apply_lock_bytes/raw_check_lock_bytes; include/block/block-common.h
 * BLK_PERM_CONSISTENT_READ 0x01, WRITE 0x02, WRITE_UNCHANGED 0x04,
 * RESIZE 0x08 (BLK_PERM_ALL 0x0f; 0x10, GRAPH_MOD, was dropped after 6.1).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file-lock.h"

#define LOCK_PERM_BASE		100	/* byte + bit: held while we have the permission */
#define LOCK_SHARED_BASE	200	/* byte + bit: held while we deny it to others */

/* QEMU's BLK_PERM_* bit numbers */
enum {
	PERM_CONSISTENT_READ = 0,
	PERM_WRITE = 1,
	PERM_WRITE_UNCHANGED = 2,
	PERM_RESIZE = 3,
	PERM_NBITS = 4,
};

#define BIT(b) (1u << (b))

/* Denied to others by readers and writers alike: the extent map must stay true */
#define DENIED (BIT(PERM_WRITE) | BIT(PERM_RESIZE))

#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static void
lock_msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Take a shared lock on byte off for fd's open file description. 0 or -errno. */
static int
lock_byte(int fd, int off)
{
	struct flock fl = {
		.l_type = F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = 1,
	};

	/* OFD locks: l_pid must be 0; owned by the description, not the process */
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/*
 * Whether another open file description holds any lock on byte off: 1 (its
 * pid in *pid, or -1 for an OFD lock, which has none), 0, or -errno.
 * Our own description's locks never conflict, so F_OFD_GETLK skips them.
 */
static int
byte_held(int fd, int off, pid_t *pid)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	*pid = fl.l_pid;
	return fl.l_type != F_UNLCK;
}

void
file_lock_release(int fd)
{
	struct flock fl = {
		.l_type = F_UNLCK,
		.l_whence = SEEK_SET,
		.l_start = LOCK_PERM_BASE,
		.l_len = LOCK_SHARED_BASE + PERM_NBITS - LOCK_PERM_BASE,
	};

	(void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* The intent behind another holder's byte, as the message names it. */
static const char *
conflict_name(int off)
{
	switch (off) {
	case LOCK_PERM_BASE + PERM_WRITE:
		return "another process (QEMU image lock) holds it for writing";
	case LOCK_PERM_BASE + PERM_RESIZE:
		return "another process (QEMU image lock) holds it for resizing";
	case LOCK_SHARED_BASE + PERM_CONSISTENT_READ:
		return "another process does not allow readers";
	case LOCK_SHARED_BASE + PERM_WRITE:
		return "another process does not allow writers";
	}
	return "another process holds a conflicting lock";
}

/*
 * The first byte another holder has that conflicts with wanting 'want' and
 * denying 'deny': its offset, 0 if none, or -errno (message in err).
 * What others hold is checked before what they deny: it says more.
 */
static int
find_conflict(int fd, unsigned int want, unsigned int deny, pid_t *pid, char *err,
	      size_t errlen)
{
	for (int pass = 0; pass < 2; pass++) {
		int base = pass == 0 ? LOCK_PERM_BASE : LOCK_SHARED_BASE;
		unsigned int bits = pass == 0 ? deny : want;

		for (int b = 0; b < PERM_NBITS; b++) {
			int ret;

			if (!(bits & BIT(b)))
				continue;
			ret = byte_held(fd, base + b, pid);
			if (ret < 0) {
				lock_msg(err, errlen, "cannot test lock byte %d: %s", base + b,
					 strerror(-ret));
				return ret;
			}
			if (ret)
				return base + b;
		}
	}
	return 0;
}

int
file_lock_apply(int fd, bool write, char *err, size_t errlen)
{
	unsigned int want = BIT(PERM_CONSISTENT_READ) | (write ? BIT(PERM_WRITE) : 0);
	int offs[2 * PERM_NBITS], n = 0;
	pid_t pid = -1;
	int ret;

	for (int b = 0; b < PERM_NBITS; b++)
		if (want & BIT(b))
			offs[n++] = LOCK_PERM_BASE + b;
	for (int b = 0; b < PERM_NBITS; b++)
		if (DENIED & BIT(b))
			offs[n++] = LOCK_SHARED_BASE + b;

	/*
	 * Lock first, test second, as QEMU does: of two openers racing, the
	 * later test sees the earlier lock, so at least one of them backs off.
	 */
	for (int i = 0; i < n; i++) {
		ret = lock_byte(fd, offs[i]);
		if (ret == -EAGAIN || ret == -EACCES) {
			/* QEMU only takes read locks: this is someone else's scheme */
			lock_msg(err, errlen, "another process holds a write lock on byte %d",
				 offs[i]);
			goto err_release;
		}
		if (ret == -EINVAL) {
			lock_msg(err, errlen, "OFD locks (F_OFD_SETLK) are not supported here");
			goto err_release;
		}
		if (ret < 0) {
			lock_msg(err, errlen, "cannot lock byte %d: %s", offs[i], strerror(-ret));
			goto err_release;
		}
	}

	ret = find_conflict(fd, want, DENIED, &pid, err, errlen);
	if (ret < 0)
		goto err_release;
	if (ret > 0) {
		/* a POSIX lock (QEMU without OFD locks) has a pid; an OFD lock has -1 */
		if (pid > 0)
			lock_msg(err, errlen, "%s (pid %d)", conflict_name(ret), (int)pid);
		else
			lock_msg(err, errlen, "%s", conflict_name(ret));
		ret = -EAGAIN;
		goto err_release;
	}
	return 0;

err_release:
	file_lock_release(fd);
	return ret;
}

int
file_lock_open(const char *path, int data_fd, bool write, char *err, size_t errlen)
{
	struct stat a, b;
	int fd, ret;

	/* O_NONBLOCK: never wait on a FIFO swapped in after data_fd was opened */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		lock_msg(err, errlen, "cannot open it for locking: %s", strerror(-ret));
		return ret;
	}
	if (fstat(fd, &a) < 0 || fstat(data_fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino || a.st_rdev != b.st_rdev) {
		lock_msg(err, errlen, "changed while being opened");
		ret = -EINVAL;
		goto err_close;
	}
	ret = file_lock_apply(fd, write, err, errlen);
	if (ret < 0)
		goto err_close;
	return fd;

err_close:
	close(fd);
	return ret;
}

void
file_lock_close(int lock_fd)
{
	/*
	 * Close only: the last close of the description drops its locks. An
	 * F_UNLCK would also drop them for a child forked since (a daemonising
	 * parent closing its copy would unlock the daemon).
	 */
	if (lock_fd >= 0)
		close(lock_fd);
}
