/* SPDX-License-Identifier: MIT */
/*
 * Pool volumes through the dio engine: map_begin/map_end as POOL.md's
 * request path says (hole writes write only what they cover, unwritten
 * sub-blocks read as zeros with no device I/O, written ones are MAPPED in
 * place), FLUSH and FUA commit (R1, R2), TRIM/ZERO free chunks not reused
 * before the freeing record is durable (R3), ENOSPC only for writes that
 * need a chunk, the allocator's per-volume cursors, and what survives a
 * crash (the pool dropped without closing).
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
#define CS (64 * KiB)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static struct dio_engine *fault;
static uint8_t *wbuf, *rbuf;

static void
setup_size(uint64_t size)
{
	struct dio_tpool_create_opts co = { .chunk_size = CS, .journal_blocks = 32 };
	struct dio_fault_opts fo = { 0 };

	pool = test_pool_make(&path, size, &co, &opts, 4 * MiB);
	cr_assert_eq(dio_tpool_volume_create(pool, "b", 4 * MiB), 0);
	ctx = test_ctx_create(&fo, &fault);
	wbuf = test_alloc(1 * MiB);
	rbuf = test_alloc(1 * MiB);
}

static void
setup(void)
{
	setup_size(16 * MiB);
}

static void
setup_small(void)
{
	setup_size(8 * MiB);
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

static struct dio_fault_stats
stats(void)
{
	struct dio_fault_stats st;

	dio_engine_fault_stats(fault, &st);
	return st;
}

/* A crash: drop the pool and its volumes without writing anything, reopen. */
static void
crash_reopen(struct dio_volume **vols, int n)
{
	struct dio_tpool *p = pool;

	struct dio_fault_opts fo = { 0 };

	p->readonly = true;	/* nothing written on the way out */
	for (int i = 0; i < n; i++)
		dio_volume_put(vols[i]);
	dio_tpool_close(p);
	/* io_uring's fixed-file slot keeps the pool's file (and its lock) open. */
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(&fo, &fault);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
}

Test(pool_map, hole_write_writes_only_what_it_covers, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");
	struct dio_fault_stats st0 = stats(), st1;

	cr_assert_eq(v->blksize, CS / 32 > v->lbs ? CS / 32 : v->lbs);
	test_pattern(wbuf, 4 * KiB, 8 * KiB, 1);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 8 * KiB, 4 * KiB, wbuf), 0);
	st1 = stats();
	cr_assert_eq(st1.bytes[DIO_IO_WRITE] - st0.bytes[DIO_IO_WRITE], 4 * KiB,
		     "a first 4 KiB write into a hole writes 4 KiB, not the chunk");
	/* The rest of the chunk reads as zeros without device I/O. */
	st0 = stats();
	memset(rbuf, 0xaa, 64 * KiB);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 64 * KiB, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 8 * KiB));
	cr_assert(test_pattern_check(rbuf + 8 * KiB, 4 * KiB, 8 * KiB, 1));
	cr_assert(test_all_zero(rbuf + 12 * KiB, 52 * KiB));
	st1 = stats();
	cr_assert_eq(st1.bytes[DIO_IO_READ] - st0.bytes[DIO_IO_READ], 4 * KiB);
	dio_volume_put(v);
}

Test(pool_map, partial_sub_block_is_zero_padded, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a");
	uint32_t ss = v->blksize, lbs = v->lbs;

	if (ss == lbs)
		cr_skip_test("sub-block equals the logical block size here");
	/* Stale bytes on the device where the chunk will land. */
	memset(wbuf, 0x5a, lbs);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 0, lbs, wbuf), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, ss, rbuf), 0);
	cr_assert_eq(rbuf[0], 0x5a);
	cr_assert(test_all_zero(rbuf + lbs, ss - lbs), "padding not zeroed");
	dio_volume_put(v);
}

Test(pool_map, flush_commits_and_survives_crash, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a"), *w;

	test_pattern(wbuf, 128 * KiB, 0, 2);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 0, 128 * KiB, wbuf), 0);
	cr_assert_gt(pool->npend, 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	cr_assert_eq(pool->npend, 0, "FLUSH left records uncommitted");
	/* Not flushed: may be lost, never garbage. */
	test_pattern(wbuf, 64 * KiB, 1 * MiB, 3);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 1 * MiB, 64 * KiB, wbuf), 0);
	crash_reopen(&v, 1);
	w = vopen("a");
	cr_assert_eq(test_io(ctx, w, DIO_REQ_READ, 0, 0, 128 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 128 * KiB, 0, 2), "flushed data lost");
	cr_assert_eq(test_io(ctx, w, DIO_REQ_READ, 0, 1 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 64 * KiB), "unflushed mapping without its commit");
	dio_volume_put(w);
}

Test(pool_map, fua_write_into_hole_is_durable_at_reply, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a"), *w;
	struct dio_fault_stats st0, st1;

	test_pattern(wbuf, 8 * KiB, 256 * KiB, 4);
	st0 = stats();
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 256 * KiB, 8 * KiB, wbuf), 0);
	st1 = stats();
	cr_assert_eq(pool->npend, 0);
	/* Two device round trips (POOL.md): the data written through, then the
	 * journal with FUA; no flush of the whole device in between. */
	cr_assert_eq(st1.dsync_writes - st0.dsync_writes, 1, "the data was not written through");
	cr_assert_eq(st1.ops[DIO_IO_FSYNC], st0.ops[DIO_IO_FSYNC],
		     "a device flush between the data and the commit");
	crash_reopen(&v, 1);
	w = vopen("a");
	cr_assert_eq(test_io(ctx, w, DIO_REQ_READ, 0, 256 * KiB, 8 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 8 * KiB, 256 * KiB, 4));
	dio_volume_put(w);
}

/* dm-thin's bug: a FUA overwrite of a freshly provisioned block acked before its mapping. */
Test(pool_map, fua_overwrite_of_uncommitted_chunk_commits, .init = setup, .fini = teardown)
{
	struct dio_volume *v = vopen("a"), *w;
	struct dio_fault_stats st0, st1;

	test_pattern(wbuf, CS, 0, 5);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 0, CS, wbuf), 0);	/* not committed */
	test_pattern(wbuf, CS, 0, 6);
	st0 = stats();
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 0, CS, wbuf), 0);
	st1 = stats();
	cr_assert_eq(st1.dsync_writes, st0.dsync_writes, "written through: mapping not durable");
	cr_assert_eq(pool->npend, 0, "FUA replied before the mapping was committed");
	crash_reopen(&v, 1);
	w = vopen("a");
	cr_assert_eq(test_io(ctx, w, DIO_REQ_READ, 0, 0, CS, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, CS, 0, 6));
	/* Once durable, a FUA overwrite is a plain write-through. */
	st0 = stats();
	cr_assert_eq(test_io(ctx, w, DIO_REQ_WRITE, DIO_REQ_FUA, 0, 4 * KiB, wbuf), 0);
	st1 = stats();
	cr_assert_eq(st1.dsync_writes - st0.dsync_writes, 1);
	cr_assert_eq(st1.ops[DIO_IO_FSYNC], st0.ops[DIO_IO_FSYNC]);
	dio_volume_put(w);
}

Test(pool_map, trim_frees_only_after_durable, .init = setup, .fini = teardown)
{
	struct dio_volume *a = vopen("a"), *b = vopen("b");
	struct dio_tpool_info i0, i1;
	uint32_t c;

	test_pattern(wbuf, CS, 0, 7);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, DIO_REQ_FUA, 0, CS, wbuf), 0);
	c = tp_ment(tp_vol_by_name(pool, "a"), 0)->p1 - 1;
	dio_tpool_get_info(pool, &i0);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_TRIM, 0, 0, CS, NULL), 0);
	cr_assert_eq(pool->cstate[c], TP_C_PENDING, "R3: freed chunk reusable before durable");
	cr_assert_eq(test_io(ctx, a, DIO_REQ_READ, 0, 0, CS, rbuf), 0);
	cr_assert(test_all_zero(rbuf, CS));
	cr_assert_eq(test_io(ctx, a, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	cr_assert_eq(pool->cstate[c], TP_C_FREE);
	dio_tpool_get_info(pool, &i1);
	cr_assert_eq(i1.free_chunks, i0.free_chunks + 1);
	/* Reused by b: b sees zeros, never a's bytes. */
	cr_assert_eq(test_io(ctx, b, DIO_REQ_WRITE, 0, 4 * KiB, 4 * KiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, b, DIO_REQ_READ, 0, 0, CS, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 4 * KiB));
	cr_assert(test_all_zero(rbuf + 8 * KiB, CS - 8 * KiB));
	dio_volume_put(a);
	dio_volume_put(b);
}

Test(pool_map, write_zeroes_reads_zero_and_frees, .init = setup, .fini = teardown)
{
	struct dio_volume *a = vopen("a");

	test_pattern(wbuf, 2 * CS, 0, 8);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, 0, 2 * CS, wbuf), 0);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_ZERO, DIO_REQ_FUA, 0, CS + 4 * KiB, NULL), 0);
	cr_assert_eq(pool->npend, 0);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_READ, 0, 0, 2 * CS, rbuf), 0);
	cr_assert(test_all_zero(rbuf, CS + 4 * KiB));
	cr_assert(test_pattern_check(rbuf + CS + 4 * KiB, CS - 4 * KiB, CS + 4 * KiB, 8));
	cr_assert_null(tp_ment(tp_vol_by_name(pool, "a"), 0)->p1 ? (void *)1 : NULL);
	dio_volume_put(a);
}

Test(pool_map, enospc_only_for_new_chunks, .init = setup_small, .fini = teardown)
{
	struct dio_volume *a = vopen("a"), *b = vopen("b");
	struct dio_tpool_info info;
	uint64_t n = 0;

	dio_tpool_get_info(pool, &info);
	cr_assert_lt(info.nr_chunks, 2 * 4 * MiB / CS);
	test_pattern(wbuf, 4 * KiB, 0, 9);
	/* Fill the pool from a and b until a write fails. */
	for (uint64_t off = 0; off < 4 * MiB && n < info.nr_chunks; off += CS, n++)
		cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, off, 4 * KiB, wbuf), 0);
	for (uint64_t off = 0; n < info.nr_chunks; off += CS, n++)
		cr_assert_eq(test_io(ctx, b, DIO_REQ_WRITE, 0, off, 4 * KiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, b, DIO_REQ_WRITE, 0, 4 * MiB - CS, 4 * KiB, wbuf), -ENOSPC);
	/* Written and unwritten sub-blocks of mapped chunks still take writes. */
	cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, 0, 4 * KiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, 32 * KiB, 4 * KiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, a, DIO_REQ_READ, 0, 0, 4 * KiB, rbuf), 0);
	dio_volume_put(a);
	dio_volume_put(b);
}

Test(pool_map, cursors_keep_volumes_apart, .init = setup, .fini = teardown)
{
	struct dio_volume *a = vopen("a"), *b = vopen("b");
	struct tp_vol *ta = tp_vol_by_name(pool, "a"), *tb = tp_vol_by_name(pool, "b");

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, (uint64_t)i * CS, 4 * KiB, wbuf), 0);
		cr_assert_eq(test_io(ctx, b, DIO_REQ_WRITE, 0, (uint64_t)i * CS, 4 * KiB, wbuf), 0);
	}
	for (int i = 1; i < 4; i++) {
		cr_assert_eq(tp_ment(ta, (uint64_t)i)->p1 % pool->sb.nr_chunks,
			     tp_ment(ta, (uint64_t)i - 1)->p1 % pool->sb.nr_chunks + 1 -
				     (tp_ment(ta, (uint64_t)i - 1)->p1 == pool->sb.nr_chunks ?
					      pool->sb.nr_chunks : 0),
			     "a's chunks are consecutive");
		cr_assert_eq(tp_ment(tb, (uint64_t)i)->p1,
			     tp_ment(tb, (uint64_t)i - 1)->p1 % pool->sb.nr_chunks + 1);
	}
	dio_volume_put(a);
	dio_volume_put(b);
}

Test(pool_map, block_status_holes_and_zero, .init = setup, .fini = teardown)
{
	struct dio_volume *a = vopen("a");
	struct dio_seg segs[8];
	struct dio_req req = { .op = DIO_REQ_EXTENTS, .pos = 0, .len = 4 * CS, .segs = segs,
			       .max_segs = 8 };

	cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, CS, 4 * KiB, wbuf), 0);
	cr_assert_eq(dio_submit_sync(ctx, a, &req), 0);
	cr_assert_eq(req.nsegs, 4);
	cr_assert_eq(segs[0].type, DIO_SEG_HOLE);
	cr_assert_eq(segs[0].len, CS);
	cr_assert_eq(segs[1].type, DIO_SEG_DATA);
	cr_assert_eq(segs[1].len, 4 * KiB);
	cr_assert_eq(segs[2].type, DIO_SEG_ZERO, "allocated, unwritten: not a hole");
	cr_assert_eq(segs[3].type, DIO_SEG_HOLE);
	dio_volume_put(a);
}

Test(pool_map, delete_refuses_open_volume, .init = setup, .fini = teardown)
{
	struct dio_volume *a = vopen("a"), *a2 = vopen("a");

	cr_assert_eq(a, a2, "one dio_volume per pool volume");
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), -EBUSY);
	dio_volume_put(a2);
	dio_volume_put(a);
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
}
