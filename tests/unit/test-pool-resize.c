/* SPDX-License-Identifier: MIT */
/*
 * dio_tpool_volume_resize: a grow is durable and seen by the next opener
 * (and by an open volume's size); a shrink refuses an open volume, frees
 * the chunks past the new end in the transaction that changes the size
 * (free count back, check clean, the same after a crash), and what it cut
 * off never reads back after a later grow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static uint8_t *wbuf, *rbuf;

static void
setup_chunk(uint32_t cs)
{
	struct dio_tpool_create_opts co = { .chunk_size = cs, .journal_blocks = 32 };

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 4 * MiB);
	ctx = test_ctx_create(NULL, NULL);
	wbuf = test_alloc(1 * MiB);
	rbuf = test_alloc(1 * MiB);
}

static void
setup(void)
{
	setup_chunk(64 * KiB);
}

/* 1 MiB chunks: sub-blocks of 32 KiB, more than the 4 KiB a size is a multiple of. */
static void
setup_big_chunks(void)
{
	setup_chunk(1 * MiB);
}

static void
teardown(void)
{
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(wbuf);
	free(rbuf);
}

static struct dio_volume *
vopen(const char *name)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0);
	return v;
}

/* A crash: drop the pool without writing anything, reopen it. */
static void
crash_reopen(void)
{
	pool->readonly = true;
	dio_tpool_close(pool);
	dio_ctx_destroy(ctx);	/* io_uring's fixed files hold the pool's lock */
	ctx = test_ctx_create(NULL, NULL);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
}

static struct dio_tpool_vol_info
vinfo(const char *name)
{
	return test_pool_vol_info(pool, name);
}

static uint64_t
free_chunks(void)
{
	return test_pool_free_chunks(pool);
}

/* check (which needs the pool closed) finds nothing wrong, no leak either. */
static void
check_clean(void)
{
	dio_tpool_close(pool);
	pool = NULL;
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(NULL, NULL);
	test_pool_check_clean(path, &opts);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
}

Test(pool_resize, bad_sizes_and_names, .init = setup, .fini = teardown)
{
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 0), -EINVAL);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 4 * MiB + 512), -EINVAL);
	cr_assert_eq(dio_tpool_volume_resize(pool, "nope", 4 * MiB), -ENOENT);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 4 * MiB), 0, "same size: nothing to do");
}

Test(pool_resize, grow_is_durable, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");

	test_pattern(wbuf, 64 * KiB, 0, 1);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 0, 64 * KiB, wbuf), 0);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 16 * MiB), 0);
	cr_assert_eq(v->size, 16 * MiB, "an open volume grows with its pool volume");
	cr_assert_eq(pool->npend, 0, "resize returned before it was durable");
	test_pattern(wbuf, 64 * KiB, 12 * MiB, 2);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 12 * MiB, 64 * KiB, wbuf), 0);
	dio_volume_put(v);
	crash_reopen();
	cr_assert_eq(vinfo("a").size, 16 * MiB);
	v = vopen("a");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 64 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 64 * KiB, 0, 1));
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 12 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 64 * KiB, 12 * MiB, 2));
	dio_volume_put(v);
	check_clean();
}

Test(pool_resize, shrink_refuses_open_volume, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");

	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 1 * MiB), -EBUSY);
	cr_assert_eq(vinfo("a").size, 4 * MiB);
	dio_volume_put(v);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 1 * MiB), 0);
}

Test(pool_resize, shrink_frees_chunks_durably, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");
	uint64_t free0 = free_chunks();

	test_pattern(wbuf, 1 * MiB, 0, 3);
	for (uint64_t off = 0; off < 4 * MiB; off += 1 * MiB)
		cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, off, 1 * MiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_put(v);
	cr_assert_eq(free_chunks(), free0 - 64);
	/* Cut in the middle of chunk 16: it stays, 17..63 go. */
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 1 * MiB + 8 * KiB), 0);
	cr_assert_eq(pool->npend, 0);
	cr_assert_eq(vinfo("a").mapped, 17);
	cr_assert_eq(free_chunks(), free0 - 17, "freed chunks not free once durable");
	crash_reopen();
	cr_assert_eq(vinfo("a").size, 1 * MiB + 8 * KiB);
	cr_assert_eq(vinfo("a").mapped, 17);
	cr_assert_eq(free_chunks(), free0 - 17);
	v = vopen("a");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 1 * MiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 1 * MiB, 0, 3), "data before the new end lost");
	dio_volume_put(v);
	check_clean();
	/* Back to 4 MiB: what was cut off reads as zeros. */
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 4 * MiB), 0);
	v = vopen("a");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 1 * MiB + 8 * KiB, 1 * MiB, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 1 * MiB), "bytes past a shrink came back");
	dio_volume_put(v);
	cr_assert_eq(free_chunks(), free0 - 17);
	check_clean();
}

/* The new end cuts a written sub-block: a later grow reads zeros past it. */
Test(pool_resize, shrink_inside_a_sub_block, .init = setup_big_chunks, .fini = teardown)
{
	struct dio_volume *v = vopen("a");
	uint64_t free0 = free_chunks();

	cr_assert_eq(pool->sub_size, 32 * KiB);
	test_pattern(wbuf, 1 * MiB, 0, 4);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 0, 1 * MiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 2 * MiB, 64 * KiB, wbuf), 0);
	dio_volume_put(v);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 8 * KiB), 0);
	cr_assert_eq(tp_ment(tp_vol_by_name(pool, "a"), 0)->bits, 1,
		     "sub-blocks past the end still written");
	cr_assert_eq(free_chunks(), free0 - 1);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 4 * MiB), 0);
	crash_reopen();
	v = vopen("a");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 1 * MiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 8 * KiB, 0, 4));
	cr_assert(test_all_zero(rbuf + 8 * KiB, 1 * MiB - 8 * KiB), "bytes past a shrink came back");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 2 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 64 * KiB));
	dio_volume_put(v);
	check_clean();
}

static int
count_entry(void *priv, uint64_t lchunk, uint64_t pchunk, uint32_t written)
{
	uint64_t *n = priv;

	cr_assert_lt(lchunk, 17, "a mapping past the end: %llu", (unsigned long long)lchunk);
	cr_assert_neq(written, 0);
	(*n)++;
	return 0;
}

/* What dump shows after a shrink: the map and the space map agree. */
Test(pool_resize, map_and_meta_after_shrink, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");
	struct dio_tpool_meta m;
	struct dio_tpool_info i;
	uint64_t n = 0;

	test_pattern(wbuf, 1 * MiB, 0, 5);
	for (uint64_t off = 0; off < 4 * MiB; off += 1 * MiB)
		cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, off, 1 * MiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_put(v);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", 1 * MiB + 4 * KiB), 0);
	cr_assert_eq(dio_tpool_volume_map(pool, "a", count_entry, &n), 0);
	cr_assert_eq(n, 17);
	cr_assert_eq(dio_tpool_volume_map(pool, "nope", count_entry, &n), -ENOENT);
	crash_reopen();
	dio_tpool_get_info(pool, &i);
	cr_assert_eq(dio_tpool_get_meta(pool, &m), 0);
	cr_assert_eq(m.chunks_used, 17);
	cr_assert_eq(m.chunks_free, i.free_chunks);
	cr_assert_eq(m.chunks_used + m.chunks_free + m.chunks_pending, i.nr_chunks);
	cr_assert_eq(m.refcount[1], 17);
	cr_assert_eq(m.leaked, 0);
	cr_assert_eq(m.journal_head - m.journal_tail, i.journal_used);
	cr_assert_gt(m.ckpt_blocks, 0);
}
