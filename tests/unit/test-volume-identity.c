/* SPDX-License-Identifier: MIT */
/*
 * A volume's identity: one volume per backing object, shared by every open
 * of it (so that exports of one file share one map), and an identity that
 * outlives fd numbers (so that a long-lived ctx never sends a new volume's
 * I/O to a closed one's file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

#define LEN 4096u

static struct dio_volume *
open_mode(const char *p, bool readonly)
{
	char err[256] = "";
	struct dio_file_opts o = { .readonly = readonly, .errbuf = err, .errlen = sizeof(err) };
	struct dio_volume *v = NULL;
	int ret = dio_file_open(p, &o, &v);

	cr_assert_eq(ret, 0, "open %s: %d %s", p, ret, err);
	return v;
}

static struct dio_volume *
open_file(const char *p)
{
	return open_mode(p, false);
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

Test(volume_identity, a_new_volume_on_a_reused_fd_number_gets_its_own_writes, .timeout = 60)
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
	dio_volume_put(v1);

	v2 = open_file(p2);
	/* The case under test: the kernel hands out the lowest free fd. */
	cr_assert_eq(v2->fd, fd1, "the second volume did not reuse fd %d (got %d)", fd1, v2->fd);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_WRITE, 0, 0, LEN, b), 0);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	dio_volume_put(v2);
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

Test(volume_identity, two_opens_of_one_file_share_one_volume_and_its_map, .timeout = 60)
{
	struct dio_ctx *ctx = test_ctx_create(NULL, NULL);
	char *p = test_file_create(1 << 20), *lnk = NULL;
	uint8_t *a = test_alloc(LEN), *got = test_alloc(LEN);
	struct dio_volume *v1, *v2, *v3;

	cr_assert(asprintf(&lnk, "%s.link", p) > 0);
	cr_assert_eq(link(p, lnk), 0, "link: %s", strerror(errno));
	v1 = open_file(p);
	v2 = open_file(lnk);
	cr_assert_eq(v1, v2, "a second path to the same inode opened a second volume");
	cr_assert_eq(dio_volume_id(v1), dio_volume_id(v2));
	/* Read-only users share a writable volume; their exports refuse writes. */
	v3 = open_mode(p, true);
	cr_assert_eq(v3, v1);
	dio_volume_put(v3);

	/* The bug this prevents: the hole map of the second user went stale. */
	test_pattern(a, LEN, 64 * LEN, 3);
	cr_assert_eq(test_io(ctx, v1, DIO_REQ_WRITE, 0, 64 * LEN, LEN, a), 0);
	memset(got, 0, LEN);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_READ, 0, 64 * LEN, LEN, got), 0);
	cr_assert(test_pattern_check(got, LEN, 64 * LEN, 3),
		  "a write through one user reads back differently through the other");

	/* Still open through v2 after v1 is put. */
	dio_volume_put(v1);
	cr_assert_eq(test_io(ctx, v2, DIO_REQ_READ, 0, 64 * LEN, LEN, got), 0);
	cr_assert(test_pattern_check(got, LEN, 64 * LEN, 3));
	dio_volume_put(v2);
	dio_ctx_destroy(ctx);
	unlink(lnk);
	unlink(p);
	free(lnk);
	free(p);
	free(a);
	free(got);
}

Test(volume_identity, writing_is_refused_while_open_read_only_only, .timeout = 60)
{
	char *p = test_file_create(1 << 20);
	char err[256] = "";
	struct dio_file_opts rw = { .errbuf = err, .errlen = sizeof(err) };
	struct dio_volume *ro = open_mode(p, true), *v = NULL;
	uint64_t id = dio_volume_id(ro);

	cr_assert(ro->readonly);
	cr_assert_eq(dio_file_open(p, &rw, &v), -EBUSY);
	cr_assert(strstr(err, "read-only"), "message: %s", err);
	dio_volume_put(ro);
	/* Once closed, a new open is a new volume, writable, with a new identity. */
	v = open_file(p);
	cr_assert_not(v->readonly);
	cr_assert_neq(dio_volume_id(v), id);
	dio_volume_put(v);
	unlink(p);
	free(p);
}
