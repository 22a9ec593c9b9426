/* SPDX-License-Identifier: MIT */
/*
 * pool-delete [--no-discard] POOL VOLUME: the time dio_tpool_volume_delete takes to reply
 * for a volume (issue 11's bench row "delete of a fully mapped volume"),
 * the chunks it gave back by then, and the close's checkpoint after. One
 * line: mapped chunks, reply ms, chunks freed at the reply, chunks/s,
 * close ms. Fill the volume first, e.g. through dionbd:
 *   head -c 2G /dev/urandom | nbdcopy - 'nbd+unix:///v?socket=S'
 * With --no-discard the freed chunks are not punched out of the pool file
 * (dio_tpool_opts.no_discard): the reply without the device's share.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dio/dio.h"
#include "dio/tpool.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	char err[512] = "";
	struct dio_tpool_opts o = { .errbuf = err, .errlen = sizeof(err) };
	struct dio_tpool_vol_info *vi;
	struct dio_tpool_info a, b;
	struct dio_tpool *p;
	uint64_t mapped = 0;
	double t0, t1, t2;
	size_t n;
	int ret;

	if (argc == 4 && strcmp(argv[1], "--no-discard") == 0) {
		o.no_discard = true;	/* the freed chunks' space stays on the device */
		argc--;
		argv++;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: pool-delete [--no-discard] POOL VOLUME\n");
		return 2;
	}
	if (dio_tpool_open(argv[1], &o, &p) < 0) {
		fprintf(stderr, "pool-delete: %s\n", err);
		return 1;
	}
	if (dio_tpool_volume_list(p, &vi, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			if (strcmp(vi[i].name, argv[2]) == 0)
				mapped = vi[i].mapped;
		free(vi);
	}
	dio_tpool_get_info(p, &a);
	t0 = now_ms();
	ret = dio_tpool_volume_delete(p, argv[2]);
	t1 = now_ms();
	dio_tpool_get_info(p, &b);
	dio_tpool_close(p);
	t2 = now_ms();
	if (ret < 0) {
		fprintf(stderr, "pool-delete: %s: %s\n", argv[2], strerror(-ret));
		return 1;
	}
	printf("mapped %" PRIu64 " chunks, reply %.3f ms, %" PRIu64 " chunks free at the reply, "
	       "%.0f chunks/s, close %.3f ms\n", mapped, t1 - t0, b.free_chunks - a.free_chunks,
	       (double)(b.free_chunks - a.free_chunks) / ((t1 - t0) / 1e3), t2 - t1);
	return 0;
}
