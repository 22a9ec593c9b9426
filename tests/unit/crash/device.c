/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's device: logs of device writes and flushes, the crash
 * images built from them, the recording engine under the dio engine, and the
 * metadata hooks (recording, and a device in memory). See crash.h.
 */

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "crash.h"
#include "helper.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

/* ---- device logs ---- */

struct dlog dl;		/* the workload's device */
struct dlog rl;		/* a recovery's device */

/*
 * One event order for all threads: device ops, their completions and the
 * requests' submissions and replies take their numbers under evlock, so a
 * threaded workload's log is one order the crash points walk, whatever
 * thread (writer, committer, reclaim, volume operations) made the event.
 */
pthread_mutex_t evlock = PTHREAD_MUTEX_INITIALIZER;
static bool log_open(const struct dlog *L);

void
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
void
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
int
volatile_set(const struct dlog *L, int k, int *vol)
{
	int nv = 0;

	for (int i = 0; i < L->nw; i++)
		if (L->w[i].sub < k && !durable(L, i, k))
			vol[nv++] = i;
	return nv;
}

/* dst = src + the writes of L durable at k, those in sel, and the torn one. */
void
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

struct rec_state rec;

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

uint64_t
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
struct dio_ctx *
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

struct late_derive late;

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
	if (late.on && late.under) {
		/* submitted while it is under way: they see its records, not yet durable */
		late.on = false;
		late.under();
	} else if (late.on) {
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

const struct dio_tpool_io rec_io_hooks = {
	.pread = rec_pread, .pwrite = rec_pwrite, .flush = rec_fsync,
};

int
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

int
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

int
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
