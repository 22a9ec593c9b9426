/* SPDX-License-Identifier: MIT */
/* extmap: the in-memory extent map, against a simple per-unit model. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "dio/extent.h"
#include "extmap.h"

static struct extmap map;

static void
setup(void)
{
	cr_assert_eq(extmap_init(&map), 0);
}

static void
teardown(void)
{
	extmap_destroy(&map);
}

TestSuite(extmap, .init = setup, .fini = teardown);

static const char *
tname(unsigned int t)
{
	switch (t) {
	case DIO_EXT_HOLE:
		return "HOLE";
	case DIO_EXT_MAPPED:
		return "MAPPED";
	case DIO_EXT_UNWRITTEN:
		return "UNWRITTEN";
	}
	return "?";
}

/* Expect the run at pos (with maxlen) to be of type t and length len. */
static void
expect(uint64_t pos, uint64_t maxlen, unsigned int t, uint64_t len)
{
	unsigned int got;
	uint64_t l = extmap_lookup(&map, pos, maxlen, &got);

	cr_assert_eq(got, t, "at %llu: %s, want %s", (unsigned long long)pos, tname(got),
		     tname(t));
	cr_assert_eq(l, len, "at %llu: length %llu, want %llu", (unsigned long long)pos,
		     (unsigned long long)l, (unsigned long long)len);
}

Test(extmap, empty_is_data)
{
	expect(0, 4096, DIO_EXT_MAPPED, 4096);
	expect(12345, 1, DIO_EXT_MAPPED, 1);
	expect(0, 0, DIO_EXT_MAPPED, 0);
	cr_assert_eq(extmap_count(&map), 0);
}

Test(extmap, split_and_merge)
{
	cr_assert_eq(extmap_set(&map, 0, 1 << 20, DIO_EXT_HOLE), 0);
	expect(0, 2 << 20, DIO_EXT_HOLE, 1 << 20);
	expect(1 << 20, 4096, DIO_EXT_MAPPED, 4096);

	/* Split the hole in three. */
	cr_assert_eq(extmap_set(&map, 4096, 8192, DIO_EXT_MAPPED), 0);
	cr_assert_eq(extmap_count(&map), 2);
	expect(0, 1 << 20, DIO_EXT_HOLE, 4096);
	expect(4096, 1 << 20, DIO_EXT_MAPPED, 8192);
	expect(6000, 1 << 20, DIO_EXT_MAPPED, 12288 - 6000);
	expect(12288, 1 << 20, DIO_EXT_HOLE, (1 << 20) - 12288);

	/* Unwritten in the middle of the data, touching both holes. */
	cr_assert_eq(extmap_set(&map, 4096, 8192, DIO_EXT_UNWRITTEN), 0);
	cr_assert_eq(extmap_count(&map), 3);
	expect(4096, 1 << 20, DIO_EXT_UNWRITTEN, 8192);

	/* Back to a hole: the three runs become one. */
	cr_assert_eq(extmap_set(&map, 4096, 8192, DIO_EXT_HOLE), 0);
	cr_assert_eq(extmap_count(&map), 1);
	expect(0, 2 << 20, DIO_EXT_HOLE, 1 << 20);

	/* Data over everything and more: empty again. */
	cr_assert_eq(extmap_set(&map, 0, 4 << 20, DIO_EXT_MAPPED), 0);
	cr_assert_eq(extmap_count(&map), 0);
	cr_assert_eq(extmap_validate(&map), 0);
}

Test(extmap, bad_args)
{
	cr_assert_eq(extmap_set(&map, 0, 10, 7), -EINVAL);
	cr_assert_eq(extmap_set(&map, UINT64_MAX - 5, 10, DIO_EXT_HOLE), -EINVAL);
	cr_assert_eq(extmap_set(&map, 100, 0, DIO_EXT_HOLE), 0);
	cr_assert_eq(extmap_count(&map), 0);
	cr_assert_eq(extmap_append(&map, 0, 10, DIO_EXT_MAPPED), -EINVAL);
}

Test(extmap, append_first_wins)
{
	cr_assert_eq(extmap_append(&map, 0, 100, DIO_EXT_UNWRITTEN), 0);
	cr_assert_eq(extmap_append(&map, 50, 200, DIO_EXT_HOLE), 0);
	cr_assert_eq(extmap_append(&map, 200, 300, DIO_EXT_HOLE), 0);
	cr_assert_eq(extmap_append(&map, 400, 500, DIO_EXT_HOLE), 0);
	cr_assert_eq(extmap_append(&map, 450, 480, DIO_EXT_UNWRITTEN), 0);
	cr_assert_eq(extmap_count(&map), 3);
	cr_assert_eq(extmap_validate(&map), 0);
	expect(0, 1000, DIO_EXT_UNWRITTEN, 100);
	expect(100, 1000, DIO_EXT_HOLE, 200);
	expect(300, 1000, DIO_EXT_MAPPED, 100);
	expect(400, 1000, DIO_EXT_HOLE, 100);
	expect(500, 1000, DIO_EXT_MAPPED, 1000);
}

static unsigned int
rand_type(unsigned int *seed)
{
	static const unsigned int types[] = { DIO_EXT_HOLE, DIO_EXT_MAPPED, DIO_EXT_UNWRITTEN };

	return types[rand_r(seed) % 3];
}

/*
 * Random sets against a model with one type per 'unit' bytes over 'units'
 * units; after each, compare every run and some clipped lookups.
 */
static void
random_against_model(unsigned int seed, uint64_t unit, size_t units, int ops)
{
	uint8_t *model = calloc(units, 1);
	size_t i, s, n;

	cr_assert(model);
	for (i = 0; i < units; i++)
		model[i] = DIO_EXT_MAPPED;
	for (int op = 0; op < ops; op++) {
		unsigned int t = rand_type(&seed);

		s = rand_r(&seed) % units;
		/* Mostly short ranges, sometimes long ones. */
		n = 1 + rand_r(&seed) % (rand_r(&seed) % 8 ? 16 : units - s);
		if (s + n > units)
			n = units - s;
		cr_assert_eq(extmap_set(&map, s * unit, n * unit, t), 0);
		memset(model + s, (int)t, n);
		cr_assert_eq(extmap_validate(&map), 0, "invariants broken after op %d", op);

		/* Walk the whole range run by run. */
		for (i = 0; i < units;) {
			size_t e = i;
			unsigned int got;
			uint64_t len;

			while (e < units && model[e] == model[i])
				e++;
			len = extmap_lookup(&map, i * unit, (units - i) * unit, &got);
			cr_assert_eq(got, model[i], "op %d unit %zu: %s, want %s", op, i,
				     tname(got), tname(model[i]));
			cr_assert_eq(len, (e - i) * unit, "op %d unit %zu: len %llu, want %llu",
				     op, i, (unsigned long long)len,
				     (unsigned long long)((e - i) * unit));
			i = e;
		}
		/* A lookup from inside a unit, clipped. */
		s = rand_r(&seed) % units;
		{
			uint64_t off = rand_r(&seed) % unit, maxlen = 1 + rand_r(&seed) % (8 * unit);
			uint64_t want;
			size_t e = s;

			while (e < units && model[e] == model[s])
				e++;
			want = (e - s) * unit - off;
			if (e == units && model[s] == DIO_EXT_MAPPED)
				want = maxlen; /* data runs on past the modelled range */
			expect(s * unit + off, maxlen, model[s], want < maxlen ? want : maxlen);
		}
	}
	free(model);
}

Test(extmap, random_512_units)
{
	random_against_model(1, 512, 2048, 3000);
}

Test(extmap, random_bytes)
{
	random_against_model(2, 1, 700, 3000);
}

Test(extmap, random_many_seeds)
{
	for (unsigned int seed = 10; seed < 40; seed++) {
		random_against_model(seed, 4096, 64, 200);
		extmap_set(&map, 0, UINT64_MAX / 2, DIO_EXT_MAPPED);
		cr_assert_eq(extmap_count(&map), 0);
	}
}

/*
 * Concurrency: a writer flips whole blocks between the three types, one
 * extmap_set per block; readers must always see a whole block of one type
 * (a lookup clipped to the block returns the whole block), and the blocks
 * the writer never touches keep their type.
 */
#define CBLK 4096
#define CBLOCKS 256

static atomic_bool stop;
static atomic_ulong reader_lookups;

static void *
reader(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (!atomic_load(&stop)) {
		uint64_t b = rand_r(&seed) % CBLOCKS;
		unsigned int t;
		uint64_t len = extmap_lookup(&map, b * CBLK, CBLK, &t);

		if (len != CBLK)
			return (void *)"torn block";
		if (b % 4 == 0 && t != DIO_EXT_UNWRITTEN)
			return (void *)"untouched block changed";
		if (t != DIO_EXT_HOLE && t != DIO_EXT_MAPPED && t != DIO_EXT_UNWRITTEN)
			return (void *)"bad type";
		atomic_fetch_add(&reader_lookups, 1);
	}
	return NULL;
}

Test(extmap, concurrent_readers_writer)
{
	pthread_t th[4];
	unsigned int seed = 99;
	struct timespec t0, t1;
	void *res;

	for (uint64_t b = 0; b < CBLOCKS; b += 4)
		cr_assert_eq(extmap_set(&map, b * CBLK, CBLK, DIO_EXT_UNWRITTEN), 0);
	atomic_store(&stop, false);
	atomic_store(&reader_lookups, 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, reader, (void *)(uintptr_t)(i + 1)), 0);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int op = 0; op < 200000; op++) {
		uint64_t b = rand_r(&seed) % CBLOCKS;

		if (b % 4 == 0)
			continue;
		cr_assert_eq(extmap_set(&map, b * CBLK, CBLK, rand_type(&seed)), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec > 3)
			break;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(th[i], &res), 0);
		cr_assert_null(res, "reader %d: %s", i, (const char *)res);
	}
	cr_assert_eq(extmap_validate(&map), 0);
	cr_assert_gt(atomic_load(&reader_lookups), 0);
}
