/* SPDX-License-Identifier: MIT */
/*
 * pool-meta: the pool's metadata per GiB mapped and its open time, through
 * libdio alone (no daemon, no fio), for issue 10's metadata rows.
 *
 *   pool-meta [--buffered] DIR SIZE_MIB
 *
 * For a sequential fill (1 MiB writes) and a random one (every 4 KiB block
 * once, in a random order) of a SIZE_MIB volume in a new pool file in DIR:
 * a child process fills the volume, FLUSHes and exits without closing the
 * pool (a crash: the journal holds what the last checkpoint does not);
 * then the pool is opened (recovery: journal replay), closed (a
 * checkpoint), and opened read-only 5 times (clean). Prints one line per
 * fill: mapped MiB, the checkpoint's blocks and its record bytes beyond
 * the empty pool's (also per GiB mapped), open times (ms, median of 5 for
 * the clean one).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/engine.h"
#include "dio/tpool.h"
#include "pool.h"	/* struct tp_hdr: the checkpoint's record bytes */

#define MiB (1024ull * 1024)

static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };

static void
die(const char *what, int err)
{
	fprintf(stderr, "pool-meta: %s: %s%s%s\n", what, strerror(err < 0 ? -err : err),
		errbuf[0] ? ": " : "", errbuf);
	exit(1);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The durable checkpoint's blocks; *bytes: the record bytes of its CKPT blocks. */
static uint64_t
ckpt_blocks(struct dio_tpool *p, const char *path, uint64_t *bytes)
{
	static uint8_t root[TP_BLOCK], blk[TP_BLOCK];
	const struct tp_hdr *rh = (const void *)root, *h = (const void *)blk;
	struct dio_tpool_meta m;
	int ret = dio_tpool_get_meta(p, &m), fd = open(path, O_RDONLY);

	if (ret < 0 || fd < 0)
		die("dio_tpool_get_meta", ret < 0 ? ret : errno);
	*bytes = 0;
	for (uint64_t rb = m.ckpt_root; rb; rb = rh->aux) {
		if (pread(fd, root, TP_BLOCK, (off_t)(rb * TP_BLOCK)) != TP_BLOCK)
			die("reading a root block", EIO);
		for (uint32_t i = 0; i < rh->count && i < TP_PAYLOAD / 8; i++) {
			uint64_t b;

			memcpy(&b, root + sizeof(*rh) + 8 * i, 8);
			if (pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)) != TP_BLOCK)
				die("reading a checkpoint block", EIO);
			if (h->type == TP_BT_CKPT)
				*bytes += h->used;
		}
	}
	close(fd);
	return m.ckpt_blocks;
}

/* The child: fill volume v, FLUSH, exit with the pool open (a crash). */
static void
fill(const char *path, uint64_t size, int rnd)
{
	struct dio_ctx_opts co = { .engine = { .kind = DIO_ENGINE_PSYNC, .threads = 1 },
				   .pool = { .arena_size = 2 << 20 } };
	uint64_t bs = rnd ? 4096 : MiB, n = size / bs, *order = malloc(n * sizeof(*order));
	struct dio_volume *vol;
	struct dio_tpool *p;
	struct dio_ctx *ctx;
	void *buf;
	int ret;

	if (!order || posix_memalign(&buf, 4096, bs))
		die("memory", ENOMEM);
	memset(buf, 0x5a, bs);
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	srandom(1);
	for (uint64_t i = n - 1; rnd && i > 0; i--) {
		uint64_t j = (uint64_t)random() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	if ((ret = dio_ctx_create(&co, &ctx)) < 0)
		die("dio_ctx_create", ret);
	if ((ret = dio_tpool_open(path, &opts, &p)) < 0 ||
	    (ret = dio_tpool_volume_open(p, "v", &vol)) < 0)
		die("open", ret);
	for (uint64_t i = 0; i < n; i++) {
		struct dio_req r = { .op = DIO_REQ_WRITE, .pos = order[i] * bs, .len = bs, .buf = buf };

		if ((ret = dio_submit_sync(ctx, vol, &r)) < 0)
			die("write", ret);
	}
	struct dio_req f = { .op = DIO_REQ_FLUSH };

	if ((ret = dio_submit_sync(ctx, vol, &f)) < 0)
		die("flush", ret);
	_exit(0);
}

static void
run(const char *dir, uint64_t size, int rnd)
{
	struct dio_tpool_create_opts cop = { 0 };
	double clean[5], t0, crash_ms;
	struct dio_tpool_vol_info *vi;
	uint64_t empty, full, mapped, ebytes, fbytes;
	struct dio_tpool *p;
	char path[4096];
	size_t nv;
	int fd, ret, st;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/pool-meta-%d.img", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(size + size / 4 + 64 * MiB)) < 0)
		die(path, errno);
	close(fd);
	if ((ret = dio_tpool_create(path, &cop, &opts)) < 0 ||
	    (ret = dio_tpool_open(path, &opts, &p)) < 0 ||
	    (ret = dio_tpool_volume_create(p, "v", size)) < 0 ||
	    (ret = dio_tpool_checkpoint(p)) < 0)
		die("create", ret);
	empty = ckpt_blocks(p, path, &ebytes);
	dio_tpool_close(p);

	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0)
		fill(path, size, rnd);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		die("the fill", ECHILD);

	t0 = now_ms();
	if ((ret = dio_tpool_open(path, &opts, &p)) < 0)
		die("open after the crash", ret);
	crash_ms = now_ms() - t0;
	dio_tpool_close(p);	/* a checkpoint */

	opts.readonly = true;
	for (int k = 0; k < 5; k++) {
		t0 = now_ms();
		if ((ret = dio_tpool_open(path, &opts, &p)) < 0)
			die("open", ret);
		clean[k] = now_ms() - t0;
		if (k < 4)
			dio_tpool_close(p);
	}
	opts.readonly = false;
	qsort(clean, 5, sizeof(clean[0]), cmp_double);
	full = ckpt_blocks(p, path, &fbytes);
	if ((ret = dio_tpool_volume_list(p, &vi, &nv)) < 0 || nv != 1)
		die("volume list", ret < 0 ? ret : EPROTO);
	struct dio_tpool_info info;

	dio_tpool_get_info(p, &info);
	mapped = vi[0].mapped * info.chunk_size;
	free(vi);
	dio_tpool_close(p);
	unlink(path);
	printf("%s %llu MiB mapped: +%llu blocks = %.1f KiB/GiB, +%llu record bytes = %.1f KiB/GiB; "
	       "open clean %.1f ms, after crash %.1f ms\n", rnd ? "rnd" : "seq",
	       (unsigned long long)(mapped / MiB), (unsigned long long)(full - empty),
	       (full - empty) * 4.0 * 1024 / ((double)mapped / MiB),
	       (unsigned long long)(fbytes - ebytes),
	       (fbytes - ebytes) / 1024.0 / ((double)mapped / 1024 / MiB), clean[2], crash_ms);
}

int
main(int argc, char **argv)
{
	int a = 1;

	if (argc > 1 && strcmp(argv[1], "--buffered") == 0) {
		opts.no_direct = true;
		a++;
	}
	if (argc - a != 2 || strtoull(argv[a + 1], NULL, 10) == 0) {
		fprintf(stderr, "usage: pool-meta [--buffered] DIR SIZE_MIB\n");
		return 2;
	}
	run(argv[a], strtoull(argv[a + 1], NULL, 10) * MiB, 0);
	run(argv[a], strtoull(argv[a + 1], NULL, 10) * MiB, 1);
	return 0;
}
