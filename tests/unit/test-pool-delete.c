/* SPDX-License-Identifier: MIT */
/*
 * Background delete (pool-reclaim.c, issue 11): in a pool with background
 * work (commit_ms) the delete of a volume of several leaves replies once
 * its record is durable, its name free at once, while a thread gives its
 * chunks back one leaf per lock hold. A gate the thread passes before
 * each batch holds it: the delete returns with the reclaim not begun, I/O
 * on another volume goes on, the free count rises by exactly one leaf's
 * chunks per batch and ends where it started. Chunks a snapshot shares
 * stay. A crash mid-reclaim (a child that exits at the gate), with or
 * without a checkpoint taken mid-reclaim, reopens to a pool that checks
 * clean with every chunk back; so does a close mid-reclaim. The same for
 * the ghosts of a revert (the old map) and a shrink (the whole leaves past
 * the new end), and a shrink's record read as an older version reads it
 * is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define CS (4 * KiB)		/* chunk: a leaf maps 4 MiB */
#define VSIZE (16 * MiB)	/* 4096 chunks, 4 leaves */
#define VCHUNKS (VSIZE / CS)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static uint8_t *buf;

/* The gate: the reclaim thread waits in it before each batch until allowed. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_allow;		/* batches it may start; < 0: all */
static int gate_waiting;	/* the thread sits in it */
static int gate_calls;
static bool gate_closing;	/* a close is coming: wait for it, then let the thread go */
static int exit_at = -1;	/* child: _exit at this call of the gate */
static bool ckpt_at_exit;	/* child: a checkpoint first */

static void
gate(struct dio_tpool *p)
{
	struct timespec ts;

	pthread_mutex_lock(&gate_lock);
	if (++gate_calls == exit_at) {
		pthread_mutex_unlock(&gate_lock);
		if (ckpt_at_exit && dio_tpool_checkpoint(p) < 0)
			_exit(3);
		_exit(0);	/* a crash mid-reclaim */
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	gate_waiting++;
	pthread_cond_broadcast(&gate_cond);
	while (gate_allow == 0 && !gate_closing &&
	       pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == 0)
		;
	if (gate_allow > 0)
		gate_allow--;
	gate_waiting--;
	pthread_mutex_unlock(&gate_lock);
	/* Closing: return only once the close asked the thread to stop. */
	for (bool stop = false; gate_closing && !stop; usleep(1000)) {
		pthread_mutex_lock(&p->lock);
		stop = p->reclaim_stop;
		pthread_mutex_unlock(&p->lock);
	}
}

/* Wait up to 5 s for the thread to sit in the gate with n batches done. */
static bool
at_gate(int calls)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&gate_lock);
	while (!(gate_waiting && gate_calls == calls) &&
	       pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == 0)
		;
	ok = gate_waiting && gate_calls == calls;
	pthread_mutex_unlock(&gate_lock);
	return ok;
}

static void
allow(int n)
{
	pthread_mutex_lock(&gate_lock);
	gate_allow = n;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static void
closing(bool on)
{
	pthread_mutex_lock(&gate_lock);
	gate_closing = on;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static struct dio_tpool_info
info(void)
{
	struct dio_tpool_info i;

	dio_tpool_get_info(pool, &i);
	return i;
}

/* Wait up to 10 s for every reclaim to end. */
static bool
reclaimed(void)
{
	for (int i = 0; i < 1000; i++) {
		if (!info().reclaim_volumes)
			return true;
		usleep(10 * 1000);
	}
	return false;
}

/* Close the pool and the context (an io_uring one keeps the pool's fd, and its lock, open). */
static void
close_pool(void)
{
	dio_tpool_close(pool);
	pool = NULL;
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(NULL, NULL);
}

static void
open_pool(unsigned int commit_ms)
{
	opts.commit_ms = commit_ms;
	pool = test_pool_open(path, &opts);
	pool->reclaim_gate = gate;
}

static void
setup_geom(unsigned int commit_ms, uint64_t chunk, uint64_t size)
{
	struct dio_tpool_create_opts co = { .chunk_size = chunk, .journal_blocks = 64 };

	gate_allow = gate_waiting = gate_calls = 0;
	gate_closing = false;
	opts.commit_ms = commit_ms;
	pool = test_pool_make(&path, size, &co, &opts, 0);
	pool->reclaim_gate = gate;
	ctx = test_ctx_create(NULL, NULL);
	buf = test_alloc(1 * MiB);
}

static void
setup_ms(unsigned int commit_ms)
{
	setup_geom(commit_ms, CS, 80 * MiB);
}

/* 64 KiB chunks (2 KiB sub-blocks): two aligned writes fit in one chunk. */
#define BCS (64 * KiB)

static void
setup_big(void)
{
	setup_geom(100, BCS, 320 * MiB);
}

static void
setup(void)
{
	setup_ms(100);
}

static void
setup_sync(void)
{
	setup_ms(0);
}

static void
teardown(void)
{
	allow(-1);
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(buf);
}

/*
 * Volume name on [off, off + len), 1 MiB at a time: written with pattern
 * seed and flushed (write), or read back and checked against it.
 */
static void
io_span(const char *name, uint64_t off, uint64_t len, uint32_t seed, bool write)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0, "open %s", name);
	for (uint64_t o = off; o < off + len; o += 1 * MiB) {
		if (write)
			test_pattern(buf, 1 * MiB, o, seed);
		cr_assert_eq(test_io(ctx, v, write ? DIO_REQ_WRITE : DIO_REQ_READ, 0, o, 1 * MiB,
				     buf), 0);
		cr_assert(write || test_pattern_check(buf, 1 * MiB, o, seed), "%s at %llu", name,
			  (unsigned long long)o);
	}
	if (write)
		cr_assert_eq(test_io(ctx, v, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_put(v);
}

static void
fill(const char *name, uint64_t off, uint64_t len, uint32_t seed)
{
	io_span(name, off, len, seed, true);
}

static void
verify(const char *name, uint64_t off, uint64_t len, uint32_t seed)
{
	io_span(name, off, len, seed, false);
}

/* The pool at path (closed) checks clean: no problem, no leak. */
static void
check_clean(void)
{
	test_pool_check_clean(path, &opts);
}

static bool
listed(const char *name)
{
	struct dio_tpool_vol_info *vi;
	bool found = false;
	size_t n;

	cr_assert_eq(dio_tpool_volume_list(pool, &vi, &n), 0);
	for (size_t i = 0; i < n; i++)
		found |= strcmp(vi[i].name, name) == 0;
	free(vi);
	return found;
}

Test(pool_delete, replies_before_reclaim_one_leaf_per_batch, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "b", 4 * MiB), 0);
	fill("a", 0, VSIZE, 1);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	/* Replied with nothing reclaimed yet: the thread waits at the gate. */
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	cr_assert_eq(info().reclaim_volumes, 1);
	cr_assert_eq(info().reclaim_chunks, VCHUNKS);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	/* The name is gone and free again. */
	cr_assert_not(listed("a"));
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), -ENOENT);
	cr_assert_eq(dio_tpool_volume_create(pool, "a", 1 * MiB), 0);
	/* I/O on another volume goes on while the reclaim waits. */
	fill("b", 0, 4 * MiB, 2);
	verify("b", 0, 4 * MiB, 2);
	free0 -= 1024;	/* b's chunks */
	/* One batch at a time: one leaf, 1024 chunks back each. */
	for (int k = 1; k <= 4; k++) {
		allow(1);
		/* after the last one the thread sleeps, not at the gate */
		cr_assert(k < 4 ? at_gate(k + 1) : reclaimed(), "batch %d did not end", k);
		cr_assert_eq(info().reclaim_chunks, VCHUNKS - k * 1024u, "after batch %d", k);
		cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS + k * 1024u,
			     "after batch %d", k);
	}
	cr_assert(reclaimed());
	cr_assert_eq(info().reclaim_chunks, 0);
	cr_assert_eq(test_pool_free_chunks(pool), free0);
	verify("b", 0, 4 * MiB, 2);
	close_pool();
	check_clean();
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0);
	cr_assert(listed("a") && listed("b"));
}

Test(pool_delete, without_background_work_the_delete_reclaims_before_it_returns,
     .init = setup_sync, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	cr_assert_eq(gate_calls, 0);
	cr_assert_eq(info().reclaim_volumes, 0);
	cr_assert_eq(test_pool_free_chunks(pool), free0);
}

Test(pool_delete, snapshot_keeps_the_chunks_it_shares, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	fill("o", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	/* Half of o's first leaf copied on write: 512 chunks o alone maps. */
	fill("o", 0, 2 * MiB, 3);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS - 512);
	allow(-1);
	cr_assert_eq(dio_tpool_volume_delete(pool, "o"), 0);
	cr_assert(reclaimed());
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	verify("s", 0, VSIZE, 1);
	close_pool();
	check_clean();
	open_pool(100);
	verify("s", 0, VSIZE, 1);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	/* The snapshot's delete gives back the rest. */
	cr_assert_eq(dio_tpool_volume_delete(pool, "s"), 0);
	cr_assert(reclaimed());
	cr_assert_eq(test_pool_free_chunks(pool), free0);
}

/* What a crash child does before it crashes at the gate. */
typedef int (*pool_op)(struct dio_tpool *p);

static int
delete_o(struct dio_tpool *p)
{
	return dio_tpool_volume_delete(p, "o");
}

/*
 * A child opens the pool, runs op and exits at the gate's call 'at'
 * (after at - 1 batches), with a checkpoint first when ckpt: a crash
 * mid-reclaim. The parent has closed the pool.
 */
static void
crash_child(int at, bool ckpt, pool_op op)
{
	int status;
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct dio_tpool *p;

		exit_at = at;
		gate_allow = -1;
		ckpt_at_exit = ckpt;
		opts.commit_ms = 100;
		if (dio_tpool_open(path, &opts, &p) < 0)
			_exit(4);
		p->reclaim_gate = gate;
		if (op(p) < 0)
			_exit(5);
		sleep(10);
		_exit(6);	/* never at the gate */
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x", status);
}

/*
 * After crash_child: the pool checks clean and opens with nothing left
 * to reclaim; with the checkpoint the operation is in it, not in the
 * journal.
 */
static void
reopened_after_crash(bool ckpt)
{
	uint64_t tail;

	check_clean();
	open_pool(100);
	tail = info().journal_used;
	if (ckpt)
		cr_assert_eq(tail, 0, "%llu journal blocks after the checkpoint",
			     (unsigned long long)tail);
	else
		cr_assert_gt(tail, 0);
	cr_assert_eq(info().reclaim_volumes, 0);
}

static void
crash_mid_reclaim(bool ckpt)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "b", 4 * MiB), 0);
	fill("o", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	fill("o", 0, 2 * MiB, 3);	/* 512 chunks o alone maps */
	fill("o", 12 * MiB, 4 * MiB, 4);	/* and its last leaf: 1024 */
	fill("b", 0, 4 * MiB, 2);
	free0 -= VCHUNKS + 1024;	/* s and b */
	cr_assert_eq(test_pool_free_chunks(pool), free0 - 1536);
	close_pool();
	crash_child(3, ckpt, delete_o);	/* two of o's four leaves dropped */
	reopened_after_crash(ckpt);
	cr_assert_not(listed("o"));
	cr_assert_eq(test_pool_free_chunks(pool), free0);
	verify("s", 0, VSIZE, 1);
	verify("b", 0, 4 * MiB, 2);
	/* The pool goes on: the name again, written. */
	cr_assert_eq(dio_tpool_volume_create(pool, "o", 4 * MiB), 0);
	fill("o", 0, 4 * MiB, 5);
	close_pool();
	check_clean();
	open_pool(100);
	verify("s", 0, VSIZE, 1);
	verify("o", 0, 4 * MiB, 5);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - 1024);
}

Test(pool_delete, crash_mid_reclaim, .init = setup, .fini = teardown)
{
	crash_mid_reclaim(false);
}

Test(pool_delete, checkpoint_mid_reclaim_then_crash, .init = setup, .fini = teardown)
{
	crash_mid_reclaim(true);
}

/* Bytes the pool file holds on its filesystem (freed chunks are punched out). */
static uint64_t
file_bytes(void)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

Test(pool_delete, close_mid_reclaim_finishes_it, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool), held;

	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	held = file_bytes();
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	allow(1);
	cr_assert(at_gate(2));
	cr_assert_eq(info().reclaim_chunks, VCHUNKS - 1024);
	/* The thread stops at the gate; close does the other three leaves. */
	closing(true);
	close_pool();
	cr_assert_eq(gate_calls, 2);
	/* every chunk of a discarded: the file gave their space back */
	cr_assert_leq(file_bytes() + VSIZE, held + 64 * KiB, "the file holds %llu bytes, %llu "
		      "before the delete", (unsigned long long)file_bytes(),
		      (unsigned long long)held);
	check_clean();
	closing(false);
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0);
}

struct alloc_writer {
	struct dio_volume *v;
	uint64_t off, len;	/* len 0: CS */
	uint32_t seed;		/* 0: 9 */
	int ret;
	bool done;
};

static void *
alloc_write(void *arg)
{
	struct alloc_writer *w = arg;
	struct dio_ctx *wctx = test_ctx_create(NULL, NULL);
	uint64_t len = w->len ? w->len : CS;
	uint8_t *b = test_alloc(len);

	test_pattern(b, len, w->off, w->seed ? w->seed : 9);
	w->ret = test_io(wctx, w->v, DIO_REQ_WRITE, 0, w->off, len, b);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	free(b);
	dio_ctx_destroy(wctx);
	return NULL;
}

/*
 * A pool made full with a delete's reclaim pending: "a" (asize) written
 * and deleted, its reclaim held at the gate before its first batch;
 * "other" (opened into *o) written a chunk (cs) at a time until the pool
 * said ENOSPC, at the offset returned.
 */
static uint64_t
full_with_reclaim_pending(uint64_t asize, uint64_t cs, struct dio_volume **o)
{
	uint64_t off;

	cr_assert_eq(dio_tpool_volume_create(pool, "a", asize), 0);
	fill("a", 0, asize, 1);
	cr_assert_eq(dio_tpool_volume_create(pool, "other", 512 * MiB), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "other", o), 0);
	for (off = 0; off < 512 * MiB; off += cs) {
		test_pattern(buf, cs, off, 8);
		if (test_io(ctx, *o, DIO_REQ_WRITE, 0, off, cs, buf) == -ENOSPC)
			break;
	}
	cr_assert_lt(off, 512 * MiB);
	cr_assert_eq(test_pool_free_chunks(pool), 0);
	cr_assert_eq(dio_tpool_volume_delete(pool, "a"), 0);
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	return off;
}

/*
 * A full pool, a volume deleted: a write that needs a chunk waits for the
 * reclaim's next batch rather than failing with ENOSPC while the deleted
 * volume's chunks are still being given back.
 */
Test(pool_delete, a_full_pool_waits_for_the_reclaim_not_enospc, .init = setup, .fini = teardown)
{
	struct alloc_writer w = { 0 };
	struct dio_volume *o;
	uint64_t off = full_with_reclaim_pending(VSIZE, CS, &o);
	pthread_t t;

	w.v = o;
	w.off = off;
	cr_assert_eq(pthread_create(&t, NULL, alloc_write, &w), 0);
	usleep(300 * 1000);
	cr_assert_not(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE),
		      "a write into a full pool with a reclaim pending ended at once: %d", w.ret);
	allow(-1);
	pthread_join(t, NULL);
	cr_assert_eq(w.ret, 0, "the write after the delete: %d", w.ret);
	cr_assert(reclaimed());
	cr_assert_eq(test_io(ctx, o, DIO_REQ_READ, 0, off, CS, buf), 0);
	cr_assert(test_pattern_check(buf, CS, off, 9));
	dio_volume_put(o);
	close_pool();
	check_clean();
}

/*
 * Two writes into one hole of a full pool, both waiting for the reclaim's
 * batch with the pool lock dropped: the second to get a chunk must find
 * the one the first mapped there, not map another over it (one half lost,
 * a chunk leaked).
 */
Test(pool_delete, two_waiting_writes_into_one_hole_share_its_chunk, .init = setup_big,
     .fini = teardown)
{
	struct alloc_writer w[2] = { 0 };
	struct dio_volume *o;
	/* "a" of two leaves of 1024 chunks: its reclaim goes to the thread */
	uint64_t off = full_with_reclaim_pending(128 * MiB, BCS, &o);
	pthread_t t[2];

	for (int i = 0; i < 2; i++) {
		w[i] = (struct alloc_writer){ .v = o, .off = off + (uint64_t)i * BCS / 2,
					      .len = BCS / 2, .seed = 10 + (uint32_t)i };
		cr_assert_eq(pthread_create(&t[i], NULL, alloc_write, &w[i]), 0);
	}
	usleep(300 * 1000);
	for (int i = 0; i < 2; i++)
		cr_assert_not(__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE),
			      "write %d into a full pool ended at once: %d", i, w[i].ret);
	allow(-1);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].ret, 0, "write %d: %d", i, w[i].ret);
	}
	cr_assert(reclaimed());
	for (int i = 0; i < 2; i++) {
		uint64_t at = off + (uint64_t)i * BCS / 2;

		cr_assert_eq(test_io(ctx, o, DIO_REQ_READ, 0, at, BCS / 2, buf), 0);
		cr_assert(test_pattern_check(buf, BCS / 2, at, 10 + (uint32_t)i),
			  "half %d of the chunk both wrote lost its write", i);
	}
	dio_volume_put(o);
	close_pool();
	check_clean();
}

/*
 * The metadata reserve (R5) with a delete's reclaim pending. "o" maps
 * 32 MiB (8 leaves) of the 80 MiB pool (about 20,000 chunks) and a
 * snapshot "s1" of it stays; a write into each leaf of o gave o leaves of
 * its own, so each of its chunks has 2 references (s1's leaf and o's).
 * A snapshot of o is then taken and deleted, its reclaim held at the
 * gate: o's leaves are still shared with the deleted snapshot's, so a
 * write into one copies it and each of its chunks goes to a third
 * reference, a REF record. A checkpoint would then write a MAP per
 * chunk for s1, o and the copies and a REF per chunk, more than the
 * reserve holds once two leaves are copied. The deleted snapshot's
 * pointers are that room once reclaimed (o's leaves its own again, no
 * copy): a write that finds no metadata room waits for the reclaim's next
 * batch, as one that finds no free chunk does, rather than failing with
 * ENOSPC.
 */
#define MVSIZE (32 * MiB)
#define MLEAVES (MVSIZE / (CS * TP_LEAF))

struct leaf_writer {
	struct dio_volume *v;
	int ret;		/* of the first write that failed, or 0 */
	int at;			/* its leaf, or -1 */
	bool done;
};

/* 4 KiB into each leaf of o in turn (pattern 9), the first failure kept. */
static void *
leaves_write(void *arg)
{
	struct leaf_writer *w = arg;
	struct dio_ctx *wctx = test_ctx_create(NULL, NULL);
	uint8_t *b = test_alloc(CS);

	w->at = -1;
	for (int k = 0; k < (int)MLEAVES && !w->ret; k++) {
		uint64_t off = (uint64_t)k * CS * TP_LEAF;

		test_pattern(b, CS, off, 9);
		w->ret = test_io(wctx, w->v, DIO_REQ_WRITE, 0, off, CS, b);
		if (w->ret)
			w->at = k;
	}
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	free(b);
	dio_ctx_destroy(wctx);
	return NULL;
}

/*
 * leaves_write on o in a thread of its own while the reclaim is held at
 * its gate: the writes must still be waiting 300 ms later; then the
 * reclaim goes on, and the writer ends (w's ret and at say how).
 */
static void
writes_wait_for_the_reclaim(struct leaf_writer *w, struct dio_volume *o)
{
	pthread_t t;

	w->v = o;
	cr_assert_eq(pthread_create(&t, NULL, leaves_write, w), 0);
	usleep(300 * 1000);
	cr_assert_not(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE),
		      "the writes with the reclaim pending ended at once: %d at leaf %d", w->ret,
		      w->at);
	allow(-1);
	pthread_join(t, NULL);
}

/*
 * o (MVSIZE, pattern 1) with a live snapshot "s1" and leaves of its own
 * again: 4 KiB written (pattern 2) at the start of each, so that each
 * chunk but those has 2 references.
 */
static void
o_diverged_from_s1(void)
{
	struct dio_volume *o;

	cr_assert_eq(dio_tpool_volume_create(pool, "o", MVSIZE), 0);
	fill("o", 0, MVSIZE, 1);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s1"), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	for (uint64_t k = 0; k < MLEAVES; k++) {
		test_pattern(buf, CS, k * CS * TP_LEAF, 2);
		cr_assert_eq(test_io(ctx, o, DIO_REQ_WRITE, 0, k * CS * TP_LEAF, CS, buf), 0);
	}
	dio_volume_put(o);
}

/* name reads as o_diverged_from_s1 left o: pattern 2 at each leaf's start, 1 elsewhere. */
static void
verify_diverged(const char *name)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0, "open %s", name);
	for (uint64_t k = 0; k < MLEAVES; k++) {
		uint64_t off = k * CS * TP_LEAF;

		cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, off, 1 * MiB, buf), 0);
		cr_assert(test_pattern_check(buf, CS, off, 2), "%s leaf %llu", name,
			  (unsigned long long)k);
		cr_assert(test_pattern_check(buf + CS, 1 * MiB - CS, off + CS, 1), "%s leaf %llu",
			  name, (unsigned long long)k);
	}
	dio_volume_put(v);
	for (uint64_t k = 0; k < MLEAVES; k++)
		verify(name, k * CS * TP_LEAF + 1 * MiB, CS * TP_LEAF - 1 * MiB, 1);
}

/*
 * The least copying o's leaf k adds to a checkpoint (lock held): its n
 * MAPs, less the LEAF and the two LREFs of the shared leaf when both its
 * holders are live (one less when one is a deleted volume's), and a REF
 * per chunk going from 2 references to 3.
 */
static uint64_t
copy_adds_at_least(uint64_t k)
{
	struct tp_leaf *lf = tp_vol_by_name(pool, "o")->leaf[k];
	uint64_t n = lf->n - 3;

	for (uint32_t j = 0; j < TP_LEAF; j++)
		n += lf->e[j].p1 && pool->space[lf->e[j].p1 - 1] == 2;
	return n;
}

Test(pool_delete, metadata_room_waits_for_the_reclaim_not_enospc, .init = setup,
     .fini = teardown)
{
	struct leaf_writer w = { 0 };
	struct dio_volume *o;

	o_diverged_from_s1();
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	cr_assert_eq(dio_tpool_volume_delete(pool, "s"), 0);
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	pthread_mutex_lock(&pool->lock);
	/* the premise: a checkpoint with two of o's leaves copied would outgrow the reserve */
	cr_assert_not(tp_meta_fits(pool, 2 * TP_LEAF, 0, copy_adds_at_least(0) * 2));
	pthread_mutex_unlock(&pool->lock);
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	writes_wait_for_the_reclaim(&w, o);
	cr_assert_eq(w.ret, 0, "the write into leaf %d after the delete: %d", w.at, w.ret);
	cr_assert(reclaimed());
	for (uint64_t k = 0; k < MLEAVES; k++) {
		uint64_t off = k * CS * TP_LEAF;

		cr_assert_eq(test_io(ctx, o, DIO_REQ_READ, 0, off, CS, buf), 0);
		cr_assert(test_pattern_check(buf, CS, off, 9), "leaf %llu", (unsigned long long)k);
		cr_assert_eq(test_io(ctx, o, DIO_REQ_READ, 0, off + CS, CS, buf), 0);
		cr_assert(test_pattern_check(buf, CS, off + CS, 1), "leaf %llu", (unsigned long long)k);
	}
	dio_volume_put(o);
	close_pool();
	check_clean();
}

/*
 * The same with a live snapshot "keep" of o as well: the deleted one's
 * leaves give no room back (keep still shares o's), so the write waits
 * only as long as the reclaim runs and then fails with ENOSPC, the
 * reserve as full as it was; the pool checks clean.
 */
Test(pool_delete, metadata_room_wait_ends_with_the_reclaim, .init = setup, .fini = teardown)
{
	struct leaf_writer w = { 0 };
	struct dio_volume *o;

	o_diverged_from_s1();
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "keep"), 0);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	cr_assert_eq(dio_tpool_volume_delete(pool, "s"), 0);
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	cr_assert_eq(dio_tpool_volume_open(pool, "o", &o), 0);
	writes_wait_for_the_reclaim(&w, o);
	cr_assert_eq(w.ret, -ENOSPC, "the write into leaf %d: %d", w.at, w.ret);
	cr_assert_gt(w.at, 0);
	cr_assert(reclaimed());
	pthread_mutex_lock(&pool->lock);
	cr_assert_eq(pool->nrq, 0);
	/* counted exactly, not even the least the copy adds fits */
	cr_assert_not(tp_meta_fits(pool, TP_LEAF, 0, copy_adds_at_least((uint64_t)w.at)),
		      "room after all: the ENOSPC was early");
	pthread_mutex_unlock(&pool->lock);
	verify_diverged("keep");
	verify("s1", 0, MVSIZE, 1);
	dio_volume_put(o);
	close_pool();
	check_clean();
}

/*
 * Revert and shrink (issue 11): what they drop, a reverted volume's old
 * map and the whole leaves past a shrunk volume's new end, goes to a
 * ghost the same thread reclaims; the volume reads its new contents when
 * the call returns, before any batch.
 */

/* name reads zeros on [off, off + len). */
static void
zeros(const char *name, uint64_t off, uint64_t len)
{
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(pool, name, &v), 0, "open %s", name);
	for (uint64_t o = off; o < off + len; o += 1 * MiB) {
		memset(buf, 0xa5, 1 * MiB);
		cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, o, 1 * MiB, buf), 0);
		for (size_t i = 0; i < 1 * MiB; i++)
			cr_assert_eq(buf[i], 0, "%s at %llu: not zeros", name,
				     (unsigned long long)(o + i));
	}
	dio_volume_put(v);
}

static size_t
nvolumes(void)
{
	struct dio_tpool_vol_info *vi;
	size_t n;

	cr_assert_eq(dio_tpool_volume_list(pool, &vi, &n), 0);
	free(vi);
	return n;
}

/* o: 4 leaves written (1), snapshot s, o rewritten whole (3): its 4096 chunks its own. */
static void
make_reverted_pair(void)
{
	cr_assert_eq(dio_tpool_volume_create(pool, "o", VSIZE), 0);
	fill("o", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "o", "s"), 0);
	fill("o", 0, VSIZE, 3);
}

static int
revert_o(struct dio_tpool *p)
{
	return dio_tpool_volume_revert(p, "o", "s");
}

#define SHRUNK (5 * MiB)	/* leaf 1 cut at 256 of 1024 chunks, leaves 2 and 3 dropped */
#define SHRUNK_CHUNKS (SHRUNK / CS)

static int
shrink_a(struct dio_tpool *p)
{
	return dio_tpool_volume_resize(p, "a", SHRUNK);
}

Test(pool_delete, revert_replies_before_reclaim, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	make_reverted_pair();
	cr_assert_eq(test_pool_free_chunks(pool), free0 - 2 * VCHUNKS);
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "s"), 0);
	/* Replied with nothing reclaimed: o reads s already, its old map waits. */
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	cr_assert_eq(info().reclaim_volumes, 1);
	cr_assert_eq(info().reclaim_chunks, VCHUNKS);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - 2 * VCHUNKS);
	cr_assert_eq(test_pool_vol_info(pool, "o").mapped, VCHUNKS);
	cr_assert_eq(nvolumes(), 2, "the ghost is listed");
	verify("o", 0, VSIZE, 1);
	/* o is written meanwhile: a copy, not a write into s's chunks */
	fill("o", 0, 1 * MiB, 4);
	verify("s", 0, VSIZE, 1);
	free0 -= 256;
	for (int k = 1; k <= 4; k++) {
		allow(1);
		cr_assert(k < 4 ? at_gate(k + 1) : reclaimed(), "batch %d did not end", k);
		cr_assert_eq(info().reclaim_chunks, VCHUNKS - k * 1024u, "after batch %d", k);
		cr_assert_eq(test_pool_free_chunks(pool), free0 - 2 * VCHUNKS + k * 1024u,
			     "after batch %d", k);
	}
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	verify("o", 0, 1 * MiB, 4);
	verify("o", 1 * MiB, VSIZE - 1 * MiB, 1);
	close_pool();
	check_clean();
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	verify("o", 0, 1 * MiB, 4);
	verify("o", 1 * MiB, VSIZE - 1 * MiB, 1);
	verify("s", 0, VSIZE, 1);
}

Test(pool_delete, shrink_replies_before_reclaim, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", SHRUNK), 0);
	/* Replied: the cut leaf's 768 chunks free, the two leaves past wait. */
	cr_assert(at_gate(1), "the reclaim thread did not reach its gate");
	cr_assert_eq(info().reclaim_volumes, 1);
	cr_assert_eq(info().reclaim_chunks, 2048);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS + 768);
	cr_assert_eq(test_pool_vol_info(pool, "a").size, SHRUNK);
	cr_assert_eq(test_pool_vol_info(pool, "a").mapped, SHRUNK_CHUNKS);
	cr_assert_eq(nvolumes(), 1, "the ghost is listed");
	verify("a", 0, SHRUNK, 1);
	/* Grown back before the reclaim: holes past the old end, not the ghost's chunks. */
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", VSIZE), 0);
	zeros("a", SHRUNK, VSIZE - SHRUNK);
	fill("a", 12 * MiB, 1 * MiB, 5);	/* 256 chunks in what was leaf 3 */
	free0 -= 256;
	for (int k = 1; k <= 2; k++) {
		allow(1);
		cr_assert(k < 2 ? at_gate(k + 1) : reclaimed(), "batch %d did not end", k);
		cr_assert_eq(info().reclaim_chunks, 2048 - k * 1024u, "after batch %d", k);
		cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS + 768 + k * 1024u,
			     "after batch %d", k);
	}
	cr_assert_eq(test_pool_free_chunks(pool), free0 - SHRUNK_CHUNKS);
	verify("a", 12 * MiB, 1 * MiB, 5);
	close_pool();
	check_clean();
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - SHRUNK_CHUNKS);
	verify("a", 0, SHRUNK, 1);
	zeros("a", SHRUNK, 7 * MiB);
	verify("a", 12 * MiB, 1 * MiB, 5);
	zeros("a", 13 * MiB, 3 * MiB);
}

Test(pool_delete, without_background_work_revert_and_shrink_reclaim_before_they_return,
     .init = setup_sync, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool);

	make_reverted_pair();
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "s"), 0);
	cr_assert_eq(info().reclaim_volumes, 0);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS);
	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", SHRUNK), 0);
	cr_assert_eq(info().reclaim_volumes, 0);
	cr_assert_eq(gate_calls, 0);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS - SHRUNK_CHUNKS);
	verify("o", 0, VSIZE, 1);
	verify("a", 0, SHRUNK, 1);
	close_pool();
	check_clean();
}

/* Revert (shrink when !rev) in a child that crashes mid-reclaim, after a checkpoint when ckpt. */
static void
crash_mid_ghost(bool rev, bool ckpt)
{
	uint64_t free0 = test_pool_free_chunks(pool), used;

	cr_assert_eq(dio_tpool_volume_create(pool, "b", 4 * MiB), 0);
	fill("b", 0, 4 * MiB, 2);
	if (rev) {
		make_reverted_pair();
		used = 1024 + VCHUNKS;	/* b, and s shared by o */
	} else {
		cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
		fill("a", 0, VSIZE, 1);
		used = 1024 + SHRUNK_CHUNKS;
	}
	close_pool();
	/* revert: two of the old map's four leaves dropped; shrink: one of two */
	crash_child(rev ? 3 : 2, ckpt, rev ? revert_o : shrink_a);
	reopened_after_crash(ckpt);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - used);
	cr_assert_eq(nvolumes(), rev ? 3 : 2);
	verify("b", 0, 4 * MiB, 2);
	if (rev) {
		verify("o", 0, VSIZE, 1);
		verify("s", 0, VSIZE, 1);
		fill("o", 0, 4 * MiB, 6);	/* the pool goes on */
		used += 1024;
	} else {
		cr_assert_eq(test_pool_vol_info(pool, "a").size, SHRUNK);
		verify("a", 0, SHRUNK, 1);
		cr_assert_eq(dio_tpool_volume_resize(pool, "a", VSIZE), 0);
		zeros("a", SHRUNK, VSIZE - SHRUNK);
		fill("a", 8 * MiB, 4 * MiB, 6);
		used += 1024;
	}
	close_pool();
	check_clean();
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - used);
	if (rev)
		verify("o", 0, 4 * MiB, 6);
	else
		verify("a", 8 * MiB, 4 * MiB, 6);
}

Test(pool_delete, revert_crash_mid_reclaim, .init = setup, .fini = teardown)
{
	crash_mid_ghost(true, false);
}

Test(pool_delete, revert_checkpoint_mid_reclaim_then_crash, .init = setup, .fini = teardown)
{
	crash_mid_ghost(true, true);
}

Test(pool_delete, shrink_crash_mid_reclaim, .init = setup, .fini = teardown)
{
	crash_mid_ghost(false, false);
}

Test(pool_delete, shrink_checkpoint_mid_reclaim_then_crash, .init = setup, .fini = teardown)
{
	crash_mid_ghost(false, true);
}

/* A close while a revert's and a shrink's ghosts wait: it finishes both. */
Test(pool_delete, close_mid_ghost_reclaim_finishes_it, .init = setup, .fini = teardown)
{
	uint64_t free0 = test_pool_free_chunks(pool), held;

	make_reverted_pair();
	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	held = file_bytes();
	cr_assert_eq(dio_tpool_volume_revert(pool, "o", "s"), 0);
	cr_assert_eq(dio_tpool_volume_resize(pool, "a", SHRUNK), 0);
	cr_assert(at_gate(1));
	cr_assert_eq(info().reclaim_volumes, 2);
	cr_assert_eq(info().reclaim_chunks, VCHUNKS + 2048);
	closing(true);
	close_pool();
	cr_assert_eq(gate_calls, 1);
	/* o's old map, a's tail and cut leaf discarded: the file gave their space back */
	cr_assert_leq(file_bytes() + (VCHUNKS + 2048 + 768) * CS, held + 64 * KiB,
		      "the file holds %llu bytes, %llu before", (unsigned long long)file_bytes(),
		      (unsigned long long)held);
	check_clean();
	closing(false);
	open_pool(100);
	cr_assert_eq(test_pool_free_chunks(pool), free0 - VCHUNKS - SHRUNK_CHUNKS);
	verify("o", 0, VSIZE, 1);
	verify("a", 0, SHRUNK, 1);
}

/*
 * Set (on) or clear TP_RZ_DROP in the journal's shrink record of the pool
 * at path (closed), resealing its block. false: no such record.
 */
static bool
rz_drop_flag(bool on)
{
	static uint8_t blk[TP_BLOCK];
	struct tp_super sb = { 0 };
	bool found = false;
	int fd = open(path, O_RDWR);

	cr_assert(fd >= 0);
	for (uint64_t slot = 0; slot < 2; slot++) {
		const struct tp_super *s = (const void *)blk;

		cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(slot * TP_BLOCK)), TP_BLOCK);
		if (tp_verify(blk, s->h.uuid, TP_BT_SUPER, slot) && s->h.gen >= sb.h.gen)
			sb = *s;
	}
	cr_assert_eq(sb.h.magic, TP_MAGIC);
	for (uint64_t b = sb.journal_start; b < sb.journal_start + sb.journal_blocks; b++) {
		struct tp_hdr *h = (void *)blk;
		size_t off = 0;

		cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		if (!tp_verify(blk, sb.h.uuid, TP_BT_JOURNAL, b))
			continue;
		for (uint32_t i = 0; i < h->count; i++) {
			struct tp_rec *r = (void *)(blk + sizeof(*h) + off);

			off += tp_rec_size(r->type);
			if (r->type != TP_R_RESIZE || r->a != SHRUNK)
				continue;
			r->rsvd = on ? TP_RZ_DROP : 0;
			found = true;
		}
		if (!found)
			continue;
		tp_seal(blk, sb.h.uuid, TP_BT_JOURNAL, h->owner, h->gen, b, h->aux, h->count,
			h->used);
		cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		break;
	}
	close(fd);
	return found;
}

/*
 * A version from before TP_RZ_DROP reads a shrink's RESIZE as one without
 * it, over mapped chunks: the replay must refuse the open (as it does, and
 * this version does for such a record) rather than serve the chunks past
 * the end or end the replay there. With the flag it opens, shrunk.
 */
Test(pool_delete, shrink_record_read_without_its_flag_is_refused, .init = setup, .fini = teardown)
{
	struct dio_tpool *q;

	cr_assert_eq(dio_tpool_volume_create(pool, "a", VSIZE), 0);
	fill("a", 0, VSIZE, 1);
	close_pool();
	crash_child(2, false, shrink_a);
	cr_assert(rz_drop_flag(false), "no shrink record in the journal");
	errbuf[0] = 0;
	cr_assert_eq(dio_tpool_open(path, &opts, &q), -EUCLEAN,
		     "a shrink over mapped chunks without its flag was replayed");
	cr_assert(strstr(errbuf, "shrink over mapped chunks"), "message: %s", errbuf);
	cr_assert(rz_drop_flag(true));
	check_clean();
	open_pool(100);
	cr_assert_eq(test_pool_vol_info(pool, "a").size, SHRUNK);
	verify("a", 0, SHRUNK, 1);
}

/*
 * R5 with shared leaves: writes into holes may not outgrow the reserve. A
 * write into a hole adds a reference (a MAP at the next checkpoint); the
 * copy of a shared leaf and a snapshot were guarded (tp_meta_room), the
 * hole fill was not. Here, 64 KiB chunks (5109 of them; a checkpoint has
 * room for about one MAP per chunk, the reserve for two checkpoints): "a"
 * maps 35% of them with 2 KiB each (MAP records, no RUNs), a live
 * snapshot shares them, a write into each of a's leaves copies it (3576
 * references), then "b" fills free chunks until ENOSPC. Unguarded, b took
 * every free chunk (6895 references), the second checkpoint failed with
 * ENOSPC and so did every one after it, and once the journal was full a
 * FLUSH failed after the writes before it were replied. Now b's fill
 * stops at ENOSPC before a checkpoint would outgrow the reserve
 * (tp_meta_fits), and checkpoints and flushes go on working.
 */
Test(pool_delete, hole_fills_after_a_leaf_copy_keep_within_the_reserve, .init = setup_big,
     .fini = teardown)
{
	struct dio_volume *a, *b;
	uint64_t n = pool->sb.nr_chunks, achunks = n * 35 / 100, off;
	int ret = 0;

	cr_assert_eq(dio_tpool_volume_create(pool, "a", achunks * BCS), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &a), 0);
	for (uint64_t c = 0; c < achunks; c++) {
		test_pattern(buf, 2 * KiB, c * BCS, 1);
		cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, c * BCS, 2 * KiB, buf), 0);
	}
	dio_volume_put(a);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "a", "s"), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &a), 0);
	for (uint64_t c = 0; c < achunks; c += TP_LEAF) {
		test_pattern(buf, 2 * KiB, c * BCS, 2);
		cr_assert_eq(test_io(ctx, a, DIO_REQ_WRITE, 0, c * BCS, 2 * KiB, buf), 0);
	}
	cr_assert_eq(dio_tpool_volume_create(pool, "b", 1024ull * MiB), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "b", &b), 0);
	for (off = 0; off < 1024ull * MiB; off += BCS) {
		test_pattern(buf, 2 * KiB, off, 3);
		if (test_io(ctx, b, DIO_REQ_WRITE, 0, off, 2 * KiB, buf) == -ENOSPC)
			break;
	}
	cr_log_info("b filled %llu chunks: %llu references of %llu chunks",
		    (unsigned long long)(off / BCS), (unsigned long long)pool->nrefs,
		    (unsigned long long)n);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(dio_tpool_checkpoint(pool), 0, "checkpoint %d", i);
	/* writes into b's unwritten sub-blocks: no new chunk, records only */
	for (uint64_t s = 1; s < 8 && !ret; s++)
		for (uint64_t c = 0; c < off / BCS && !ret; c++) {
			uint64_t o = c * BCS + s * 2 * KiB;

			test_pattern(buf, 2 * KiB, o, 4);
			ret = test_io(ctx, b, DIO_REQ_WRITE, 0, o, 2 * KiB, buf);
			if (!ret && c % 256 == 255)
				ret = test_io(ctx, b, DIO_REQ_FLUSH, 0, 0, 0, NULL);
		}
	cr_assert_eq(ret, 0, "a write or flush into b's chunks");
	dio_volume_put(a);
	dio_volume_put(b);
	close_pool();
	check_clean();
}
