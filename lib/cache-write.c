/* SPDX-License-Identifier: MIT */
/*
 * The block cache's writes (cache-priv.h, the design at the top of
 * cache.c): a writeback WRITE into the cache, reading first only the blocks
 * it covers in part (as iomap does for a partial folio); FLUSH; and the
 * writeback thread, which alone writes dirty blocks to the lower volume,
 * merged across units, by age, dirty limit, FLUSH, dio_cache_sync and
 * release.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache-priv.h"

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
	/*
	 * The units there already: their own buffers (copies of those READ
	 * replies hold) before any byte is written. Making the others evicts
	 * none of the range (cu_get_keeping): a unit whose block the write
	 * covers in part must still hold that block's other bytes.
	 */
	for (uint64_t i = first; i <= last; i++) {
		struct cunit *u = cu_find(c, i);

		if (u && !cu_wdata(c, u, cu_mask(c, i, pos, end, false)))
			return -EAGAIN;
	}
	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, be = blk_end(c, bp);
		uint64_t bit = 1ull << ((bp & (CU_SIZE - 1)) / c->bs);
		struct cunit *u = cu_get_keeping(c, bp >> CU_SHIFT, first, last);
		uint8_t *data = u ? cu_wdata(c, u, bit) : NULL;

		e = be < end ? be : end;
		if (!data)	/* none to evict outside the range: what is in stays dirty, the rest waits */
			return -EAGAIN;
		memcpy(data + (p & (CU_SIZE - 1)), buf + (p - pos), e - p);
		u->uptodate |= bit;
		u->ra &= ~bit;
		if (!u->dirty) {
			c->ndirty_units++;
			u->dirtied_ns = now ? now : (now = dio_now_ns());
			u->written = true;
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
	 * Not after a write-through, nor after a unit once dirty was dropped
	 * (a block dirtied, written back and evicted while we read could have
	 * been read old: cu_free moves mod_seq). A writeback alone is fine: a
	 * block written meanwhile is uptodate and is not overwritten below.
	 */
	if (!op->res && c->mod_seq == op->seq0) {
		for (unsigned int i = 0; i < op->nsub; i++) {
			const struct dio_req *r = &op->subs[i].d;
			uint64_t bit = 1ull << ((r->pos & (CU_SIZE - 1)) / c->bs);
			struct cunit *u = cu_get(c, r->pos >> CU_SHIFT);

			if (!u)
				break;
			if (!(u->uptodate & bit)) {
				uint8_t *data = cu_wdata(c, u, bit);

				if (!data)
					break;
				memcpy(data + (r->pos & (CU_SIZE - 1)), r->buf, r->len);
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

int
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

int
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
 * One pass of writeback (wb_range): its writes are in flight together, up
 * to WB_INFLIGHT, each on a disjoint range, and the pass ends only when
 * all have completed, so a later pass never races an earlier one's copy
 * of a block. On the writeback thread's ctx, which only that thread reaps.
 */
struct wb_pass {
	struct dio_cache *c;
	unsigned int inflight;
	int err;		/* the first error */
};

/* A writeback write in flight: one merged run x[0..n) of a pass. */
struct wb_io {
	struct dio_req d;
	struct dio_buf *b;
	struct wb_ext *x;
	unsigned int n;
	struct wb_pass *pass;
};

/*
 * The write of io ended with ret: the blocks written stay dirty unless it
 * worked and their unit did not change meanwhile.
 */
static void
wb_write_end(struct wb_io *io, int ret)
{
	struct wb_pass *pass = io->pass;
	struct dio_cache *c = pass->c;
	struct wb_ext *x = io->x;
	unsigned int n = io->n;
	uint64_t len = io->d.len;

	dio_buf_put(io->b);
	free(io);
	pthread_mutex_lock(&c->lock);
	c->st.wb_ios++;
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
	if (ret < 0 && !pass->err)
		pass->err = ret;
	pass->inflight--;
}

static void
wb_write_done(struct dio_req *d, int ret)
{
	wb_write_end(d->priv, ret);
}

/* Start writing the merged run x[0..n) (contiguous on the volume) from the cache. */
static void
wb_write_start(struct wb_pass *pass, struct wb_ext *x, unsigned int n, uint64_t pos,
	       uint64_t len)
{
	struct dio_cache *c = pass->c;
	struct wb_io *io = calloc(1, sizeof(*io));
	struct dio_buf *b = io ? dio_buf_get(dio_ctx_pool(c->wbctx), len) : NULL;
	int ret;

	if (!b) {
		free(io);
		if (!pass->err)
			pass->err = -ENOMEM;	/* the blocks stay dirty */
		return;
	}
	pthread_mutex_lock(&c->lock);
	for (unsigned int i = 0; i < n; i++) {
		struct cunit *u = cu_find(c, x[i].idx);	/* dirty: still there */

		x[i].seq = u->seq;
		memcpy((uint8_t *)b->data + (wb_ext_pos(c, &x[i]) - pos),
		       cu_rdata(u) + (uint64_t)x[i].b0 * c->bs, wb_ext_len(c, &x[i]));
	}
	pthread_mutex_unlock(&c->lock);
	*io = (struct wb_io){ .b = b, .x = x, .n = n, .pass = pass,
			      .d = { .op = DIO_REQ_WRITE, .pos = pos, .len = len, .buf = b->data,
				     .dbuf = b, .done = wb_write_done } };
	io->d.priv = io;
	pass->inflight++;
	ret = dio_submit(c->wbctx, c->lower, &io->d);
	if (ret < 0)
		wb_write_end(io, ret);	/* refused: done never runs */
}

/*
 * Reap the pass's writes until at most max are in flight. false when the
 * engine itself failed and they will never complete (reported).
 */
static bool
wb_reap(struct wb_pass *pass, unsigned int max)
{
	while (pass->inflight > max) {
		if (dio_ctx_reap(pass->c->wbctx, true) < 0 && pass->inflight > max) {
			dio_log(DIO_LOG_ERR, "cache: the writeback engine failed with %u writes "
				"in flight", pass->inflight);
			return false;
		}
	}
	return true;
}

/*
 * Write back the blocks of [pos, end) dirty now, merged, up to WB_INFLIGHT
 * writes at a time. 0 or the first -errno.
 */
static int
wb_range(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	struct wb_ext *x = NULL;
	size_t n = 0, cap = 0, i, j;
	struct wb_pass *pass;
	int ret;

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
	if (!n)
		return 0;
	pass = calloc(1, sizeof(*pass));
	if (!pass) {
		free(x);
		return -ENOMEM;
	}
	pass->c = c;
	qsort(x, n, sizeof(*x), wb_ext_cmp);
	/* The ioend idea: extents that touch become one write, up to WB_MAX. */
	for (i = 0; i < n; i = j) {
		uint64_t p0 = wb_ext_pos(c, &x[i]), len = wb_ext_len(c, &x[i]);

		for (j = i + 1; j < n && wb_ext_pos(c, &x[j]) == p0 + len &&
				len + wb_ext_len(c, &x[j]) <= WB_MAX; j++)
			len += wb_ext_len(c, &x[j]);
		if (!wb_reap(pass, WB_INFLIGHT - 1))
			return -EIO;	/* pass and x stay: writes still point at them */
		wb_write_start(pass, &x[i], (unsigned int)(j - i), p0, len);
	}
	if (!wb_reap(pass, 0))
		return -EIO;
	ret = pass->err;
	free(pass);
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

/*
 * The blocks of req's range still dirty after its writeback: their unit
 * changed while it was written (wb_write_end keeps them dirty, maybe with
 * bytes older than req), or a WRITE dirtied them again. req's bytes go
 * into them, and they stay dirty: the cache never reads, nor writes back
 * later, bytes older than the write-through over them. Under c->lock;
 * 0 or -ENOMEM.
 */
static int
wb_wt_merge(struct dio_cache *c, const struct dio_req *req)
{
	uint64_t pos = req->pos, end = pos + req->len, p, e;
	const uint8_t *buf = req->buf;

	if (!c->ndirty)
		return 0;
	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, be = blk_end(c, bp);
		uint64_t bit = 1ull << ((bp & (CU_SIZE - 1)) / c->bs);
		struct cunit *u = cu_find(c, bp >> CU_SHIFT);
		uint8_t *data;

		e = be < end ? be : end;
		if (!u || !(u->dirty & bit))
			continue;
		data = cu_wdata(c, u, bit);
		if (!data)
			return -ENOMEM;
		memcpy(data + (p & (CU_SIZE - 1)), buf + (p - pos), e - p);
		u->seq++;
	}
	return 0;
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
	ret = wb_wt_merge(c, req);
	if (ret < 0) {
		pthread_mutex_unlock(&c->lock);
		return ret;
	}
	cache_wt_begin(c, req->pos, end);
	pthread_mutex_unlock(&c->lock);
	cache_wt_req(&d, req);
	ret = dio_submit_sync(c->wbctx, c->lower, &d);
	cache_wt_end(c, req->pos, end);
	return ret;
}

/*
 * Take every other FLUSH out of the queue, after first (under c->lock).
 * One pass answers them all: each was queued after the WRITEs it covers had
 * been copied into the cache (NBD: a FLUSH covers the writes replied to
 * before it was sent), so what is dirty when the pass starts includes them.
 * Other queued work keeps its order.
 */
static void
wb_take_flushes(struct dio_cache *c, struct cop *first)
{
	struct cop **pp = &c->q_head, *tail = first;

	while (*pp) {
		struct cop *op = *pp;

		if (op->kind != COP_FLUSH) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		tail->next = op;
		tail = op;
	}
	c->q_tail = pp;
	tail->next = NULL;
}

/* Write back everything dirty (*wret: 0 or its error), then flush the lower volume. */
static int
wb_all_flushed(struct dio_cache *c, int *wret)
{
	struct dio_req d = { .op = DIO_REQ_FLUSH };

	*wret = wb_range(c, 0, c->vol.size);
	return dio_submit_sync(c->wbctx, c->lower, &d);
}

/*
 * FLUSH: write back what is dirty, flush the lower volume once, then answer
 * first and every FLUSH queued behind it (so a client that keeps sending
 * FLUSHes while one is written back waits for one pass, not one each).
 */
static void
wb_flush_batch(struct dio_cache *c, struct cop *first)
{
	struct cop *op, *next;
	int ret, wret;

	pthread_mutex_lock(&c->lock);
	wb_take_flushes(c, first);
	pthread_mutex_unlock(&c->lock);
	ret = wb_all_flushed(c, &wret);
	for (op = first; op; op = next) {
		int r;

		next = op->next;
		pthread_mutex_lock(&c->lock);
		r = cache_flush_result(c, op->vio->req->writer, ret, wret < 0);
		pthread_mutex_unlock(&c->lock);
		dio_vol_io_done(NULL, op->vio, r);
		cop_free(op);
	}
}

static void
wb_do(struct dio_cache *c, struct cop *op)
{
	const struct dio_req *req = op->vio ? op->vio->req : NULL;
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
		wb_flush_batch(c, op);
		return;	/* every FLUSH of the batch is answered and freed */
	case COP_SYNC:
		ret = wb_all_flushed(c, &wret);
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

void *
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
		if (wb_due(c, dio_now_ns())) {
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
	dio_log(DIO_LOG_INFO, "cache: readahead read %llu bytes, used by %llu READs, missed by %llu, "
		"%llu bytes wasted; %llu bytes read for CACHE requests",
		(unsigned long long)c->st.ra_bytes, (unsigned long long)c->st.ra_hits,
		(unsigned long long)c->st.ra_misses, (unsigned long long)c->st.ra_wasted,
		(unsigned long long)c->st.prefetch_bytes);
	dio_log(DIO_LOG_INFO, "cache: %llu READs answered without a copy, %llu units copied for "
		"writes while replies held them, %llu bytes at most held by replies alone",
		(unsigned long long)c->st.zc_hits, (unsigned long long)c->st.stable_copies,
		(unsigned long long)c->st.peak_lent);
	dio_ctx_destroy(c->wbctx);
	c->wbctx = NULL;
	return NULL;
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
