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

	/* the thread goes first: nothing may be written on the way out */
	tp_committer_stop(p);
	p->readonly = true;
	dio_volume_put(v);
	dio_tpool_close(p);
	dio_ctx_destroy(ctx);
	ctx = test_ctx_create(&fo, &fault);
	cr_assert_eq(dio_tpool_open(path, &opts, &pool), 0, "%s", errbuf);
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
