/* SPDX-License-Identifier: MIT */
/*
 * The block cache: a volume stacked on another volume (the "lower" one),
 * after the kernel's fs/iomap/buffered-io.c. Memory is kept in units of
 * 64 KiB with per-block uptodate and dirty bits (blocks of 4 KiB, or the
 * lower volume's logical block size if larger). One cache per lower
 * volume, shared by every export, connection and thread that serves it.
 *
 * Requests through the cache volume (dio_submit as on any volume):
 * - READ: blocks uptodate in the cache are copied from it (or, for a READ
 *   within one unit whose caller allows DIO_REQ_LEND, answered with a
 *   reference to the unit's memory: writes meanwhile move the unit to a
 *   copy, so the reply's bytes stay as they were; memory that replies
 *   still hold, at most 64 KiB per READ in flight, comes on top of size
 *   when no clean unit can be evicted to make up for it); the others are
 *   read from the lower volume and kept (blocks that read as zeros are
 *   not: holes cost no memory), unless DIO_REQ_NOCACHE. Sequential READ
 *   streams are read ahead into the cache by a thread of its own
 *   (cache-ra.c: up to an eighth of the cache, 8 MiB at most, past the
 *   last READ of each stream; never evicting dirty data).
 * - CACHE (NBD_CMD_CACHE): the range (half the cache at most) is read into
 *   the cache the same way; done() when it is.
 * - WRITE without FUA, DIO_REQ_WRITETHROUGH or DIO_REQ_NOCACHE (writeback):
 *   copied into the cache and marked dirty; done() at once. A write that
 *   covers part of a block that is not uptodate, or that would take the
 *   dirty data over its limit, waits for the writeback thread.
 * - Other writes, ZERO and TRIM go to the lower volume (write-through),
 *   and the cache drops or keeps (dirty) what they overlap so it stays
 *   exact; when the range holds dirty blocks they are written back first,
 *   in order, by the writeback thread.
 * - FLUSH: every block dirty before it is written back, then the lower
 *   volume is flushed. A failed writeback keeps the blocks dirty (reads
 *   still return them) and is reported once to the next FLUSH of every
 *   writer (struct dio_cache_writer) that had written through the cache
 *   before it, as the kernel's errseq reports to each open file.
 *
 * Writeback (one thread per cache, its own ctx) merges contiguous dirty
 * blocks across units into writes of up to 1 MiB, and starts by age
 * (2 s), when dirty data passes half of its limit, on FLUSH and when the
 * cache is released (last dio_volume_put).
 */
#ifndef DIO_CACHE_H
#define DIO_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "dio/dio.h"

/*
 * What a writer (a connection) has seen of the cache's writeback errors.
 * Zeroed by its owner; the cache reads and writes it under its lock.
 */
struct dio_cache_writer {
	uint64_t seen;		/* the error sequence when last reported, or first written */
	bool wrote;		/* wrote through the cache (writeback) at least once */
};

struct dio_cache_opts {
	uint64_t size;			/* bytes of cached data at most (>= 1 MiB) */
	unsigned int dirty_pct;		/* dirty data limit in % of size; 0 = 50 */
	unsigned int expire_ms;		/* write back data dirty this long; 0 = 2000 */
	bool no_readahead;		/* no readahead of READ streams (CACHE still fills) */
	/* The writeback thread's engine: engine (owned from now on), or one made from ctx. */
	struct dio_engine *engine;
	struct dio_ctx_opts ctx;
};

struct dio_cache_stats {
	uint64_t size;		/* the bound, bytes */
	uint64_t used;		/* bytes in units held */
	uint64_t peak;		/* the most bytes ever held */
	uint64_t dirty;		/* bytes in dirty blocks */
	uint64_t hits;		/* READs answered from the cache alone */
	uint64_t misses;	/* READs that read the lower volume */
	uint64_t wb_ios;	/* writeback writes issued */
	uint64_t wb_bytes;
	uint64_t wb_errors;	/* writeback writes that failed */
	uint64_t throttled;	/* writes that waited for writeback */
	uint64_t ra_bytes;	/* bytes read ahead of sequential READ streams */
	uint64_t ra_hits;	/* READs that used blocks read ahead */
	uint64_t ra_misses;	/* READs of a stream read ahead that still read the lower volume */
	uint64_t ra_wasted;	/* bytes read ahead and dropped before any READ used them */
	uint64_t prefetch_bytes;	/* bytes read for CACHE requests (NBD_CMD_CACHE) */
	uint64_t zc_hits;	/* READs answered with a reference to a unit, no copy (LEND) */
	uint64_t stable_copies;	/* units copied for a write while a READ reply held them */
	uint64_t lent;		/* bytes only READ replies still hold (units gone or copied) */
	uint64_t peak_lent;	/* the most such bytes ever: the bound's slack */
};

/*
 * A cache volume over lower (which it takes a reference to), with one
 * reference for the caller. 0 or -errno (-EINVAL: bad opts).
 */
int dio_cache_create(struct dio_volume *lower, const struct dio_cache_opts *opts,
		     struct dio_volume **out);
/*
 * Write back every dirty block and flush the lower volume, waiting for it
 * (not on a thread whose ctx has requests on vol). 0 or -errno.
 */
int dio_cache_sync(struct dio_volume *vol);
/* Whether vol is a cache volume. */
bool dio_volume_is_cache(const struct dio_volume *vol);
/* The volume under a cache volume (no new reference). */
struct dio_volume *dio_cache_lower(struct dio_volume *vol);
/* A snapshot of a cache volume's counters (any thread). */
void dio_cache_stats(struct dio_volume *vol, struct dio_cache_stats *st);

#endif /* DIO_CACHE_H */
