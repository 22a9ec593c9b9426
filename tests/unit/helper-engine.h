/* SPDX-License-Identifier: MIT */
/*
 * What the engine tests (test-engine.c, test-engine-fault.c) share: an io
 * that records its completion, queue/submit/reap that check end_io never
 * runs inside them, O_DIRECT scratch files, and the engine under test set
 * up and torn down around each test. Header-only, so each test binary has
 * its own state and no other unit test links it.
 */
#ifndef DIO_TEST_HELPER_ENGINE_H
#define DIO_TEST_HELPER_ENGINE_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

static inline void
tio_end(struct dio_io *io, int64_t res)
{
	struct tio *t = (struct tio *)io;

	cr_assert_eq(inside_submit, 0, "end_io ran inside queue/submit");
	cr_assert_eq(res, io->res, "res argument and io->res differ");
	t->calls++;
	t->res = res;
	t->order = completions++;
}

static inline void
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

static inline int
queue_io(struct dio_engine *e, struct tio *t)
{
	int ret;

	inside_submit = 1;
	ret = dio_engine_queue(e, &t->io);
	inside_submit = 0;
	return ret;
}

static inline int
submit(struct dio_engine *e)
{
	int ret;

	inside_submit = 1;
	ret = dio_engine_submit(e);
	inside_submit = 0;
	return ret;
}

/* Reap with wait until all of ts[0..n) completed; bounded. */
static inline void
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
static inline int64_t
run_io(struct dio_engine *e, struct tio *t)
{
	int ret = queue_io(e, t);

	cr_assert_eq(ret, 0, "queue: %s", strerror(-ret));
	cr_assert_geq(submit(e), 0);
	reap_all(e, t, 1);
	cr_assert_eq(t->calls, 1);
	return t->res;
}

static inline int
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

static inline void
setup(void)
{
	completions = 0;
	eng = test_engine_create();
}

static inline void
teardown(void)
{
	if (eng) {
		cr_expect_eq(eng->inflight, 0);
		dio_engine_destroy(eng);
	}
	eng = NULL;
}

/* Write a pattern, read it back with another buffer, through e. */
static inline void
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

#endif
