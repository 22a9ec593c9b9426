/* SPDX-License-Identifier: MIT */
/*
 * pool-snap-bench: the library's snapshot call timed on a pool volume,
 * for bench/run-pool.sh (issue 11). Opens the pool (no daemon may hold
 * it), then N times: dio_tpool_volume_snapshot(ORIGIN -> NAME), then
 * dio_tpool_volume_delete(NAME), each timed alone (CLOCK_MONOTONIC).
 *
 *   pool-snap-bench [-f] [-w] [-p] [-s MS] POOL ORIGIN N [NAME]
 *
 * Prints one line per call, "snap_us X" and "delsnap_us Y", and first
 * "open_ms Z" (the pool's open: checkpoint load and journal replay).
 *  -f  first write ORIGIN whole (1 MiB writes, then a FLUSH): "fill_s S".
 *  -w  a thread writes 4 KiB at random offsets of ORIGIN at QD 1 all
 *      along, as a client would (the pool commits within a second, as
 *      dionbd's does). Per snapshot "pause_us P": the longest latency of
 *      a write in flight at any time during the call; at the end
 *      "writes W", "snap_write_p99_us" and "snap_write_max_us" of the
 *      writes in flight during a snapshot call, "quiet_p50_us" and
 *      "quiet_max_us" of the writes during no call.
 *  -p  with -w, per snapshot where its time went: "meta_io", the pool's
 *      device flushes and FUA writes during the call (any thread's), their
 *      time, and the checkpoints written meanwhile; "phase_us" with the
 *      phases of lib/pool-snap.c (flush, letgo, drain, apply, wake, commit; us
 *      each), "park_us" (from the first write it parked to their wake-up,
 *      0: none parked), and "pause_write" of the longest write in flight
 *      (its latency, whether the snapshot parked it, whether it copied a
 *      shared chunk, and us from the wake-up to its end); at the end
 *      "cow_quiet_p50_us"/"cow_quiet_max_us" and "ow_quiet_p50_us" of the
 *      writes during no call that copied a shared chunk and that did not:
 *      what a first write to a shared chunk costs by itself.
 *  -s  a slow device for the pool's metadata: each of its flushes and
 *      writes (lib/pool.h's io hooks) takes MS ms more; the data I/O of
 *      the writes is as fast as ever. What a write waits for the pool's
 *      device I/O stands out from the device's own noise.
 * Exit 0, 1 on a failure (the call's error on stderr), 2 on usage.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/tpool.h"
#include "dio/volume.h"
#include "pool.h"

#define MAXW (4u << 20)		/* writes timed at most */
#define MAXCALL 4096		/* calls timed at most (2 per snapshot) */

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* The writer thread: its volume, its timings (start, end in us), what each did. */
#define W_PARKED 1	/* a snapshot parked it */
#define W_COW 2		/* it copied a shared chunk */
static struct {
	struct dio_tpool *pool;
	struct dio_volume *vol;
	uint64_t size;
	atomic_bool stop;
	double (*t)[2];
	unsigned char *what;
	size_t n;
	int ret;
} wr;

/* A counter of the pool's, read without its lock: only the writer changes these two. */
static uint64_t
pool_count(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static void *
writer(void *arg)
{
	struct dio_ctx *ctx;
	uint64_t rnd = 0x9e3779b97f4a7c15ull, nblk = wr.size / 4096;
	void *buf;

	(void)arg;
	wr.ret = dio_ctx_create(NULL, &ctx);
	if (wr.ret < 0)
		return NULL;
	if (posix_memalign(&buf, 4096, 4096)) {
		wr.ret = -ENOMEM;
		dio_ctx_destroy(ctx);
		return NULL;
	}
	memset(buf, 0x5a, 4096);
	while (!atomic_load(&wr.stop) && wr.n < MAXW) {
		struct dio_req req = { .op = DIO_REQ_WRITE, .len = 4096, .buf = buf };
		uint64_t parks = pool_count(&wr.pool->snap_parks);
		uint64_t cows = pool_count(&wr.pool->cow_chunks);
		double t0;

		rnd ^= rnd << 13;
		rnd ^= rnd >> 7;
		rnd ^= rnd << 17;
		req.pos = rnd % nblk * 4096;
		t0 = now_us();
		wr.ret = dio_submit_sync(ctx, wr.vol, &req);
		if (wr.ret < 0)
			break;
		wr.t[wr.n][0] = t0;
		wr.t[wr.n][1] = now_us();
		wr.what[wr.n] = (pool_count(&wr.pool->snap_parks) != parks ? W_PARKED : 0) |
				(pool_count(&wr.pool->cow_chunks) != cows ? W_COW : 0);
		wr.n++;
	}
	free(buf);
	dio_ctx_destroy(ctx);
	return NULL;
}

/* Write vol whole with 1 MiB writes, then FLUSH. 0 or -errno. */
static int
fill(struct dio_volume *vol, uint64_t size)
{
	struct dio_ctx *ctx;
	void *buf;
	int ret = dio_ctx_create(NULL, &ctx);

	if (ret < 0)
		return ret;
	if (posix_memalign(&buf, 4096, 1 << 20)) {
		dio_ctx_destroy(ctx);
		return -ENOMEM;
	}
	memset(buf, 0xa5, 1 << 20);
	for (uint64_t off = 0; off < size && ret >= 0; off += 1 << 20) {
		struct dio_req req = { .op = DIO_REQ_WRITE, .pos = off, .buf = buf,
				       .len = size - off < (1 << 20) ? size - off : (1 << 20) };

		ret = dio_submit_sync(ctx, vol, &req);
	}
	if (ret >= 0) {
		struct dio_req req = { .op = DIO_REQ_FLUSH };

		ret = dio_submit_sync(ctx, vol, &req);
	}
	free(buf);
	dio_ctx_destroy(ctx);
	return ret < 0 ? ret : 0;
}

/*
 * -s: the pool's metadata I/O, slowed down by slow_ms. -p: counted, with
 * the time it took (us), by any thread (the commit thread's too).
 */
static unsigned int slow_ms;
static struct {
	uint64_t flushes, fua_writes;
	uint64_t flush_ns, fua_ns;
} mio;

static void
mio_add(uint64_t *n, uint64_t *ns, double t0)
{
	__atomic_add_fetch(n, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(ns, (uint64_t)((now_us() - t0) * 1e3), __ATOMIC_RELAXED);
}

static void
slow(void)
{
	struct timespec ts = { slow_ms / 1000, (long)(slow_ms % 1000) * 1000000 };

	if (slow_ms)
		nanosleep(&ts, NULL);
}

static int
slow_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	double t0 = now_us();
	int ret;

	slow();
	ret = tp_sys_io.pwrite(priv, fd, buf, len, off, fua);
	if (fua)
		mio_add(&mio.fua_writes, &mio.fua_ns, t0);
	return ret;
}

static int
slow_flush(void *priv, int fd)
{
	double t0 = now_us();
	int ret;

	slow();
	ret = tp_sys_io.flush(priv, fd);
	mio_add(&mio.flushes, &mio.flush_ns, t0);
	return ret;
}

static struct dio_tpool_io slow_io;

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of the n values at v (sorted here); 0 when none. */
static double
quantile(double *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

/* The writes' statistics against the calls' spans c[0..nc) (snapshots at even i). */
static void
report(double (*c)[2], int nc, bool phases)
{
	double *in = malloc((wr.n + 1) * sizeof(double));
	double *quiet = malloc((wr.n + 1) * sizeof(double));
	double *cow = malloc((wr.n + 1) * sizeof(double));
	double *ow = malloc((wr.n + 1) * sizeof(double));
	size_t nin = 0, nq = 0, k = 0, ncow = 0, now = 0;

	if (!in || !quiet || !cow || !ow) {
		free(in);
		free(quiet);
		free(cow);
		free(ow);
		return;
	}
	for (size_t i = 0; i < wr.n; i++) {
		double s = wr.t[i][0], e = wr.t[i][1];
		bool snap = false, busy = false;

		/* calls are in order, writes too: skip the calls ended before s */
		while (k < (size_t)nc && c[k][1] <= s)
			k++;
		for (size_t j = k; j < (size_t)nc && c[j][0] < e; j++) {
			busy = true;
			snap |= j % 2 == 0;
		}
		if (snap)
			in[nin++] = e - s;
		else if (!busy)
			quiet[nq++] = e - s;
		if (!busy && (wr.what[i] & W_COW))
			cow[ncow++] = e - s;
		else if (!busy)
			ow[now++] = e - s;
	}
	printf("writes %zu\n", wr.n);
	/* quantile sorts: the largest is last only after it */
	printf("snap_write_p99_us %.1f\n", quantile(in, nin, 0.99));
	printf("snap_write_max_us %.1f\n", nin ? in[nin - 1] : 0);
	printf("quiet_p50_us %.1f\n", quantile(quiet, nq, 0.5));
	printf("quiet_max_us %.1f\n", nq ? quiet[nq - 1] : 0);
	if (phases) {
		printf("cow_quiet_p50_us %.1f\n", quantile(cow, ncow, 0.5));
		printf("cow_quiet_max_us %.1f\n", ncow ? cow[ncow - 1] : 0);
		printf("ow_quiet_p50_us %.1f\n", quantile(ow, now, 0.5));
	}
	free(in);
	free(quiet);
	free(cow);
	free(ow);
}

/* The longest latency of a write in flight at any time during [a, b); *w: which. */
static double
pause_of(double a, double b, size_t *w)
{
	double m = 0;

	*w = SIZE_MAX;
	for (size_t i = wr.n; i-- > 0 && wr.t[i][1] > a - 10e6;)
		if (wr.t[i][0] < b && wr.t[i][1] > a && wr.t[i][1] - wr.t[i][0] > m) {
			m = wr.t[i][1] - wr.t[i][0];
			*w = i;
		}
	return m;
}

/* -p: where the last snapshot's time went, and the longest write in flight (w) with it. */
static void
phases(struct dio_tpool *p, size_t w)
{
	static const char *const name[TP_SP_N] = { "start", "flush", "letgo", "drain", "apply",
						  "wake", "commit" };
	uint64_t t[TP_SP_N], park;

	pthread_mutex_lock(&p->lock);
	memcpy(t, p->snap_t, sizeof(t));
	park = p->snap_park_t;
	pthread_mutex_unlock(&p->lock);
	/* from the end of the last phase reached before it; 0: not reached (or not needed) */
	printf("phase_us");
	for (int i = 1, last = 0; i < TP_SP_N; i++) {
		printf(" %s %.1f", name[i], t[i] ? (double)(t[i] - t[last]) / 1e3 : 0);
		last = t[i] ? i : last;
	}
	printf("\npark_us %.1f\n",
	       park && t[TP_SP_WAKE] ? (double)(t[TP_SP_WAKE] - park) / 1e3 : 0);
	if (w != SIZE_MAX) {
		double wake = (double)t[TP_SP_WAKE] / 1e3;

		printf("pause_write us %.1f parked %d cow %d from_wake_us %.1f start_us %.1f\n",
		       wr.t[w][1] - wr.t[w][0], !!(wr.what[w] & W_PARKED), !!(wr.what[w] & W_COW),
		       wr.t[w][1] - wake, wr.t[w][0] - (double)t[TP_SP_START] / 1e3);
	}
}

static int
usage(void)
{
	fprintf(stderr, "usage: pool-snap-bench [-f] [-w] [-p] [-s MS] POOL ORIGIN N [NAME]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	struct dio_tpool_opts o = {0};
	static double calls[MAXCALL][2];
	struct dio_volume *vol = NULL;
	struct dio_tpool *p;
	char err[256] = "";
	bool do_fill = false, do_write = false, do_phases = false;
	const char *name, *origin;
	pthread_t th;
	double t0;
	long n;
	int ret, c, nc = 0;

	while ((c = getopt(argc, argv, "fwps:")) != -1) {
		if (c == 'f')
			do_fill = true;
		else if (c == 'p')
			do_phases = true;
		else if (c == 'w')
			do_write = true;
		else if (c == 's')
			slow_ms = (unsigned int)strtoul(optarg, NULL, 10);
		else
			return usage();
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (argc < 4 || argc > 5 || (n = strtol(argv[3], NULL, 10)) < 1 || n > MAXCALL / 2)
		return usage();
	origin = argv[2];
	name = argc == 5 ? argv[4] : "bench-snap";
	o.errbuf = err;
	o.errlen = sizeof(err);
	o.no_discard = true;
	o.commit_ms = do_write ? 1000 : 0;	/* as dionbd: unflushed writes within 1 s */
	if (slow_ms || do_phases) {
		slow_io = tp_sys_io;
		slow_io.pwrite = slow_pwrite;
		slow_io.flush = slow_flush;
		o.io = &slow_io;
	}
	t0 = now_us();
	ret = dio_tpool_open(argv[1], &o, &p);
	if (ret < 0) {
		fprintf(stderr, "pool-snap-bench: %s: %s\n", argv[1], err[0] ? err : strerror(-ret));
		return 1;
	}
	printf("open_ms %.3f\n", (now_us() - t0) / 1e3);
	if (do_fill || do_write) {
		ret = dio_tpool_volume_open(p, origin, &vol);
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: open %s: %s\n", origin, strerror(-ret));
			dio_tpool_close(p);
			return 1;
		}
		wr.pool = p;
		wr.vol = vol;
		wr.size = vol->size;
	}
	if (do_fill) {
		t0 = now_us();
		ret = fill(vol, wr.size);
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: writing %s: %s\n", origin,
				strerror(-ret));
			goto out;
		}
		printf("fill_s %.1f\n", (now_us() - t0) / 1e6);
	}
	if (do_write) {
		wr.t = malloc(MAXW * sizeof(*wr.t));
		wr.what = malloc(MAXW);
		if (!wr.t || !wr.what || pthread_create(&th, NULL, writer, NULL) != 0) {
			fprintf(stderr, "pool-snap-bench: no writer thread\n");
			ret = -ENOMEM;
			goto out;
		}
		usleep(300 * 1000);
	}
	for (long i = 0; i < n; i++) {
		uint64_t io0[4] = { mio.flushes, mio.flush_ns, mio.fua_writes, mio.fua_ns };
		uint64_t gen0 = pool_count(&p->sb.h.gen);

		t0 = now_us();
		ret = dio_tpool_volume_snapshot(p, origin, name);
		calls[nc][0] = t0;
		calls[nc++][1] = now_us();
		if (do_phases)
			printf("meta_io flushes %llu flush_us %.1f fua_writes %llu fua_us %.1f "
			       "checkpoints %llu\n",
			       (unsigned long long)(mio.flushes - io0[0]),
			       (mio.flush_ns - io0[1]) / 1e3,
			       (unsigned long long)(mio.fua_writes - io0[2]),
			       (mio.fua_ns - io0[3]) / 1e3,
			       (unsigned long long)(pool_count(&p->sb.h.gen) - gen0));
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: snapshot %s of %s: %s\n", name, origin,
				strerror(-ret));
			break;
		}
		printf("snap_us %.1f\n", calls[nc - 1][1] - t0);
		if (do_write) {
			size_t w;

			usleep(100 * 1000);	/* the writes in flight during the call end */
			printf("pause_us %.1f\n", pause_of(calls[nc - 1][0], calls[nc - 1][1], &w));
			if (do_phases)
				phases(p, w);
		}
		t0 = now_us();
		ret = dio_tpool_volume_delete(p, name);
		calls[nc][0] = t0;
		calls[nc++][1] = now_us();
		if (ret < 0) {
			fprintf(stderr, "pool-snap-bench: delete %s: %s\n", name, strerror(-ret));
			break;
		}
		printf("delsnap_us %.1f\n", calls[nc - 1][1] - t0);
		if (do_write)
			usleep(100 * 1000);
	}
	if (do_write) {
		atomic_store(&wr.stop, true);
		pthread_join(th, NULL);
		if (wr.ret < 0) {
			fprintf(stderr, "pool-snap-bench: a write to %s: %s\n", origin,
				strerror(-wr.ret));
			ret = wr.ret;
		}
		report(calls, nc, do_phases);
		free(wr.t);
		free(wr.what);
	}
out:
	dio_volume_put(vol);
	dio_tpool_close(p);
	return ret < 0 ? 1 : 0;
}
