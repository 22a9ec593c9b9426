/* SPDX-License-Identifier: MIT */
/*
 * pool-snap-bench: the library's snapshot call timed on a pool volume,
 * for bench/run-pool.sh (issue 11). Opens the pool (no daemon may hold
 * it), then N times: dio_tpool_volume_snapshot(ORIGIN -> NAME), then
 * dio_tpool_volume_delete(NAME), each timed alone (CLOCK_MONOTONIC).
 *
 *   pool-snap-bench POOL ORIGIN N [NAME]
 *
 * Prints one line per call, "snap_us X" and "delsnap_us Y", and first
 * "open_ms Z" (the pool's open: checkpoint load and journal replay).
 * Exit 0, 1 on a failure (the call's error on stderr), 2 on usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dio/tpool.h"

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int
main(int argc, char **argv)
{
	struct dio_tpool_opts o = {0};
	struct dio_tpool *p;
	char err[256] = "";
	const char *name;
	double t0;
	long n;
	int ret;

	if (argc < 4 || argc > 5 || (n = strtol(argv[3], NULL, 10)) < 1) {
		fprintf(stderr, "usage: pool-snap-bench POOL ORIGIN N [NAME]\n");
		return 2;
	}
	name = argc == 5 ? argv[4] : "bench-snap";
	o.errbuf = err;
	o.errlen = sizeof(err);
	o.no_discard = true;
	t0 = now_us();
	ret = dio_tpool_open(argv[1], &o, &p);
	if (ret < 0) {
		fprintf(stderr, "pool-snap-bench: %s: %s\n", argv[1], err[0] ? err : strerror(-ret));
		return 1;
	}
	printf("open_ms %.3f\n", (now_us() - t0) / 1e3);
	for (long i = 0; i < n; i++) {
		t0 = now_us();
		ret = dio_tpool_volume_snapshot(p, argv[2], name);
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: snapshot %s of %s: %s\n", name, argv[2],
				strerror(-ret));
			break;
		}
		printf("snap_us %.1f\n", now_us() - t0);
		t0 = now_us();
		ret = dio_tpool_volume_delete(p, name);
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: delete %s: %s\n", name, strerror(-ret));
			break;
		}
		printf("delsnap_us %.1f\n", now_us() - t0);
	}
	dio_tpool_close(p);
	return ret < 0 ? 1 : 0;
}
