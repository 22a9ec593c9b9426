/* SPDX-License-Identifier: MIT */
/*
 * The I/O engines (uring, psync by $DIO_TEST_ENGINE): the contract every
 * engine keeps. The fault wrapper's tests are test-engine-fault.c.
 */
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>

#include "helper-engine.h"

TestSuite(engine, .init = setup, .fini = teardown);

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

/*
 * An engine with a poll fd (io_uring's ring fd): completions make it
 * readable and reaping makes it unreadable, with the eventfd left silent;
 * a kick that arrives while CQEs wait stays readable until a reap that
 * finds the CQ ring empty, so the poller is never left asleep on it.
 */
Test(engine, poll_fd_readable)
{
	int cfd = eng->ops->poll_fd ? eng->ops->poll_fd(eng) : -1;
	uint8_t *buf = test_alloc(BS);
	int fd = open_direct(BS, NULL);
	struct pollfd rp = { .fd = cfd, .events = POLLIN };
	struct pollfd ep = { .events = POLLIN };
	struct tio t, d;

	if (cfd < 0)
		cr_skip_test("the %s engine has no poll fd", eng->ops->name);
	ep.fd = eng->ops->event_fd(eng);	/* asked for after poll_fd, as the ctx does */
	dio_engine_reap(eng, false);
	cr_assert_eq(poll(&rp, 1, 0), 0, "ring fd readable with nothing done");

	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(queue_io(eng, &t), 0);
	cr_assert_geq(submit(eng), 0);
	cr_assert_eq(poll(&rp, 1, 5000), 1, "ring fd not readable after a completion");
	cr_assert_eq(poll(&ep, 1, 0), 0, "eventfd signalled although the ring fd is polled");
	reap_all(eng, &t, 1);
	cr_assert_eq(t.res, BS);
	cr_assert_eq(poll(&rp, 1, 0), 0, "ring fd still readable after reap");

	/* a kick (the helper thread's discard) while a CQE waits */
	tio_init(&t, DIO_IO_READ, fd, 0, BS, buf);
	cr_assert_eq(queue_io(eng, &t), 0);
	tio_init(&d, DIO_IO_DISCARD, fd, 0, BS, NULL);
	cr_assert_eq(queue_io(eng, &d), 0);
	cr_assert_geq(submit(eng), 0);
	cr_assert_eq(poll(&rp, 1, 5000), 1, "ring fd not readable after a completion");
	cr_assert_eq(poll(&ep, 1, 5000), 1, "eventfd not readable after a sync op");
	cr_assert_geq(dio_engine_reap(eng, false), 1);
	cr_assert_eq(t.calls, 1);
	/* the CQ had entries: the eventfd was not read, so the poller comes back */
	cr_assert_eq(poll(&ep, 1, 0), 1, "eventfd read although the CQ ring had entries");
	reap_all(eng, &d, 1);
	dio_engine_reap(eng, false);
	cr_assert_eq(poll(&ep, 1, 0), 0, "eventfd still readable after a reap with the CQ empty");
	cr_assert_eq(poll(&rp, 1, 0), 0, "ring fd still readable after reap");
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

/*
 * io_uring enters the kernel once submit_batch SQEs wait, without the
 * caller's dio_engine_submit (the server's requests do not wait for its
 * loop turn to end); DIO_SUBMIT_AT_TURN keeps them for that submit. Seen
 * without a reap (which submits what waits): a completion makes the
 * engine's eventfd readable within 2 s; none comes within 100 ms of I/O
 * that was never submitted.
 */
Test(engine, uring_submits_early)
{
	struct dio_engine_opts early = { .kind = DIO_ENGINE_URING, .depth = 16, .submit_batch = 2 };
	struct dio_engine_opts turn = { .kind = DIO_ENGINE_URING, .depth = 16,
					.submit_batch = DIO_SUBMIT_AT_TURN };
	uint8_t *buf = test_alloc(4 * BS);
	int fd = open_direct(4 * BS, NULL);
	struct pollfd pfd = { .events = POLLIN };
	struct dio_engine *e;
	struct tio ts[4];
	int ret;

	ret = dio_engine_create(&early, &e);
	cr_assert_eq(ret, 0, "io_uring engine: %s", strerror(-ret));
	pfd.fd = e->ops->event_fd(e);
	for (int i = 0; i < 4; i++)
		tio_init(&ts[i], DIO_IO_READ, fd, (uint64_t)i * BS, BS, buf + i * BS);
	cr_assert_eq(queue_io(e, &ts[0]), 0);
	cr_assert_eq(poll(&pfd, 1, 100), 0, "one SQE of a batch of 2 went in alone");
	cr_assert_eq(queue_io(e, &ts[1]), 0);
	cr_assert_eq(poll(&pfd, 1, 2000), 1, "two SQEs waited for dio_engine_submit");
	reap_all(e, ts, 2);
	dio_engine_destroy(e);

	ret = dio_engine_create(&turn, &e);
	cr_assert_eq(ret, 0, "io_uring engine: %s", strerror(-ret));
	pfd.fd = e->ops->event_fd(e);
	for (int i = 0; i < 4; i++) {
		tio_init(&ts[i], DIO_IO_READ, fd, (uint64_t)i * BS, BS, buf + i * BS);
		cr_assert_eq(queue_io(e, &ts[i]), 0);
	}
	cr_assert_eq(poll(&pfd, 1, 100), 0, "DIO_SUBMIT_AT_TURN submitted before the turn");
	cr_assert_geq(submit(e), 4);
	cr_assert_eq(poll(&pfd, 1, 2000), 1, "no completion after dio_engine_submit");
	reap_all(e, ts, 4);
	dio_engine_destroy(e);
	close(fd);
	free(buf);
}
