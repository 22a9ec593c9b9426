/* SPDX-License-Identifier: MIT */
/*
 * The pinned buffer pool: one arena, registered with the engine as fixed
 * buffer 0, carved into power-of-two size classes (from the alignment up)
 * with a free list per class. Space is bump-allocated from the arena the
 * first time a class needs it and then recycled through the class's free
 * list, never returned to the arena; once the arena is used up, a free
 * buffer of a larger class is split for a smaller one. What still does not
 * fit comes from the heap (index -1) and goes back to it on the last put.
 *
 * The struct dio_buf headers live in their own small allocations so that
 * the arena holds nothing but data. One pool per thread: no locks.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dio/dio.h"

#define POOL_CLASSES	48		/* align << 47 is beyond any arena */
#define POOL_HEAP	0xff		/* dio_buf.cls of a heap buffer */

struct dio_pool {
	struct dio_engine *e;		/* not owned; may be NULL */
	uint8_t *arena;
	size_t arena_size;
	size_t used;			/* bump offset into the arena */
	size_t align;
	int index;			/* registered buffer index or -1 */
	unsigned int outstanding;	/* buffers handed out, not yet put back */
	/*
	 * Arena bytes handed out and not yet put back. Written by the owning
	 * thread only, with relaxed atomic stores, so that dio_pool_usage may
	 * read it from another thread (a monitoring one) without a lock.
	 */
	size_t in_use;
	struct dio_buf *free[POOL_CLASSES];
};

/* Warn about RLIMIT_MEMLOCK once per process, not once per thread's pool. */
static atomic_bool pool_warned;

/* Size class of a request: the smallest c with align << c >= size. */
static unsigned int
pool_class(const struct dio_pool *pool, size_t size)
{
	unsigned int c = 0;

	while (c < POOL_CLASSES - 1 && (pool->align << c) < size)
		c++;
	return c;
}

/* Map an arena of size bytes aligned to align (mmap gives only pages). */
static void *
pool_map_arena(size_t size, size_t align)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t extra = align > page ? align : 0;
	uint8_t *p, *start;
	size_t head, tail;

	p = mmap(NULL, size + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	start = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	head = (size_t)(start - p);
	tail = extra - head;
	if (head)
		munmap(p, head);
	if (tail)
		munmap(start + size, tail);
	return start;
}

/* Register the arena as fixed buffer 0 when the engine can. */
static void
pool_register(struct dio_pool *pool)
{
	struct iovec iov = { .iov_base = pool->arena, .iov_len = pool->arena_size };
	struct dio_engine *e = pool->e;
	int ret;

	if (!e || !e->ops->register_buffers || !(e->caps & DIO_CAP_FIXED_BUFS))
		return;
	ret = e->ops->register_buffers(e, &iov, 1);
	if (ret == 0) {
		pool->index = 0;
		return;
	}
	if (ret == -ENOMEM || ret == -EPERM) {
		if (!atomic_exchange(&pool_warned, true))
			dio_log(DIO_LOG_WARN,
				"cannot pin %zu bytes of I/O buffers (%s): raise RLIMIT_MEMLOCK "
				"(ulimit -l, LimitMEMLOCK=) to use fixed buffers; "
				"continuing unpinned",
				pool->arena_size, strerror(-ret));
		return;
	}
	dio_log(DIO_LOG_INFO, "buffer registration failed (%s), continuing unpinned",
		strerror(-ret));
}

/* Map and register the arena; see buf.h. */
int
dio_pool_create(struct dio_engine *e, const struct dio_pool_opts *opts,
		struct dio_pool **out)
{
	struct dio_pool_opts def = { 0 };
	struct dio_pool *pool;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (!opts)
		opts = &def;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->e = e;
	pool->index = -1;
	pool->align = opts->align ? opts->align : 4096;
	pool->arena_size = opts->arena_size ? opts->arena_size : (64u << 20);
	if (pool->align < 512 || (pool->align & (pool->align - 1))) {
		free(pool);
		return -EINVAL;
	}
	/* whole pages, whole alignment units */
	pool->arena_size = (pool->arena_size + page - 1) & ~(page - 1);
	pool->arena_size = (pool->arena_size + pool->align - 1) & ~(pool->align - 1);
	pool->arena = pool_map_arena(pool->arena_size, pool->align);
	if (!pool->arena) {
		free(pool);
		return -ENOMEM;
	}
	pool_register(pool);
	*out = pool;
	return 0;
}

/* Unmap the arena and free the cached headers. */
void
dio_pool_destroy(struct dio_pool *pool)
{
	if (!pool)
		return;
	for (unsigned int c = 0; c < POOL_CLASSES; c++) {
		struct dio_buf *b = pool->free[c];

		while (b) {
			struct dio_buf *next = b->next;

			free(b);
			b = next;
		}
	}
	/*
	 * The engine may keep the arena registered; the kernel holds its own
	 * page references for that, so unmapping is safe.
	 */
	munmap(pool->arena, pool->arena_size);
	free(pool);
}

/* Add delta (wrapping: a subtraction) to in_use; see struct dio_pool. */
static void
pool_account(struct dio_pool *pool, size_t delta)
{
	__atomic_store_n(&pool->in_use, pool->in_use + delta, __ATOMIC_RELAXED);
}

/* Bytes in use and arena size; see buf.h. */
void
dio_pool_usage(const struct dio_pool *pool, size_t *used, size_t *size)
{
	*used = __atomic_load_n(&pool->in_use, __ATOMIC_RELAXED);
	*size = pool->arena_size;
}

/* Whether buffers from the arena carry a fixed-buffer index. */
int
dio_pool_pinned(const struct dio_pool *pool)
{
	return pool->index >= 0;
}

/* A heap buffer for what the arena cannot hold. */
static struct dio_buf *
pool_get_heap(struct dio_pool *pool, size_t size)
{
	struct dio_buf *b = calloc(1, sizeof(*b));
	size_t asize = (size + pool->align - 1) & ~(pool->align - 1);

	if (!b)
		return NULL;
	if (posix_memalign(&b->data, pool->align, asize)) {
		free(b);
		return NULL;
	}
	b->size = asize;
	b->index = -1;
	b->cls = POOL_HEAP;
	return b;
}

/* A header for arena space at data of class c. */
static struct dio_buf *
pool_new_buf(struct dio_pool *pool, uint8_t *data, unsigned int c)
{
	struct dio_buf *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->data = data;
	b->size = pool->align << c;
	b->index = pool->index;
	b->cls = (uint8_t)c;
	return b;
}

/*
 * Once the arena is carved out, take a free buffer of a larger class and
 * split it: class c gets its first part, and the rest (one buffer each of
 * classes c .. big-1) goes onto the free lists. Nothing merges back.
 */
static struct dio_buf *
pool_split(struct dio_pool *pool, unsigned int c)
{
	struct dio_buf *b, *rest[POOL_CLASSES];
	unsigned int big = c + 1, k;
	uint8_t *p;

	while (big < POOL_CLASSES && !pool->free[big])
		big++;
	if (big >= POOL_CLASSES)
		return NULL;
	/* all headers first: on failure nothing has changed */
	for (k = c; k < big; k++) {
		rest[k] = calloc(1, sizeof(*rest[k]));
		if (!rest[k])
			goto err_free_rest;
	}
	b = pool->free[big];
	pool->free[big] = b->next;
	b->size = pool->align << c;
	b->cls = (uint8_t)c;
	p = (uint8_t *)b->data + b->size;
	for (k = c; k < big; k++) {
		rest[k]->data = p;
		rest[k]->size = pool->align << k;
		rest[k]->index = pool->index;
		rest[k]->cls = (uint8_t)k;
		rest[k]->next = pool->free[k];
		pool->free[k] = rest[k];
		p += rest[k]->size;
	}
	return b;

err_free_rest:
	while (k-- > c)
		free(rest[k]);
	return NULL;
}

/* Free list of the class, then the arena, then a split, then the heap. */
struct dio_buf *
dio_buf_get(struct dio_pool *pool, size_t size)
{
	unsigned int c = pool_class(pool, size ? size : 1);
	size_t csize = pool->align << c;
	struct dio_buf *b;

	if (pool->align << c < size || csize > pool->arena_size) {
		b = pool_get_heap(pool, size ? size : 1);
		goto out;
	}
	b = pool->free[c];
	if (b) {
		pool->free[c] = b->next;
		goto out;
	}
	if (pool->arena_size - pool->used >= csize) {
		b = pool_new_buf(pool, pool->arena + pool->used, c);
		if (!b)
			return NULL;
		pool->used += csize;
		goto out;
	}
	b = pool_split(pool, c);
	if (!b) {
		/* arena carved out and nothing larger is free */
		b = pool_get_heap(pool, size ? size : 1);
	}
out:
	if (!b)
		return NULL;
	b->pool = pool;
	b->ref = 1;
	b->next = NULL;
	pool->outstanding++;
	if (b->cls != POOL_HEAP)
		pool_account(pool, b->size);
	return b;
}

/* Drop a reference; the last one recycles into the class or frees heap memory. */
void
dio_buf_put(struct dio_buf *b)
{
	struct dio_pool *pool;

	if (!b)
		return;
	if (b->release) {
		/* acq_rel: the owner may reuse the memory once it sees the last put */
		if (__atomic_sub_fetch(&b->ref, 1, __ATOMIC_ACQ_REL) == 0)
			b->release(b);
		return;
	}
	if (--b->ref > 0)
		return;
	pool = b->pool;
	pool->outstanding--;
	if (b->cls == POOL_HEAP) {
		free(b->data);
		free(b);
		return;
	}
	pool_account(pool, -b->size);
	b->next = pool->free[b->cls];
	pool->free[b->cls] = b;
}
