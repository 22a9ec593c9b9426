/* SPDX-License-Identifier: MIT */
/*
 * file-lock: QEMU's image locks, between open file descriptions of one
 * process (OFD locks conflict between descriptions, not processes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/dio.h"
#include "file-lock.h"
#include "helper.h"

#define MSG_WRITING "another process (QEMU image lock) holds it for writing"
#define MSG_NO_WRITERS "another process does not allow writers"
#define MSG_NO_READERS "another process does not allow readers"

static char *path;
static int fds[3];

static void
setup(void)
{
	path = test_file_create(1 << 20);
	for (int i = 0; i < 3; i++) {
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		cr_assert(fds[i] >= 0, "open %s: %s", path, strerror(errno));
	}
}

static void
teardown(void)
{
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (path)
		unlink(path);
	free(path);
	path = NULL;
}

TestSuite(file_lock, .init = setup, .fini = teardown, .timeout = 30);

/* Whether a description other than fd's holds a lock on byte off. */
static bool
held(int fd, int off)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };

	cr_assert_eq(fcntl(fd, F_OFD_GETLK, &fl), 0, "F_OFD_GETLK: %s", strerror(errno));
	return fl.l_type != F_UNLCK;
}

/* Lock fds[i] as a reader or writer and expect want; on failure, err must contain msg. */
static void
expect_apply(int i, bool write, int want, const char *msg)
{
	char err[256] = "";
	int ret = file_lock_apply(fds[i], write, err, sizeof(err));

	cr_assert_eq(ret, want, "%s on fd %d: %d (%s)", write ? "writer" : "reader", i, ret, err);
	if (want)
		cr_assert(strstr(err, msg), "message '%s' lacks '%s'", err, msg);
}

/* The bytes QEMU's raw_check_lock_bytes looks at, as fds[2] sees them. */
static void
expect_bytes(const int *on, size_t n)
{
	static const int all[] = { 100, 101, 102, 103, 104, 200, 201, 202, 203, 204 };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		bool want = false;

		for (size_t j = 0; j < n; j++)
			want |= on[j] == all[i];
		cr_expect_eq(held(fds[2], all[i]), want, "byte %d %s", all[i],
			     want ? "not locked" : "locked");
	}
}

Test(file_lock, writer_takes_qemus_bytes)
{
	/* CONSISTENT_READ, WRITE held; WRITE, RESIZE not shared */
	static const int writer[] = { 100, 101, 201, 203 };

	expect_apply(0, true, 0, NULL);
	expect_bytes(writer, 4);
}

Test(file_lock, reader_takes_qemus_bytes)
{
	static const int reader[] = { 100, 201, 203 };

	expect_apply(0, false, 0, NULL);
	expect_bytes(reader, 3);
}

Test(file_lock, writer_refuses_writer)
{
	expect_apply(0, true, 0, NULL);
	expect_apply(1, true, -EAGAIN, MSG_WRITING);
}

Test(file_lock, readers_share)
{
	expect_apply(0, false, 0, NULL);
	expect_apply(1, false, 0, NULL);
}

Test(file_lock, writer_refuses_reader)
{
	expect_apply(0, true, 0, NULL);
	expect_apply(1, false, -EAGAIN, MSG_WRITING);
}

Test(file_lock, reader_refuses_writer)
{
	expect_apply(0, false, 0, NULL);
	expect_apply(1, true, -EAGAIN, MSG_NO_WRITERS);
}

Test(file_lock, release_frees)
{
	expect_apply(0, true, 0, NULL);
	file_lock_release(fds[0]);
	expect_bytes(NULL, 0);
	expect_apply(1, true, 0, NULL);
}

Test(file_lock, close_frees)
{
	expect_apply(0, true, 0, NULL);
	close(fds[0]);
	fds[0] = -1;
	expect_apply(1, true, 0, NULL);
}

Test(file_lock, refused_keeps_nothing)
{
	static const int writer[] = { 100, 101, 201, 203 };

	expect_apply(0, true, 0, NULL);
	expect_apply(1, true, -EAGAIN, MSG_WRITING);
	file_lock_release(fds[0]);
	/* fds[1] let go of the bytes it had taken before it saw the conflict */
	expect_bytes(NULL, 0);
	expect_apply(0, true, 0, NULL);
	expect_bytes(writer, 4);
}

/* A QEMU block job's target that allows no consistent readers holds byte 200. */
Test(file_lock, names_no_readers)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 1 };

	cr_assert_eq(fcntl(fds[0], F_OFD_SETLK, &fl), 0);
	expect_apply(1, false, -EAGAIN, MSG_NO_READERS);
}

/* A QEMU without OFD locks takes process (POSIX) locks, which have a pid to name. */
Test(file_lock, names_posix_holder_pid)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 101, .l_len = 1 };
	char pid[32];

	cr_assert_eq(fcntl(fds[0], F_SETLK, &fl), 0);
	snprintf(pid, sizeof(pid), "(pid %d)", (int)getpid());
	expect_apply(1, false, -EAGAIN, MSG_WRITING);
	expect_apply(1, true, -EAGAIN, pid);
}

Test(file_lock, open_checks_same_file)
{
	char *other = test_file_create(4096);
	int ofd = open(other, O_RDONLY | O_CLOEXEC);
	char err[256] = "";
	int lfd;

	cr_assert(ofd >= 0);
	cr_expect_eq(file_lock_open(path, ofd, true, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "changed while being opened"), "%s", err);
	lfd = file_lock_open(path, fds[0], true, err, sizeof(err));
	cr_assert(lfd >= 0, "%s", err);
	expect_apply(1, false, -EAGAIN, MSG_WRITING);
	file_lock_close(lfd);
	expect_apply(1, true, 0, NULL);
	close(ofd);
	unlink(other);
	free(other);
}

/* Through the file volume: what dionbd and the plugin get. */
Test(file_lock, volumes)
{
	static const int writer[] = { 100, 101, 201, 203 };
	struct dio_file_opts rw = { 0 }, ro = { .readonly = true }, off = { .no_lock = true };
	struct dio_volume *a = NULL, *b = NULL, *c = NULL;
	char err[256] = "";

	rw.errbuf = ro.errbuf = err;
	rw.errlen = ro.errlen = sizeof(err);
	/* In one process a file is one volume: a second open shares its locks. */
	cr_assert_eq(dio_file_open(path, &rw, &a), 0, "%s", err);
	cr_assert_eq(dio_file_open(path, &rw, &b), 0, "%s", err);
	cr_assert_eq(a, b);
	dio_volume_put(b);
	expect_bytes(writer, 4);
	/* Another holder (QEMU's tools) is kept out either way. */
	expect_apply(0, true, -EAGAIN, MSG_WRITING);
	expect_apply(0, false, -EAGAIN, MSG_WRITING);
	dio_volume_put(a);

	/* A writer elsewhere keeps the volume out, unless locking is off. */
	expect_apply(0, true, 0, NULL);
	cr_expect_eq(dio_file_open(path, &rw, &a), -EAGAIN);
	cr_expect(strstr(err, path) && strstr(err, MSG_WRITING), "%s", err);
	err[0] = '\0';
	cr_expect_eq(dio_file_open(path, &ro, &b), -EAGAIN);
	cr_expect(strstr(err, MSG_WRITING), "%s", err);
	cr_assert_eq(dio_file_open(path, &off, &c), 0, "no_lock");
	dio_volume_put(c);
	file_lock_release(fds[0]);

	/* A reader elsewhere lets a read-only volume in, not a writable one. */
	expect_apply(0, false, 0, NULL);
	cr_assert_eq(dio_file_open(path, &ro, &a), 0, "%s", err);
	dio_volume_put(a);
	cr_expect_eq(dio_file_open(path, &rw, &c), -EAGAIN);
	cr_expect(strstr(err, MSG_NO_WRITERS), "%s", err);
	file_lock_release(fds[0]);

	/* closed volumes left nothing behind */
	cr_assert_eq(dio_file_open(path, &rw, &a), 0, "%s", err);
	dio_volume_put(a);
	expect_bytes(NULL, 0);
}
