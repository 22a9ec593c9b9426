/* SPDX-License-Identifier: MIT */
/*
 * Opening a file volume: O_DIRECT, the geometry and the methods the file
 * or block device supports, its map, and sharing: one volume per backing
 * object, found by identity among the file volumes open in the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "file.h"
#include "file-lock.h"
#include "volume-priv.h"

/* Report why an open failed (errbuf and log); returns -err. */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static int
open_error(const struct dio_file_opts *opts, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (opts && opts->errbuf && opts->errlen)
		snprintf(opts->errbuf, opts->errlen, "%s", msg);
	dio_log(DIO_LOG_ERR, "%s", msg);
	return -err;
}

/*
 * Read /sys/dev/block/MAJ:MIN/queue/<name> of dev (or of the disk holding
 * it, for a partition) into buf, without the newline. 0 or -errno.
 */
static int
read_queue_attr(dev_t dev, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s", major(dev), minor(dev),
		 name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* A partition has no queue: its disk, the parent directory, has. */
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../queue/%s", major(dev),
			 minor(dev), name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

/* A queue attribute as a number, or def when it cannot be read. */
static uint64_t
queue_attr_u64(dev_t dev, const char *name, uint64_t def)
{
	char buf[64];
	char *end;
	unsigned long long v;

	if (read_queue_attr(dev, name, buf, sizeof(buf)) < 0)
		return def;
	v = strtoull(buf, &end, 10);
	return end == buf ? def : v;
}

/* rotational and wcache of the device dev (the disk, or a file's fs). */
static void
probe_queue(struct dio_volume *vol, dev_t dev)
{
	char buf[64];

	vol->rotational = queue_attr_u64(dev, "rotational", 0) == 1;
	/* Unknown: assume a volatile cache, so that flushes are not skipped. */
	vol->wcache = true;
	if (read_queue_attr(dev, "write_cache", buf, sizeof(buf)) == 0)
		vol->wcache = strcmp(buf, "write through") != 0;
}

static bool
is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Size and block sizes of a block device. 0 or -errno. */
static int
probe_blockdev(struct file_vol *fv, const struct stat *st, const struct dio_file_opts *opts)
{
	struct dio_volume *vol = &fv->vol;
	uint64_t size;
	unsigned int pbs = 0;
	int lbs = 0;

	if (ioctl(vol->fd, BLKGETSIZE64, &size) < 0)
		return open_error(opts, errno, "%s: BLKGETSIZE64: %s", fv->path, strerror(errno));
	if (ioctl(vol->fd, BLKSSZGET, &lbs) < 0)
		return open_error(opts, errno, "%s: BLKSSZGET: %s", fv->path, strerror(errno));
	if (ioctl(vol->fd, BLKPBSZGET, &pbs) < 0 || pbs < (unsigned int)lbs)
		pbs = (unsigned int)lbs;
	vol->size = size;
	vol->lbs = (uint32_t)lbs;
	vol->pbs = pbs;
	vol->blockdev = true;
	probe_queue(vol, st->st_rdev);
	if (vol->readonly)
		return 0;
	/*
	 * Without write-zeroes offload, ZERO_RANGE and BLKZEROOUT write the
	 * zeros in the kernel: no faster than the engine doing it, and not
	 * "fast" as a client asking for fast zero means it. Unknown: try.
	 */
	if (queue_attr_u64(st->st_rdev, "write_zeroes_max_bytes", 1) == 0)
		atomic_fetch_and(&fv->can, ~(FV_PUNCH | FV_ZERO_RANGE | FV_ZEROOUT));
	if (queue_attr_u64(st->st_rdev, "discard_max_bytes", 1) == 0)
		atomic_fetch_and(&fv->can, ~FV_DISCARD);
	return 0;
}

/*
 * The O_DIRECT alignment of a regular file: statx(STATX_DIOALIGN) where
 * the kernel reports it (Linux 6.1+), else a probe with real reads.
 * 0 or -errno.
 */
static int
probe_file_lbs(struct file_vol *fv, const struct dio_file_opts *opts)
{
	struct dio_volume *vol = &fv->vol;
	struct statx stx;
	void *buf = NULL;
	uint32_t align;
	int ret = 0;

	if (statx(vol->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		if (!stx.stx_dio_offset_align)
			return open_error(opts, EINVAL,
					  "%s: the filesystem does not support O_DIRECT "
					  "(statx reports no direct I/O alignment)", fv->path);
		align = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > align)
			align = stx.stx_dio_mem_align;
		vol->lbs = align < 512 ? 512 : align;
		return 0;
	}
	/*
	 * Reads of holes or at EOF skip the alignment check (iomap only
	 * checks mapped blocks), so a probe that succeeds proves little:
	 * it is the fallback only.
	 */
	if (posix_memalign(&buf, 4096, 4096))
		return open_error(opts, ENOMEM, "%s: out of memory", fv->path);
	vol->lbs = 512;
	if (pread(vol->fd, buf, 512, 0) < 0) {
		vol->lbs = 4096;
		if (pread(vol->fd, buf, 4096, 0) < 0)
			ret = open_error(opts, errno, "%s: O_DIRECT read: %s", fv->path,
					 strerror(errno));
	}
	free(buf);
	return ret;
}

/* Size, block sizes and methods of a regular file. 0 or -errno. */
static int
probe_file(struct file_vol *fv, const struct stat *st, const struct dio_file_opts *opts)
{
	struct dio_volume *vol = &fv->vol;
	int ret;

	ret = probe_file_lbs(fv, opts);
	if (ret)
		return ret;
	vol->size = (uint64_t)st->st_size;
	vol->pbs = is_pow2((uint64_t)st->st_blksize) && st->st_blksize > (blksize_t)vol->lbs ?
			   (uint32_t)st->st_blksize : vol->lbs;
	probe_queue(vol, st->st_dev);
	if (vol->readonly)
		return 0;
	/*
	 * Punching past EOF with KEEP_SIZE changes nothing where it works and
	 * fails with EOPNOTSUPP where it does not. (ZERO_RANGE cannot be
	 * probed that way: ext4 would allocate past EOF.)
	 */
	if (fallocate(vol->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)((vol->size + vol->lbs - 1) / vol->lbs * vol->lbs), vol->lbs) < 0 &&
	    (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)) {
		dio_log(DIO_LOG_INFO, "%s: punching holes not supported (%s)", fv->path,
			strerror(errno));
		atomic_fetch_and(&fv->can, ~FV_PUNCH);
	}
	return 0;
}

/* Open path with O_DIRECT, read-write unless asked or forced otherwise. */
static int
open_direct(struct file_vol *fv, const struct dio_file_opts *opts)
{
	/* O_NONBLOCK until fstat shows no FIFO was swapped in after stat(). */
	int flags = O_DIRECT | O_CLOEXEC | O_NONBLOCK;
	int fd;

	fd = open(fv->path, flags | (fv->vol.readonly ? O_RDONLY : O_RDWR));
	if (fd < 0 && !fv->vol.readonly &&
	    (errno == EACCES || errno == EROFS || errno == EPERM)) {
		dio_log(DIO_LOG_WARN, "%s: cannot open for writing (%s), exporting read-only",
			fv->path, strerror(errno));
		fv->vol.readonly = true;
		fd = open(fv->path, flags | O_RDONLY);
	}
	if (fd < 0 && errno == EINVAL)
		return open_error(opts, EINVAL,
				  "%s: the filesystem does not support O_DIRECT (%s)", fv->path,
				  strerror(EINVAL));
	if (fd < 0)
		return open_error(opts, errno, "%s: %s", fv->path, strerror(errno));
	fv->vol.fd = fd;
	return 0;
}

static const char *
file_type_name(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	return "not a regular file";
}

/* Free what fv holds; the volume is not on the list (any more). */
static void
file_free(struct file_vol *fv)
{
	extmap_destroy(&fv->map);
	if (fv->vol.fd >= 0)
		close(fv->vol.fd);
	file_lock_close(fv->lock_fd);
	free(fv->path);
	free(fv);
}

/*
 * The file volumes open in this process, for sharing. open_lock is held
 * across a whole open, so two exports of one file opened at once still
 * get one volume; it guards the list and nothing else.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct file_vol *open_vols;

/* The last reference is gone: off the list, then free. */
static void
file_release(struct dio_volume *vol)
{
	struct file_vol *fv = to_fv(vol), **pp;

	pthread_mutex_lock(&open_lock);
	for (pp = &open_vols; *pp; pp = &(*pp)->next) {
		if (*pp == fv) {
			*pp = fv->next;
			break;
		}
	}
	pthread_mutex_unlock(&open_lock);
	dio_volume_fini(vol);
	file_free(fv);
}

static const struct dio_vol_ops file_vol_ops = {
	.prep_meta = file_prep_meta,
	.end_meta = file_end_meta,
	.release = file_release,
};

/* What a stat says the backing object is: rdev for a block device, else dev and inode. */
static void
file_identity(const struct stat *st, dev_t *dev, ino_t *ino)
{
	*dev = S_ISBLK(st->st_mode) ? st->st_rdev : st->st_dev;
	*ino = S_ISBLK(st->st_mode) ? 0 : st->st_ino;
}

/*
 * The open volume of the object st describes, with a new reference, or NULL.
 * Under open_lock. A volume whose last reference is being dropped is
 * passed over: it is on its way out.
 */
static struct file_vol *
file_find(const struct stat *st)
{
	struct file_vol *fv;
	dev_t dev;
	ino_t ino;

	file_identity(st, &dev, &ino);
	for (fv = open_vols; fv; fv = fv->next)
		if (fv->dev == dev && fv->ino == ino && dio_volume_tryget(&fv->vol))
			return fv;
	return NULL;
}

/* Open and probe a volume that is not open yet. Under open_lock. 0 or -errno. */
static int
file_open_new(const char *path, const struct dio_file_opts *opts, struct file_vol **out)
{
	struct file_vol *fv;
	struct stat st;
	int ret, fl;

	fv = calloc(1, sizeof(*fv));
	if (!fv)
		return open_error(opts, ENOMEM, "%s: out of memory", path);
	fv->vol.fd = -1;
	fv->lock_fd = -1;
	fv->asked_rw = !(opts && opts->readonly);
	fv->vol.readonly = !fv->asked_rw;
	fv->path = strdup(path);
	ret = extmap_init(&fv->map);
	if (ret || !fv->path) {
		if (!ret)
			extmap_destroy(&fv->map);
		free(fv->path);
		free(fv);
		return open_error(opts, ENOMEM, "%s: out of memory", path);
	}

	ret = open_direct(fv, opts);
	if (ret)
		goto err_free;
	if (fstat(fv->vol.fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		ret = open_error(opts, EINVAL, "%s: changed while being opened", path);
		goto err_free;
	}
	file_identity(&st, &fv->dev, &fv->ino);
	/* io_uring would fail I/O with EAGAIN on an O_NONBLOCK file. */
	fl = fcntl(fv->vol.fd, F_GETFL);
	if (fl < 0 || fcntl(fv->vol.fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		ret = open_error(opts, errno, "%s: fcntl: %s", path, strerror(errno));
		goto err_free;
	}
	/*
	 * Before the map is read. On a fd of its own: io_uring's registered
	 * files may keep the data fd's description, and so its locks, alive
	 * after the volume closes.
	 */
	if (!(opts && opts->no_lock)) {
		char why[256];

		ret = file_lock_open(path, fv->vol.fd, !fv->vol.readonly, why, sizeof(why));
		if (ret < 0) {
			ret = open_error(opts, -ret, "%s: cannot take the image lock: %s", path,
					 why);
			goto err_free;
		}
		fv->lock_fd = ret;
	}

	atomic_init(&fv->can, fv->vol.readonly ? FV_FSYNC | FV_FADVISE :
			      FV_FSYNC | FV_FADVISE | FV_PUNCH | FV_ZERO_RANGE |
				      (S_ISBLK(st.st_mode) ? FV_DISCARD | FV_ZEROOUT : 0));
	if (S_ISBLK(st.st_mode))
		ret = probe_blockdev(fv, &st, opts);
	else
		ret = probe_file(fv, &st, opts);
	if (ret)
		goto err_free;
	if (!S_ISBLK(st.st_mode)) {
		ret = file_fill_map(fv);
		if (ret) {
			ret = open_error(opts, -ret, "%s: reading the extent map: %s", path,
					 strerror(-ret));
			goto err_free;
		}
	}

	{
		unsigned int can = atomic_load(&fv->can);

		fv->vol.can_trim = (can & (FV_PUNCH | FV_DISCARD)) != 0;
		fv->vol.can_zero = (can & (FV_PUNCH | FV_ZERO_RANGE | FV_ZEROOUT)) != 0;
	}
	fv->vol.blksize = fv->vol.lbs;
	fv->vol.map_ops = &file_map_ops;
	fv->vol.vol_ops = &file_vol_ops;
	fv->vol.priv = fv;
	ret = dio_volume_init(&fv->vol);
	if (ret) {
		ret = open_error(opts, -ret, "%s: out of memory", path);
		goto err_free;
	}
	dio_log(DIO_LOG_INFO,
		"%s: %s, %" PRIu64 " bytes, lbs %u, pbs %u, %s%s%s%s%s, %zu map runs", path,
		fv->vol.blockdev ? "block device" : "file", fv->vol.size, fv->vol.lbs,
		fv->vol.pbs, fv->vol.readonly ? "read-only" : "read-write",
		fv->vol.rotational ? ", rotational" : "", fv->vol.wcache ? ", write cache" : "",
		fv->vol.can_trim ? ", trim" : "", fv->vol.can_zero ? ", zero" : "",
		extmap_count(&fv->map));
	*out = fv;
	return 0;

err_free:
	file_free(fv);
	return ret;
}

int
dio_file_open(const char *path, const struct dio_file_opts *opts, struct dio_volume **out)
{
	bool want_rw = !(opts && opts->readonly);
	struct file_vol *fv;
	struct stat st;
	int ret;

	if (stat(path, &st) < 0)
		return open_error(opts, errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return open_error(opts, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
				  "%s: is %s, not a regular file or block device", path,
				  file_type_name(st.st_mode));
	pthread_mutex_lock(&open_lock);
	fv = file_find(&st);
	if (fv) {
		if (want_rw && !fv->asked_rw) {
			pthread_mutex_unlock(&open_lock);
			dio_volume_put(&fv->vol);
			return open_error(opts, EBUSY,
					  "%s: already open read-only (as %s); it cannot be "
					  "opened for writing until that is closed", path,
					  fv->path);
		}
		pthread_mutex_unlock(&open_lock);
		dio_log(DIO_LOG_INFO, "%s: shares the open volume of %s", path, fv->path);
		*out = &fv->vol;
		return 0;
	}
	ret = file_open_new(path, opts, &fv);
	if (ret == 0) {
		fv->next = open_vols;
		open_vols = fv;
		*out = &fv->vol;
	}
	pthread_mutex_unlock(&open_lock);
	return ret;
}

int
dio_file_resize(struct dio_volume *vol, uint64_t size, char *err, size_t errlen)
{
	struct file_vol *fv = to_fv(vol);
	uint64_t old = vol->size;
	uint64_t old_limit = (old + vol->lbs - 1) / vol->lbs * vol->lbs;
	uint64_t new_limit = (size + vol->lbs - 1) / vol->lbs * vol->lbs;
	int ret;

	if (vol->map_ops != &file_map_ops) {
		snprintf(err, errlen, "not a file volume");
		return -EINVAL;
	}
	if (vol->blockdev || vol->readonly) {
		snprintf(err, errlen, "%s: a %s cannot be resized", fv->path,
			 vol->blockdev ? "block device" : "read-only volume");
		return -EOPNOTSUPP;
	}
	if (size > (uint64_t)INT64_MAX) {
		snprintf(err, errlen, "%s: size too large", fv->path);
		return -EFBIG;
	}
	/* The new blocks are a hole in the file: say so before anyone can map them. */
	if (new_limit > old_limit) {
		ret = extmap_set(&fv->map, old_limit, new_limit - old_limit, DIO_EXT_HOLE);
		if (ret < 0) {
			snprintf(err, errlen, "%s: %s", fv->path, strerror(-ret));
			return ret;
		}
	}
	if (ftruncate(vol->fd, (off_t)size) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: ftruncate: %s", fv->path, strerror(errno));
		return ret;
	}
	__atomic_store_n(&vol->size, size, __ATOMIC_RELEASE);
	dio_log(DIO_LOG_INFO, "%s: resized from %" PRIu64 " to %" PRIu64 " bytes", fv->path, old,
		size);
	return 0;
}
