/* SPDX-License-Identifier: MIT */
/*
 * DIO_MAP_HELD from the engine's side (lib/dio-rw.c): a write request
 * that has mapped an extent keeps its map_end until it is done, so the
 * extents it maps after that must not be parked by a snapshot of the
 * pool volume waiting for its writes under way to end: that snapshot
 * would wait for the request, the request for the snapshot, until the
 * snapshot gives up (-EBUSY after 2 s). A new write is parked, and goes
 * on after the snapshot, which holds the first request and not it.
 *
 * The snapshot is made to wait at the right moment by the test: a hook
 * on the volume's map_begin starts it and holds the request's second
 * map_begin until the snapshot waits (in one extent walk), or a copy of
 * the second chunk held open by the test keeps the request waiting on
 * map_wait until the snapshot waits (a walk resumed after map_wait).
 */
#include <errno.h>
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
static struct dio_volume *vol;
static uint8_t *wbuf, *rbuf;

/* A snapshot in a thread of its own. */
static struct {
	pthread_t th;
	bool started;
	const char *name;
	int ret;	/* 1 while under way */
	double end;	/* when it returned */
} bg;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A pool of 64 KiB chunks, volume "a" of 1 MiB written whole (seed 1) and flushed. */
static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * KiB, .journal_blocks = 64 };

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 1 * MiB);
	ctx = test_ctx_create(NULL, NULL);
	wbuf = test_alloc(1 * MiB);
	rbuf = test_alloc(1 * MiB);
	cr_assert_eq(dio_tpool_volume_open(pool, "a", &vol), 0);
	test_pattern(wbuf, 1 * MiB, 0, 1);
	cr_assert_eq(test_io(ctx, vol, DIO_REQ_WRITE, 0, 0, 1 * MiB, wbuf), 0);
	cr_assert_eq(test_io(ctx, vol, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
}

static void
teardown(void)
{
	if (bg.started)
		pthread_join(bg.th, NULL);	/* a failed test: it gives up within 2 s */
	dio_volume_put(vol);
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(wbuf);
	free(rbuf);
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

/* ---- a snapshot in a thread of its own ---- */

static void *
bg_snap_fn(void *arg)
{
	(void)arg;
	bg.ret = dio_tpool_volume_snapshot(pool, "a", bg.name);
	bg.end = now_s();
	return NULL;
}

static void
snap_start(const char *name)
{
	bg.name = name;
	bg.ret = 1;
	cr_assert_eq(pthread_create(&bg.th, NULL, bg_snap_fn, NULL), 0);
	bg.started = true;
}

/*
 * Wait up to 5 s until the snapshot waits for the origin's writes under
 * way in its long drain: past its short one (TP_SNAP_PARK_US), which
 * those writes outlast here (pool-snap.c).
 */
static bool
snap_waits(void)
{
	bool waits = false;

	for (int i = 0; i < 5000 && !waits; i++) {
		pthread_mutex_lock(&pool->lock);
		waits = tp_vol_by_name(pool, "a")->snaps && pool->snap_t[TP_SP_LETGO];
		pthread_mutex_unlock(&pool->lock);
		if (!waits)
			usleep(1000);
	}
	return waits;
}

static uint64_t
parks(void)
{
	uint64_t n;

	pthread_mutex_lock(&pool->lock);
	n = pool->snap_parks;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

/* ---- requests submitted together ---- */

struct areq {
	struct dio_req req;
	uint8_t *buf;
	int done, ret;
};

static void
areq_done(struct dio_req *req, int ret)
{
	struct areq *a = (struct areq *)req;

	a->done = 1;
	a->ret = ret;
}

/* Submit a write of [off, off + len) with pattern seed. */
static void
areq_write(struct areq *a, uint64_t off, uint64_t len, uint32_t seed)
{
	memset(a, 0, sizeof(*a));
	a->buf = test_alloc(len);
	test_pattern(a->buf, len, off, seed);
	a->req = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = off, .len = len, .buf = a->buf,
				   .done = areq_done };
	cr_assert_eq(dio_submit(ctx, vol, &a->req), 0);
}

/* Reap until a is done, 5 s at most; its result. */
static int
areq_wait(struct areq *a)
{
	double t0 = now_s();

	while (!a->done && now_s() - t0 < 5)
		cr_assert_geq(dio_ctx_reap(ctx, false), 0);
	cr_assert(a->done, "a write did not end within 5 s");
	free(a->buf);
	return a->ret;
}

/*
 * The request [0, 128 KiB) (seed 2) ended while the snapshot waited for
 * it, and the new write [256 KiB, 320 KiB) (seed 3) parked by it: the
 * snapshot ends at once, holds the request and not the new write, and
 * both writes land in the origin.
 */
static void
held_and_parked_end(struct areq *held, uint64_t parks0)
{
	struct areq fresh;
	double t;

	areq_write(&fresh, 256 * KiB, 64 * KiB, 3);
	cr_assert_eq(parks(), parks0 + 1, "a new write was not parked by the snapshot");
	usleep(50 * 1000);
	cr_assert_geq(dio_ctx_reap(ctx, false), 0);
	cr_assert(!fresh.done, "a new write ended while the snapshot waited");
	cr_assert_eq(bg.ret, 1, "the snapshot ended (%d) with a request under way", bg.ret);
	cr_assert_eq(areq_wait(held), 0, "the request under way failed");
	t = now_s();
	cr_assert_eq(areq_wait(&fresh), 0, "the parked write failed");
	pthread_join(bg.th, NULL);
	bg.started = false;
	cr_assert_eq(bg.ret, 0, "the snapshot failed (%d): it waited for a request it had "
		     "parked", bg.ret);
	cr_assert_lt(bg.end - t, 1.0, "the snapshot ended %.2f s after the request", bg.end - t);
	cr_assert(reads("s", 0, 128 * KiB, 2), "the snapshot misses the request under way");
	cr_assert(reads("s", 128 * KiB, 1 * MiB - 128 * KiB, 1),
		  "the snapshot holds the write it parked");
	cr_assert(reads("a", 0, 128 * KiB, 2));
	cr_assert(reads("a", 128 * KiB, 128 * KiB, 1));
	cr_assert(reads("a", 256 * KiB, 64 * KiB, 3), "the parked write did not land");
	cr_assert(reads("a", 320 * KiB, 1 * MiB - 320 * KiB, 1));
}

/* ---- one extent walk: the hook on map_begin ---- */

static const struct dio_map_ops *real_ops;
static struct dio_map_ops hooked_ops;
static uint64_t hook_pos = UINT64_MAX;
static unsigned int hook_flags;

static int
hook_map_begin(struct dio_volume *v, uint64_t pos, uint64_t len, unsigned int flags,
	       struct dio_extent *ext)
{
	if (pos == hook_pos && (flags & DIO_MAP_WRITE)) {
		hook_pos = UINT64_MAX;
		hook_flags = flags;
		snap_start("s");
		cr_assert(snap_waits(), "the snapshot does not wait for the request under way");
	}
	return real_ops->map_begin(v, pos, len, flags, ext);
}

/*
 * The request's first extent is mapped when the snapshot starts waiting
 * for it, its second only then: the engine maps it DIO_MAP_HELD, which
 * the snapshot does not park. A new write is parked.
 */
Test(pool_held, second_extent_of_a_request_is_not_parked, .init = setup, .fini = teardown)
{
	uint64_t parks0;
	struct areq held;

	real_ops = vol->map_ops;
	hooked_ops = *real_ops;
	hooked_ops.map_begin = hook_map_begin;
	vol->map_ops = &hooked_ops;
	hook_pos = 64 * KiB;
	parks0 = parks();
	areq_write(&held, 0, 128 * KiB, 2);
	cr_assert_eq(hook_pos, UINT64_MAX, "the request's second extent was never mapped");
	cr_assert_eq(parks(), parks0, "the snapshot parked the request it waits for");
	cr_assert(hook_flags & DIO_MAP_HELD, "the engine mapped the second extent of a request "
		  "without DIO_MAP_HELD (flags %#x)", hook_flags);
	held_and_parked_end(&held, parks0);
	vol->map_ops = real_ops;
}

/*
 * The request's first extent is mapped, its second waits (map_wait) for
 * a copy of that chunk, held open by the test, while the snapshot starts
 * waiting for it. When the copy ends the request maps its second extent
 * again: with DIO_MAP_HELD, not parked. A new write is parked.
 */
Test(pool_held, request_resumed_after_map_wait_is_not_parked, .init = setup, .fini = teardown)
{
	struct dio_extent cow;
	uint64_t parks0;
	struct areq held;

	/* every chunk of a shared with s0: writes copy them */
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "a", "s0"), 0);
	cr_assert_eq(vol->map_ops->map_begin(vol, 64 * KiB, 64 * KiB, DIO_MAP_WRITE, &cow), 0);
	cr_assert(cow.flags & DIO_EXT_SHARED, "no copy of a shared chunk");
	parks0 = parks();
	areq_write(&held, 0, 128 * KiB, 2);
	cr_assert_geq(dio_ctx_reap(ctx, false), 0);
	cr_assert(!held.done, "the request did not wait for the copy of its second chunk");
	snap_start("s");
	cr_assert(snap_waits(), "the snapshot does not wait for the request under way");
	/* the copy given up: its chunk back, the request's second extent mapped again */
	cr_assert_eq(vol->map_ops->map_end(vol, &cow, 0, DIO_MAP_WRITE), 0);
	cr_assert_eq(parks(), parks0, "the snapshot parked a write");
	held_and_parked_end(&held, parks0);
	cr_assert(reads("s0", 0, 1 * MiB, 1), "the first snapshot changed");
}
