/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator (POOL.md "Crash simulation").
 *
 * A recording engine sits under the dio engine and wraps the engine under
 * test; the pool's metadata I/O goes through recording hooks. Both log
 * every device write (with its bytes and FUA), and every flush, with
 * submit and completion in one event order, beside the client requests'
 * submissions and replies. The recording engine holds completions and
 * hands them to libdio one per reap: in submission order, or (a workload's
 * order seed) in a random order, so writes and FLUSHes of one batch are in
 * flight together and complete out of order. Device model, a volatile
 * write cache: at crash point k a write is durable if it completed with
 * FUA, or completed before a flush was submitted that completed, all
 * before k; any other write submitted before k may be absent, present or
 * torn (sector granularity). A write that failed is one that never
 * completed.
 *
 * For each crash point: none / all / each alone / all but one of the
 * volatile writes (every subset when there are at most 8; random ones
 * beyond in the long mode), and torn variants. Each image is base +
 * overlay in memory; the free data chunks of the base hold garbage, as a
 * used device does. The pool is opened on the image read-only (recovery
 * must write nothing before it is done, R7), checked (no problems, R4),
 * and read through the volumes' map_begin against the oracle: what was
 * acknowledged with FUA, or before an acknowledged FLUSH, reads back (or a
 * later write's bytes); no sector ever holds bytes not written to that
 * volume at that offset; volume operations are all-or-nothing and present
 * once replied. Every sector payload names its volume, offset and
 * sequence, with a crc.
 *
 * Crashes during recovery (R7): recovery (open, close) runs on a crash
 * image with its writes logged, is crashed at each of them with the same
 * subsets, and must recover to what the first recovery read.
 *
 * Fail from the Nth: every device op from the Nth on fails with EIO, for
 * pool create, volume create/delete/resize and a commit; N grows until the
 * operation succeeds, and each failed run's crash states are checked.
 *
 * The program also runs standalone, outside Criterion:
 *   test-pool-crash --states N [--seed S] [--save DIR]   random workloads
 *   test-pool-crash --replay FILE|DIR                    saved cases
 * With $DIO_CRASH_TRACE set, each workload's device log and requests go
 * to stderr. The random workloads run twice each, and must log the same
 * device ops, data and completion order both times (run_twice).
 *
 * Snapshots, clones and deletes of shared volumes are volume operations
 * of the workloads; the oracle's rules for them are with struct vstate.
 *
 * Threaded workloads (run_threaded): writers and volume operations in
 * threads of their own, with the pool's committer and reclaim thread; the
 * log is the order the threads made. Their failing states are saved as
 * traces, case files that hold the log itself (write_trace) and replay
 * with --replay alone, single-threaded.
 *
 * Every failing state is saved to DIR (--save or $DIO_CRASH_SAVE; under
 * Criterion $DIO_TEST_DIR/pool-crash-failures when neither is given) as a
 * case file: the workload, its completion order seed, the crash point, the
 * chosen volatile writes, the torn write and the recovery crash. It is
 * also reported on stderr as it is found, with the mismatch spelled out
 * (volume, offset, what it reads, what it could have read), and the first
 * of a workload as a whole case file between two marker lines: a CI log
 * alone is enough to replay it. The cases in tests/unit/pool-crash-cases/
 * are replayed by the Criterion test saved_cases.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
#define NCHUNKS 32
#define NSLOT 5		/* volumes v0..v4: v2 made empty; v3, v4 snapshots and clones */
#define VOLSZ (4 * CHUNK)
#define VSECS (VOLSZ / SEC)
#define MAXW 2048
#define MAXR 128
#define MAXSAVE 20	/* failing states saved per workload */
#define WIDE (TP_LEAF + 2)	/* chunks of a wide volume: its map has two leaves */

/* Stop the program: the simulator itself cannot go on (not a pool finding). */
#define need(c, ...)                                                                           \
	do {                                                                                   \
		if (!(c)) {                                                                    \
			fprintf(stderr, "test-pool-crash:%d: ", __LINE__);                     \
			fprintf(stderr, __VA_ARGS__);                                          \
			fputc('\n', stderr);                                                   \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* ---- device logs ---- */

struct wrec {			/* one device write */
	uint64_t off, len;
	uint8_t *data;
	bool fua;
	int sub, done;		/* events; done -1 if it never completed */
};

struct frec {			/* one device flush */
	int sub, done;
};

struct dlog {
	int ev, nw, nf;
	struct wrec w[MAXW];
	struct frec f[MAXW];
};

static struct dlog dl;		/* the workload's device */
static struct dlog rl;		/* a recovery's device */

/*
 * One event order for all threads: device ops, their completions and the
 * requests' submissions and replies take their numbers under evlock, so a
 * threaded workload's log is one order the crash points walk, whatever
 * thread (writer, committer, reclaim, volume operations) made the event.
 */
static pthread_mutex_t evlock = PTHREAD_MUTEX_INITIALIZER;
static bool log_open(const struct dlog *L);

static void
dlog_reset(struct dlog *L)
{
	for (int i = 0; i < L->nw; i++)
		free(L->w[i].data);
	L->ev = L->nw = L->nf = 0;
}

/* Log a write into L: its index, or -1 once the workload's log is closed. */
static int
log_write(struct dlog *L, uint64_t off, uint64_t len, const void *buf, bool fua)
{
	struct wrec *w;

	pthread_mutex_lock(&evlock);
	if (!log_open(L)) {
		pthread_mutex_unlock(&evlock);
		return -1;
	}
	need(L->nw < MAXW, "device log full");
	w = &L->w[L->nw];
	w->off = off;
	w->len = len;
	w->data = malloc(len);
	memcpy(w->data, buf, len);
	w->fua = fua;
	w->sub = L->ev++;
	L->nw++;
	w->done = -1;
	pthread_mutex_unlock(&evlock);
	return (int)(w - L->w);
}

/* Log a flush into L: its index, or -1 once the workload's log is closed. */
static int
log_flush(struct dlog *L)
{
	int f = -1;

	pthread_mutex_lock(&evlock);
	if (!log_open(L))
		goto out;
	need(L->nf < MAXW, "device log full");
	L->f[L->nf] = (struct frec){ .sub = L->ev++, .done = -1 };
	f = L->nf++;
out:
	pthread_mutex_unlock(&evlock);
	return f;
}

/* *ev = L's next event; none once the workload's log is closed (never completed). */
static void
log_event(struct dlog *L, int *ev)
{
	pthread_mutex_lock(&evlock);
	if (log_open(L))
		*ev = L->ev++;
	pthread_mutex_unlock(&evlock);
}

/* Whether write i of L is durable at crash point k. */
static bool
durable(const struct dlog *L, int i, int k)
{
	const struct wrec *w = &L->w[i];

	if (w->done < 0 || w->done >= k)
		return false;
	if (w->fua)
		return true;
	for (int f = 0; f < L->nf; f++)
		if (L->f[f].sub > w->done && L->f[f].done >= 0 && L->f[f].done < k)
			return true;
	return false;
}

/* The writes of L submitted before k that are not durable: vol[], their number. */
static int
volatile_set(const struct dlog *L, int k, int *vol)
{
	int nv = 0;

	for (int i = 0; i < L->nw; i++)
		if (L->w[i].sub < k && !durable(L, i, k))
			vol[nv++] = i;
	return nv;
}

/*
 * A crash state: point k, the volatile writes present (sel), one torn
 * write tw keeping sectors [ta, tb) of it; then, when rk >= 0, a crash of
 * the recovery run on that image at rk with rsel present and rtw torn.
 */
struct cstate {
	int k, nsel, tw;
	uint32_t ta, tb;
	int rk, nrsel, rtw;
	uint32_t rta, rtb;
	int sel[MAXW], rsel[MAXW];
};

/* dst = src + the writes of L durable at k, those in sel, and the torn one. */
static void
build(uint8_t *dst, const uint8_t *src, uint64_t size, const struct dlog *L, int k,
      const int *sel, int nsel, int tw, uint32_t ta, uint32_t tb)
{
	memcpy(dst, src, size);
	for (int i = 0; i < L->nw; i++) {
		const struct wrec *w = &L->w[i];
		bool chosen = durable(L, i, k);
		uint64_t a = 0, b = w->len;

		if (w->sub >= k)
			continue;
		for (int j = 0; j < nsel && !chosen; j++)
			chosen = sel[j] == i;
		if (!chosen && i == tw) {
			chosen = true;
			a = (uint64_t)ta * SEC;
			b = (uint64_t)tb * SEC;
		}
		if (chosen && w->off + b <= size)
			memcpy(dst + w->off + a, w->data + a, b - a);
	}
}

/* ---- client requests ---- */

/*
 * Volume operations from OP_VCREATE on. C, D, R make, delete and resize
 * the empty v2; S (snapshot) and K (clone) make volume nsec of volume vol,
 * X deletes volume vol, shared or not, V reverts volume vol to its
 * snapshot nsec. S, K, X and V may be in flight with the data requests of
 * their batch (on other volumes).
 */
enum { OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO, OP_VCREATE, OP_VDELETE, OP_VRESIZE, OP_SNAP,
       OP_CLONE, OP_DEL, OP_REVERT, OP_NR };
static const char opchar[OP_NR] = { 'W', 'F', 'T', 'Z', 'C', 'D', 'R', 'S', 'K', 'X', 'V' };

struct step {
	int op, vol;
	uint32_t sec, nsec;	/* data: sectors; VCREATE/VRESIZE: nsec = size in chunks;
				 * SNAP/CLONE: nsec = the new volume; REVERT: the snapshot */
	/*
	 * SNAP/CLONE: the origin's writes in flight are not waited for
	 * before it; they complete during its first device flush (under
	 * way, the pool lock dropped), so before its point: the operation
	 * counts as submitted after them.
	 */
	bool fua;
	bool par;		/* in flight together with the step before */
};

static bool
is_derive(int op)
{
	return op == OP_SNAP || op == OP_CLONE;
}

/* Operations whose nsec is a volume. */
static bool
names_two(int op)
{
	return is_derive(op) || op == OP_REVERT;
}

struct rreq {			/* one client request */
	struct step s;
	uint64_t seq;		/* WRITE payload sequence */
	int sub, done, ret;
	int on;			/* the volume it was submitted to (a FLUSH: any) */
	struct dio_req req;
	uint8_t *buf;
};

static struct {
	struct rreq r[MAXR];
	int nr;
} rq;

/* ---- the recording engine ---- */

struct rec_io {
	struct dio_io shadow;
	struct dio_io *orig;
	int w, f;		/* log index or -1 */
	int64_t res;
	uint64_t qseq;		/* order of queueing */
};

struct rec_engine {
	struct dio_engine e;
	struct dio_engine *inner;
	struct rec_io *held[256];	/* completed, not yet handed to libdio */
	int nheld;
	uint64_t order;		/* completion order rng; 0: submission order */
	uint64_t qseq;
};

static struct {
	bool on;		/* log device ops into dl */
	uint64_t fail_from;	/* fail every device op from this one on (0: never) */
	uint64_t nops;		/* device ops counted since fail_from was set */
} rec;

static bool
log_open(const struct dlog *L)
{
	return L != &dl || rec.on;
}

static bool
rec_fails(void)
{
	return rec.fail_from && ++rec.nops >= rec.fail_from;
}

static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Hold r, in queueing order: the inner engine's threads complete in any
 * order, and a replay must hand completions up in the same one.
 */
static void
rec_hold(struct rec_engine *re, struct rec_io *r)
{
	int i = re->nheld;

	need(re->nheld < 256, "too many completions held");
	while (i > 0 && re->held[i - 1]->qseq > r->qseq) {
		re->held[i] = re->held[i - 1];
		i--;
	}
	re->held[i] = r;
	re->nheld++;
}

static void
rec_inner_done(struct dio_io *io, int64_t res)
{
	struct rec_io *r = io->priv;
	struct rec_engine *re = (struct rec_engine *)r->orig->next;

	r->res = res;
	rec_hold(re, r);
}

/* Hand one held completion to libdio: the first, or a random one. */
static void
rec_deliver(struct rec_engine *re)
{
	int i = re->order ? (int)(rng_next(&re->order) % (uint64_t)re->nheld) : 0;
	struct rec_io *r = re->held[i];
	struct dio_io *orig = r->orig;
	int64_t res = r->res;

	memmove(re->held + i, re->held + i + 1, (size_t)(re->nheld - i - 1) * sizeof(*re->held));
	re->nheld--;
	if (res >= 0 && r->w >= 0)
		log_event(&dl, &dl.w[r->w].done);
	if (res >= 0 && r->f >= 0)
		log_event(&dl, &dl.f[r->f].done);
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
	bool fail = rec_fails();
	int ret = 0;

	need(r, "out of memory");
	r->orig = io;
	r->qseq = re->qseq++;
	r->w = r->f = -1;
	r->shadow = *io;
	r->shadow.end_io = rec_inner_done;
	r->shadow.priv = r;
	r->shadow.next = NULL;
	if (io->op == DIO_IO_WRITE)
		r->w = log_write(&dl, io->offset, io->len, io->buf, io->rw_flags & RWF_DSYNC);
	else if (io->op == DIO_IO_FSYNC)
		r->f = log_flush(&dl);
	io->next = (struct dio_io *)re;	/* the engine's field: ours until end_io */
	if (fail) {
		r->res = -EIO;
		rec_hold(re, r);
	} else {
		ret = re->inner->ops->queue(re->inner, &r->shadow);
		if (ret < 0) {
			free(r);
			return ret;
		}
	}
	e->inflight++;
	return 0;
}

static int
rec_submit(struct dio_engine *e)
{
	struct rec_engine *re = (struct rec_engine *)e;

	return re->inner->ops->submit(re->inner);
}

/* Everything on the device completes; then one completion goes up. */
static int
rec_reap(struct dio_engine *e, bool wait)
{
	struct rec_engine *re = (struct rec_engine *)e;
	int ret;

	ret = re->inner->ops->submit(re->inner);
	if (ret < 0)
		return ret;
	ret = re->inner->ops->reap(re->inner, false);
	while (ret >= 0 && re->inner->inflight > 0)
		ret = re->inner->ops->reap(re->inner, true);
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -ETIME)
		return ret;
	if (!re->nheld)
		return 0;
	rec_deliver(re);
	return 1;
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

/* A ctx on a recording engine; order: its completion order seed (0: submission order). */
static struct dio_ctx *
rec_ctx(uint64_t order)
{
	struct dio_engine_opts eo = { .kind = test_engine_kind(), .depth = 64, .threads = 4 };
	struct rec_engine *re = calloc(1, sizeof(*re));
	struct dio_ctx *ctx;
	int ret;

	need(re, "out of memory");
	ret = dio_engine_create(&eo, &re->inner);
	need(ret == 0, "engine: %s", strerror(-ret));
	re->e.ops = &rec_ops;
	re->order = order;
	re->e.depth = re->inner->depth;
	ret = dio_ctx_create_engine(&re->e, NULL, &ctx);
	need(ret == 0, "ctx: %s", strerror(-ret));
	return ctx;
}

/* ---- metadata hooks: recording (workload) and in memory (images) ---- */

static void drain(struct dio_ctx *ctx, int v, bool flushes);

/* A snapshot or clone whose origin's writes complete during its first flush (step.fua). */
static struct {
	bool on;
	struct dio_ctx *ctx;
	int vol, r;		/* the origin, the operation's request */
} late;

static int
rec_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	if (rec_fails())
		return -EIO;
	return tp_sys_io.pread(NULL, fd, buf, len, off);
}

static int
rec_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	int w = log_write(&dl, off, len, buf, fua);
	int ret;

	if (rec_fails())
		return -EIO;	/* it never completed: it may be on the device or not */
	ret = tp_sys_io.pwrite(NULL, fd, buf, len, off, fua);
	if (ret == 0 && w >= 0)
		log_event(&dl, &dl.w[w].done);
	return ret;
}

static int
rec_fsync(void *priv, int fd)
{
	int f = log_flush(&dl);
	int ret;

	if (rec_fails())
		return -EIO;
	if (late.on) {
		/* started before they complete: this flush covers none of them */
		late.on = false;
		drain(late.ctx, late.vol, false);
		rq.r[late.r].sub = dl.ev++;
	}
	ret = tp_sys_io.flush(NULL, fd);
	if (ret == 0 && f >= 0)
		log_event(&dl, &dl.f[f].done);
	return ret;
}

static const struct dio_tpool_io rec_io_hooks = {
	.pread = rec_pread, .pwrite = rec_pwrite, .flush = rec_fsync,
};

/* A device in memory: read-only (writes counted and refused) or logged into log. */
struct memdev {
	uint8_t *img;
	uint64_t size;
	struct dlog *log;
	unsigned int writes;
};

static int
md_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	struct memdev *m = priv;
	uint64_t n = off < m->size ? m->size - off : 0;

	if (n > len)
		n = len;
	memcpy(buf, m->img + off, n);
	memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}

static int
md_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	struct memdev *m = priv;
	int w;

	m->writes++;
	if (!m->log)
		return -EROFS;
	if (off + len > m->size)
		return -EIO;
	w = log_write(m->log, off, len, buf, fua);
	memcpy(m->img + off, buf, len);
	log_event(m->log, &m->log->w[w].done);
	return 0;
}

static int
md_flush(void *priv, int fd)
{
	struct memdev *m = priv;
	int f;

	m->writes++;
	if (!m->log)
		return -EROFS;
	f = log_flush(m->log);
	log_event(m->log, &m->log->f[f].done);
	return 0;
}

/*
 * Where sector sec of a volume of sz bytes is: in a wide volume (threaded
 * workloads) the second half is in the second map leaf, so that deleting
 * it goes to the reclaim thread (more than one leaf).
 */
static uint64_t
voff(uint64_t sz, uint32_t sec)
{
	if (sz <= VOLSZ || sec < VSECS / 2)
		return (uint64_t)sec * SEC;
	return (uint64_t)TP_LEAF * CHUNK + (uint64_t)(sec - VSECS / 2) * SEC;
}

/* The sectors the oracle follows in a volume of sz bytes. */
static uint32_t
vsecs(uint64_t sz)
{
	return sz > VOLSZ ? VSECS : (uint32_t)(sz / SEC);
}

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

/* ---- the pool images ---- */

static char *path;
static uint8_t *base, *img, *rimg, *rbase;
static uint64_t img_size;
static uint64_t data_start;	/* the pool's first data chunk: metadata below */
static uint64_t states, workloads;
static char errbuf[512];
static char failmsg[600];

static bool
failf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(failmsg, sizeof(failmsg), fmt, ap);
	va_end(ap);
	return false;
}

static void
file_put(const uint8_t *b)
{
	int fd = open(path, O_WRONLY);

	need(fd >= 0 && pwrite(fd, b, img_size, 0) == (ssize_t)img_size, "%s: %s", path,
	     strerror(errno));
	close(fd);
}

static void
file_get(uint8_t *b)
{
	int fd = open(path, O_RDONLY);

	need(fd >= 0 && pread(fd, b, img_size, 0) == (ssize_t)img_size, "%s: %s", path,
	     strerror(errno));
	close(fd);
}

/* Garbage over [a, b) of buf: what a used device holds in its free space. */
static void
garbage(uint8_t *buf, uint64_t a, uint64_t b)
{
	for (uint64_t o = a; o < b; o += SEC) {
		memset(buf + o, 0xa5 ^ (int)(o / SEC), SEC);
		memcpy(buf + o, "GARBAGE", 7);
	}
}

/* A fresh tiny pool with volumes v0 and v1 on garbage; its bytes become base. */
static void
make_base(void)
{
	struct dio_tpool_opts o = { .no_direct = true, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_create_opts co = { .chunk_size = CHUNK, .journal_blocks = 8,
					    .max_volumes = 8 };
	struct tp_super sb;
	struct dio_tpool *p;
	uint64_t size = 16 * CHUNK;
	int fd, ret;

	/* The smallest pool with NCHUNKS data chunks. */
	while (tp_geometry(&sb, size, CHUNK, 8, 8, 512) < 0 || sb.nr_chunks < NCHUNKS)
		size += CHUNK;
	co.size = size;
	img_size = size;
	need(asprintf(&path, "%s/crash-XXXXXX", test_dir()) > 0, "asprintf");
	fd = mkstemp(path);
	need(fd >= 0, "mkstemp %s: %s", path, strerror(errno));
	base = malloc(size);
	img = malloc(size);
	rimg = malloc(size);
	rbase = malloc(size);
	need(base && img && rimg && rbase, "out of memory");
	garbage(base, 0, size);
	need(pwrite(fd, base, size, 0) == (ssize_t)size, "write %s", path);
	close(fd);
	ret = dio_tpool_create(path, &co, &o);
	need(ret == 0, "create: %s", errbuf);
	ret = dio_tpool_open(path, &o, &p);
	need(ret == 0, "open: %s", errbuf);
	need(dio_tpool_volume_create(p, "v0", VOLSZ) == 0, "volume v0");
	need(dio_tpool_volume_create(p, "v1", VOLSZ) == 0, "volume v1");
	data_start = p->sb.data_start;
	dio_tpool_close(p);
	file_get(base);
}

static void
free_base(void)
{
	dlog_reset(&dl);
	dlog_reset(&rl);
	unlink(path);
	free(path);
	free(base);
	free(img);
	free(rimg);
	free(rbase);
	path = NULL;
}

/* ---- workloads ---- */

struct workload {
	uint64_t seed;		/* what generated it (0: written by hand) */
	uint64_t order;		/* completion order seed; 0: submission order */
	int fail_step;		/* device ops fail from the fail_from-th after this step starts */
	uint64_t fail_from;
	int n;
	struct step s[MAXR];
	bool trace;		/* threaded: the log in dl and rq is the case (write_trace) */
};

static const struct workload *cur;	/* the one whose log is in dl and rq */

static void
req_done(struct dio_req *req, int ret)
{
	struct rreq *r = req->priv;

	r->ret = ret;
	log_event(&dl, &r->done);
}

static const char *
vname(int v)
{
	static const char *n[NSLOT] = { "v0", "v1", "v2", "v3", "v4" };

	return n[v];
}

/* Requests still in flight on volume v (-1: on any), FLUSHes too when flushes. */
static int
in_flight(int v, bool flushes)
{
	int n = 0;

	for (int r = 0; r < rq.nr; r++)
		n += rq.r[r].done < 0 && (v < 0 || (rq.r[r].on == v &&
						    (flushes || rq.r[r].s.op != OP_FLUSH)));
	return n;
}

/*
 * Reap until no request is in flight on volume v (-1: none at all): its
 * writes for a snapshot, every request before it is closed (flushes).
 */
static void
drain(struct dio_ctx *ctx, int v, bool flushes)
{
	while (in_flight(v, flushes)) {
		int n = dio_ctx_reap(ctx, true);

		need(n >= 0, "reap: %s", strerror(-n));
	}
}

/* A volume operation of step s, synchronous: its return value. */
static int
vol_op(struct dio_tpool *p, struct dio_volume **vols, const struct step *s)
{
	uint64_t sz = (uint64_t)s->nsec * CHUNK;

	switch (s->op) {
	case OP_VCREATE:
		return dio_tpool_volume_create(p, "v2", sz);
	case OP_VDELETE:
		return dio_tpool_volume_delete(p, "v2");
	case OP_VRESIZE:
		return dio_tpool_volume_resize(p, "v2", sz);
	case OP_SNAP:
	case OP_CLONE:
		need(s->nsec < NSLOT, "no volume %u", s->nsec);
		return s->op == OP_SNAP ? dio_tpool_volume_snapshot(p, vname(s->vol), vname((int)s->nsec))
					: dio_tpool_volume_clone(p, vname(s->vol), vname((int)s->nsec));
	default:	/* OP_DEL, OP_REVERT: a volume open here is closed first (-EBUSY) */
		if (vols[s->vol])
			dio_volume_put(vols[s->vol]);
		vols[s->vol] = NULL;
		if (s->op == OP_REVERT)
			return dio_tpool_volume_revert(p, vname(s->vol), vname((int)s->nsec));
		return dio_tpool_volume_delete(p, vname(s->vol));
	}
}

/*
 * The open volume a request goes to: v, opened now if need be; for a
 * FLUSH (v -1) any volume, v0 unless it was deleted. Its index or -errno.
 */
static int
req_volume(struct dio_tpool *p, struct dio_volume **vols, int v)
{
	for (int i = 0; v < 0 && i < NSLOT; i++)
		if (vols[i])
			return i;
	for (int i = v < 0 ? 0 : v; i < (v < 0 ? NSLOT : v + 1); i++)
		if (vols[i] || dio_tpool_volume_open(p, vname(i), &vols[i]) == 0)
			return i;
	return -ENOENT;
}

/* The workload's device log and requests, in event order, as comments. */
static void
print_log(FILE *f)
{
	fprintf(f, "# device log (event: write off+len fua submit..done / flush)\n");
	for (int e = 0; e < dl.ev; e++) {
		for (int i = 0; i < dl.nw; i++)
			if (dl.w[i].sub == e)
				fprintf(f, "# %d: write %d %llu+%llu%s done %d crc %08x\n", e, i,
					(unsigned long long)dl.w[i].off,
					(unsigned long long)dl.w[i].len, dl.w[i].fua ? " fua" : "",
					dl.w[i].done,
					tp_crc32c(0, dl.w[i].data, (size_t)dl.w[i].len));
		for (int i = 0; i < dl.nf; i++)
			if (dl.f[i].sub == e)
				fprintf(f, "# %d: flush done %d\n", e, dl.f[i].done);
		for (int i = 0; i < rq.nr; i++)
			if (rq.r[i].sub == e)
				fprintf(f, "# %d: request %d %c v%d %u+%u%s done %d ret %d\n", e, i,
					opchar[rq.r[i].s.op], rq.r[i].s.vol, rq.r[i].s.sec,
					rq.r[i].s.nsec, rq.r[i].s.fua ? " fua" : "", rq.r[i].done,
					rq.r[i].ret);
	}
}

static void compute_frozen(void);

/* Run the workload on a pool opened from base, every device op logged. */
/* The pool opened afresh from base, its device ops logged (logs and requests emptied). */
static struct dio_tpool *
open_logged(unsigned int commit_ms)
{
	struct dio_tpool_opts o = { .no_direct = true, .io = &rec_io_hooks,
				    .commit_ms = commit_ms };
	struct dio_tpool *p;
	int ret;

	file_put(base);
	dlog_reset(&dl);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	memset(&rq, 0, sizeof(rq));
	memset(&rec, 0, sizeof(rec));
	ret = dio_tpool_open(path, &o, &p);
	need(ret == 0, "open: %s", strerror(-ret));
	return p;
}

static void
run_workload(const struct workload *wl)
{
	struct dio_volume *vols[NSLOT] = { NULL };
	struct dio_tpool *p = open_logged(0);
	struct dio_ctx *ctx = rec_ctx(wl->order);
	int ret;

	need(dio_tpool_volume_open(p, "v0", &vols[0]) == 0, "v0");
	need(dio_tpool_volume_open(p, "v1", &vols[1]) == 0, "v1");
	rec.on = true;
	for (int i = 0; i < wl->n;) {
		int j = i;

		/*
		 * A batch: step i and the steps after it marked par, in flight
		 * together; C, D and R end it, S, K and X run within it.
		 */
		do {
			const struct step *s = &wl->s[j];
			struct rreq *r = &rq.r[rq.nr++];
			static const uint8_t reqop[] = { DIO_REQ_WRITE, DIO_REQ_FLUSH, DIO_REQ_TRIM,
							 DIO_REQ_ZERO };

			*r = (struct rreq){ .s = *s, .seq = (uint64_t)j + 1 };
			if (j == wl->fail_step && wl->fail_from) {
				rec.fail_from = wl->fail_from;
				rec.nops = 0;
			}
			if (s->op >= OP_VCREATE) {
				/*
				 * Writes in flight on the volume would make a snapshot
				 * wait (2 s), then refuse, and a delete refuse: they
				 * complete first, before the operation is submitted.
				 */
				if (is_derive(s->op) && s->fua)
					late = (typeof(late)){ true, ctx, s->vol, rq.nr - 1 };
				else if (s->op >= OP_SNAP)
					drain(ctx, s->vol, s->op == OP_DEL || s->op == OP_REVERT);
				r->sub = dl.ev++;
				r->ret = vol_op(p, vols, s);
				late.on = false;
				r->done = dl.ev++;
				j++;
				if (s->op < OP_SNAP)
					break;
				continue;
			}
			r->sub = dl.ev++;
			r->buf = test_alloc((size_t)s->nsec * SEC);
			for (uint32_t k = 0; k < s->nsec; k++)
				payload(r->buf + k * SEC, s->vol, s->sec + k, r->seq);
			r->req = (struct dio_req){ .op = reqop[s->op],
						   .flags = s->fua ? DIO_REQ_FUA : 0,
						   .pos = (uint64_t)s->sec * SEC,
						   .len = (uint64_t)s->nsec * SEC,
						   .buf = s->op == OP_WRITE ? r->buf : NULL,
						   .done = req_done, .priv = r };
			if (s->op == OP_FLUSH)
				r->req.pos = r->req.len = 0;
			r->done = -1;
			ret = req_volume(p, vols, s->op == OP_FLUSH ? -1 : s->vol);
			if (ret >= 0) {
				r->on = ret;
				ret = dio_submit(ctx, vols[ret], &r->req);
			}
			if (ret < 0) {
				r->ret = ret;
				r->done = dl.ev++;
			}
			j++;
		} while (j < wl->n && wl->s[j].par && (wl->s[j].op < OP_VCREATE || wl->s[j].op >= OP_SNAP));
		drain(ctx, -1, true);
		i = j;
	}
	rec.on = false;
	rec.fail_from = 0;
	p->readonly = true;	/* a crash: nothing more is written */
	for (int v = 0; v < NSLOT; v++)
		if (vols[v])
			dio_volume_put(vols[v]);
	dio_ctx_destroy(ctx);
	dio_tpool_close(p);
	cur = wl;
	workloads++;
	compute_frozen();
	if (getenv("DIO_CRASH_TRACE"))
		print_log(stderr);
}

/*
 * The simulator is deterministic: a workload run again logs the same
 * device ops, with the same data, completing in the same order, and its
 * requests end the same. What a second run must match (metadata bytes
 * aside: they hold the random uuids of new volumes).
 */
struct runsig {
	int ev, nw, nf, nr;
	struct {
		uint64_t off, len;
		int sub, done;
		bool fua;
		uint32_t crc;	/* data_hash */
	} w[MAXW];
	struct frec f[MAXW];
	struct {
		int sub, done, ret;
	} r[MAXR];
};

/*
 * What a write carried, for run_twice. Not a CRC: a payload sector ends
 * with its own crc32c, and a CRC is affine in its input, so the CRC of a
 * run of such sectors comes out the same whatever their payloads say.
 * FNV-1a, folded to 32 bits.
 */
static uint32_t
data_hash(const uint8_t *d, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static void
take_sig(struct runsig *g)
{
	g->ev = dl.ev;
	g->nw = dl.nw;
	g->nf = dl.nf;
	g->nr = rq.nr;
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];

		g->w[i].off = w->off;
		g->w[i].len = w->len;
		g->w[i].sub = w->sub;
		g->w[i].done = w->done;
		g->w[i].fua = w->fua;
		g->w[i].crc = w->off >= data_start ? data_hash(w->data, (size_t)w->len) : 0;
	}
	memcpy(g->f, dl.f, (size_t)dl.nf * sizeof(*g->f));
	for (int i = 0; i < rq.nr; i++) {
		g->r[i].sub = rq.r[i].sub;
		g->r[i].done = rq.r[i].done;
		g->r[i].ret = rq.r[i].ret;
	}
}

/* Where run a and run b of one workload differ, into failmsg; false if they do not. */
static bool
sig_differs(const struct runsig *a, const struct runsig *b)
{
	if (a->nw != b->nw || a->nf != b->nf || a->nr != b->nr || a->ev != b->ev)
		return !failf("%d writes, %d flushes, %d requests, %d events; then %d, %d, %d, %d",
			      a->nw, a->nf, a->nr, a->ev, b->nw, b->nf, b->nr, b->ev);
	for (int i = 0; i < a->nw; i++)
		if (a->w[i].off != b->w[i].off || a->w[i].len != b->w[i].len ||
		    a->w[i].sub != b->w[i].sub || a->w[i].done != b->w[i].done ||
		    a->w[i].fua != b->w[i].fua || a->w[i].crc != b->w[i].crc)
			return !failf("write %d: %llu+%llu%s events %d..%d crc %08x; then %llu+%llu%s "
				      "events %d..%d crc %08x", i, (unsigned long long)a->w[i].off,
				      (unsigned long long)a->w[i].len, a->w[i].fua ? " fua" : "",
				      a->w[i].sub, a->w[i].done, a->w[i].crc,
				      (unsigned long long)b->w[i].off,
				      (unsigned long long)b->w[i].len, b->w[i].fua ? " fua" : "",
				      b->w[i].sub, b->w[i].done, b->w[i].crc);
	for (int i = 0; i < a->nf; i++)
		if (a->f[i].sub != b->f[i].sub || a->f[i].done != b->f[i].done)
			return !failf("flush %d: events %d..%d; then %d..%d", i, a->f[i].sub,
				      a->f[i].done, b->f[i].sub, b->f[i].done);
	for (int i = 0; i < a->nr; i++)
		if (a->r[i].sub != b->r[i].sub || a->r[i].done != b->r[i].done ||
		    a->r[i].ret != b->r[i].ret)
			return !failf("request %d: events %d..%d ret %d; then %d..%d ret %d", i,
				      a->r[i].sub, a->r[i].done, a->r[i].ret, b->r[i].sub,
				      b->r[i].done, b->r[i].ret);
	return false;
}

/*
 * Run wl twice and compare: a workload whose log changes from run to run
 * makes findings that come and go (a flaky test) and cases that do not
 * replay. True when both runs logged the same; dl and rq hold the second.
 */
static bool
run_twice(const struct workload *wl, const char *name)
{
	static struct runsig a, b;

	run_workload(wl);
	take_sig(&a);
	run_workload(wl);
	workloads--;	/* one workload */
	take_sig(&b);
	if (!sig_differs(&a, &b))
		return true;
	fprintf(stderr, "crash simulator: NOT DETERMINISTIC: %s (seed %llu, order %llu) run "
		"twice differs: %s\n", name, (unsigned long long)wl->seed,
		(unsigned long long)wl->order, failmsg);
	print_log(stderr);
	return false;
}

/* ---- the oracle ---- */

/* What a recovered image holds: which volumes, their sizes and sectors. */
struct vstate {
	bool exists[NSLOT];
	uint64_t size[NSLOT];
	int64_t seq[NSLOT][VSECS];
	char bad[160];		/* what the first sector of seq -1 holds */
};

/*
 * Snapshots and clones. The rules the oracle holds them to:
 * - A replied snapshot or clone of volume O is a FLUSH for O: every
 *   request to O that completed before it was submitted is durable (it
 *   holds them, durably). The harness completes every request in flight
 *   on O before it submits the snapshot (a snapshot waits for them).
 * - Its contents are frozen then: O's contents at that moment, which is
 *   what O reads in the crash image just after the reply with every
 *   volatile write present (nothing of O is in flight: that image holds
 *   O's whole history until then). That image is one of the states
 *   enumerated, where O itself is checked by the ordinary rules, so the
 *   frozen contents are a state O may legally have had. frozen[i] holds
 *   them for the snapshot or clone request i.
 * - A volume made by snapshot or clone request i reads, sector by sector,
 *   its frozen contents or what its own requests after i wrote, by the
 *   ordinary rules with the frozen contents in place of the zeros of a
 *   new volume; a trim may leave zeros or what was before it.
 * - A sector of O that no request touched since a replied snapshot or
 *   clone of O reads exactly that one's frozen contents.
 * - A revert of O to its snapshot S makes O anew with S's frozen contents
 *   (a snapshot never changes): from it on, O's sectors are held to them
 *   as a new clone's. All or nothing: O reads as of one of its
 *   beginnings (its making, or the last revert replied, and each revert
 *   after that one), the same for every sector.
 * - Every volume operation is all-or-nothing and durable once replied:
 *   the volumes present and their sizes are what some prefix of the
 *   volume operations makes, from the last one replied (they commit in
 *   order) to the last one submitted. A refused operation (-ENOENT,
 *   -EEXIST, -ENOSPC, -EBUSY, -EINVAL, -EPERM, -EROFS: before any I/O)
 *   makes nothing.
 * - After every recovery the pool's check finds no problem (leaks are
 *   allowed: R4, a crash may leak), and the references counted here from
 *   the volumes' leaves are never more than the space map's (R4).
 */
#define FROZEN_UNKNOWN INT64_MIN
static int64_t frozen[MAXR][VSECS];

static bool
refused(int ret)
{
	return ret == -ENOENT || ret == -EEXIST || ret == -ENOSPC || ret == -EBUSY ||
	       ret == -EINVAL || ret == -EPERM || ret == -EROFS;
}

/* Whether request r makes volume v (v2 by create, v3, v4 by snapshot or clone). */
static bool
makes(const struct rreq *r, int v)
{
	if (refused(r->ret))
		return false;
	return (r->s.op == OP_VCREATE && v == 2) || (is_derive(r->s.op) && (int)r->s.nsec == v);
}

/* Whether request r is required durable at crash point k (R2). */
static bool
required(const struct rreq *r, int k)
{
	if (r->s.op == OP_FLUSH || r->ret != 0 || r->done < 0 || r->done >= k)
		return false;
	if (r->s.fua || r->s.op >= OP_VCREATE)
		return true;
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *f = &rq.r[i];

		if (f->ret == 0 && f->sub > r->done && f->done >= 0 && f->done < k &&
		    (f->s.op == OP_FLUSH || (is_derive(f->s.op) && f->s.vol == r->s.vol)))
			return true;
	}
	return false;
}

static bool
covers(const struct rreq *r, int vol, uint32_t sec)
{
	return r->s.op != OP_FLUSH && r->s.op < OP_VCREATE && r->s.vol == vol &&
	       sec >= r->s.sec && sec < r->s.sec + r->s.nsec;
}

/* Whether request r reverts volume v. */
static bool
resets(const struct rreq *r, int v)
{
	return r->s.op == OP_REVERT && r->s.vol == v && !refused(r->ret);
}

/*
 * What sector sec of the volume held when request born made it or
 * reverted it (-1: v0, v1 from the start): zeros, a snapshot's or clone's
 * frozen contents, or those of the snapshot a revert took.
 */
static int64_t
held_when_born(int born, uint32_t sec)
{
	int from = born;

	if (born >= 0 && rq.r[born].s.op == OP_REVERT) {
		from = -1;
		for (int i = 0; i < born; i++)
			if (makes(&rq.r[i], (int)rq.r[born].s.nsec))
				from = i;
	}
	if (from < 0 || !is_derive(rq.r[from].s.op))
		return from < 0 && born >= 0 ? FROZEN_UNKNOWN : 0;
	return frozen[from][sec];
}

/* Add what request who would leave in a sector (seq v, 0 zeros) to the list acc. */
static void
accepted(char *acc, size_t n, int64_t v, int who)
{
	size_t l = strlen(acc);

	char w[24];

	snprintf(w, sizeof(w), who < 0 ? "from the start" : "request %d", who);
	if (v == FROZEN_UNKNOWN)
		snprintf(acc + l, n - l, " unknown (%s)", w);
	else if (v == 0)
		snprintf(acc + l, n - l, " zeros (%s)", w);
	else
		snprintf(acc + l, n - l, " seq %lld (%s)", (long long)v, w);
}

/*
 * Sector (vol, sec) holding seq x (0 zeros) against the history before k,
 * the volume's own from request born on (its making or a revert).
 */
static bool
oracle_sector(const struct vstate *vs, int vol, uint32_t sec, int64_t x, int k, int born)
{
	int req = -1, snap = -1;
	int64_t was = held_when_born(born, sec);	/* what it held then */
	char acc[160] = "";	/* the contents that would have been right */
	bool ok = false;

	if (x < 0)
		return failf("v%d sector %u (byte %u) holds foreign or stale bytes: %s", vol, sec,
			     sec * SEC, vs->bad);
	if (was == FROZEN_UNKNOWN)
		return failf("v%d, made or reverted by request %d: what it took does not read just "
			     "after it", vol, born);
	/* The last request required durable; it, or any request after it, may show. */
	for (int i = born + 1; i < rq.nr; i++)
		if (rq.r[i].sub < k && covers(&rq.r[i], vol, sec) && required(&rq.r[i], k))
			req = i;
	for (int i = born + 1; i < rq.nr && !ok; i++) {
		const struct rreq *r = &rq.r[i];

		if (r->sub >= k || !covers(r, vol, sec))
			continue;
		/*
		 * A trim may leave what was before it; a write still in flight
		 * when the required one was submitted may land after it.
		 */
		if (i >= req || rq.r[req].s.op == OP_TRIM || r->done < 0 ||
		    r->done > rq.r[req].sub) {
			ok = (r->s.op == OP_WRITE ? (int64_t)r->seq : 0) == x;
			accepted(acc, sizeof(acc), r->s.op == OP_WRITE ? (int64_t)r->seq : 0, i);
		}
	}
	if (req < 0 || rq.r[req].s.op == OP_TRIM) {
		ok = ok || x == was || (req >= 0 && x == 0);
		accepted(acc, sizeof(acc), was, born);
		if (req >= 0)
			accepted(acc, sizeof(acc), 0, req);
	}
	if (!ok) {
		char found[40];

		snprintf(found, sizeof(found), x ? "seq %lld" : "zeros", (long long)x);
		return failf("v%d sector %u (byte %u) reads %s; expected one of:%s (required "
			     "request %d, volume made by %d)", vol, sec, sec * SEC, found,
			     acc[0] ? acc : " none", req, born);
	}
	/* Untouched since a replied snapshot or clone of it: exactly what that froze. */
	for (int i = born + 1; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		if (r->sub >= k)
			continue;
		if (is_derive(r->s.op) && r->s.vol == vol && r->ret == 0 && r->done < k)
			snap = i;
		else if (snap >= 0 && covers(r, vol, sec))
			snap = -1;
	}
	if (snap >= 0 && frozen[snap][sec] != FROZEN_UNKNOWN && x != frozen[snap][sec])
		return failf("v%d sector %u (byte %u) reads seq %lld, untouched since request %d "
			     "(a snapshot or clone of it) froze seq %lld", vol, sec, sec * SEC,
			     (long long)x, snap,
			     (long long)frozen[snap][sec]);
	return true;
}

/* The volumes and their sizes after the volume operations up to request last. */
static void
vols_after(int last, bool *ex, uint64_t *sz)
{
	for (int v = 0; v < NSLOT; v++) {
		ex[v] = v < 2;
		sz[v] = v < 2 ? VOLSZ : 0;
	}
	for (int i = 0; i <= last; i++) {
		const struct step *s = &rq.r[i].s;
		int t = (int)s->nsec;

		if (s->op < OP_VCREATE || refused(rq.r[i].ret))
			continue;
		if (s->op == OP_VCREATE && !ex[2]) {
			ex[2] = true;
			sz[2] = (uint64_t)s->nsec * CHUNK;
		} else if (s->op == OP_VDELETE && ex[2]) {
			ex[2] = false;
			sz[2] = 0;
		} else if (s->op == OP_VRESIZE && ex[2]) {
			sz[2] = (uint64_t)s->nsec * CHUNK;
		} else if (is_derive(s->op) && ex[s->vol] && !ex[t]) {
			ex[t] = true;
			sz[t] = sz[s->vol];
		} else if (s->op == OP_DEL && ex[s->vol]) {
			ex[s->vol] = false;
			sz[s->vol] = 0;
		} else if (s->op == OP_REVERT && ex[s->vol] && ex[t]) {
			sz[s->vol] = sz[t];
		}
	}
}

/* Volume operations: all or nothing, present once replied (point 4). */
static bool
oracle_vols(const struct vstate *vs, int k)
{
	char have[NSLOT * 24] = "";
	int req = -1;

	for (int i = 0; i < rq.nr; i++)
		if (rq.r[i].s.op >= OP_VCREATE && rq.r[i].sub < k && required(&rq.r[i], k))
			req = i;
	for (int j = req; j < rq.nr; j++) {
		bool ex[NSLOT], same = true;
		uint64_t sz[NSLOT];

		if (j >= 0 && (rq.r[j].sub >= k || (j > req && rq.r[j].s.op < OP_VCREATE)))
			continue;
		vols_after(j, ex, sz);
		for (int v = 0; v < NSLOT; v++)
			same = same && ex[v] == vs->exists[v] && sz[v] == vs->size[v];
		if (same)
			return true;
	}
	for (int v = 0; v < NSLOT; v++)
		if (vs->exists[v])
			snprintf(have + strlen(have), sizeof(have) - strlen(have), " %s:%llu",
				 vname(v), (unsigned long long)vs->size[v]);
	return failf("volumes%s: not what a prefix of the volume operations since request %d "
		     "makes", have, req);
}

/* Every sector of volume v as of its beginning born. */
static bool
oracle_volume(const struct vstate *vs, int v, int k, int born)
{
	for (uint32_t s = 0; s < vsecs(vs->size[v]); s++)
		if (!oracle_sector(vs, v, s, vs->seq[v][s], k, born))
			return false;
	return true;
}

static bool
oracle(const struct vstate *vs, int k)
{
	if (!oracle_vols(vs, k))
		return false;
	for (int v = 0; v < NSLOT; v++) {
		int start = -1;
		bool ok;

		if (!vs->exists[v])
			continue;
		/* Its making, or the last revert replied: the first beginning it may have. */
		for (int i = 0; i < rq.nr; i++)
			if (rq.r[i].sub < k && (makes(&rq.r[i], v) ||
						(resets(&rq.r[i], v) && required(&rq.r[i], k))))
				start = i;
		ok = oracle_volume(vs, v, k, start);
		for (int i = start + 1; i < rq.nr && !ok; i++) {
			char why[sizeof(failmsg)];

			if (rq.r[i].sub >= k || !resets(&rq.r[i], v))
				continue;
			memcpy(why, failmsg, sizeof(why));
			ok = oracle_volume(vs, v, k, i);
			if (!ok)
				memcpy(failmsg, why, sizeof(why));
		}
		if (!ok)
			return false;
	}
	return true;
}

/* The sequence in sector s read from offset sec: 0 zeros, -1 foreign or garbage. */
static int64_t
payload_seq(const uint8_t *s, uint32_t sec)
{
	uint32_t crc, v, o;
	uint64_t seq;

	if (test_all_zero(s, SEC))
		return 0;
	memcpy(&crc, s + SEC - 4, 4);
	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (memcmp(s, "PAYL", 4) || crc != tp_crc32c(0, s, SEC - 4) || o != sec || seq < 1 ||
	    seq > (uint64_t)rq.nr)
		return -1;
	/* The request of that sequence wrote it, to that volume. */
	if (rq.r[seq - 1].s.op != OP_WRITE || rq.r[seq - 1].s.vol != (int)v)
		return -1;
	return (int64_t)seq;
}

/* What sector s, read from offset sec, holds that is no payload of this workload. */
static void
describe_bad(const uint8_t *s, uint32_t sec, char *out, size_t n)
{
	uint32_t crc, v, o;
	uint64_t seq;

	memcpy(&crc, s + SEC - 4, 4);
	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (!memcmp(s, "GARBAGE", 7))
		snprintf(out, n, "the base's free-space garbage (of a device sector = %u mod 256)",
			 (unsigned int)(s[7] ^ 0xa5));
	else if (memcmp(s, "PAYL", 4))
		snprintf(out, n, "no payload (bytes %02x %02x %02x %02x %02x %02x %02x %02x)",
			 s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
	else
		snprintf(out, n, "a payload of v%u sector %u seq %llu, crc %s (read as sector %u)",
			 v, o, (unsigned long long)seq,
			 crc == tp_crc32c(0, s, SEC - 4) ? "good" : "bad", sec);
}

/* Sector s of vol as it reads on image im: its data, or NULL for zeros. */
static const uint8_t *
read_sector(struct dio_volume *vol, const uint8_t *im, uint32_t s)
{
	struct dio_extent ext;
	const uint8_t *d = NULL;

	if (vol->map_ops->map_begin(vol, voff(vol->size, s), SEC, 0, &ext) < 0)
		return (const uint8_t *)"";
	if (ext.type == DIO_EXT_MAPPED)
		d = im + ext.addr;
	vol->map_ops->map_end(vol, &ext, SEC, 0);
	return d;
}

/*
 * R4 counted here, not by the pool's check: the references to each chunk
 * from the volumes' leaves (each leaf once, however many volumes share
 * it) are never more than the space map's count, and a referenced chunk
 * is in use. More is a leak, which a crash may leave.
 */
static bool
recount(const struct dio_tpool *p)
{
	const struct tp_leaf *seen[64];
	uint32_t *refs = calloc(p->sb.nr_chunks, sizeof(*refs));
	int nseen = 0;
	bool ok = true;

	need(refs, "out of memory");
	for (uint32_t i = 0; i < p->nvols; i++) {
		const struct tp_vol *v = p->vols[i];

		for (uint64_t l = 0; v && l < (v->nl + TP_LEAF - 1) / TP_LEAF; l++) {
			const struct tp_leaf *lf = v->leaf[l];
			bool dup = false;

			for (int j = 0; lf && j < nseen; j++)
				dup = dup || seen[j] == lf;
			if (!lf || dup)
				continue;
			need(nseen < 64, "too many map leaves");
			seen[nseen++] = lf;
			for (uint32_t e = 0; e < TP_LEAF; e++)
				if (lf->e[e].p1 && lf->e[e].p1 <= p->sb.nr_chunks)
					refs[lf->e[e].p1 - 1]++;
		}
	}
	for (uint64_t c = 0; c < p->sb.nr_chunks && ok; c++)
		if (refs[c] > p->space[c] || (refs[c] && p->cstate[c] != TP_C_USED))
			ok = failf("R4: chunk %llu is mapped by %u leaves; the space map counts %u, "
				   "state %u", (unsigned long long)c, refs[c], p->space[c],
				   p->cstate[c]);
	free(refs);
	return ok;
}

/* Open the pool on image im read-only, check it and read it into *vs. */
static bool
read_image(uint8_t *im, struct vstate *vs)
{
	struct memdev m = { .img = im, .size = img_size };
	struct dio_tpool_io hooks = { .pread = md_pread, .pwrite = md_pwrite, .flush = md_flush,
				      .priv = &m };
	struct dio_tpool_opts o = { .readonly = true, .no_direct = true, .io = &hooks,
				    .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_check_result res;
	struct dio_volume *vol;
	struct dio_tpool *p;
	bool ok = true;
	int ret;

	memset(vs, 0, sizeof(*vs));
	errbuf[0] = 0;
	ret = dio_tpool_check(path, &o, NULL, NULL, &res);
	if (ret < 0)
		return failf("check: %s", errbuf);
	if (res.problems)
		return failf("check finds %u problems", res.problems);
	ret = dio_tpool_open(path, &o, &p);
	if (ret < 0)
		return failf("open: %s", errbuf);
	ok = recount(p);
	for (int v = 0; v < NSLOT && ok; v++) {
		if (dio_tpool_volume_open(p, vname(v), &vol) < 0)
			continue;
		vs->exists[v] = true;
		vs->size[v] = vol->size;
		if (vol->size > VOLSZ && vol->size != (uint64_t)WIDE * CHUNK)
			ok = failf("%s is %llu bytes, more than any volume here", vname(v),
				   (unsigned long long)vol->size);
		for (uint32_t s = 0; ok && s < vsecs(vol->size); s++) {
			const uint8_t *d = read_sector(vol, im, s);

			vs->seq[v][s] = d ? payload_seq(d, s) : 0;
			if (vs->seq[v][s] < 0 && !vs->bad[0])
				describe_bad(d, s, vs->bad, sizeof(vs->bad));
		}
		dio_volume_put(vol);
	}
	dio_tpool_close(p);
	if (ok && m.writes)
		ok = failf("R7: recovery wrote before it was done");
	states++;
	return ok;
}

/* Recover a copy of src for real (open, close) into rimg, its writes logged in rl. */
static bool
run_recovery(const uint8_t *src)
{
	struct memdev m = { .img = rimg, .size = img_size, .log = &rl };
	struct dio_tpool_io hooks = { .pread = md_pread, .pwrite = md_pwrite, .flush = md_flush,
				      .priv = &m };
	struct dio_tpool_opts o = { .no_direct = true, .io = &hooks, .errbuf = errbuf,
				    .errlen = sizeof(errbuf) };
	struct dio_tpool *p;

	memcpy(rimg, src, img_size);
	dlog_reset(&rl);
	if (dio_tpool_open(path, &o, &p) < 0)
		return failf("recovery open: %s", errbuf);
	dio_tpool_close(p);
	return true;
}

static bool
same_state(const struct vstate *a, const struct vstate *b)
{
	for (int v = 0; v < NSLOT; v++) {
		if (a->exists[v] != b->exists[v] || a->size[v] != b->size[v])
			return failf("R7: after a crash in recovery %s differs", vname(v));
		for (uint32_t s = 0; s < VSECS; s++)
			if (a->seq[v][s] != b->seq[v][s])
				return failf("R7: after a crash in recovery %s sector %u reads %lld, "
					     "not %lld", vname(v), s, (long long)b->seq[v][s],
					     (long long)a->seq[v][s]);
	}
	return true;
}

/* frozen[] of the workload just run (see the rules above). */
static void
compute_frozen(void)
{
	static struct cstate cs;
	struct vstate vs;

	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		if (!is_derive(r->s.op))
			continue;
		for (uint32_t s = 0; s < VSECS; s++)
			frozen[i][s] = FROZEN_UNKNOWN;
		if (refused(r->ret) || r->done < 0)
			continue;
		cs.k = r->done + 1;
		cs.nsel = volatile_set(&dl, cs.k, cs.sel);
		build(img, base, img_size, &dl, cs.k, cs.sel, cs.nsel, -1, 0, 0);
		if (read_image(img, &vs) && vs.exists[r->s.vol])
			memcpy(frozen[i], vs.seq[r->s.vol], sizeof(frozen[i]));
		states--;	/* checked with the others, by crash_states */
	}
}

static bool rl_current;	/* rl already holds the recovery of the state's image */

/* Check one crash state of the logged workload. */
static bool
check_state(const struct cstate *cs)
{
	struct vstate vs, rvs;

	build(img, base, img_size, &dl, cs->k, cs->sel, cs->nsel, cs->tw, cs->ta, cs->tb);
	if (!read_image(img, &vs) || !oracle(&vs, cs->k))
		return false;
	if (cs->rk < 0)
		return true;
	if (!rl_current && !run_recovery(img))
		return false;
	memcpy(rbase, img, img_size);
	build(rimg, rbase, img_size, &rl, cs->rk, cs->rsel, cs->nrsel, cs->rtw, cs->rta, cs->rtb);
	if (!read_image(rimg, &rvs)) {
		char why[sizeof(failmsg)];

		memcpy(why, failmsg, sizeof(why));
		return failf("after a crash in recovery at %d: %s", cs->rk, why);
	}
	return same_state(&vs, &rvs);
}

/* ---- enumeration ---- */

static struct {
	bool lng;		/* long mode: more subsets, random ones */
	uint64_t rng;		/* for the random choices of the long mode */
	int recov_every;	/* crash recovery of every this-many-th state (0: never) */
	int points;		/* crash points a workload, about (0: every one) */
	const char *save_dir;
	uint64_t failures;	/* failing states, in total */
	int saved;		/* of the current workload */
	char first[700];	/* the first failure's message */
	uint64_t counter;
	int wfails;		/* failing states of the current workload */
	int reported, dumped;	/* failing states printed, and as whole cases */
} run;

/*
 * A threaded workload's case is its trace: the order its threads made
 * does not come again, so the case holds the log itself. In place of the
 * step lines of a workload's case:
 *   trace SIZE EVENTS
 *   base OFF SECTOR	the base's sectors that are not free-space garbage
 *   req OP VOL SEC NSEC FUA SEQ SUB DONE RET ON	every request, in order
 *   write OFF LEN FUA SUB DONE	every device write, then a "d SECTOR" line
 *			for each of its sectors
 *   flush SUB DONE	every device flush
 * A SECTOR is "z" (zeros), "p VOL SEC SEQ" (that payload) or its 1024 hex
 * digits. Replay loads the log into dl and rq and the base, and checks
 * the states as after a run: no thread, nothing run.
 */
static void
put_sector(FILE *f, const uint8_t *s)
{
	uint8_t p[SEC];
	uint32_t o;
	uint64_t seq;
	int v;

	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (test_all_zero(s, SEC)) {
		fputs("z\n", f);
		return;
	}
	if (!memcmp(s, "PAYL", 4) && v >= 0 && v < NSLOT) {
		payload(p, v, o, seq);
		if (!memcmp(p, s, SEC)) {
			fprintf(f, "p %d %u %llu\n", v, o, (unsigned long long)seq);
			return;
		}
	}
	for (int i = 0; i < (int)SEC; i++)
		fprintf(f, "%02x", s[i]);
	fputc('\n', f);
}

/* The sector of text t (put_sector's) into s; false if it is none. */
static bool
get_sector(const char *t, uint8_t *s)
{
	unsigned long long seq;
	unsigned int o, b;
	int v;

	if (t[0] == 'z' && (t[1] == '\n' || !t[1])) {
		memset(s, 0, SEC);
		return true;
	}
	if (sscanf(t, "p %d %u %llu", &v, &o, &seq) == 3) {
		if (v < 0 || v >= NSLOT)
			return false;
		payload(s, v, o, seq);
		return true;
	}
	for (int i = 0; i < (int)SEC; i++) {
		if (sscanf(t + 2 * i, "%2x", &b) != 1)
			return false;
		s[i] = (uint8_t)b;
	}
	return true;
}

static uint64_t tfill[MAXW];	/* bytes of each write loaded so far */

static void
write_trace(FILE *f)
{
	uint8_t g[SEC];

	fprintf(f, "trace %llu %d\n", (unsigned long long)img_size, dl.ev);
	for (uint64_t o = 0; o < img_size; o += SEC) {
		memset(g, 0xa5 ^ (int)(o / SEC), SEC);	/* garbage()'s */
		memcpy(g, "GARBAGE", 7);
		if (memcmp(base + o, g, SEC)) {
			fprintf(f, "base %llu ", (unsigned long long)o);
			put_sector(f, base + o);
		}
	}
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		fprintf(f, "req %c %d %u %u %d %llu %d %d %d %d\n", opchar[r->s.op], r->s.vol,
			r->s.sec, r->s.nsec, r->s.fua, (unsigned long long)r->seq, r->sub, r->done,
			r->ret, r->on);
	}
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];

		fprintf(f, "write %llu %llu %d %d %d\n", (unsigned long long)w->off,
			(unsigned long long)w->len, w->fua, w->sub, w->done);
		for (uint64_t o = 0; o < w->len; o += SEC) {
			fputs("d ", f);
			put_sector(f, w->data + o);
		}
	}
	for (int i = 0; i < dl.nf; i++)
		fprintf(f, "flush %d %d\n", dl.f[i].sub, dl.f[i].done);
}

/* One line of a trace into dl, rq and base: 1 taken, 0 not a trace line, -1 bad. */
static int
trace_line(const char *line, struct workload *wl)
{
	unsigned long long a, b;
	unsigned int sec, nsec;
	int v, fua, sub, done, ret, on, n = 0;
	char c;

	if (sscanf(line, "trace %llu %d", &a, &v) == 2) {
		if (a != img_size)
			return -1;
		wl->trace = true;
		garbage(base, 0, img_size);
		dlog_reset(&dl);
		for (int i = 0; i < rq.nr; i++)
			free(rq.r[i].buf);
		memset(&rq, 0, sizeof(rq));
		dl.ev = v;
		return 1;
	}
	if (!wl->trace)
		return 0;
	if (sscanf(line, "base %llu %n", &a, &n) == 1 && n)
		return a % SEC == 0 && a < img_size && get_sector(line + n, base + a) ? 1 : -1;
	if (sscanf(line, "req %c %d %u %u %d %llu %d %d %d %d", &c, &v, &sec, &nsec, &fua, &a,
		   &sub, &done, &ret, &on) == 10) {
		const char *o = memchr(opchar, c, OP_NR);

		if (!o || rq.nr >= MAXR || v < 0 || v >= NSLOT)
			return -1;
		rq.r[rq.nr++] = (struct rreq){ .s = { (int)(o - opchar), v, sec, nsec, fua != 0 },
					       .seq = a, .sub = sub, .done = done, .ret = ret,
					       .on = on };
		return 1;
	}
	if (sscanf(line, "write %llu %llu %d %d %d", &a, &b, &fua, &sub, &done) == 5) {
		if (dl.nw >= MAXW || b % SEC || !b || a + b > img_size)
			return -1;
		dl.w[dl.nw] = (struct wrec){ .off = a, .len = b, .data = malloc(b),
					     .fua = fua != 0, .sub = sub, .done = done };
		need(dl.w[dl.nw].data, "out of memory");
		tfill[dl.nw++] = 0;
		return 1;
	}
	if (line[0] == 'd' && line[1] == ' ') {
		struct wrec *w = &dl.w[dl.nw - 1];

		if (!dl.nw || tfill[dl.nw - 1] >= w->len ||
		    !get_sector(line + 2, w->data + tfill[dl.nw - 1]))
			return -1;
		tfill[dl.nw - 1] += SEC;
		return 1;
	}
	if (sscanf(line, "flush %d %d", &sub, &done) == 2) {
		if (dl.nf >= MAXW)
			return -1;
		dl.f[dl.nf++] = (struct frec){ .sub = sub, .done = done };
		return 1;
	}
	return 0;
}

/* Whether the trace loaded is whole: every write's sectors there. */
static bool
trace_whole(void)
{
	for (int i = 0; i < dl.nw; i++)
		if (tfill[i] != dl.w[i].len)
			return false;
	return true;
}

/* A case file of workload wl's crash state cs (see load_case) to f. */
static void
write_case(FILE *f, const struct workload *wl, const struct cstate *cs)
{
	fprintf(f, "# dionbd pool crash case: %s\n", failmsg);
	fprintf(f, "# replay: test-pool-crash --replay FILE\n");
	fprintf(f, "seed %llu\norder %llu\nfail %d %llu\n", (unsigned long long)wl->seed,
		(unsigned long long)wl->order, wl->fail_step, (unsigned long long)wl->fail_from);
	if (wl->trace)
		write_trace(f);
	for (int i = 0; i < wl->n; i++)
		fprintf(f, "step %c %d %u %u %d %d\n", opchar[wl->s[i].op], wl->s[i].vol,
			wl->s[i].sec, wl->s[i].nsec, wl->s[i].fua, wl->s[i].par);
	fprintf(f, "state %d %d %u %u %d\nrtorn %d %u %u\nsel", cs->k, cs->tw, cs->ta, cs->tb,
		cs->rk, cs->rtw, cs->rta, cs->rtb);
	for (int i = 0; i < cs->nsel; i++)
		fprintf(f, " %d", cs->sel[i]);
	fprintf(f, "\nrsel");
	for (int i = 0; i < cs->nrsel; i++)
		fprintf(f, " %d", cs->rsel[i]);
	fprintf(f, "\n");
	print_log(f);
}

static void
save_case(const struct workload *wl, const struct cstate *cs)
{
	char name[600];
	FILE *f;

	if (!run.save_dir || run.saved >= MAXSAVE)
		return;
	run.saved++;
	mkdir(run.save_dir, 0755);
	snprintf(name, sizeof(name), "%s/crash-%d-w%llu-%llu-%llu-k%d-%d.case", run.save_dir,
		 (int)getpid(), (unsigned long long)workloads, (unsigned long long)wl->seed,
		 (unsigned long long)wl->order, cs->k, run.saved);
	f = fopen(name, "w");
	if (!f) {
		fprintf(stderr, "crash simulator: cannot save %s: %s\n", name, strerror(errno));
		return;
	}
	write_case(f, wl, cs);
	fclose(f);
	fprintf(stderr, "crash simulator: saved %s\n", name);
}

/*
 * A failing state on stderr at once, whatever reports it later (ctest
 * --output-on-failure keeps it): the first few in one line each, the
 * first of a workload also as a whole case file to cut out of the log and
 * replay (test-pool-crash --replay FILE).
 */
static void
report_state(const struct workload *wl, const struct cstate *cs, const char *name)
{
	bool first = !run.wfails++;
	char torn[80] = "", rcv[48] = "";

	if (run.reported >= 20)
		return;
	run.reported++;
	if (cs->tw >= 0)
		snprintf(torn, sizeof(torn), ", write %d torn to sectors [%u, %u)", cs->tw, cs->ta,
			 cs->tb);
	if (cs->rk >= 0)
		snprintf(rcv, sizeof(rcv), ", recovery crashed at %d", cs->rk);
	fprintf(stderr, "crash simulator: FAILING STATE of %s (seed %llu, order %llu): crash "
		"point %d, %d volatile writes present%s%s: %s\n", name,
		(unsigned long long)wl->seed, (unsigned long long)wl->order, cs->k, cs->nsel, torn,
		rcv, failmsg);
	if (!first || run.dumped >= (wl->trace ? 1 : 3))
		return;	/* a trace is long: the first one only */
	run.dumped++;
	fprintf(stderr, "crash simulator: the case, to replay from a file:\n");
	write_case(stderr, wl, cs);
	fprintf(stderr, "crash simulator: end of the case\n");
}

static void
try_state(struct cstate *cs, const char *name)
{
	if (check_state(cs))
		return;
	if (!run.failures++)
		snprintf(run.first, sizeof(run.first), "%s k=%d: %s", name, cs->k, failmsg);
	save_case(cur, cs);
	report_state(cur, cs, name);
}

typedef void (*subset_fn)(struct cstate *cs, void *arg);

/* The volatile subsets (and torn writes) at crash point k of L, each into cs. */
static void
for_subsets(const struct dlog *L, int k, int *sel, int *nsel, int *tw, uint32_t *ta,
	    uint32_t *tb, struct cstate *cs, subset_fn fn, void *arg)
{
	int vol[MAXW];
	int nv = volatile_set(L, k, vol);
	int lim = run.lng ? 10 : 8;
	uint64_t nm = nv <= lim ? 1ull << nv : 2 + 2 * (uint64_t)nv + (run.lng ? 16 : 0);

	for (uint64_t m = 0; m < nm; m++) {
		*nsel = 0;
		for (int j = 0; j < nv; j++) {
			bool in;

			if (nv <= lim)
				in = (m >> j) & 1;
			else if (m < 2)
				in = m == 1;
			else if (m < 2 + 2 * (uint64_t)nv)
				in = ((m - 2) / 2 == (uint64_t)j) == ((m & 1) == 0);
			else
				in = rng_next(&run.rng) & 1;
			if (in)
				sel[(*nsel)++] = vol[j];
		}
		fn(cs, arg);
	}
	/* Torn: the first half, the second half, and in the long mode a random range. */
	*nsel = 0;
	for (int j = 0; j < nv; j++) {
		uint32_t n = (uint32_t)(L->w[vol[j]].len / SEC);

		if (n < 2)
			continue;
		for (int t = 0; t < (run.lng ? 3 : 2); t++) {
			uint32_t a = t == 0 ? 0 : n / 2, b = t == 0 ? n / 2 : n;

			if (t == 2) {
				a = (uint32_t)(rng_next(&run.rng) % n);
				b = a + 1 + (uint32_t)(rng_next(&run.rng) % (n - a));
			}
			*tw = vol[j];
			*ta = a;
			*tb = b;
			fn(cs, arg);
		}
	}
	*tw = -1;
}

static void
recov_state(struct cstate *cs, void *arg)
{
	try_state(cs, arg);
}

static void
recov_point(struct cstate *cs, void *arg)
{
	build(img, base, img_size, &dl, cs->k, cs->sel, cs->nsel, cs->tw, cs->ta, cs->tb);
	if (!run_recovery(img)) {
		cs->rk = 0;
		try_state(cs, arg);	/* fails the same way, and is saved */
		cs->rk = -1;
		return;
	}
	rl_current = true;
	for (int rk = 0; rk <= rl.ev; rk++) {
		/* The long mode: about 6 points of each recovery. */
		if (run.lng && rl.ev > 6 && rng_next(&run.rng) % (uint64_t)rl.ev >= 6)
			continue;
		cs->rk = rk;
		for_subsets(&rl, rk, cs->rsel, &cs->nrsel, &cs->rtw, &cs->rta, &cs->rtb, cs,
			    recov_state, arg);
	}
	rl_current = false;
	cs->rk = -1;
	cs->nrsel = 0;
}

static void
data_state(struct cstate *cs, void *arg)
{
	cs->rk = -1;
	try_state(cs, arg);
	if (run.recov_every && ++run.counter % (uint64_t)run.recov_every == 0)
		recov_point(cs, arg);
}

/* Whether k is just after the reply of a snapshot or clone. */
static bool
derive_point(int k)
{
	for (int i = 0; i < rq.nr; i++)
		if (is_derive(rq.r[i].s.op) && rq.r[i].done + 1 == k)
			return true;
	return false;
}

/*
 * Whether k is just after a metadata write completed: where a record made
 * durable too early (R1) shows, as the data it maps may still be volatile.
 */
static bool
meta_point(int k)
{
	for (int i = 0; i < dl.nw; i++)
		if (dl.w[i].off < data_start && dl.w[i].done + 1 == k)
			return true;
	return false;
}

/* Every crash point of the logged workload, with its volatile subsets. */
static uint64_t
crash_states(const char *name)
{
	static struct cstate cs;
	uint64_t f0 = run.failures;

	run.saved = run.wfails = 0;
	for (int k = 0; k <= dl.ev; k++) {
		/*
		 * The long mode: about 24 crash points a workload, for more
		 * workloads (run.points, when set); always the one after each
		 * snapshot or clone (its frozen contents, checked there), and
		 * with run.points the one after each metadata write.
		 */
		int pts = run.points ? run.points : 24;

		if ((run.lng || run.points) && dl.ev > pts &&
		    rng_next(&run.rng) % (uint64_t)dl.ev >= (uint64_t)pts && !derive_point(k) &&
		    !(run.points && meta_point(k)))
			continue;
		cs = (struct cstate){ .k = k, .tw = -1, .rk = -1, .rtw = -1 };
		for_subsets(&dl, k, cs.sel, &cs.nsel, &cs.tw, &cs.ta, &cs.tb, &cs, data_state,
			    (void *)name);
	}
	return run.failures - f0;
}

/* ---- workloads by seed ---- */

/* An empty workload of n steps (seed: what made it, order: its completion order). */
static void
wl_init(struct workload *wl, uint64_t seed, int n, uint64_t order)
{
	memset(wl, 0, sizeof(*wl));
	wl->seed = seed;
	wl->order = order;
	wl->fail_step = -1;
	wl->n = n;
}

static void
gen_workload(uint64_t seed, int n, bool conc, struct workload *wl)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 1;

	wl_init(wl, seed, n, conc ? seed * 2654435761u + 7 : 0);
	for (int i = 0; i < n; i++) {
		int x = (int)(rng_next(&r) % 100);
		uint32_t sec = (uint32_t)(rng_next(&r) % VSECS);
		uint32_t len = 1 + (uint32_t)(rng_next(&r) % 12);
		struct step *s = &wl->s[i];

		if (sec + len > VSECS)
			len = VSECS - sec;
		s->op = x < 55 ? OP_WRITE : x < 68 ? OP_FLUSH : x < 80 ? OP_TRIM : x < 90 ? OP_ZERO :
			x < 94 ? OP_VCREATE : x < 97 ? OP_VRESIZE : OP_VDELETE;
		s->vol = (int)(rng_next(&r) % 2);
		s->sec = sec;
		s->nsec = len;
		s->fua = rng_next(&r) % 3 == 0;
		if (s->op >= OP_VCREATE) {
			s->vol = s->sec = 0;
			s->nsec = 1 + (uint32_t)(rng_next(&r) % 4);
			s->fua = false;
		} else if (s->op == OP_FLUSH) {
			s->vol = s->sec = s->nsec = 0;
			s->fua = false;
		}
		s->par = conc && i > 0 && s->op < OP_VCREATE && rng_next(&r) % 4 != 0;
	}
}

/*
 * Step i of st ends the batch before it when it overlaps a data step of
 * that batch; true if it did. The recording engine logs writes in the
 * order they are queued, but the engine under it (psync's threads, or
 * io_uring's workers) may land two overlapping ones in the other order,
 * and a later copy-on-write copies what landed: the crash images, built
 * in log order, would then disagree with the copy (and run_twice would
 * see two runs copy different bytes). Workloads with copies therefore
 * never hold overlapping requests in one batch.
 */
static bool
unpar_overlap(struct step *st, int i)
{
	struct step *s = &st[i];

	if (s->op == OP_FLUSH || s->op >= OP_VCREATE)
		return false;
	for (int j = i - 1; s->par && j >= 0; j--) {
		const struct step *o = &st[j];

		if (o->op != OP_FLUSH && o->op < OP_VCREATE && o->vol == s->vol &&
		    o->sec < s->sec + s->nsec && s->sec < o->sec + o->nsec)
			s->par = false;
		if (!o->par)
			break;	/* the first of the batch */
	}
	return !s->par;
}

/*
 * Snapshots, clones and deletes among writes over the first two chunks of
 * each volume (room for the copies in the pool's 8): a snapshot or clone
 * of any volume into v3, then v4, and deletes of any volume, shared or
 * not, in batches with requests in flight on the other volumes.
 */
static void
gen_snap_workload(uint64_t seed, int n, bool conc, struct workload *wl)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 3;
	bool ex[NSLOT] = { true, true }, ro[NSLOT] = { false };
	bool busy[NSLOT] = { false };	/* data requests in the batch */
	int next = 3, parent[NSLOT] = { -1, -1, -1, -1, -1 };

	wl_init(wl, seed, n, conc ? seed * 2654435761u + 11 : 0);
	for (int i = 0; i < n; i++) {
		struct step *s = &wl->s[i];
		int x = i < 2 ? 50 : (int)(rng_next(&r) % 100), v = (int)(rng_next(&r) % NSLOT);
		uint32_t sec = (uint32_t)(rng_next(&r) % 16), len = 1 + (uint32_t)(rng_next(&r) % 10);
		bool fua = rng_next(&r) % 3 == 0;
		int o = -1, w = -1, t = -1;

		*s = (struct step){ .op = OP_FLUSH };
		s->par = conc && i > 0 && rng_next(&r) % 4 != 0;
		if (!s->par)
			memset(busy, 0, sizeof(busy));
		for (int j = 0; j < NSLOT; j++) {
			int c = (v + j) % NSLOT;

			if (o < 0 && ex[c] && !busy[c])
				o = c;	/* nothing of it in flight */
			if (w < 0 && ex[c] && !ro[c])
				w = c;
			if (t < 0 && ex[c] && ro[c] && ex[parent[c]] && !busy[parent[c]])
				t = c;	/* a snapshot to revert its origin to */
		}
		if (x < 25 && next < NSLOT && o >= 0) {
			s->op = rng_next(&r) % 2 ? OP_SNAP : OP_CLONE;
			s->vol = o;
			s->nsec = (uint32_t)next;
			ex[next] = true;
			parent[next] = o;
			ro[next++] = s->op == OP_SNAP;
		} else if (x < 33 && o >= 0) {
			s->op = OP_DEL;
			s->vol = o;
			ex[o] = false;
		} else if (x < 40 && t >= 0) {
			s->op = OP_REVERT;
			s->vol = parent[t];
			s->nsec = (uint32_t)t;
		} else if (x >= 65 && x < 77) {
			continue;	/* a FLUSH */
		} else if (w >= 0) {
			s->op = x < 88 ? OP_WRITE : x < 95 ? OP_TRIM : OP_ZERO;
			s->vol = w;
			s->sec = sec;
			s->nsec = sec + len > 16 ? 16 - sec : len;
			s->fua = fua;
			if (unpar_overlap(wl->s, i))
				memset(busy, 0, sizeof(busy));	/* a batch of its own */
			busy[w] = true;
		}
	}
}

/* ---- threaded workloads ---- */

/*
 * Several threads at once, as the daemon's reactors: three writers with a
 * dio_ctx each (v0's first two chunks, v0's last two, v1), and a thread of
 * volume operations on v2..v4 (create, snapshot, clone, delete, and its
 * own requests), in a pool with the committer (commit_ms) and the reclaim
 * thread running. v2 is wide (voff): deleting it or its snapshot or clone
 * drops two map leaves, which goes to the reclaim thread, and its chunks
 * come back to the writers while they allocate (R3).
 *
 * The log's order is whatever the threads made: the oracle judges it as
 * it judges any log (what was replied before the crash point, in that
 * order). No sector is written by two threads, so the order of the
 * requests to a sector is its thread's. A threaded run is not run again
 * (run_twice): its failing states are saved as traces (write_trace),
 * which replay alone, without threads.
 */
#define TW_WRITERS 3
#define TW_STEPS 32

struct tthread {
	pthread_t t;
	int vol;		/* a writer's volume; -1: the volume operations */
	uint32_t lo, hi;	/* a writer's sectors */
	uint64_t order;		/* its engine's completion order */
	int n;
	struct step s[TW_STEPS];
	struct dio_tpool *p;
	int mine[MAXR], nmine;	/* its requests */
};

static struct tthread tw[TW_WRITERS + 1];

/*
 * A writer holds quiet[its volume] shared over each batch (submitted to
 * drained); a snapshot or clone of v0 or v1 takes it exclusive, so that
 * nothing of its origin is in flight, as run_workload drains before one
 * (the pool would wait, then refuse). Writer-preferring: two writers of
 * v0 taking turns would starve it otherwise.
 */
static pthread_rwlock_t quiet[2];

/*
 * Whether the volume operations snapshot and clone the writers' volumes
 * too (threaded_snapshots_of_written_volumes): where a clone wrote in place
 * over a chunk its origin's durable map still held was found
 * (cow_then_clone_writes_in_place, tp_unsharing).
 */
static bool tw_origins;

/* What the threaded runs exercised: the pool's threads, and how requests ended. */
static struct {
	uint64_t bg_commits, reclaimed, reqs, failed;
} tws;

/* A request of step s on volume on, numbered and submitted now. */
static struct rreq *
t_req(struct tthread *t, const struct step *s, int on)
{
	struct rreq *r;

	pthread_mutex_lock(&evlock);
	need(rq.nr < MAXR, "too many requests");
	r = &rq.r[rq.nr];
	*r = (struct rreq){ .s = *s, .seq = (uint64_t)rq.nr + 1, .on = on, .done = -1 };
	t->mine[t->nmine++] = rq.nr++;
	r->sub = dl.ev++;
	pthread_mutex_unlock(&evlock);
	return r;
}

static void
t_submit(struct tthread *t, struct dio_ctx *ctx, struct dio_volume *vol, int v,
	 const struct step *s)
{
	static const uint8_t reqop[] = { DIO_REQ_WRITE, DIO_REQ_FLUSH, DIO_REQ_TRIM, DIO_REQ_ZERO };
	struct rreq *r = t_req(t, s, v);
	int ret;

	r->buf = test_alloc((size_t)s->nsec * SEC);
	for (uint32_t k = 0; k < s->nsec; k++)
		payload(r->buf + k * SEC, s->vol, s->sec + k, r->seq);
	r->req = (struct dio_req){ .op = reqop[s->op], .flags = s->fua ? DIO_REQ_FUA : 0,
				   .pos = voff(vol->size, s->sec), .len = (uint64_t)s->nsec * SEC,
				   .buf = s->op == OP_WRITE ? r->buf : NULL, .done = req_done,
				   .priv = r };
	if (s->op == OP_FLUSH)
		r->req.pos = r->req.len = 0;
	ret = dio_submit(ctx, vol, &r->req);
	if (ret < 0) {
		r->ret = ret;
		log_event(&dl, &r->done);
	}
}

/* Reap until none of t's requests is in flight. */
static void
t_drain(struct tthread *t, struct dio_ctx *ctx)
{
	for (;;) {
		int n = 0;

		pthread_mutex_lock(&evlock);
		for (int i = 0; i < t->nmine; i++)
			n += rq.r[t->mine[i]].done < 0;
		pthread_mutex_unlock(&evlock);
		if (!n)
			return;
		n = dio_ctx_reap(ctx, true);
		need(n >= 0, "reap: %s", strerror(-n));
	}
}

static void *
t_writer(void *arg)
{
	struct tthread *t = arg;
	struct dio_ctx *ctx = rec_ctx(t->order);
	struct dio_volume *vol;

	need(dio_tpool_volume_open(t->p, vname(t->vol), &vol) == 0, "%s", vname(t->vol));
	for (int i = 0; i < t->n; i++) {
		if (i == 0 || !t->s[i].par)
			pthread_rwlock_rdlock(&quiet[t->vol]);
		t_submit(t, ctx, vol, t->vol, &t->s[i]);
		if (i + 1 == t->n || !t->s[i + 1].par) {
			t_drain(t, ctx);
			pthread_rwlock_unlock(&quiet[t->vol]);
		}
	}
	dio_volume_put(vol);
	dio_ctx_destroy(ctx);
	return NULL;
}

static void *
t_ops(void *arg)
{
	struct tthread *t = arg;
	struct dio_ctx *ctx = rec_ctx(t->order);
	struct dio_volume *vols[NSLOT] = { NULL };

	for (int i = 0; i < t->n; i++) {
		const struct step *s = &t->s[i];
		struct rreq *r;
		int v;

		if (s->op >= OP_VCREATE) {
			bool q = is_derive(s->op) && s->vol < 2;

			/* as run_workload: its own requests complete first */
			t_drain(t, ctx);
			if (q)
				pthread_rwlock_wrlock(&quiet[s->vol]);
			r = t_req(t, s, s->vol);
			r->ret = vol_op(t->p, vols, s);
			log_event(&dl, &r->done);
			if (q)
				pthread_rwlock_unlock(&quiet[s->vol]);
			continue;
		}
		v = req_volume(t->p, vols, s->vol);
		if (v < 0) {
			r = t_req(t, s, s->vol);
			r->ret = v;
			log_event(&dl, &r->done);
			continue;
		}
		t_submit(t, ctx, vols[v], v, s);
		if (i + 1 == t->n || !t->s[i + 1].par)
			t_drain(t, ctx);
	}
	t_drain(t, ctx);
	for (int v = 0; v < NSLOT; v++)
		if (vols[v])
			dio_volume_put(vols[v]);
	dio_ctx_destroy(ctx);
	return NULL;
}

/* A writer's steps over sectors [t->lo, t->hi) of its volume. */
static void
gen_writer(uint64_t *r, struct tthread *t, int n)
{
	t->n = n;
	for (int i = 0; i < n; i++) {
		struct step *s = &t->s[i];
		int x = (int)(rng_next(r) % 100);
		uint32_t sec = t->lo + (uint32_t)(rng_next(r) % (t->hi - t->lo));
		uint32_t len = 1 + (uint32_t)(rng_next(r) % 10);

		*s = (struct step){ .op = x < 60 ? OP_WRITE : x < 72 ? OP_FLUSH :
					  x < 86 ? OP_TRIM : OP_ZERO,
				    .vol = t->vol, .sec = sec,
				    .nsec = sec + len > t->hi ? t->hi - sec : len,
				    .fua = rng_next(r) % 4 == 0,
				    .par = i > 0 && rng_next(r) % 3 != 0 };
		if (s->op == OP_FLUSH)
			s->sec = s->nsec = s->fua = 0;
		unpar_overlap(t->s, i);
	}
}

/*
 * The volume operations' steps on v2..v4: v2 created wide, snapshots and
 * clones of what exists into a free slot, deletes, and requests within
 * one half of a volume (one map leaf of a wide one).
 */
static void
gen_ops(uint64_t *r, struct tthread *t, int n)
{
	bool ex[NSLOT] = { false }, ro[NSLOT] = { false };

	t->n = n;
	for (int i = 0; i < n; i++) {
		struct step *s = &t->s[i];
		int x = (int)(rng_next(r) % 100), v = (int)(rng_next(r) % 3);
		uint32_t half = (uint32_t)(rng_next(r) % 2) * (VSECS / 2);
		uint32_t sec = half + (uint32_t)(rng_next(r) % (VSECS / 2));
		uint32_t len = 1 + (uint32_t)(rng_next(r) % 8);
		int o = -1, w = -1, f = -1;

		for (int j = 0; j < 3; j++) {
			int c = 2 + (v + j) % 3;

			if (o < 0 && ex[c])
				o = c;
			if (w < 0 && ex[c] && !ro[c])
				w = c;
			if (f < 0 && !ex[c] && c > 2)
				f = c;
		}
		*s = (struct step){ .op = OP_FLUSH };
		if (!ex[2] && (x < 20 || o < 0)) {
			*s = (struct step){ .op = OP_VCREATE, .nsec = WIDE };
			ex[2] = true;
			ro[2] = false;
		} else if (x < 35 && f >= 0 && (o >= 0 || tw_origins)) {
			/* of a writer's volume too, a third of the time (tw_origins) */
			s->op = rng_next(r) % 2 ? OP_SNAP : OP_CLONE;
			s->vol = o;
			if (tw_origins && (o < 0 || rng_next(r) % 3 == 0))
				s->vol = (int)(rng_next(r) % 2);
			s->nsec = (uint32_t)f;
			ex[f] = true;
			ro[f] = s->op == OP_SNAP;
		} else if (x < 50 && o >= 0) {
			s->op = OP_DEL;
			s->vol = o;
			ex[o] = false;
		} else if (x < 92 && w >= 0) {
			s->op = x < 78 ? OP_WRITE : x < 86 ? OP_TRIM : OP_ZERO;
			s->vol = w;
			s->sec = sec;
			s->nsec = sec + len > half + VSECS / 2 ? half + VSECS / 2 - sec : len;
			s->fua = rng_next(r) % 4 == 0;
			s->par = i > 0 && rng_next(r) % 3 != 0;
			unpar_overlap(t->s, i);
		}
	}
}

/* The threads' steps of seed: writers of n steps each, volume operations of n. */
static void
gen_threaded(uint64_t seed, int n)
{
	static const int wv[TW_WRITERS] = { 0, 0, 1 };
	static const uint32_t wlo[TW_WRITERS] = { 0, VSECS / 2, 0 };
	static const uint32_t whi[TW_WRITERS] = { VSECS / 2, VSECS, VSECS };
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 5;

	need(n <= TW_STEPS, "%d steps a thread", n);
	for (int i = 0; i <= TW_WRITERS; i++) {
		struct tthread *t = &tw[i];

		memset(t, 0, sizeof(*t));
		t->order = seed * 2654435761u + 13 + (uint64_t)i;
		if (i == TW_WRITERS) {
			t->vol = -1;
			gen_ops(&r, t, n);
			continue;
		}
		t->vol = wv[i];
		t->lo = wlo[i];
		t->hi = whi[i];
		gen_writer(&r, t, n);
	}
}

/*
 * Run the threads of gen_threaded on a pool opened from base with
 * commit_ms (the committer and the reclaim thread), every device op and
 * request logged in the order they came.
 */
static void
run_threaded(struct workload *wl)
{
	struct dio_tpool *p = open_logged(1);
	int ret;

	for (int v = 0; v < 2; v++) {
		pthread_rwlockattr_t a;

		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&quiet[v], &a);
		pthread_rwlockattr_destroy(&a);
	}
	rec.on = true;
	for (int i = 0; i <= TW_WRITERS; i++) {
		tw[i].p = p;
		ret = pthread_create(&tw[i].t, NULL, i < TW_WRITERS ? t_writer : t_ops, &tw[i]);
		need(ret == 0, "pthread_create: %s", strerror(ret));
	}
	for (int i = 0; i <= TW_WRITERS; i++)
		pthread_join(tw[i].t, NULL);
	for (int v = 0; v < 2; v++)
		pthread_rwlock_destroy(&quiet[v]);
	/* A crash: nothing after this is logged, nor written once closing. */
	pthread_mutex_lock(&evlock);
	rec.on = false;
	pthread_mutex_unlock(&evlock);
	pthread_mutex_lock(&p->lock);
	p->readonly = true;
	tws.bg_commits += p->bg_commits;
	tws.reclaimed += p->reclaimed;
	pthread_mutex_unlock(&p->lock);
	dio_tpool_close(p);
	for (int i = 0; i < rq.nr; i++) {
		tws.reqs++;
		tws.failed += rq.r[i].ret != 0;
	}
	wl->trace = true;
	wl->n = 0;
	cur = wl;
	workloads++;
	compute_frozen();
	if (getenv("DIO_CRASH_TRACE"))
		print_log(stderr);
}

/* ---- saved cases ---- */

static bool
load_case(const char *file, struct workload *wl, struct cstate *cs)
{
	FILE *f = fopen(file, "r");
	char line[2 * SEC + 64];

	if (!f) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return false;
	}
	memset(wl, 0, sizeof(*wl));
	memset(cs, 0, sizeof(*cs));
	wl->fail_step = -1;
	cs->k = -1;
	cs->rtw = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		char c;
		int v, fua, par, n;
		unsigned int sec, nsec;
		int t = trace_line(line, wl);

		if (t < 0)
			goto bad;
		if (t > 0)
			continue;
		if (sscanf(line, "seed %llu", &a) == 1)
			wl->seed = a;
		else if (sscanf(line, "order %llu", &a) == 1)
			wl->order = a;
		else if (sscanf(line, "fail %d %llu", &v, &b) == 2) {
			wl->fail_step = v;
			wl->fail_from = b;
		} else if (sscanf(line, "step %c %d %u %u %d %d", &c, &v, &sec, &nsec, &fua,
				  &par) == 6 && wl->n < MAXR) {
			const char *o = memchr(opchar, c, OP_NR);

			if (!o || v < 0 || v >= NSLOT || sec + nsec > VSECS ||
			    (names_two((int)(o - opchar)) && nsec >= NSLOT))
				goto bad;
			wl->s[wl->n++] = (struct step){ (int)(o - opchar), v, sec, nsec, fua != 0,
							par != 0 };
		} else if (sscanf(line, "rtorn %d %u %u", &cs->rtw, &cs->rta, &cs->rtb) == 3) {
			continue;
		} else if (sscanf(line, "state %d %d %u %u %d", &cs->k, &cs->tw, &cs->ta, &cs->tb,
				  &cs->rk) == 5) {
			continue;
		} else if (!strncmp(line, "sel", 3) || !strncmp(line, "rsel", 4)) {
			bool r = line[0] == 'r';
			char *p = line + (r ? 4 : 3);
			int *arr = r ? cs->rsel : cs->sel, *cnt = r ? &cs->nrsel : &cs->nsel;

			while (sscanf(p, "%d%n", &v, &n) == 1 && *cnt < MAXW) {
				arr[(*cnt)++] = v;
				p += n;
			}
		}
	}
	fclose(f);
	if ((wl->n || (wl->trace && trace_whole())) && cs->k >= 0)
		return true;
	fprintf(stderr, "%s: not a crash case\n", file);
	return false;
bad:
	fclose(f);
	fprintf(stderr, "%s: not a crash case: %s", file, line);
	return false;
}

/* Every subset at crash point cs->k of the logged workload (and, with rk, of its recovery). */
static uint64_t
crash_point(struct cstate *cs, const char *name)
{
	uint64_t f0 = run.failures;

	run.saved = run.wfails = 0;
	run.recov_every = cs->rk >= 0;
	cs->tw = -1;
	cs->rk = -1;
	cs->rtw = -1;
	for_subsets(&dl, cs->k, cs->sel, &cs->nsel, &cs->tw, &cs->ta, &cs->tb, cs, data_state,
		    (void *)name);
	run.recov_every = 0;
	return run.failures - f0;
}

/* Replay one case: its own state, then every state at its crash point. */
static bool
replay_case(const char *file)
{
	static struct workload wl;
	static struct cstate cs;
	uint64_t f0 = run.failures;
	bool ok;

	if (!load_case(file, &wl, &cs))
		return false;
	if (wl.trace) {
		cur = &wl;	/* its log is loaded: as a workload just run */
		compute_frozen();
	} else {
		run_workload(&wl);
	}
	if (cs.k > dl.ev)
		cs.k = dl.ev;	/* the code changed since: its log is shorter */
	ok = check_state(&cs);
	if (!ok) {
		fprintf(stderr, "%s: the saved state fails: %s\n", file, failmsg);
		snprintf(run.first, sizeof(run.first), "%s: %s", file, failmsg);
	}
	if (crash_point(&cs, file) > 0) {
		fprintf(stderr, "%s: %llu states at its crash point fail, the first: %s\n", file,
			(unsigned long long)(run.failures - f0), run.first);
		ok = false;
	}
	return ok;
}

/* Replay a case file, or every *.case in a directory: the number that fail. */
static int
replay_path(const char *p)
{
	struct stat st;
	struct dirent **ents;
	int n, bad = 0;

	if (stat(p, &st) < 0) {
		fprintf(stderr, "%s: %s\n", p, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode))
		return !replay_case(p);
	n = scandir(p, &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(ents[i]->d_name);

		if (l > 5 && !strcmp(ents[i]->d_name + l - 5, ".case")) {
			char *f;

			need(asprintf(&f, "%s/%s", p, ents[i]->d_name) > 0, "asprintf");
			bad += !replay_case(f);
			fprintf(stderr, "crash simulator: replayed %s\n", f);
			free(f);
		}
		free(ents[i]);
	}
	free(ents);
	return bad;
}

/* ---- fail every device op from the Nth on ---- */

/*
 * Run wl with every device op from the Nth after step wl->fail_step starts
 * failing, N = 1, 2, ... until that step succeeds; check every crash state
 * of each run. The N that first succeeded, or 0.
 */
static uint64_t
fail_from_nth(struct workload *wl, const char *name)
{
	for (uint64_t n = 1; n < 200; n++) {
		wl->fail_from = n;
		run_workload(wl);
		if (crash_states(name))
			return 0;
		if (rq.r[wl->fail_step].ret == 0)
			return n;
	}
	return 0;
}

/*
 * Pool create with every device op from the Nth on failing, over garbage:
 * a failed create leaves nothing that opens as a pool; a crash state that
 * opens is an empty pool that checks clean.
 */
static uint64_t
fail_create_nth(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CHUNK, .journal_blocks = 8,
					    .max_volumes = 4, .size = img_size };
	struct dio_tpool_opts o = { .no_direct = true, .io = &rec_io_hooks, .errbuf = errbuf,
				    .errlen = sizeof(errbuf) };
	struct dio_tpool_opts so = { .no_direct = true, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	uint8_t *junk = malloc(img_size);
	uint64_t done = 0;

	need(junk, "out of memory");
	garbage(junk, 0, img_size);
	for (uint64_t n = 1; n < 200 && !done; n++) {
		struct dio_tpool *p;
		int ret, vol[MAXW];

		file_put(junk);
		dlog_reset(&dl);
		memset(&rec, 0, sizeof(rec));
		rec.on = true;
		rec.fail_from = n;
		ret = dio_tpool_create(path, &co, &o);
		rec.on = false;
		rec.fail_from = 0;
		if (ret == 0) {
			done = n;
			if (dio_tpool_open(path, &so, &p) < 0) {
				run.failures++;
				snprintf(run.first, sizeof(run.first),
					 "create succeeded (ops failing from %llu) but the pool does "
					 "not open: %s", (unsigned long long)n, errbuf);
				break;
			}
			dio_tpool_close(p);
		} else if (dio_tpool_open(path, &so, &p) == 0) {
			dio_tpool_close(p);
			run.failures++;
			snprintf(run.first, sizeof(run.first),
				 "create failing from op %llu left a pool that opens",
				 (unsigned long long)n);
			break;
		}
		/* Every crash state of this run: not a pool, or an empty clean one. */
		for (int k = 0; k <= dl.ev; k++) {
			int nv = volatile_set(&dl, k, vol);

			for (int m = 0; m < 2 + 2 * nv; m++) {
				int sel[MAXW], ns = 0;
				struct memdev md = { .img = img, .size = img_size };
				struct dio_tpool_io h = { .pread = md_pread, .pwrite = md_pwrite,
							  .flush = md_flush, .priv = &md };
				struct dio_tpool_opts ro = { .readonly = true, .no_direct = true,
							     .io = &h };
				struct dio_tpool_check_result res;
				struct dio_tpool_vol_info *vi;
				size_t nvi = 0;

				for (int j = 0; j < nv; j++)
					if (m < 2 ? m == 1 : ((m - 2) / 2 == j) == (m % 2 == 0))
						sel[ns++] = vol[j];
				build(img, junk, img_size, &dl, k, sel, ns, -1, 0, 0);
				states++;
				if (dio_tpool_open(path, &ro, &p) < 0)
					continue;
				ret = dio_tpool_volume_list(p, &vi, &nvi);
				free(ret == 0 ? vi : NULL);
				dio_tpool_close(p);
				if (ret == 0 && nvi == 0 && dio_tpool_check(path, &ro, NULL, NULL, &res) == 0 &&
				    !res.problems && !md.writes)
					continue;
				if (!run.failures++)
					snprintf(run.first, sizeof(run.first),
						 "create failing from op %llu, crash at %d: a pool that "
						 "is not empty and clean", (unsigned long long)n, k);
			}
		}
	}
	free(junk);
	return run.failures ? 0 : done;
}

/* ---- Criterion tests ---- */

static void
setup(void)
{
	static char dir[512];

	memset(&run, 0, sizeof(run));
	/* Failing states are kept even when nobody asked: a flaky one is gone otherwise. */
	snprintf(dir, sizeof(dir), "%s/pool-crash-failures", test_dir());
	run.save_dir = getenv("DIO_CRASH_SAVE") ? getenv("DIO_CRASH_SAVE") : dir;
	run.rng = 1;
	make_base();
}

static void
teardown(void)
{
	fprintf(stderr, "crash simulator: %llu states checked\n", (unsigned long long)states);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	memset(&rq, 0, sizeof(rq));
	free_base();
}

#define W(v, s, n, f) { OP_WRITE, v, s, n, f, false }
#define WP(v, s, n, f) { OP_WRITE, v, s, n, f, true }
#define FL { OP_FLUSH, 0, 0, 0, false, false }
#define FLP { OP_FLUSH, 0, 0, 0, false, true }
#define TR(v, s, n, f) { OP_TRIM, v, s, n, f, false }
#define ZE(v, s, n, f) { OP_ZERO, v, s, n, f, false }
#define VC(chunks) { OP_VCREATE, 0, 0, chunks, false, false }
#define VD { OP_VDELETE, 0, 0, 0, false, false }
#define VR(chunks) { OP_VRESIZE, 0, 0, chunks, false, false }
#define SN(o, t) { OP_SNAP, o, 0, t, false, false }
#define SNP(o, t) { OP_SNAP, o, 0, t, false, true }
#define SNL(o, t) { OP_SNAP, o, 0, t, true, true }
#define CL(o, t) { OP_CLONE, o, 0, t, false, false }
#define CLP(o, t) { OP_CLONE, o, 0, t, false, true }
#define DL(v) { OP_DEL, v, 0, 0, false, false }
#define DLP(v) { OP_DEL, v, 0, 0, false, true }
#define RV(v, snap) { OP_REVERT, v, 0, snap, false, false }
#define RVP(v, snap) { OP_REVERT, v, 0, snap, false, true }

/*
 * Fewer under the sanitizers, which check memory, not more states: a
 * fifth of the workloads (at least one) of each random test and of each
 * completion-order loop, and crashes in recovery from every sixth state.
 * Release: about 38,000 states an engine, ASan about 9,000.
 */
#ifdef __SANITIZE_ADDRESS__
#define SEEDS(n) ((n) / 5 ? (n) / 5 : 1)
#define RECOV_EVERY 6
#else
#define SEEDS(n) (n)
#define RECOV_EVERY 1
#endif

/* A hand-written workload: its steps, in submission order unless order. */
static void
hand(struct workload *wl, const struct step *s, int n, uint64_t order)
{
	memset(wl, 0, sizeof(*wl));
	memcpy(wl->s, s, (size_t)n * sizeof(*s));
	wl->n = n;
	wl->order = order;
	wl->fail_step = -1;
}

static void
check_hand(const struct step *s, int n, const char *name)
{
	static struct workload wl;

	hand(&wl, s, n, 0);
	run_workload(&wl);
	cr_assert_eq(crash_states(name), 0, "%s", run.first);
}

/* dm-thin's bug: a FUA write fully over a freshly allocated chunk, acked before its mapping. */
Test(pool_crash, fua_overwrite_of_fresh_chunk, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 0, 8, true), W(0, 8, 1, false) };

	check_hand(s, 3, "fua-overwrite-fresh");
}

/* Data written, crash before the commit: the chunk's previous contents never show. */
Test(pool_crash, data_before_commit_never_old_contents, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), TR(0, 0, 8, false), FL,
					 W(1, 2, 3, false), W(1, 9, 2, false), FL };

	check_hand(s, 6, "data-before-commit");
}

/* A chunk freed and reallocated in one transaction window never shows old data. */
Test(pool_crash, freed_and_reallocated_in_one_window, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL,
					 TR(0, 0, 16, false), W(1, 0, 8, false), W(1, 8, 4, false),
					 W(1, 16, 8, false), W(1, 24, 2, true), FL };

	check_hand(s, 9, "free-realloc");
}

Test(pool_crash, partial_straddling_fua_zero, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 3, 7, false), W(1, 6, 4, true), ZE(0, 4, 2, false),
					 W(0, 7, 3, true), FL, ZE(1, 0, 8, true), W(1, 1, 1, false),
					 TR(0, 0, 8, true), W(0, 0, 1, false) };

	check_hand(s, 9, "mixed");
}

/* Volume operations among writes: all or nothing, durable once replied. */
Test(pool_crash, volume_operations, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), VC(2), W(1, 3, 2, false), VR(4),
					 TR(0, 0, 8, false), VD, VC(1), W(0, 1, 1, true) };

	check_hand(s, 8, "volume-ops");
}

/*
 * A snapshot holds its origin as it was: copies of the shared chunks
 * (partial writes, the copied sub-blocks around them), FUA and not,
 * on the origin after the snapshot.
 */
Test(pool_crash, snapshot_reads_origin_as_it_was, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 3, false), SN(0, 3),
					 W(0, 0, 4, false), W(0, 9, 1, true), FL,
					 W(0, 2, 1, false), TR(0, 4, 4, false), FL };

	check_hand(s, 9, "snapshot-cow");
}

/* A clone of a snapshot, written on both sides; the snapshot between them deleted. */
Test(pool_crash, clone_of_snapshot_written_both_sides, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, true), SN(0, 3),
					 CL(3, 4), W(4, 2, 3, false), W(0, 4, 2, false), FL,
					 W(4, 10, 2, true), DL(3), W(0, 12, 1, false), FL };

	check_hand(s, 11, "clone-of-snapshot");
}

/*
 * Deletes of shared volumes: the origin of a clone, then a clone that a
 * snapshot shares; new writes reuse what was freed, never what is shared.
 */
Test(pool_crash, delete_while_shared, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), W(0, 8, 4, false), CL(0, 3), DL(0),
					 W(3, 0, 2, false), FL, SN(3, 4), DL(3), W(1, 0, 8, false),
					 W(1, 8, 8, false), FL };

	check_hand(s, 11, "delete-shared");
}

/*
 * Snapshots, clones and deletes with requests in flight on other volumes,
 * and copy-on-write writes in flight with a FLUSH whose completion does
 * not cover the copy (R1: the COW record waits for the next flush). Every
 * completion order of the batches.
 */
Test(pool_crash, snapshot_with_requests_in_flight, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 2, false), W(1, 0, 8, false),
					 WP(1, 8, 4, false), SNP(0, 3), WP(1, 1, 2, true), FL,
					 FLP, WP(0, 2, 2, false), WP(1, 9, 1, false), CLP(3, 4),
					 WP(0, 8, 1, true), FL, W(4, 0, 1, false), FLP,
					 DLP(0), WP(4, 9, 3, false), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(3); order++) {
		hand(&wl, s, 18, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-in-flight"), 0, "%s", run.first);
	}
}

/*
 * A snapshot is a FLUSH of its origin, and takes its device flush without
 * the pool lock: a write in place (no record to wait on a flush) that
 * completes while that flush is under way is not covered by it, yet the
 * snapshot holds it. Its record must wait for a later flush (R1), or a
 * crash keeps the snapshot and loses the write. Writes over committed
 * chunks (in place) and into unwritten sub-blocks and a hole (records),
 * in flight together; in submission order and in random ones.
 */
Test(pool_crash, snapshot_flush_races_write_in_place, .init = setup, .fini = teardown)
{
	/* only writes in place race it: no record of theirs asks for a flush */
	static const struct step s1[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL,
					  W(0, 0, 4, false), WP(0, 9, 2, false), SNL(0, 3),
					  WP(1, 0, 2, false), W(0, 1, 1, false), FL };
	/* with them, writes into unwritten sub-blocks and a hole */
	static const struct step s2[] = { W(0, 0, 4, false), W(0, 8, 8, false), FL,
					  W(0, 0, 8, false), WP(0, 9, 2, false),
					  WP(0, 16, 2, false), SNL(0, 3), WP(1, 0, 2, false),
					  W(0, 1, 1, false), FL };
	static struct workload wl;

	for (uint64_t order = 0; order <= SEEDS(3); order++) {
		hand(&wl, s1, 9, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-flush-race"), 0, "%s", run.first);
		hand(&wl, s2, 10, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-flush-race-records"), 0, "%s", run.first);
	}
}

/*
 * Revert to a snapshot, twice, with writes before and after; the second
 * with writes in flight on another volume; the snapshot deleted after.
 */
Test(pool_crash, revert_to_snapshot, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 4, true), SN(0, 3),
					 W(0, 2, 3, false), W(0, 12, 2, false), FL, RV(0, 3),
					 W(0, 4, 1, false), W(1, 0, 8, false), WP(1, 8, 2, false),
					 RVP(0, 3), WP(1, 3, 1, true), W(0, 9, 2, false), DL(3), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(3); order++) {
		hand(&wl, s, 15, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("revert"), 0, "%s", run.first);
	}
}

typedef void (*gen_fn)(uint64_t seed, int n, bool conc, struct workload *wl);

static void
random_runs_of(gen_fn gen, uint64_t first, int count, int n, bool conc)
{
	struct timespec t0, t1;
	static struct workload wl;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t seed = first; seed < first + (uint64_t)count; seed++) {
		char name[48];

		gen(seed, n, conc, &wl);
		snprintf(name, sizeof(name), "random seed %llu%s", (unsigned long long)seed,
			 conc ? " concurrent" : "");
		cr_assert(run_twice(&wl, name), "%s run twice differs: %s", name, failmsg);
		cr_assert_eq(crash_states(name), 0, "%s", run.first);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: %llu states of %llu workloads in %.1f s\n",
		(unsigned long long)states, (unsigned long long)workloads,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void
random_runs(uint64_t first, int count, int n, bool conc)
{
	random_runs_of(gen_workload, first, count, n, conc);
}

/*
 * The 8-block journal wraps (a commit per FUA write, a checkpoint when it
 * is full): crash states with stale blocks of the previous lap after the
 * head, some of the new lap's blocks volatile.
 */
Test(pool_crash, journal_wrap_with_stale_blocks, .init = setup, .fini = teardown)
{
	static struct step s[20];
	bool rewritten = false;

	/* Within 3 chunks a volume: no ENOSPC in the 6 chunks of the pool. */
	for (int i = 0; i < 20; i++)
		s[i] = (struct step)W(i % 2, (uint32_t)(i * 5 % 24), 1, i % 5 != 4);
	check_hand(s, 20, "journal-wrap");
	for (int i = 0; i < rq.nr; i++)
		cr_assert_eq(rq.r[i].ret, 0, "request %d: %d", i, rq.r[i].ret);
	/* A journal block written twice: the ring wrapped within the workload. */
	for (int i = 0; i < dl.nw && !rewritten; i++)
		for (int j = i + 1; j < dl.nw && !rewritten; j++)
			rewritten = dl.w[i].fua && dl.w[j].fua && dl.w[i].len == TP_BLOCK &&
				    dl.w[i].off >= 2 * TP_BLOCK &&
				    dl.w[j].off == dl.w[i].off && dl.w[j].len == TP_BLOCK;
	cr_assert(rewritten, "the journal did not wrap");
}


/* Short random sequences, seeded, one request at a time. */
Test(pool_crash, random_short_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs(1, SEEDS(14), 8, false);
}

/* Snapshots, clones, deletes among writes, in batches completing out of order. */
Test(pool_crash, random_snapshot_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs_of(gen_snap_workload, 2001, SEEDS(8), 10, true);
}

/* Short random sequences in batches whose completions come back out of order. */
Test(pool_crash, random_concurrent_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs(1001, SEEDS(10), 8, true);
}

/*
 * A write in flight while a FLUSH is submitted, completing before the
 * flush does: the flush does not cover it, so its MAP record must wait for
 * the next flush (R1). Every completion order of the batch.
 */
Test(pool_crash, concurrent_write_and_flush, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(1, 0, 8, false), FL, TR(1, 0, 8, false), FL,
					 W(0, 0, 8, false), FLP, WP(0, 8, 2, false),
					 W(0, 16, 1, true), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(12); order++) {
		hand(&wl, s, 9, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("concurrent-write-flush"), 0, "%s", run.first);
	}
}

/*
 * Crashes during recovery (R7): every write of each recovery, for every
 * crash state (every sixth one under ASan).
 */
Test(pool_crash, crash_during_recovery, .init = setup, .fini = teardown, .timeout = 240)
{
	static const struct step s[] = { W(0, 0, 8, false), W(1, 3, 2, true), VC(2), FL,
					 TR(0, 0, 8, false), W(0, 9, 4, true), VR(3) };
	static struct workload wl;

	run.recov_every = RECOV_EVERY;
	hand(&wl, s, 7, 0);
	run_workload(&wl);
	cr_assert_eq(crash_states("crash-in-recovery"), 0, "%s", run.first);
	cr_assert_gt(rl.nw, 0, "no recovery wrote anything: nothing was tested");
}

/*
 * Threaded workloads: three writers and a thread of volume operations at
 * once, the committer and the reclaim thread running (run_threaded).
 * Some 16 crash points each at random, and every one just after a
 * metadata write (where R1 shows) or a snapshot; their states as anywhere
 * else. Release: some 15,000 states an engine, ASan some 3,000.
 */
static void
threaded_runs(uint64_t first, int count, int n, int points)
{
	struct timespec t0, t1;
	static struct workload wl;
	uint64_t s0 = states;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	run.points = points;
	for (uint64_t seed = first; seed < first + (uint64_t)count; seed++) {
		char name[48];

		memset(&wl, 0, sizeof(wl));
		wl.seed = seed;
		wl.fail_step = -1;
		gen_threaded(seed, n);
		snprintf(name, sizeof(name), "threaded seed %llu", (unsigned long long)seed);
		run_threaded(&wl);
		crash_states(name);
	}
	run.points = 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: threaded: %llu states of %d workloads (%llu requests, "
		"%llu failed or refused; %llu background commits, %llu chunks reclaimed in "
		"the background) in %.1f s\n", (unsigned long long)(states - s0), count,
		(unsigned long long)tws.reqs, (unsigned long long)tws.failed,
		(unsigned long long)tws.bg_commits, (unsigned long long)tws.reclaimed,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

Test(pool_crash, threaded_writers_and_volume_ops, .init = setup, .fini = teardown,
     .timeout = 240)
{
	threaded_runs(1, SEEDS(10), 12, 16);
	cr_assert_eq(run.failures, 0, "%s", run.first);
}

/*
 * FNV-1a over len bytes, from h. Not a crc: a payload sector ends with the
 * crc32c of the rest, and a crc over a message and its own crc is the same
 * whatever the message.
 */
static uint64_t
fnv(uint64_t h, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

/* Everything of the loaded log a replay reads, as one hash. */
static uint64_t
log_hash(void)
{
	uint64_t c = fnv(0xcbf29ce484222325ull, base, (size_t)img_size);

	c = fnv(c, &dl.ev, sizeof(dl.ev));
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];
		int64_t h[5] = { (int64_t)w->off, (int64_t)w->len, w->fua, w->sub, w->done };

		c = fnv(c, h, sizeof(h));
		c = fnv(c, w->data, (size_t)w->len);
	}
	c = fnv(c, dl.f, (size_t)dl.nf * sizeof(*dl.f));
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];
		int64_t h[10] = { r->s.op, r->s.vol, r->s.sec, r->s.nsec, r->s.fua,
				  (int64_t)r->seq, r->sub, r->done, r->ret, r->on };

		c = fnv(c, h, sizeof(h));
	}
	return c;
}

/* A threaded workload's trace, saved and loaded back, is the same log and replays. */
Test(pool_crash, threaded_trace_round_trip, .init = setup, .fini = teardown)
{
	static struct workload wl, back;
	static struct cstate cs, cs2;
	char *file;
	uint64_t hash;
	FILE *f;

	gen_threaded(7, 12);
	wl.seed = 7;
	run_threaded(&wl);
	hash = log_hash();
	cs = (struct cstate){ .k = dl.ev / 2, .tw = -1, .rk = -1, .rtw = -1 };
	cr_assert(asprintf(&file, "%s/trace-round-trip.case", test_dir()) > 0);
	f = fopen(file, "w");
	cr_assert(f);
	write_case(f, &wl, &cs);
	fclose(f);
	cr_assert(load_case(file, &back, &cs2), "%s does not load", file);
	cr_assert(back.trace && cs2.k == cs.k);
	cr_assert_eq(log_hash(), hash, "the log loaded from %s is not the one saved", file);
	cr_assert(replay_case(file), "%s: %s", file, run.first);
	unlink(file);
	free(file);
}

/* ... with snapshots and clones of the writers' volumes too. */
Test(pool_crash, threaded_snapshots_of_written_volumes, .init = setup, .fini = teardown,
     .timeout = 240)
{
	tw_origins = true;
	threaded_runs(1, SEEDS(10), 12, 16);
	tw_origins = false;
	cr_assert_eq(run.failures, 0, "%s", run.first);
}

/*
 * Found by the threaded workloads (a clone of a writer's volume, written
 * by the volume operations' thread), and single-threaded as well: after a
 * clone of v0, a write to v0 copies its chunk away (v0's reference to the
 * shared chunk dropped, in memory), then a write to the clone finds the
 * chunk exclusive and writes it in place. A crash before the COW record
 * is durable leaves v0's map on the old chunk: v0 reads the clone's bytes
 * (here v0 sector 2 reads request 5's). The clone's write must go to a
 * copy until that record is durable (tp_unsharing).
 */
Test(pool_crash, cow_then_clone_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL, CL(0, 3),
					 W(0, 1, 1, false), W(3, 2, 1, false), FL };

	check_hand(s, 7, "cow-then-clone-in-place");
}

/*
 * The same with a TRIM: the clone trims the chunk it shares with v0 (its
 * reference gone, in memory), then v0 writes it; a crash before the
 * UNMAP is durable brings the clone's map of the chunk back, and with it
 * v0's write unless that went to a copy.
 */
Test(pool_crash, trim_then_origin_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), FL, CL(0, 3), TR(3, 0, 8, false),
					 W(0, 1, 1, false), FL };

	check_hand(s, 6, "trim-then-origin-in-place");
}

/* Fail every device op from the Nth on, in pool create. */
Test(pool_crash, fail_from_nth_create, .init = setup, .fini = teardown)
{
	uint64_t n = fail_create_nth();

	cr_assert_gt(n, 1, "create: %s", run.first);
	fprintf(stderr, "crash simulator: create succeeds from op %llu\n", (unsigned long long)n);
}

static void
check_fail_nth(const struct step *s, int n, int step, const char *name)
{
	static struct workload wl;
	uint64_t ok;

	hand(&wl, s, n, 0);
	wl.fail_step = step;
	ok = fail_from_nth(&wl, name);
	cr_assert_gt(ok, 1, "%s: %s", name, run.first);
	fprintf(stderr, "crash simulator: %s succeeds when ops fail from the %llu-th\n", name,
		(unsigned long long)ok);
}

/* ... in volume create, delete, grow, shrink, and in a commit (FLUSH, FUA). */
Test(pool_crash, fail_from_nth_volume_ops, .init = setup, .fini = teardown, .timeout = 240)
{
	static const struct step c[] = { W(0, 0, 8, false), VC(2), W(0, 8, 1, false) };
	static const struct step d[] = { VC(2), W(1, 0, 8, false), VD };
	static const struct step g[] = { VC(1), W(0, 0, 4, false), VR(4) };
	static const struct step sh[] = { VC(4), W(0, 0, 4, true), VR(1) };
	static const struct step fl[] = { W(0, 0, 8, false), W(1, 3, 2, false), FL };
	static const struct step fua[] = { W(0, 0, 8, false), W(1, 3, 2, true) };

	check_fail_nth(c, 3, 1, "volume create");
	check_fail_nth(d, 3, 2, "volume delete");
	check_fail_nth(g, 3, 2, "volume grow");
	check_fail_nth(sh, 3, 2, "volume shrink");
	check_fail_nth(fl, 3, 2, "commit by FLUSH");
	check_fail_nth(fua, 2, 1, "commit by FUA");
}

/* The saved failing states in tests/unit/pool-crash-cases, replayed. */
Test(pool_crash, saved_cases, .init = setup, .fini = teardown, .timeout = 240)
{
	int bad = replay_path(DIO_TEST_SRCDIR "/unit/pool-crash-cases");

	cr_assert_eq(bad, 0, "%d saved cases fail; the first: %s", bad, run.first);
}

/* ---- standalone: the long mode and replay ---- */

static int
usage(void)
{
	fprintf(stderr, "usage: test-pool-crash [--states N] [--seed S] [--save DIR]\n"
			"       test-pool-crash --replay FILE|DIR\n"
			"       test-pool-crash [criterion options]  (the CI tests)\n"
			"Failing states are saved to --save DIR or $DIO_CRASH_SAVE.\n");
	return 2;
}

static int
standalone(int argc, char **argv)
{
	uint64_t want = 100000, seed = (uint64_t)time(NULL);
	const char *replay = NULL;
	struct timespec t0, t1;
	static struct workload wl;
	int bad = 0;

	memset(&run, 0, sizeof(run));
	run.save_dir = getenv("DIO_CRASH_SAVE");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return usage();
		if (!strcmp(a, "--states"))
			want = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--save"))
			run.save_dir = v;
		else if (!strcmp(a, "--replay"))
			replay = v;
		else
			return usage();
		i++;
	}
	make_base();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (replay) {
		bad = replay_path(replay);
		fprintf(stderr, "crash simulator: %d cases fail\n", bad);
	} else {
		run.lng = true;
		run.rng = seed | 1;
		run.recov_every = 64;
		fprintf(stderr, "crash simulator: seed %llu, %llu states, saving to %s\n",
			(unsigned long long)seed, (unsigned long long)want,
			run.save_dir ? run.save_dir : "(nowhere: --save DIR)");
		for (uint64_t s = seed; states < want; s++) {
			char name[48];

			/*
			 * Every third one with snapshots, clones and deletes;
			 * every eighth threaded (not run twice: its order is
			 * the threads').
			 */
			if (s % 8 == 7) {
				snprintf(name, sizeof(name), "threaded seed %llu",
					 (unsigned long long)s);
				memset(&wl, 0, sizeof(wl));
				wl.seed = s;
				gen_threaded(s, 6 + (int)(s % 20));
				run_threaded(&wl);
				if (crash_states(name))
					fprintf(stderr, "crash simulator: %s fails: %s\n", name,
						failmsg);
				continue;
			}
			if (s % 3 == 2)
				gen_snap_workload(s, 6 + (int)(s % 9), s % 2, &wl);
			else
				gen_workload(s, 4 + (int)(s % 13), s % 2, &wl);
			snprintf(name, sizeof(name), "seed %llu", (unsigned long long)s);
			if (!run_twice(&wl, name)) {
				run.failures++;
				snprintf(run.first, sizeof(run.first), "%s run twice differs: %s",
					 name, failmsg);
				break;	/* nothing it finds can be trusted now */
			}
			if (crash_states(name))
				fprintf(stderr, "crash simulator: seed %llu fails: %s\n",
					(unsigned long long)s, failmsg);
		}
		bad = run.failures > 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: %llu states of %llu workloads in %.1f s, %llu failing%s%s\n",
		(unsigned long long)states, (unsigned long long)workloads,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
		(unsigned long long)run.failures, run.failures ? "; the first: " : "", run.first);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	free_base();
	return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct criterion_test_set *tests;
	int ret = 0;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--states") || !strcmp(argv[i], "--seed") ||
		    !strcmp(argv[i], "--save") || !strcmp(argv[i], "--replay"))
			return standalone(argc, argv);
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		ret = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return ret;
}
