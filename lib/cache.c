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
 * - dirty blocks: the writeback thread alone, in passes of disjoint
 *   merged writes (up to WB_INFLIGHT in flight); a pass ends before the
 *   next one starts, so two copies of a block are never in flight; the
 *   FLUSHes queued when a FLUSH's pass starts are answered by that pass
 *   and its one lower flush;
 * - write-through (FUA, WRITETHROUGH/NOCACHE writes, ZERO, TRIM): the
 *   submitting thread when no block of the range is dirty; else the
 *   writeback thread, after writing those blocks back. Either way the
 *   clean cached blocks of the range are dropped before and after the
 *   write, and dirty ones keep the newest data.
 * - reads that miss fill the cache only if no write-through ran while
 *   they read and no unit that ever held dirty data was dropped
 *   (wt_inflight at the start, mod_seq at the end): a block written,
 *   written back and evicted meanwhile cannot come back stale; a block
 *   uptodate at the start is copied then, under the lock, and one that
 *   became uptodate meanwhile is never overwritten by the fill.
 *
 * Zero-copy hits: a READ within one uptodate unit whose caller allows it
 * (DIO_REQ_LEND, the daemon's READs) gets a reference to the unit's
 * buffer (struct cbuf) instead of a copy. The bytes a reply sends never
 * change under it: every write into a unit's data goes through cu_wdata,
 * which first moves a lent unit to a new buffer (a copy of its uptodate
 * blocks, counted in stable_copies); eviction only drops the unit's
 * reference. Memory: units stay within max_units; buffers only replies
 * hold come on top, one per READ in flight at most (a reply holds one),
 * and cu_get evicts a clean unit no reply holds to make up for them.
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
#include <unistd.h>

#include "cache-priv.h"

/* ---- units (under c->lock) ---- */

struct cunit *
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

void
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
	/*
	 * Its blocks may have been written, written back and now dropped
	 * while a READ or RMW read them from the device, possibly from before
	 * that writeback: such a read must not fill the cache (mod_seq).
	 */
	if (u->written)
		c->mod_seq++;
	c->st.ra_wasted += (uint64_t)__builtin_popcountll(u->ra) * c->bs;
	cbuf_put_locked(c, u->buf);	/* a reply may hold it still: freed with its put */
	free(u);
	c->nunits--;
	cbuf_note_lent(c);
}

/*
 * Evict the least recent clean unit outside units [keep_lo, keep_hi], one
 * that no READ reply holds unless lent (whose memory comes back only with
 * the reply). false if none.
 */
static bool
cu_evict(struct dio_cache *c, bool lent, uint64_t keep_lo, uint64_t keep_hi)
{
	struct cunit *v;

	for (v = c->lru.prev; v != &c->lru && (v->dirty || (!lent && cu_lent(v)) ||
					       (v->idx >= keep_lo && v->idx <= keep_hi));
	     v = v->prev)
		;
	if (v == &c->lru)
		return false;
	cu_free(c, v);
	return true;
}

/*
 * The unit idx, made (evicting the least recent clean one outside units
 * [keep_lo, keep_hi] if need be); NULL if none is free. Memory held by
 * replies counts too: a clean unit no reply holds is evicted to make up for it.
 */
struct cunit *
cu_get_keeping(struct dio_cache *c, uint64_t idx, uint64_t keep_lo, uint64_t keep_hi)
{
	struct cunit *u = cu_find(c, idx);

	if (u)
		return u;
	if ((c->nunits >= c->max_units || c->nbufs >= c->max_units) &&
	    !cu_evict(c, false, keep_lo, keep_hi) && c->nunits >= c->max_units &&
	    !cu_evict(c, true, keep_lo, keep_hi))
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u || !(u->buf = cbuf_get(c))) {
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

/* The unit idx, made (evicting the least recent clean one if need be); NULL if none is free. */
struct cunit *
cu_get(struct dio_cache *c, uint64_t idx)
{
	return cu_get_keeping(c, idx, 1, 0);	/* keeps none */
}

/* The end of the block that starts at bpos (the volume may end inside it). */
uint64_t
blk_end(const struct dio_cache *c, uint64_t bpos)
{
	uint64_t e = bpos + c->bs;

	return e < c->vol.size ? e : c->vol.size;
}

/* Blocks of unit idx that overlap [pos, end), or (whole) lie inside it. */
uint64_t
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

bool
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
void
cache_drop_clean(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	if (!c->nunits)
		return;
	for (uint64_t i = pos >> CU_SHIFT; i <= (end - 1) >> CU_SHIFT; i++) {
		struct cunit *u = cu_find(c, i);

		uint64_t m;

		if (!u)
			continue;
		m = cu_mask(c, i, pos, end, false) & ~u->dirty;
		/* a reply may send them: the unit keeps the rest in a buffer of its own */
		if ((u->uptodate & m) && (u->uptodate & ~m) && !cu_wdata(c, u, m))
			u->drop_lent = true;	/* no memory: the next write copies whatever it writes */
		c->st.ra_wasted += (uint64_t)__builtin_popcountll(u->ra & m) * c->bs;
		u->ra &= ~m;
		u->uptodate &= ~m;
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

struct cop *
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

void
cop_free(struct cop *op)
{
	free(op->bounce);
	free(op->subs);
	free(op);
}

/* A request to the lower volume for op; NULL on out of memory. */
struct csub *
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
void
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

/* Keep the whole, non-zero blocks a read of [pos, pos+len) into buf brought in (ra: read ahead). */
void
cache_fill(struct dio_cache *c, uint64_t pos, uint64_t len, const uint8_t *buf, uint64_t seq0,
	   bool ra)
{
	uint64_t end = pos + len, bp = (pos + c->bs - 1) / c->bs * c->bs;
	uint8_t *data;

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
		if (!u || !(data = cu_wdata(c, u, bit)))
			break;
		memcpy(data + (bp & (CU_SIZE - 1)), buf + (bp - pos), be - bp);
		u->uptodate |= bit;
		if (ra)
			u->ra |= bit;
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
		cache_fill(op->c, d->pos, d->len, d->buf, op->seq0, false);
	cop_put_read(op);
}

/*
 * Count a READ of [pos, end) (miss: it reads the lower volume; used_ra: it
 * used blocks read ahead) and follow its stream. Whether what it reads may
 * fill the cache (under c->lock).
 */
static bool
cache_read_note(struct dio_cache *c, const struct dio_req *req, bool miss, bool used_ra)
{
	bool fill = !(req->flags & DIO_REQ_NOCACHE) && !c->wt_inflight;

	if (miss)
		c->st.misses++;
	else
		c->st.hits++;
	if (used_ra)
		c->st.ra_hits++;
	if (fill && !c->no_ra)
		cache_ra_note(c, req->pos, req->pos + req->len, miss);
	return fill;
}

/*
 * A READ within one unit, all of it uptodate, whose caller takes a
 * reference instead (DIO_REQ_LEND): answered with the unit's buffer, no
 * copy; the reply holds it until sent, and writes meanwhile go to a copy
 * (cu_wdata). true if answered (done() follows).
 */
static bool
cache_read_lend(struct dio_cache *c, struct dio_vol_io *vio)
{
	/* the caller's request: DIO_REQ_LEND lets us replace its buf and dbuf */
	struct dio_req *req = (struct dio_req *)vio->req;
	uint64_t pos = req->pos, end = pos + req->len, idx = pos >> CU_SHIFT, m;
	struct dio_buf *mine = req->dbuf;
	struct cunit *u;

	if (!(req->flags & DIO_REQ_LEND) || !mine || idx != (end - 1) >> CU_SHIFT)
		return false;
	pthread_mutex_lock(&c->lock);
	u = cu_find(c, idx);
	m = u ? cu_mask(c, idx, pos, end, false) : 0;
	if (!u || (u->uptodate & m) != m) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	/* under the lock: a writer sees the reference before it writes (cu_lent) */
	req->dbuf = dio_buf_ref(&u->buf->b);
	req->buf = (uint8_t *)u->buf->b.data + (pos & (CU_SIZE - 1));
	cu_touch(c, u);
	(void)cache_read_note(c, req, false, (u->ra & m) != 0);
	u->ra &= ~m;
	c->st.zc_hits++;
	pthread_mutex_unlock(&c->lock);
	dio_buf_put(mine);	/* the submitting thread's pool: we are on it */
	dio_vol_io_done(vio->ctx, vio, 0);
	return true;
}

static int
cache_read(struct dio_cache *c, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	uint64_t pos = req->pos, end = req->pos + req->len, p, e;
	uint8_t *buf = req->buf;
	struct cop *op;
	struct csub *s = NULL;
	bool used_ra = false;

	if (cache_read_lend(c, vio))
		return 0;
	op = cop_new(c, vio, COP_READ);
	if (!op)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	for (p = pos; p < end; p = e) {
		uint64_t bp = p / c->bs * c->bs, idx = bp >> CU_SHIFT;
		struct cunit *u = cu_find(c, idx);
		uint64_t bit = 1ull << ((bp & (CU_SIZE - 1)) / c->bs);

		e = blk_end(c, bp) < end ? blk_end(c, bp) : end;
		if (u && (u->uptodate & bit)) {
			memcpy(buf + (p - pos), cu_rdata(u) + (p & (CU_SIZE - 1)), e - p);
			cu_touch(c, u);
			used_ra |= (u->ra & bit) != 0;
			u->ra &= ~bit;
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
	op->fill = cache_read_note(c, req, op->nsub > 0, used_ra);
	op->seq0 = c->mod_seq;
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
void
cache_wt_req(struct dio_req *d, const struct dio_req *req)
{
	memset(d, 0, sizeof(*d));
	d->op = req->op;
	d->flags = req->flags & ~(uint32_t)DIO_REQ_CACHE_HINTS;
	d->pos = req->pos;
	d->len = req->len;
	d->buf = req->buf;
}

void
cache_wt_begin(struct dio_cache *c, uint64_t pos, uint64_t end)
{
	cache_drop_clean(c, pos, end);
	c->mod_seq++;
	c->wt_inflight++;
}

void
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

int
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
	case DIO_REQ_CACHE:
		return cache_prefetch(c, vio);
	default:
		return -EINVAL;
	}
}

static int
cache_event_fd(struct dio_volume *vol)
{
	(void)vol;
	return -1;	/* completions come as the ctx's deferred or posted work */
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
	.submit_cache = true,	/* NBD_CMD_CACHE fills the cache (cache-ra.c) */
};

/*
 * Everything but what READ replies may still hold: their buffers, in the
 * slabs, go with the last one's put (cbuf_release), c's lock with them.
 */
static void
cache_free(struct dio_cache *c)
{
	struct cunit *u;
	bool last;

	pthread_mutex_lock(&c->lock);
	while ((u = c->lru.next) != &c->lru)
		cu_free(c, u);
	pthread_mutex_unlock(&c->lock);
	free(c->hash);
	if (c->engine)
		dio_engine_destroy(c->engine);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->sync_cond);
	pthread_cond_destroy(&c->ra_cond);
	dio_volume_put(c->lower);
	dio_volume_fini(&c->vol);
	pthread_mutex_lock(&c->lock);
	last = !c->nbufs;
	c->zombie = !last;
	pthread_mutex_unlock(&c->lock);
	if (last)
		cache_free_mem(c);
}

/* Stop the writeback thread: it writes back what is left first. */
static void
cache_wb_stop(struct dio_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
}

static void
cache_release(struct dio_volume *vol)
{
	struct dio_cache *c = cache_of(vol);

	cache_ra_stop(c);
	cache_wb_stop(c);
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
	c->no_ra = opts->no_readahead;
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
	pthread_cond_init(&c->ra_cond, NULL);
	ret = !c->hash ? -ENOMEM : dio_volume_init(&c->vol);
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
	ret = cache_ra_start(c);
	if (ret < 0) {
		cache_wb_stop(c);
		goto err;
	}
	*out = &c->vol;
	return 0;
err:
	cache_free(c);
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
	st->lent = (c->nbufs - c->nunits) * CU_SIZE;
	pthread_mutex_unlock(&c->lock);
}
