/* SPDX-License-Identifier: MIT */
/*
 * The block cache (cache.h) over a file volume, its writeback thread's
 * engine wrapped by the fault engine: reads and writes stay exact,
 * writeback errors keep the data dirty and reach each writer's next FLUSH
 * once, merged writeback, the memory bound under a write flood, and holes
 * that take no memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/cache.h"
#include "helper.h"

#define KiB (1u << 10)
#define MiB (1u << 20)
#define VOL_SIZE (8 * MiB)

static char *path;
static struct dio_volume *file, *cvol;
static struct dio_ctx *ctx;
static struct dio_engine *fault;	/* the writeback thread's engine */

static void
cache_open(uint64_t size)
{
	struct dio_fault_opts none = { 0 };
	struct dio_cache_opts o = { .size = size, .expire_ms = 60000 };
	struct dio_engine *w = NULL;
	int ret;

	ret = dio_engine_fault_create(test_engine_create(), &none, &w);
	cr_assert_eq(ret, 0);
	fault = w;
	o.engine = w;
	ret = dio_cache_create(file, &o, &cvol);
	cr_assert_eq(ret, 0, "cache create: %s", strerror(-ret));
}

static void
setup(void)
{
	struct dio_file_opts fo = { .no_lock = true };

	path = test_file_create(VOL_SIZE);
	cr_assert_eq(dio_file_open(path, &fo, &file), 0);
	ctx = test_ctx_create(NULL, NULL);
	cache_open(4 * MiB);
}

static void
teardown(void)
{
	dio_volume_put(cvol);
	dio_volume_put(file);
	dio_ctx_destroy(ctx);
	unlink(path);
	free(path);
}

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 60);

static int
io(struct dio_volume *vol, uint8_t op, uint32_t flags, uint64_t pos, uint64_t len, void *buf,
   struct dio_cache_writer *w)
{
	struct dio_req req = { .op = op, .flags = flags, .pos = pos, .len = len, .buf = buf,
			       .writer = w };

	return dio_submit_sync(ctx, vol, &req);
}

static void
fault_plan(const struct dio_fault_opts *o)
{
	dio_engine_fault_set(fault, o);
}

static struct dio_cache_stats
cstats(void)
{
	struct dio_cache_stats st;

	dio_cache_stats(cvol, &st);
	return st;
}

/* [pos, pos+len) of vol reads as the pattern seed (or zeros when seed is 0). */
static bool
holds(struct dio_volume *vol, uint64_t pos, uint64_t len, uint32_t seed)
{
	uint8_t *b = test_alloc(len);
	bool ok;

	cr_assert_eq(io(vol, DIO_REQ_READ, 0, pos, len, b, NULL), 0);
	ok = seed ? test_pattern_check(b, len, pos, seed) : test_all_zero(b, len);
	free(b);
	return ok;
}

/* The file itself, under the cache. */
#define file_holds(pos, len, seed) holds(file, pos, len, seed)
/* Through the cache. */
#define cache_holds(pos, len, seed) holds(cvol, pos, len, seed)

static void
write_pattern(uint64_t pos, uint64_t len, uint32_t seed, uint32_t flags,
	      struct dio_cache_writer *w)
{
	uint8_t *b = test_alloc(len);

	test_pattern(b, len, pos, seed);
	cr_assert_eq(io(cvol, DIO_REQ_WRITE, flags, pos, len, b, w), 0);
	free(b);
}

Test(cache, writeback_stays_in_memory_until_flush)
{
	struct dio_cache_writer w = { 0 };

	write_pattern(0, 256 * KiB, 1, 0, &w);
	cr_assert(cache_holds(0, 256 * KiB, 1));
	cr_assert(file_holds(0, 256 * KiB, 0), "written through without FUA or FLUSH");
	cr_assert_eq(cstats().dirty, 256 * KiB);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(file_holds(0, 256 * KiB, 1), "FLUSH replied before the data was written");
	cr_assert_eq(cstats().dirty, 0);
	/* 256 KiB of contiguous dirty blocks over 4 units: one merged write */
	cr_assert_eq(cstats().wb_ios, 1);
}

Test(cache, fua_and_writethrough_reach_the_file_at_once)
{
	write_pattern(0, 64 * KiB, 2, DIO_REQ_FUA, NULL);
	cr_assert(file_holds(0, 64 * KiB, 2));
	write_pattern(64 * KiB, 64 * KiB, 3, DIO_REQ_WRITETHROUGH, NULL);
	cr_assert(file_holds(64 * KiB, 64 * KiB, 3));
	cr_assert(cache_holds(0, 128 * KiB, 0) == false);
	cr_assert(cache_holds(0, 64 * KiB, 2));
	cr_assert(cache_holds(64 * KiB, 64 * KiB, 3));
	cr_assert_eq(cstats().dirty, 0);
}

Test(cache, fua_over_dirty_blocks_is_not_overtaken_by_their_writeback)
{
	struct dio_cache_writer w = { 0 };

	write_pattern(0, 64 * KiB, 4, 0, &w);		/* dirty */
	write_pattern(4 * KiB, 8 * KiB, 5, DIO_REQ_FUA, &w);	/* through, over dirty blocks */
	cr_assert(file_holds(4 * KiB, 8 * KiB, 5));
	cr_assert(cache_holds(4 * KiB, 8 * KiB, 5));
	cr_assert(cache_holds(0, 4 * KiB, 4));
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(file_holds(0, 4 * KiB, 4));
	cr_assert(file_holds(4 * KiB, 8 * KiB, 5));
	cr_assert(file_holds(12 * KiB, 52 * KiB, 4));
}

/* An asynchronous request's completion: its result into *priv. */
static void
store_ret(struct dio_req *r, int ret)
{
	*(int *)r->priv = ret;
}

/*
 * The writeback a write-through waits for leaves its block dirty when the
 * block's unit changed meanwhile (here: another block of it written), and
 * the old bytes must not outlive the write-through: not read from the
 * cache, and not written back over it at the next FLUSH. The failure
 * this is against: test-server-cache read the old bytes after FLUSHes.
 */
Test(cache, a_writethrough_over_a_block_whose_writeback_was_overtaken)
{
	struct dio_fault_gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
	struct dio_cache_writer w = { 0 };
	uint8_t *b = test_alloc(8 * KiB);
	int res = 1;
	struct dio_req d = { .op = DIO_REQ_WRITE, .flags = DIO_REQ_FUA, .pos = 0, .len = 8 * KiB,
			     .buf = b, .done = store_ret, .priv = &res };

	write_pattern(0, 4 * KiB, 6, 0, &w);		/* dirty */
	test_pattern(b, 8 * KiB, 0, 7);
	fault_plan(&(struct dio_fault_opts){ .gate = &gate });
	/* over the dirty block: queued behind its writeback, which the gate holds */
	cr_assert_eq(dio_submit(ctx, cvol, &d), 0);
	pthread_mutex_lock(&gate.m);
	while (!gate.waiting)
		pthread_cond_wait(&gate.cond, &gate.m);
	pthread_mutex_unlock(&gate.m);
	write_pattern(32 * KiB, 4 * KiB, 8, 0, &w);	/* its unit changes */
	pthread_mutex_lock(&gate.m);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.m);
	while (res == 1)
		dio_ctx_reap(ctx, true);
	cr_assert_eq(res, 0, "write-through: %s", strerror(-res));
	fault_plan(NULL);
	cr_assert(file_holds(0, 8 * KiB, 7));
	cr_assert(cache_holds(0, 8 * KiB, 7), "the cache reads the old bytes of a written-through block");
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(file_holds(0, 8 * KiB, 7), "writeback wrote old bytes over a write-through");
	cr_assert(file_holds(32 * KiB, 4 * KiB, 8));
	free(b);
}

Test(cache, reads_hit_after_a_miss_and_holes_take_no_memory)
{
	uint8_t *b = test_alloc(2 * MiB);

	test_pattern(b, 128 * KiB, MiB, 6);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, MiB, 128 * KiB, b, NULL), 0);
	cr_assert_eq(io(cvol, DIO_REQ_READ, 0, 0, 2 * MiB, b, NULL), 0);	/* mostly hole */
	cr_assert(test_all_zero(b, MiB));
	cr_assert(test_pattern_check(b + MiB, 128 * KiB, MiB, 6));
	cr_assert_eq(cstats().misses, 1);
	cr_assert_eq(cstats().used, 128 * KiB, "zeros were cached: %llu bytes",
		     (unsigned long long)cstats().used);
	cr_assert(cache_holds(MiB, 128 * KiB, 6));
	cr_assert_eq(cstats().hits, 1);
	free(b);
}

Test(cache, trim_and_zero_keep_the_cache_exact)
{
	struct dio_cache_writer w = { 0 };

	write_pattern(0, 256 * KiB, 7, 0, &w);			/* dirty */
	cr_assert_eq(io(cvol, DIO_REQ_ZERO, 0, 16 * KiB, 32 * KiB, NULL, &w), 0);
	cr_assert(cache_holds(16 * KiB, 32 * KiB, 0));
	cr_assert(cache_holds(0, 16 * KiB, 7));
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(cache_holds(128 * KiB, 128 * KiB, 7));	/* clean, cached */
	cr_assert_eq(io(cvol, DIO_REQ_TRIM, 0, 128 * KiB, 64 * KiB, NULL, &w), 0);
	cr_assert(cache_holds(128 * KiB, 64 * KiB, 0));
	cr_assert(cache_holds(192 * KiB, 64 * KiB, 7));
	cr_assert(file_holds(16 * KiB, 32 * KiB, 0));
	cr_assert(file_holds(48 * KiB, 80 * KiB, 7));
}

/* A failed writeback: the data stays dirty and readable, each writer hears of it once. */
static void
check_writeback_error(int err)
{
	struct dio_cache_writer w1 = { 0 }, w2 = { 0 }, reader = { 0 };
	struct dio_fault_opts f = { .op_mask = 1u << DIO_IO_WRITE, .fail_nth = 1,
				    .fail_errno = err };
	struct dio_fault_opts none = { 0 };

	write_pattern(0, 64 * KiB, 8, 0, &w1);
	write_pattern(64 * KiB, 64 * KiB, 9, 0, &w2);	/* contiguous: one merged write */
	fault_plan(&f);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &reader), 0,
		     "a client that never wrote was told of the error");
	cr_assert_eq(cstats().wb_errors, 1);
	cr_assert_eq(cstats().dirty, 128 * KiB, "failed blocks were not kept dirty");
	cr_assert(cache_holds(0, 64 * KiB, 8), "the written data was lost from the cache");
	cr_assert(cache_holds(64 * KiB, 64 * KiB, 9));
	cr_assert(file_holds(0, 128 * KiB, 0));
	fault_plan(&none);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w1), -err);
	cr_assert(file_holds(0, 64 * KiB, 8), "the retry did not write the data");
	cr_assert(file_holds(64 * KiB, 64 * KiB, 9));
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w1), 0, "reported twice");
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w2), -err, "w2 never heard of it");
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w2), 0);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &reader), 0);
}

Test(cache, writeback_eio_is_reported_once_to_each_writer)
{
	check_writeback_error(EIO);
}

Test(cache, writeback_enospc_is_reported_once_to_each_writer)
{
	check_writeback_error(ENOSPC);
}

Test(cache, a_failed_merged_write_keeps_every_unit_dirty)
{
	struct dio_cache_writer w = { 0 };
	struct dio_fault_opts f = { .op_mask = 1u << DIO_IO_WRITE, .fail_nth = 1,
				    .fail_errno = EIO };
	struct dio_fault_opts none = { 0 };

	/* blocks over three units, contiguous across the unit boundaries */
	write_pattern(60 * KiB, 136 * KiB, 10, 0, &w);
	fault_plan(&f);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), -EIO);
	cr_assert_eq(cstats().wb_ios, 1, "not merged into one write");
	cr_assert_eq(cstats().dirty, 136 * KiB);
	cr_assert(cache_holds(60 * KiB, 136 * KiB, 10));
	fault_plan(&none);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(file_holds(60 * KiB, 136 * KiB, 10));
}

Test(cache, a_write_flood_stays_within_the_bound)
{
	struct dio_cache_writer w = { 0 };

	dio_volume_put(cvol);
	cache_open(MiB);
	for (uint64_t pos = 0; pos < VOL_SIZE; pos += 96 * KiB) {
		uint64_t len = pos + 96 * KiB <= VOL_SIZE ? 96 * KiB : VOL_SIZE - pos;

		write_pattern(pos, len, 11, 0, &w);
		cr_assert_leq(cstats().used, MiB, "the cache holds %llu bytes",
			      (unsigned long long)cstats().used);
		cr_assert_leq(cstats().dirty, MiB / 2);
	}
	cr_assert_leq(cstats().peak, MiB);
	cr_assert(cache_holds(0, VOL_SIZE, 11));
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert(file_holds(0, VOL_SIZE, 11));
}

Test(cache, sub_block_writes_stay_exact)
{
	struct dio_cache_writer w = { 0 };
	uint8_t *b = test_alloc(64 * KiB), *want = test_alloc(64 * KiB);

	test_pattern(want, 64 * KiB, 0, 12);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 64 * KiB, want, NULL), 0);
	cr_assert(cache_holds(0, 64 * KiB, 12));		/* uptodate now */
	memset(b, 0x5a, 512);
	cr_assert_eq(io(cvol, DIO_REQ_WRITE, 0, 1024, 512, b, &w), 0);	/* into the cache */
	memset(want + 1024, 0x5a, 512);
	cr_assert_eq(io(cvol, DIO_REQ_WRITE, 0, 100 * KiB + 512, 512, b, &w), 0);	/* not cached */
	/* iomap's way: the one block read, then written in the cache, not through */
	cr_assert_eq(cstats().dirty, 8 * KiB, "a sub-block write was not left dirty");
	cr_assert(file_holds(100 * KiB, 4 * KiB, 0));
	cr_assert_eq(cstats().used, 128 * KiB);
	cr_assert_eq(io(cvol, DIO_REQ_READ, 0, 0, 64 * KiB, b, NULL), 0);
	cr_assert_eq(memcmp(b, want, 64 * KiB), 0);
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert_eq(io(file, DIO_REQ_READ, 0, 0, 64 * KiB, b, NULL), 0);
	cr_assert_eq(memcmp(b, want, 64 * KiB), 0);
	cr_assert_eq(io(file, DIO_REQ_READ, 0, 100 * KiB, 4 * KiB, b, NULL), 0);
	cr_assert(test_all_zero(b, 512) && b[512] == 0x5a && test_all_zero(b + 1024, 3 * KiB));
	free(b);
	free(want);
}

/* Wait (5 s at most) until the cache holds want bytes: readahead reads on a thread of its own. */
static bool
wait_used(uint64_t want)
{
	for (int i = 0; i < 500 && cstats().used < want; i++)
		usleep(10000);
	return cstats().used >= want;
}

Test(cache, a_sequential_reader_is_read_ahead)
{
	uint8_t *b = test_alloc(4 * MiB);
	struct dio_cache_stats st;

	test_pattern(b, 4 * MiB, 0, 13);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 4 * MiB, b, NULL), 0);
	/* two READs make a stream: an eighth of the 4 MiB cache is read past the second */
	cr_assert(cache_holds(0, 64 * KiB, 13));
	cr_assert(cache_holds(64 * KiB, 64 * KiB, 13));
	cr_assert(wait_used(128 * KiB + 512 * KiB), "nothing was read ahead: %llu bytes held",
		  (unsigned long long)cstats().used);
	st = cstats();
	cr_assert_eq(st.ra_bytes, 512 * KiB);
	cr_assert_eq(st.misses, 2);
	cr_assert(cache_holds(128 * KiB, 64 * KiB, 13));
	cr_assert_eq(cstats().ra_hits, 1);
	cr_assert_eq(cstats().misses, 2, "a READ read ahead went to the file");
	/* the rest of the stream, every byte checked */
	for (uint64_t pos = 192 * KiB; pos < 4 * MiB; pos += 64 * KiB)
		cr_assert(cache_holds(pos, 64 * KiB, 13), "at %llu", (unsigned long long)pos);
	st = cstats();
	cr_assert_gt(st.ra_hits, 1);
	cr_assert_leq(st.used, 4 * MiB);
	cr_assert_eq(st.ra_wasted, 0);
	free(b);
}

Test(cache, a_random_reader_is_not_read_ahead)
{
	static const uint64_t at[] = { 3, 1, 6, 0, 5, 2, 7, 4 };
	uint8_t *b = test_alloc(8 * MiB);

	test_pattern(b, 8 * MiB, 0, 14);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 8 * MiB, b, NULL), 0);
	for (unsigned int i = 0; i < 8; i++)
		cr_assert(cache_holds(at[i] * MiB + 4 * KiB * i, 64 * KiB, 14));
	usleep(100000);
	cr_assert_eq(cstats().ra_bytes, 0);
	/* the first READ lies in one unit, the others across two */
	cr_assert_eq(cstats().used, 15 * 64 * KiB, "more than the READs was kept");
	free(b);
}

Test(cache, a_cache_request_fills_the_cache)
{
	uint8_t *b = test_alloc(512 * KiB);

	test_pattern(b, 512 * KiB, MiB, 15);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, MiB, 512 * KiB, b, NULL), 0);
	cr_assert_eq(io(cvol, DIO_REQ_CACHE, 0, MiB, 512 * KiB, NULL, NULL), 0);
	cr_assert_eq(cstats().used, 512 * KiB, "CACHE replied before the range was read");
	cr_assert_eq(cstats().prefetch_bytes, 512 * KiB);
	cr_assert(cache_holds(MiB, 512 * KiB, 15));
	cr_assert_eq(cstats().misses, 0);
	cr_assert_eq(cstats().hits, 1);
	/* cached: nothing more to read */
	cr_assert_eq(io(cvol, DIO_REQ_CACHE, 0, MiB, 512 * KiB, NULL, NULL), 0);
	cr_assert_eq(cstats().prefetch_bytes, 512 * KiB);
	free(b);
}

/*
 * A READ that misses reads the file; while its completion is held, the
 * same block is written whole through the cache, written back, and its
 * unit evicted. The READ may return the old data (it overlapped the
 * write), but it must not fill the cache with it: the next READ returns
 * what was written.
 */
Test(cache, a_read_racing_a_written_back_evicted_block_does_not_fill)
{
	struct dio_fault_opts slow = { .op_mask = 1u << DIO_IO_READ, .delay_reaps = 100000 };
	struct dio_engine *fe;
	struct dio_ctx *rctx = test_ctx_create(&slow, &fe);
	uint8_t *b = test_alloc(4 * KiB), *d = test_alloc(64 * KiB);
	int done = 1;
	struct dio_req r = { .op = DIO_REQ_READ, .pos = 0, .len = 4 * KiB, .buf = b,
			     .done = store_ret, .priv = &done };

	dio_volume_put(cvol);
	cache_open(1 * MiB);
	/* The old block, and 2 MiB of other data that reads fill the cache with. */
	for (uint64_t p = 0; p < 3 * MiB; p += 64 * KiB) {
		if (p && p < 1 * MiB)
			continue;
		test_pattern(d, 64 * KiB, p, 71);
		cr_assert_eq(io(file, DIO_REQ_WRITE, 0, p, 64 * KiB, d, NULL), 0);
	}
	cr_assert_eq(dio_submit(rctx, cvol, &r), 0);
	for (int i = 0; i < 10; i++)
		dio_ctx_reap(rctx, false);	/* the file's read is done, its completion held */
	cr_assert_eq(done, 1, "the READ completed while held");
	write_pattern(0, 4 * KiB, 72, 0, NULL);
	cr_assert_eq(dio_cache_sync(cvol), 0);
	for (uint64_t p = 1 * MiB; p < 3 * MiB; p += 64 * KiB)
		cr_assert(cache_holds(p, 64 * KiB, 71));	/* evicts unit 0 */
	dio_engine_fault_set(fe, &(struct dio_fault_opts){ 0 });
	for (int i = 0; i < 200000 && done == 1; i++)
		dio_ctx_reap(rctx, false);
	cr_assert_eq(done, 0, "the held READ: %d", done);
	cr_assert(cache_holds(0, 4 * KiB, 72),
		  "a READ from before the write filled the cache with the old block");
	dio_ctx_destroy(rctx);
	free(b);
	free(d);
}

static void
flush_done(struct dio_req *d, int ret)
{
	int *left = d->priv;

	cr_assert_eq(ret, 0, "a FLUSH failed: %s", strerror(-ret));
	--*left;
}

/*
 * FLUSHes that arrive while one writes back are answered by the next pass
 * and one lower flush together, not a pass and a flush each. Timing decides
 * how many arrive in time, so up to three rounds; one pass per FLUSH in
 * every round is the behaviour this test is against.
 */
Test(cache, flushes_queued_during_a_writeback_share_one_pass)
{
	enum { NF = 4 };
	struct dio_req f[NF];
	uint64_t fsyncs = NF;

	for (int round = 0; round < 3 && fsyncs > 2; round++) {
		struct dio_fault_stats st;
		int left = NF;

		/* 192 scattered dirty blocks (below the kick at half the dirty limit) */
		for (uint64_t p = 0; p < 192 * 8 * KiB; p += 8 * KiB)
			write_pattern(p, 4 * KiB, 80 + round, 0, NULL);
		fault_plan(&(struct dio_fault_opts){ 0 });
		for (int i = 0; i < NF; i++) {
			f[i] = (struct dio_req){ .op = DIO_REQ_FLUSH, .done = flush_done,
						 .priv = &left };
			cr_assert_eq(dio_submit(ctx, cvol, &f[i]), 0);
		}
		while (left)
			dio_ctx_reap(ctx, true);
		dio_engine_fault_stats(fault, &st);
		fsyncs = st.ops[DIO_IO_FSYNC];
		cr_assert(fsyncs >= 1 && fsyncs <= NF, "%llu lower flushes",
			  (unsigned long long)fsyncs);
		cr_assert_eq(st.ops[DIO_IO_WRITE], 192, "%llu writes written back",
			     (unsigned long long)st.ops[DIO_IO_WRITE]);
		cr_assert_eq(cstats().dirty, 0);
		for (uint64_t p = 0; p < 192 * 8 * KiB; p += 8 * KiB)
			cr_assert(file_holds(p, 4 * KiB, 80 + round), "block at %llu not written back",
				  (unsigned long long)p);
	}
	cr_assert_leq(fsyncs, 2, "every FLUSH took a pass and a lower flush of its own");
}

/*
 * A READ that allows it (DIO_REQ_LEND, as the daemon's do) of [pos,
 * pos+len) through the cache: the caller's pool buffer goes in, and what
 * holds the data comes back in *r (its dbuf is the caller's to put).
 */
static void
lend_read(struct dio_req *r, uint64_t pos, uint64_t len)
{
	struct dio_buf *mine = dio_buf_get(dio_ctx_pool(ctx), len);

	cr_assert_not_null(mine);
	*r = (struct dio_req){ .op = DIO_REQ_READ, .flags = DIO_REQ_LEND, .pos = pos, .len = len,
			       .buf = mine->data, .dbuf = mine };
	cr_assert_eq(dio_submit_sync(ctx, cvol, r), 0);
}

/* Whether r was answered with the cache's memory rather than the caller's buffer. */
static bool
lent(const struct dio_req *r)
{
	return r->dbuf->release != NULL && (uint8_t *)r->buf >= (uint8_t *)r->dbuf->data &&
	       (uint8_t *)r->buf + r->len <= (uint8_t *)r->dbuf->data + r->dbuf->size;
}

Test(cache, a_hit_in_one_unit_is_lent_and_a_write_goes_to_a_copy)
{
	struct dio_cache_writer w = { 0 };
	uint8_t *b = test_alloc(128 * KiB);
	struct dio_req r, r2;

	test_pattern(b, 128 * KiB, 0, 20);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 128 * KiB, b, NULL), 0);
	cr_assert(cache_holds(0, 128 * KiB, 20));		/* uptodate now */
	lend_read(&r, 4 * KiB + 512, 8 * KiB);
	cr_assert(lent(&r), "a hit within one unit was copied");
	cr_assert_eq(cstats().zc_hits, 1);
	cr_assert(test_pattern_check(r.buf, 8 * KiB, 4 * KiB + 512, 20));
	/* across two units, or without LEND: copied into the caller's buffer */
	lend_read(&r2, 60 * KiB, 8 * KiB);
	cr_assert(!lent(&r2) && r2.buf == r2.dbuf->data);
	cr_assert(test_pattern_check(r2.buf, 8 * KiB, 60 * KiB, 20));
	dio_buf_put(r2.dbuf);
	cr_assert_eq(cstats().zc_hits, 1);
	/* a writeback WRITE over the lent unit while the reply holds it */
	write_pattern(0, 64 * KiB, 21, 0, &w);
	cr_assert_eq(cstats().stable_copies, 1, "the lent unit was written in place");
	cr_assert_eq(cstats().lent, 64 * KiB);
	cr_assert(test_pattern_check(r.buf, 8 * KiB, 4 * KiB + 512, 20),
		  "the bytes a reply holds changed under it");
	cr_assert(cache_holds(0, 64 * KiB, 21), "a later READ did not see the write");
	/* the new data is lent too, and a sub-block write into it is a second copy */
	lend_read(&r2, 0, 64 * KiB);
	cr_assert(lent(&r2) && r2.dbuf != r.dbuf);
	cr_assert(test_pattern_check(r2.buf, 64 * KiB, 0, 21));
	memset(b, 0x77, 512);
	cr_assert_eq(io(cvol, DIO_REQ_WRITE, 0, 1024, 512, b, &w), 0);
	cr_assert_eq(cstats().stable_copies, 2);
	cr_assert(test_pattern_check(r2.buf, 64 * KiB, 0, 21));
	cr_assert(test_pattern_check(r.buf, 8 * KiB, 4 * KiB + 512, 20));
	dio_buf_put(r.dbuf);
	dio_buf_put(r2.dbuf);
	cr_assert_eq(cstats().lent, 0, "a put reference did not give its memory back");
	cr_assert_eq(io(cvol, DIO_REQ_FLUSH, 0, 0, 0, NULL, &w), 0);
	cr_assert_eq(io(file, DIO_REQ_READ, 0, 0, 4 * KiB, b, NULL), 0);
	cr_assert(b[1024] == 0x77 && b[1535] == 0x77 && test_pattern_check(b + 1536, 512, 1536, 21));
	free(b);
}

Test(cache, a_lent_unit_evicted_keeps_its_bytes_until_the_reply_puts_it)
{
	uint8_t *b = test_alloc(3 * MiB);
	struct dio_req r;

	dio_volume_put(cvol);
	cache_open(MiB);	/* 16 units */
	test_pattern(b, 3 * MiB, 0, 22);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 3 * MiB, b, NULL), 0);
	cr_assert(cache_holds(0, 64 * KiB, 22));
	lend_read(&r, 0, 64 * KiB);
	cr_assert(lent(&r));
	/* LRU eviction passes over a lent unit (its memory would not come back) */
	for (uint64_t p = MiB; p < 3 * MiB; p += 64 * KiB)
		cr_assert(cache_holds(p, 64 * KiB, 22));
	cr_assert_eq(cstats().lent, 0, "a lent unit was evicted before unlent ones");
	/* a TRIM drops unit 0; then 2 MiB of other units reuse every free slot */
	cr_assert_eq(io(cvol, DIO_REQ_TRIM, 0, 0, 64 * KiB, NULL, NULL), 0);
	cr_assert_eq(cstats().lent, 64 * KiB, "the dropped unit's memory was not kept for the reply: %llu",
		     (unsigned long long)cstats().lent);
	for (uint64_t p = MiB; p < 3 * MiB; p += 64 * KiB)
		cr_assert(cache_holds(p, 64 * KiB, 22));
	cr_assert_leq(cstats().used + cstats().lent, MiB, "no unit was evicted to make up for it");
	cr_assert(test_pattern_check(r.buf, 64 * KiB, 0, 22),
		  "a dropped unit's memory was reused while a reply held it");
	dio_buf_put(r.dbuf);
	cr_assert_eq(cstats().lent, 0);
	cr_assert(cache_holds(0, 64 * KiB, 0));
	free(b);
}

/* Unit 0 of the file holds seed, [0, len) of it is in the cache, and *r holds it lent. */
static void
lend_unit0(struct dio_req *r, uint32_t seed, uint64_t len)
{
	uint8_t *b = test_alloc(64 * KiB);

	test_pattern(b, 64 * KiB, 0, seed);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 64 * KiB, b, NULL), 0);
	free(b);
	cr_assert(cache_holds(0, len, seed));
	lend_read(r, 0, len);
	cr_assert(lent(r));
}

Test(cache, a_reply_may_hold_a_unit_past_the_cache_s_release)
{
	struct dio_req r;

	lend_unit0(&r, 23, 64 * KiB);
	dio_volume_put(cvol);	/* released: the reply's buffer stays, and c with it */
	cvol = NULL;
	cr_assert(test_pattern_check(r.buf, 64 * KiB, 0, 23));
	dio_buf_put(r.dbuf);	/* frees the rest: ASan/LSan see a leak or a use after free */
	cache_open(4 * MiB);	/* for teardown */
}

/*
 * Blocks not uptodate are filled in place even while a reply holds the
 * unit (no reply sends them); blocks a reply may send that a write drops
 * move the unit to a copy first, so refilling them cannot reach the reply.
 */
Test(cache, a_fill_beside_a_lent_range_copies_nothing_a_drop_inside_it_does)
{
	struct dio_req r;

	lend_unit0(&r, 24, 16 * KiB);
	cr_assert(cache_holds(32 * KiB, 16 * KiB, 24));	/* a miss filling the same unit */
	cr_assert_eq(cstats().stable_copies, 0, "a fill of blocks no reply sends copied the unit");
	/* written through (FUA): block 1, which the reply sends, is dropped, then read anew */
	write_pattern(4 * KiB, 4 * KiB, 25, DIO_REQ_FUA, NULL);
	cr_assert_eq(cstats().stable_copies, 1, "a block a reply sends was dropped in place");
	cr_assert(cache_holds(4 * KiB, 4 * KiB, 25));	/* refilled */
	cr_assert(test_pattern_check(r.buf, 16 * KiB, 0, 24),
		  "a refill reached the bytes a reply holds");
	dio_buf_put(r.dbuf);
	cr_assert(cache_holds(0, 4 * KiB, 24) && cache_holds(8 * KiB, 8 * KiB, 24));
}

/*
 * A write that makes a unit for its range must not evict another unit of
 * its range: here the only clean unit that no reply holds is the one whose
 * block the write ends in part of, checked uptodate before. Evicting it
 * gave the block a recycled buffer, and the bytes past the write read
 * another offset's data (and were written back).
 */
Test(cache, a_write_keeps_the_unit_of_its_partial_block)
{
	const uint64_t U = 64 * KiB, L = 16 * U;
	uint8_t *b = test_alloc(2 * MiB);
	struct dio_req r;

	dio_volume_put(cvol);
	cache_open(1 * MiB);	/* 16 units */
	test_pattern(b, 2 * MiB, 0, 30);
	cr_assert_eq(io(file, DIO_REQ_WRITE, 0, 0, 2 * MiB, b, NULL), 0);
	for (uint64_t i = 0; i < 14; i++)	/* 14 units dirty: never evicted */
		write_pattern(i * U, 4 * KiB, 31, 0, NULL);
	cr_assert(cache_holds(14 * U, U, 30));
	lend_read(&r, 14 * U, 4 * KiB);	/* unit 14 held by a reply */
	cr_assert(lent(&r));
	cr_assert(cache_holds(L, 4 * KiB, 30));	/* unit 16: its first block, clean */
	cr_assert_eq(cstats().used, 1 * MiB);
	/* all of unit 15 (not cached) and the first 512 bytes of unit 16's block */
	write_pattern(15 * U, U + 512, 32, 0, NULL);
	cr_assert_eq(io(cvol, DIO_REQ_READ, 0, L, 4 * KiB, b, NULL), 0);
	cr_assert(test_pattern_check(b, 512, L, 32), "the write's own bytes");
	cr_assert(test_pattern_check(b + 512, 4 * KiB - 512, L + 512, 30),
		  "the block's bytes past the write are not the volume's");
	cr_assert(cache_holds(15 * U, U, 32));
	dio_buf_put(r.dbuf);
	cr_assert_eq(dio_cache_sync(cvol), 0);
	cr_assert_eq(io(file, DIO_REQ_READ, 0, L, 4 * KiB, b, NULL), 0);
	cr_assert(test_pattern_check(b + 512, 4 * KiB - 512, L + 512, 30),
		  "written back: the block's bytes past the write");
	free(b);
}
