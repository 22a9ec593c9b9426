/* SPDX-License-Identifier: MIT */
/*
 * libdio's own part of every volume (dio_volume.state), whatever its
 * backend: the reference count and identity, the write generation, and the
 * block-range lock that serialises unaligned read-modify-writes. Private.
 */
#ifndef DIO_VOLUME_PRIV_H
#define DIO_VOLUME_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "dio/volume.h"

/* A holder of, or waiter for, a block range of a volume. */
struct dio_range {
	uint64_t start, end;		/* [start, end) */
	struct dio_ctx *ctx;		/* where to resume a waiter ... */
	struct dio_work *resume;	/* ... with this work */
	struct dio_range *next;		/* under dio_vol_state.range_lock */
	bool waiting;			/* queued behind an overlapping range */
};

/*
 * Lock order: range_lock, then a ctx's remote_lock (the hand-over posts
 * to the waiter's ctx). Nothing else is taken under range_lock.
 */
struct dio_vol_state {
	_Atomic unsigned int refs;
	uint64_t id;			/* unique in the process, never reused */
	_Atomic uint64_t write_gen;	/* bumped as each WRITE/ZERO/TRIM starts */
	_Atomic unsigned int writers;	/* WRITE/ZERO/TRIM accepted, not yet done */
	pthread_mutex_t range_lock;
	struct dio_range *ranges;	/* holders and waiters, in arrival order */
};

/* A reference, unless the last one is already gone (a volume being released). */
bool dio_volume_tryget(struct dio_volume *vol);

/* A write-type request on vol was accepted / has completed. */
void dio_volume_write_begin(struct dio_volume *vol);
void dio_volume_write_end(struct dio_volume *vol);

/*
 * Take [r->start, r->end) of vol for the caller (FIFO among overlapping
 * ranges). true: taken now. false: queued; r->resume is posted to r->ctx
 * once every earlier overlapping range was released, and r then holds it.
 */
bool dio_range_lock(struct dio_volume *vol, struct dio_range *r);
/* Release r and hand the range over to the waiters it was blocking. */
void dio_range_unlock(struct dio_volume *vol, struct dio_range *r);

#endif /* DIO_VOLUME_PRIV_H */
