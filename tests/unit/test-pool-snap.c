/* SPDX-License-Identifier: MIT */
/*
 * Pool snapshots and clones: a snapshot reads exactly what its origin
 * held when it was taken, whatever the origin (or a clone) writes, trims
 * or zeroes after (full, partial, straddling and unaligned writes, FUA);
 * writes to a clone never show in its origin; deletes in any order keep
 * the reference counts right (check clean, every chunk back); a reopen
 * from the journal and from a checkpoint keeps all of it; a snapshot is
 * read-only. Each volume is compared whole with a model of its bytes.
 * And the time a snapshot takes with 10^5 and 10^6 chunks mapped (logged).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define VSIZE (1 * MiB)	/* 16 chunks of 64 KiB */
#define NVOL 8

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static uint8_t *wbuf, *rbuf;

/* The volumes a test uses: name, open handle, model of its bytes. */
static struct {
	char name[16];
	struct dio_volume *v;
	uint8_t *m;
} vols[NVOL];

static int
slot(const char *name)
{
	for (int i = 0; i < NVOL; i++)
		if (strcmp(vols[i].name, name) == 0)
			return i;
	for (int i = 0; i < NVOL; i++) {
		if (!vols[i].name[0]) {
			snprintf(vols[i].name, sizeof(vols[i].name), "%s", name);
			vols[i].m = calloc(1, VSIZE);
			return i;
		}
	}
	cr_assert_fail("too many volumes");
	return -1;
}

static struct dio_volume *
vol(const char *name)
{
	int i = slot(name);

	if (!vols[i].v)
		cr_assert_eq(dio_tpool_volume_open(pool, name, &vols[i].v), 0, "open %s", name);
	return vols[i].v;
}

static void
close_all(void)
{
	for (int i = 0; i < NVOL; i++) {
		dio_volume_put(vols[i].v);
		vols[i].v = NULL;
	}
}

static void
forget(const char *name)
{
	int i = slot(name);

	dio_volume_put(vols[i].v);
	free(vols[i].m);
	memset(&vols[i], 0, sizeof(vols[i]));
}

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * KiB, .journal_blocks = 64 };

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	slot("o");
	ctx = test_ctx_create(NULL, NULL);
	wbuf = test_alloc(VSIZE);
	rbuf = test_alloc(VSIZE);
}

static void
teardown(void)
{
	for (int i = 0; i < NVOL; i++)
		if (vols[i].name[0])
			forget(vols[i].name);
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(wbuf);
	free(rbuf);
}

/* A snapshot (ro) or clone of origin; its model a copy of origin's. */
static void
snap(const char *origin, const char *name, bool clone)
{
	int o = slot(origin), s;

	cr_assert_eq(clone ? dio_tpool_volume_clone(pool, origin, name)
			   : dio_tpool_volume_snapshot(pool, origin, name), 0, "snapshot %s", name);
	cr_assert_eq(pool->npend, 0, "snapshot returned before it was durable");
	s = slot(name);
	memcpy(vols[s].m, vols[o].m, VSIZE);
}

static void
wr(const char *name, uint32_t flags, uint64_t off, uint64_t len, uint32_t seed)
{
	test_pattern(wbuf, len, off, seed);
	cr_assert_eq(test_io(ctx, vol(name), DIO_REQ_WRITE, flags, off, len, wbuf), 0,
		     "write %s %llu+%llu", name, (unsigned long long)off, (unsigned long long)len);
	memcpy(vols[slot(name)].m + off, wbuf, len);
}

/* TRIM or ZERO of whole sub-blocks (4 KiB): they read as zeros after. */
static void
trim(const char *name, uint8_t op, uint64_t off, uint64_t len)
{
	cr_assert_eq(test_io(ctx, vol(name), op, 0, off, len, NULL), 0);
	memset(vols[slot(name)].m + off, 0, len);
}

static void
verify(const char *name)
{
	int i = slot(name);
	size_t bad;

	memset(rbuf, 0xee, VSIZE);
	cr_assert_eq(test_io(ctx, vol(name), DIO_REQ_READ, 0, 0, VSIZE, rbuf), 0);
	for (bad = 0; bad < VSIZE && rbuf[bad] == vols[i].m[bad]; bad++)
		;
	cr_assert_eq(bad, VSIZE, "volume %s differs from its model at byte %zu (%#x, not %#x)",
		     name, bad, bad < VSIZE ? rbuf[bad] : 0, bad < VSIZE ? vols[i].m[bad] : 0);
}

static uint64_t
free_chunks(void)
{
	return test_pool_free_chunks(pool);
}

/*
 * The live counts are the recount of the maps, exactly, and a chunk is
 * allocated (used) exactly when some map holds it.
 */
static void
counts_exact(void)
{
	uint16_t *refs;
	uint64_t used = 0;

	cr_assert_eq(tp_recount(pool, &refs, NULL, NULL), 0);
	for (uint64_t c = 0; c < pool->sb.nr_chunks; c++) {
		cr_assert_eq(pool->space[c], refs[c], "chunk %llu: count %u, %u references",
			     (unsigned long long)c, pool->space[c], refs[c]);
		cr_assert_eq(pool->cstate[c] == TP_C_USED, refs[c] > 0,
			     "chunk %llu: state %u, %u references", (unsigned long long)c,
			     pool->cstate[c], refs[c]);
		used += refs[c] > 0;
	}
	free(refs);
	cr_assert_eq(free_chunks() + used, pool->sb.nr_chunks - pool->npfree);
}

static void
verify_all(void)
{
	for (int i = 0; i < NVOL; i++)
		if (vols[i].name[0])
			verify(vols[i].name);
	counts_exact();
}

/* A FLUSH, then a crash (nothing written at close): the journal's transactions come back. */
static void
crash_reopen(void)
{
	for (int i = 0; i < NVOL; i++)
		if (vols[i].v)
			cr_assert_eq(test_io(ctx, vols[i].v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	close_all();
	pool->readonly = true;
	dio_tpool_close(pool);
	dio_ctx_destroy(ctx);	/* io_uring's fixed files hold the pool's lock */
	ctx = test_ctx_create(NULL, NULL);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
}

/* Closed cleanly (a checkpoint), checked (no problem, no leak), reopened. */
static void
check_reopen(void)
{
	close_all();
	dio_tpool_close(pool);
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(NULL, NULL);
	test_pool_check_clean(path, &opts);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
}

static struct dio_tpool_vol_info
vinfo(const char *name)
{
	return test_pool_vol_info(pool, name);
}

/* The origin's writes of every shape, after a snapshot. */
static void
origin_writes(const char *o, uint32_t seed)
{
	wr(o, 0, 0, 64 * KiB, seed);			/* a whole chunk */
	wr(o, 0, 68 * KiB, 4 * KiB, seed + 1);		/* one sub-block */
	wr(o, DIO_REQ_FUA, 120 * KiB, 16 * KiB, seed + 2);	/* straddling, FUA */
	wr(o, 0, 200 * KiB + 512, 1000, seed + 3);	/* unaligned: read-modify-write */
	wr(o, DIO_REQ_FUA, 300 * KiB, 4 * KiB, seed + 4);	/* into a hole */
	trim(o, DIO_REQ_TRIM, 256 * KiB, 8 * KiB);	/* trim of shared sub-blocks */
	trim(o, DIO_REQ_ZERO, 384 * KiB, 64 * KiB);	/* a whole shared chunk zeroed */
}

/* The origin before its snapshot: chunks full, partly written, holes. */
static void
origin_fill(const char *o)
{
	wr(o, 0, 0, 512 * KiB, 1);
	wr(o, 0, 520 * KiB, 8 * KiB, 2);
	wr(o, 0, 700 * KiB, 100 * KiB, 3);
	cr_assert_eq(test_io(ctx, vol(o), DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
}

Test(pool_snap, snapshot_keeps_origin_as_it_was, .init = setup, .fini = teardown)
{
	origin_fill("o");
	snap("o", "s", false);
	cr_assert(vinfo("s").readonly);
	cr_assert_eq(vinfo("s").parent, vinfo("o").id);
	cr_assert_eq(vinfo("s").mapped, vinfo("o").mapped);
	origin_writes("o", 10);
	verify_all();
	cr_assert_gt(pool->cow_chunks, 0, "no chunk was copied");
	crash_reopen();
	verify_all();
	cr_assert(vinfo("s").readonly, "read-only lost in the journal");
	check_reopen();
	verify_all();
	cr_assert(vinfo("s").readonly, "read-only lost in the checkpoint");
	cr_assert_eq(vinfo("s").parent, vinfo("o").id);
	/* Once more after the reopen: the leaves are shared from the checkpoint. */
	origin_writes("o", 20);
	verify_all();
	check_reopen();
	verify_all();
}

Test(pool_snap, snapshot_is_read_only, .init = setup, .fini = teardown)
{
	origin_fill("o");
	snap("o", "s", false);
	test_pattern(wbuf, 4 * KiB, 0, 9);
	cr_assert_eq(test_io(ctx, vol("s"), DIO_REQ_WRITE, 0, 0, 4 * KiB, wbuf), -EPERM);
	cr_assert_eq(test_io(ctx, vol("s"), DIO_REQ_TRIM, 0, 0, 64 * KiB, NULL), -EPERM);
	cr_assert_eq(dio_tpool_volume_resize(pool, "s", 2 * MiB), -EPERM);
	verify_all();
}

Test(pool_snap, clone_writes_stay_in_clone, .init = setup, .fini = teardown)
{
	origin_fill("o");
	snap("o", "c", true);
	cr_assert(!vinfo("c").readonly);
	origin_writes("c", 30);
	wr("c", 0, 900 * KiB, 64 * KiB, 35);
	verify_all();
	/* and the origin writes too: each its own copy */
	origin_writes("o", 40);
	verify_all();
	crash_reopen();
	verify_all();
	check_reopen();
	verify_all();
}

Test(pool_snap, depth, .init = setup, .fini = teardown)
{
	/* snapshot of a clone of a snapshot, writes at each level */
	origin_fill("o");
	snap("o", "s1", false);
	snap("s1", "c1", true);
	wr("c1", 0, 60 * KiB, 8 * KiB, 50);
	snap("c1", "s2", false);
	wr("c1", 0, 0, 128 * KiB, 51);
	wr("o", 0, 0, 128 * KiB, 52);
	verify_all();
	check_reopen();
	verify_all();
	crash_reopen();
	verify_all();
}

/*
 * Every order of deleting origin, snapshot and clone, with their map
 * shared or each its own: the rest intact, the counts exact, new chunks
 * for the others never one they hold, all space back.
 */
Test(pool_snap, deletes_in_every_order, .init = setup, .fini = teardown)
{
	static const char *const names[3] = { "o", "s", "c" };
	static const int orders[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 },
					  { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
	uint64_t free0 = free_chunks();

	for (int k = 0; k < 6; k++) {
		if (k)
			cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
		origin_fill("o");
		snap("o", "s", false);
		snap("s", "c", true);
		/* every other round the leaf is still shared by all three at the deletes */
		if (k % 2) {
			wr("o", 0, 64 * KiB, 8 * KiB, 60 + (uint32_t)k);
			wr("c", 0, 0, 200 * KiB, 70 + (uint32_t)k);
			trim("c", DIO_REQ_TRIM, 512 * KiB, 64 * KiB);
		}
		for (int d = 0; d < 3; d++) {
			const char *n = names[orders[k][d]];

			forget(n);
			cr_assert_eq(dio_tpool_volume_delete(pool, n), 0, "delete %s", n);
			verify_all();
			/* new chunks for the others: none of theirs may come back */
			for (int w = 0; w < 3; w++)
				if (strcmp(names[w], "s") && tp_vol_by_name(pool, names[w]))
					wr(names[w], 0, 640 * KiB, 256 * KiB, 80 + (uint32_t)(k * 3 + d));
			verify_all();
			if (d == 1)
				crash_reopen();
			else
				check_reopen();
			verify_all();
		}
		cr_assert_eq(free_chunks(), free0, "order %d: space not back", k);
	}
}

/*
 * R5 with shared maps: a write that would copy a shared leaf past what the
 * metadata reserve holds fails with ENOSPC, and so does a snapshot whose
 * map could not be held, while a TRIM there is left undone; nothing is lost, the pool checkpoints and checks
 * clean, and the write goes through once the snapshot is deleted.
 */
Test(pool_snap, metadata_reserve, .fini = teardown)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * KiB, .journal_blocks = 64 };
	uint64_t big = 16 * MiB;	/* 256 chunks in one leaf: its copy doubles the map */
	struct dio_volume *o;
	uint8_t *b = test_alloc(big);

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 0);
	ctx = test_ctx_create(NULL, NULL);
	cr_assert_eq(dio_tpool_volume_create(pool, "big", big), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "big", &o), 0);
	test_pattern(b, big, 0, 7);
	cr_assert_eq(test_io(ctx, o, DIO_REQ_WRITE, DIO_REQ_FUA, 0, big, b), 0);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "big", "s"), 0);
	cr_assert_eq(test_io(ctx, o, DIO_REQ_WRITE, 0, 0, 4 * KiB, b + 8 * KiB), -ENOSPC,
		     "a copy of the shared leaf outgrows the metadata reserve");
	cr_assert_eq(test_io(ctx, o, DIO_REQ_TRIM, 0, 0, 64 * KiB, NULL), 0,
		     "a TRIM the reserve cannot take is left undone, not failed");
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "s", "s2"), 0, "sharing costs no room");
	cr_assert_eq(test_io(ctx, o, DIO_REQ_READ, 0, 0, big, b), 0);
	cr_assert(test_pattern_check(b, big, 0, 7), "the origin changed");
	dio_volume_put(o);
	check_reopen();
	cr_assert_eq(dio_tpool_volume_delete(pool, "s"), 0);
	cr_assert_eq(dio_tpool_volume_delete(pool, "s2"), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "big", &o), 0);
	test_pattern(b, 4 * KiB, 0, 8);
	cr_assert_eq(test_io(ctx, o, DIO_REQ_WRITE, 0, 0, 4 * KiB, b), 0, "no room once shared no more");
	dio_volume_put(o);
	check_reopen();
	free(b);
}

/* ---- copy-on-write in the engine ------------------------------------ */

static struct dio_engine *fault;

/* As setup, with chunks of cs bytes and the fault engine (counting, failing) under ctx. */
static void
setup_cow(uint32_t cs)
{
	struct dio_tpool_create_opts co = { .chunk_size = cs, .journal_blocks = 64 };
	struct dio_fault_opts fo = { 0 };

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	slot("o");
	ctx = test_ctx_create(&fo, &fault);
	wbuf = test_alloc(VSIZE);
	rbuf = test_alloc(VSIZE);
}

static void
setup_cow64(void)
{
	setup_cow(64 * KiB);
}

/* 256 KiB chunks: 8 KiB sub-blocks, so a 4 KiB write covers half of one. */
static void
setup_cow256(void)
{
	setup_cow(256 * KiB);
}

/* The device reads and writes (count, bytes) since the last call. */
static void
io_since(uint64_t *nr, uint64_t *rbytes, uint64_t *nw, uint64_t *wbytes)
{
	static struct dio_fault_stats last;
	struct dio_fault_stats st;

	dio_engine_fault_stats(fault, &st);
	*nr = st.ops[DIO_IO_READ] - last.ops[DIO_IO_READ];
	*rbytes = st.bytes[DIO_IO_READ] - last.bytes[DIO_IO_READ];
	*nw = st.ops[DIO_IO_WRITE] - last.ops[DIO_IO_WRITE];
	*wbytes = st.bytes[DIO_IO_WRITE] - last.bytes[DIO_IO_WRITE];
	last = st;
}

/* One write and exactly the device I/O it should cost. */
static void
wr_io(const char *name, uint64_t off, uint64_t len, uint32_t seed, uint64_t want_rbytes,
      uint64_t want_wbytes)
{
	uint64_t nr, rb, nw, wb;

	io_since(&nr, &rb, &nw, &wb);
	wr(name, 0, off, len, seed);
	io_since(&nr, &rb, &nw, &wb);
	cr_assert_eq(nr, want_rbytes ? 1 : 0, "write %llu+%llu: %llu reads",
		     (unsigned long long)off, (unsigned long long)len, (unsigned long long)nr);
	cr_assert_eq(rb, want_rbytes, "write %llu+%llu: %llu bytes read, not %llu",
		     (unsigned long long)off, (unsigned long long)len, (unsigned long long)rb,
		     (unsigned long long)want_rbytes);
	cr_assert_eq(nw, 1, "write %llu+%llu: %llu device writes, not one",
		     (unsigned long long)off, (unsigned long long)len, (unsigned long long)nw);
	cr_assert_eq(wb, want_wbytes, "write %llu+%llu: %llu bytes written, not %llu",
		     (unsigned long long)off, (unsigned long long)len, (unsigned long long)wb,
		     (unsigned long long)want_wbytes);
}

static void
verify_reopen_all(void)
{
	verify_all();
	crash_reopen();
	verify_all();
	check_reopen();
	verify_all();
}

/*
 * Each first write to a shared chunk costs one read of only the written
 * sub-blocks it does not cover (their span) and one write of the merged
 * span; a whole-chunk write reads nothing.
 */
Test(pool_snap, cow_one_read_one_write, .init = setup_cow64, .fini = teardown)
{
	uint64_t cow0;

	origin_fill("o");	/* 0-512K full; 520K+8K; 700K+100K */
	snap("o", "s", false);
	cow0 = pool->cow_chunks;
	wr_io("o", 0, 4 * KiB, 100, 60 * KiB, 64 * KiB);		/* head of a full chunk */
	wr_io("o", 64 * KiB + 28 * KiB, 4 * KiB, 101, 64 * KiB, 64 * KiB);	/* middle */
	wr_io("o", 192 * KiB - 4 * KiB, 4 * KiB, 102, 60 * KiB, 64 * KiB);	/* tail */
	wr_io("o", 256 * KiB, 64 * KiB, 103, 0, 64 * KiB);		/* whole: no read */
	/* all but both ends: the two are read as one span, the middle with them */
	wr_io("o", 320 * KiB + 4 * KiB, 56 * KiB, 104, 64 * KiB, 64 * KiB);
	/* chunk 8 has 8K..16K written: a 4K write at 0 copies those, writes 0..16K */
	wr_io("o", 512 * KiB, 4 * KiB, 105, 8 * KiB, 16 * KiB);
	/* chunk 10 (640K..704K) has 700K..704K: the write and that, zeros between */
	wr_io("o", 644 * KiB, 4 * KiB, 106, 4 * KiB, 60 * KiB);
	/* a second write to a copied chunk is a plain overwrite */
	wr_io("o", 8 * KiB, 4 * KiB, 107, 0, 4 * KiB);
	cr_assert_eq(pool->cow_chunks - cow0, 7);
	verify_reopen_all();
}

/*
 * Sub-blocks larger than the write: the partly covered one takes the rest
 * of its bytes from the old chunk when it was written, and zeros when it
 * was not (even where the old chunk holds bytes a TRIM left behind).
 */
Test(pool_snap, cow_partial_sub_blocks, .init = setup_cow256, .fini = teardown)
{
	cr_assert_eq(pool->sub_size, 8 * KiB);
	wr("o", 0, 0, 256 * KiB, 1);		/* chunk 0 full */
	wr("o", 0, 256 * KiB, 256 * KiB, 2);	/* chunk 1: full, then the middle trimmed */
	trim("o", DIO_REQ_TRIM, 256 * KiB + 64 * KiB, 128 * KiB);
	wr("o", 0, 512 * KiB + 16 * KiB, 8 * KiB, 3);	/* chunk 2: one sub-block */
	cr_assert_eq(test_io(ctx, vol("o"), DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	snap("o", "s", false);
	snap("o", "c", true);
	wr("o", 0, 4 * KiB, 4 * KiB, 10);		/* second half of a written sub-block */
	wr("o", 0, 256 * KiB + 100 * KiB, 4 * KiB, 11);	/* first half of a trimmed one */
	wr("o", 0, 512 * KiB + 36 * KiB, 4 * KiB, 12);	/* half of a never-written one */
	wr("c", 0, 512 * KiB + 20 * KiB, 12 * KiB, 13);	/* straddles a written one */
	wr("c", 0, 1000, 3000, 14);			/* unaligned: read-modify-write */
	verify_reopen_all();
}

/* Writes and reads submitted together, completions held back. */
struct areq {
	struct dio_req req;
	int done, ret;
};

static void
areq_done(struct dio_req *req, int ret)
{
	struct areq *a = (struct areq *)req;

	a->done = 1;
	a->ret = ret;
}

static void
areq_wait(struct areq *a, int n)
{
	for (int i = 0; i < n; i++)
		while (!a[i].done)
			cr_assert_geq(dio_ctx_reap(ctx, true), 0);
}

/*
 * Several writes to one shared chunk at once (and reads): one copy, every
 * write lands, no write goes to the old chunk, and the reads during the
 * copy see the old data.
 */
Test(pool_snap, cow_concurrent_writes, .init = setup_cow64, .fini = teardown)
{
	struct dio_fault_opts slow = { .delay_reaps = 3, .reorder = true };
	static const uint32_t offs[] = { 0, 8, 60, 20, 4, 32, 12 };	/* KiB in chunk 1 */
	enum { NW = sizeof(offs) / sizeof(offs[0]) };
	struct areq a[NW + 1];
	uint8_t *bufs = test_alloc(NW * 4 * KiB), *rd = test_alloc(64 * KiB);
	uint64_t cow0;
	int o = slot("o");

	origin_fill("o");
	snap("o", "s", false);
	cow0 = pool->cow_chunks;
	dio_engine_fault_set(fault, &slow);
	memset(a, 0, sizeof(a));
	for (int i = 0; i < NW; i++) {
		uint64_t off = 64 * KiB + offs[i] * KiB;

		test_pattern(bufs + i * 4 * KiB, 4 * KiB, off, 200 + (uint32_t)i);
		a[i].req = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = off, .len = 4 * KiB,
					     .buf = bufs + i * 4 * KiB, .done = areq_done };
		cr_assert_eq(dio_submit(ctx, vol("o"), &a[i].req), 0);
		if (i == 0) {
			a[NW].req = (struct dio_req){ .op = DIO_REQ_READ, .pos = 64 * KiB,
						      .len = 64 * KiB, .buf = rd,
						      .done = areq_done };
			cr_assert_eq(dio_submit(ctx, vol("o"), &a[NW].req), 0);
		}
	}
	areq_wait(a, NW + 1);
	for (int i = 0; i <= NW; i++)
		cr_assert_eq(a[i].ret, 0, "request %d: %d", i, a[i].ret);
	cr_assert(memcmp(rd, vols[o].m + 64 * KiB, 64 * KiB) == 0,
		  "a read during the copy did not see the old chunk");
	for (int i = 0; i < NW; i++)
		memcpy(vols[o].m + 64 * KiB + offs[i] * KiB, bufs + i * 4 * KiB, 4 * KiB);
	cr_assert_eq(pool->cow_chunks - cow0, 1, "%llu copies of one chunk",
		     (unsigned long long)(pool->cow_chunks - cow0));
	dio_engine_fault_set(fault, &(struct dio_fault_opts){ 0 });
	verify_reopen_all();
	free(bufs);
	free(rd);
}

/* A failed read or write of the copy: the error, the old mapping, the new chunk back. */
static void
cow_fails(unsigned int op)
{
	struct dio_fault_opts fo = { .op_mask = 1u << op, .fail_nth = 1, .fail_errno = EIO };
	uint64_t free0, cow0;

	origin_fill("o");
	snap("o", "c", true);
	free0 = free_chunks();
	cow0 = pool->cow_chunks;
	dio_engine_fault_set(fault, &fo);
	test_pattern(wbuf, 4 * KiB, 68 * KiB, 300);
	cr_assert_eq(test_io(ctx, vol("o"), DIO_REQ_WRITE, 0, 68 * KiB, 4 * KiB, wbuf), -EIO);
	dio_engine_fault_set(fault, &(struct dio_fault_opts){ 0 });
	cr_assert_eq(free_chunks(), free0, "the new chunk was not given back");
	cr_assert_eq(pool->cow_chunks, cow0);
	verify_all();
	/* and the same write goes through after */
	wr("o", DIO_REQ_FUA, 68 * KiB, 4 * KiB, 301);
	cr_assert_eq(free_chunks(), free0 - 1);
	verify_reopen_all();
}

Test(pool_snap, cow_read_fails, .init = setup_cow64, .fini = teardown)
{
	cow_fails(DIO_IO_READ);
}

Test(pool_snap, cow_write_fails, .init = setup_cow64, .fini = teardown)
{
	cow_fails(DIO_IO_WRITE);
}

/* The block status of [0, VSIZE) of name: the state (DIO_SEG_*) of the chunk at off. */
static uint32_t
seg_at(const char *name, uint64_t off)
{
	struct dio_seg segs[64];
	struct dio_req req = { .op = DIO_REQ_EXTENTS, .pos = 0, .len = VSIZE, .segs = segs,
			       .max_segs = 64 };

	cr_assert_eq(dio_submit_sync(ctx, vol(name), &req), 0);
	for (uint32_t i = 0; i < req.nsegs; i++)
		if (off >= segs[i].pos && off < segs[i].pos + segs[i].len)
			return segs[i].type;
	cr_assert_fail("no segment at %llu", (unsigned long long)off);
	return 0;
}

/*
 * base:allocation: a shared chunk of a writable volume is DATA while the
 * pool's free chunks cover every chunk writable volumes map, UNRESERVED
 * (NBD: HOLE, not ZERO) once they do not, DATA again when space is back.
 * A read-only snapshot's and an exclusive chunk's are DATA all along.
 */
Test(pool_snap, cow_block_status_honest, .init = setup_cow64, .fini = teardown)
{
	struct dio_volume *f;
	uint64_t l = 0;

	origin_fill("o");
	snap("o", "s", false);
	snap("o", "c", true);
	wr("c", 0, 0, 4 * KiB, 400);	/* chunk 0 of c is its own */
	cr_assert_eq(seg_at("c", 64 * KiB), DIO_SEG_DATA);
	cr_assert_eq(seg_at("o", 64 * KiB), DIO_SEG_DATA);
	/* fill the pool with another volume until it could not copy them all */
	cr_assert_eq(dio_tpool_volume_create(pool, "f", 24 * MiB), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "f", &f), 0);
	while (free_chunks() >= vinfo("o").mapped + vinfo("c").mapped + vinfo("f").mapped) {
		cr_assert_eq(test_io(ctx, f, DIO_REQ_WRITE, 0, l * 64 * KiB, 4 * KiB, wbuf), 0);
		l++;
	}
	cr_assert_eq(seg_at("c", 64 * KiB), DIO_SEG_UNRESERVED, "shared, no room: not a hole");
	cr_assert_eq(seg_at("o", 64 * KiB), DIO_SEG_UNRESERVED);
	cr_assert_eq(seg_at("c", 0), DIO_SEG_DATA, "its own chunk needs no copy");
	cr_assert_eq(seg_at("s", 64 * KiB), DIO_SEG_DATA, "a snapshot is never written");
	cr_assert_eq(seg_at("c", 960 * KiB), DIO_SEG_HOLE);
	/* reads are not affected */
	verify_all();
	/* space back: TRIM f and commit */
	cr_assert_eq(test_io(ctx, f, DIO_REQ_TRIM, 0, 0, 24 * MiB, NULL), 0);
	cr_assert_eq(test_io(ctx, f, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	cr_assert_eq(seg_at("c", 64 * KiB), DIO_SEG_DATA);
	cr_assert_eq(seg_at("o", 64 * KiB), DIO_SEG_DATA);
	dio_volume_put(f);
}

/* map lchunks [0, n) of v to fresh chunks, in memory only (no data, no records) */
static void
map_in_memory(struct tp_vol *v, uint64_t n)
{
	for (uint64_t l = 0; l < n; l++) {
		struct tp_ment *e = tp_ment_w(pool, v, l, true);
		int64_t c = tp_alloc(pool, v);

		cr_assert(e && c >= 0);
		tp_ent_map(pool, v, l, e, (uint64_t)c);
		e->bits = e->dbits = pool->full_bits;
	}
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
nop_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	return 0;
}

static int
nop_flush(void *priv, int fd)
{
	return 0;
}

/*
 * Logged, not asserted: the target is 5 ms at 10^6 (issue 11). Measured
 * as it is (metadata I/O to the file), against a volume create (one
 * record committed alike), and with metadata writes that do nothing (the
 * pool's own work, under its lock).
 */
Test(pool_snap, create_time, .fini = teardown)
{
	struct dio_tpool_create_opts co = { .chunk_size = 4 * KiB, .journal_blocks = 64 };
	static const uint64_t sizes[] = { 1000, 100000, 1000000 };

	/*
	 * 4 KiB chunks in a sparse file of 6 GiB: the metadata reserve
	 * (tp_meta_fits, its bound) takes a snapshot of a million of them
	 */
	pool = test_pool_make(&path, 6144ull * MiB, &co, &opts, 0);
	ctx = test_ctx_create(NULL, NULL);
	for (int k = 0; k < 3; k++) {
		char o[16], s[16];
		const struct dio_tpool_io *real;
		struct dio_tpool_io nop;
		double t0, t1, t2, t3, t4;

		snprintf(o, sizeof(o), "o%d", k);
		snprintf(s, sizeof(s), "s%d", k);
		cr_assert_eq(dio_tpool_volume_create(pool, o, sizes[k] * 4 * KiB), 0);
		map_in_memory(tp_vol_by_name(pool, o), sizes[k]);
		t0 = now_ms();
		cr_assert_eq(dio_tpool_volume_snapshot(pool, o, s), 0);
		t1 = now_ms();
		cr_assert_eq(tp_vol_by_name(pool, s)->mapped, sizes[k]);
		/* the same commit of one record, without the map: the device's share */
		snprintf(s, sizeof(s), "e%d", k);
		cr_assert_eq(dio_tpool_volume_create(pool, s, 4 * KiB), 0);
		t2 = now_ms();
		/* the pool's own work, under its lock: metadata writes that do nothing */
		nop = *pool->io;
		nop.pwrite = nop_pwrite;
		nop.flush = nop_flush;
		real = pool->io;
		pool->io = &nop;
		snprintf(s, sizeof(s), "n%d", k);
		t3 = now_ms();
		cr_assert_eq(dio_tpool_volume_snapshot(pool, o, s), 0);
		t4 = now_ms();
		pool->io = real;
		fprintf(stderr, "pool_snap: snapshot of a volume with %7llu mapped chunks: %.3f ms "
			"(a volume create, one record committed alike: %.3f ms; the snapshot "
			"without metadata I/O: %.3f ms)\n", (unsigned long long)sizes[k], t1 - t0,
			t2 - t1, t4 - t3);
	}
	/* The maps were never written: drop the pool without a checkpoint. */
	pool->readonly = true;
}

/* Revert o to its snapshot s: o's model becomes s's. */
static void
revert(const char *o, const char *s)
{
	close_all();
	cr_assert_eq(dio_tpool_volume_revert(pool, o, s), 0, "revert %s to %s: %s", o, s,
		     strerror(errno));
	cr_assert_eq(pool->npend, 0, "revert returned before it was durable");
	memcpy(vols[slot(o)].m, vols[slot(s)].m, VSIZE);
}

/*
 * A revert: the volume reads exactly what its snapshot reads (size too),
 * from memory, from the journal and from a checkpoint; the chunks only the
 * volume held come back; its later writes stay out of the snapshot.
 */
Test(pool_snap, revert_to_snapshot, .init = setup, .fini = teardown)
{
	uint64_t free0;
	struct dio_tpool_vol_info oi;

	origin_fill("o");
	snap("o", "s", false);
	free0 = free_chunks();
	origin_writes("o", 10);
	wr("o", 0, 900 * KiB, 100 * KiB, 11);
	verify_all();
	cr_assert_lt(free_chunks(), free0);
	/* the volume shrunk since: the revert gives it the snapshot's size back */
	close_all();
	cr_assert_eq(dio_tpool_volume_resize(pool, "o", 512 * KiB), 0);
	oi = vinfo("o");
	revert("o", "s");
	cr_assert_eq(vinfo("o").size, VSIZE, "the size is not the snapshot's");
	cr_assert_eq(vinfo("o").id, oi.id);
	cr_assert(!vinfo("o").readonly);
	cr_assert_eq(vinfo("o").parent, oi.parent);
	cr_assert_eq(memcmp(vinfo("o").uuid, oi.uuid, 16), 0);
	cr_assert_eq(free_chunks(), free0, "the volume's own chunks did not come back");
	verify_all();
	crash_reopen();
	cr_assert_eq(vinfo("o").size, VSIZE);
	verify_all();
	check_reopen();
	verify_all();
	/* written again after the revert: the snapshot keeps what it had */
	origin_writes("o", 20);
	verify_all();
	crash_reopen();
	verify_all();
	/* and reverted once more, from a checkpoint this time */
	check_reopen();
	revert("o", "s");
	verify_all();
	cr_assert_eq(free_chunks(), free0);
	check_reopen();
	verify_all();
}

Test(pool_snap, revert_refused, .init = setup, .fini = teardown)
{
	origin_fill("o");
	snap("o", "s", false);
	snap("o", "c", true);
	snap("s", "ss", false);
	cr_assert_eq(dio_tpool_volume_create(pool, "p", VSIZE), 0);
	snap("p", "ps", false);
	wr("o", 0, 0, 64 * KiB, 90);
	/* open (served): busy */
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "s"), -EBUSY);
	close_all();
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "ps"), -EINVAL, "another volume's snapshot");
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "c"), -EINVAL, "a clone");
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "ss"), -EINVAL, "a snapshot of a snapshot");
	cr_assert_eq(dio_tpool_volume_revert(pool, "s", "ss"), -EROFS, "a snapshot reverted");
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "none"), -ENOENT);
	cr_assert_eq(dio_tpool_volume_revert(pool, "none", "s"), -ENOENT);
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "o"), -EINVAL);
	verify_all();
	check_reopen();
	verify_all();
}
