/* SPDX-License-Identifier: MIT */
/*
 * The 'file' volume: a regular file or a block device opened with O_DIRECT,
 * which maps to itself (addr == pos). What lies under each byte is read once
 * at open (SEEK_DATA/SEEK_HOLE for holes, FIEMAP for unwritten extents) into
 * an extmap, which this volume's own writes, trims and zeroes keep true, so
 * that map_begin never makes a system call.
 *
 * Trim, zero, flush and cache are done by the first method not yet ruled
 * out, as nbdkit's file plugin does: each method has a sticky bit in
 * file_vol.can, cleared for good the first time the kernel says it is not
 * supported (EOPNOTSUPP, EINVAL, ENOTTY).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dio/dio.h"
#include "extmap.h"
#include "file-lock.h"

/* file_vol.can: methods not ruled out yet */
#define FV_FSYNC	(1u << 0)	/* fdatasync */
#define FV_PUNCH	(1u << 1)	/* fallocate PUNCH_HOLE|KEEP_SIZE */
#define FV_ZERO_RANGE	(1u << 2)	/* fallocate ZERO_RANGE|KEEP_SIZE */
#define FV_DISCARD	(1u << 3)	/* BLKDISCARD */
#define FV_ZEROOUT	(1u << 4)	/* BLKZEROOUT */
#define FV_FADVISE	(1u << 5)	/* posix_fadvise WILLNEED */

struct file_vol {
	struct dio_volume vol;
	struct extmap map;	/* HOLE/UNWRITTEN runs; empty for block devices */
	atomic_uint can;	/* FV_*: shared by every thread using the volume */
	char *path;		/* for log messages */
	int lock_fd;		/* holds the image locks (file-lock.h), or -1 */
};

static inline struct file_vol *
to_fv(struct dio_volume *vol)
{
	return (struct file_vol *)vol;
}

/* ---- the map ---------------------------------------------------------- */

/* Map [pos, pos+len) from the in-memory map: no system call. */
static int
file_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
	       struct dio_extent *ext)
{
	struct file_vol *fv = to_fv(vol);
	/* The last partial block is mapped whole: O_DIRECT works in blocks. */
	uint64_t limit = (vol->size + vol->lbs - 1) / vol->lbs * vol->lbs;
	unsigned int type;

	if (len == 0 || pos >= limit)
		return -EINVAL;
	if (len > limit - pos)
		len = limit - pos;
	memset(ext, 0, sizeof(*ext));
	ext->pos = pos;
	ext->addr = pos;
	ext->length = extmap_lookup(&fv->map, pos, len, &type);
	if ((flags & DIO_MAP_WRITE) && !(flags & DIO_MAP_REPORT) && type == DIO_EXT_HOLE) {
		/* The filesystem allocates as the write lands. */
		type = DIO_EXT_MAPPED;
		ext->flags |= DIO_EXT_NEW;
	}
	/* UNWRITTEN stays so: the write goes into it and the fs converts it. */
	ext->type = type;
	return 0;
}

/* After a write: what was written is data now. */
static int
file_map_end(struct dio_volume *vol, const struct dio_extent *ext, uint64_t done,
	     unsigned int flags)
{
	struct file_vol *fv = to_fv(vol);

	if (!(flags & DIO_MAP_WRITE) || (flags & DIO_MAP_REPORT) || done == 0)
		return 0;
	if (ext->type == DIO_EXT_MAPPED && !(ext->flags & DIO_EXT_NEW))
		return 0;
	if (done > ext->length)
		done = ext->length;
	/* Cannot fail for MAPPED (extmap.h): the written data is never lost. */
	return extmap_set(&fv->map, ext->pos, done, DIO_EXT_MAPPED);
}

static const struct dio_map_ops file_map_ops = {
	.map_begin = file_map_begin,
	.map_end = file_map_end,
};

/* ---- flush, trim, zero, cache ----------------------------------------- */

static void
set_fallocate(struct dio_io *io, int mode)
{
	io->op = DIO_IO_FALLOCATE;
	io->mode = mode;
}

/* The cheapest way not yet ruled out to do op on [pos, pos+len). */
static int
file_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	       uint64_t len, struct dio_io *io)
{
	unsigned int can = atomic_load(&to_fv(vol)->can);

	io->fd = vol->fd;
	io->offset = pos;
	io->len = len;
	io->mode = 0;
	switch (op) {
	case DIO_META_FLUSH:
		if (!(can & FV_FSYNC))
			return -EOPNOTSUPP;
		io->op = DIO_IO_FSYNC;	/* mode 0: fdatasync */
		return 0;
	case DIO_META_TRIM:
		if (!vol->blockdev && (can & FV_PUNCH)) {
			set_fallocate(io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
			return 0;
		}
		if (vol->blockdev && (can & FV_DISCARD)) {
			io->op = DIO_IO_DISCARD;
			return 0;
		}
		return -EOPNOTSUPP;
	case DIO_META_ZERO:
		/*
		 * On a block device, punching is a write-zeroes that may unmap
		 * and never falls back to writing (blkdev_fallocate), so it is
		 * tried first there too when deallocating is allowed.
		 */
		if ((flags & DIO_META_MAY_TRIM) && (can & FV_PUNCH)) {
			set_fallocate(io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
			return 0;
		}
		if (can & FV_ZERO_RANGE) {
			set_fallocate(io, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
			return 0;
		}
		if (vol->blockdev && (can & FV_ZEROOUT)) {
			io->op = DIO_IO_ZEROOUT;
			return 0;
		}
		return -EOPNOTSUPP;
	case DIO_META_CACHE:
		if (!(can & FV_FADVISE))
			return -EOPNOTSUPP;
		io->op = DIO_IO_FADVISE;
		io->mode = POSIX_FADV_WILLNEED;
		return 0;
	}
	return -EINVAL;
}

/* Which FV_* method io is. */
static unsigned int
method_of(const struct dio_io *io)
{
	switch (io->op) {
	case DIO_IO_FSYNC:
		return FV_FSYNC;
	case DIO_IO_FALLOCATE:
		if (io->mode & FALLOC_FL_PUNCH_HOLE)
			return FV_PUNCH;
		if (io->mode & FALLOC_FL_ZERO_RANGE)
			return FV_ZERO_RANGE;
		return 0;
	case DIO_IO_DISCARD:
		return FV_DISCARD;
	case DIO_IO_ZEROOUT:
		return FV_ZEROOUT;
	case DIO_IO_FADVISE:
		return FV_FADVISE;
	}
	return 0;
}

static const char *
method_name(unsigned int m)
{
	switch (m) {
	case FV_FSYNC:
		return "fdatasync";
	case FV_PUNCH:
		return "fallocate(PUNCH_HOLE)";
	case FV_ZERO_RANGE:
		return "fallocate(ZERO_RANGE)";
	case FV_DISCARD:
		return "BLKDISCARD";
	case FV_ZEROOUT:
		return "BLKZEROOUT";
	case FV_FADVISE:
		return "posix_fadvise";
	}
	return "?";
}

/* The io from prep_meta finished with res: rule its method out or update the map. */
static int
file_end_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	      uint64_t len, const struct dio_io *io, int res)
{
	struct file_vol *fv = to_fv(vol);
	unsigned int m = method_of(io);

	if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOTTY) {
		/* A flush that fails is an error to report, never a method to skip. */
		if (m == FV_FSYNC || m == 0)
			return res;
		if (atomic_fetch_and(&fv->can, ~m) & m)
			dio_log(DIO_LOG_INFO, "%s: %s not supported (%s), not trying it again",
				fv->path, method_name(m), strerror(-res));
		return -EOPNOTSUPP;
	}
	if (res < 0 || vol->blockdev)
		return res;
	/*
	 * Failing to record a hole or unwritten range leaves it as data,
	 * which still reads back as the zeros the filesystem now holds.
	 */
	if (m == FV_PUNCH)
		extmap_set(&fv->map, pos, len, DIO_EXT_HOLE);
	else if (m == FV_ZERO_RANGE)
		extmap_set(&fv->map, pos, len, DIO_EXT_UNWRITTEN);
	return 0;
}

/* Free what the volume owns; the struct itself goes in dio_volume_close. */
static void
file_close(struct dio_volume *vol)
{
	struct file_vol *fv = to_fv(vol);

	extmap_destroy(&fv->map);
	if (vol->fd >= 0)
		close(vol->fd);
	vol->fd = -1;
	file_lock_close(fv->lock_fd);
	fv->lock_fd = -1;
}

static const struct dio_vol_ops file_vol_ops = {
	.prep_meta = file_prep_meta,
	.end_meta = file_end_meta,
	.close = file_close,
};

/* ---- open ------------------------------------------------------------- */

/* Report why an open failed (errbuf and log); returns -err. */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static int
open_error(const struct dio_volume_opts *opts, int err, const char *fmt, ...)
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
probe_blockdev(struct file_vol *fv, const struct stat *st, const struct dio_volume_opts *opts)
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
probe_file_lbs(struct file_vol *fv, const struct dio_volume_opts *opts)
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
probe_file(struct file_vol *fv, const struct stat *st, const struct dio_volume_opts *opts)
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

/* A growable array of ranges, for building the map. */
struct ranges {
	struct extmap_run *r;
	size_t nr, cap;
};

static int
ranges_add(struct ranges *rs, uint64_t start, uint64_t end, unsigned int type)
{
	if (start >= end)
		return 0;
	if (rs->nr == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct extmap_run *r = realloc(rs->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->nr++] = (struct extmap_run){ start, end, type };
	return 0;
}

/*
 * Unwritten extents of [0, size) in ascending order, from FIEMAP. The first
 * call flushes dirty pages (FIEMAP_FLAG_SYNC) so that what SEEK_DATA and
 * FIEMAP say afterwards agree. 0, or -errno when FIEMAP fails for another
 * reason than not being supported.
 */
static int
collect_unwritten(struct file_vol *fv, uint64_t size, struct ranges *uw)
{
	enum { BATCH = 256 };
	struct fiemap *fm;
	uint64_t pos = 0;
	uint32_t sync = FIEMAP_FLAG_SYNC;
	int ret = 0;

	fm = calloc(1, sizeof(*fm) + BATCH * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	while (pos < size) {
		struct fiemap_extent *last;

		memset(fm, 0, sizeof(*fm));
		fm->fm_start = pos;
		fm->fm_length = size - pos;
		fm->fm_flags = sync;
		fm->fm_extent_count = BATCH;
		if (ioctl(fv->vol.fd, FS_IOC_FIEMAP, fm) < 0) {
			ret = -errno;
			if (ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -EBADR)
				ret = 0;	/* no unwritten extents known */
			break;
		}
		sync = 0;
		if (fm->fm_mapped_extents == 0)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents && !ret; i++) {
			struct fiemap_extent *fe = &fm->fm_extents[i];
			uint64_t s = fe->fe_logical, e = fe->fe_logical + fe->fe_length;

			if (!(fe->fe_flags & FIEMAP_EXTENT_UNWRITTEN))
				continue;
			ret = ranges_add(uw, s < pos ? pos : s, e > size ? size : e,
					 DIO_EXT_UNWRITTEN);
		}
		last = &fm->fm_extents[fm->fm_mapped_extents - 1];
		if (ret || (last->fe_flags & FIEMAP_EXTENT_LAST) ||
		    last->fe_logical + last->fe_length <= pos)
			break;
		pos = last->fe_logical + last->fe_length;
	}
	free(fm);
	return ret;
}

/*
 * Holes of [0, size) in ascending order, from SEEK_DATA/SEEK_HOLE; the hole
 * that reaches EOF is extended to 'limit'. 0 or -errno.
 */
static int
collect_holes(struct file_vol *fv, uint64_t size, uint64_t limit, struct ranges *holes)
{
	int fd = fv->vol.fd;
	uint64_t pos = 0;
	off_t d, h;

	while (pos < size) {
		d = lseek(fd, (off_t)pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)	/* no data past pos */
			return ranges_add(holes, pos, limit, DIO_EXT_HOLE);
		if (d < 0) {
			/* EINVAL: no SEEK_DATA here; all data is the safe answer. */
			dio_log(DIO_LOG_INFO, "%s: SEEK_DATA: %s, treating the file as all data",
				fv->path, strerror(errno));
			holes->nr = 0;
			return 0;
		}
		if (ranges_add(holes, pos, (uint64_t)d, DIO_EXT_HOLE))
			return -ENOMEM;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h <= (uint64_t)d)
			return 0;	/* the rest is data */
		pos = (uint64_t)h;
	}
	return 0;
}

/*
 * Fill the map of a regular file: holes from SEEK_DATA/SEEK_HOLE, then
 * unwritten extents from FIEMAP over them. ext4 and xfs report unwritten
 * extents as holes to SEEK_HOLE (unless the page cache holds their pages),
 * so FIEMAP wins wherever it says unwritten: both read as zeros, and only
 * UNWRITTEN tells a writer that the space is already allocated.
 * 0 or -errno.
 */
static int
fill_map(struct file_vol *fv)
{
	struct dio_volume *vol = &fv->vol;
	uint64_t limit = (vol->size + vol->lbs - 1) / vol->lbs * vol->lbs;
	struct ranges uw = { 0 }, holes = { 0 };
	size_t j = 0;
	int ret;

	ret = collect_unwritten(fv, vol->size, &uw);
	if (ret) {
		dio_log(DIO_LOG_WARN, "%s: FIEMAP: %s, unwritten extents read as holes or data",
			fv->path, strerror(-ret));
		uw.nr = 0;
		if (ret == -ENOMEM)
			goto out_free;
	}
	ret = collect_holes(fv, vol->size, limit, &holes);
	if (ret)
		goto out_free;

	/* Merge two sorted lists; extmap_append keeps what came first. */
	for (size_t i = 0; i < holes.nr && !ret; i++) {
		uint64_t cur = holes.r[i].start, end = holes.r[i].end;

		for (; j < uw.nr && uw.r[j].start < end && !ret; j++) {
			if (uw.r[j].start > cur)
				ret = extmap_append(&fv->map, cur, uw.r[j].start, DIO_EXT_HOLE);
			if (!ret)
				ret = extmap_append(&fv->map, uw.r[j].start, uw.r[j].end,
						    DIO_EXT_UNWRITTEN);
			if (uw.r[j].end > cur)
				cur = uw.r[j].end;
		}
		if (!ret && cur < end)
			ret = extmap_append(&fv->map, cur, end, DIO_EXT_HOLE);
	}
	for (; j < uw.nr && !ret; j++)
		ret = extmap_append(&fv->map, uw.r[j].start, uw.r[j].end, DIO_EXT_UNWRITTEN);
out_free:
	free(uw.r);
	free(holes.r);
	if (ret)
		return ret;
	return extmap_validate(&fv->map);
}

/* Open path with O_DIRECT, read-write unless asked or forced otherwise. */
static int
open_direct(struct file_vol *fv, const struct dio_volume_opts *opts)
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

int
dio_volume_open(const char *path, const struct dio_volume_opts *opts, struct dio_volume **out)
{
	struct file_vol *fv;
	struct stat st;
	int ret, fl;

	fv = calloc(1, sizeof(*fv));
	if (!fv)
		return open_error(opts, ENOMEM, "%s: out of memory", path);
	fv->vol.fd = -1;
	fv->lock_fd = -1;
	fv->vol.readonly = opts && opts->readonly;
	fv->path = strdup(path);
	if (!fv->path) {
		ret = open_error(opts, ENOMEM, "%s: out of memory", path);
		goto err_free;
	}
	ret = extmap_init(&fv->map);
	if (ret) {
		ret = open_error(opts, -ret, "%s: extent map: %s", path, strerror(-ret));
		goto err_free;
	}

	if (stat(path, &st) < 0) {
		ret = open_error(opts, errno, "%s: %s", path, strerror(errno));
		goto err_map;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ret = open_error(opts, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
				 "%s: is %s, not a regular file or block device", path,
				 file_type_name(st.st_mode));
		goto err_map;
	}
	ret = open_direct(fv, opts);
	if (ret)
		goto err_map;
	if (fstat(fv->vol.fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		ret = open_error(opts, EINVAL, "%s: changed while being opened", path);
		goto err_close;
	}
	/* io_uring would fail I/O with EAGAIN on an O_NONBLOCK file. */
	fl = fcntl(fv->vol.fd, F_GETFL);
	if (fl < 0 || fcntl(fv->vol.fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		ret = open_error(opts, errno, "%s: fcntl: %s", path, strerror(errno));
		goto err_close;
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
			goto err_close;
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
		goto err_close;
	if (!S_ISBLK(st.st_mode)) {
		ret = fill_map(fv);
		if (ret) {
			ret = open_error(opts, -ret, "%s: reading the extent map: %s", path,
					 strerror(-ret));
			goto err_close;
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
	dio_volume_init(&fv->vol);
	dio_log(DIO_LOG_INFO,
		"%s: %s, %" PRIu64 " bytes, lbs %u, pbs %u, %s%s%s%s%s, %zu map runs", path,
		fv->vol.blockdev ? "block device" : "file", fv->vol.size, fv->vol.lbs,
		fv->vol.pbs, fv->vol.readonly ? "read-only" : "read-write",
		fv->vol.rotational ? ", rotational" : "", fv->vol.wcache ? ", write cache" : "",
		fv->vol.can_trim ? ", trim" : "", fv->vol.can_zero ? ", zero" : "",
		extmap_count(&fv->map));
	*out = &fv->vol;
	return 0;

err_close:
	file_lock_close(fv->lock_fd);
	close(fv->vol.fd);
err_map:
	extmap_destroy(&fv->map);
err_free:
	free(fv->path);
	free(fv);
	return ret;
}

void
dio_volume_close(struct dio_volume *vol)
{
	struct file_vol *fv;

	if (!vol)
		return;
	fv = to_fv(vol);
	dio_volume_fini(vol);
	free(fv->path);
	free(fv);
}
