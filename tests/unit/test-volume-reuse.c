/* SPDX-License-Identifier: MIT */
/*
 * Volumes come and go under a long-lived ctx (live export management): a
 * new volume whose fd number was used by a closed one must get its own
 * I/O. The io_uring engine registers files in fixed slots; a slot found by
 * fd number would still hold the closed volume's file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

#define LEN 4096u

static struct dio_volume *
open_file(const char *p)
{
	char err[256] = "";
	struct dio_volume_opts o = { .errbuf = err, .errlen = sizeof(err) };
	struct dio_volume *v = NULL;
	int ret = dio_volume_open(p, &o, &v);

	cr_assert_eq(ret, 0, "open %s: %d %s", p, ret, err);
	return v;
}

/* The first LEN bytes of path, read without libdio. */
static void
read_back(const char *path, void *buf)
{
	int fd = open(path, O_RDONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, buf, LEN, 0), (ssize_t)LEN);
	close(fd);
}

Test(volume_reuse, a_new_volume_on_a_reused_fd_number_gets_its_own_writes, .timeout = 60)
{
	struct dio_ctx *ctx = test_ctx_create(NULL, NULL);
	char *p1 = test_file_create(1 << 20), *p2 = test_file_create(1 << 20);
	uint8_t *a = test_alloc(LEN), *b = test_alloc(LEN), *got = test_alloc(LEN);
	struct dio_volume *v1, *v2;
	int fd1;

	test_pattern(a, LEN, 0, 1);
	test_pattern(b, LEN, 0, 2);
	v1 = open_file(p1);
	fd1 = v1->fd;
	cr_assert_eq(test_io(ctx, v1, DIO_REQ_WRITE, 0, 0, LEN, a), 0);
	dio_volume_close(v1);

	v2 = open_file(p2);
	/* The case under test: the kernel hands out the lowest free fd. */
	cr_assert_eq(v2->fd, fd1, "the second volume did not reuse fd %d (got %d)", fd1, v2->fd);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_WRITE, 0, 0, LEN, b), 0);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_close(v2);
	dio_ctx_destroy(ctx);

	read_back(p1, got);
	cr_assert(test_pattern_check(got, LEN, 0, 1), "the first file was overwritten");
	read_back(p2, got);
	cr_assert(test_pattern_check(got, LEN, 0, 2), "the second file did not get its data");
	unlink(p1);
	unlink(p2);
	free(p1);
	free(p2);
	free(a);
	free(b);
	free(got);
}
