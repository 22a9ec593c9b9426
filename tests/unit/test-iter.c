/* SPDX-License-Identifier: MIT */
/* dio_iter: the walk over a synthetic extent map, its errors and map_end. */
#include <errno.h>

#include <criterion/criterion.h>

#include "helper.h"

static struct synvol *s;

static void
setup(void)
{
	/* 1 MiB volume in five extents of odd lengths */
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 4096, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = 4096, .len = 512, .addr = 4096, .type = DIO_EXT_HOLE },
		{ .pos = 4608, .len = 65536, .addr = 4608, .type = DIO_EXT_UNWRITTEN },
		{ .pos = 70144, .len = 1024, .addr = 900000, .type = DIO_EXT_MAPPED,
		  .flags = DIO_EXT_SHARED },
		{ .pos = 71168, .len = 1048576 - 71168, .addr = 71168, .type = DIO_EXT_HOLE },
	};

	s = synvol_create(1 << 20, 512, 512);
	synvol_set(s, map, 5);
}

static void
teardown(void)
{
	synvol_destroy(s);
}

TestSuite(iter, .init = setup, .fini = teardown);

Test(iter, walks_every_extent_clipped_to_the_range)
{
	struct dio_iter it;
	uint64_t expect_pos[] = { 100, 4096, 4608, 70144, 71168 };
	uint64_t expect_len[] = { 3996, 512, 65536, 1024, 832 };
	uint16_t expect_type[] = { DIO_EXT_MAPPED, DIO_EXT_HOLE, DIO_EXT_UNWRITTEN,
				   DIO_EXT_MAPPED, DIO_EXT_HOLE };
	unsigned int n = 0;
	int ret;

	dio_iter_init(&it, 100, 72000 - 100, 0);
	while ((ret = dio_iter(&it, &s->vol)) > 0) {
		cr_assert_lt(n, 5);
		cr_expect_eq(it.ext.pos, expect_pos[n]);
		cr_expect_eq(it.ext.length, expect_len[n], "step %u length %lu", n,
			     (unsigned long)it.ext.length);
		cr_expect_eq(it.ext.type, expect_type[n]);
		it.status = (int64_t)it.ext.length;
		n++;
	}
	cr_assert_eq(ret, 0);
	cr_assert_eq(n, 5);
	cr_assert_eq(it.len, 0);
	cr_assert_eq(it.pos, 72000);
	cr_assert_eq(s->begins, 5);
	cr_assert_eq(s->ends, 5);
	cr_assert_eq(s->ext[3].addr, 900000);
}

Test(iter, map_end_gets_what_was_processed_and_partial_steps_remap)
{
	struct dio_iter it;
	int ret, steps = 0;

	/* process only half of each extent: the walk re-maps from there */
	dio_iter_init(&it, 0, 4096, 0);
	while ((ret = dio_iter(&it, &s->vol)) > 0) {
		it.status = it.ext.length > 512 ? (int64_t)(it.ext.length / 2) : (int64_t)it.ext.length;
		steps++;
	}
	cr_assert_eq(ret, 0);
	/* 2048 of 4096, 1024 of 2048, 512 of 1024, then all of 512: four steps */
	cr_assert_eq(steps, 4);
	cr_assert_eq(s->ends, 4);
	cr_assert_eq(s->log[0].done, 2048);
	cr_assert_eq(s->log[0].len, 4096);
	cr_assert_eq(s->log[1].pos, 2048);
	cr_assert_eq(s->log[1].done, 1024);
}

Test(iter, body_error_stops_the_walk_after_map_end)
{
	struct dio_iter it;
	int ret, steps = 0;

	dio_iter_init(&it, 0, 1 << 20, DIO_MAP_WRITE);
	while ((ret = dio_iter(&it, &s->vol)) > 0) {
		steps++;
		it.status = steps == 2 ? -ENOSPC : (int64_t)it.ext.length;
	}
	cr_assert_eq(ret, -ENOSPC);
	cr_assert_eq(steps, 2);
	cr_assert_eq(s->begins, 2);
	cr_assert_eq(s->ends, 2);
	cr_assert_eq(s->log[1].done, 0);
	cr_assert_eq(s->log[1].flags, DIO_MAP_WRITE);
	cr_assert_eq(it.pos, 4096, "the failed step does not advance");
}

Test(iter, map_begin_error_is_returned_and_gets_no_map_end)
{
	struct dio_iter it;
	int ret, steps = 0;

	s->fail_begin_nth = 3;
	s->fail_errno = EIO;
	dio_iter_init(&it, 0, 1 << 20, 0);
	while ((ret = dio_iter(&it, &s->vol)) > 0) {
		steps++;
		it.status = (int64_t)it.ext.length;
	}
	cr_assert_eq(ret, -EIO);
	cr_assert_eq(steps, 2);
	cr_assert_eq(s->begins, 3);
	cr_assert_eq(s->ends, 2, "map_end only for the successful map_begins");
}

Test(iter, no_progress_ends_the_walk)
{
	struct dio_iter it;
	int ret, steps = 0;

	dio_iter_init(&it, 0, 1 << 20, 0);
	while ((ret = dio_iter(&it, &s->vol)) > 0) {
		steps++;
		it.status = 0;
	}
	cr_assert_eq(ret, 0);
	cr_assert_eq(steps, 1);
	cr_assert_eq(it.len, 1 << 20);
	cr_assert_eq(s->ends, 1);
}

Test(iter, body_claiming_more_than_given_is_an_error)
{
	struct dio_iter it;

	dio_iter_init(&it, 0, 8192, 0);
	cr_assert_eq(dio_iter(&it, &s->vol), 1);
	it.status = (int64_t)it.ext.length + 1;
	cr_assert_eq(dio_iter(&it, &s->vol), -EIO);
}

Test(iter, deferred_end_is_left_to_the_caller)
{
	struct dio_iter it;
	int ret;

	dio_iter_init(&it, 0, 8192, DIO_MAP_WRITE);
	it.defer_end = true;
	while ((ret = dio_iter(&it, &s->vol)) > 0)
		it.status = (int64_t)it.ext.length;
	cr_assert_eq(ret, 0);
	cr_assert_eq(s->begins, 3);
	cr_assert_eq(s->ends, 0);
}

Test(iter, empty_range_maps_nothing)
{
	struct dio_iter it;

	dio_iter_init(&it, 4096, 0, 0);
	cr_assert_eq(dio_iter(&it, &s->vol), 0);
	cr_assert_eq(s->begins, 0);
}
