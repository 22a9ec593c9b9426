/* SPDX-License-Identifier: MIT */
/*
 * The block cache (cache.h): a volume that does its own I/O (vol_ops->submit)
 * over a lower volume, after fs/iomap/buffered-io.c.
 *
 * State: units of 64 KiB (CU_SIZE) in a hash table and an LRU list, each
 * with a bit per block for uptodate and for dirty (dirty implies
 * uptodate), and a sequence number that moves whenever its data changes.
 * A unit with a dirty block is never evicted; only the writeback thread
 * clears dirty bits, and only for blocks whose unit did not change while
 * their copy was being written (else they stay dirty for the next pass).
 *
 * Who writes what to the lower volume, so that no older copy of a block
 * can land after a newer one:
 * - dirty blocks: the writeback thread alone, one write at a time;
 * - write-through (FUA, WRITETHROUGH/NOCACHE writes, ZERO, TRIM): the
 *   submitting thread when no block of the range is dirty; else the
 *   writeback thread, after writing those blocks back. Either way the
 *   clean cached blocks of the range are dropped before and after the
 *   write, and dirty ones keep the newest data.
 * - reads that miss fill the cache only if no write-through ran while
 *   they read (wt_inflight at the start, mod_seq at the end): a block
 *   uptodate at the start is copied then, under the lock, so a block that
 *   is written back and evicted meanwhile cannot come back stale.
 *
 * Lock: c->lock guards everything in struct dio_cache below it, units
 * and writers (struct dio_cache_writer). It is a leaf: no other lock is
 * taken and no I/O is submitted while holding it (dio_submit takes the
 * lower volume's locks).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dio/cache.h"

#define CU_SHIFT	16
#define CU_SIZE		(1u << CU_SHIFT)
#define WB_MAX		(1u << 20)	/* bytes per writeback write */
#define WB_TICK_MS	200
#define WB_ARENA	(4u << 20)	/* the writeback ctx's pinned pool */

struct cunit {
	uint64_t idx;			/* pos >> CU_SHIFT */
	struct cunit *hnext;		/* hash chain */
	struct cunit *prev, *next;	/* LRU: c->lru.next is the most recent */
	uint64_t uptodate, dirty;	/* bit b: block b of the unit */
	uint64_t seq;			/* moves whenever data changes */
	uint64_t dirtied_ns;		/* when it became dirty; 0 when clean */
	uint8_t *data;			/* CU_SIZE bytes */
};

enum cop_kind {
	COP_READ = 0,
	COP_WT,		/* write-through: WRITE, ZERO, TRIM */
	COP_FLUSH,
	COP_TWRITE,	/* a writeback WRITE waiting for room */
	COP_RMW,	/* a writeback WRITE reading the blocks it covers in part */
	COP_SYNC,	/* dio_cache_sync: write back everything, flush, wake the caller */
};

struct cop;

/* One request to the lower volume on behalf of an op. */
struct csub {
	struct dio_req d;		/* d.priv = this */
	struct cop *op;
};

struct cop {
	struct dio_cache *c;
	struct dio_vol_io *vio;
	enum cop_kind kind;
	struct cop *next;		/* writeback queue */
	int res;			/* first error */
	unsigned int pending;		/* subs in flight + 1 for the submitter */
	uint64_t seq0;			/* c->mod_seq when a READ started */
	bool fill;			/* READ: keep what is read */
	uint64_t wb_seq0;		/* RMW: c->wb_seq when its reads started */
	uint8_t *bounce;		/* RMW: the blocks read, bs bytes each */
	bool finished;			/* COP_SYNC: res is set (under c->lock) */
	unsigned int nsub, capsub;
	struct csub *subs;
};

struct dio_cache {
	struct dio_volume vol;		/* first: the cache volume itself */
	struct dio_volume *lower;
	uint32_t bs;			/* block size */
	unsigned int bpu;		/* blocks per unit (<= 64) */
	uint64_t max_units, dirty_limit;	/* dirty_limit in blocks */
	uint64_t expire_ns;
	int efd;			/* the volume's event fd: never readable */
	struct dio_engine *engine;	/* given for the writeback ctx, until it owns it */
	struct dio_ctx_opts ctx_opts;
	pthread_t thread;
	struct dio_ctx *wbctx;		/* the writeback thread's */
	int start_ret;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* wakes the writeback thread */
	pthread_cond_t sync_cond;	/* wakes dio_cache_sync callers */
	struct cunit **hash;
	uint64_t hmask;
	struct cunit lru;
	uint64_t nunits, ndirty_units, ndirty;	/* ndirty in blocks */
	uint64_t mod_seq;		/* moves as write-through starts and ends */
	uint64_t wb_seq;		/* moves as each writeback write ends */
	unsigned int wt_inflight;
	uint64_t err_seq;		/* writeback writes that failed */
	int err;			/* the last one's -errno */
	struct cop *q_head, **q_tail;	/* for the writeback thread */
	bool stop, kick;
	struct dio_cache_stats st;	/* counters (size/used/dirty computed) */
};

static uint64_t
cache_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct dio_cache *
cache_of(struct dio_volume *vol)
{
	return (struct dio_cache *)vol;
}

/* ---- units (under c->lock) ---- */

static struct cunit *
cu_find(struct dio_cache *c, uint64_t idx)
{
	struct cunit *u;

	for (u = c->hash[idx & c->hmask]; u; u = u->hnext)
		if (u->idx == idx)
			return u;
	return NULL;
}

static void
cu_lru_del(struct cunit *u)
{
	u->prev->next = u->next;
	u->next->prev = u->prev;
}

static void
cu_lru_front(struct dio_cache *c, struct cunit *u)
{
	u->next = c->lru.next;
	u->prev = &c->lru;
	c->lru.next->prev = u;
	c->lru.next = u;
}

static void
cu_touch(struct dio_cache *c, struct cunit *u)
{
	if (c->lru.next != u) {
		cu_lru_del(u);
		cu_lru_front(c, u);
	}
}

static void
cu_free(struct dio_cache *c, struct cunit *u)
{
	struct cunit **pp = &c->hash[u->idx & c->hmask];

	while (*pp != u)
		pp = &(*pp)->hnext;
	*pp = u->hnext;
	cu_lru_del(u);
	free(u->data);
	free(u);
	c->nunits--;
}

/* The unit idx, made (evicting the least recent clean one if need be); NULL if none is free. */
static struct cunit *
cu_get(struct dio_cache *c, uint64_t idx)
{
	struct cunit *u = cu_find(c, idx), *v;

	if (u)
		return u;
	if (c->nunits >= c->max_units) {
		for (v = c->lru.prev; v != &c->lru && v->dirty; v = v->prev)
			;
		if (v == &c->lru)
			return NULL;
		cu_free(c, v);
	}
	u = calloc(1, sizeof(*u));
	if (!u || posix_memalign((void **)&u->data, 4096, CU_SIZE)) {
		free(u);
		return NULL;
	}
	u->idx = idx;
	u->hnext = c->hash[idx & c->hmask];
	c->hash[idx & c->hmask] = u;
	cu_lru_front(c, u);
	c->nunits++;
	if (c->nunits * CU_SIZE > c->st.peak)
		c->st.peak = c->nunits * CU_SIZE;
	return u;
}

/* The end of the block that starts at bpos (the volume may end inside it). */
static uint64_t
blk_end(const struct dio_cache *c, uint64_t bpos)
{
	uint64_t e = bpos + c->bs;

	return e < c->vol.size ? e : c->vol.size;
}

/* Blocks of unit idx that overlap [pos, end), or (whole) lie inside it. */
static uint64_t
cu_mask(const struct dio_cache *c, uint64_t idx, uint64_t pos, uint64_t end, bool whole)
{
	uint64_t m = 0, base = idx << CU_SHIFT;

	for (unsigned int b = 0; b < c->bpu; b++) {
		uint64_t bp = base + (uint64_t)b * c->bs, be;

		if (bp >= c->vol.size)
			break;
		be = blk_end(c, bp);
		if (whole ? (bp >= pos && be <= end) : (bp < end && be > pos))
			m |= 1ull << b;
	}
	return m;
}

static bool
cache_range_dirty(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	if (!c->ndirty)
		return false;
	for (uint64_t i = pos >> CU_SHIFT; i <= (end - 1) >> CU_SHIFT; i++) {
		struct cunit *u = cu_find(c, i);

		if (u && (u->dirty & cu_mask(c, i, pos, end, false)))
			return true;
	}
	return false;
}

/* Drop the clean cached blocks overlapping [pos, end); dirty ones stay. */
static void
cache_drop_clean(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	if (!c->nunits)
		return;
	for (uint64_t i = pos >> CU_SHIFT; i <= (end - 1) >> CU_SHIFT; i++) {
		struct cunit *u = cu_find(c, i);

		if (!u)
			continue;
		u->uptodate &= ~(cu_mask(c, i, pos, end, false) & ~u->dirty);
		u->seq++;
		if (!u->uptodate)
			cu_free(c, u);
	}
}

static bool
is_zero(const uint8_t *p, size_t n)
{
	return !n || (!p[0] && !memcmp(p, p + 1, n - 1));
}

/* ---- ops ---- */

static struct cop *
cop_new(struct dio_cache *c, struct dio_vol_io *vio, enum cop_kind kind)
{
	struct cop *op = calloc(1, sizeof(*op));

	if (op) {
		op->c = c;
		op->vio = vio;
		op->kind = kind;
		op->pending = 1;
	}
	return op;
}

static void
cop_free(struct cop *op)
{
	free(op->bounce);
	free(op->subs);
	free(op);
}

/* A request to the lower volume for op; NULL on out of memory. */
static struct csub *
cop_sub(struct cop *op)
{
	if (op->nsub == op->capsub) {
		unsigned int cap = op->capsub ? 2 * op->capsub : 2;
		struct csub *s = realloc(op->subs, cap * sizeof(*s));

		if (!s)
			return NULL;
		op->subs = s;
		op->capsub = cap;
	}
	memset(&op->subs[op->nsub], 0, sizeof(op->subs[0]));
	op->subs[op->nsub].op = op;
	return &op->subs[op->nsub++];
}

/* Hand an op to the writeback thread. */
static void
cache_queue(struct dio_cache *c, struct cop *op)
{
	pthread_mutex_lock(&c->lock);
	op->next = NULL;
	*c->q_tail = op;
	c->q_tail = &op->next;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* ---- READ ---- */

/* Keep the whole, non-zero blocks a READ of [pos, pos+len) into buf brought in. */
static void
cache_fill(struct dio_cache *c, uint64_t pos, uint64_t len, const uint8_t *buf, uint64_t seq0)
{
	uint64_t end = pos + len, bp = (pos + c->bs - 1) / c->bs * c->bs;

	pthread_mutex_lock(&c->lock);
	if (c->mod_seq != seq0)
		goto out;	/* a write-through ran meanwhile: what we read may be old */
	for (; bp < end; bp += c->bs) {
		uint64_t be = blk_end(c, bp), idx = bp >> CU_SHIFT;
		uint64_t bit = 1ull << ((bp & (CU_SIZE - 1)) / c->bs);
		struct cunit *u;

		if (be > end)
			break;
		if (is_zero(buf + (bp - pos), be - bp))
			continue;	/* holes and zeros take no memory */
		u = cu_find(c, idx);
		if (u && (u->uptodate & bit))
			continue;
		u = cu_get(c, idx);
		if (!u)
			break;
		memcpy(u->data + (bp & (CU_SIZE - 1)), buf + (bp - pos), be - bp);
		u->uptodate |= bit;
		u->seq++;
	}
out:
	pthread_mutex_unlock(&c->lock);
}

static void
cop_put_read(struct cop *op)
{
	if (--op->pending)
		return;
	dio_vol_io_done(op->vio->ctx, op->vio, op->res);
	cop_free(op);
}

static void
cache_read_done(struct dio_req *d, int ret)
{
	struct csub *s = d->priv;
	struct cop *op = s->op;

	if (ret < 0 && !op->res)
		op->res = ret;
	else if (ret == 0 && op->fill)
		cache_fill(op->c, d->pos, d->len, d->buf, op->seq0);
	cop_put_read(op);
}

static int
cache_read(struct dio_cache *c, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	uint64_t pos = req->pos, end = req->pos + req->len, p, e;
	uint8_t *buf = req->buf;
	struct cop *op = cop_new(c, vio, COP_READ);
	struct csub *s = NULL;

	if (!op)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, idx = bp >> CU_SHIFT;
		struct cunit *u = cu_find(c, idx);

		e = blk_end(c, bp) < end ? blk_end(c, bp) : end;
		if (u && (u->uptodate & (1ull << ((bp & (CU_SIZE - 1)) / c->bs)))) {
			memcpy(buf + (p - pos), u->data + (p & (CU_SIZE - 1)), e - p);
			cu_touch(c, u);
			continue;
		}
		if (s && s->d.pos + s->d.len == p) {
			s->d.len += e - p;
			continue;
		}
		s = cop_sub(op);
		if (!s) {
			pthread_mutex_unlock(&c->lock);
			cop_free(op);
			return -ENOMEM;
		}
		s->d.pos = p;
		s->d.len = e - p;
	}
	op->fill = !(req->flags & DIO_REQ_NOCACHE) && !c->wt_inflight;
	op->seq0 = c->mod_seq;
	if (op->nsub)
		c->st.misses++;
	else
		c->st.hits++;
	pthread_mutex_unlock(&c->lock);

	for (unsigned int i = 0; i < op->nsub; i++) {
		struct dio_req *d = &op->subs[i].d;
		int ret;

		d->op = DIO_REQ_READ;
		d->buf = buf + (d->pos - pos);
		d->dbuf = req->dbuf;
		d->done = cache_read_done;
		d->priv = &op->subs[i];
		op->pending++;
		ret = dio_submit(vio->ctx, c->lower, d);
		if (ret < 0) {
			op->pending--;
			if (!op->res)
				op->res = ret;
			break;
		}
	}
	cop_put_read(op);	/* done() is deferred even when nothing was read */
	return 0;
}

/* ---- write-through (WRITE, ZERO, TRIM) ---- */

/* The lower volume's request for a write-through of req. */
static void
cache_wt_req(struct dio_req *d, const struct dio_req *req)
{
	memset(d, 0, sizeof(*d));
	d->op = req->op;
	d->flags = req->flags & ~(uint32_t)DIO_REQ_CACHE_HINTS;
	d->pos = req->pos;
	d->len = req->len;
	d->buf = req->buf;
}

static void
cache_wt_begin(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	cache_drop_clean(c, pos, end);
	c->mod_seq++;
	c->wt_inflight++;
}

static void
cache_wt_end(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	pthread_mutex_lock(&c->lock);
	cache_drop_clean(c, pos, end);	/* a block written back and kept meanwhile */
	c->wt_inflight--;
	c->mod_seq++;
	pthread_mutex_unlock(&c->lock);
}

static void
cache_wt_done(struct dio_req *d, int ret)
{
	struct csub *s = d->priv;
	struct cop *op = s->op;

	cache_wt_end(op->c, d->pos, d->pos + d->len);
	dio_vol_io_done(op->vio->ctx, op->vio, ret);
	cop_free(op);
}

static int
cache_write_through(struct dio_cache *c, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	uint64_t end = req->pos + req->len;
	struct cop *op = cop_new(c, vio, COP_WT);
	struct csub *s;
	int ret;

	if (!op || !(s = cop_sub(op))) {
		free(op);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	if (cache_range_dirty(c, req->pos, end)) {
		pthread_mutex_unlock(&c->lock);
		cache_queue(c, op);	/* after the dirty blocks, in order */
		return 0;
	}
	cache_wt_begin(c, req->pos, end);
	pthread_mutex_unlock(&c->lock);
	cache_wt_req(&s->d, req);
	s->d.dbuf = req->dbuf;
	s->d.done = cache_wt_done;
	s->d.priv = s;
	ret = dio_submit(vio->ctx, c->lower, &s->d);
	if (ret < 0) {
		cache_wt_end(c, req->pos, end);
		cop_free(op);
	}
	return ret;
}

/* ---- writeback WRITE ---- */

/*
 * Copy a WRITE into the cache as dirty blocks, if it may: every block it
 * covers in part is uptodate, and there is room. Under c->lock. 0, or -EAGAIN
 * (no room: writeback first) or -EOPNOTSUPP (a partial block is not uptodate).
 */
static int
cache_apply_write(struct dio_cache *c, const struct dio_req *req)
{
	uint64_t pos = req->pos, end = pos + req->len, p, e, now = 0;
	uint64_t first = pos >> CU_SHIFT, last = (end - 1) >> CU_SHIFT;
	uint64_t nblocks = (end + c->bs - 1) / c->bs - pos / c->bs;
	const uint8_t *buf = req->buf;

	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, be = blk_end(c, bp);
		struct cunit *u;

		e = be < end ? be : end;
		if (p == bp && e == be)
			continue;
		u = cu_find(c, bp >> CU_SHIFT);
		if (!u || !(u->uptodate & (1ull << ((bp & (CU_SIZE - 1)) / c->bs))))
			return -EOPNOTSUPP;
	}
	if (last - first + 1 + c->ndirty_units > c->max_units || c->ndirty + nblocks > c->dirty_limit)
		return -EAGAIN;
	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, be = blk_end(c, bp);
		uint64_t bit = 1ull << ((bp & (CU_SIZE - 1)) / c->bs);
		struct cunit *u = cu_get(c, bp >> CU_SHIFT);

		e = be < end ? be : end;
		if (!u)
			return -EAGAIN;	/* not reached: room was counted above */
		memcpy(u->data + (p & (CU_SIZE - 1)), buf + (p - pos), e - p);
		u->uptodate |= bit;
		if (!u->dirty) {
			c->ndirty_units++;
			u->dirtied_ns = now ? now : (now = cache_now_ns());
		}
		if (!(u->dirty & bit)) {
			u->dirty |= bit;
			c->ndirty++;
		}
		u->seq++;
		cu_touch(c, u);
	}
	if (req->writer && !req->writer->wrote) {
		req->writer->wrote = true;
		req->writer->seen = c->err_seq;
	}
	if (c->ndirty > c->dirty_limit / 2 && !c->kick) {
		c->kick = true;
		pthread_cond_signal(&c->cond);
	}
	return 0;
}

static int cache_write(struct dio_cache *c, struct dio_vol_io *vio, bool may_rmw);

/*
 * The blocks an RMW read arrived: keep them (clean) unless they may be
 * older than what the device or the cache has now, then try the WRITE again.
 */
static void
cache_rmw_done(struct dio_req *d, int ret)
{
	struct csub *s = d->priv;
	struct cop *op = s->op;
	struct dio_cache *c = op->c;
	struct dio_vol_io *vio = op->vio;
	bool again = false;

	if (ret < 0 && !op->res)
		op->res = ret;
	if (--op->pending)
		return;
	pthread_mutex_lock(&c->lock);
	/*
	 * Not after a write-through, nor a writeback (a block dirtied, written
	 * back and evicted while we read could have been read old).
	 */
	if (!op->res && c->mod_seq == op->seq0 && c->wb_seq == op->wb_seq0) {
		for (unsigned int i = 0; i < op->nsub; i++) {
			const struct dio_req *r = &op->subs[i].d;
			uint64_t bit = 1ull << ((r->pos & (CU_SIZE - 1)) / c->bs);
			struct cunit *u = cu_get(c, r->pos >> CU_SHIFT);

			if (!u)
				break;
			if (!(u->uptodate & bit)) {
				memcpy(u->data + (r->pos & (CU_SIZE - 1)), r->buf, r->len);
				u->uptodate |= bit;
				u->seq++;
			}
		}
		again = true;
	}
	pthread_mutex_unlock(&c->lock);
	cop_free(op);
	/* Once: a block evicted again meanwhile sends the WRITE through. */
	ret = again ? cache_write(c, vio, false) : cache_write_through(c, vio);
	if (ret < 0)
		dio_vol_io_done(vio->ctx, vio, ret);
}

/* Read the blocks req covers in part and that are not uptodate, then write. 0 or -errno. */
static int
cache_rmw(struct dio_cache *c, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	uint64_t ends[2] = { req->pos, req->pos + req->len - 1 };
	struct cop *op = cop_new(c, vio, COP_RMW);
	int ret;

	if (!op || posix_memalign((void **)&op->bounce, 4096, 2 * (size_t)c->bs)) {
		free(op);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	op->seq0 = c->mod_seq;
	op->wb_seq0 = c->wb_seq;
	for (unsigned int i = 0; i < 2; i++) {
		uint64_t bp = ends[i] / c->bs * c->bs, be = blk_end(c, bp);
		struct cunit *u = cu_find(c, bp >> CU_SHIFT);
		struct csub *s;

		if (bp >= req->pos && be <= req->pos + req->len)
			continue;	/* covered whole */
		if (u && (u->uptodate & (1ull << ((bp & (CU_SIZE - 1)) / c->bs))))
			continue;
		if (op->nsub && op->subs[0].d.pos == bp)
			continue;	/* head and tail in one block */
		s = cop_sub(op);
		if (!s) {
			pthread_mutex_unlock(&c->lock);
			cop_free(op);
			return -ENOMEM;
		}
		s->d = (struct dio_req){ .op = DIO_REQ_READ, .pos = bp, .len = be - bp,
					 .buf = op->bounce + (size_t)i * c->bs,
					 .done = cache_rmw_done };
	}
	if (c->wt_inflight)
		op->seq0--;	/* a write-through is running: what we read may be old */
	pthread_mutex_unlock(&c->lock);
	if (!op->nsub) {	/* uptodate meanwhile */
		cop_free(op);
		return cache_write(c, vio, false);
	}
	op->pending = op->nsub;
	for (unsigned int i = 0; i < op->nsub; i++) {
		op->subs[i].d.priv = &op->subs[i];
		ret = dio_submit(vio->ctx, c->lower, &op->subs[i].d);
		if (ret < 0) {
			if (i == 0) {
				cop_free(op);
				return ret;
			}
			op->res = ret;	/* the one in flight ends it: written through */
			op->pending -= op->nsub - i;
			break;
		}
	}
	return 0;
}

static int
cache_write(struct dio_cache *c, struct dio_vol_io *vio, bool may_rmw)
{
	const struct dio_req *req = vio->req;
	struct cop *op;
	int ret;

	if (req->flags & (DIO_REQ_FUA | DIO_REQ_WRITETHROUGH | DIO_REQ_NOCACHE))
		return cache_write_through(c, vio);
	pthread_mutex_lock(&c->lock);
	ret = cache_apply_write(c, req);
	if (ret == -EAGAIN)
		c->st.throttled++;
	pthread_mutex_unlock(&c->lock);
	if (ret == 0) {
		dio_vol_io_done(vio->ctx, vio, 0);
		return 0;
	}
	if (ret == -EOPNOTSUPP)	/* as iomap: read only the blocks written in part */
		return may_rmw ? cache_rmw(c, vio) : cache_write_through(c, vio);
	op = cop_new(c, vio, COP_TWRITE);	/* writers wait; memory stays bounded */
	if (!op)
		return -ENOMEM;
	cache_queue(c, op);
	return 0;
}

/* ---- FLUSH ---- */

/* What a FLUSH by w reports, given the lower flush's result ret (under c->lock). */
static int
cache_flush_result(struct dio_cache *c, struct dio_cache_writer *w, int ret, bool wb_failed)
{
	if (w) {
		if (w->wrote && w->seen != c->err_seq) {
			if (!ret)
				ret = c->err;
			w->seen = c->err_seq;
		}
	} else if (wb_failed && !ret) {
		ret = c->err;
	}
	return ret;
}

static void
cache_flush_done(struct dio_req *d, int ret)
{
	struct csub *s = d->priv;
	struct cop *op = s->op;
	struct dio_cache *c = op->c;

	pthread_mutex_lock(&c->lock);
	ret = cache_flush_result(c, op->vio->req->writer, ret, false);
	pthread_mutex_unlock(&c->lock);
	dio_vol_io_done(op->vio->ctx, op->vio, ret);
	cop_free(op);
}

static int
cache_flush(struct dio_cache *c, struct dio_vol_io *vio)
{
	struct cop *op = cop_new(c, vio, COP_FLUSH);
	struct csub *s;
	bool dirty;
	int ret;

	if (!op || !(s = cop_sub(op))) {
		free(op);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	dirty = c->ndirty > 0;
	pthread_mutex_unlock(&c->lock);
	if (dirty) {
		cache_queue(c, op);
		return 0;
	}
	/* Nothing dirty, so no writeback is under way either: flush here. */
	s->d.op = DIO_REQ_FLUSH;
	s->d.done = cache_flush_done;
	s->d.priv = s;
	ret = dio_submit(vio->ctx, c->lower, &s->d);
	if (ret < 0)
		cop_free(op);
	return ret;
}

/* ---- the writeback thread ---- */

struct wb_ext {
	uint64_t idx, seq;
	uint64_t mask;
	unsigned int b0, nb;	/* first block, blocks */
};

static int
wb_ext_cmp(const void *a, const void *b)
{
	const struct wb_ext *x = a, *y = b;

	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return (int)x->b0 - (int)y->b0;
}

static uint64_t
wb_ext_pos(const struct dio_cache *c, const struct wb_ext *x)
{
	return (x->idx << CU_SHIFT) + (uint64_t)x->b0 * c->bs;
}

static uint64_t
wb_ext_len(const struct dio_cache *c, const struct wb_ext *x)
{
	uint64_t p = wb_ext_pos(c, x);

	return blk_end(c, p + (uint64_t)(x->nb - 1) * c->bs) - p;
}

/*
 * Write one merged run x[0..n) (contiguous on the volume) from the cache.
 * 0 or -errno; the blocks written stay dirty unless it worked and their
 * unit did not change meanwhile.
 */
static int
wb_write(struct dio_cache *c, struct wb_ext *x, unsigned int n, uint64_t pos, uint64_t len)
{
	struct dio_buf *b = dio_buf_get(dio_ctx_pool(c->wbctx), len);
	struct dio_req d = { .op = DIO_REQ_WRITE, .pos = pos, .len = len };
	int ret;

	if (!b)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	for (unsigned int i = 0; i < n; i++) {
		struct cunit *u = cu_find(c, x[i].idx);	/* dirty: still there */

		x[i].seq = u->seq;
		memcpy((uint8_t *)b->data + (wb_ext_pos(c, &x[i]) - pos),
		       u->data + (uint64_t)x[i].b0 * c->bs, wb_ext_len(c, &x[i]));
	}
	pthread_mutex_unlock(&c->lock);
	d.buf = b->data;
	d.dbuf = b;
	ret = dio_submit_sync(c->wbctx, c->lower, &d);
	dio_buf_put(b);
	pthread_mutex_lock(&c->lock);
	c->st.wb_ios++;
	c->wb_seq++;
	if (ret < 0) {
		c->st.wb_errors++;
		c->err_seq++;
		c->err = ret;
	} else {
		c->st.wb_bytes += len;
		for (unsigned int i = 0; i < n; i++) {
			struct cunit *u = cu_find(c, x[i].idx);
			uint64_t m = u->dirty & x[i].mask;

			if (u->seq != x[i].seq)
				continue;	/* written to meanwhile: next pass */
			u->dirty &= ~m;
			c->ndirty -= (uint64_t)__builtin_popcountll(m);
			if (!u->dirty) {
				c->ndirty_units--;
				u->dirtied_ns = 0;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Write back the blocks of [pos, end) dirty now, merged. 0 or the first -errno. */
static int
wb_range(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	struct wb_ext *x = NULL;
	size_t n = 0, cap = 0, i, j;
	int ret = 0, r;

	pthread_mutex_lock(&c->lock);
	for (struct cunit *u = c->lru.next; u != &c->lru; u = u->next) {
		uint64_t m;
		unsigned int b = 0;

		if (!u->dirty || u->idx < pos >> CU_SHIFT || u->idx > (end - 1) >> CU_SHIFT)
			continue;
		m = u->dirty & cu_mask(c, u->idx, pos, end, false);
		while (b < c->bpu) {
			unsigned int b0;

			if (!(m & (1ull << b))) {
				b++;
				continue;
			}
			for (b0 = b; b < c->bpu && (m & (1ull << b)); b++)
				;
			if (n == cap) {
				struct wb_ext *nx = realloc(x, (cap = cap ? 2 * cap : 64) * sizeof(*x));

				if (!nx) {
					pthread_mutex_unlock(&c->lock);
					free(x);
					return -ENOMEM;
				}
				x = nx;
			}
			x[n++] = (struct wb_ext){
				.idx = u->idx, .b0 = b0, .nb = b - b0,
				.mask = (b - b0 == 64 ? ~0ull : ((1ull << (b - b0)) - 1)) << b0,
			};
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (n)
		qsort(x, n, sizeof(*x), wb_ext_cmp);
	/* The ioend idea: extents that touch become one write, up to WB_MAX. */
	for (i = 0; i < n; i = j) {
		uint64_t p0 = wb_ext_pos(c, &x[i]), len = wb_ext_len(c, &x[i]);

		for (j = i + 1; j < n && wb_ext_pos(c, &x[j]) == p0 + len &&
				len + wb_ext_len(c, &x[j]) <= WB_MAX; j++)
			len += wb_ext_len(c, &x[j]);
		r = wb_write(c, &x[i], (unsigned int)(j - i), p0, len);
		if (r < 0 && !ret)
			ret = r;
	}
	free(x);
	return ret;
}

/* Whether data has been dirty longer than expire_ns, or there is too much. */
static bool
wb_due(struct dio_cache *c, uint64_t now)
{
	if (c->kick || c->ndirty > c->dirty_limit / 2)
		return true;
	if (!c->ndirty)
		return false;
	for (struct cunit *u = c->lru.next; u != &c->lru; u = u->next)
		if (u->dirty && now - u->dirtied_ns >= c->expire_ns)
			return true;
	return false;
}

/* Run a queued write-through on the writeback thread, after the dirty blocks of its range. */
static int
wb_do_wt(struct dio_cache *c, const struct dio_req *req)
{
	uint64_t end = req->pos + req->len;
	struct dio_req d;
	int ret;

	ret = wb_range(c, req->pos, end);
	if (ret < 0)
		return ret;	/* the older data could not go first */
	pthread_mutex_lock(&c->lock);
	cache_wt_begin(c, req->pos, end);
	pthread_mutex_unlock(&c->lock);
	cache_wt_req(&d, req);
	ret = dio_submit_sync(c->wbctx, c->lower, &d);
	cache_wt_end(c, req->pos, end);
	return ret;
}

static void
wb_do(struct dio_cache *c, struct cop *op)
{
	const struct dio_req *req = op->vio ? op->vio->req : NULL;
	struct dio_req d = { .op = DIO_REQ_FLUSH };
	int ret = 0, wret;

	switch (op->kind) {
	case COP_WT:
		ret = wb_do_wt(c, req);
		break;
	case COP_TWRITE:
		(void)wb_range(c, 0, c->vol.size);
		pthread_mutex_lock(&c->lock);
		ret = cache_apply_write(c, req);
		pthread_mutex_unlock(&c->lock);
		if (ret < 0)	/* bigger than the cache, or writeback fails: write it through */
			ret = wb_do_wt(c, req);
		break;
	case COP_FLUSH:
		wret = wb_range(c, 0, c->vol.size);
		ret = dio_submit_sync(c->wbctx, c->lower, &d);
		pthread_mutex_lock(&c->lock);
		ret = cache_flush_result(c, req->writer, ret, wret < 0);
		pthread_mutex_unlock(&c->lock);
		break;
	case COP_SYNC:
		wret = wb_range(c, 0, c->vol.size);
		ret = dio_submit_sync(c->wbctx, c->lower, &d);
		pthread_mutex_lock(&c->lock);
		op->res = wret < 0 ? wret : ret;
		op->finished = true;
		pthread_cond_broadcast(&c->sync_cond);
		pthread_mutex_unlock(&c->lock);
		return;	/* the caller frees op */
	case COP_READ:
	case COP_RMW:
		ret = -EINVAL;	/* never queued */
		break;
	}
	dio_vol_io_done(NULL, op->vio, ret);
	cop_free(op);
}

static void *
wb_thread(void *arg)
{
	struct dio_cache *c = arg;
	struct cop *op;
	int ret;

	if (c->engine)
		ret = dio_ctx_create_engine(c->engine, &c->ctx_opts, &c->wbctx);
	else
		ret = dio_ctx_create(&c->ctx_opts, &c->wbctx);
	c->engine = NULL;
	pthread_mutex_lock(&c->lock);
	c->start_ret = ret;
	c->started = true;
	pthread_cond_broadcast(&c->cond);
	if (ret < 0) {
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	for (;;) {
		if ((op = c->q_head)) {
			c->q_head = op->next;
			if (!c->q_head)
				c->q_tail = &c->q_head;
			pthread_mutex_unlock(&c->lock);
			wb_do(c, op);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->stop)
			break;
		if (wb_due(c, cache_now_ns())) {
			c->kick = false;
			pthread_mutex_unlock(&c->lock);
			(void)wb_range(c, 0, c->vol.size);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WB_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	/* Released: nothing is in flight any more; write back what is left (twice on error). */
	if (wb_range(c, 0, c->vol.size) < 0)
		(void)wb_range(c, 0, c->vol.size);
	if (c->ndirty)
		dio_log(DIO_LOG_ERR, "cache: %llu bytes of dirty data could not be written back",
			(unsigned long long)c->ndirty * c->bs);
	else {
		struct dio_req d = { .op = DIO_REQ_FLUSH };

		if (dio_submit_sync(c->wbctx, c->lower, &d) < 0)
			dio_log(DIO_LOG_ERR, "cache: the final flush failed");
	}
	dio_log(DIO_LOG_INFO, "cache: %llu of %llu bytes at most were used; %llu READs hit, "
		"%llu missed; %llu bytes written back, %llu writes throttled",
		(unsigned long long)c->st.peak, (unsigned long long)c->st.size,
		(unsigned long long)c->st.hits, (unsigned long long)c->st.misses,
		(unsigned long long)c->st.wb_bytes, (unsigned long long)c->st.throttled);
	dio_ctx_destroy(c->wbctx);
	c->wbctx = NULL;
	return NULL;
}

/* ---- the volume ---- */

static int
cache_submit(struct dio_volume *vol, struct dio_vol_io *vio)
{
	struct dio_cache *c = cache_of(vol);

	switch (vio->req->op) {
	case DIO_REQ_READ:
		return cache_read(c, vio);
	case DIO_REQ_WRITE:
		return cache_write(c, vio, true);
	case DIO_REQ_ZERO:
	case DIO_REQ_TRIM:
		return cache_write_through(c, vio);
	case DIO_REQ_FLUSH:
		return cache_flush(c, vio);
	default:
		return -EINVAL;
	}
}

static int
cache_event_fd(struct dio_volume *vol)
{
	return cache_of(vol)->efd;
}

/* Completions arrive as deferred or posted work (dio_vol_io_done): nothing to poll. */
static void
cache_poll(struct dio_volume *vol, struct dio_ctx *ctx)
{
}

static int
cache_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
		uint64_t len, struct dio_io *io)
{
	return -EOPNOTSUPP;	/* requests come whole to cache_submit */
}

/*
 * Block status: the lower volume's map, except that dirty blocks are data
 * (a hole under them is not what a READ returns).
 */
static int
cache_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
		struct dio_extent *ext)
{
	struct dio_cache *c = cache_of(vol);
	uint64_t end, p, first_dirty = UINT64_MAX, dirty_end = 0;
	int ret;

	ret = c->lower->map_ops->map_begin(c->lower, pos, len, flags, ext);
	if (ret < 0)
		return ret;
	/* A report: nothing for the lower volume to keep between begin and end. */
	if (c->lower->map_ops->map_end)
		c->lower->map_ops->map_end(c->lower, ext, ext->length, flags);
	if (ext->type == DIO_EXT_MAPPED)
		return 0;
	end = ext->pos + ext->length;
	pthread_mutex_lock(&c->lock);
	for (p = pos / c->bs * c->bs; p < end && c->ndirty; p += c->bs) {
		struct cunit *u = cu_find(c, p >> CU_SHIFT);
		bool d = u && (u->dirty & (1ull << ((p & (CU_SIZE - 1)) / c->bs)));

		if (d && first_dirty == UINT64_MAX)
			first_dirty = p;
		if (d)
			dirty_end = blk_end(c, p);
		else if (first_dirty != UINT64_MAX)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	if (first_dirty == UINT64_MAX)
		return 0;
	if (first_dirty > pos) {
		ext->length = first_dirty - pos;	/* the hole up to the dirty block */
	} else {
		ext->type = DIO_EXT_MAPPED;
		ext->length = (dirty_end < end ? dirty_end : end) - pos;
	}
	ext->flags = 0;
	return 0;
}

static int
cache_map_end(struct dio_volume *vol, const struct dio_extent *ext, uint64_t done,
	      unsigned int flags)
{
	return 0;	/* the lower extent was ended in cache_map_begin */
}

static void cache_release(struct dio_volume *vol);

static const struct dio_map_ops cache_map_ops = {
	.map_begin = cache_map_begin,
	.map_end = cache_map_end,
};

static const struct dio_vol_ops cache_vol_ops = {
	.prep_meta = cache_prep_meta,
	.release = cache_release,
	.submit = cache_submit,
	.event_fd = cache_event_fd,
	.poll = cache_poll,
};

static void
cache_free(struct dio_cache *c)
{
	struct cunit *u;

	while ((u = c->lru.next) != &c->lru)
		cu_free(c, u);
	free(c->hash);
	if (c->efd >= 0)
		close(c->efd);
	if (c->engine)
		dio_engine_destroy(c->engine);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->sync_cond);
	pthread_mutex_destroy(&c->lock);
	dio_volume_put(c->lower);
	dio_volume_fini(&c->vol);
	free(c);
}

static void
cache_release(struct dio_volume *vol)
{
	struct dio_cache *c = cache_of(vol);

	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	cache_free(c);
}

int
dio_cache_create(struct dio_volume *lower, const struct dio_cache_opts *opts,
		 struct dio_volume **out)
{
	struct dio_cache *c;
	uint64_t nb;
	int ret;

	if (!opts || opts->size < (1u << 20) || opts->dirty_pct > 100)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->efd = -1;
	c->engine = opts->engine;
	c->ctx_opts = opts->ctx;
	if (!c->ctx_opts.pool.arena_size)
		c->ctx_opts.pool.arena_size = WB_ARENA;
	c->lower = dio_volume_get(lower);
	c->vol.map_ops = &cache_map_ops;
	c->vol.vol_ops = &cache_vol_ops;
	c->vol.fd = -1;
	c->vol.size = lower->size;
	c->vol.lbs = lower->lbs;
	c->vol.pbs = lower->pbs;
	c->vol.blksize = lower->blksize;
	c->vol.readonly = lower->readonly;
	c->vol.rotational = lower->rotational;
	c->vol.wcache = lower->wcache;
	c->vol.blockdev = lower->blockdev;
	c->vol.can_trim = lower->can_trim;
	c->vol.can_zero = lower->can_zero;
	c->vol.map_commits_fua = lower->map_commits_fua;
	c->bs = lower->lbs > 4096 ? lower->lbs : 4096;
	c->bpu = CU_SIZE / c->bs;
	c->max_units = opts->size / CU_SIZE;
	nb = c->max_units * c->bpu;
	c->dirty_limit = nb * (opts->dirty_pct ? opts->dirty_pct : 50) / 100;
	if (!c->dirty_limit)
		c->dirty_limit = 1;
	c->expire_ns = (uint64_t)(opts->expire_ms ? opts->expire_ms : 2000) * 1000000u;
	c->st.size = c->max_units * CU_SIZE;
	for (c->hmask = 1; c->hmask < c->max_units; c->hmask <<= 1)
		;
	c->hash = calloc(c->hmask, sizeof(*c->hash));
	c->hmask--;
	c->lru.next = c->lru.prev = &c->lru;
	c->q_tail = &c->q_head;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_cond_init(&c->sync_cond, NULL);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = !c->hash ? -ENOMEM : c->efd < 0 ? -errno : dio_volume_init(&c->vol);
	if (ret < 0)
		goto err;
	ret = -pthread_create(&c->thread, NULL, wb_thread, c);
	if (ret < 0)
		goto err;
	pthread_mutex_lock(&c->lock);
	while (!c->started)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	if (c->start_ret < 0) {
		ret = c->start_ret;
		pthread_join(c->thread, NULL);
		goto err;
	}
	*out = &c->vol;
	return 0;
err:
	cache_free(c);
	return ret;
}

int
dio_cache_sync(struct dio_volume *vol)
{
	struct dio_cache *c = cache_of(vol);
	struct cop *op = cop_new(c, NULL, COP_SYNC);
	int ret;

	if (!op)
		return -ENOMEM;
	cache_queue(c, op);
	pthread_mutex_lock(&c->lock);
	while (!op->finished)
		pthread_cond_wait(&c->sync_cond, &c->lock);
	ret = op->res;
	pthread_mutex_unlock(&c->lock);
	cop_free(op);
	return ret;
}

bool
dio_volume_is_cache(const struct dio_volume *vol)
{
	return vol && vol->vol_ops == &cache_vol_ops;
}

struct dio_volume *
dio_cache_lower(struct dio_volume *vol)
{
	return cache_of(vol)->lower;
}

void
dio_cache_stats(struct dio_volume *vol, struct dio_cache_stats *st)
{
	struct dio_cache *c = cache_of(vol);

	pthread_mutex_lock(&c->lock);
	*st = c->st;
	st->used = c->nunits * CU_SIZE;
	st->dirty = c->ndirty * c->bs;
	pthread_mutex_unlock(&c->lock);
}
