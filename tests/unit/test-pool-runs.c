/* SPDX-License-Identifier: MIT */
/*
 * RUN records in checkpoints (TP_FEAT_INCOMPAT_RUNS): fully written chunks
 * mapped to consecutive chunks are written as runs within a leaf, in a
 * volume's own leaves and in shared ones (LEAF). A sequential fill across
 * leaf boundaries, then runs split by a trim, a partial trim and a
 * copy-on-write, go through a checkpoint and come back byte for byte and
 * map for map (and through a journal replay on top); check is clean. A
 * checkpoint whose run is out of range, overlaps another mapping, crosses
 * a leaf, maps another volume's chunk, has no chunks, or appears without
 * the feature bit is refused by open and reported by check, naming it.
 */
#include <errno.h>
#include <fcntl.h>
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
#define CS (8 * KiB)		/* chunk: a leaf is 8 MiB */
#define VSIZE (20 * MiB)	/* three leaves */
#define NVOL 3

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static uint8_t *wbuf, *rbuf;
static const char *const names[NVOL] = { "o", "s", "s2" };
static uint8_t *model[NVOL];
static struct dio_volume *vols[NVOL];

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CS, .journal_blocks = 64 };

	pool = test_pool_make(&path, 96 * MiB, &co, &opts, 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	ctx = test_ctx_create(NULL, NULL);
	wbuf = test_alloc(VSIZE);
	rbuf = test_alloc(VSIZE);
	for (int i = 0; i < NVOL; i++)
		model[i] = calloc(1, VSIZE);
}

static void
close_vols(void)
{
	for (int i = 0; i < NVOL; i++) {
		dio_volume_put(vols[i]);
		vols[i] = NULL;
	}
}

static void
teardown(void)
{
	close_vols();
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(wbuf);
	free(rbuf);
	for (int i = 0; i < NVOL; i++)
		free(model[i]);
}

static struct dio_volume *
vol(int i)
{
	if (!vols[i])
		cr_assert_eq(dio_tpool_volume_open(pool, names[i], &vols[i]), 0, "open %s",
			     names[i]);
	return vols[i];
}

static void
wr(int i, uint64_t off, uint64_t len, uint32_t seed)
{
	test_pattern(wbuf, len, off, seed);
	cr_assert_eq(test_io(ctx, vol(i), DIO_REQ_WRITE, 0, off, len, wbuf), 0);
	memcpy(model[i] + off, wbuf, len);
}

static void
trim(int i, uint64_t off, uint64_t len)
{
	cr_assert_eq(test_io(ctx, vol(i), DIO_REQ_TRIM, 0, off, len, NULL), 0);
	memset(model[i] + off, 0, len);
}

static void
flush(int i)
{
	cr_assert_eq(test_io(ctx, vol(i), DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
}

static void
verify(int i)
{
	size_t bad;

	memset(rbuf, 0xee, VSIZE);
	cr_assert_eq(test_io(ctx, vol(i), DIO_REQ_READ, 0, 0, VSIZE, rbuf), 0);
	if (memcmp(rbuf, model[i], VSIZE) == 0)
		return;
	for (bad = 0; bad < VSIZE && rbuf[bad] == model[i][bad]; bad++)
		;
	cr_assert_eq(bad, VSIZE, "volume %s differs from its model at byte %zu", names[i], bad);
}

/* A volume's map as (lchunk, pchunk, written) triples. */
struct map {
	uint64_t (*e)[3];
	size_t n;
};

static int
map_entry(void *priv, uint64_t lchunk, uint64_t pchunk, uint32_t written)
{
	struct map *m = priv;

	m->e = realloc(m->e, (m->n + 1) * sizeof(*m->e));
	cr_assert_not_null(m->e);
	m->e[m->n][0] = lchunk;
	m->e[m->n][1] = pchunk;
	m->e[m->n][2] = written;
	m->n++;
	return 0;
}

static struct map
map_of(int i)
{
	struct map m = { 0 };

	cr_assert_eq(dio_tpool_volume_map(pool, names[i], map_entry, &m), 0);
	return m;
}

static void
report(void *priv, int sev, const char *msg)
{
	char *want = priv;

	if (sev)
		cr_log_info("check: %s", msg);
	if (want && sev == 2 && strstr(msg, want))
		want[0] = 0;	/* found */
}

static void
check_clean(void)
{
	struct dio_tpool_check_result res;

	cr_assert_eq(dio_tpool_check(path, &opts, report, NULL, &res), 0);
	cr_assert_eq(res.problems, 0, "check finds problems");
	cr_assert_eq(res.leaks, 0, "check finds leaks");
}

/* Close cleanly (a checkpoint), check, reopen. */
static void
close_reopen(bool crash)
{
	close_vols();
	if (crash)
		pool->readonly = true;	/* nothing written on the way out */
	dio_tpool_close(pool);
	dio_ctx_destroy(ctx);	/* io_uring's fixed files hold the pool's lock */
	ctx = test_ctx_create(NULL, NULL);
	check_clean();
	pool = test_pool_open(path, &opts);
}

/* The RUN records of the durable checkpoint: their number, chunks, vol-0 ones. */
struct runs {
	unsigned int n, chunks, in_leaf, longest;
	uint64_t block, off;	/* where the first run of volume 'vol' is (or the first) */
};

/* Each CKPT block of the durable checkpoint through fn, which may change it (resealed). */
static void
ckpt_blocks(bool (*fn)(void *priv, uint8_t *blk, uint64_t b), void *priv)
{
	static uint8_t root[TP_BLOCK], blk[TP_BLOCK];
	struct tp_super sb = pool->sb;
	int fd = open(path, O_RDWR);

	cr_assert_geq(fd, 0);
	for (uint64_t rb = sb.ckpt_root; rb; rb = ((struct tp_hdr *)root)->aux) {
		cr_assert_eq(pread(fd, root, TP_BLOCK, (off_t)(rb * TP_BLOCK)), TP_BLOCK);
		for (uint32_t i = 0; i < ((struct tp_hdr *)root)->count; i++) {
			uint64_t b;
			struct tp_hdr *h = (void *)blk;

			memcpy(&b, root + sizeof(struct tp_hdr) + 8 * i, 8);
			cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
			if (h->type != TP_BT_CKPT || !fn(priv, blk, b))
				continue;
			tp_seal(blk, sb.h.uuid, TP_BT_CKPT, h->owner, h->gen, b, h->aux, h->count,
				h->used);
			cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		}
	}
	close(fd);
}

static bool
count_runs(void *priv, uint8_t *blk, uint64_t b)
{
	struct runs *rs = priv;
	const struct tp_hdr *h = (const void *)blk;

	(void)b;
	for (uint32_t k = 0, off = 0; k < h->count; k++) {
		struct tp_rec r = { 0 };
		uint64_t l, c;
		uint32_t count;

		memcpy(&r, blk + sizeof(*h) + off, tp_rec_size(blk[sizeof(*h) + off]));
		off += (uint32_t)tp_rec_size(r.type);
		if (r.type != TP_R_RUN)
			continue;
		tp_run_get(&r, &l, &c, &count);
		cr_assert(count >= 1 && l % TP_LEAF + count <= TP_LEAF, "a run across a leaf");
		rs->n++;
		rs->chunks += count;
		rs->in_leaf += r.vol == 0;
		if (count > rs->longest)
			rs->longest = count;
	}
	return false;
}

static struct runs
runs_of_ckpt(void)
{
	struct runs rs = { 0 };

	ckpt_blocks(count_runs, &rs);
	return rs;
}

/* 12 MiB from 2 MiB (across the leaf boundary at 8 MiB), a partial chunk, a snapshot's leaf. */
static void
fill(void)
{
	for (uint64_t off = 2 * MiB; off < 14 * MiB; off += MiB)
		wr(0, off, MiB, (uint32_t)(off / MiB));
	wr(0, 16 * MiB + 512, 2 * KiB, 99);	/* a chunk partly written: a MAP */
	flush(0);
}

Test(pool_runs, round_trip_and_splits, .init = setup, .fini = teardown)
{
	struct map before[NVOL], after;
	struct runs rs;

	fill();
	/* o, s and s2 share the leaves; o's writes copy its own. */
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s2"), 0);
	memcpy(model[1], model[0], VSIZE);
	memcpy(model[2], model[0], VSIZE);
	trim(0, 3 * MiB, CS);				/* a whole chunk: a hole in the run */
	trim(0, 4 * MiB + 3 * CS, 4 * KiB);		/* part of one: a MAP in the run */
	wr(0, 5 * MiB + 5 * CS, 2 * CS, 7);		/* copy-on-write: new chunks */
	wr(0, 12 * MiB, 4 * CS, 8);			/* an overwrite of shared chunks: CoW */
	flush(0);
	for (int i = 0; i < NVOL; i++)
		before[i] = map_of(i);

	close_reopen(false);
	rs = runs_of_ckpt();
	cr_assert(pool->sb.feat_incompat & TP_FEAT_INCOMPAT_RUNS, "no runs feature bit");
	cr_assert_gt(rs.in_leaf, 0, "no run inside a shared leaf");
	cr_assert_gt(rs.n - rs.in_leaf, 0, "no run in a volume's own leaf");
	cr_assert_geq(rs.longest, 400, "runs are short: %u chunks", rs.longest);
	for (int i = 0; i < NVOL; i++) {
		after = map_of(i);
		cr_assert_eq(after.n, before[i].n, "volume %s: %zu entries, were %zu", names[i],
			     after.n, before[i].n);
		cr_assert_arr_eq(after.e, before[i].e, after.n * sizeof(*after.e),
				 "volume %s: the map changed through a checkpoint", names[i]);
		free(after.e);
		free(before[i].e);
		verify(i);
	}

	/* More splits, journaled on top of the runs, then a crash: replay. */
	trim(0, 9 * MiB, 3 * CS);
	wr(0, 10 * MiB + CS, CS, 11);
	wr(0, 13 * MiB, 2 * KiB, 12);
	flush(0);
	close_reopen(true);
	for (int i = 0; i < NVOL; i++)
		verify(i);
	close_reopen(false);
	for (int i = 0; i < NVOL; i++)
		verify(i);
}

/* Change the first RUN of volume vol that fn takes (fn returns true). */
struct patch {
	uint32_t vol;
	bool (*fn)(struct tp_rec *r);
	bool done;
};

static bool
patch_run(void *priv, uint8_t *blk, uint64_t b)
{
	struct patch *pt = priv;
	const struct tp_hdr *h = (const void *)blk;

	(void)b;
	for (uint32_t k = 0, off = 0; k < h->count && !pt->done; k++) {
		uint8_t *src = blk + sizeof(*h) + off;
		struct tp_rec r = { 0 };

		memcpy(&r, src, tp_rec_size(src[0]));
		off += (uint32_t)tp_rec_size(r.type);
		if (r.type != TP_R_RUN || r.vol != pt->vol || !pt->fn(&r))
			continue;
		memcpy(src, &r, 16);
		pt->done = true;
		return true;
	}
	return false;
}

/*
 * The pool closed with runs, the other superblock slot wiped (no older
 * checkpoint to fall back on), then the run patched: open fails naming
 * want, check reports it as a problem.
 */
static void
damaged(uint32_t volid, bool (*fn)(struct tp_rec *r), const char *want)
{
	struct patch pt = { volid, fn, false };
	struct dio_tpool_check_result res;
	static uint8_t zero[TP_BLOCK];
	char found[128];
	struct dio_tpool *p;
	int fd;

	wr(0, 0, 32 * CS, 4);			/* o's first run, from chunk 0 */
	wr(0, 18 * MiB, 4 * CS, 5);		/* a run of 4 in leaf 2 ... */
	wr(0, 18 * MiB + 4 * CS, 2 * KiB, 6);	/* ... and a MAP after it */
	cr_assert_eq(dio_tpool_volume_create(pool, "b", 4 * MiB), 0);
	close_vols();
	cr_assert_eq(dio_tpool_volume_open(pool, "b", &vols[1]), 0);
	wr(1, 0, 8 * CS, 6);			/* b's run */
	flush(1);
	close_reopen(false);
	if (fn) {
		ckpt_blocks(patch_run, &pt);
		cr_assert(pt.done, "no run of volume %u to patch", volid);
	} else {
		struct tp_super sb = pool->sb;

		/* the same superblock (slot, generation) without the feature bit */
		sb.feat_incompat &= ~TP_FEAT_INCOMPAT_RUNS;
		cr_assert_eq(tp_super_write(pool, &sb), 0);
	}
	fd = open(path, O_RDWR);
	cr_assert_eq(pwrite(fd, zero, TP_BLOCK, (off_t)(((pool->sb.h.gen + 1) & 1) * TP_BLOCK)),
		     TP_BLOCK);
	close(fd);
	close_vols();
	pool->readonly = true;	/* nothing written on the way out */
	dio_tpool_close(pool);
	pool = NULL;
	errbuf[0] = 0;
	cr_assert_eq(dio_tpool_open(path, &opts, &p), -EUCLEAN, "a damaged run was taken");
	cr_assert(strstr(errbuf, want), "open says: %s", errbuf);
	snprintf(found, sizeof(found), "%s", want);
	cr_assert_eq(dio_tpool_check(path, &opts, report, found, &res), 0);
	cr_assert_gt(res.problems, 0, "check finds no problem");
	cr_assert_eq(found[0], 0, "check does not say '%s'", want);
}

static bool
past_the_end(struct tp_rec *r)
{
	uint64_t l, c;
	uint32_t n;

	tp_run_get(r, &l, &c, &n);
	tp_run_rec(r, r->vol, (uint32_t)l, (uint32_t)(pool->sb.nr_chunks - n + 1), (uint16_t)n);
	return true;
}

static bool
longer(struct tp_rec *r)
{
	if (r->rsvd != 4)
		return false;
	r->rsvd++;	/* over the entry mapped after it (a MAP of a partial chunk) */
	return true;
}

static bool
across_leaf(struct tp_rec *r)
{
	uint64_t l, c;
	uint32_t n;

	tp_run_get(r, &l, &c, &n);
	tp_run_rec(r, r->vol, (uint32_t)(l - l % TP_LEAF + TP_LEAF - 1), (uint32_t)c, 2);
	return true;
}

static bool
empty(struct tp_rec *r)
{
	r->rsvd = 0;
	return true;
}

static bool
onto_o(struct tp_rec *r)
{
	uint64_t l, c;
	uint32_t n;

	tp_run_get(r, &l, &c, &n);
	/* o's first chunks: allocated first, from chunk 0 */
	tp_run_rec(r, r->vol, (uint32_t)l, 0, (uint16_t)n);
	return true;
}

Test(pool_runs, run_out_of_range, .init = setup, .fini = teardown)
{
	damaged(1, past_the_end, "to chunk");
}

Test(pool_runs, run_overlapping_next_entry, .init = setup, .fini = teardown)
{
	damaged(1, longer, "twice");
}

Test(pool_runs, run_across_leaf, .init = setup, .fini = teardown)
{
	damaged(1, across_leaf, "run of 2 chunks");
}

Test(pool_runs, run_of_nothing, .init = setup, .fini = teardown)
{
	damaged(1, empty, "run of 0 chunks");
}

Test(pool_runs, run_onto_another_volumes_chunks, .init = setup, .fini = teardown)
{
	damaged(2, onto_o, "under-count");
}

Test(pool_runs, runs_without_the_feature_bit, .init = setup, .fini = teardown)
{
	damaged(0, NULL, "without the runs feature");
}
