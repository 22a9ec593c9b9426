/* SPDX-License-Identifier: MIT */
/* What dio.c and ctx.c share; not part of the public API. */
#ifndef DIO_INTERNAL_H
#define DIO_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dio/dio.h"

/* A piece of work run later on the ctx's thread, from dio_ctx_reap(). */
struct dio_work {
	void (*fn)(struct dio_work *w);
	struct dio_work *next;
};

/*
 * struct dio_ctx: one per thread.
 * Lock order: remote_lock is a leaf (taken with nothing else held but,
 * possibly, a volume's rmw_lock).
 */
struct dio_ctx {
	struct dio_engine *engine;	/* owned */
	struct dio_pool *pool;		/* owned */
	int efd;			/* the engine's eventfd */
	unsigned int inflight;		/* accepted requests not yet done() */
	unsigned int in_submit;		/* > 0 while inside dio_submit: defer done() */
	uint64_t completed;		/* done() calls so far */

	/* local deferred work: only this thread touches it */
	struct dio_work *defer_head, **defer_tail;

	/* work posted by other threads (RMW range lock hand-over) */
	pthread_mutex_t remote_lock;
	struct dio_work *remote_head, **remote_tail;

	void *zero_buf;			/* DIO_ZERO_BUF_LEN aligned zeros, lazily */
	struct dio *free_dios;		/* caches: no malloc on the hot path */
	struct dio_piece *free_pieces;
	/*
	 * Registered files, keyed by volume identity, never by fd number: a
	 * closed volume's fd number may come back for another file while the
	 * ring still holds the old one.
	 */
	struct {
		uint64_t vol_id;	/* 0: free */
		int slot;		/* the engine's fixed-file slot */
	} files[8];
	unsigned int files_next;	/* the entry to recycle when all are taken */
};

#define DIO_ZERO_BUF_LEN (1u << 20)

/* Queue w to run at the next reap of ctx; this thread only. */
void dio_ctx_defer(struct dio_ctx *ctx, struct dio_work *w);
/* Queue w to run at the next reap of ctx, from any thread; wakes ctx. */
void dio_ctx_post(struct dio_ctx *ctx, struct dio_work *w);
/*
 * The engine's fixed-file slot + 1 for vol's fd on this ctx (registered on
 * first use), or 0 when the fd must be passed as is. Best effort: an
 * unregistered fd only costs a little speed.
 */
int dio_ctx_file(struct dio_ctx *ctx, const struct dio_volume *vol);
/* The ctx's zero buffer, or NULL on out of memory. */
void *dio_ctx_zero_buf(struct dio_ctx *ctx);

/* dio.c: free the caches a ctx holds. */
void dio_ctx_free_caches(struct dio_ctx *ctx);

#endif /* DIO_INTERNAL_H */
