/* SPDX-License-Identifier: MIT */
/*
 * pool-delete [--no-discard] [--sync] [--revert SNAPSHOT | --shrink BYTES]
 * POOL VOLUME: the time dio_tpool_volume_delete takes to reply for a
 * volume (issue 11's bench row "delete of a fully mapped volume: reply
 * time, background reclaim rate"), or dio_tpool_volume_revert to
 * SNAPSHOT, or dio_tpool_volume_resize down to BYTES (what they drop goes
 * to the same reclaim), the chunks it gave back by then, how long the
 * background reclaim took after it (dio_tpool_info.reclaim_volumes back
 * to 0) and at what rate, the longest another thread waited for the pool
 * lock meanwhile (dio_tpool_get_info in a loop; overall, and after the
 * reply: the reclaim's lock holds), and the close's checkpoint after. One
 * line: the operation, the volume's mapped chunks, reply ms, chunks free
 * at the reply, reclaim ms (from the call), chunks/s, longest lock waits
 * ms, close ms.
 * The pool is opened as the daemon opens it (commit_ms 1000: background
 * work); --sync opens it without (commit_ms 0), as dionbd-pool does.
 * Fill the volume first, e.g. through dionbd:
 *   nbdcopy --no-extents --sparse=0 ZERO-FILE 'nbd+unix:///v?socket=S'
 * With --no-discard the freed chunks are not punched out of the pool file
 * (dio_tpool_opts.no_discard): the reply without the device's share.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/tpool.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Another user of the pool: how long it waits for the lock at most. */
struct prober {
	struct dio_tpool *p;
	atomic_bool stop;
	atomic_bool replied;	/* the delete returned: the waits from now on are the reclaim's */
	double max_ms, max_after_ms;
};

static void *
probe(void *arg)
{
	struct prober *pr = arg;
	struct dio_tpool_info i;

	while (!atomic_load(&pr->stop)) {
		bool after = atomic_load(&pr->replied);
		double t = now_ms();

		dio_tpool_get_info(pr->p, &i);
		t = now_ms() - t;
		if (t > pr->max_ms)
			pr->max_ms = t;
		if (after && t > pr->max_after_ms)
			pr->max_after_ms = t;
		usleep(100);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	char err[512] = "";
	struct dio_tpool_opts o = { .errbuf = err, .errlen = sizeof(err), .commit_ms = 1000 };
	struct dio_tpool_vol_info *vi;
	struct dio_tpool_info a, b, c;
	struct prober pr = { 0 };
	struct dio_tpool *p;
	const char *revert = NULL, *op = "delete";
	uint64_t mapped = 0, shrink = 0;
	double t0, t1, t2, t3;
	pthread_t th;
	size_t n;
	int ret;

	for (; argc > 3 && argv[1][0] == '-'; argc--, argv++) {
		if (strcmp(argv[1], "--no-discard") == 0) {
			o.no_discard = true;	/* the freed chunks' space stays on the device */
		} else if (strcmp(argv[1], "--sync") == 0) {
			o.commit_ms = 0;	/* no background work: the reclaim in the call */
		} else if (strcmp(argv[1], "--revert") == 0 && argc > 4) {
			revert = argv[2];
			op = "revert";
			argc--, argv++;
		} else if (strcmp(argv[1], "--shrink") == 0 && argc > 4) {
			shrink = strtoull(argv[2], NULL, 0);
			op = "shrink";
			argc--, argv++;
		} else {
			argc = 0;
			break;
		}
	}
	if (argc != 3) {
		fprintf(stderr, "usage: pool-delete [--no-discard] [--sync] "
			"[--revert SNAPSHOT | --shrink BYTES] POOL VOLUME\n");
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
	pr.p = p;
	if (pthread_create(&th, NULL, probe, &pr) != 0) {
		fprintf(stderr, "pool-delete: no prober thread\n");
		return 1;
	}
	t0 = now_ms();
	if (revert)
		ret = dio_tpool_volume_revert(p, argv[2], revert);
	else if (shrink)
		ret = dio_tpool_volume_resize(p, argv[2], shrink);
	else
		ret = dio_tpool_volume_delete(p, argv[2]);
	t1 = now_ms();
	atomic_store(&pr.replied, true);
	dio_tpool_get_info(p, &b);
	do {
		dio_tpool_get_info(p, &c);
		if (c.reclaim_volumes)
			usleep(1000);
	} while (c.reclaim_volumes);
	t2 = now_ms();
	atomic_store(&pr.stop, true);
	pthread_join(th, NULL);
	dio_tpool_close(p);
	t3 = now_ms();
	if (ret < 0) {
		fprintf(stderr, "pool-delete: %s: %s\n", argv[2], strerror(-ret));
		return 1;
	}
	printf("%s: mapped %" PRIu64 " chunks, reply %.3f ms, %" PRIu64 " chunks free at the reply, "
	       "reclaimed %" PRIu64 " in %.3f ms, %.0f chunks/s, lock wait max %.3f ms "
	       "(%.3f ms after the reply), close %.3f ms\n", op, mapped, t1 - t0,
	       b.free_chunks - a.free_chunks, c.free_chunks - a.free_chunks, t2 - t0,
	       (double)(c.free_chunks - a.free_chunks) / ((t2 - t0) / 1e3), pr.max_ms,
	       pr.max_after_ms, t3 - t2);
	return 0;
}
