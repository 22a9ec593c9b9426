/* SPDX-License-Identifier: MIT */
/*
 * The dio engine on a synthetic volume, through the fault-injecting engine
 * wrapper (which counts every device operation): zero-fill without I/O,
 * FUA path choice, sub-block zeroing, RMW, short I/O, errors, completion.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "helper.h"

#define MiB (1u << 20)

static struct synvol *s;
static struct dio_ctx *ctx;
static struct dio_engine *fault;

static void
setup(void)
{
	struct dio_fault_opts none = { 0 };

	s = synvol_create(4 * MiB, 512, 512);
	ctx = test_ctx_create(&none, &fault);
}

static void
teardown(void)
{
	dio_ctx_destroy(ctx);
	synvol_destroy(s);
}

TestSuite(dio, .init = setup, .fini = teardown, .timeout = 60);

static struct dio_fault_stats
stats(void)
{
	struct dio_fault_stats st;

	dio_engine_fault_stats(fault, &st);
	return st;
}

static int
rw(uint8_t op, uint32_t flags, uint64_t pos, uint64_t len, void *buf)
{
	struct dio_req req = { .op = op, .flags = flags, .pos = pos, .len = len, .buf = buf };

	return dio_submit_sync(ctx, &s->vol, &req);
}

static void
fault_plan(const struct dio_fault_opts *o)
{
	dio_engine_fault_set(fault, o);
}

Test(dio, holes_and_unwritten_read_as_zeros_without_device_io)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = MiB, .addr = 0, .type = DIO_EXT_HOLE },
		{ .pos = MiB, .len = 3 * MiB, .addr = MiB, .type = DIO_EXT_UNWRITTEN },
	};
	uint8_t *stale = test_alloc(2 * MiB), *buf = test_alloc(2 * MiB);

	memset(stale, 0xaa, 2 * MiB);
	synvol_pwrite(s, stale, 2 * MiB, 0);	/* stale bytes under the holes */
	synvol_set(s, map, 2);
	memset(buf, 0xff, 2 * MiB);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 2 * MiB, buf), 0);
	for (size_t i = 0; i < 2 * MiB; i++)
		cr_assert_eq(buf[i], 0, "byte %zu not zero", i);
	cr_assert_eq(stats().ops[DIO_IO_READ], 0, "a hole read went to the device");
	free(stale);
	free(buf);
}

Test(dio, report_holes_describes_zero_ranges_and_leaves_them_alone)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 8192, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = 8192, .len = 4096, .addr = 8192, .type = DIO_EXT_HOLE },
		{ .pos = 12288, .len = 4096, .addr = 12288, .type = DIO_EXT_UNWRITTEN },
		{ .pos = 16384, .len = 4 * MiB - 16384, .addr = 16384, .type = DIO_EXT_MAPPED },
	};
	uint8_t *data = test_alloc(32768), *buf = test_alloc(32768);
	struct dio_seg segs[8];
	struct dio_req req = { .op = DIO_REQ_READ, .flags = DIO_REQ_REPORT_HOLES, .pos = 0,
			       .len = 32768, .buf = buf, .segs = segs, .max_segs = 8 };

	test_pattern(data, 32768, 0, 7);
	synvol_pwrite(s, data, 32768, 0);
	synvol_set(s, map, 4);
	memset(buf, 0xee, 32768);
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert_eq(req.nsegs, 4);
	cr_assert_eq(segs[0].type, DIO_SEG_DATA);
	cr_assert_eq(segs[0].len, 8192);
	cr_assert_eq(segs[1].type, DIO_SEG_HOLE);
	cr_assert_eq(segs[1].pos, 8192);
	cr_assert_eq(segs[2].type, DIO_SEG_ZERO);
	cr_assert_eq(segs[3].type, DIO_SEG_DATA);
	cr_assert_eq(segs[3].pos + segs[3].len, 32768);
	cr_assert(test_pattern_check(buf, 8192, 0, 7));
	cr_assert_eq(buf[8192], 0xee, "a hole range was written");
	cr_assert(test_pattern_check(buf + 16384, 16384, 16384, 7));

	/* only one segment of room: everything comes back as data */
	memset(buf, 0xee, 32768);
	req.max_segs = 1;
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert_eq(req.nsegs, 1);
	cr_assert_eq(segs[0].type, DIO_SEG_DATA);
	cr_assert_eq(segs[0].len, 32768);
	for (int i = 8192; i < 16384; i++)
		cr_assert_eq(buf[i], 0);
	free(data);
	free(buf);
}

Test(dio, mapped_extents_read_from_their_device_address)
{
	/* logical [0, 64K) lives at device 1 MiB, [64K, 128K) at device 0 */
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 65536, .addr = MiB, .type = DIO_EXT_MAPPED },
		{ .pos = 65536, .len = 65536, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = 131072, .len = 4 * MiB - 131072, .addr = 131072, .type = DIO_EXT_HOLE },
	};
	uint8_t *a = test_alloc(65536), *b = test_alloc(65536), *buf = test_alloc(131072);

	test_pattern(a, 65536, 0, 1);
	test_pattern(b, 65536, 65536, 1);
	synvol_pwrite(s, a, 65536, MiB);
	synvol_pwrite(s, b, 65536, 0);
	synvol_set(s, map, 3);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 131072, buf), 0);
	cr_assert(test_pattern_check(buf, 131072, 0, 1));
	free(a);
	free(b);
	free(buf);
}

Test(dio, fua_overwrite_is_write_through_allocating_write_is_synced)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = MiB, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = MiB, .len = MiB, .addr = MiB, .type = DIO_EXT_UNWRITTEN },
		{ .pos = 2 * MiB, .len = 2 * MiB, .addr = 2 * MiB, .type = DIO_EXT_MAPPED,
		  .flags = DIO_EXT_NEW },
	};
	uint8_t *buf = test_alloc(8192);
	struct dio_fault_stats st;

	synvol_set(s, map, 3);
	test_pattern(buf, 8192, 0, 3);

	cr_assert_eq(rw(DIO_REQ_WRITE, DIO_REQ_FUA, 4096, 8192, buf), 0);
	st = stats();
	cr_assert_eq(st.dsync_writes, 1, "pure overwrite + FUA must be RWF_DSYNC");
	cr_assert_eq(st.ops[DIO_IO_FSYNC], 0, "no flush for a write-through overwrite");

	cr_assert_eq(rw(DIO_REQ_WRITE, DIO_REQ_FUA, MiB, 8192, buf), 0);
	st = stats();
	cr_assert_eq(st.dsync_writes, 1, "unwritten conversion is not write-through");
	cr_assert_eq(st.ops[DIO_IO_FSYNC], 1, "allocating write + FUA needs a sync");
	cr_assert(s->log[s->ends - 1].flags & DIO_MAP_FUA, "map_end told to commit");
	cr_assert_eq(s->log[s->ends - 1].done, 8192);

	cr_assert_eq(rw(DIO_REQ_WRITE, DIO_REQ_FUA, 2 * MiB, 8192, buf), 0);
	cr_assert_eq(stats().ops[DIO_IO_FSYNC], 2, "NEW extent + FUA needs a sync");

	cr_assert_eq(rw(DIO_REQ_WRITE, 0, MiB, 8192, buf), 0);
	st = stats();
	cr_assert_eq(st.ops[DIO_IO_FSYNC], 2, "no FUA, no sync");
	cr_assert_eq(st.dsync_writes, 1);
	cr_assert_eq(s->log[s->ends - 1].flags & DIO_MAP_FUA, 0);
	free(buf);
}

Test(dio, map_end_runs_after_the_data_io_completed)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 4 * MiB, .addr = 0, .type = DIO_EXT_UNWRITTEN },
	};
	struct dio_fault_opts slow = { .delay_reaps = 3 };
	uint8_t *buf = test_alloc(65536);
	struct dio_req req = { .op = DIO_REQ_WRITE, .pos = 0, .len = 65536, .buf = buf };

	synvol_set(s, map, 1);
	fault_plan(&slow);
	cr_assert_eq(dio_submit(ctx, &s->vol, &req), 0);
	dio_ctx_kick(ctx);
	cr_assert_eq(s->ends, 0, "converted before the data was written");
	while (dio_ctx_inflight(ctx))
		dio_ctx_reap(ctx, true);
	cr_assert_eq(s->ends, 1);
	cr_assert_eq(s->log[0].done, 65536);
	free(buf);
}

Test(dio, sub_block_padding_of_new_blocks_is_zeroed)
{
	struct synvol *big = synvol_create(4 * MiB, 512, 65536);
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 4 * MiB, .addr = 0, .type = DIO_EXT_MAPPED,
		  .flags = DIO_EXT_NEW },
	};
	uint8_t *stale = test_alloc(131072), *buf = test_alloc(4096), *back = test_alloc(131072);

	memset(stale, 0x5a, 131072);
	synvol_pwrite(big, stale, 131072, 0);
	synvol_set(big, map, 1);
	test_pattern(buf, 4096, 70000, 9);
	struct dio_req req = { .op = DIO_REQ_WRITE, .pos = 65536 + 8192, .len = 4096, .buf = buf };
	cr_assert_eq(dio_submit_sync(ctx, &big->vol, &req), 0);
	synvol_pread(big, back, 131072, 0);
	for (int i = 0; i < 65536; i++)
		cr_assert_eq(back[i], 0x5a, "block outside the write was touched at %d", i);
	for (int i = 65536; i < 65536 + 8192; i++)
		cr_assert_eq(back[i], 0, "stale head byte at %d", i);
	cr_assert(test_pattern_check(back + 65536 + 8192, 4096, 70000, 9));
	for (int i = 65536 + 12288; i < 131072; i++)
		cr_assert_eq(back[i], 0, "stale tail byte at %d", i);
	free(stale);
	free(buf);
	free(back);
	synvol_destroy(big);
}

Test(dio, unaligned_write_and_read_by_read_modify_write)
{
	uint8_t *base = test_alloc(16384), *buf = malloc(1000), *back = malloc(16384 + 1);

	test_pattern(base, 16384, 0, 11);
	synvol_pwrite(s, base, 16384, 0);
	test_pattern(buf, 1000, 0, 12);
	/* unaligned offset, length and memory */
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, 1000, 1000, buf), 0);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 16384, back + 1), 0);
	cr_assert(test_pattern_check(back + 1, 1000, 0, 11));
	cr_assert(test_pattern_check(back + 1 + 1000, 1000, 0, 12));
	cr_assert(test_pattern_check(back + 1 + 2000, 16384 - 2000, 2000, 11));
	/* an unaligned read inside a block */
	cr_assert_eq(rw(DIO_REQ_READ, 0, 1500, 7, back), 0);
	cr_assert(test_pattern_check(back, 7, 500, 12));
	free(base);
	free(buf);
	free(back);
}

Test(dio, overlapping_unaligned_writes_on_one_ctx_lose_nothing)
{
	enum { N = 16 };
	struct dio_req req[N];
	uint8_t bytes[N], back[512];
	struct dio_fault_opts mix = { .reorder = true, .delay_reaps = 1 };

	fault_plan(&mix);
	/* N writes of one byte each into the same 512-byte block, all in flight */
	for (int i = 0; i < N; i++) {
		bytes[i] = (uint8_t)(0x10 + i);
		req[i] = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = 4096 + i * 3, .len = 1,
					   .buf = &bytes[i] };
		cr_assert_eq(dio_submit(ctx, &s->vol, &req[i]), 0);
	}
	while (dio_ctx_inflight(ctx))
		dio_ctx_reap(ctx, true);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 4096, 512, back), 0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(back[i * 3], 0x10 + i, "update %d lost", i);
}

struct rmw_thread {
	struct synvol *s;
	int id;
	int iters;
};

static void *
rmw_thread_main(void *arg)
{
	struct rmw_thread *t = arg;
	struct dio_ctx *c = test_ctx_create(NULL, NULL);

	for (int i = 0; i < t->iters; i++) {
		uint8_t v = (uint8_t)(i * 2 + t->id);
		/* thread 0 owns the bytes at 8192 + 2k, thread 1 those at 8193 + 2k */
		struct dio_req req = { .op = DIO_REQ_WRITE, .pos = 8192 + (i % 100) * 2 + t->id,
				       .len = 1, .buf = &v };

		cr_assert_eq(dio_submit_sync(c, &t->s->vol, &req), 0);
	}
	dio_ctx_destroy(c);
	return NULL;
}

Test(dio, concurrent_overlapping_rmw_from_two_threads_lose_nothing)
{
	struct rmw_thread t[2] = { { s, 0, 200 }, { s, 1, 200 } };
	pthread_t th[2];
	uint8_t back[512];

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, rmw_thread_main, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 8192, 512, back), 0);
	/* the last write to byte k of each thread was iteration 100 + k */
	for (int k = 0; k < 100; k++) {
		cr_assert_eq(back[2 * k], (uint8_t)((100 + k) * 2), "thread 0 byte %d lost", k);
		cr_assert_eq(back[2 * k + 1], (uint8_t)((100 + k) * 2 + 1), "thread 1 byte %d lost", k);
	}
}

Test(dio, short_io_is_resubmitted_for_the_rest)
{
	struct dio_fault_opts cut = { .op_mask = 1u << DIO_IO_READ, .short_nth = 1,
				      .short_len = 4096 };
	uint8_t *data = test_alloc(65536), *buf = test_alloc(65536);

	test_pattern(data, 65536, 0, 5);
	synvol_pwrite(s, data, 65536, 0);
	fault_plan(&cut);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 65536, buf), 0);
	cr_assert(test_pattern_check(buf, 65536, 0, 5));
	cr_assert_eq(stats().shortened, 1);
	cr_assert_eq(stats().ops[DIO_IO_READ], 2, "the remainder went out again");

	struct dio_fault_opts wcut = { .op_mask = 1u << DIO_IO_WRITE, .short_nth = 1,
				       .short_len = 512 };
	fault_plan(&wcut);
	test_pattern(data, 65536, 0, 6);
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, 0, 65536, data), 0);
	synvol_pread(s, buf, 65536, 0);
	cr_assert(test_pattern_check(buf, 65536, 0, 6));
	free(data);
	free(buf);
}

Test(dio, every_injected_errno_reaches_the_caller_unchanged)
{
	static const int errs[] = { EIO, ENOSPC, EDQUOT, EROFS, ENOMEM, EPERM, ENODEV, ETIMEDOUT };
	uint8_t *buf = test_alloc(65536);

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct dio_fault_opts f = { .fail_nth = 1, .fail_errno = errs[i] };

		fault_plan(&f);
		cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 65536, buf), -errs[i], "read errno %d", errs[i]);
		fault_plan(&f);
		cr_assert_eq(rw(DIO_REQ_WRITE, 0, 0, 65536, buf), -errs[i], "write errno %d", errs[i]);
		fault_plan(&f);
		cr_assert_eq(rw(DIO_REQ_FLUSH, 0, 0, 0, NULL), -errs[i], "flush errno %d", errs[i]);
		fault_plan(&f);
		cr_assert_eq(rw(DIO_REQ_TRIM, 0, 0, 65536, NULL), -errs[i], "trim errno %d", errs[i]);
	}
	free(buf);
}

Test(dio, first_error_wins_and_failed_writes_are_not_converted)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = MiB, .addr = 0, .type = DIO_EXT_UNWRITTEN },
		{ .pos = MiB, .len = 3 * MiB, .addr = MiB, .type = DIO_EXT_UNWRITTEN },
	};
	/* a write over two extents: the piece in the second extent fails */
	struct dio_fault_opts f = { .op_mask = 1u << DIO_IO_WRITE, .fail_nth = 2,
				    .fail_errno = EIO };
	uint8_t *buf = test_alloc(2 * MiB);

	synvol_set(s, map, 2);
	fault_plan(&f);
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, MiB - 65536, 131072, buf), -EIO);
	cr_assert_eq(s->ends, 2);
	cr_assert_eq(s->log[0].done, 65536, "the write that made it is reported");
	cr_assert_eq(s->log[1].done, 0, "the failed extent is not converted");

	struct dio_fault_opts two = { .op_mask = 1u << DIO_IO_READ, .fail_nth = 1,
				      .fail_count = 2, .fail_errno = ENOSPC };
	static const struct syn_ext mapped[] = {
		{ .pos = 0, .len = MiB, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = MiB, .len = 3 * MiB, .addr = MiB, .type = DIO_EXT_MAPPED },
	};
	synvol_set(s, mapped, 2);
	fault_plan(&two);
	cr_assert_eq(rw(DIO_REQ_READ, 0, MiB - 65536, 131072, buf), -ENOSPC);
	cr_assert_eq(stats().failed, 2, "both pieces failed, one completion");

	/* two different errors: whichever completion is reaped first wins */
	struct dio_fault_opts rev = { .op_mask = 1u << DIO_IO_READ, .fail_nth = 2,
				      .fail_errno = EIO };
	fault_plan(&rev);
	cr_assert_eq(rw(DIO_REQ_READ, 0, MiB - 65536, 131072, buf), -EIO);
	free(buf);
}


static void
count_done_idx(struct dio_req *req, int ret)
{
	int *calls = req->priv;

	calls[0]++;
	calls[1] = ret;
}

Test(dio, exactly_one_completion_per_request_under_delay_and_reorder)
{
	enum { N = 64 };
	struct dio_fault_opts f = { .delay_reaps = 2, .reorder = true, .short_nth = 5,
				    .short_len = 512 };
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = MiB, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = MiB, .len = MiB, .addr = MiB, .type = DIO_EXT_HOLE },
		{ .pos = 2 * MiB, .len = 2 * MiB, .addr = 2 * MiB, .type = DIO_EXT_UNWRITTEN },
	};
	struct dio_req req[N];
	int calls[N][2];
	uint8_t *buf = test_alloc(N * 16384);

	synvol_set(s, map, 3);
	fault_plan(&f);
	memset(calls, 0, sizeof(calls));
	for (int i = 0; i < N; i++) {
		req[i] = (struct dio_req){ .op = (i % 3) ? DIO_REQ_READ : DIO_REQ_WRITE,
					   .pos = (uint64_t)(i * 65536 + (i % 2) * 512),
					   .len = 16384 - (i % 4 == 3 ? 100 : 0),
					   .buf = buf + i * 16384, .done = count_done_idx,
					   .priv = calls[i] };
		cr_assert_eq(dio_submit(ctx, &s->vol, &req[i]), 0);
		cr_assert_eq(calls[i][0], 0, "done() ran inside dio_submit");
	}
	while (dio_ctx_inflight(ctx))
		cr_assert_geq(dio_ctx_reap(ctx, true), 0);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(calls[i][0], 1, "request %d completed %d times", i, calls[i][0]);
		cr_assert_eq(calls[i][1], 0, "request %d: %d", i, calls[i][1]);
	}
	free(buf);
}

Test(dio, done_never_runs_inside_submit_even_with_no_io)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 4 * MiB, .addr = 0, .type = DIO_EXT_HOLE },
	};
	int calls[2] = { 0, 0 };
	uint8_t *buf = test_alloc(4096);
	struct dio_req req = { .op = DIO_REQ_READ, .pos = 0, .len = 4096, .buf = buf,
			       .done = count_done_idx, .priv = calls };

	synvol_set(s, map, 1);
	cr_assert_eq(dio_submit(ctx, &s->vol, &req), 0);
	cr_assert_eq(calls[0], 0);
	cr_assert_eq(dio_ctx_inflight(ctx), 1);
	cr_assert_eq(dio_ctx_reap(ctx, true), 1);
	cr_assert_eq(calls[0], 1);
	cr_assert_eq(calls[1], 0);
	free(buf);
}

Test(dio, out_of_bounds_and_read_only_are_refused)
{
	uint8_t *buf = test_alloc(8192);
	uint64_t end = 4 * MiB;
	struct dio_seg seg;
	struct dio_req ext = { .op = DIO_REQ_EXTENTS, .pos = end - 512, .len = 1024,
			       .segs = &seg, .max_segs = 1 };

	cr_assert_eq(rw(DIO_REQ_READ, 0, end - 512, 1024, buf), -EINVAL);
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, end - 512, 1024, buf), -ENOSPC);
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, end, 512, buf), -ENOSPC);
	cr_assert_eq(rw(DIO_REQ_TRIM, 0, end, 1, NULL), -EINVAL);
	cr_assert_eq(rw(DIO_REQ_ZERO, 0, end - 1, 2, NULL), -EINVAL);
	cr_assert_eq(rw(DIO_REQ_CACHE, 0, UINT64_MAX - 10, 100, NULL), -EINVAL);
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &ext), -EINVAL);
	cr_assert_eq(rw(DIO_REQ_READ, 0, UINT64_MAX - 100, 4096, buf), -EINVAL, "overflow");
	cr_assert_eq(rw(DIO_REQ_READ, 0x80, 0, 512, buf), -EINVAL, "unknown flag");
	cr_assert_eq(rw(DIO_REQ_READ, 0, end - 512, 512, buf), 0, "the last block is fine");
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, end - 512, 512, buf), 0);
	cr_assert_eq(dio_ctx_inflight(ctx), 0);

	s->vol.readonly = true;
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, 0, 512, buf), -EPERM);
	cr_assert_eq(rw(DIO_REQ_ZERO, 0, 0, 512, NULL), -EPERM);
	cr_assert_eq(rw(DIO_REQ_TRIM, 0, 0, 512, NULL), -EPERM);
	cr_assert_eq(rw(DIO_REQ_READ, 0, 0, 512, buf), 0);
	cr_assert_eq(rw(DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	s->vol.readonly = false;
	free(buf);
}

Test(dio, zero_uses_the_fast_method_or_falls_back_to_writing)
{
	uint8_t *data = test_alloc(MiB), *back = test_alloc(MiB);
	struct dio_req req = { .op = DIO_REQ_ZERO, .pos = 65536, .len = 262144 };
	struct dio_fault_stats st;

	test_pattern(data, MiB, 0, 21);
	synvol_pwrite(s, data, MiB, 0);

	s->zero_ok = 1;
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert(req.fast);
	st = stats();
	cr_assert_eq(st.ops[DIO_IO_WRITE], 0);
	cr_assert_eq(st.ops[DIO_IO_FALLOCATE], 1);
	synvol_pread(s, back, MiB, 0);
	cr_assert(test_pattern_check(back, 65536, 0, 21));
	for (int i = 65536; i < 65536 + 262144; i++)
		cr_assert_eq(back[i], 0);
	cr_assert(test_pattern_check(back + 327680, MiB - 327680, 327680, 21));

	synvol_pwrite(s, data, MiB, 0);
	s->zero_ok = 0;
	req.flags = DIO_REQ_FAST_ZERO;
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), -EOPNOTSUPP);
	cr_assert_eq(stats().ops[DIO_IO_WRITE], 0, "FAST_ZERO wrote");
	synvol_pread(s, back, MiB, 0);
	cr_assert(test_pattern_check(back, MiB, 0, 21), "a failed FAST_ZERO changed data");

	req.flags = DIO_REQ_NO_HOLE | DIO_REQ_FUA;
	req.pos = 65536 + 100;	/* unaligned: head and tail by RMW */
	req.len = 262144;
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert(!req.fast);
	st = stats();
	cr_assert_gt(st.ops[DIO_IO_WRITE], 0);
	cr_assert_geq(st.ops[DIO_IO_FSYNC], 1, "ZERO+FUA syncs");
	synvol_pread(s, back, MiB, 0);
	cr_assert(test_pattern_check(back, 65636, 0, 21));
	for (int i = 65636; i < 65636 + 262144; i++)
		cr_assert_eq(back[i], 0, "byte %d not zeroed", i);
	cr_assert(test_pattern_check(back + 65636 + 262144, MiB - 65636 - 262144,
				     65636 + 262144, 21));
	free(data);
	free(back);
}

Test(dio, trim_gives_back_whole_blocks_only)
{
	uint8_t *data = test_alloc(65536), *back = test_alloc(65536);
	struct dio_req req = { .op = DIO_REQ_TRIM, .pos = 1000, .len = 8000 };

	test_pattern(data, 65536, 0, 4);
	synvol_pwrite(s, data, 65536, 0);
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	synvol_pread(s, back, 65536, 0);
	cr_assert(test_pattern_check(back, 1024, 0, 4), "partial head block was trimmed");
	cr_assert(test_pattern_check(back + 8704, 65536 - 8704, 8704, 4), "partial tail trimmed");
	for (int i = 1024; i < 8704; i++)
		cr_assert_eq(back[i], 0);
	free(data);
	free(back);
}

Test(dio, extents_describe_the_map_and_stop_when_full)
{
	static const struct syn_ext map[] = {
		{ .pos = 0, .len = 4096, .addr = 0, .type = DIO_EXT_MAPPED },
		{ .pos = 4096, .len = 4096, .addr = 4096, .type = DIO_EXT_MAPPED },
		{ .pos = 8192, .len = 4096, .addr = 8192, .type = DIO_EXT_HOLE },
		{ .pos = 12288, .len = 4 * MiB - 12288, .addr = 12288, .type = DIO_EXT_UNWRITTEN },
	};
	struct dio_seg segs[4];
	struct dio_req req = { .op = DIO_REQ_EXTENTS, .pos = 2048, .len = 65536,
			       .segs = segs, .max_segs = 4 };

	synvol_set(s, map, 4);
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert_eq(req.nsegs, 3);
	cr_assert_eq(segs[0].pos, 2048);
	cr_assert_eq(segs[0].len, 6144, "adjacent data extents merge");
	cr_assert_eq(segs[1].type, DIO_SEG_HOLE);
	cr_assert_eq(segs[2].type, DIO_SEG_ZERO);
	cr_assert_eq(segs[2].pos + segs[2].len, 2048 + 65536);
	cr_assert_eq(stats().ops[DIO_IO_READ], 0);

	req.max_segs = 1;
	cr_assert_eq(dio_submit_sync(ctx, &s->vol, &req), 0);
	cr_assert_eq(req.nsegs, 1);
	cr_assert_eq(segs[0].len, 6144);
}

Test(dio, map_begin_failure_fails_the_request)
{
	uint8_t *buf = test_alloc(4096);

	s->fail_begin_nth = 1;
	s->fail_errno = ENOSPC;
	cr_assert_eq(rw(DIO_REQ_WRITE, 0, 0, 4096, buf), -ENOSPC);
	cr_assert_eq(s->ends, 0);
	cr_assert_eq(stats().ops[DIO_IO_WRITE], 0);
	free(buf);
}
