/* SPDX-License-Identifier: MIT */
/*
 * What changed since a snapshot (dio_tpool_volume_diff, lib/pool-diff.c):
 * exactly the chunks written, trimmed or zeroed after it, whole chunks,
 * nothing else; the same through the open volume; against an older
 * snapshot the union of both periods; a range in the middle, merged runs,
 * a stop from the callback, and unknown volumes refused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define CS (64 * KiB)
#define NCH 40			/* chunks in the volume (one map leaf) */
#define VSIZE ((uint64_t)NCH * CS)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static struct dio_tpool *pool;
static struct dio_ctx *ctx;
static struct dio_volume *vol;
static uint8_t *buf;

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CS, .journal_blocks = 64 };

	pool = test_pool_make(&path, 32 * MiB, &co, &opts, 0);
	cr_assert_eq(dio_tpool_volume_create(pool, "v", VSIZE), 0);
	cr_assert_eq(dio_tpool_volume_open(pool, "v", &vol), 0);
	ctx = test_ctx_create(NULL, NULL);
	buf = test_alloc(VSIZE);
	memset(buf, 0xab, VSIZE);
}

static void
teardown(void)
{
	dio_volume_put(vol);
	dio_ctx_destroy(ctx);
	test_pool_remove(pool, path);
	free(buf);
}

static void
io(uint8_t op, uint64_t off, uint64_t len)
{
	cr_assert_eq(test_io(ctx, vol, op, 0, off, len, op == DIO_REQ_WRITE ? buf : NULL), 0,
		     "op %u at %llu", op, (unsigned long long)off);
}

/* The runs a diff reported, and which chunks they say changed. */
struct seen {
	uint64_t next;		/* where the next run must start */
	unsigned int runs;
	int stop_after;		/* return 1 after this many runs; 0: never */
	bool changed[NCH + 1];
	bool last_changed, any;
};

static int
collect(void *priv, uint64_t off, uint64_t len, bool changed)
{
	struct seen *s = priv;

	cr_assert_eq(off, s->next, "runs in order, no gap: %llu after %llu",
		     (unsigned long long)off, (unsigned long long)s->next);
	cr_assert(len > 0);
	cr_assert(!s->any || s->last_changed != changed, "adjacent runs alike are merged");
	for (uint64_t c = off / CS; c * CS < off + len; c++)
		s->changed[c] = changed;
	s->next = off + len;
	s->last_changed = changed;
	s->any = true;
	s->runs++;
	return s->stop_after && s->runs == (unsigned int)s->stop_after;
}

static void
expect(const char *base, const char *target, const unsigned int *want, size_t nwant)
{
	struct seen s = { 0 };
	bool w[NCH] = { false };

	for (size_t i = 0; i < nwant; i++)
		w[want[i]] = true;
	cr_assert_eq(dio_tpool_volume_diff(pool, base, target, 0, UINT64_MAX, collect, &s), 0);
	cr_assert_eq(s.next, VSIZE, "the runs cover the volume");
	for (unsigned int c = 0; c < NCH; c++)
		cr_assert_eq(s.changed[c], w[c], "%s..%s chunk %u: changed %d, wanted %d", base,
			     target, c, s.changed[c], w[c]);
}

Test(pool_diff, exactly_the_chunks_changed, .init = setup, .fini = teardown)
{
	io(DIO_REQ_WRITE, 0, 4 * CS);			/* 0-3 */
	io(DIO_REQ_WRITE, 10 * CS + 4 * KiB, 8 * KiB);	/* 10, partly */
	io(DIO_REQ_WRITE, 20 * CS, CS);			/* 20 */
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "v", "s1"), 0);
	expect("s1", "v", NULL, 0);			/* nothing yet */

	io(DIO_REQ_WRITE, 1 * CS + 4 * KiB, 4 * KiB);	/* 1: shared, copied on write */
	io(DIO_REQ_WRITE, 10 * CS + 32 * KiB, 4 * KiB);	/* 10: an unwritten sub-block */
	io(DIO_REQ_TRIM, 20 * CS, CS);			/* 20: trimmed */
	io(DIO_REQ_WRITE, 30 * CS - 4 * KiB, 8 * KiB);	/* 29 and 30: straddling, new */
	io(DIO_REQ_ZERO, 3 * CS, 4 * KiB);		/* 3: zeroed in part */
	io(DIO_REQ_TRIM, 35 * CS, CS);			/* 35: a hole trimmed: no change */
	{
		const unsigned int want[] = { 1, 3, 10, 20, 29, 30 };

		expect("s1", "v", want, 6);
		/* the other way round: the same chunks differ */
		expect("v", "s1", want, 6);
		/* through the open volume */
		struct seen s = { 0 };

		cr_assert_eq(dio_tpool_dvol_diff(vol, "s1", 0, VSIZE, collect, &s), 0);
		for (unsigned int c = 0; c < NCH; c++)
			cr_assert_eq(s.changed[c], c == 1 || c == 3 || c == 10 || c == 20 ||
						   c == 29 || c == 30, "dvol chunk %u", c);
	}

	/* a second snapshot: since it, only what follows; since s1, the union */
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "v", "s2"), 0);
	io(DIO_REQ_WRITE, 5 * CS, 4 * KiB);
	io(DIO_REQ_WRITE, 1 * CS, 4 * KiB);
	{
		const unsigned int since2[] = { 1, 5 };
		const unsigned int since1[] = { 1, 3, 5, 10, 20, 29, 30 };
		const unsigned int between[] = { 1, 3, 10, 20, 29, 30 };

		expect("s2", "v", since2, 2);
		expect("s1", "v", since1, 7);
		expect("s1", "s2", between, 6);
	}

	/* a reopen keeps what the diff sees */
	dio_volume_put(vol);
	dio_tpool_close(pool);
	dio_ctx_destroy(ctx);	/* io_uring's fixed files hold the pool's lock */
	ctx = test_ctx_create(NULL, NULL);
	pool = test_pool_open(path, &opts);
	cr_assert_eq(dio_tpool_volume_open(pool, "v", &vol), 0);
	{
		const unsigned int since1[] = { 1, 3, 5, 10, 20, 29, 30 };

		expect("s1", "v", since1, 7);
	}
}

Test(pool_diff, ranges_stops_and_errors, .init = setup, .fini = teardown)
{
	struct seen s = { 0 };

	io(DIO_REQ_WRITE, 0, NCH * CS / 2);
	cr_assert_eq(dio_tpool_volume_snapshot(pool, "v", "s"), 0);
	io(DIO_REQ_WRITE, 7 * CS, 4 * KiB);
	io(DIO_REQ_WRITE, 9 * CS, 4 * KiB);

	/* a range inside: runs clipped to it */
	s.next = 6 * CS + 100;
	cr_assert_eq(dio_tpool_volume_diff(pool, "s", "v", 6 * CS + 100, 3 * CS, collect, &s), 0);
	cr_assert_eq(s.next, 9 * CS + 100);
	cr_assert_eq(s.runs, 4, "unchanged, 7, unchanged, 9: %u runs", s.runs);
	cr_assert(s.changed[7] && s.changed[9] && !s.changed[8]);

	/* the callback stops the walk, and its value comes back */
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	cr_assert_eq(dio_tpool_volume_diff(pool, "s", "v", 0, VSIZE, collect, &s), 1);
	cr_assert_eq(s.runs, 2);

	memset(&s, 0, sizeof(s));
	cr_assert_eq(dio_tpool_volume_diff(pool, "nope", "v", 0, VSIZE, collect, &s), -ENOENT);
	cr_assert_eq(dio_tpool_volume_diff(pool, "s", "nope", 0, VSIZE, collect, &s), -ENOENT);
	cr_assert_eq(dio_tpool_volume_diff(pool, "s", "v", VSIZE + 1, 1, collect, &s), -EINVAL);
	cr_assert_eq(dio_tpool_dvol_diff(vol, "nope", 0, VSIZE, collect, &s), -ENOENT);
	cr_assert_eq(s.runs, 0);

	/* the snapshots of the open volume */
	{
		char(*names)[DIO_TPOOL_NAME_MAX + 1];
		size_t n;

		cr_assert_eq(dio_tpool_volume_clone(pool, "v", "c"), 0);
		cr_assert_eq(dio_tpool_volume_snapshot(pool, "c", "cs"), 0);
		struct dio_volume *sv;

		cr_assert_eq(dio_tpool_dvol_snapshots(vol, &names, &n), 0);
		cr_assert_eq(n, 1, "snapshots of v, not its clone's: %zu", n);
		cr_assert_str_eq(names[0], "s");
		free(names);
		/* on a snapshot: the other snapshots of its origin */
		cr_assert_eq(dio_tpool_volume_snapshot(pool, "v", "s2"), 0);
		cr_assert_eq(dio_tpool_volume_open(pool, "s2", &sv), 0);
		cr_assert_eq(dio_tpool_dvol_snapshots(sv, &names, &n), 0);
		cr_assert_eq(n, 1, "s2 is offered s: %zu", n);
		cr_assert_str_eq(names[0], "s");
		free(names);
		dio_volume_put(sv);
	}
}
