/* SPDX-License-Identifier: MIT */
/*
 * The file volume on a block device: a loop device over a scratch file
 * (losetup --direct-io=on). Needs root and a working losetup; otherwise
 * exits 77 saying why. The loop device is detached at the end, and set to
 * auto-clear so that it goes away even if this program is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

#define MiB (1u << 20)
#define DSIZE (8 * MiB)
#define SEED 11

static char backing[4096];
static char dev[256];

/* ---- the loop device, set up by main() before any test runs ----------- */

/* Run a shell command line and capture the first line of its output. */
static int
run_capture(const char *cmd, char *out, size_t len)
{
	FILE *f = popen(cmd, "r");
	int st;

	if (!f)
		return -1;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
detach(void)
{
	char cmd[512], out[256];

	if (!dev[0])
		return;
	snprintf(cmd, sizeof(cmd), "losetup -d '%s' 2>&1", dev);
	if (run_capture(cmd, out, sizeof(out)) != 0 && !strstr(out, "No such device"))
		fprintf(stderr, "test-map-file-loop: losetup -d %s: %s\n", dev, out);
	dev[0] = '\0';
}

/* A scratch file with a pattern in its first MiB and holes after. 0 or -1. */
static int
make_backing(void)
{
	const char *dir = getenv("DIO_TEST_DIR");
	void *buf;
	int fd;

	if (!dir)
		dir = "./tmp";
	mkdir(dir, 0755);
	snprintf(backing, sizeof(backing), "%s/loop-XXXXXX", dir);
	fd = mkstemp(backing);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, DSIZE) < 0 || posix_memalign(&buf, 4096, MiB)) {
		close(fd);
		return -1;
	}
	test_pattern(buf, MiB, 0, SEED);
	if (pwrite(fd, buf, MiB, 0) != (ssize_t)MiB || fsync(fd) < 0) {
		free(buf);
		close(fd);
		return -1;
	}
	free(buf);
	close(fd);
	return 0;
}

/* Attach the backing file; exits 77 when the machine cannot. */
static int
attach(void)
{
	struct loop_info64 li;
	char cmd[4400];
	int fd, rc;

	snprintf(cmd, sizeof(cmd), "losetup -f --show --direct-io=on '%s' 2>&1", backing);
	rc = run_capture(cmd, dev, sizeof(dev));
	if (rc != 0 || strncmp(dev, "/dev/", 5) != 0) {
		fprintf(stderr, "test-map-file-loop: SKIP: losetup failed (%d): %s\n", rc, dev);
		dev[0] = '\0';
		return -1;
	}
	/* Auto-clear: the kernel detaches when the last opener closes it. */
	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && ioctl(fd, LOOP_GET_STATUS64, &li) == 0) {
		li.lo_flags |= LO_FLAGS_AUTOCLEAR;
		ioctl(fd, LOOP_SET_STATUS64, &li);
	}
	return fd;
}

static void
on_signal(int sig)
{
	/* The autoclear fd closes with us; losetup -d is not signal-safe. */
	signal(sig, SIG_DFL);
	raise(sig);
}

int
main(int argc, char *argv[])
{
	struct criterion_test_set *set;
	int hold, ok = 0, r;

	if (geteuid() != 0) {
		fprintf(stderr, "test-map-file-loop: SKIP: needs root for loop devices\n");
		return 77;
	}
	if (access("/dev/loop-control", R_OK | W_OK) < 0) {
		fprintf(stderr, "test-map-file-loop: SKIP: no /dev/loop-control: %s\n",
			strerror(errno));
		return 77;
	}
	if (make_backing() < 0) {
		fprintf(stderr, "test-map-file-loop: cannot create a backing file: %s\n",
			strerror(errno));
		return 1;
	}
	hold = attach();
	if (hold < 0 && !dev[0]) {
		unlink(backing);
		return 77;
	}
	setenv("DIO_TEST_LOOP_DEV", dev, 1);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	set = criterion_initialize();
	r = criterion_handle_args(argc, argv, true);
	if (r == 1)
		ok = criterion_run_all_tests(set);
	else
		ok = r == 0;
	criterion_finalize(set);

	detach();
	if (hold >= 0)
		close(hold);
	unlink(backing);
	return ok ? 0 : 1;
}

/* ---- tests ------------------------------------------------------------ */

static struct dio_volume *vol;

static void
setup(void)
{
	char err[256] = "";
	struct dio_file_opts o = { .errbuf = err, .errlen = sizeof(err) };
	int ret;

	/*
	 * Each test runs in a fresh copy of the program that does not go
	 * through main(): the device name comes down in the environment.
	 */
	snprintf(dev, sizeof(dev), "%s", getenv("DIO_TEST_LOOP_DEV") ?: "");
	ret = dio_file_open(dev, &o, &vol);
	cr_assert_eq(ret, 0, "open %s: %s", dev, err);
}

static void
teardown(void)
{
	dio_volume_put(vol);
	vol = NULL;
}

TestSuite(map_file_loop, .init = setup, .fini = teardown, .timeout = 60);

/* /sys/dev/block/M:m/queue/<name> of the loop device, or "" */
static void
queue_attr(const char *name, char *buf, size_t len)
{
	char p[256];
	struct stat st;
	FILE *f;

	buf[0] = '\0';
	cr_assert_eq(stat(dev, &st), 0);
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/queue/%s", major(st.st_rdev),
		 minor(st.st_rdev), name);
	f = fopen(p, "r");
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

static uint64_t
queue_u64(const char *name)
{
	char buf[64];

	queue_attr(name, buf, sizeof(buf));
	return strtoull(buf, NULL, 10);
}

Test(map_file_loop, geometry)
{
	char buf[64];
	uint64_t size = 0;
	int lbs = 0;
	int fd = open(dev, O_RDONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(ioctl(fd, BLKGETSIZE64, &size), 0);
	cr_assert_eq(ioctl(fd, BLKSSZGET, &lbs), 0);
	close(fd);
	cr_assert(vol->blockdev);
	cr_assert_not(vol->readonly);
	cr_assert_eq(vol->size, DSIZE);
	cr_assert_eq(vol->size, size);
	cr_assert_eq(vol->lbs, (uint32_t)lbs);
	cr_assert_eq(vol->lbs, (uint32_t)queue_u64("logical_block_size"));
	cr_assert_eq(vol->pbs, (uint32_t)queue_u64("physical_block_size"));
	cr_assert_eq(vol->blksize, vol->lbs);
	cr_assert_eq(vol->rotational, queue_u64("rotational") == 1);
	queue_attr("write_cache", buf, sizeof(buf));
	if (buf[0])
		cr_assert_eq(vol->wcache, strcmp(buf, "write back") == 0, "write_cache %s", buf);
	cr_assert_eq(vol->can_trim, queue_u64("discard_max_bytes") > 0);
	cr_assert_eq(fcntl(vol->fd, F_GETFL) & (O_ACCMODE | O_DIRECT), O_RDWR | O_DIRECT);
}

Test(map_file_loop, all_data)
{
	struct dio_extent e;

	/* The backing file has holes, but a device is all data. */
	cr_assert_eq(vol->map_ops->map_begin(vol, 0, DSIZE, 0, &e), 0);
	cr_assert_eq(e.type, DIO_EXT_MAPPED);
	cr_assert_eq(e.length, DSIZE);
	cr_assert_eq(e.addr, 0);
	cr_assert_eq(vol->map_ops->map_begin(vol, 4 * MiB, MiB, DIO_MAP_WRITE, &e), 0);
	cr_assert_eq(e.type, DIO_EXT_MAPPED);
	cr_assert_eq(e.flags, 0, "nothing is allocated on a device");
	cr_assert_eq(e.length, MiB);
	cr_assert_eq(e.addr, 4 * MiB);
	cr_assert_eq(vol->map_ops->map_end(vol, &e, MiB, DIO_MAP_WRITE), 0);
	cr_assert_eq(vol->map_ops->map_begin(vol, 0, 2 * DSIZE, 0, &e), 0);
	cr_assert_eq(e.length, DSIZE);
	cr_assert_eq(vol->map_ops->map_begin(vol, DSIZE, 512, 0, &e), -EINVAL);
}

static struct dio_io
prep(enum dio_meta_op op, unsigned int flags, int want)
{
	return test_prep_meta(vol, op, flags, MiB, MiB, want);
}

static int
end(enum dio_meta_op op, unsigned int flags, const struct dio_io *io, int res)
{
	return vol->vol_ops->end_meta(vol, op, flags, MiB, MiB, io, res);
}

Test(map_file_loop, meta_chain)
{
	bool wz = queue_u64("write_zeroes_max_bytes") > 0;
	bool discard = queue_u64("discard_max_bytes") > 0;
	struct dio_io io;

	io = prep(DIO_META_FLUSH, 0, 0);
	cr_assert_eq(io.op, DIO_IO_FSYNC);
	if (discard) {
		io = prep(DIO_META_TRIM, 0, 0);
		cr_assert_eq(io.op, DIO_IO_DISCARD);
		cr_assert_eq(end(DIO_META_TRIM, 0, &io, -ENOTTY), -EOPNOTSUPP);
	}
	prep(DIO_META_TRIM, 0, -EOPNOTSUPP);

	if (!wz) {
		/* Zeroing would be written by the kernel: the engine does it. */
		cr_assert_not(vol->can_zero);
		prep(DIO_META_ZERO, DIO_META_MAY_TRIM, -EOPNOTSUPP);
		return;
	}
	cr_assert(vol->can_zero);
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0);
	cr_assert_eq(io.op, DIO_IO_FALLOCATE);
	cr_assert_eq(io.mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	cr_assert_eq(end(DIO_META_ZERO, DIO_META_MAY_TRIM, &io, -EOPNOTSUPP), -EOPNOTSUPP);
	io = prep(DIO_META_ZERO, DIO_META_MAY_TRIM, 0);
	cr_assert_eq(io.op, DIO_IO_FALLOCATE);
	cr_assert_eq(io.mode, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	cr_assert_eq(end(DIO_META_ZERO, DIO_META_MAY_TRIM, &io, -EINVAL), -EOPNOTSUPP);
	io = prep(DIO_META_ZERO, 0, 0);
	cr_assert_eq(io.op, DIO_IO_ZEROOUT);
	cr_assert_eq(end(DIO_META_ZERO, 0, &io, -ENOTTY), -EOPNOTSUPP);
	prep(DIO_META_ZERO, DIO_META_MAY_TRIM, -EOPNOTSUPP);
}

static int
io(struct dio_ctx *ctx, uint8_t op, uint32_t flags, uint64_t pos, uint64_t len, void *buf)
{
	return test_io(ctx, vol, op, flags, pos, len, buf);
}

Test(map_file_loop, dio_io)
{
	struct dio_ctx *ctx = test_ctx_create(NULL, NULL);
	uint8_t *buf = test_alloc(2 * MiB);
	struct dio_extent e;
	int fd;

	/* What was in the backing file before attaching. */
	cr_assert_eq(io(ctx, DIO_REQ_READ, 0, 0, MiB, buf), 0);
	cr_assert(test_pattern_check(buf, MiB, 0, SEED));

	test_pattern(buf, 2 * MiB, 2 * MiB, SEED + 1);
	cr_assert_eq(io(ctx, DIO_REQ_WRITE, DIO_REQ_FUA, 2 * MiB, 2 * MiB, buf), 0);
	cr_assert_eq(io(ctx, DIO_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* Read it back around the volume, from the device itself. */
	fd = open(dev, O_RDONLY | O_DIRECT);
	cr_assert(fd >= 0);
	memset(buf, 0, 2 * MiB);
	cr_assert_eq(pread(fd, buf, 2 * MiB, 2 * MiB), (ssize_t)(2 * MiB));
	cr_assert(test_pattern_check(buf, 2 * MiB, 2 * MiB, SEED + 1));

	/* Zero and trim: reads give zeros; the map of a device stays data. */
	cr_assert_eq(io(ctx, DIO_REQ_ZERO, 0, 2 * MiB, MiB, NULL), 0);
	cr_assert_eq(io(ctx, DIO_REQ_ZERO, DIO_REQ_NO_HOLE, 3 * MiB, 512 * 1024, NULL), 0);
	cr_assert_eq(io(ctx, DIO_REQ_TRIM, 0, 0, MiB, NULL), 0);
	cr_assert_eq(vol->map_ops->map_begin(vol, 0, DSIZE, 0, &e), 0);
	cr_assert_eq(e.type, DIO_EXT_MAPPED);
	cr_assert_eq(e.length, DSIZE);
	memset(buf, 0xaa, 2 * MiB);
	cr_assert_eq(pread(fd, buf, 2 * MiB, 2 * MiB), (ssize_t)(2 * MiB));
	cr_assert(test_all_zero(buf, MiB + 512 * 1024), "zeroed range is zeros on the device");
	cr_assert(test_pattern_check(buf + MiB + 512 * 1024, 512 * 1024,
				     3 * MiB + 512 * 1024, SEED + 1));
	memset(buf, 0xaa, MiB);
	cr_assert_eq(io(ctx, DIO_REQ_READ, 0, 2 * MiB, MiB, buf), 0);
	cr_assert(test_all_zero(buf, MiB));
	close(fd);
	dio_ctx_destroy(ctx);
	free(buf);
}
