/* SPDX-License-Identifier: MIT */
/* The pinned buffer pool. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

static struct dio_pool *
pool_new(struct dio_engine *e, size_t arena, size_t align)
{
	struct dio_pool_opts o = { .arena_size = arena, .align = align };
	struct dio_pool *pool = NULL;
	int ret = dio_pool_create(e, &o, &pool);

	cr_assert_eq(ret, 0, "pool create: %s", strerror(-ret));
	return pool;
}

Test(bufpool, alignment)
{
	size_t aligns[] = { 512, 4096, 65536 };

	for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
		struct dio_pool *pool = pool_new(NULL, 1 << 20, aligns[a]);
		size_t sizes[] = { 1, 511, 512, 4095, 4096, 5000, 70000, 1 << 20, 3 << 20 };
		struct dio_buf *b[9];

		for (int i = 0; i < 9; i++) {
			b[i] = dio_buf_get(pool, sizes[i]);
			cr_assert_not_null(b[i]);
			cr_assert_eq((uintptr_t)b[i]->data % aligns[a], 0,
				     "size %zu align %zu: %p", sizes[i], aligns[a], b[i]->data);
			cr_assert_geq(b[i]->size, sizes[i]);
			cr_assert_eq(b[i]->size % aligns[a], 0);
			cr_assert_eq(b[i]->ref, 1);
			/* every byte is usable */
			memset(b[i]->data, 0x5a, b[i]->size);
		}
		for (int i = 0; i < 9; i++)
			dio_buf_put(b[i]);
		dio_pool_destroy(pool);
	}
}

Test(bufpool, bad_alignment)
{
	struct dio_pool_opts o = { .align = 1000 };
	struct dio_pool *pool = NULL;

	cr_assert_eq(dio_pool_create(NULL, &o, &pool), -EINVAL);
	o.align = 256;
	cr_assert_eq(dio_pool_create(NULL, &o, &pool), -EINVAL);
}

Test(bufpool, distinct_buffers)
{
	enum { N = 100 };
	struct dio_pool *pool = pool_new(NULL, 4 << 20, 4096);
	struct dio_buf *b[N];

	for (int i = 0; i < N; i++) {
		b[i] = dio_buf_get(pool, (size_t)(i % 7 + 1) * 3000);
		cr_assert_not_null(b[i]);
		memset(b[i]->data, i, b[i]->size);
	}
	for (int i = 0; i < N; i++) {
		uintptr_t s = (uintptr_t)b[i]->data, e = s + b[i]->size;

		for (int j = i + 1; j < N; j++) {
			uintptr_t s2 = (uintptr_t)b[j]->data, e2 = s2 + b[j]->size;

			cr_assert(e <= s2 || e2 <= s, "buffers %d and %d overlap", i, j);
		}
		/* nobody else wrote into it */
		for (size_t k = 0; k < b[i]->size; k++)
			cr_assert_eq(((uint8_t *)b[i]->data)[k], (uint8_t)i);
	}
	for (int i = 0; i < N; i++)
		dio_buf_put(b[i]);
	dio_pool_destroy(pool);
}

Test(bufpool, refcount_and_reuse)
{
	struct dio_pool *pool = pool_new(NULL, 1 << 20, 4096);
	struct dio_buf *b = dio_buf_get(pool, 8192), *again;
	void *data = b->data;

	cr_assert_eq(dio_buf_ref(b), b);
	cr_assert_eq(b->ref, 2);
	dio_buf_put(b);
	cr_assert_eq(b->ref, 1);
	/* still held: a new get must not hand out the same memory */
	again = dio_buf_get(pool, 8192);
	cr_assert_neq(again->data, data);
	dio_buf_put(again);
	dio_buf_put(b);
	/* the last put gave it back: the same size class reuses it (LIFO) */
	again = dio_buf_get(pool, 8000);
	cr_assert_eq(again->data, data);
	cr_assert_eq(again->ref, 1);
	dio_buf_put(again);
	dio_pool_destroy(pool);
}

Test(bufpool, usage)
{
	struct dio_pool *pool = pool_new(NULL, 1 << 20, 4096);
	struct dio_buf *a, *b, *h;
	size_t used, size;

	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, 0);
	cr_assert_eq(size, 1 << 20);
	a = dio_buf_get(pool, 5000);	/* an 8 KiB class */
	b = dio_buf_get(pool, 4096);
	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, a->size + b->size);
	/* heap buffers are outside the arena */
	h = dio_buf_get(pool, 2 << 20);
	cr_assert_eq(h->index, -1);
	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, a->size + b->size);
	dio_buf_ref(a);
	dio_buf_put(a);
	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, a->size + b->size, "a reference is still held");
	dio_buf_put(a);
	dio_buf_put(h);
	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, b->size);
	dio_buf_put(b);
	dio_pool_usage(pool, &used, &size);
	cr_assert_eq(used, 0);
	dio_pool_destroy(pool);
}

Test(bufpool, oversize_from_heap)
{
	struct dio_pool *pool = pool_new(NULL, 1 << 20, 4096);
	struct dio_buf *b = dio_buf_get(pool, 3 << 20);
	struct dio_buf *fit = dio_buf_get(pool, 1 << 20);

	cr_assert_not_null(b);
	cr_assert_eq(b->index, -1);
	cr_assert_geq(b->size, 3 << 20);
	cr_assert_eq((uintptr_t)b->data % 4096, 0);
	memset(b->data, 1, b->size);
	/* the whole arena in one buffer still comes from the arena */
	cr_assert_not_null(fit);
	/* and once the arena is carved out, the heap steps in */
	struct dio_buf *more = dio_buf_get(pool, 4096);

	cr_assert_not_null(more);
	cr_assert_eq(more->index, -1);
	dio_buf_put(more);
	dio_buf_put(fit);
	dio_buf_put(b);
	dio_pool_destroy(pool);
}

Test(bufpool, split_larger_when_carved_out)
{
	struct dio_pool *pool = pool_new(NULL, 1 << 20, 4096);
	struct dio_buf *big = dio_buf_get(pool, 1 << 20), *b[9];
	uintptr_t lo = (uintptr_t)big->data, hi = lo + (1 << 20);

	/* the arena is one free 1 MiB buffer now: small ones come out of it */
	dio_buf_put(big);
	for (int i = 0; i < 9; i++) {
		b[i] = dio_buf_get(pool, (size_t)4096 << (i % 3));
		cr_assert_geq((uintptr_t)b[i]->data, lo, "buffer %d from the heap", i);
		cr_assert_leq((uintptr_t)b[i]->data + b[i]->size, hi);
		memset(b[i]->data, i, b[i]->size);
	}
	for (int i = 0; i < 9; i++) {
		for (size_t k = 0; k < b[i]->size; k++)
			cr_assert_eq(((uint8_t *)b[i]->data)[k], i, "buffers overlap");
		dio_buf_put(b[i]);
	}
	dio_pool_destroy(pool);
}

Test(bufpool, pinned_with_engine)
{
	struct dio_engine *e = test_engine_create();
	struct dio_pool *pool = pool_new(e, 2 << 20, 4096);
	struct dio_buf *b = dio_buf_get(pool, 4096);
	struct dio_buf *big = dio_buf_get(pool, 8 << 20);
	bool can = e->ops->register_buffers && (e->caps & DIO_CAP_FIXED_BUFS);

	if (can) {
		cr_assert(dio_pool_pinned(pool), "uring pool not pinned (RLIMIT_MEMLOCK?)");
		cr_assert_eq(b->index, 0);
	} else {
		cr_assert_not(dio_pool_pinned(pool));
		cr_assert_eq(b->index, -1);
	}
	/* heap buffers are never pinned */
	cr_assert_eq(big->index, -1);
	dio_buf_put(big);
	dio_buf_put(b);
	dio_pool_destroy(pool);
	dio_engine_destroy(e);
}

Test(bufpool, unpinned_without_engine)
{
	struct dio_pool *pool = pool_new(NULL, 0, 0);
	struct dio_buf *b = dio_buf_get(pool, 100);

	cr_assert_not(dio_pool_pinned(pool));
	cr_assert_eq(b->index, -1);
	/* defaults: 4096 alignment */
	cr_assert_eq((uintptr_t)b->data % 4096, 0);
	cr_assert_eq(b->size, 4096);
	dio_buf_put(b);
	dio_pool_destroy(pool);
}

static void
io_done(struct dio_io *io, int64_t res)
{
	*(int64_t *)io->priv = res;
}

/* A write and a read through the engine from pool buffers (fixed when pinned). */
Test(bufpool, io_from_pool)
{
	struct dio_engine *e = test_engine_create();
	struct dio_pool *pool = pool_new(e, 1 << 20, 4096);
	struct dio_buf *w = dio_buf_get(pool, 16384), *r = dio_buf_get(pool, 16384);
	char *path = test_file_create(1 << 20);
	int fd = open(path, O_RDWR | O_DIRECT);

	cr_assert_geq(fd, 0);
	unlink(path);
	free(path);
	test_pattern(w->data, 16384, 8192, 77);
	memset(r->data, 0, r->size);
	for (int pass = 0; pass < 2; pass++) {
		struct dio_buf *b = pass ? r : w;
		int64_t res = 1;
		struct dio_io io = {
			.op = pass ? DIO_IO_READ : DIO_IO_WRITE, .fd = fd, .offset = 8192,
			.len = 16384, .buf = b->data, .buf_index = b->index,
			.end_io = io_done, .priv = &res,
		};

		cr_assert_eq(dio_engine_queue(e, &io), 0);
		cr_assert_geq(dio_engine_submit(e), 0);
		for (int i = 0; i < 1000 && res == 1; i++)
			cr_assert_geq(dio_engine_reap(e, true), 0);
		cr_assert_eq(res, 16384, "pass %d: %lld", pass, (long long)res);
	}
	cr_assert(test_pattern_check(r->data, 16384, 8192, 77));
	dio_buf_put(w);
	dio_buf_put(r);
	dio_pool_destroy(pool);
	dio_engine_destroy(e);
	close(fd);
}

Test(bufpool, many_cycles)
{
	struct dio_pool *pool = pool_new(NULL, 8 << 20, 4096);
	struct dio_buf *held[32] = { 0 };
	unsigned int seed = 12345;

	for (int i = 0; i < 100000; i++) {
		int slot = (int)(rand_r(&seed) % 32);
		size_t size = (size_t)(rand_r(&seed) % (300 * 1024)) + 1;

		if (held[slot]) {
			cr_assert_eq(*(uint32_t *)held[slot]->data, (uint32_t)slot);
			dio_buf_put(held[slot]);
			held[slot] = NULL;
		} else {
			held[slot] = dio_buf_get(pool, size);
			cr_assert_not_null(held[slot]);
			cr_assert_geq(held[slot]->size, size);
			*(uint32_t *)held[slot]->data = (uint32_t)slot;
		}
	}
	for (int i = 0; i < 32; i++)
		dio_buf_put(held[i]);
	dio_pool_destroy(pool);
}

static int warnings;
static char last_warning[512];

static void
count_log(int level, const char *msg)
{
	if (level == DIO_LOG_WARN) {
		warnings++;
		snprintf(last_warning, sizeof(last_warning), "%s", msg);
	}
}

/* Drop CAP_IPC_LOCK from the effective set: root pins without limit otherwise. */
static int
drop_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

Test(bufpool, memlock_refused_warns_once)
{
	struct rlimit rl = { .rlim_cur = 1 << 20, .rlim_max = 1 << 20 };
	struct dio_engine *e;
	struct dio_pool *p1, *p2;
	struct dio_buf *b;

	if (test_engine_kind() != DIO_ENGINE_URING)
		cr_skip_test("only io_uring pins buffers");
	/* Criterion runs each test in its own process: this stays here */
	cr_assert_eq(drop_ipc_lock(), 0);
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	dio_set_log(count_log);
	e = test_engine_create();
	p1 = pool_new(e, 8 << 20, 4096);
	cr_assert_not(dio_pool_pinned(p1), "8 MiB pinned under a 1 MiB RLIMIT_MEMLOCK");
	cr_assert_eq(warnings, 1);
	cr_assert(strstr(last_warning, "RLIMIT_MEMLOCK"), "warning: %s", last_warning);
	b = dio_buf_get(p1, 4096);
	cr_assert_eq(b->index, -1);
	dio_buf_put(b);
	p2 = pool_new(e, 8 << 20, 4096);
	cr_assert_eq(warnings, 1, "warned again");
	dio_pool_destroy(p2);
	dio_pool_destroy(p1);
	dio_engine_destroy(e);
	dio_set_log(NULL);
}
