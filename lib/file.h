/* SPDX-License-Identifier: MIT */
/*
 * The file volume's parts, private to libdio: file-open.c opens and
 * probes a file or block device and shares it (one volume per backing
 * object), map-file.c answers map_begin/map_end from the in-memory map it
 * reads at open, file-meta.c chooses how to flush, trim, zero and prefetch.
 */
#ifndef DIO_FILE_PRIV_H
#define DIO_FILE_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "dio/dio.h"
#include "extmap.h"

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
	/* identity, for sharing: a block device's rdev, or a file's dev and inode */
	dev_t dev;
	ino_t ino;
	bool asked_rw;		/* opened for writing (even if it fell back to read-only) */
	struct file_vol *next;	/* on the list of open file volumes (file-open.c) */
};

static inline struct file_vol *
to_fv(struct dio_volume *vol)
{
	return (struct file_vol *)vol;
}

/* map-file.c: map_begin/map_end over fv->map. */
extern const struct dio_map_ops file_map_ops;
/* map-file.c: fill fv->map of a regular file from SEEK_DATA/SEEK_HOLE and FIEMAP. 0 or -errno. */
int file_fill_map(struct file_vol *fv);

/* file-meta.c: dio_vol_ops.prep_meta and end_meta of the file volume. */
int file_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
		   uint64_t len, struct dio_io *io);
int file_end_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
		  uint64_t len, const struct dio_io *io, int res);

#endif /* DIO_FILE_PRIV_H */
