/* SPDX-License-Identifier: MIT */
/*
 * How the file volume flushes, trims, zeroes and prefetches: by the first
 * method not yet ruled out, as nbdkit's file plugin does. Each method has a
 * sticky bit in file_vol.can, cleared for good the first time the kernel
 * says it is not supported (EOPNOTSUPP, EINVAL, ENOTTY).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "file.h"

static void
set_fallocate(struct dio_io *io, int mode)
{
	io->op = DIO_IO_FALLOCATE;
	io->mode = mode;
}

/* The cheapest way not yet ruled out to do op on [pos, pos+len). */
int
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
int
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

