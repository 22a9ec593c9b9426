/* SPDX-License-Identifier: MIT */
/*
 * The metadata reserve (R5) with shared maps, counted exactly
 * (tp_meta_fits): a live snapshot of half a pool lets its origin diverge
 * fully, every leaf copied and every chunk copied, where the bound of the
 * worst case (a REF per three references) refused; and copies and
 * snapshots that would really outgrow the reserve (chunks with three
 * references and more, a REF each) still fail with ENOSPC, at the write
 * whose records would not fit and not before, and checkpoints go on.
 * Both end with a pool that checks clean and reopens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define CS (64 * KiB)		/* chunk: 16 sub-blocks (of the file's 4 KiB blocks) */
#define WS (4 * KiB)		/* written per chunk: one sub-block, a MAP each, no RUN */

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static uint8_t *buf;

/* 1 GiB (sparse) of 64 KiB chunks: about 16,000, so about as many records a checkpoint. */
static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CS, .journal_blocks = 64 };

	pool = test_pool_make(&path, 1024 * MiB, &co, &opts, 0);
	cr_assert_eq(pool->sub_size, WS);	/* one of 16: not a full chunk */
	ctx = test_ctx_create(NULL, NULL);
	buf = test_alloc(WS);
}

static void
teardown(void)
{
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(buf);
}

/* Close the pool, check it clean (no problem, no leak), open it again. */
static void
check_reopen(void)
{
	dio_tpool_close(pool);
	pool = NULL;
	dio_ctx_destroy(ctx);	/* io_uring's fixed files hold the pool's lock */
	ctx = test_ctx_create(NULL, NULL);
	test_pool_check_clean(path, &opts);
	pool = test_pool_open(path, &opts);
}

/* WS bytes of pattern seed at chunk c of v (0 or -errno). */
static int
wr(struct dio_volume *v, uint64_t c, uint32_t seed)
{
	test_pattern(buf, WS, c * CS, seed);
	return test_io(ctx, v, DIO_REQ_WRITE, 0, c * CS, WS, buf);
}

/* Whether chunk c of v reads pattern seed (WS bytes). */
static bool
reads_v(struct dio_volume *v, uint64_t c, uint32_t seed)
{
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, c * CS, WS, buf), 0);
	return test_pattern_check(buf, WS, c * CS, seed);
}

/* The block status (DIO_SEG_*) of chunk c of v. */
static uint32_t
seg_of(struct dio_volume *v, uint64_t c)
{
	struct dio_seg segs[4];
	struct dio_req req = { .op = DIO_REQ_EXTENTS, .pos = c * CS, .len = CS, .segs = segs,
			       .max_segs = 4 };

	cr_assert_eq(dio_submit_sync(ctx, v, &req), 0);
	cr_assert_geq(req.nsegs, 1);
	return segs[0].type;
}

/* The same of volume name. */
static bool
reads(const char *name, uint64_t c, uint32_t seed)
{
	struct dio_volume *v;
	bool ok;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0, "open %s", name);
	ok = reads_v(v, c, seed);
	dio_volume_put(v);
	return ok;
}

/*
 * The test's own count of what a checkpoint would write, VOLs aside, as
 * ckpt_records writes it with every entry a MAP (lock held): a MAP per
 * entry of a leaf a volume has alone; a LEAF and its MAPs once per shared
 * leaf and an LREF per volume pointing to it; a REF per chunk with 3
 * references or more.
 */
static uint64_t
records(void)
{
	struct tp_leaf *seen[256];
	uint64_t n = 0;
	size_t nseen = 0;

	for (uint32_t i = 0; i < pool->nvols; i++) {
		struct tp_vol *v = pool->vols[i];

		for (uint64_t k = 0; v && k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++) {
			struct tp_leaf *lf = v->leaf[k];
			size_t j;

			if (!lf || !lf->n)
				continue;
			if (lf->refs == 1) {
				n += lf->n;
				continue;
			}
			n++;
			for (j = 0; j < nseen && seen[j] != lf; j++)
				;
			if (j == nseen) {
				cr_assert_lt(nseen, 256);
				seen[nseen++] = lf;
				n += 1 + lf->n;
			}
		}
	}
	for (uint64_t c = 0; c < pool->sb.nr_chunks; c++)
		n += pool->space[c] >= 3;
	return n;
}

/* Within the reserve: what a checkpoint would write fits it (lock taken). */
static void
assert_within(const char *when)
{
	uint64_t n;

	pthread_mutex_lock(&pool->lock);
	n = records();
	pthread_mutex_unlock(&pool->lock);
	cr_assert_leq(n, pool->sb.nr_chunks, "%s: %llu records for a reserve of %llu", when,
		      (unsigned long long)n, (unsigned long long)pool->sb.nr_chunks);
}

/*
 * A live snapshot "s" of "o", a volume of half the pool's chunks (4 KiB
 * written in each: MAP records), then every chunk of o overwritten: every
 * leaf of o copied, every chunk copied, every chunk of the pool used.
 * Counted exactly it fits, to the last record of the reserve (a MAP per
 * chunk of s and of o, no chunk with three references; the last copies
 * of leaves both share exactly n - 3 more), where the bound refused (a
 * REF per three references) at the copy of o's fourth leaf of 16.
 * Flushes and checkpoints work throughout and after, both volumes read
 * what they should, and the pool checks clean and reopens.
 */
Test(pool_reserve, a_live_snapshot_of_half_the_pool_diverges_fully, .init = setup,
     .fini = teardown)
{
	uint64_t nr = pool->sb.nr_chunks, x = nr / 2;
	struct dio_volume *o, *s;

	cr_assert_eq(dio_tpool_volume_create(pool, "o", x * CS), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	for (uint64_t c = 0; c < x; c++)
		cr_assert_eq(wr(o, c, 1), 0);
	dio_volume_put(o);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	for (uint64_t c = 0; c < x; c++) {
		int ret = wr(o, c, 2);

		cr_assert_eq(ret, 0, "overwrite of chunk %llu of %llu (leaf %llu): %d",
			     (unsigned long long)c, (unsigned long long)x,
			     (unsigned long long)(c / TP_LEAF), ret);
		if (c % 1000 == 999)
			cr_assert_eq(test_io(ctx, o, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
		if (c % 3000 == 2999) {
			cr_assert_eq(dio_tpool_checkpoint(pool), 0, "checkpoint at chunk %llu",
				     (unsigned long long)c);
			assert_within("diverging");
		}
	}
	cr_assert_eq(test_io(ctx, o, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	pthread_mutex_lock(&pool->lock);
	cr_log_info("%llu chunks of %llu: %llu references, %llu leaves, %llu records counted",
		    (unsigned long long)x, (unsigned long long)nr,
		    (unsigned long long)pool->nrefs, (unsigned long long)pool->nleaves,
		    (unsigned long long)records());
	/* the premise: the bound of the worst case would refuse this state */
	cr_assert_not(tp_meta_room(pool, 0, 0));
	pthread_mutex_unlock(&pool->lock);
	assert_within("diverged");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(dio_tpool_checkpoint(pool), 0, "checkpoint %d", i);
	cr_assert_eq(dio_tpool_volume_open(pool, "s", &s), 0);
	for (uint64_t c = 0; c < x; c++) {
		cr_assert(reads_v(o, c, 2), "o at chunk %llu", (unsigned long long)c);
		cr_assert(reads_v(s, c, 1), "s at chunk %llu", (unsigned long long)c);
	}
	dio_volume_put(o);
	dio_volume_put(s);
	check_reopen();
	for (uint64_t c = 0; c < x; c += 97) {
		cr_assert(reads("o", c, 2), "o at chunk %llu after reopen", (unsigned long long)c);
		cr_assert(reads("s", c, 1), "s at chunk %llu after reopen", (unsigned long long)c);
	}
	cr_assert_eq(dio_tpool_checkpoint(pool), 0);
}

/* The least sharing v's leaves once more adds (lock held): as tp_share_grows. */
static uint64_t
share_adds(const struct tp_vol *v)
{
	uint64_t n = 0;

	for (uint64_t k = 0; k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++)
		if (v->leaf[k] && v->leaf[k]->n)
			n += v->leaf[k]->refs == 1 ? 3 : 1;
	return n;
}

/*
 * The least copying v's leaf k adds (lock held), its two holders live:
 * its n MAPs less the shared leaf's LEAF and two LREFs, a REF per chunk
 * going from 2 references to 3.
 */
static uint64_t
copy_adds(const struct tp_vol *v, uint64_t k)
{
	const struct tp_leaf *lf = v->leaf[k];
	uint64_t n = lf->n - 3;

	for (uint32_t j = 0; j < TP_LEAF; j++)
		n += lf->e[j].p1 && pool->space[lf->e[j].p1 - 1] == 2;
	return n;
}

#define RLEAVES 3
#define ROUNDS 12

/*
 * Rounds of a snapshot "s<r>" of "o" (3 leaves, 4 KiB per chunk) and a
 * write at the start of each of o's leaves, which copies it: from the
 * second round each copy takes o's chunks to a third reference and more,
 * a REF each, and every round adds o's chunks again as MAPs. Every
 * snapshot and write that succeeds leaves what a checkpoint would write
 * within the reserve (the test's own count); the first that fails does
 * so with ENOSPC, and not before its records would really not fit; the
 * chunk a refused write went to was reported with HOLE set before it
 * (NBD: no ENOSPC on an extent reported allocated), a TRIM there is left
 * undone and succeeds, a zeroing fails with ENOSPC. After it, checkpoints
 * and flushes still succeed (never a checkpoint ENOSPC), every volume
 * reads what it should, and the pool checks clean.
 */
Test(pool_reserve, copies_and_snapshots_that_would_not_fit_fail_with_enospc, .init = setup,
     .fini = teardown)
{
	uint64_t x = RLEAVES * TP_LEAF, adds = 0, n = 0;
	const char *refused = NULL;
	struct dio_volume *o;
	int r, k = 0, ret = 0, holes = 0;
	uint32_t seg = 0;
	char name[16];

	cr_assert_eq(dio_tpool_volume_create(pool, "o", x * CS), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	for (uint64_t c = 0; c < x; c++)
		cr_assert_eq(wr(o, c, 1), 0);
	for (r = 1; r <= ROUNDS; r++) {
		snprintf(name, sizeof(name), "s%d", r);
		pthread_mutex_lock(&pool->lock);
		adds = share_adds(tp_vol_by_name(pool, "o"));
		pthread_mutex_unlock(&pool->lock);
		ret = dio_tpool_volume_snapshot(pool, "o", name);
		if (ret) {
			refused = "snapshot";
			k = 0;	/* o as round r - 1 left it */
			break;
		}
		assert_within(name);
		for (k = 0; k < RLEAVES; k++) {
			pthread_mutex_lock(&pool->lock);
			adds = copy_adds(tp_vol_by_name(pool, "o"), (uint64_t)k);
			pthread_mutex_unlock(&pool->lock);
			seg = seg_of(o, (uint64_t)k * TP_LEAF);
			holes += seg == DIO_SEG_UNRESERVED;
			ret = wr(o, (uint64_t)k * TP_LEAF, 10 + (uint32_t)r);
			if (ret) {
				refused = "write";
				break;
			}
			assert_within("a write");
		}
		if (refused)
			break;
	}
	cr_assert_not_null(refused, "%d rounds and nothing refused", ROUNDS);
	cr_assert_eq(ret, -ENOSPC, "the %s of round %d (leaf %d): %d", refused, r, k, ret);
	cr_assert_gt(r, 2, "refused in round %d: early", r);
	pthread_mutex_lock(&pool->lock);
	n = records();
	pthread_mutex_unlock(&pool->lock);
	cr_log_info("the %s of round %d (leaf %d) refused: %llu records and at least %llu more "
		    "for a reserve of %llu", refused, r, k, (unsigned long long)n,
		    (unsigned long long)adds, (unsigned long long)pool->sb.nr_chunks);
	cr_assert_gt(n + adds, pool->sb.nr_chunks, "refused with room for it: early");
	if (strcmp(refused, "write") == 0)
		cr_assert_eq(seg, DIO_SEG_UNRESERVED, "ENOSPC on a shared chunk block status "
			     "reported allocated (type %u)", seg);
	cr_log_info("%d writes to shared chunks reported with HOLE set before them", holes);
	/* still refused; the rest goes on */
	if (strcmp(refused, "write") == 0) {
		uint64_t c = (uint64_t)k * TP_LEAF;

		cr_assert_eq(wr(o, c, 10 + (uint32_t)r), -ENOSPC);
		/* a TRIM there is left undone, not failed (NBD lets a server ignore it) */
		cr_assert_eq(test_io(ctx, o, DIO_REQ_TRIM, 0, c * CS, WS, NULL), 0,
			     "a TRIM of a shared leaf the reserve cannot copy");
		cr_assert_eq(test_io(ctx, o, DIO_REQ_ZERO, 0, c * CS, WS, NULL), -ENOSPC,
			     "a zeroing of a shared leaf the reserve cannot copy");
		cr_assert(reads_v(o, c, 10 + (uint32_t)r - 1), "the data the TRIM left");
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(test_io(ctx, o, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0, "flush %d", i);
		cr_assert_eq(dio_tpool_checkpoint(pool), 0, "checkpoint %d", i);
	}
	dio_volume_put(o);
	/* s<i> holds what o held before round i: its writes at the leaves' starts */
	for (int i = 1; i < r || (i == r && strcmp(refused, "write") == 0); i++) {
		snprintf(name, sizeof(name), "s%d", i);
		for (uint64_t j = 0; j < RLEAVES; j++) {
			cr_assert(reads(name, j * TP_LEAF, i == 1 ? 1 : 10 + (uint32_t)i - 1),
				  "%s leaf %llu", name, (unsigned long long)j);
			cr_assert(reads(name, j * TP_LEAF + 1, 1), "%s leaf %llu", name,
				  (unsigned long long)j);
		}
	}
	for (uint64_t j = 0; j < RLEAVES; j++)
		cr_assert(reads("o", j * TP_LEAF, (int)j < k ? 10 + (uint32_t)r
						  : 10 + (uint32_t)r - 1),
			  "o leaf %llu", (unsigned long long)j);
	check_reopen();
	cr_assert_eq(dio_tpool_checkpoint(pool), 0);
	cr_assert(reads("o", 1, 1));
}
