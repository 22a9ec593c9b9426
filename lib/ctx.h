/* SPDX-License-Identifier: MIT */
/*
 * struct dio_ctx, private to libdio: one thread's engine, buffer pool,
 * queues of deferred work, object caches and fixed-file slots. The request
 * machinery (dio-*.c) runs on top of it; ctx.c knows nothing of requests.
 */
#ifndef DIO_CTX_H
#define DIO_CTX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/dio.h"

/* A piece of work run later on the ctx's thread, from dio_ctx_reap(). */
struct dio_work {
	void (*fn)(struct dio_work *w);
	struct dio_work *next;
};

/* Object caches: freed objects are kept per kind, so the hot path does not malloc. */
enum {
	DIO_CACHE_DIO = 0,	/* struct dio */
	DIO_CACHE_PIECE,	/* struct dio_piece */
	DIO_CACHE_NR
};

/* Fixed-file slots a ctx keeps, each bound to one volume by its identity. */
#define DIO_CTX_FILES 8

#define DIO_ZERO_BUF_LEN (1u << 20)

/*
 * Lock order: remote_lock is a leaf (taken with nothing else held but,
 * possibly, a volume's range lock).
 */
struct dio_ctx {
	struct dio_engine *engine;	/* owned */
	struct dio_pool *pool;		/* owned */
	int efd;			/* the engine's eventfd, once asked for */
	int pollfd;			/* epoll of efd + sources: dio_ctx_event_fd */
	unsigned int inflight;		/* accepted requests not yet done() */
	unsigned int in_submit;		/* > 0 while inside dio_submit: defer done() */
	uint64_t completed;		/* done() calls so far */

	/* local deferred work: only this thread touches it */
	struct dio_work *defer_head, **defer_tail;

	/* work posted by other threads (range lock hand-over) */
	pthread_mutex_t remote_lock;
	struct dio_work *remote_head, **remote_tail;

	void *zero_buf;			/* DIO_ZERO_BUF_LEN aligned zeros, lazily */
	void *cache[DIO_CACHE_NR];	/* free objects, chained through their first word */

	/*
	 * Registered files, keyed by volume identity (dio_volume_id), never
	 * by fd number: a closed volume's fd number may come back for
	 * another file while the ring still holds the old one.
	 */
	struct {
		uint64_t vol_id;	/* 0: free */
		int slot;		/* the engine's fixed-file slot */
	} files[DIO_CTX_FILES];
	unsigned int files_next;	/* next slot to recycle when all are taken */

	/*
	 * Sources: volumes that do their own I/O (vol_ops->submit), each with
	 * the number of this ctx's requests in flight on it. A volume is here,
	 * and its event fd in pollfd, only while that number is above zero,
	 * so a volume never outlives its entry.
	 */
	struct dio_ctx_src {
		struct dio_volume *vol;
		unsigned int inflight;
	} *srcs;
	unsigned int nsrcs, srcs_cap;
};

/* Queue w to run at the next reap of ctx; this thread only. */
void dio_ctx_defer(struct dio_ctx *ctx, struct dio_work *w);
/* Queue w to run at the next reap of ctx, from any thread; wakes ctx. */
void dio_ctx_post(struct dio_ctx *ctx, struct dio_work *w);
/* The ctx's zero buffer (DIO_ZERO_BUF_LEN bytes), or NULL on out of memory. */
void *dio_ctx_zero_buf(struct dio_ctx *ctx);

/* An object of the given kind and size (a kind always has one size); NULL on ENOMEM. */
void *dio_ctx_cache_get(struct dio_ctx *ctx, unsigned int kind, size_t size);
/* Give an object back to its kind's cache. */
void dio_ctx_cache_put(struct dio_ctx *ctx, unsigned int kind, void *obj);

/*
 * The engine's fixed-file slot + 1 for the fd of volume vol_id on this ctx's engine
 * (registering it on first use), or 0 when the fd must be passed as is.
 * Best effort: an unregistered fd only costs a little speed.
 */
int dio_ctx_file(struct dio_ctx *ctx, uint64_t vol_id, int fd);

/* One more request of this ctx in flight on vol (a source): poll it. 0 or -errno. */
int dio_ctx_source_get(struct dio_ctx *ctx, struct dio_volume *vol);
/* One fewer: the last one stops polling vol. */
void dio_ctx_source_put(struct dio_ctx *ctx, struct dio_volume *vol);

#endif /* DIO_CTX_H */
