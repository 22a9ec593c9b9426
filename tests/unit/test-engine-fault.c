/* SPDX-License-Identifier: MIT */
/*
 * The fault wrapper (dio_engine_fault_create) around the engine under test
 * (uring, psync by $DIO_TEST_ENGINE): forwarding, injected failures and
 * short transfers, delayed and reordered completions, counters.
 */
#include <stdio.h>
#include <sys/uio.h>

#include "helper-engine.h"

TestSuite(engine, .init = setup, .fini = teardown);

static struct dio_engine *
wrap(const struct dio_fault_opts *o)
{
	struct dio_engine *f = NULL;

	cr_assert_eq(dio_engine_fault_create(eng, o, &f), 0);
	eng = f;	/* teardown destroys the wrapper, which owns the inner */
	return f;
}

Test(engine, fault_name_and_forwarding)
{
	char want[32];
	struct dio_engine *inner = eng;
	struct dio_engine *f = wrap(NULL);
	uint8_t *w = test_alloc(16 * BS), *r = w + 8 * BS;
	struct iovec iov = { .iov_base = w, .iov_len = 16 * BS };
	int fd = open_direct(1 << 20, NULL);
	int index = -1, fixed = 0;

	snprintf(want, sizeof(want), "fault(%s)", dio_engine_name(inner));
	cr_assert_str_eq(dio_engine_name(f), want);
	cr_assert_eq(f->ops->event_fd(f), inner->ops->event_fd(inner));
	cr_assert_eq(f->caps, inner->caps);
	if (inner->ops->register_buffers) {
		cr_assert_eq(f->ops->register_buffers(f, &iov, 1), 0);
		index = 0;
	} else if (f->ops->register_buffers) {
		cr_assert_lt(f->ops->register_buffers(f, &iov, 1), 0);
	}
	if (inner->ops->register_file) {
		int slot = f->ops->register_file(f, fd);

		cr_assert_geq(slot, 0);
		fixed = slot + 1;
	}
	write_read_check(f, fd, fixed, w, r, index, 8 * BS, 31);
	close(fd);
	free(w);
}

static void
fault_fail_with(int err)
{
	struct dio_fault_opts o = {
		.op_mask = 1u << DIO_IO_WRITE, .fail_nth = 2, .fail_count = 2, .fail_errno = err,
	};
	struct dio_engine *f = wrap(&o);
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(8 * BS, NULL);
	struct tio ts[5], rd;
	struct dio_fault_stats st;

	/* a read does not count towards the numbering */
	tio_init(&rd, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(run_io(f, &rd), BS);
	for (int i = 0; i < 5; i++) {
		tio_init(&ts[i], DIO_IO_WRITE, fd, (uint64_t)i * BS, BS, buf);
		cr_assert_eq(queue_io(f, &ts[i]), 0);
		cr_assert_eq(ts[i].calls, 0);
	}
	cr_assert_geq(submit(f), 0);
	reap_all(f, ts, 5);
	cr_assert_eq(ts[0].res, BS);
	cr_assert_eq(ts[1].res, -err);
	cr_assert_eq(ts[2].res, -err);
	cr_assert_eq(ts[3].res, BS);
	cr_assert_eq(ts[4].res, BS);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(ts[i].calls, 1);
	dio_engine_fault_stats(f, &st);
	cr_assert_eq(st.failed, 2);
	cr_assert_eq(st.ops[DIO_IO_WRITE], 5);
	cr_assert_eq(st.ops[DIO_IO_READ], 1);
	close(fd);
	free(buf);
}

Test(engine, fault_fail_eio)
{
	fault_fail_with(EIO);
}

Test(engine, fault_fail_enospc)
{
	fault_fail_with(ENOSPC);
}

Test(engine, fault_failed_op_not_sent)
{
	struct dio_fault_opts o = { .fail_nth = 1, .fail_errno = EIO };
	struct dio_engine *f = wrap(&o);
	uint8_t *w = test_alloc(BS), *r = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct tio t;

	test_pattern(w, BS, 0, 41);
	tio_init(&t, DIO_IO_WRITE, fd, 0, BS, w);
	cr_assert_eq(run_io(f, &t), -EIO);
	/* the failed write never reached the file, which still reads zeros */
	tio_init(&t, DIO_IO_READ, fd, 0, BS, r);
	cr_assert_eq(run_io(f, &t), BS);
	for (int i = 0; i < BS; i++)
		cr_assert_eq(r[i], 0);
	close(fd);
	free(w);
	free(r);
}

Test(engine, fault_short)
{
	struct dio_fault_opts o = { .op_mask = 1u << DIO_IO_WRITE, .short_nth = 1, .short_len = BS };
	struct dio_engine *f = wrap(&o);
	uint8_t *w = test_alloc(4 * BS), *r = test_alloc(4 * BS);
	int fd = open_direct(4 * BS, NULL);
	struct dio_fault_stats st;
	struct tio t;

	test_pattern(w, 4 * BS, 0, 51);
	tio_init(&t, DIO_IO_WRITE, fd, 0, 4 * BS, w);
	cr_assert_eq(run_io(f, &t), BS);
	/* only the first block was written */
	tio_init(&t, DIO_IO_READ, fd, 0, 4 * BS, r);
	cr_assert_eq(run_io(f, &t), 4 * BS);
	cr_assert(test_pattern_check(r, BS, 0, 51));
	for (int i = BS; i < 4 * BS; i++)
		cr_assert_eq(r[i], 0);
	/* the second write is not cut */
	tio_init(&t, DIO_IO_WRITE, fd, 0, 4 * BS, w);
	cr_assert_eq(run_io(f, &t), 4 * BS);
	dio_engine_fault_stats(f, &st);
	cr_assert_eq(st.shortened, 1);
	cr_assert_eq(st.bytes[DIO_IO_WRITE], 8 * BS);
	close(fd);
	free(w);
	free(r);
}

/* Queue n reads, then reap without wait and check delivery. */
static void
delay_reorder(const struct dio_fault_opts *o, int n)
{
	struct dio_engine *f = wrap(o);
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct tio *ts = calloc((size_t)n, sizeof(*ts));
	int delivered = 0, rounds = 0, first_round = -1;

	for (int i = 0; i < n; i++) {
		tio_init(&ts[i], DIO_IO_READ, fd, 0, BS, buf);
		cr_assert_eq(queue_io(f, &ts[i]), 0);
	}
	cr_assert_geq(submit(f), 0);
	/* give the device time so that the completions land in few reaps */
	usleep(50000);
	for (int i = 0; i < 500 && f->inflight; i++) {
		int got = dio_engine_reap(f, false);

		cr_assert_geq(got, 0);
		if (got && first_round < 0)
			first_round = rounds;
		delivered += got;
		rounds++;
		usleep(2000);
	}
	cr_assert_eq(delivered, n);
	cr_assert_eq(f->inflight, 0);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(ts[i].calls, 1, "io %d delivered %d times", i, ts[i].calls);
		cr_assert_eq(ts[i].res, BS);
	}
	/* nothing comes before delay_reaps reaps have passed */
	cr_assert_geq(first_round, (int)o->delay_reaps);
	if (o->reorder) {
		int reversed = 0;

		for (int i = 1; i < n; i++)
			reversed += ts[i].order < ts[i - 1].order;
		cr_assert_gt(reversed, 0, "reorder delivered everything in queue order");
	}
	close(fd);
	free(ts);
	free(buf);
}

Test(engine, fault_delay)
{
	struct dio_fault_opts o = { .delay_reaps = 3 };

	delay_reorder(&o, 16);
}

Test(engine, fault_reorder)
{
	struct dio_fault_opts o = { .reorder = true, .delay_reaps = 1 };

	delay_reorder(&o, 16);
}

Test(engine, fault_delay_wait_does_not_hang)
{
	struct dio_fault_opts o = { .delay_reaps = 1000, .reorder = true };
	struct dio_engine *f = wrap(&o);
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct tio ts[8];

	for (int i = 0; i < 8; i++) {
		tio_init(&ts[i], DIO_IO_READ, fd, 0, BS, buf);
		cr_assert_eq(queue_io(f, &ts[i]), 0);
	}
	cr_assert_geq(submit(f), 0);
	/* reap(wait) delivers held completions instead of blocking for ever */
	reap_all(f, ts, 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(ts[i].calls, 1);
	cr_assert_eq(f->inflight, 0);
	cr_assert_eq(dio_engine_reap(f, true), 0);
	close(fd);
	free(buf);
}

Test(engine, fault_counters)
{
	struct dio_engine *f = wrap(NULL);
	uint8_t *buf = test_alloc(2 * BS);
	int fd = open_direct(4 * BS, NULL);
	struct dio_fault_stats st;
	struct tio t;

	tio_init(&t, DIO_IO_WRITE, fd, 0, 2 * BS, buf);
	t.io.rw_flags = RWF_DSYNC;
	run_io(f, &t);
	tio_init(&t, DIO_IO_WRITE, fd, 0, BS, buf);
	run_io(f, &t);
	tio_init(&t, DIO_IO_READ, fd, 0, 2 * BS, buf);
	run_io(f, &t);
	tio_init(&t, DIO_IO_FSYNC, fd, 0, 0, NULL);
	run_io(f, &t);
	dio_engine_fault_stats(f, &st);
	cr_assert_eq(st.ops[DIO_IO_WRITE], 2);
	cr_assert_eq(st.bytes[DIO_IO_WRITE], 3 * BS);
	cr_assert_eq(st.dsync_writes, 1);
	cr_assert_eq(st.ops[DIO_IO_READ], 1);
	cr_assert_eq(st.bytes[DIO_IO_READ], 2 * BS);
	cr_assert_eq(st.ops[DIO_IO_FSYNC], 1);
	cr_assert_eq(st.ops[DIO_IO_FALLOCATE], 0);
	cr_assert_eq(st.failed, 0);

	/* a new plan restarts the counting */
	struct dio_fault_opts o = { .fail_nth = 1, .fail_errno = EIO, .op_mask = 1u << DIO_IO_READ };

	dio_engine_fault_set(f, &o);
	dio_engine_fault_stats(f, &st);
	cr_assert_eq(st.ops[DIO_IO_WRITE], 0);
	tio_init(&t, DIO_IO_WRITE, fd, 0, BS, buf);
	cr_assert_eq(run_io(f, &t), BS);
	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(run_io(f, &t), -EIO);
	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(run_io(f, &t), BS);
	dio_engine_fault_stats(f, &st);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.ops[DIO_IO_READ], 2);
	close(fd);
	free(buf);
}
