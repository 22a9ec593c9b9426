/* SPDX-License-Identifier: MIT */
/* The I/O engines (uring, psync by $DIO_TEST_ENGINE) and the fault wrapper. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

#define BS 4096

/* One io plus what its completion saw. */
struct tio {
	struct dio_io io;
	int calls;		/* end_io runs: must end at exactly 1 */
	int64_t res;
	int order;		/* completion sequence number */
};

/* Set while the test is inside queue or submit: end_io must not run then. */
static int inside_submit;
static int completions;

static void
tio_end(struct dio_io *io, int64_t res)
{
	struct tio *t = (struct tio *)io;

	cr_assert_eq(inside_submit, 0, "end_io ran inside queue/submit");
	cr_assert_eq(res, io->res, "res argument and io->res differ");
	t->calls++;
	t->res = res;
	t->order = completions++;
}

static void
tio_init(struct tio *t, uint8_t op, int fd, uint64_t off, uint64_t len, void *buf)
{
	memset(t, 0, sizeof(*t));
	t->io.op = op;
	t->io.fd = fd;
	t->io.offset = off;
	t->io.len = len;
	t->io.buf = buf;
	t->io.buf_index = -1;
	t->io.end_io = tio_end;
	t->res = 0x7fff;
}

static int
queue_io(struct dio_engine *e, struct tio *t)
{
	int ret;

	inside_submit = 1;
	ret = dio_engine_queue(e, &t->io);
	inside_submit = 0;
	return ret;
}

static int
submit(struct dio_engine *e)
{
	int ret;

	inside_submit = 1;
	ret = dio_engine_submit(e);
	inside_submit = 0;
	return ret;
}

/* Reap with wait until all of ts[0..n) completed; bounded. */
static void
reap_all(struct dio_engine *e, struct tio *ts, int n)
{
	for (int round = 0; round < 10000; round++) {
		int left = 0;

		for (int i = 0; i < n; i++)
			left += ts[i].calls == 0;
		if (!left)
			return;
		cr_assert_geq(dio_engine_reap(e, true), 0);
	}
	cr_assert_fail("I/O did not complete");
}

/* Queue, submit and wait for one io; its result. */
static int64_t
run_io(struct dio_engine *e, struct tio *t)
{
	int ret = queue_io(e, t);

	cr_assert_eq(ret, 0, "queue: %s", strerror(-ret));
	cr_assert_geq(submit(e), 0);
	reap_all(e, t, 1);
	cr_assert_eq(t->calls, 1);
	return t->res;
}

static int
open_direct(uint64_t size, char **pathp)
{
	char *path = test_file_create(size);
	int fd = open(path, O_RDWR | O_DIRECT);

	cr_assert(fd >= 0, "open O_DIRECT %s: %s", path, strerror(errno));
	if (pathp)
		*pathp = path;
	else {
		unlink(path);
		free(path);
	}
	return fd;
}

static struct dio_engine *eng;

static void
setup(void)
{
	completions = 0;
	eng = test_engine_create();
}

static void
teardown(void)
{
	if (eng) {
		cr_expect_eq(eng->inflight, 0);
		dio_engine_destroy(eng);
	}
	eng = NULL;
}

TestSuite(engine, .init = setup, .fini = teardown);

/* Write a pattern, read it back with another buffer, through e. */
static void
write_read_check(struct dio_engine *e, int fd, int fixed, uint8_t *wbuf, uint8_t *rbuf,
		 int index, size_t len, uint32_t seed)
{
	struct tio t;

	test_pattern(wbuf, len, 3 * BS, seed);
	tio_init(&t, DIO_IO_WRITE, fd, 3 * BS, len, wbuf);
	t.io.buf_index = index;
	t.io.fixed_file = fixed;
	cr_assert_eq(run_io(e, &t), (int64_t)len);

	memset(rbuf, 0xaa, len);
	tio_init(&t, DIO_IO_READ, fd, 3 * BS, len, rbuf);
	t.io.buf_index = index;
	t.io.fixed_file = fixed;
	cr_assert_eq(run_io(e, &t), (int64_t)len);
	cr_assert(test_pattern_check(rbuf, len, 3 * BS, seed), "read back differs");
}

Test(engine, name_and_caps)
{
	const char *want = test_engine_kind() == DIO_ENGINE_PSYNC ? "psync" : "uring";

	cr_assert_str_eq(dio_engine_name(eng), want);
	cr_assert_eq(eng->depth, 64);
	cr_assert_eq(eng->inflight, 0);
	cr_assert_geq(eng->ops->event_fd(eng), 0);
	if (test_engine_kind() == DIO_ENGINE_URING)
		cr_assert(eng->caps & DIO_CAP_FIXED_BUFS, "a 6.x kernel has READ_FIXED");
}

Test(engine, write_read_plain)
{
	uint8_t *w = test_alloc(64 * 1024), *r = test_alloc(64 * 1024);
	int fd = open_direct(1 << 20, NULL);

	write_read_check(eng, fd, 0, w, r, -1, 64 * 1024, 1);
	write_read_check(eng, fd, 0, w, r, -1, BS, 2);
	close(fd);
	free(w);
	free(r);
}

Test(engine, write_read_registered)
{
	size_t arena = 256 * 1024;
	uint8_t *a = test_alloc(arena);
	struct iovec iov = { .iov_base = a, .iov_len = arena };
	int fd = open_direct(1 << 20, NULL);
	int index = -1, fixed = 0, slot2, ret;

	if (eng->ops->register_buffers) {
		ret = eng->ops->register_buffers(eng, &iov, 1);
		cr_assert_eq(ret, 0, "register_buffers: %s", strerror(-ret));
		index = 0;
	}
	if (eng->ops->register_file) {
		ret = eng->ops->register_file(eng, fd);
		cr_assert_geq(ret, 0, "register_file: %s", strerror(-ret));
		fixed = ret + 1;
		/* twice gives a second slot of the same file */
		slot2 = eng->ops->register_file(eng, fd);
		cr_assert_geq(slot2, 0);
		cr_assert_neq(slot2, ret);
		eng->ops->unregister_file(eng, slot2);
	}
	/* both halves inside the one fixed buffer */
	write_read_check(eng, fd, fixed, a, a + arena / 2, index, arena / 2, 7);
	write_read_check(eng, fd, fixed, a + BS, a + arena / 2, index, 8 * BS, 8);

	if (eng->ops->unregister_file) {
		eng->ops->unregister_file(eng, fixed - 1);
		/* plain fd again after unregistering */
		write_read_check(eng, fd, 0, a, a + arena / 2, index, BS, 9);
		/* a slot that was emptied is not used even if I/O names it */
		write_read_check(eng, fd, fixed, a, a + arena / 2, index, BS, 12);
	}
	if (test_engine_kind() == DIO_ENGINE_URING) {
		uint8_t *other = test_alloc(BS);
		struct tio t;

		/* an index past the registered set is refused at queue time */
		tio_init(&t, DIO_IO_READ, fd, 0, BS, a);
		t.io.buf_index = 5;
		cr_assert_eq(queue_io(eng, &t), -EINVAL);
		cr_assert_eq(t.calls, 0);
		/* READ_FIXED really is used: memory outside buffer 0 is EFAULT */
		tio_init(&t, DIO_IO_READ, fd, 0, BS, other);
		t.io.buf_index = 0;
		cr_assert_eq(run_io(eng, &t), -EFAULT);
		free(other);

		/*
		 * The fixed file table really is used: it holds its own reference,
		 * so I/O on the fd number still reaches the file after close().
		 */
		ret = eng->ops->register_file(eng, fd);
		cr_assert_geq(ret, 0);
		close(fd);
		write_read_check(eng, -1, ret + 1, a, a + arena / 2, index, BS, 10);
		eng->ops->unregister_file(eng, ret);
		tio_init(&t, DIO_IO_READ, fd, 0, BS, a);
		cr_assert_eq(run_io(eng, &t), -EBADF);
	} else {
		close(fd);
	}
	free(a);
}

Test(engine, dsync_write)
{
	uint8_t *w = test_alloc(BS), *r = test_alloc(BS);
	int fd = open_direct(1 << 20, NULL);
	struct tio t;

	test_pattern(w, BS, 0, 11);
	tio_init(&t, DIO_IO_WRITE, fd, 0, BS, w);
	t.io.rw_flags = RWF_DSYNC;
	cr_assert_eq(run_io(eng, &t), BS);
	tio_init(&t, DIO_IO_READ, fd, 0, BS, r);
	cr_assert_eq(run_io(eng, &t), BS);
	cr_assert(test_pattern_check(r, BS, 0, 11));
	close(fd);
	free(w);
	free(r);
}

Test(engine, fsync_fallocate_fadvise)
{
	uint8_t *w = test_alloc(4 * BS), *r = test_alloc(4 * BS);
	int fd = open_direct(1 << 20, NULL);
	struct tio t;

	test_pattern(w, 4 * BS, 0, 12);
	tio_init(&t, DIO_IO_WRITE, fd, 0, 4 * BS, w);
	cr_assert_eq(run_io(eng, &t), 4 * BS);

	tio_init(&t, DIO_IO_FSYNC, fd, 0, 0, NULL);
	cr_assert_eq(run_io(eng, &t), 0);
	tio_init(&t, DIO_IO_FSYNC, fd, 0, 0, NULL);
	t.io.mode = 1;
	cr_assert_eq(run_io(eng, &t), 0);

	/* punch the middle two blocks: they read back as zeros, the rest stays */
	tio_init(&t, DIO_IO_FALLOCATE, fd, BS, 2 * BS, NULL);
	t.io.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	cr_assert_eq(run_io(eng, &t), 0);
	memset(r, 0xaa, 4 * BS);
	tio_init(&t, DIO_IO_READ, fd, 0, 4 * BS, r);
	cr_assert_eq(run_io(eng, &t), 4 * BS);
	cr_assert(test_pattern_check(r, BS, 0, 12));
	for (int i = BS; i < 3 * BS; i++)
		cr_assert_eq(r[i], 0, "byte %d of the hole is %d", i, r[i]);
	cr_assert(test_pattern_check(r + 3 * BS, BS, 3 * BS, 12));

	/* allocating past EOF with mode 0 grows the file */
	tio_init(&t, DIO_IO_FALLOCATE, fd, 1 << 20, 1 << 20, NULL);
	cr_assert_eq(run_io(eng, &t), 0);
	cr_assert_eq(lseek(fd, 0, SEEK_END), 2 << 20);

	tio_init(&t, DIO_IO_FADVISE, fd, 0, 1 << 20, NULL);
	t.io.mode = POSIX_FADV_WILLNEED;
	cr_assert_eq(run_io(eng, &t), 0);
	/* a bad advice is the kernel's EINVAL, reported through end_io */
	tio_init(&t, DIO_IO_FADVISE, fd, 0, 1 << 20, NULL);
	t.io.mode = 12345;
	cr_assert_eq(run_io(eng, &t), -EINVAL);
	close(fd);
	free(w);
	free(r);
}

Test(engine, discard_on_regular_file)
{
	int fd = open_direct(1 << 20, NULL);
	struct tio t;

	/*
	 * No ring opcode for these: they run synchronously, yet end_io still
	 * comes from reap. On a regular file the block ioctls are ENOTTY.
	 */
	tio_init(&t, DIO_IO_DISCARD, fd, 0, BS, NULL);
	cr_assert_eq(queue_io(eng, &t), 0);
	cr_assert_eq(t.calls, 0);
	cr_assert_geq(submit(eng), 0);
	reap_all(eng, &t, 1);
	cr_assert_eq(t.res, -ENOTTY);
	tio_init(&t, DIO_IO_ZEROOUT, fd, 0, BS, NULL);
	cr_assert_eq(run_io(eng, &t), -ENOTTY);
	close(fd);
}

Test(engine, many_in_flight)
{
	enum { N = 64 };
	uint8_t *buf = test_alloc(N * BS);
	struct tio *ts = calloc(N, sizeof(*ts));
	int fd = open_direct(N * BS, NULL);
	int reaped = 0;

	for (int i = 0; i < N; i++) {
		test_pattern(buf + i * BS, BS, (uint64_t)i * BS, 21);
		tio_init(&ts[i], DIO_IO_WRITE, fd, (uint64_t)i * BS, BS, buf + i * BS);
		cr_assert_eq(queue_io(eng, &ts[i]), 0);
	}
	cr_assert_eq(eng->inflight, N);
	cr_assert_geq(submit(eng), 0);
	for (int round = 0; round < 10000 && reaped < N; round++) {
		int n = dio_engine_reap(eng, true);

		cr_assert_geq(n, 1, "reap(wait) with I/O in flight returned %d", n);
		reaped += n;
	}
	cr_assert_eq(reaped, N);
	cr_assert_eq(eng->inflight, 0);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(ts[i].calls, 1);
		cr_assert_eq(ts[i].res, BS);
	}

	/* read all 64 back at once, in reverse offset order */
	memset(buf, 0, N * BS);
	for (int i = 0; i < N; i++) {
		tio_init(&ts[i], DIO_IO_READ, fd, (uint64_t)(N - 1 - i) * BS, BS,
			 buf + (N - 1 - i) * BS);
		cr_assert_eq(queue_io(eng, &ts[i]), 0);
	}
	cr_assert_geq(submit(eng), 0);
	reap_all(eng, ts, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(ts[i].res, BS);
	cr_assert(test_pattern_check(buf, N * BS, 0, 21));
	close(fd);
	free(ts);
	free(buf);
}

Test(engine, queue_beyond_depth)
{
	/* more than the depth (64) queued before one submit: queue makes room */
	enum { N = 200 };
	uint8_t *buf = test_alloc(BS);
	struct tio *ts = calloc(N, sizeof(*ts));
	int fd = open_direct(BS, NULL);

	for (int i = 0; i < N; i++) {
		tio_init(&ts[i], DIO_IO_READ, fd, 0, BS, buf);
		cr_assert_eq(queue_io(eng, &ts[i]), 0);
	}
	cr_assert_geq(submit(eng), 0);
	reap_all(eng, ts, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(ts[i].calls, 1);
		cr_assert_eq(ts[i].res, BS);
	}
	close(fd);
	free(ts);
	free(buf);
}

Test(engine, reap_without_io)
{
	cr_assert_eq(dio_engine_reap(eng, false), 0);
	/* nothing in flight: wait must not block */
	cr_assert_eq(dio_engine_reap(eng, true), 0);
	cr_assert_eq(submit(eng), 0);
}

/* A chain: each completion queues the next read until 'left' runs out. */
struct chain {
	struct tio t;
	struct dio_engine *e;
	int left;
	int queued_from_end_io;
};

static void
chain_end(struct dio_io *io, int64_t res)
{
	struct chain *c = (struct chain *)io;

	cr_assert_eq(inside_submit, 0);
	cr_assert_eq(res, BS);
	c->t.calls++;
	if (--c->left > 0) {
		/* the same io is ours again once end_io runs: reuse it */
		io->offset = (uint64_t)(c->left % 4) * BS;
		cr_assert_eq(dio_engine_queue(c->e, io), 0);
		c->queued_from_end_io++;
		/* half the time submit right here, half leave it to the reaper */
		if (c->left % 2)
			cr_assert_geq(dio_engine_submit(c->e), 0);
	}
}

Test(engine, end_io_queues_more)
{
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(4 * BS, NULL);
	struct chain c = { .e = eng, .left = 20 };

	tio_init(&c.t, DIO_IO_READ, fd, 0, BS, buf);
	c.t.io.end_io = chain_end;
	cr_assert_eq(queue_io(eng, &c.t), 0);
	cr_assert_geq(submit(eng), 0);
	for (int round = 0; round < 10000 && eng->inflight; round++)
		cr_assert_geq(dio_engine_reap(eng, true), 0);
	cr_assert_eq(eng->inflight, 0);
	cr_assert_eq(c.t.calls, 20);
	cr_assert_eq(c.queued_from_end_io, 19);
	close(fd);
	free(buf);
}

Test(engine, end_io_queues_more_poll_driven)
{
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(4 * BS, NULL);
	struct chain c = { .e = eng, .left = 20 };
	struct pollfd pfd = { .fd = eng->ops->event_fd(eng), .events = POLLIN };
	int rounds = 0;

	/* the daemon's loop: poll the eventfd, reap without waiting, never kick */
	tio_init(&c.t, DIO_IO_READ, fd, 0, BS, buf);
	c.t.io.end_io = chain_end;
	cr_assert_eq(queue_io(eng, &c.t), 0);
	cr_assert_geq(submit(eng), 0);
	while (eng->inflight && rounds++ < 1000) {
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "stalled after %d completions", c.t.calls);
		cr_assert_geq(dio_engine_reap(eng, false), 0);
	}
	cr_assert_eq(eng->inflight, 0);
	cr_assert_eq(c.t.calls, 20);
	close(fd);
	free(buf);
}

Test(engine, eventfd_readable)
{
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct pollfd pfd = { .fd = eng->ops->event_fd(eng), .events = POLLIN };
	struct tio t;
	int n = 0;

	/* drained engine: nothing to report */
	dio_engine_reap(eng, false);
	cr_assert_eq(poll(&pfd, 1, 0), 0, "eventfd readable with nothing done");

	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(queue_io(eng, &t), 0);
	cr_assert_geq(submit(eng), 0);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "eventfd not readable after a completion");
	cr_assert(pfd.revents & POLLIN);
	/* the poller is told before end_io ran; reap runs it */
	for (int i = 0; i < 100 && !t.calls; i++)
		n += dio_engine_reap(eng, false);
	cr_assert_eq(n, 1);
	cr_assert_eq(t.res, BS);
	/* reap cleared it */
	cr_assert_eq(poll(&pfd, 1, 0), 0, "eventfd still readable after reap");

	/* the synchronous path (ioctl) wakes the poller too */
	tio_init(&t, DIO_IO_DISCARD, fd, 0, BS, NULL);
	cr_assert_eq(queue_io(eng, &t), 0);
	cr_assert_geq(submit(eng), 0);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "eventfd not readable after a sync op");
	reap_all(eng, &t, 1);
	close(fd);
	free(buf);
}

Test(engine, bad_fd)
{
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct tio t;

	close(fd);	/* now a closed descriptor */
	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(run_io(eng, &t), -EBADF);
	tio_init(&t, DIO_IO_FSYNC, 9999, 0, 0, NULL);
	cr_assert_eq(run_io(eng, &t), -EBADF);
	free(buf);
}

Test(engine, short_read_at_eof)
{
	uint8_t *buf = test_alloc(4 * BS);
	int fd = open_direct(2 * BS, NULL);
	struct tio t;

	/* the engine passes a short count up as is */
	tio_init(&t, DIO_IO_READ, fd, BS, 4 * BS, buf);
	cr_assert_eq(run_io(eng, &t), BS);
	tio_init(&t, DIO_IO_READ, fd, 8 * BS, BS, buf);
	cr_assert_eq(run_io(eng, &t), 0);
	close(fd);
	free(buf);
}

/* ---- the fault wrapper ---- */

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

struct thread_arg {
	struct dio_engine *e;
	int fd;
	uint8_t *buf;
	int64_t res;
};

static void *
other_thread(void *p)
{
	struct thread_arg *a = p;
	struct tio t;

	tio_init(&t, DIO_IO_READ, a->fd, 0, BS, a->buf);
	if (dio_engine_queue(a->e, &t.io) == 0 && dio_engine_submit(a->e) >= 0)
		for (int i = 0; i < 1000 && !t.calls; i++)
			dio_engine_reap(a->e, true);
	a->res = t.calls == 1 ? t.res : -1000;
	return NULL;
}

Test(engine, created_here_used_on_another_thread)
{
	/*
	 * The daemon creates each reactor's engine (and registers its pool)
	 * on the main thread, then runs it on the reactor's: with a
	 * SINGLE_ISSUER ring that only works if the ring binds late.
	 */
	uint8_t *buf = test_alloc(2 * BS);
	struct iovec iov = { .iov_base = buf, .iov_len = 2 * BS };
	struct thread_arg a = { .e = eng, .buf = buf };
	pthread_t th;
	int slot = -1;

	a.fd = open_direct(BS, NULL);
	if (eng->ops->register_buffers)
		cr_assert_eq(eng->ops->register_buffers(eng, &iov, 1), 0);
	if (eng->ops->register_file) {
		slot = eng->ops->register_file(eng, a.fd);
		cr_assert_geq(slot, 0);
	}
	cr_assert_eq(pthread_create(&th, NULL, other_thread, &a), 0);
	pthread_join(th, NULL);
	cr_assert_eq(a.res, BS, "I/O on the other thread: %lld", (long long)a.res);
	/* tearing down from the creating thread is fine too */
	if (eng->ops->unregister_file)
		eng->ops->unregister_file(eng, slot);
	close(a.fd);
	free(buf);
}
