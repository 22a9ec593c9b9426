/* SPDX-License-Identifier: MIT */
/*
 * Volumes: what the dio engine reads and writes. A volume answers
 * map_begin/map_end (extent.h) and prepares the device I/O for the
 * operations that are not plain data: flush, trim, zero, cache.
 * Volumes are shared between threads: every callback here is thread-safe.
 */
#ifndef DIO_VOLUME_H
#define DIO_VOLUME_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/extent.h"

struct dio_io;

/* Operations a volume prepares device I/O for (prep_meta/end_meta). */
enum dio_meta_op {
	DIO_META_FLUSH = 0,	/* make completed writes durable */
	DIO_META_TRIM,		/* give back [pos, len); reads may then return zeros */
	DIO_META_ZERO,		/* make [pos, len) read as zeros without writing them */
	DIO_META_CACHE,		/* prefetch hint */
};

/* flags for DIO_META_ZERO */
#define DIO_META_MAY_TRIM	(1u << 0)	/* zeroing may deallocate (punch a hole) */

struct dio_vol_ops {
	/*
	 * Required. Fill *io (op, fd, offset, len, mode) with the cheapest way
	 * not yet ruled out to do 'op' on the block-aligned range [pos, pos+len).
	 * Returns 0, or -EOPNOTSUPP when no way is left: the engine then
	 * succeeds (TRIM, CACHE) or falls back to writing zeros (ZERO).
	 */
	int (*prep_meta)(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags,
			 uint64_t pos, uint64_t len, struct dio_io *io);
	/*
	 * Optional - may be NULL. The io from prep_meta finished with res
	 * (0 or -errno). On success update the extent map (a trimmed range is
	 * now a HOLE, a zeroed one UNWRITTEN or a HOLE); on -EOPNOTSUPP or
	 * -EINVAL rule that way out for good, so the next prep_meta offers
	 * another; it may turn res into a different error to report.
	 */
	int (*end_meta)(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags,
			uint64_t pos, uint64_t len, const struct dio_io *io, int res);
	/* Optional - may be NULL. Free what the volume owns (not the struct). */
	void (*close)(struct dio_volume *vol);
};

/*
 * A volume. Backends fill the fields up to 'priv' before first use and call
 * dio_volume_init(); the engine reads them and never writes them.
 */
struct dio_volume {
	const struct dio_map_ops *map_ops;
	const struct dio_vol_ops *vol_ops;
	int fd;			/* the device every MAPPED/UNWRITTEN addr refers to */
	uint64_t size;		/* bytes the clients see */
	uint32_t lbs;		/* logical block size: the O_DIRECT alignment */
	uint32_t pbs;		/* physical block size: the preferred I/O size */
	uint32_t blksize;	/* allocation unit (>= lbs): NEW/UNWRITTEN padding */
	bool readonly;
	bool rotational;
	bool wcache;		/* volatile write cache: flush/FUA mean something */
	bool blockdev;
	bool can_trim;		/* some trim method may work */
	bool can_zero;		/* some fast zero method may work */
	void *priv;		/* backend's */

	/* engine private: unaligned read-modify-write serialisation */
	pthread_mutex_t rmw_lock;
	struct dio_rmw *rmw_busy;	/* under rmw_lock: RMWs holding a block range */
};

/* Set up the engine's part of a volume (after the backend fields). */
void dio_volume_init(struct dio_volume *vol);
/* Release the engine's part; then vol_ops->close. Frees nothing else. */
void dio_volume_fini(struct dio_volume *vol);

struct dio_volume_opts {
	bool readonly;		/* open read-only even if writable */
	bool no_lock;		/* skip QEMU's image locks (see dio_volume_open) */
	char *errbuf;		/* optional: a message naming the path and the reason */
	size_t errlen;
};

/*
 * Open a regular file or block device as a 'file' volume with O_DIRECT.
 * Holes come from SEEK_DATA/SEEK_HOLE, unwritten extents from FIEMAP, read
 * once at open into an in-memory map that this volume's own writes, trims
 * and zeroes keep true. A file changed by anyone else while it is open is
 * an operator error: reads may then return zeros for new data. To keep
 * QEMU and its tools out, the file is locked as QEMU locks images (unless
 * opts->no_lock): read-write, nobody else may write or resize it; read-only,
 * nobody may write or resize it either, but others may read. An image that
 * QEMU holds in a conflicting way fails with -EAGAIN.
 * 0 or -errno (the reason also in opts->errbuf and the log).
 */
int dio_volume_open(const char *path, const struct dio_volume_opts *opts,
		    struct dio_volume **out);
/* Close a volume from dio_volume_open; nothing may be in flight on it. */
void dio_volume_close(struct dio_volume *vol);

#endif /* DIO_VOLUME_H */
