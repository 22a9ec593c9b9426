/* SPDX-License-Identifier: MIT */
/*
 * pool-diverge: a volume diverging fully from a live snapshot of it,
 * through libdio alone (issue 11: the metadata reserve's guard on the
 * copies of shared leaves, tp_meta_fits).
 *
 *   pool-diverge FILE SIZE_MIB PERCENT
 *
 * A new pool of SIZE_MIB in FILE (64 KiB chunks); a volume of PERCENT of
 * its chunks with 4 KiB written in each (one sub-block: MAP records); a
 * snapshot of it; then 4 KiB written again into every chunk of the
 * volume, in order: each write copies the chunk, the first into each leaf
 * of 1024 chunks copies the leaf first. Prints the overwrite's time, the
 * sum of the leaf-copying writes' times and their median, and the records
 * a checkpoint wrote after it (its blocks). FILE is removed. Exit 0, 1 on
 * a failure (ENOSPC included), 2 on usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/engine.h"
#include "dio/tpool.h"
#include "pool.h"	/* TP_LEAF */

#define MiB (1024ull * 1024)
#define CS (64 * 1024)
#define WS 4096

static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };

static void
die(const char *what, int err)
{
	fprintf(stderr, "pool-diverge: %s: %s%s%s\n", what, strerror(err < 0 ? -err : err),
		errbuf[0] ? ": " : "", errbuf);
	exit(1);
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* 4 KiB at chunk c of vol: its time in us. */
static double
write_chunk(struct dio_ctx *ctx, struct dio_volume *vol, void *buf, uint64_t c)
{
	struct dio_req r = { .op = DIO_REQ_WRITE, .pos = c * CS, .len = WS, .buf = buf };
	double t0 = now_us();
	int ret = dio_submit_sync(ctx, vol, &r);

	if (ret < 0) {
		fprintf(stderr, "pool-diverge: at chunk %llu (leaf %llu):\n",
			(unsigned long long)c, (unsigned long long)(c / TP_LEAF));
		die("write", ret);
	}
	return now_us() - t0;
}

int
main(int argc, char **argv)
{
	struct dio_ctx_opts co = { .engine = { .kind = DIO_ENGINE_PSYNC, .threads = 1 },
				   .pool = { .arena_size = 2 << 20 } };
	struct dio_tpool_create_opts cop = { .chunk_size = CS };
	struct dio_req flush = { .op = DIO_REQ_FLUSH };
	double total, copies = 0, *lat;
	uint64_t size, n, nleaf;
	struct dio_tpool_info info;
	struct dio_tpool_meta m;
	struct dio_volume *vol;
	struct dio_tpool *p;
	struct dio_ctx *ctx;
	int fd, ret, pct;
	void *buf;

	if (argc != 4 || !(size = strtoull(argv[2], NULL, 10)) || (pct = atoi(argv[3])) <= 0 ||
	    pct > 100) {
		fprintf(stderr, "usage: pool-diverge FILE SIZE_MIB PERCENT\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(size * MiB)) < 0)
		die(argv[1], errno);
	close(fd);
	if (posix_memalign(&buf, 4096, WS))
		die("memory", ENOMEM);
	memset(buf, 0x5a, WS);
	if ((ret = dio_ctx_create(&co, &ctx)) < 0)
		die("dio_ctx_create", ret);
	if ((ret = dio_tpool_create(argv[1], &cop, &opts)) < 0 ||
	    (ret = dio_tpool_open(argv[1], &opts, &p)) < 0)
		die("create", ret);
	dio_tpool_get_info(p, &info);
	n = info.nr_chunks * (uint64_t)pct / 100;
	nleaf = (n + TP_LEAF - 1) / TP_LEAF;
	lat = calloc(nleaf, sizeof(*lat));
	if (!lat)
		die("memory", ENOMEM);
	if ((ret = dio_tpool_volume_create(p, "o", n * CS)) < 0 ||
	    (ret = dio_tpool_volume_open(p, "o", &vol)) < 0)
		die("volume", ret);
	for (uint64_t c = 0; c < n; c++)
		write_chunk(ctx, vol, buf, c);
	if ((ret = dio_submit_sync(ctx, vol, &flush)) < 0)
		die("flush", ret);
	dio_volume_put(vol);
	if ((ret = dio_tpool_volume_snapshot(p, "o", "s")) < 0 ||
	    (ret = dio_tpool_volume_open(p, "o", &vol)) < 0)
		die("snapshot", ret);
	memset(buf, 0xa5, WS);
	total = now_us();
	for (uint64_t c = 0; c < n; c++) {
		double t = write_chunk(ctx, vol, buf, c);

		if (c % TP_LEAF == 0) {
			lat[c / TP_LEAF] = t;
			copies += t;
		}
	}
	if ((ret = dio_submit_sync(ctx, vol, &flush)) < 0)
		die("flush", ret);
	total = now_us() - total;
	dio_volume_put(vol);
	if ((ret = dio_tpool_checkpoint(p)) < 0 || (ret = dio_tpool_get_meta(p, &m)) < 0)
		die("checkpoint", ret);
	qsort(lat, nleaf, sizeof(*lat), cmp_double);
	printf("chunks %llu of %llu, leaves %llu: diverge_ms %.1f leaf_copy_writes_ms %.2f "
	       "leaf_copy_write_p50_us %.1f ckpt_blocks %llu\n", (unsigned long long)n,
	       (unsigned long long)info.nr_chunks, (unsigned long long)nleaf, total / 1e3,
	       copies / 1e3, lat[nleaf / 2], (unsigned long long)m.ckpt_blocks);
	dio_tpool_close(p);
	dio_ctx_destroy(ctx);
	unlink(argv[1]);
	free(lat);
	free(buf);
	return 0;
}
