/* SPDX-License-Identifier: MIT */
/*
 * dio-bench: drive libdio directly on a file, the way fio drives io_uring,
 * so that the two can be compared on the same file in the same run.
 *
 * One thread, one ctx, QD requests kept in flight: each request is
 * resubmitted from its own done() until the run time is over. Latency is
 * measured from dio_submit() to done() (fio's "lat", not "clat") and kept
 * in a log-linear histogram, so percentiles cost no sorting and no memory
 * per sample.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dio/dio.h"

/*
 * Histogram of nanoseconds: values below 2^HIST_SUB_BITS have a bucket
 * each; above, every power of two is cut into 2^HIST_SUB_BITS buckets, so
 * a bucket is at most 1/64 (1.6%) of its value wide.
 */
#define HIST_SUB_BITS	6
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_BUCKETS	((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t bucket[HIST_BUCKETS];
};

enum pattern { PAT_READ, PAT_WRITE, PAT_RANDREAD, PAT_RANDWRITE };

static const char *const pattern_names[] = {
	[PAT_READ] = "read",
	[PAT_WRITE] = "write",
	[PAT_RANDREAD] = "randread",
	[PAT_RANDWRITE] = "randwrite",
};

struct bench_opts {
	const char *file;
	uint64_t size;		/* 0: the whole volume */
	enum pattern rw;
	uint64_t bs;
	unsigned int qd;
	double runtime;		/* seconds measured */
	double ramp;		/* seconds run before measuring */
	enum dio_engine_kind engine;
	uint64_t seed;
	bool json;
	bool kick_each;		/* push each resubmission to the device at once */
};

struct bench;

/* One request slot: a dio_req and the pool buffer it reads into or writes from. */
struct slot {
	struct dio_req req;
	struct dio_buf *dbuf;	/* our reference, put back at the end */
	uint64_t t_submit;	/* ns, CLOCK_MONOTONIC */
	struct bench *b;
};

struct bench {
	const struct bench_opts *o;
	struct dio_ctx *ctx;
	struct dio_volume *vol;
	struct slot *slots;
	bool write;
	bool random;
	uint64_t nblocks;	/* bs-sized blocks in the tested range */
	uint64_t seq_next;	/* next block of a sequential run */
	uint64_t rng;		/* wyrand state */
	uint64_t t_start;
	uint64_t t_measure;	/* end of ramp-up */
	uint64_t t_end;
	bool stopping;		/* done() no longer resubmits */
	int error;		/* first error, -errno */
	uint64_t ios;		/* completed inside the measured window */
	bool measuring;		/* the first completion after ramp-up was seen */
	struct rusage ru_start, ru_end;	/* CPU of every thread over the window */
	uint64_t submit_errors;
	unsigned int heap_bufs;	/* slot buffers outside the registered arena */
	struct hist lat;
};

/* Monotonic time in nanoseconds. */
static inline uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* wyrand: one multiply per number, passes BigCrush; plenty for offsets. */
static inline uint64_t
rng_next(uint64_t *state)
{
	unsigned __int128 m;

	*state += 0xa0761d6478bd642full;
	m = (unsigned __int128)*state * (*state ^ 0xe7037ed1a0b428dbull);
	return (uint64_t)(m >> 64) ^ (uint64_t)m;
}

/* Bucket index of a value. */
static inline unsigned int
hist_index(uint64_t v)
{
	unsigned int msb, shift;

	if (v < HIST_SUB)
		return (unsigned int)v;
	msb = 63 - (unsigned int)__builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned int)((v >> shift) - HIST_SUB);
}

/* Middle of the range of values that fall into bucket idx. */
static uint64_t
hist_value(unsigned int idx)
{
	unsigned int shift;

	if (idx < HIST_SUB)
		return idx;
	shift = idx / HIST_SUB - 1;
	return ((uint64_t)(HIST_SUB + idx % HIST_SUB) << shift) + ((1ull << shift) >> 1);
}

/* Record one sample. */
static inline void
hist_add(struct hist *h, uint64_t v)
{
	if (h->count == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->sum += v;
	h->bucket[hist_index(v)]++;
}

/* The value below which pct percent of the samples lie (0 when empty). */
static uint64_t
hist_percentile(const struct hist *h, double pct)
{
	uint64_t target, seen = 0;
	unsigned int i;

	if (h->count == 0)
		return 0;
	/* the rank of the sample asked for, counted from 1 as fio does */
	target = (uint64_t)(pct / 100.0 * (double)h->count + 0.999999);
	if (target < 1)
		target = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= target)
			break;
	}
	if (i == HIST_BUCKETS)
		return h->max;
	/* a bucket's middle may lie outside what was actually seen */
	if (hist_value(i) > h->max)
		return h->max;
	if (hist_value(i) < h->min)
		return h->min;
	return hist_value(i);
}

static void slot_done(struct dio_req *req, int ret);

/* Aim a slot at the next offset and submit it. 0 or -errno. */
static int
slot_submit(struct bench *b, struct slot *s, uint64_t now)
{
	uint64_t blk;
	int ret;

	if (b->random) {
		/* multiply-shift maps 64 random bits onto [0, nblocks) without division */
		blk = (uint64_t)(((unsigned __int128)rng_next(&b->rng) * b->nblocks) >> 64);
	} else {
		blk = b->seq_next++;
		if (b->seq_next == b->nblocks)
			b->seq_next = 0;
	}
	memset(&s->req, 0, sizeof(s->req));
	s->req.op = b->write ? DIO_REQ_WRITE : DIO_REQ_READ;
	s->req.pos = blk * b->o->bs;
	s->req.len = b->o->bs;
	s->req.buf = s->dbuf->data;
	s->req.dbuf = s->dbuf;
	s->req.done = slot_done;
	s->req.priv = s;
	s->t_submit = now;
	ret = dio_submit(b->ctx, b->vol, &s->req);
	if (ret < 0) {
		b->submit_errors++;
		if (!b->error)
			b->error = ret;
		b->stopping = true;
	}
	return ret;
}

/* Completion: account the request, then send the slot out again unless time is up. */
static void
slot_done(struct dio_req *req, int ret)
{
	struct slot *s = req->priv;
	struct bench *b = s->b;
	uint64_t now = now_ns();

	if (ret < 0) {
		if (!b->error)
			b->error = ret;
		b->stopping = true;
		return;
	}
	if (now >= b->t_end) {
		if (!b->stopping)
			getrusage(RUSAGE_SELF, &b->ru_end);
		b->stopping = true;
		return;
	}
	if (now >= b->t_measure) {
		if (!b->measuring) {
			/* the engine's threads (psync) count too: RUSAGE_SELF */
			getrusage(RUSAGE_SELF, &b->ru_start);
			b->measuring = true;
		}
		b->ios++;
		hist_add(&b->lat, now - s->t_submit);
	}
	if (!b->stopping && slot_submit(b, s, now) == 0 && b->o->kick_each)
		dio_ctx_kick(b->ctx);
}

/* Keep qd requests in flight for ramp + runtime, then drain. 0 or -errno. */
static int
bench_run(struct bench *b)
{
	unsigned int i;
	int ret;

	b->t_start = now_ns();
	b->t_measure = b->t_start + (uint64_t)(b->o->ramp * 1e9);
	b->t_end = b->t_measure + (uint64_t)(b->o->runtime * 1e9);
	for (i = 0; i < b->o->qd && !b->stopping; i++)
		slot_submit(b, &b->slots[i], now_ns());
	ret = dio_ctx_kick(b->ctx);
	if (ret < 0 && !b->error)
		b->error = ret;
	/* dio_ctx_reap kicks what done() resubmitted before it waits */
	while (dio_ctx_inflight(b->ctx) > 0) {
		ret = dio_ctx_reap(b->ctx, true);
		if (ret < 0) {
			if (!b->error)
				b->error = ret;
			return ret;
		}
	}
	return b->error;
}

/* Parse a size with an optional k/m/g/t suffix (powers of 1024). 0 or -EINVAL. */
static int
parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 't': case 'T': shift += 10; /* fall through */
	case 'g': case 'G': shift += 10; /* fall through */
	case 'm': case 'M': shift += 10; /* fall through */
	case 'k': case 'K': shift += 10; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int log_level = DIO_LOG_WARN;

/* Log hook: libdio's warnings (pinning refused, engine fallback) go to stderr. */
static void
log_stderr(int level, const char *msg)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };

	/* errors come back through errbuf and return codes too: show them with --verbose */
	if (level <= log_level && (level > DIO_LOG_ERR || log_level == DIO_LOG_DEBUG))
		fprintf(stderr, "dio-bench: libdio %s: %s\n",
			names[level < 0 || level > 3 ? 0 : level], msg);
}

/* Print how to call us. */
static void
usage(FILE *f)
{
	fprintf(f,
		"usage: dio-bench --file F [--size S] --rw randread|randwrite|read|write\n"
		"                 [--bs 4k] [--qd 1] [--runtime 5] [--ramp 1]\n"
		"                 [--engine uring|psync|auto] [--seed N] [--json] [--verbose]\n"
		"                 [--kick-each]  (submit each request at once, like fio's\n"
		"                                 iodepth_batch_submit=1, not one batch per reap)\n"
		"The file must exist; writes overwrite its first S bytes (default: all).\n");
}

/* Parse argv into *o. 0, 1 for --help, or -EINVAL after printing why. */
static int
parse_args(int argc, char **argv, struct bench_opts *o)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "rw", required_argument, NULL, 'w' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "iodepth", required_argument, NULL, 'q' },
		{ "runtime", required_argument, NULL, 't' },
		{ "ramp", required_argument, NULL, 'r' },
		{ "engine", required_argument, NULL, 'e' },
		{ "seed", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "kick-each", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int i;
	bool have_rw = false;
	int c, li = 0;
	char *end;
	long v;

	*o = (struct bench_opts){
		.bs = 4096, .qd = 1, .runtime = 5, .ramp = 1,
		.engine = DIO_ENGINE_AUTO, .seed = 0x5eed,
	};
	while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
		switch (c) {
		case 'f':
			o->file = optarg;
			break;
		case 's':
			if (parse_size(optarg, &o->size) < 0)
				goto bad;
			break;
		case 'b':
			if (parse_size(optarg, &o->bs) < 0 || o->bs == 0 ||
			    o->bs > DIO_IO_MAX_LEN)
				goto bad;
			break;
		case 'w':
			for (i = 0; i < sizeof(pattern_names) / sizeof(pattern_names[0]); i++)
				if (strcmp(optarg, pattern_names[i]) == 0)
					break;
			if (i == sizeof(pattern_names) / sizeof(pattern_names[0]))
				goto bad;
			o->rw = (enum pattern)i;
			have_rw = true;
			break;
		case 'q':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > 4096)
				goto bad;
			o->qd = (unsigned int)v;
			break;
		case 't':
		case 'r':
			errno = 0;
			if (c == 't')
				o->runtime = strtod(optarg, &end);
			else
				o->ramp = strtod(optarg, &end);
			if (errno || *end || o->runtime <= 0 || o->runtime > 3600 ||
			    o->ramp < 0 || o->ramp > 3600)
				goto bad;
			break;
		case 'e':
			if (strcmp(optarg, "uring") == 0)
				o->engine = DIO_ENGINE_URING;
			else if (strcmp(optarg, "psync") == 0)
				o->engine = DIO_ENGINE_PSYNC;
			else if (strcmp(optarg, "auto") == 0)
				o->engine = DIO_ENGINE_AUTO;
			else
				goto bad;
			break;
		case 'S':
			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno || *end)
				goto bad;
			break;
		case 'j':
			o->json = true;
			break;
		case 'v':
			log_level = DIO_LOG_DEBUG;
			break;
		case 'k':
			o->kick_each = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc || !o->file || !have_rw) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "dio-bench: bad value for --%s: %s\n", longopts[li].name, optarg);
	return -EINVAL;
}

/* Seconds between two timevals. */
static double
tv_secs(const struct timeval *a, const struct timeval *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
}

/* Print the result as one JSON object or as a few readable lines. */
static void
report(const struct bench *b, double secs)
{
	const struct bench_opts *o = b->o;
	double usr = tv_secs(&b->ru_start.ru_utime, &b->ru_end.ru_utime);
	double sys = tv_secs(&b->ru_start.ru_stime, &b->ru_end.ru_stime);
	double cpu_us_io = b->ios ? (usr + sys) * 1e6 / (double)b->ios : 0;
	double iops = (double)b->ios / secs;
	double mibs = iops * (double)o->bs / (1024.0 * 1024.0);
	double mean_us = b->lat.count ? (double)b->lat.sum / (double)b->lat.count / 1e3 : 0;
	struct dio_engine *e = dio_ctx_engine(b->ctx);

	if (o->json) {
		printf("{\"tool\": \"dio-bench\", \"engine\": \"%s\", \"pinned\": %s, "
		       "\"heap_bufs\": %u, \"rw\": \"%s\", \"bs\": %" PRIu64 ", \"qd\": %u, "
		       "\"size\": %" PRIu64 ", \"runtime_s\": %.3f, \"ios\": %" PRIu64 ", "
		       "\"iops\": %.1f, \"mib_s\": %.2f, \"lat_mean_us\": %.2f, "
		       "\"lat_min_us\": %.2f, \"lat_p50_us\": %.2f, \"lat_p99_us\": %.2f, "
		       "\"lat_p999_us\": %.2f, \"lat_max_us\": %.2f, \"usr_cpu\": %.2f, "
		       "\"sys_cpu\": %.2f, \"cpu_us_per_io\": %.3f}\n",
		       dio_engine_name(e), dio_pool_pinned(dio_ctx_pool(b->ctx)) ? "true" : "false",
		       b->heap_bufs, pattern_names[o->rw], o->bs, o->qd, b->nblocks * o->bs, secs, b->ios,
		       iops, mibs, mean_us, (double)b->lat.min / 1e3,
		       (double)hist_percentile(&b->lat, 50) / 1e3,
		       (double)hist_percentile(&b->lat, 99) / 1e3,
		       (double)hist_percentile(&b->lat, 99.9) / 1e3,
		       (double)b->lat.max / 1e3, usr * 100 / secs, sys * 100 / secs, cpu_us_io);
		return;
	}
	printf("dio-bench: %s bs=%" PRIu64 " qd=%u engine=%s%s size=%" PRIu64 " file=%s\n",
	       pattern_names[o->rw], o->bs, o->qd, dio_engine_name(e),
	       !dio_pool_pinned(dio_ctx_pool(b->ctx)) ? " (unpinned)" :
	       b->heap_bufs ? " (some buffers outside the pinned arena)" : " (fixed buffers)",
	       b->nblocks * o->bs, o->file);
	printf("  %" PRIu64 " I/Os in %.2f s: %.0f IOPS, %.1f MiB/s\n",
	       b->ios, secs, iops, mibs);
	printf("  latency (us): mean %.1f  min %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
	       mean_us, (double)b->lat.min / 1e3,
	       (double)hist_percentile(&b->lat, 50) / 1e3,
	       (double)hist_percentile(&b->lat, 99) / 1e3,
	       (double)hist_percentile(&b->lat, 99.9) / 1e3, (double)b->lat.max / 1e3);
	printf("  cpu: usr %.1f%%  sys %.1f%%  %.2f us per I/O\n",
	       usr * 100 / secs, sys * 100 / secs, cpu_us_io);
}

int
main(int argc, char **argv)
{
	char errbuf[256] = "";
	struct bench_opts o;
	struct dio_file_opts vopts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_ctx_opts copts = { 0 };
	struct bench *b;
	unsigned int i, j;
	uint64_t arena;
	int ret;

	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret > 0 ? 0 : 2;
	dio_set_log(log_stderr);

	/* the histogram is large: keep it off the stack */
	b = calloc(1, sizeof(*b));
	if (!b) {
		fprintf(stderr, "dio-bench: out of memory\n");
		return 1;
	}
	b->o = &o;
	b->write = o.rw == PAT_WRITE || o.rw == PAT_RANDWRITE;
	b->random = o.rw == PAT_RANDREAD || o.rw == PAT_RANDWRITE;
	b->rng = o.seed;

	vopts.readonly = !b->write;
	ret = dio_file_open(o.file, &vopts, &b->vol);
	if (ret < 0) {
		/* errbuf names the path already */
		if (errbuf[0])
			fprintf(stderr, "dio-bench: %s\n", errbuf);
		else
			fprintf(stderr, "dio-bench: %s: %s\n", o.file, strerror(-ret));
		goto err_free;
	}
	if (o.size == 0)
		o.size = b->vol->size;
	if (o.size > b->vol->size) {
		fprintf(stderr, "dio-bench: %s: --size %" PRIu64 " is past its end (%" PRIu64 ")\n",
			o.file, o.size, b->vol->size);
		ret = -EINVAL;
		goto err_close_vol;
	}
	if (o.bs % b->vol->lbs) {
		/* unaligned requests would measure the RMW path, not the device */
		fprintf(stderr, "dio-bench: --bs %" PRIu64 " is not a multiple of the "
			"logical block size %" PRIu32 "\n", o.bs, b->vol->lbs);
		ret = -EINVAL;
		goto err_close_vol;
	}
	b->nblocks = o.size / o.bs;
	if (b->nblocks == 0) {
		fprintf(stderr, "dio-bench: --size %" PRIu64 " is below --bs %" PRIu64 "\n",
			o.size, o.bs);
		ret = -EINVAL;
		goto err_close_vol;
	}

	copts.engine.kind = o.engine;
	copts.engine.depth = o.qd * 2 > 128 ? o.qd * 2 : 128;
	/* room for every slot's buffer in the pinned arena, plus slack for the pool's classes */
	arena = (uint64_t)o.qd * o.bs * 2;
	copts.pool.arena_size = arena > (64u << 20) ? arena : 0;
	copts.pool.align = b->vol->lbs > 4096 ? b->vol->lbs : 4096;
	ret = dio_ctx_create(&copts, &b->ctx);
	if (ret < 0) {
		fprintf(stderr, "dio-bench: cannot create a libdio context: %s\n", strerror(-ret));
		goto err_close_vol;
	}

	b->slots = calloc(o.qd, sizeof(*b->slots));
	if (!b->slots) {
		ret = -ENOMEM;
		goto err_destroy_ctx;
	}
	for (i = 0; i < o.qd; i++) {
		struct slot *s = &b->slots[i];

		s->b = b;
		s->dbuf = dio_buf_get(dio_ctx_pool(b->ctx), o.bs);
		if (!s->dbuf) {
			fprintf(stderr, "dio-bench: no buffer of %" PRIu64 " bytes\n", o.bs);
			ret = -ENOMEM;
			goto err_put_bufs;
		}
		if (s->dbuf->index < 0)
			b->heap_bufs++;
		/* incompressible data, so a thin or compressing backend cannot shortcut writes */
		for (j = 0; j + 8 <= o.bs; j += 8) {
			uint64_t r = rng_next(&b->rng);

			memcpy((char *)s->dbuf->data + j, &r, 8);
		}
	}

	ret = bench_run(b);
	if (ret < 0) {
		fprintf(stderr, "dio-bench: I/O failed: %s (%" PRIu64 " refused at submit)\n",
			strerror(-ret), b->submit_errors);
		/* the ctx cannot be freed with requests it failed to reap */
		if (dio_ctx_inflight(b->ctx) > 0)
			return 1;
		goto err_put_bufs;
	}
	report(b, o.runtime);

err_put_bufs:
	for (i = 0; i < o.qd; i++)
		if (b->slots[i].dbuf)
			dio_buf_put(b->slots[i].dbuf);
	free(b->slots);
err_destroy_ctx:
	dio_ctx_destroy(b->ctx);
err_close_vol:
	dio_volume_put(b->vol);
err_free:
	free(b);
	return ret < 0 ? 1 : 0;
}
