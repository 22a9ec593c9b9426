/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator (POOL.md "Crash simulation"), stage 1.
 *
 * A recording engine sits under the dio engine and wraps the engine under
 * test; the pool's metadata I/O goes through recording hooks. Both log
 * every device write (with its bytes and FUA), and every flush, with
 * submit and completion in one event order, beside the client requests'
 * submissions and replies. Device model, a volatile write cache: at crash
 * point k a write is durable if it completed with FUA, or completed before
 * a flush was submitted that completed, all before k; any other write
 * submitted before k may be absent, present or torn (sector granularity).
 *
 * For each crash point: none / all / each alone / all but one of the
 * volatile writes (every subset when there are at most 8), and torn halves
 * of each. Each image is base + overlay in memory; the pool is opened on
 * it (its metadata reads come from the image; recovery must write
 * nothing, R7), checked (no problems, R4), and read through the volumes'
 * map_begin against the oracle: what was acknowledged with FUA, or before
 * an acknowledged FLUSH, reads back (or a later write's bytes); no sector
 * ever holds bytes not written to that volume at that offset. Every
 * sector payload names its volume, offset and sequence, with a crc.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

#define SEC 512u
#define CHUNK 4096u
#define NCHUNKS 6
#define VOLSZ (4 * CHUNK)
#define VSECS (VOLSZ / SEC)
#define MAXW 512
#define MAXR 128

/* ---- the log ---- */

struct wrec {			/* one device write */
	uint64_t off, len;
	uint8_t *data;
	bool fua;
	int sub, done;		/* events; done -1 if it never completed */
};

struct frec {			/* one device flush */
	int sub, done;
};

enum { OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO };

struct rreq {			/* one client request */
	int op, vol;
	uint32_t sec, nsec;	/* range in sectors */
	bool fua;
	uint64_t seq;		/* WRITE payload sequence */
	int sub, done, ret;
};

static struct {
	int ev;
	struct wrec w[MAXW];
	int nw;
	struct frec f[MAXW];
	int nf;
	struct rreq r[MAXR];
	int nr;
	bool on;
} lg;

static int
log_write(uint64_t off, uint64_t len, const void *buf, bool fua)
{
	struct wrec *w = &lg.w[lg.nw];

	cr_assert_lt(lg.nw, MAXW);
	w->off = off;
	w->len = len;
	w->data = malloc(len);
	memcpy(w->data, buf, len);
	w->fua = fua;
	w->sub = lg.ev++;
	w->done = -1;
	return lg.nw++;
}

static int
log_flush(void)
{
	cr_assert_lt(lg.nf, MAXW);
	lg.f[lg.nf] = (struct frec){ .sub = lg.ev++, .done = -1 };
	return lg.nf++;
}

/* ---- the recording engine ---- */

struct rec_io {
	struct dio_io shadow;
	struct dio_io *orig;
	int w, f;		/* log index or -1 */
};

struct rec_engine {
	struct dio_engine e;
	struct dio_engine *inner;
};

static void
rec_inner_done(struct dio_io *io, int64_t res)
{
	struct rec_io *r = io->priv;
	struct dio_io *orig = r->orig;
	struct rec_engine *re = (struct rec_engine *)orig->next;

	if (res >= 0 && r->w >= 0)
		lg.w[r->w].done = lg.ev++;
	if (res >= 0 && r->f >= 0)
		lg.f[r->f].done = lg.ev++;
	re->e.inflight--;
	free(r);
	orig->res = res;
	orig->end_io(orig, res);
}

static int
rec_queue(struct dio_engine *e, struct dio_io *io)
{
	struct rec_engine *re = (struct rec_engine *)e;
	struct rec_io *r = calloc(1, sizeof(*r));
	int ret;

	r->orig = io;
	r->w = r->f = -1;
	r->shadow = *io;
	r->shadow.end_io = rec_inner_done;
	r->shadow.priv = r;
	r->shadow.next = NULL;
	if (io->op == DIO_IO_WRITE)
		r->w = log_write(io->offset, io->len, io->buf, io->rw_flags & RWF_DSYNC);
	else if (io->op == DIO_IO_FSYNC)
		r->f = log_flush();
	ret = re->inner->ops->queue(re->inner, &r->shadow);
	if (ret < 0) {
		free(r);
		return ret;
	}
	io->next = (struct dio_io *)re;	/* the engine's field: ours until end_io */
	e->inflight++;
	return 0;
}

static int
rec_submit(struct dio_engine *e)
{
	struct rec_engine *re = (struct rec_engine *)e;

	return re->inner->ops->submit(re->inner);
}

static int
rec_reap(struct dio_engine *e, bool wait)
{
	struct rec_engine *re = (struct rec_engine *)e;

	return re->inner->ops->reap(re->inner, wait);
}

static int
rec_event_fd(struct dio_engine *e)
{
	struct rec_engine *re = (struct rec_engine *)e;

	return re->inner->ops->event_fd(re->inner);
}

static void
rec_destroy(struct dio_engine *e)
{
	struct rec_engine *re = (struct rec_engine *)e;

	dio_engine_destroy(re->inner);
	free(re);
}

static const struct dio_engine_ops rec_ops = {
	.name = "record",
	.queue = rec_queue,
	.submit = rec_submit,
	.reap = rec_reap,
	.event_fd = rec_event_fd,
	.destroy = rec_destroy,
};

static struct dio_ctx *
rec_ctx(void)
{
	struct rec_engine *re = calloc(1, sizeof(*re));
	struct dio_ctx *ctx;

	re->inner = test_engine_create();
	re->e.ops = &rec_ops;
	re->e.depth = re->inner->depth;
	cr_assert_eq(dio_ctx_create_engine(&re->e, NULL, &ctx), 0);
	return ctx;
}

/* ---- metadata hooks: recording (workload) and from the image (states) ---- */

static int
rec_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	return tp_sys_io.pread(NULL, fd, buf, len, off);
}

static int
rec_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	int w = lg.on ? log_write(off, len, buf, fua) : -1;
	int ret = tp_sys_io.pwrite(NULL, fd, buf, len, off, fua);

	if (ret == 0 && w >= 0)
		lg.w[w].done = lg.ev++;
	return ret;
}

static int
rec_fsync(void *priv, int fd)
{
	int f = lg.on ? log_flush() : -1;
	int ret = tp_sys_io.flush(NULL, fd);

	if (ret == 0 && f >= 0)
		lg.f[f].done = lg.ev++;
	return ret;
}

static const struct dio_tpool_io rec_io_hooks = {
	.pread = rec_pread, .pwrite = rec_pwrite, .flush = rec_fsync,
};

static uint8_t *img;		/* the crash image being checked */
static uint64_t img_size;
static unsigned int img_writes;	/* writes attempted while recovering: must stay 0 */

static int
img_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	uint64_t n = off < img_size ? img_size - off : 0;

	if (n > len)
		n = len;
	memcpy(buf, img + off, n);
	memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}

static int
img_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	img_writes++;
	return -EROFS;
}

static int
img_flush(void *priv, int fd)
{
	img_writes++;
	return -EROFS;
}

static const struct dio_tpool_io img_io_hooks = {
	.pread = img_pread, .pwrite = img_pwrite, .flush = img_flush,
};

/* ---- payloads: (volume, sector, sequence, crc) in every sector ---- */

static void
payload(uint8_t *s, int vol, uint32_t sec, uint64_t seq)
{
	uint32_t crc;

	memset(s, (int)(seq * 31 + sec), SEC);
	memcpy(s, "PAYL", 4);
	memcpy(s + 4, &vol, 4);
	memcpy(s + 8, &sec, 4);
	memcpy(s + 16, &seq, 8);
	crc = tp_crc32c(0, s, SEC - 4);
	memcpy(s + SEC - 4, &crc, 4);
}

/* The sequence in sector s read from (vol, sec): 0 zeros, -1 foreign or garbage. */
static int64_t
payload_seq(const uint8_t *s, int vol, uint32_t sec)
{
	uint32_t crc, v, o;
	uint64_t seq;

	if (test_all_zero(s, SEC))
		return 0;
	memcpy(&crc, s + SEC - 4, 4);
	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (memcmp(s, "PAYL", 4) || crc != tp_crc32c(0, s, SEC - 4) || v != (uint32_t)vol ||
	    o != sec)
		return -1;
	return (int64_t)seq;
}

/* ---- workloads ---- */

struct step {
	int op, vol;
	uint32_t sec, nsec;
	bool fua;
};

static char *path;
static uint8_t *base;
static uint64_t states, workloads;
static char errbuf[512];

/* A fresh tiny pool with volumes 0 and 1; its bytes become the base image. */
static void
make_base(void)
{
	struct dio_tpool_opts o = { .no_direct = true, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_create_opts co = { .chunk_size = CHUNK, .journal_blocks = 8,
					    .max_volumes = 4 };
	struct tp_super sb;
	struct dio_tpool *p;
	uint64_t size = 16 * CHUNK;
	int fd;

	/* The smallest pool with NCHUNKS data chunks. */
	while (tp_geometry(&sb, size, CHUNK, 8, 4, 512) < 0 || sb.nr_chunks < NCHUNKS)
		size += CHUNK;
	co.size = size;
	img_size = size;
	path = test_file_create(0);
	cr_assert_eq(dio_tpool_create(path, &co, &o), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_open(path, &o, &p), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_volume_create(p, "v0", VOLSZ), 0);
	cr_assert_eq(dio_tpool_volume_create(p, "v1", VOLSZ), 0);
	dio_tpool_close(p);
	base = malloc(size);
	img = malloc(size);
	fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, base, size, 0), (ssize_t)size);
	close(fd);
}

/* Run steps on a pool opened from base with every device op logged. */
static void
run_workload(const struct step *steps, int n)
{
	struct dio_tpool_opts o = { .no_direct = true, .io = &rec_io_hooks };
	struct dio_volume *vols[2];
	struct dio_tpool *p;
	struct dio_ctx *ctx = rec_ctx();
	uint8_t *buf = test_alloc(VOLSZ);
	int fd = open(path, O_WRONLY);

	cr_assert_eq(pwrite(fd, base, img_size, 0), (ssize_t)img_size);
	close(fd);
	for (int i = 0; i < lg.nw; i++)
		free(lg.w[i].data);
	memset(&lg, 0, sizeof(lg));
	cr_assert_eq(dio_tpool_open(path, &o, &p), 0);
	cr_assert_eq(dio_tpool_volume_open(p, "v0", &vols[0]), 0);
	cr_assert_eq(dio_tpool_volume_open(p, "v1", &vols[1]), 0);
	lg.on = true;
	for (int i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		struct rreq *r = &lg.r[lg.nr++];
		uint8_t reqop[] = { DIO_REQ_WRITE, DIO_REQ_FLUSH, DIO_REQ_TRIM, DIO_REQ_ZERO };

		*r = (struct rreq){ .op = s->op, .vol = s->vol, .sec = s->sec, .nsec = s->nsec,
				    .fua = s->fua, .seq = (uint64_t)i + 1 };
		for (uint32_t k = 0; k < s->nsec; k++)
			payload(buf + k * SEC, s->vol, s->sec + k, r->seq);
		r->sub = lg.ev++;
		r->ret = test_io(ctx, vols[s->vol], reqop[s->op], s->fua ? DIO_REQ_FUA : 0,
				 (uint64_t)s->sec * SEC, (uint64_t)s->nsec * SEC,
				 s->op == OP_WRITE ? buf : NULL);
		r->done = lg.ev++;
	}
	lg.on = false;
	p->readonly = true;	/* a crash: nothing more is written */
	dio_volume_put(vols[0]);
	dio_volume_put(vols[1]);
	dio_ctx_destroy(ctx);
	dio_tpool_close(p);
	free(buf);
	workloads++;
}

/* Whether request r is required durable at crash point k (R2). */
static bool
required(const struct rreq *r, int k)
{
	if (r->op == OP_FLUSH || r->ret != 0 || r->done >= k)
		return false;
	if (r->fua)
		return true;
	for (int i = 0; i < lg.nr; i++) {
		const struct rreq *f = &lg.r[i];

		if (f->op == OP_FLUSH && f->ret == 0 && f->sub > r->done && f->done < k)
			return true;
	}
	return false;
}

/* Check sector (vol, sec) holding seq x (0 zeros) against the history before k. */
static void
oracle(int vol, uint32_t sec, int64_t x, int k, const char *what)
{
	int req = -1;
	bool ok = false;

	cr_assert_geq(x, 0, "%s: v%d sector %u holds foreign or stale bytes", what, vol, sec);
	for (int i = 0; i < lg.nr; i++) {
		const struct rreq *r = &lg.r[i];

		if (r->sub < k && r->vol == vol && r->op != OP_FLUSH && sec >= r->sec &&
		    sec < r->sec + r->nsec && required(r, k))
			req = i;
	}
	for (int i = 0; i < lg.nr && !ok; i++) {
		const struct rreq *r = &lg.r[i];
		int64_t val;

		if (r->sub >= k || r->vol != vol || r->op == OP_FLUSH || sec < r->sec ||
		    sec >= r->sec + r->nsec)
			continue;
		val = r->op == OP_WRITE ? (int64_t)r->seq : 0;
		/* the required one or anything later; a trim may leave what was before */
		if (i >= req || (req >= 0 && lg.r[req].op == OP_TRIM))
			ok = val == x;
	}
	if (req < 0 || lg.r[req].op == OP_TRIM)
		ok = ok || x == 0;
	cr_assert(ok, "%s: v%d sector %u reads seq %lld; required request %d", what, vol, sec,
		  (long long)x, req);
}

/* Open the pool on img, check it, and read every sector against the oracle. */
static void
verify_image(int k, const char *what)
{
	struct dio_tpool_opts o = { .readonly = true, .no_direct = true, .io = &img_io_hooks,
				    .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_check_result res;
	struct dio_tpool *p;
	int ret;

	img_writes = 0;
	cr_assert_eq(dio_tpool_check(path, &o, NULL, NULL, &res), 0);
	cr_assert_eq(res.problems, 0, "%s: check finds problems", what);
	ret = dio_tpool_open(path, &o, &p);
	cr_assert_eq(ret, 0, "%s: open: %s", what, errbuf);
	for (int v = 0; v < 2; v++) {
		struct dio_volume *vol;
		char name[4] = { 'v', (char)('0' + v), 0 };

		cr_assert_eq(dio_tpool_volume_open(p, name, &vol), 0);
		for (uint32_t s = 0; s < VSECS; s++) {
			struct dio_extent ext;
			static uint8_t zero[SEC];
			const uint8_t *d = zero;

			cr_assert_eq(vol->map_ops->map_begin(vol, s * SEC, SEC, 0, &ext), 0);
			if (ext.type == DIO_EXT_MAPPED)
				d = img + ext.addr;
			vol->map_ops->map_end(vol, &ext, SEC, 0);
			oracle(v, s, payload_seq(d, v, s), k, what);
		}
		dio_volume_put(vol);
	}
	dio_tpool_close(p);
	cr_assert_eq(img_writes, 0, "R7: recovery wrote");
	states++;
}

/* Build img at crash point k: durable writes, the chosen volatile ones, torn tw. */
static void
build(int k, const int *vol, int nv, uint64_t mask, int tw, int half)
{
	memcpy(img, base, img_size);
	for (int i = 0; i < lg.nw; i++) {
		const struct wrec *w = &lg.w[i];
		bool durable = false, chosen = false;
		uint64_t a = 0, b = w->len;

		if (w->sub >= k)
			continue;
		if (w->done >= 0 && w->done < k) {
			durable = w->fua;
			for (int f = 0; f < lg.nf && !durable; f++)
				durable = lg.f[f].sub > w->done && lg.f[f].done >= 0 &&
					  lg.f[f].done < k;
		}
		for (int j = 0; j < nv && !durable; j++)
			if (vol[j] == i)
				chosen = (mask >> j) & 1;
		if (i == tw && !durable) {
			uint64_t mid = w->len / SEC / 2 * SEC;

			chosen = true;
			if (half)
				a = mid;
			else
				b = mid;
		}
		if (durable || chosen)
			memcpy(img + w->off + a, w->data + a, b - a);
	}
}

/* Every crash point of the logged workload, with the volatile subsets. */
static void
crash_states(const char *name)
{
	char what[160];

	for (int k = 0; k <= lg.ev; k++) {
		int vol[MAXW], nv = 0;

		for (int i = 0; i < lg.nw; i++) {
			const struct wrec *w = &lg.w[i];
			bool durable = false;

			if (w->sub >= k)
				continue;
			if (w->done >= 0 && w->done < k) {
				durable = w->fua;
				for (int f = 0; f < lg.nf && !durable; f++)
					durable = lg.f[f].sub > w->done && lg.f[f].done >= 0 &&
						  lg.f[f].done < k;
			}
			if (!durable)
				vol[nv++] = i;
		}
		if (nv <= 8) {
			for (uint64_t m = 0; m < (1ull << nv); m++) {
				snprintf(what, sizeof(what), "%s k=%d subset %#llx", name, k,
					 (unsigned long long)m);
				build(k, vol, nv, m, -1, 0);
				verify_image(k, what);
			}
		} else {
			uint64_t all = (nv >= 64) ? UINT64_MAX : (1ull << nv) - 1;
			uint64_t masks[2 + 2 * 64];
			int nm = 0;

			masks[nm++] = 0;
			masks[nm++] = all;
			for (int j = 0; j < nv && j < 64; j++) {
				masks[nm++] = 1ull << j;
				masks[nm++] = all & ~(1ull << j);
			}
			for (int m = 0; m < nm; m++) {
				snprintf(what, sizeof(what), "%s k=%d mask %#llx", name, k,
					 (unsigned long long)masks[m]);
				build(k, vol, nv, masks[m], -1, 0);
				verify_image(k, what);
			}
		}
		/* Torn halves of each volatile write longer than a sector. */
		for (int j = 0; j < nv; j++) {
			if (lg.w[vol[j]].len < 2 * SEC)
				continue;
			for (int half = 0; half < 2; half++) {
				snprintf(what, sizeof(what), "%s k=%d torn write %d half %d", name, k,
					 vol[j], half);
				build(k, vol, nv, 0, vol[j], half);
				verify_image(k, what);
			}
		}
	}
}

static void
setup(void)
{
	make_base();
}

static void
teardown(void)
{
	fprintf(stderr, "crash simulator: %llu states checked\n", (unsigned long long)states);
	for (int i = 0; i < lg.nw; i++)
		free(lg.w[i].data);
	memset(&lg, 0, sizeof(lg));
	unlink(path);
	free(path);
	free(base);
	free(img);
}

#define W(v, s, n, f) { OP_WRITE, v, s, n, f }
#define FL { OP_FLUSH, 0, 0, 0, false }
#define TR(v, s, n, f) { OP_TRIM, v, s, n, f }
#define ZE(v, s, n, f) { OP_ZERO, v, s, n, f }

/* dm-thin's bug: a FUA write fully over a freshly allocated chunk, acked before its mapping. */
Test(pool_crash, fua_overwrite_of_fresh_chunk, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 0, 8, true), W(0, 8, 1, false) };

	run_workload(s, 3);
	crash_states("fua-overwrite-fresh");
}

/* Data written, crash before the commit: the chunk's previous contents never show. */
Test(pool_crash, data_before_commit_never_old_contents, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), TR(0, 0, 8, false), FL,
					 W(1, 2, 3, false), W(1, 9, 2, false), FL };

	run_workload(s, 6);
	crash_states("data-before-commit");
}

/* A chunk freed and reallocated in one transaction window never shows old data. */
Test(pool_crash, freed_and_reallocated_in_one_window, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL,
					 TR(0, 0, 16, false), W(1, 0, 8, false), W(1, 8, 4, false),
					 W(1, 16, 8, false), W(1, 24, 2, true), FL };

	run_workload(s, 9);
	crash_states("free-realloc");
}

Test(pool_crash, partial_straddling_fua_zero, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 3, 7, false), W(1, 6, 4, true), ZE(0, 4, 2, false),
					 W(0, 7, 3, true), FL, ZE(1, 0, 8, true), W(1, 1, 1, false),
					 TR(0, 0, 8, true), W(0, 0, 1, false) };

	run_workload(s, 9);
	crash_states("mixed");
}

/* Short random sequences, seeded. */
Test(pool_crash, random_short_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned int seed = 1; seed <= 40; seed++) {
		struct step s[8];
		char name[32];

		srandom(seed);
		for (int i = 0; i < 8; i++) {
			int op = (int)(random() % 8);
			uint32_t sec = (uint32_t)(random() % VSECS);
			uint32_t n = 1 + (uint32_t)(random() % 12);

			if (sec + n > VSECS)
				n = VSECS - sec;
			s[i] = (struct step){ op < 5 ? OP_WRITE : op == 5 ? OP_FLUSH :
					      op == 6 ? OP_TRIM : OP_ZERO,
					      (int)(random() % 2), sec, n, random() % 3 == 0 };
		}
		run_workload(s, 8);
		snprintf(name, sizeof(name), "random seed %u", seed);
		crash_states(name);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("crash simulator: %llu states of %llu workloads in %.1f s",
		    (unsigned long long)states, (unsigned long long)workloads,
		    (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	fprintf(stderr, "crash simulator: %llu states of %llu workloads in %.1f s\n",
		(unsigned long long)states, (unsigned long long)workloads,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}
