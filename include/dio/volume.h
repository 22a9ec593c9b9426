/* SPDX-License-Identifier: MIT */
/*
 * Volumes: what the dio engine reads and writes. A volume answers
 * map_begin/map_end (extent.h) and prepares the device I/O for the
 * operations that are not plain data: flush, trim, zero, cache.
 * Volumes are shared between threads: every callback here is thread-safe.
 */
#ifndef DIO_VOLUME_H
#define DIO_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/extent.h"

struct dio_io;
struct dio_ctx;
struct dio_req;

/*
 * A whole request handed to a volume that does its own I/O (vol_ops->submit):
 * libdio checked it and counts it in flight; the volume does it and reports
 * back once with dio_vol_io_done(). Lives from submit to that call.
 */
struct dio_vol_io {
	const struct dio_req *req;	/* op, flags, pos, len, buf: the caller's */
	struct dio_ctx *ctx;		/* the ctx it was submitted on */
	unsigned int stage;		/* the volume's: 0 at submit */
	void *priv;			/* the volume's */
};

/*
 * The volume finished vio with res (0 or -errno). 'here' is the ctx whose
 * thread this runs on (in vol_ops->poll), or NULL on any other thread: the
 * completion then moves to vio->ctx's thread, where done() always runs.
 */
void dio_vol_io_done(struct dio_ctx *here, struct dio_vol_io *vio, int res);

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
	/*
	 * Optional - may be NULL. The last reference was dropped
	 * (dio_volume_put) and nothing is in flight: free what the backend
	 * owns, call dio_volume_fini, and free the struct if the backend
	 * allocated it. Without it dio_volume_put only calls dio_volume_fini.
	 */
	void (*release)(struct dio_volume *vol);

	/*
	 * Optional - may be NULL. Set by a volume that has no fd for the
	 * engine (an RBD image, done through librbd): READ, WRITE, ZERO, TRIM,
	 * FLUSH (and CACHE, with submit_cache) requests come here whole, already checked (in
	 * bounds, flags valid, len > 0 except FLUSH), instead of going through
	 * the extent iterator and the engine; EXTENTS still asks map_begin.
	 * Start the work on the caller's thread and return 0: the volume then
	 * calls dio_vol_io_done(vio) exactly once, from poll() or any thread
	 * (never from inside submit, which may only fail with -errno, and then
	 * owes no call). READ fills req->buf whole; FUA is the volume's to honour.
	 */
	int (*submit)(struct dio_volume *vol, struct dio_vol_io *vio);
	/*
	 * Required with submit. A file descriptor that is readable (POLLIN)
	 * while completions wait for poll(); the same for the volume's life.
	 * -1: nothing to watch (the volume's completions reach the ctx as
	 * deferred or posted work, which wakes it by itself).
	 */
	int (*event_fd)(struct dio_volume *vol);
	/*
	 * Required with submit. Called on ctx's thread (from dio_ctx_reap) while
	 * ctx has requests in flight on vol: deliver every completion that waits,
	 * with dio_vol_io_done(ctx, ...), whichever ctx it belongs to.
	 */
	void (*poll)(struct dio_volume *vol, struct dio_ctx *ctx);
	/* With submit: CACHE requests go to submit too (else they succeed at once). */
	bool submit_cache;
};

struct dio_vol_state;

/*
 * A volume: one per backing object (a file, a block device, a pool volume),
 * shared by every export and connection that serves it, and by every
 * thread. Backends fill the fields up to 'priv' and call dio_volume_init();
 * the engine reads them and never writes them.
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
	/*
	 * map_end with DIO_MAP_FUA makes what it maps durable by itself (a
	 * journal commit): a FUA write into new space is then written through
	 * (RWF_DSYNC) and needs no flush of the device before map_end. Without
	 * it (files: the filesystem's allocation), a flush runs first.
	 */
	bool map_commits_fua;
	void *priv;		/* backend's */
	struct dio_vol_state *state;	/* libdio's, from dio_volume_init */
};

/*
 * Set up libdio's part of a volume (after the backend's fields), holding
 * one reference for the caller. 0 or -ENOMEM.
 */
int dio_volume_init(struct dio_volume *vol);
/* Free libdio's part (from vol_ops->release, or for a volume never shared). */
void dio_volume_fini(struct dio_volume *vol);

/* Take another reference (any thread). */
struct dio_volume *dio_volume_get(struct dio_volume *vol);
/* Drop a reference (NULL is fine); the last one releases the volume. */
void dio_volume_put(struct dio_volume *vol);

/* The volume's identity: unique in the process and never reused. */
uint64_t dio_volume_id(const struct dio_volume *vol);

/*
 * The write generation: a number that moves as each WRITE, ZERO or TRIM
 * on vol is accepted, on any ctx; *writing tells whether one is still
 * running. Data read while none ran, at generation g, is what a READ sent
 * then would return for as long as the generation stays g.
 */
uint64_t dio_volume_write_gen(const struct dio_volume *vol, bool *writing);

#endif /* DIO_VOLUME_H */
