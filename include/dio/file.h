/* SPDX-License-Identifier: MIT */
/*
 * The 'file' volume backend: a regular file or a block device, opened with
 * O_DIRECT, mapping to itself (addr == pos).
 */
#ifndef DIO_FILE_H
#define DIO_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/volume.h"

struct dio_file_opts {
	bool readonly;		/* open read-only even if writable */
	bool no_lock;		/* skip QEMU's image locks */
	char *errbuf;		/* optional: a message naming the path and the reason */
	size_t errlen;
};

/*
 * Open path as a file volume. Holes come from SEEK_DATA/SEEK_HOLE and
 * unwritten extents from FIEMAP, read once at open into an in-memory map
 * that the volume's own writes, trims and zeroes keep true. A file changed
 * by anyone else while it is open is an operator error: reads may then
 * return zeros for new data. To keep QEMU and its tools out, the file is
 * locked as QEMU locks images (unless opts->no_lock): read-write, nobody
 * else may write or resize it; read-only, nobody may write or resize it
 * either, but others may read. An image that QEMU holds in a conflicting
 * way fails with -EAGAIN.
 *
 * One volume per backing object: a path naming a file (device and inode)
 * or block device (rdev) that is open already gives the same volume with
 * one more reference, so every export of it shares one map and one lock.
 * Asking for writing when it is open read-only fails with -EBUSY.
 *
 * 0 or -errno (the reason also in opts->errbuf and the log). Drop the
 * reference with dio_volume_put.
 */
int dio_file_open(const char *path, const struct dio_file_opts *opts, struct dio_volume **out);

/*
 * Change the size of a file volume (ftruncate; block devices cannot).
 * Growing reads as zeros; clients see the new size when they connect again.
 * 0 or -errno with the reason in err.
 */
int dio_file_resize(struct dio_volume *vol, uint64_t size, char *err, size_t errlen);

#endif /* DIO_FILE_H */
