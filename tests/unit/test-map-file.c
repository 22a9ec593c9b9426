/* SPDX-License-Identifier: MIT */
/*
 * The file volume on real sparse files: the map read at open (holes,
 * unwritten extents, data), map_begin/map_end, the trim/zero fallback
 * chain, open errors, read-only detection, geometry, and real I/O through
 * the dio engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

#define KiB 1024u
#define R (128 * KiB)		/* one region of the layout */
#define WSPLIT (16 * KiB)	/* data written at the start of region 5 */
#define FSIZE (8 * R)
#define SEED 7

static char *path;
static struct dio_volume *vol;
static char logbuf[4096];

static void
log_hook(int level, const char *msg)
{
	size_t n = strlen(logbuf);

	snprintf(logbuf + n, sizeof(logbuf) - n, "[%d] %s\n", level, msg);
}

/*
 * The layout, in 128 KiB regions:
 *   [0, R)        data
 *   [R, 2R)       hole
 *   [2R, 4R)      fallocated: unwritten
 *   [4R, 5R)      data
 *   [5R, 6R)      fallocated, first 16 KiB written: data then unwritten
 *   [6R, 8R)      hole up to EOF
 */
static void
write_pattern(int fd, uint64_t pos, size_t len)
{
	void *buf = test_alloc(len);

	test_pattern(buf, len, pos, SEED);
	cr_assert_eq(pwrite(fd, buf, len, (off_t)pos), (ssize_t)len);
	free(buf);
}

static char *
make_layout(void)
{
	char *p = test_file_create(FSIZE);
	int fd = open(p, O_RDWR);

	cr_assert(fd >= 0);
	write_pattern(fd, 0, R);
	cr_assert_eq(fallocate(fd, 0, 2 * R, 2 * R), 0, "fallocate: %s", strerror(errno));
	write_pattern(fd, 4 * R, R);
	cr_assert_eq(fallocate(fd, 0, 5 * R, R), 0);
	write_pattern(fd, 5 * R, WSPLIT);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	return p;
}

static void
open_vol(const char *p, bool readonly)
{
	char err[256] = "";
	struct dio_volume_opts o = { .readonly = readonly, .errbuf = err, .errlen = sizeof(err) };
	int ret = dio_volume_open(p, &o, &vol);

	cr_assert_eq(ret, 0, "open %s: %d %s", p, ret, err);
}

static void
setup(void)
{
	logbuf[0] = '\0';
	dio_set_log(log_hook);
	path = make_layout();
	open_vol(path, false);
}

static void
teardown(void)
{
	dio_volume_close(vol);
	vol = NULL;
	if (path)
		unlink(path);
	free(path);
	path = NULL;
	dio_set_log(NULL);
}

TestSuite(map_file, .init = setup, .fini = teardown, .timeout = 60);

static const char *
tname(unsigned int t)
{
	return t == DIO_EXT_HOLE ? "HOLE" : t == DIO_EXT_MAPPED ? "MAPPED" :
	       t == DIO_EXT_UNWRITTEN ? "UNWRITTEN" : "?";
}

/* map_begin(pos, len, flags) must give type/xflags over length bytes. */
static struct dio_extent
expect_map(uint64_t pos, uint64_t len, unsigned int flags, unsigned int type,
	   unsigned int xflags, uint64_t length)
{
	struct dio_extent e;
	int ret = vol->map_ops->map_begin(vol, pos, len, flags, &e);

	cr_assert_eq(ret, 0, "map_begin(%llu): %d", (unsigned long long)pos, ret);
	cr_assert_eq(e.pos, pos);
	cr_assert_eq(e.addr, pos);
	cr_assert_eq(e.type, type, "at %llu: %s, want %s (%s)", (unsigned long long)pos,
		     tname(e.type), tname(type), logbuf);
	cr_assert_eq(e.flags, xflags, "at %llu: flags %x, want %x", (unsigned long long)pos,
		     e.flags, xflags);
	cr_assert_eq(e.length, length, "at %llu: length %llu, want %llu",
		     (unsigned long long)pos, (unsigned long long)e.length,
		     (unsigned long long)length);
	return e;
}

/* The layout as seen at open, walked from 0 to EOF. */
static void
expect_layout(void)
{
	expect_map(0, FSIZE, 0, DIO_EXT_MAPPED, 0, R);
	expect_map(R, FSIZE - R, 0, DIO_EXT_HOLE, 0, R);
	expect_map(2 * R, FSIZE - 2 * R, 0, DIO_EXT_UNWRITTEN, 0, 2 * R);
	expect_map(4 * R, FSIZE - 4 * R, 0, DIO_EXT_MAPPED, 0, R + WSPLIT);
	expect_map(5 * R + WSPLIT, FSIZE - 5 * R - WSPLIT, 0, DIO_EXT_UNWRITTEN, 0, R - WSPLIT);
	expect_map(6 * R, FSIZE - 6 * R, 0, DIO_EXT_HOLE, 0, 2 * R);
}

Test(map_file, regions_at_open)
{
	expect_layout();
	/* From inside a run, and clipped to what was asked. */
	expect_map(4096, 8192, 0, DIO_EXT_MAPPED, 0, 8192);
	expect_map(R + 512, FSIZE, 0, DIO_EXT_HOLE, 0, R - 512);
	expect_map(3 * R, FSIZE, DIO_MAP_REPORT, DIO_EXT_UNWRITTEN, 0, R);
}

Test(map_file, map_for_write)
{
	/* A hole is allocated by the filesystem as the write lands. */
	expect_map(R, R, DIO_MAP_WRITE, DIO_EXT_MAPPED, DIO_EXT_NEW, R);
	/* Unwritten stays unwritten: the fs converts it after the write. */
	expect_map(2 * R, R, DIO_MAP_WRITE, DIO_EXT_UNWRITTEN, 0, R);
	/* Data is overwritten in place. */
	expect_map(0, 2 * R, DIO_MAP_WRITE, DIO_EXT_MAPPED, 0, R);
	/* Reporting never allocates. */
	expect_map(R, R, DIO_MAP_WRITE | DIO_MAP_REPORT, DIO_EXT_HOLE, 0, R);
}

Test(map_file, out_of_range)
{
	struct dio_extent e;

	cr_assert_eq(vol->map_ops->map_begin(vol, FSIZE, 512, 0, &e), -EINVAL);
	cr_assert_eq(vol->map_ops->map_begin(vol, 0, 0, 0, &e), -EINVAL);
	/* Clipped to the end of the volume. */
	expect_map(7 * R, 4 * R, 0, DIO_EXT_HOLE, 0, R);
}

Test(map_file, map_end_marks_data)
{
	struct dio_extent e;

	/* A write of 8 KiB into the hole of which only 4 KiB made it. */
	e = expect_map(R + 4096, 8192, DIO_MAP_WRITE, DIO_EXT_MAPPED, DIO_EXT_NEW, 8192);
	cr_assert_eq(vol->map_ops->map_end(vol, &e, 4096, DIO_MAP_WRITE), 0);
	expect_map(R, R, 0, DIO_EXT_HOLE, 0, 4096);
	expect_map(R + 4096, R, 0, DIO_EXT_MAPPED, 0, 4096);
	expect_map(R + 8192, R, 0, DIO_EXT_HOLE, 0, R - 8192);

	/* Nothing written: nothing changes. */
	e = expect_map(R + 8192, 4096, DIO_MAP_WRITE, DIO_EXT_MAPPED, DIO_EXT_NEW, 4096);
	cr_assert_eq(vol->map_ops->map_end(vol, &e, 0, DIO_MAP_WRITE), 0);
	expect_map(R + 8192, R, 0, DIO_EXT_HOLE, 0, R - 8192);

	/* A write into unwritten space. */
	e = expect_map(3 * R, R, DIO_MAP_WRITE, DIO_EXT_UNWRITTEN, 0, R);
	cr_assert_eq(vol->map_ops->map_end(vol, &e, R, DIO_MAP_WRITE | DIO_MAP_FUA), 0);
	expect_map(2 * R, 4 * R, 0, DIO_EXT_UNWRITTEN, 0, R);
	/* joins the data region after it */
	expect_map(3 * R, 4 * R, 0, DIO_EXT_MAPPED, 0, 2 * R + WSPLIT);

	/* A read's map_end changes nothing. */
	e = expect_map(6 * R, R, 0, DIO_EXT_HOLE, 0, R);
	cr_assert_eq(vol->map_ops->map_end(vol, &e, R, 0), 0);
	expect_map(6 * R, 2 * R, 0, DIO_EXT_HOLE, 0, 2 * R);
}

/*
 * Threads writing interleaved 4 KiB blocks of the tail hole while others
 * map the same range: every write sees its block as a NEW allocation, and
 * in the end the whole range is data.
 */
#define NTHREADS 4
#define TBLK 4096u

static void *
writer_thread(void *arg)
{
	uintptr_t t = (uintptr_t)arg;

	for (uint64_t pos = 6 * R + t * TBLK; pos < 8 * R; pos += NTHREADS * TBLK) {
		struct dio_extent e;

		if (vol->map_ops->map_begin(vol, pos, TBLK, DIO_MAP_WRITE, &e) ||
		    e.type != DIO_EXT_MAPPED || !(e.flags & DIO_EXT_NEW) || e.length != TBLK)
			return (void *)"write not mapped as a new block";
		if (vol->map_ops->map_end(vol, &e, TBLK, DIO_MAP_WRITE))
			return (void *)"map_end failed";
	}
	return NULL;
}

static void *
reader_thread(void *arg)
{
	for (int i = 0; i < 20000; i++) {
		struct dio_extent e;
		uint64_t pos = 6 * R + (uint64_t)(i % 64) * TBLK;

		if (vol->map_ops->map_begin(vol, pos, 2 * R, 0, &e) || e.length == 0 ||
		    e.length > 8 * R - pos ||
		    (e.type != DIO_EXT_HOLE && e.type != DIO_EXT_MAPPED))
			return (void *)"bad map while writers run";
	}
	return NULL;
}

Test(map_file, concurrent_map_begin_end)
{
	pthread_t th[2 * NTHREADS];
	void *res;

	for (uintptr_t i = 0; i < 2 * NTHREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, i < NTHREADS ? writer_thread :
					    reader_thread, (void *)i), 0);
	for (int i = 0; i < 2 * NTHREADS; i++) {
		cr_assert_eq(pthread_join(th[i], &res), 0);
		cr_assert_null(res, "thread %d: %s", i, (const char *)res);
	}
	expect_map(5 * R + WSPLIT, FSIZE, 0, DIO_EXT_UNWRITTEN, 0, R - WSPLIT);
	expect_map(6 * R, FSIZE, 0, DIO_EXT_MAPPED, 0, 2 * R);
}

static struct dio_io
prep(enum dio_meta_op op, unsigned int flags, uint64_t pos, uint64_t len, int want)
{
	return test_prep_meta(vol, op, flags, pos, len, want);
}

static int
end(enum dio_meta_op op, unsigned int flags, uint64_t pos, uint64_t len,
    const struct dio_io *io, int res)
{
	return vol->vol_ops->end_meta(vol, op, flags, pos, len, io, res);
}

Test(map_file, meta_methods)
{
	struct dio_io io;

	cr_assert(vol->can_trim);
	cr_assert(vol->can_zero);
	io = prep(DIO_META_FLUSH, 0, 0, 0, 0);
	cr_assert_eq(io.op, DIO_IO_FSYNC);
	cr_assert_eq(io.mode, 0, "flush is fdatasync");
	io = prep(DIO_META_TRIM, 0, 0, R, 0);
	cr_assert_eq(io.op, DIO_IO_FALLOCATE);
	cr_assert_eq(io.mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, 0);
	cr_assert_eq(io.op, DIO_IO_FALLOCATE);
	cr_assert_eq(io.mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	io = prep(DIO_META_ZERO, 0, 0, R, 0);
	cr_assert_eq(io.op, DIO_IO_FALLOCATE);
	cr_assert_eq(io.mode, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	io = prep(DIO_META_CACHE, 0, 0, R, 0);
	cr_assert_eq(io.op, DIO_IO_FADVISE);
	cr_assert_eq(io.mode, POSIX_FADV_WILLNEED);
}

Test(map_file, meta_fallback_chain)
{
	struct dio_io io;

	/* Punching refused: zeroing falls back to ZERO_RANGE, trim has nothing left. */
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, 0);
	cr_assert_eq(io.mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	cr_assert_eq(end(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, &io, -EOPNOTSUPP), -EOPNOTSUPP);
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, 0);
	cr_assert_eq(io.mode, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	prep(DIO_META_TRIM, 0, 0, R, -EOPNOTSUPP);

	/* ZERO_RANGE refused too (EINVAL counts): nothing left for zeroing. */
	cr_assert_eq(end(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, &io, -EINVAL), -EOPNOTSUPP);
	prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, -EOPNOTSUPP);
	prep(DIO_META_ZERO, 0, 0, R, -EOPNOTSUPP);
	/* The map did not change on failure. */
	expect_map(0, R, 0, DIO_EXT_MAPPED, 0, R);

	/* fadvise refused (ENOTTY is reported as EOPNOTSUPP). */
	io = prep(DIO_META_CACHE, 0, 0, R, 0);
	cr_assert_eq(end(DIO_META_CACHE, 0, 0, R, &io, -ENOTTY), -EOPNOTSUPP);
	prep(DIO_META_CACHE, 0, 0, R, -EOPNOTSUPP);

	/* A failing flush is reported, and flush is still offered. */
	io = prep(DIO_META_FLUSH, 0, 0, 0, 0);
	cr_assert_eq(end(DIO_META_FLUSH, 0, 0, 0, &io, -EINVAL), -EINVAL);
	cr_assert_eq(end(DIO_META_FLUSH, 0, 0, 0, &io, -EIO), -EIO);
	prep(DIO_META_FLUSH, 0, 0, 0, 0);

	/* Other errors are reported and rule nothing out. */
	cr_assert(strstr(logbuf, "not supported"), "log: %s", logbuf);
}

Test(map_file, meta_other_errors_keep_method)
{
	struct dio_io io = prep(DIO_META_TRIM, 0, 0, R, 0);

	cr_assert_eq(end(DIO_META_TRIM, 0, 0, R, &io, -EIO), -EIO);
	cr_assert_eq(end(DIO_META_TRIM, 0, 0, R, &io, -ENOSPC), -ENOSPC);
	io = prep(DIO_META_TRIM, 0, 0, R, 0);
	cr_assert_eq(io.mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	expect_map(0, R, 0, DIO_EXT_MAPPED, 0, R);
}

/* Do what the engine would do with a FALLOCATE io. */
static int
run_io(const struct dio_io *io)
{
	cr_assert_eq(io->op, DIO_IO_FALLOCATE);
	return fallocate(io->fd, io->mode, (off_t)io->offset, (off_t)io->len) < 0 ? -errno : 0;
}

Test(map_file, meta_updates_map_like_reopen)
{
	struct dio_io io;

	/* Trim the second half of region 0: a hole joining region 1. */
	io = prep(DIO_META_TRIM, 0, R / 2, R / 2, 0);
	cr_assert_eq(end(DIO_META_TRIM, 0, R / 2, R / 2, &io, run_io(&io)), 0);
	/* Zero region 4 keeping it allocated: unwritten. */
	io = prep(DIO_META_ZERO, 0, 4 * R, R, 0);
	cr_assert_eq(end(DIO_META_ZERO, 0, 4 * R, R, &io, run_io(&io)), 0);
	/* Zero with MAY_TRIM inside the unwritten region 2: a hole. */
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 3 * R, R / 2, 0);
	cr_assert_eq(end(DIO_META_ZERO, DIO_META_MAY_TRIM, 3 * R, R / 2, &io, run_io(&io)), 0);

	for (int pass = 0; pass < 2; pass++) {
		/* Pass 1: what the filesystem says after a reopen agrees. */
		expect_map(0, FSIZE, 0, DIO_EXT_MAPPED, 0, R / 2);
		expect_map(R / 2, FSIZE, 0, DIO_EXT_HOLE, 0, R / 2 + R);
		expect_map(2 * R, FSIZE, 0, DIO_EXT_UNWRITTEN, 0, R);
		expect_map(3 * R, FSIZE, 0, DIO_EXT_HOLE, 0, R / 2);
		expect_map(3 * R + R / 2, FSIZE, 0, DIO_EXT_UNWRITTEN, 0, R / 2 + R);
		expect_map(5 * R, FSIZE, 0, DIO_EXT_MAPPED, 0, WSPLIT);
		dio_volume_close(vol);
		open_vol(path, false);
	}
}

Test(map_file, geometry)
{
	struct stat st;
	struct statx stx;

	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(vol->size, FSIZE);
	cr_assert_not(vol->blockdev);
	cr_assert_not(vol->readonly);
	cr_assert_eq(vol->blksize, vol->lbs);
	cr_assert(vol->lbs == 512 || vol->lbs == 4096, "lbs %u", vol->lbs);
	if (statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN))
		cr_assert_eq(vol->lbs, stx.stx_dio_offset_align < 512 ? 512 :
				       stx.stx_dio_offset_align);
	cr_assert_eq(vol->pbs, (uint32_t)st.st_blksize);
	cr_assert_eq(vol->map_ops->map_begin != NULL, 1);
	cr_assert(vol->fd >= 0);
	cr_assert_eq(fcntl(vol->fd, F_GETFL) & (O_ACCMODE | O_DIRECT | O_NONBLOCK),
		     O_RDWR | O_DIRECT);
}

Test(map_file, size_not_block_multiple)
{
	char *p = test_file_create(1000);
	struct dio_volume *v2 = vol;

	open_vol(p, false);
	cr_assert_eq(vol->size, 1000);
	/* The hole reaches the end of the last, partial block. */
	expect_map(0, 4096, 0, DIO_EXT_HOLE, 0, (1000 + vol->lbs - 1) / vol->lbs * vol->lbs);
	dio_volume_close(vol);
	vol = v2;
	unlink(p);
	free(p);
}

Test(map_file, readonly_option)
{
	struct dio_io io;

	dio_volume_close(vol);
	open_vol(path, true);
	cr_assert(vol->readonly);
	cr_assert_not(vol->can_trim);
	cr_assert_not(vol->can_zero);
	cr_assert_eq(fcntl(vol->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	prep(DIO_META_TRIM, 0, 0, R, -EOPNOTSUPP);
	prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0, R, -EOPNOTSUPP);
	io = prep(DIO_META_FLUSH, 0, 0, 0, 0);
	cr_assert_eq(io.op, DIO_IO_FSYNC);
	expect_layout();
}

Test(map_file, readonly_bind_mount)
{
	char err[256] = "";
	struct dio_volume_opts o = { .errbuf = err, .errlen = sizeof(err) };
	char *dst = NULL, *file = NULL;
	struct dio_volume *rv = NULL;
	int ret, e;

	/* The scratch directory, bound read-only onto a directory inside it. */
	cr_assert(asprintf(&dst, "%s/ro-XXXXXX", test_dir()) > 0);
	cr_assert(mkdtemp(dst));
	cr_assert(asprintf(&file, "%s/%s", dst, strrchr(path, '/') + 1) > 0);
	if (mount(test_dir(), dst, NULL, MS_BIND, NULL) < 0) {
		e = errno;
		rmdir(dst);
		teardown();	/* a skipped test gets no .fini */
		cr_skip_test("cannot bind mount here: %s", strerror(e));
	}
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
		e = errno;
		umount2(dst, MNT_DETACH);
		rmdir(dst);
		teardown();	/* a skipped test gets no .fini */
		cr_skip_test("cannot make a bind mount read-only here: %s", strerror(e));
	}
	/* the fixture's read-write volume would hold the image lock against us */
	dio_volume_close(vol);
	vol = NULL;
	logbuf[0] = '\0';
	ret = dio_volume_open(file, &o, &rv);
	if (ret == 0) {
		cr_expect(rv->readonly);
		cr_expect_not(rv->can_trim);
		cr_expect(strstr(logbuf, "read-only"), "log: %s", logbuf);
		cr_expect_eq(fcntl(rv->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
		dio_volume_close(rv);
	}
	umount2(dst, MNT_DETACH);
	rmdir(dst);
	cr_assert_eq(ret, 0, "open on a read-only mount: %s (%s)", strerror(-ret), err);
	free(file);
	free(dst);
}

/* Open must fail with want, and errbuf must name the path and contain what. */
static void
expect_open_error(const char *p, int want, const char *what)
{
	char err[512] = "";
	struct dio_volume_opts o = { .errbuf = err, .errlen = sizeof(err) };
	struct dio_volume *v = (struct dio_volume *)0x1;
	int ret;

	logbuf[0] = '\0';
	ret = dio_volume_open(p, &o, &v);
	cr_assert_eq(ret, want, "open %s: %d (%s), want %d", p, ret, err, want);
	cr_assert_eq(v, (struct dio_volume *)0x1, "out set on failure");
	cr_assert(strncmp(err, p, strlen(p)) == 0, "errbuf does not name the path: %s", err);
	cr_assert(strstr(err, what), "errbuf: '%s', want '%s'", err, what);
	cr_assert(strstr(logbuf, err), "not logged: %s", logbuf);
	/* Without opts it fails the same way. */
	cr_assert_eq(dio_volume_open(p, NULL, &v), want);
}

Test(map_file, error_missing)
{
	char *p = NULL;

	cr_assert(asprintf(&p, "%s/does-not-exist", test_dir()) > 0);
	expect_open_error(p, -ENOENT, strerror(ENOENT));
	free(p);
}

Test(map_file, error_directory)
{
	expect_open_error(test_dir(), -EISDIR, "directory");
}

Test(map_file, error_char_device)
{
	expect_open_error("/dev/null", -EINVAL, "not a regular file or block device");
}

Test(map_file, error_tmpfs_no_odirect)
{
	char p[] = "/dev/shm/dio-test-XXXXXX";
	int fd = mkstemp(p);
	int dfd;

	if (fd < 0) {
		int e = errno;

		teardown();	/* a skipped test gets no .fini */
		cr_skip_test("no /dev/shm: %s", strerror(e));
	}
	close(fd);
	dfd = open(p, O_RDWR | O_DIRECT);
	if (dfd >= 0) {
		close(dfd);
		unlink(p);
		teardown();	/* a skipped test gets no .fini */
		cr_skip_test("tmpfs takes O_DIRECT on this kernel (Linux 6.6+)");
	}
	expect_open_error(p, -EINVAL, "the filesystem does not support O_DIRECT");
	unlink(p);
}

Test(map_file, error_procfs_no_odirect)
{
	const char *p = "/proc/self/comm";
	int fd = open(p, O_RDONLY | O_DIRECT);

	if (fd >= 0) {
		close(fd);
		teardown();	/* a skipped test gets no .fini */
		cr_skip_test("procfs takes O_DIRECT here");
	}
	expect_open_error(p, -EINVAL, "the filesystem does not support O_DIRECT");
}

/* ---- real I/O through the dio engine ---------------------------------- */

static struct dio_ctx *
ctx_with_stats(struct dio_engine **fault)
{
	struct dio_fault_opts none = { 0 };

	return test_ctx_create(&none, fault);
}

static int
io(struct dio_ctx *ctx, uint8_t op, uint32_t flags, uint64_t pos, uint64_t len, void *buf)
{
	return test_io(ctx, vol, op, flags, pos, len, buf);
}

Test(map_file, dio_read_layout)
{
	struct dio_engine *fault;
	struct dio_ctx *ctx = ctx_with_stats(&fault);
	struct dio_fault_stats st;
	uint8_t *buf = test_alloc(FSIZE);

	memset(buf, 0xaa, FSIZE);
	cr_assert_eq(io(ctx, DIO_REQ_READ, 0, 0, FSIZE, buf), 0);
	cr_assert(test_pattern_check(buf, R, 0, SEED));
	cr_assert(test_all_zero(buf + R, 3 * R), "hole and unwritten read as zeros");
	cr_assert(test_pattern_check(buf + 4 * R, R + WSPLIT, 4 * R, SEED));
	cr_assert(test_all_zero(buf + 5 * R + WSPLIT, 3 * R - WSPLIT));

	/* The fallocated range: zeros, without reading the device. */
	dio_engine_fault_stats(fault, &st);
	{
		uint64_t before = st.ops[DIO_IO_READ];

		memset(buf, 0xaa, 2 * R);
		cr_assert_eq(io(ctx, DIO_REQ_READ, 0, 2 * R, 2 * R, buf), 0);
		cr_assert(test_all_zero(buf, 2 * R));
		dio_engine_fault_stats(fault, &st);
		cr_assert_eq(st.ops[DIO_IO_READ], before, "unwritten range read from the device");
	}
	dio_ctx_destroy(ctx);
	free(buf);
}

Test(map_file, dio_write_zero_trim)
{
	struct dio_ctx *ctx = ctx_with_stats(NULL);
	uint8_t *buf = test_alloc(R);
	uint8_t *chk = test_alloc(R);
	int fd;

	/* Write into the hole and into the unwritten range. */
	test_pattern(buf, R, R, SEED + 1);
	cr_assert_eq(io(ctx, DIO_REQ_WRITE, 0, R, R, buf), 0);
	expect_map(R, FSIZE, 0, DIO_EXT_MAPPED, 0, R);
	test_pattern(buf, 8192, 2 * R, SEED + 1);
	cr_assert_eq(io(ctx, DIO_REQ_WRITE, DIO_REQ_FUA, 2 * R, 8192, buf), 0);
	expect_map(0, FSIZE, 0, DIO_EXT_MAPPED, 0, 2 * R + 8192);
	expect_map(2 * R + 8192, FSIZE, 0, DIO_EXT_UNWRITTEN, 0, 2 * R - 8192);

	/* The file itself holds it (read around the volume). */
	fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, chk, R, R), (ssize_t)R);
	cr_assert(test_pattern_check(chk, R, R, SEED + 1));
	cr_assert_eq(lseek(fd, R, SEEK_DATA), (off_t)R);

	/* Zero (may trim) region 0, trim region 4: holes in the map and the file. */
	cr_assert_eq(io(ctx, DIO_REQ_ZERO, 0, 0, R, NULL), 0);
	cr_assert_eq(io(ctx, DIO_REQ_TRIM, 0, 4 * R, R, NULL), 0);
	expect_map(0, FSIZE, 0, DIO_EXT_HOLE, 0, R);
	expect_map(4 * R, FSIZE, 0, DIO_EXT_HOLE, 0, R);
	cr_assert_eq(lseek(fd, 0, SEEK_HOLE), 0);
	/* Zero keeping the allocation: unwritten. */
	cr_assert_eq(io(ctx, DIO_REQ_ZERO, DIO_REQ_NO_HOLE, R, R, NULL), 0);
	expect_map(R, FSIZE, 0, DIO_EXT_UNWRITTEN, 0, R);

	memset(chk, 0xaa, R);
	cr_assert_eq(io(ctx, DIO_REQ_READ, 0, R, R, chk), 0);
	cr_assert(test_all_zero(chk, R));
	cr_assert_eq(pread(fd, chk, R, R), (ssize_t)R);
	cr_assert(test_all_zero(chk, R), "the file was really zeroed");

	cr_assert_eq(io(ctx, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	close(fd);
	dio_ctx_destroy(ctx);
	free(buf);
	free(chk);
}
