/* SPDX-License-Identifier: MIT */
/*
 * Pinned buffer pool: aligned buffers carved from one arena that is
 * registered with the engine (io_uring fixed buffer), reference-counted.
 * A pool belongs to one thread, like its engine.
 */
#ifndef DIO_BUF_H
#define DIO_BUF_H

#include <stddef.h>
#include <stdint.h>

struct dio_engine;
struct dio_pool;

struct dio_buf {
	void *data;		/* aligned to the pool's alignment */
	size_t size;		/* usable bytes (>= what was asked) */
	int index;		/* registered buffer index, -1 if not pinned */
	unsigned int ref;	/* owners: dio_buf_get gives 1 */
	/*
	 * NULL for a pool's buffer (one thread's, like its pool). Set by the
	 * owner of a buffer that is not a pool's (pool NULL) and that several
	 * threads may hold, such as a block cache unit lent to READ replies:
	 * its ref is then counted with atomics, and the last dio_buf_put,
	 * on whichever thread, calls release(b) instead of returning b to a pool.
	 */
	void (*release)(struct dio_buf *b);
	/* pool private */
	struct dio_pool *pool;
	struct dio_buf *next;
	uint8_t cls;
};

struct dio_pool_opts {
	size_t arena_size;	/* bytes to pin; 0 = 64 MiB */
	size_t align;		/* power of two >= 512; 0 = 4096 */
};

/*
 * Create a pool and register its arena with e (may be NULL: no engine).
 * When pinning is refused (RLIMIT_MEMLOCK), the pool still works with
 * unregistered memory and logs that once. 0 or -errno.
 */
int dio_pool_create(struct dio_engine *e, const struct dio_pool_opts *opts,
		    struct dio_pool **out);
/* Free the pool; every buffer must have been put back. */
void dio_pool_destroy(struct dio_pool *pool);
/* Whether the arena is registered with the engine. */
int dio_pool_pinned(const struct dio_pool *pool);
/*
 * Arena bytes in buffers handed out and not yet put back (*used; heap
 * buffers are not counted) and the arena's size (*size). The one call that
 * another thread may make on a pool: a lock-free snapshot, exact on the
 * owning thread and at most a moment old on another.
 */
void dio_pool_usage(const struct dio_pool *pool, size_t *used, size_t *size);

/*
 * A buffer of at least size bytes (ref 1), from the arena when it fits,
 * else from the heap (index -1). NULL on out of memory.
 */
struct dio_buf *dio_buf_get(struct dio_pool *pool, size_t size);
/* Take another reference. */
static inline struct dio_buf *
dio_buf_ref(struct dio_buf *b)
{
	if (b->release)
		__atomic_fetch_add(&b->ref, 1, __ATOMIC_RELAXED);
	else
		b->ref++;
	return b;
}
/* Drop a reference; the last one returns the buffer to its pool (or calls release). */
void dio_buf_put(struct dio_buf *b);

#endif /* DIO_BUF_H */
