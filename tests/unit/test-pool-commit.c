/* SPDX-License-Identifier: MIT */
/*
 * Background commit (pool-commit.c): with commit_ms set, a write into a
 * hole that no FLUSH or FUA follows is committed by the pool's thread
 * within about commit_ms, and survives a crash after that; without it the
 * same write is lost (it may be; never garbage), which shows the test
 * sees the difference. Also: the thread stops at close, idle pools do not
 * commit, and a commit failure is logged and retried, not fatal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
static struct dio_engine *fault;
static uint8_t *wbuf, *rbuf;

static void
setup_ms(unsigned int ms)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * KiB, .journal_blocks = 32 };
	struct dio_fault_opts fo = { 0 };

	opts.commit_ms = ms;
	pool = test_pool_make(&path, 16 * MiB, &co, &opts, 4 * MiB);
	ctx = test_ctx_create(&fo, &fault);
	wbuf = test_alloc(1 * MiB);
	rbuf = test_alloc(1 * MiB);
}

static void
setup_bg(void)
{
	setup_ms(100);
}

static void
setup_none(void)
{
	setup_ms(0);
}

static void
teardown(void)
{
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(wbuf);
	free(rbuf);
}

static uint64_t
bg_commits(void)
{
	uint64_t n;

	pthread_mutex_lock(&pool->lock);
	n = pool->bg_commits;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

static size_t
pending(void)
{
	size_t n;

	pthread_mutex_lock(&pool->lock);
	n = pool->npend;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

/* Wait up to secs for the records to be committed; true when they were. */
static bool
wait_committed(double secs)
{
	for (int i = 0; i < (int)(secs * 100); i++) {
		if (!pending())
			return true;
		usleep(10 * 1000);
	}
	return !pending();
}

/* A crash: drop the pool and its volume without writing anything, reopen. */
static struct dio_volume *
crash_reopen(struct dio_volume *v)
{
	struct dio_fault_opts fo = { 0 };
	struct dio_tpool *p = pool;
	int ret;

	/* the thread goes first: nothing may be written on the way out */
	tp_committer_stop(p);
	p->readonly = true;
	dio_volume_put(v);
	dio_tpool_close(p);
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(&fo, &fault);
	/*
	 * The kernel drops a destroyed ring's files (and with them the pool's
	 * lock) in the background: a ring of another thread's ctx may still.
	 */
	for (int i = 0; (ret = dio_tpool_open(path, &opts, &pool)) == -EAGAIN && i < 100; i++)
		usleep(10 * 1000);
	cr_assert_eq(ret, 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	return v;
}

Test(pool_commit, unflushed_write_is_committed_in_the_background, .init = setup_bg,
     .fini = teardown)
{
	struct dio_volume *v;
	uint64_t n0;

	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	n0 = bg_commits();
	test_pattern(wbuf, 64 * KiB, 1 * MiB, 7);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 1 * MiB, 64 * KiB, wbuf), 0);
	cr_assert(wait_committed(5), "no background commit within 5 s (commit_ms 100)");
	cr_assert_gt(bg_commits(), n0, "committed, but not by the pool's thread");
	v = crash_reopen(v);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 1 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 64 * KiB, 1 * MiB, 7),
		  "a write committed in the background was lost in a crash");
	dio_volume_put(v);
}

Test(pool_commit, without_it_unflushed_write_waits, .init = setup_none, .fini = teardown)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	test_pattern(wbuf, 64 * KiB, 1 * MiB, 8);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 1 * MiB, 64 * KiB, wbuf), 0);
	cr_assert_not(wait_committed(0.5), "committed with commit_ms 0 and no FLUSH");
	cr_assert_not(pool->committer_on);
	v = crash_reopen(v);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 1 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_all_zero(rbuf, 64 * KiB), "an uncommitted mapping after a crash");
	dio_volume_put(v);
}

Test(pool_commit, idle_pool_does_not_commit, .init = setup_bg, .fini = teardown)
{
	struct dio_volume *v;
	uint64_t n0;

	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	test_pattern(wbuf, 4 * KiB, 0, 9);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 0, 4 * KiB, wbuf), 0);
	cr_assert(wait_committed(5));
	n0 = bg_commits();
	usleep(400 * 1000);	/* four periods with nothing waiting */
	cr_assert_eq(bg_commits(), n0, "the thread committed with nothing waiting");
	dio_volume_put(v);
}

/* Closing with the thread idle or waiting joins it and checkpoints as before. */
Test(pool_commit, close_stops_the_thread, .init = setup_bg, .fini = teardown)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	test_pattern(wbuf, 4 * KiB, 8 * KiB, 10);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 8 * KiB, 4 * KiB, wbuf), 0);
	cr_assert(pool->committer_on);
	dio_volume_put(v);
	dio_tpool_close(pool);	/* the last reference: stop, join, checkpoint */
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(&(struct dio_fault_opts){ 0 }, &fault);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 8 * KiB, 4 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 4 * KiB, 8 * KiB, 10));
	dio_volume_put(v);
}

/*
 * Background discards (pool-map.c): with the committer running, the
 * chunks a delete frees are discarded by that thread, outside the pool
 * lock, so the delete does not wait for the device. A discard held at a
 * gate shows it: the delete returns while the discard waits. A pool with
 * no FREE chunk left takes chunks whose discard is still queued (never
 * punching them afterwards) and waits for those being discarded.
 */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_waiting;
/* which device ops wait at the gate */
static bool gate_discards, gate_flushes, gate_writes;
/*
 * The metadata device ops in order, when oplog_on: a flush's start ('F',
 * before the gate) and end ('f'), a write's start ('W'), and marks the
 * test puts in ('M').
 */
static char oplog[256];
static int noplog;
static bool oplog_on;

static void
oplog_add(char c)
{
	pthread_mutex_lock(&gate_lock);
	if (oplog_on && noplog < (int)sizeof(oplog) - 1)
		oplog[noplog++] = c;
	pthread_mutex_unlock(&gate_lock);
}

/* Wait (10 s at most) until the test opens the gate. */
static void
gate_pass(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&gate_lock);
	gate_waiting++;
	pthread_cond_broadcast(&gate_cond);
	while (!gate_open && pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == 0)
		;
	gate_waiting--;
	pthread_mutex_unlock(&gate_lock);
}

static int
gated_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	return tp_sys_io.pread(priv, fd, buf, len, off);
}

static int
gated_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	oplog_add('W');
	if (gate_writes)
		gate_pass();
	return tp_sys_io.pwrite(priv, fd, buf, len, off, fua);
}

static int
gated_flush(void *priv, int fd)
{
	int ret;

	oplog_add('F');
	if (gate_flushes)
		gate_pass();
	ret = tp_sys_io.flush(priv, fd);
	oplog_add('f');
	return ret;
}

static int
gated_discard(void *priv, int fd, uint64_t off, uint64_t len)
{
	if (gate_discards)
		gate_pass();
	return tp_sys_io.discard(priv, fd, off, len);
}

static const struct dio_tpool_io gated_io = {
	.pread = gated_pread,
	.pwrite = gated_pwrite,
	.flush = gated_flush,
	.discard = gated_discard,
};

static void
setup_gated(void)
{
	gate_open = false;
	gate_waiting = 0;
	gate_discards = true;
	gate_flushes = false;
	gate_writes = false;
	oplog_on = false;
	noplog = 0;
	opts.io = &gated_io;
	setup_ms(100);
}

static void
setup_flush_gated(void)
{
	setup_gated();
	gate_discards = false;
	gate_flushes = true;
}

static void
teardown_gated(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	teardown();
	opts.io = NULL;
}

static void
open_gate(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

/* Wait up to 5 s for a device op to sit at the gate. */
static bool
op_at_gate(void)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&gate_lock);
	while (!gate_waiting && pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == 0)
		;
	ok = gate_waiting > 0;
	pthread_mutex_unlock(&gate_lock);
	return ok;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Volume name written whole with pattern seed, flushed, closed. */
static void
fill_volume(const char *name, uint64_t size, uint32_t seed)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0);
	for (uint64_t off = 0; off < size; off += 1 * MiB) {
		uint64_t n = size - off < 1 * MiB ? size - off : 1 * MiB;

		test_pattern(wbuf, n, off, seed);
		cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, off, n, wbuf), 0);
	}
	cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_put(v);
}

Test(pool_commit, delete_does_not_wait_for_discards, .init = setup_gated, .fini = teardown_gated)
{
	uint64_t free0 = test_pool_free_chunks(pool), done;
	double t;

	fill_volume("a", 4 * MiB, 11);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - 64);
	t = now_s();
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	t = now_s() - t;
	cr_assert(op_at_gate(), "no discard was started after the delete");
	cr_assert_lt(t, 5.0, "the delete waited %.1f s for its discards", t);
	/* Free for allocation at once, though not yet discarded. */
	cr_assert_eq(test_pool_free_chunks(pool), free0);
	open_gate();
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&pool->lock);
		done = pool->discarded;
		pthread_mutex_unlock(&pool->lock);
		if (done >= 64)
			break;
		usleep(10 * 1000);
	}
	cr_assert_eq(done, 64, "%llu of 64 freed chunks discarded in the background",
		     (unsigned long long)done);
	cr_assert_eq(test_pool_free_chunks(pool), free0);
}

struct bg_write {
	struct dio_volume *v;
	uint64_t off;
	uint32_t flags;		/* DIO_REQ_* */
	int ret;
};

static void *
bg_write_fn(void *arg)
{
	struct bg_write *w = arg;
	struct dio_fault_opts fo = { 0 };
	struct dio_engine *f;
	struct dio_ctx *c = test_ctx_create(&fo, &f);
	uint8_t *b = test_alloc(64 * KiB);

	test_pattern(b, 64 * KiB, w->off, 13);
	w->ret = test_io(c, w->v, DIO_REQ_WRITE, w->flags, w->off, 64 * KiB, b);
	free(b);
	dio_ctx_destroy(c);
	return NULL;
}

Test(pool_commit, full_pool_takes_chunks_whose_discard_waits, .init = setup_gated,
     .fini = teardown_gated)
{
	uint64_t nfree, cs = 64 * KiB;
	struct dio_volume *v;
	struct bg_write w;
	pthread_t th;

	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	nfree = test_pool_free_chunks(pool);
	cr_assert_gt(nfree, 8);
	/* b maps every chunk of the pool; its delete queues them all. */
	cr_assert_eq(dio_tpool_volume_create(pool, "b", nfree * cs), 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "c", nfree * cs), 0);
	fill_volume("b", nfree * cs, 12);
	cr_assert_eq(test_pool_free_chunks(pool), 0);
	pthread_mutex_lock(&pool->lock);
	pool->discard_batch = 4;	/* the first 4 are held at the gate, the rest queued */
	pthread_mutex_unlock(&pool->lock);
	cr_assert_eq(dio_tpool_volume_delete(pool, "b"), 0);
	cr_assert(op_at_gate());
	/* Every chunk but the 4 being discarded is allocatable, gate shut. */
	cr_assert_eq(dio_tpool_volume_open(pool, "c", &v), 0);
	for (uint64_t l = 0; l < nfree - 4; l++) {
		test_pattern(wbuf, cs, l * cs, 13);
		cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, l * cs, cs, wbuf), 0,
			     "chunk %llu of %llu", (unsigned long long)l,
			     (unsigned long long)(nfree - 4));
	}
	/* The next waits for the discard at the gate, then gets its chunk. */
	w = (struct bg_write){ .v = v, .off = (nfree - 4) * cs, .ret = 1 };
	cr_assert_eq(pthread_create(&th, NULL, bg_write_fn, &w), 0);
	usleep(300 * 1000);
	cr_assert_eq(w.ret, 1, "a write into a full pool did not wait for the discard (%d)", w.ret);
	open_gate();
	pthread_join(th, NULL);
	cr_assert_eq(w.ret, 0, "the write that waited for a discard failed: %d", w.ret);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* No discard punched a chunk c took: all of c reads back, before and after a reopen. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t l = 0; l <= nfree - 4; l++) {
			cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, l * cs, cs, rbuf), 0);
			cr_assert(test_pattern_check(rbuf, cs, l * cs, 13), "pass %d: chunk %llu of c",
				  pass, (unsigned long long)l);
		}
		if (pass == 0) {
			dio_volume_put(v);
			dio_tpool_close(pool);
			dio_ctx_destroy(ctx);
			ctx = test_ctx_create(&(struct dio_fault_opts){ 0 }, &fault);
			pool = test_pool_open(path, &opts);
			cr_assert_eq(dio_tpool_volume_open(pool, "c", &v), 0);
		}
	}
	dio_volume_put(v);
}

/*
 * The commit's device I/O runs without the pool lock: while the background
 * commit's flush is held at the gate, a write into another hole allocates,
 * writes and records its mapping; a FUA write into a hole still waits for
 * its records to be durable, so it is replied to only after the gate
 * opens, and all three writes survive a crash then.
 */
Test(pool_commit, writes_go_on_while_a_commit_waits_for_the_device, .init = setup_flush_gated,
     .fini = teardown_gated)
{
	struct dio_volume *v;
	struct bg_write w;
	pthread_t th;
	double t;

	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	test_pattern(wbuf, 4 * KiB, 0, 21);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 0, 4 * KiB, wbuf), 0);
	cr_assert(op_at_gate(), "no background commit flushed the device");
	t = now_s();
	test_pattern(wbuf, 4 * KiB, 1 * MiB, 21);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, 1 * MiB, 4 * KiB, wbuf), 0);
	t = now_s() - t;
	cr_assert_lt(t, 2.0, "a write into a hole waited %.1f s for the commit's flush", t);
	w = (struct bg_write){ .v = v, .off = 2 * MiB, .flags = DIO_REQ_FUA, .ret = 1 };
	cr_assert_eq(pthread_create(&th, NULL, bg_write_fn, &w), 0);
	usleep(300 * 1000);
	cr_assert_eq(w.ret, 1, "a FUA write into a hole was replied to (%d) before its "
		     "mapping could be durable", w.ret);
	open_gate();
	pthread_join(th, NULL);
	cr_assert_eq(w.ret, 0, "the FUA write failed: %d", w.ret);
	v = crash_reopen(v);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 4 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 4 * KiB, 0, 21), "the first write was lost");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 1 * MiB, 4 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 4 * KiB, 1 * MiB, 21),
		  "the write before the FUA write was lost");
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 2 * MiB, 64 * KiB, rbuf), 0);
	cr_assert(test_pattern_check(rbuf, 64 * KiB, 2 * MiB, 13), "the FUA write was lost");
	dio_volume_put(v);
}

/*
 * Snapshots (issue 11): the origin is written while a snapshot of it is
 * under way. Its pool has no background commit, so the device ops at the
 * gate are the snapshot's own.
 */
static void
setup_snap_gated(void)
{
	gate_open = false;
	gate_waiting = 0;
	gate_discards = gate_flushes = gate_writes = false;
	oplog_on = false;
	noplog = 0;
	opts.io = &gated_io;
	setup_ms(0);
}

struct bg_snap {
	const char *origin, *name;
	int ret;
};

static void *
bg_snap_fn(void *arg)
{
	struct bg_snap *b = arg;

	b->ret = dio_tpool_volume_snapshot(pool, b->origin, b->name);
	return NULL;
}

/* A write of 64 KiB at off with pattern seed, which must not wait 2 s. */
static void
quick_write(struct dio_volume *v, uint64_t off, uint32_t seed)
{
	double t = now_s();

	test_pattern(wbuf, 64 * KiB, off, seed);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, 0, off, 64 * KiB, wbuf), 0);
	t = now_s() - t;
	cr_assert_lt(t, 2.0, "a write to the origin waited %.1f s for the snapshot", t);
}

/* Whether [off, off + len) of volume name reads pattern seed. */
static bool
reads(const char *name, uint64_t off, uint64_t len, uint32_t seed)
{
	struct dio_volume *v;
	bool ok;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0, "open %s", name);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, off, len, rbuf), 0);
	ok = test_pattern_check(rbuf, len, off, seed);
	dio_volume_put(v);
	return ok;
}

/*
 * While the snapshot's journal write is held at the gate, the origin's
 * writes go on: one into a chunk the snapshot shares now (a copy), one
 * into a hole. The snapshot replies only once its record is written, and
 * holds exactly what the origin held when it was taken, before and after
 * a crash.
 */
Test(pool_commit, origin_writes_go_on_while_a_snapshot_commits, .init = setup_snap_gated,
     .fini = teardown_gated)
{
	struct bg_snap b = { .origin = "a", .name = "s", .ret = 1 };
	struct dio_volume *v;
	pthread_t th;

	fill_volume("a", 1 * MiB, 31);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	gate_writes = true;
	cr_assert_eq(pthread_create(&th, NULL, bg_snap_fn, &b), 0);
	cr_assert(op_at_gate(), "the snapshot wrote no metadata");
	quick_write(v, 0, 32);		/* shared with the snapshot now */
	quick_write(v, 2 * MiB, 33);	/* a hole */
	cr_assert_eq(b.ret, 1, "the snapshot replied (%d) before its record was written", b.ret);
	open_gate();
	pthread_join(th, NULL);
	cr_assert_eq(b.ret, 0, "the snapshot failed: %d", b.ret);
	cr_assert(reads("s", 0, 1 * MiB, 31), "the snapshot holds a write made after it");
	cr_assert(reads("a", 0, 64 * KiB, 32));
	cr_assert(reads("a", 64 * KiB, 1 * MiB - 64 * KiB, 31));
	cr_assert(reads("a", 2 * MiB, 64 * KiB, 33));
	v = crash_reopen(v);
	cr_assert(reads("s", 0, 1 * MiB, 31), "after a crash, the snapshot is not the origin "
		  "as it was taken");
	dio_volume_put(v);
}

/*
 * R1 for a write in place that completes while the snapshot's first
 * flush is held at the gate: that flush started before it, so it does not
 * cover it, and the snapshot (which holds it) must flush again before its
 * record is written. Without that a crash may keep the snapshot and lose
 * the write it replied to hold. The snapshot flushes first only when the
 * origin has writes under way or in place and not flushed (pool-snap.c):
 * one is held between map_begin and map_end here until the gate opens.
 */
Test(pool_commit, snapshot_flushes_a_write_in_place_made_during_its_flush,
     .init = setup_snap_gated, .fini = teardown_gated)
{
	struct bg_snap b = { .origin = "a", .name = "s", .ret = 1 };
	struct dio_volume *v;
	struct dio_extent ext;
	const char *m, *w;
	pthread_t th;
	bool flushed = false;

	fill_volume("a", 1 * MiB, 41);	/* written and committed: a write to it is in place */
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	/* the slow write: [64 KiB, 128 KiB) in place, its data in, map_end held */
	cr_assert_eq(v->map_ops->map_begin(v, 64 * KiB, 64 * KiB, DIO_MAP_WRITE, &ext), 0);
	cr_assert_eq(ext.type, DIO_EXT_MAPPED);
	test_pattern(wbuf, 64 * KiB, 64 * KiB, 43);
	cr_assert_eq(tp_sys_io.pwrite(NULL, pool->fd, wbuf, 64 * KiB, ext.addr, false), 0);
	oplog_on = gate_flushes = true;
	cr_assert_eq(pthread_create(&th, NULL, bg_snap_fn, &b), 0);
	cr_assert(op_at_gate(), "the snapshot did not flush while a write under way kept it "
		  "waiting");
	quick_write(v, 0, 42);
	oplog_add('M');
	open_gate();
	cr_assert_eq(v->map_ops->map_end(v, &ext, 64 * KiB, DIO_MAP_WRITE), 0);
	pthread_join(th, NULL);
	cr_assert_eq(b.ret, 0, "the snapshot failed: %d", b.ret);
	oplog[noplog] = 0;
	/* After the mark: a flush started and done, then the journal write. */
	m = strchr(oplog, 'M');
	w = m ? strchr(m, 'W') : NULL;
	cr_assert(w, "no journal write after the write in place (%s)", oplog);
	for (const char *f = strchr(m, 'F'); f && f < w && !flushed; f = strchr(f + 1, 'F'))
		flushed = memchr(f, 'f', (size_t)(w - f)) != NULL;
	cr_assert(flushed, "the snapshot's record was written without a flush after the write "
		  "in place it holds (device ops %s)", oplog);
	cr_assert(reads("s", 0, 64 * KiB, 42), "the snapshot misses a write completed before it");
	cr_assert(reads("s", 64 * KiB, 64 * KiB, 43), "the snapshot misses the slow write");
	cr_assert(reads("s", 128 * KiB, 1 * MiB - 128 * KiB, 41));
	dio_volume_put(v);
}

/* A QD 1 writer of [0, 64 KiB) of the origin, write n with pattern seed 100 + n. */
struct bg_writer {
	struct dio_volume *v;
	struct dio_ctx *ctx;
	uint8_t *buf;
	_Atomic bool stop;
	_Atomic uint32_t done;	/* writes completed */
	int ret;
};

static void *
bg_writer_fn(void *arg)
{
	struct bg_writer *w = arg;

	while (!w->stop) {
		uint32_t n = w->done;

		test_pattern(w->buf, 64 * KiB, 0, 100 + n);
		w->ret = test_io(w->ctx, w->v, DIO_REQ_WRITE, 0, 0, 64 * KiB, w->buf);
		if (w->ret)
			break;
		w->done = n + 1;
	}
	return NULL;
}

/* Wait up to 5 s until the writer completed n writes. */
static bool
writer_reached(struct bg_writer *w, uint32_t n)
{
	for (int i = 0; i < 500 && w->done < n && !w->ret; i++)
		usleep(10 * 1000);
	return w->done >= n;
}

/* Wait up to 5 s until a snapshot turned a write away; true when one did. */
static bool
write_parked(void)
{
	uint64_t n = 0;

	for (int i = 0; i < 500 && !n; i++) {
		pthread_mutex_lock(&pool->lock);
		n = pool->snap_parks;
		pthread_mutex_unlock(&pool->lock);
		if (!n)
			usleep(10 * 1000);
	}
	return n > 0;
}

/*
 * A snapshot under a QD 1 writer of its origin: it waits for a slow write
 * in place (held between map_begin and map_end by the test), and meanwhile
 * the writer's next write waits for the snapshot instead of keeping the
 * origin's writers above 0. The snapshot ends as soon as the slow write
 * does, holds exactly the writer's last write before it, and the parked
 * write goes on, copying the chunk the snapshot shares.
 */
Test(pool_commit, snapshot_parks_new_origin_writes, .init = setup_snap_gated,
     .fini = teardown_gated)
{
	struct bg_snap b = { .origin = "a", .name = "s", .ret = 1 };
	struct bg_writer w = { .ret = 0 };
	struct dio_volume *v;
	struct dio_extent ext;
	uint32_t before;
	pthread_t th, tw;
	double t;

	fill_volume("a", 1 * MiB, 61);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	/* the slow write: [64 KiB, 128 KiB) in place, its data in, map_end held */
	cr_assert_eq(v->map_ops->map_begin(v, 64 * KiB, 64 * KiB, DIO_MAP_WRITE, &ext), 0);
	cr_assert_eq(ext.type, DIO_EXT_MAPPED);
	cr_assert_eq(ext.length, 64 * KiB);
	test_pattern(wbuf, 64 * KiB, 64 * KiB, 62);
	cr_assert_eq(tp_sys_io.pwrite(NULL, pool->fd, wbuf, 64 * KiB, ext.addr, false), 0);

	w.v = v;
	w.ctx = test_ctx_create(NULL, NULL);
	w.buf = test_alloc(64 * KiB);
	cr_assert_eq(pthread_create(&tw, NULL, bg_writer_fn, &w), 0);
	cr_assert(writer_reached(&w, 3), "the writer does not write (%d)", w.ret);
	cr_assert_eq(pthread_create(&th, NULL, bg_snap_fn, &b), 0);
	cr_assert(write_parked(), "the snapshot waits for the slow write and the origin's writer "
		  "was never parked (%u writes)", (unsigned int)w.done);
	before = w.done;
	usleep(100 * 1000);
	cr_assert_eq(w.done, before, "the origin completed %u writes while the snapshot waited "
		     "for its writers", (unsigned int)(w.done - before));
	cr_assert_eq(b.ret, 1, "the snapshot replied (%d) before the slow write ended", b.ret);

	t = now_s();
	cr_assert_eq(v->map_ops->map_end(v, &ext, 64 * KiB, DIO_MAP_WRITE), 0);
	pthread_join(th, NULL);
	t = now_s() - t;
	cr_assert_eq(b.ret, 0, "the snapshot failed: %d", b.ret);
	cr_assert_lt(t, 1.0, "the snapshot took %.2f s after the slow write ended", t);
	cr_assert(writer_reached(&w, before + 3), "the parked writer did not go on (%d)", w.ret);
	w.stop = true;
	pthread_join(tw, NULL);
	cr_assert_eq(w.ret, 0, "the origin's writer failed: %d", w.ret);
	dio_ctx_destroy(w.ctx);
	free(w.buf);

	cr_assert(reads("s", 0, 64 * KiB, 100 + before - 1),
		  "the snapshot does not hold the origin's last write before it");
	cr_assert(reads("s", 64 * KiB, 64 * KiB, 62), "the snapshot misses the slow write");
	cr_assert(reads("s", 128 * KiB, 1 * MiB - 128 * KiB, 61));
	cr_assert(reads("a", 0, 64 * KiB, 100 + w.done - 1));
	cr_assert(reads("a", 64 * KiB, 64 * KiB, 62));
	v = crash_reopen(v);
	cr_assert(reads("s", 0, 64 * KiB, 100 + before - 1), "after a crash, the snapshot is "
		  "not the origin as it was taken");
	cr_assert(reads("s", 64 * KiB, 64 * KiB, 62));
	dio_volume_put(v);
}

/*
 * A write whose request mapped an extent before the snapshot started
 * waiting (DIO_MAP_HELD) is not parked: its first extent's map_end waits
 * for it, and the snapshot for that map_end. A new write is.
 */
Test(pool_commit, snapshot_does_not_park_a_request_it_waits_for, .init = setup_snap_gated,
     .fini = teardown_gated)
{
	struct bg_snap b = { .origin = "a", .name = "s", .ret = 1 };
	struct dio_extent e1, e2, e3;
	struct dio_volume *v;
	uint32_t snaps = 0;
	pthread_t th;

	fill_volume("a", 1 * MiB, 71);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &v), 0);
	cr_assert_eq(v->map_ops->map_begin(v, 0, 128 * KiB, DIO_MAP_WRITE, &e1), 0);
	cr_assert_eq(e1.length, 64 * KiB);
	cr_assert_eq(pthread_create(&th, NULL, bg_snap_fn, &b), 0);
	for (int i = 0; i < 500 && !snaps; i++) {
		usleep(10 * 1000);
		pthread_mutex_lock(&pool->lock);
		snaps = tp_vol_by_name(pool, "a")->snaps;
		pthread_mutex_unlock(&pool->lock);
	}
	cr_assert(snaps, "the snapshot does not wait for the write under way");
	cr_assert_eq(v->map_ops->map_begin(v, 256 * KiB, 64 * KiB, DIO_MAP_WRITE, &e3), -EAGAIN,
		     "a new write was not parked");
	cr_assert_eq(v->map_ops->map_begin(v, 64 * KiB, 64 * KiB, DIO_MAP_WRITE | DIO_MAP_HELD,
					   &e2), 0, "the rest of a request under way was parked");
	cr_assert_eq(v->map_ops->map_end(v, &e2, 64 * KiB, DIO_MAP_WRITE), 0);
	cr_assert_eq(b.ret, 1, "the snapshot replied (%d) with a write under way", b.ret);
	cr_assert_eq(v->map_ops->map_end(v, &e1, 64 * KiB, DIO_MAP_WRITE), 0);
	pthread_join(th, NULL);
	cr_assert_eq(b.ret, 0, "the snapshot failed: %d", b.ret);
	dio_volume_put(v);
}
