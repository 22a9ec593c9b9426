/* SPDX-License-Identifier: MIT */
/*
 * The block cache's readahead (cache-priv.h): the one place that decides
 * what to read before it is asked for, after mm/readahead.c.
 *
 * READs through the cache are followed as streams (RA_STREAMS per cache,
 * shared by every connection: a READ that starts where one of them ended
 * continues it, any other READ starts a new one in the oldest slot). From
 * the second READ of a stream on, the stream wants c->ra_window bytes past
 * its last READ read into the cache; it asks again when less than half of
 * that is left (the kernel's async readahead marker), so the reads go on
 * while the client's replies travel. NBD_CMD_CACHE (DIO_REQ_CACHE) asks
 * for a range the same way and is answered when all of it is read.
 *
 * The readahead thread (its own ctx, so no connection's ctx has to live
 * until it ends) reads what is wanted and not uptodate, RA_CHUNK at a time
 * with up to RA_QD reads in flight, and keeps it as a READ that missed
 * does (cache_fill: not after a write-through ran meanwhile, zeros not
 * kept). Readahead only ever takes clean units (cu_get evicts no dirty
 * data) and stops while every unit is dirty; the window is an eighth of
 * the cache at most, so a stream's data is not evicted before it is read.
 *
 * Counted: bytes read ahead, READs that used them, READs of a stream read
 * ahead that still missed, and bytes read ahead that were dropped unused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "cache-priv.h"

struct ra_read {
	struct dio_req d;	/* d.priv = this */
	struct dio_cache *c;
	struct ra_stream *fill;	/* the CACHE request it reads for, or NULL */
	uint64_t seq0;		/* c->mod_seq when it started */
	bool keep;		/* no write-through was running when it started */
};

/* ---- streams (under c->lock) ---- */

void
cache_ra_note(struct dio_cache *c, uint64_t pos, uint64_t end, bool miss)
{
	struct ra_stream *s = NULL, *old = &c->streams[0];
	uint64_t t;

	c->ra_tick++;
	for (unsigned int i = 0; i < RA_STREAMS; i++) {
		if (c->streams[i].run && c->streams[i].next == pos) {
			s = &c->streams[i];
			break;
		}
		if (c->streams[i].used < old->used)
			old = &c->streams[i];
	}
	if (!s) {
		*old = (struct ra_stream){ .next = end, .ahead = end, .target = end, .run = 1,
					   .used = c->ra_tick };
		return;
	}
	if (miss && s->run >= 2)
		c->st.ra_misses++;	/* read ahead, but not (yet) there */
	s->run++;
	s->next = end;
	s->used = c->ra_tick;
	if (s->ahead < end)
		s->ahead = end;
	t = end + c->ra_window < c->vol.size ? end + c->ra_window : c->vol.size;
	if (t > s->target && s->target < end + c->ra_window / 2) {
		s->target = t;
		pthread_cond_signal(&c->ra_cond);
	}
}

/* The next range to read for: a CACHE request first, then the streams. */
static struct ra_stream *
ra_pick(struct dio_cache *c)
{
	struct ra_stream *f;

	for (f = c->fills; f; f = f->qnext)
		if (f->ahead < f->target)
			return f;
	for (unsigned int i = 0; i < RA_STREAMS; i++) {
		unsigned int k = (unsigned int)((c->ra_tick + i) % RA_STREAMS);

		if (c->streams[k].ahead < c->streams[k].target)
			return &c->streams[k];
	}
	return NULL;
}

static bool
ra_uptodate(struct dio_cache *c, uint64_t bp)
{
	struct cunit *u = cu_find(c, bp >> CU_SHIFT);

	return u && (u->uptodate & (1ull << ((bp & (CU_SIZE - 1)) / c->bs)));
}

/*
 * The next read for s, [*pos, *end): its blocks not uptodate from s->ahead
 * on, RA_CHUNK at most. False when none is left (s is then done).
 */
static bool
ra_next(struct dio_cache *c, struct ra_stream *s, uint64_t *pos, uint64_t *end)
{
	uint64_t p = s->ahead / c->bs * c->bs, e, lim;

	while (p < s->target && ra_uptodate(c, p))
		p = blk_end(c, p);
	if (p >= s->target) {
		s->ahead = s->target;
		return false;
	}
	lim = p + RA_CHUNK;
	if (lim > s->target)
		lim = (s->target + c->bs - 1) / c->bs * c->bs;
	for (e = p; e < lim && e < c->vol.size && (e == p || !ra_uptodate(c, e)); )
		e = blk_end(c, e);
	s->ahead = e;
	*pos = p;
	*end = e;
	return true;
}

/* ---- the readahead thread ---- */

static void
ra_read_done(struct dio_req *d, int ret)
{
	struct ra_read *r = d->priv;
	struct dio_cache *c = r->c;

	if (ret == 0 && r->keep)
		cache_fill(c, d->pos, d->len, d->buf, r->seq0, !r->fill);
	dio_buf_put(d->dbuf);
	pthread_mutex_lock(&c->lock);
	c->ra_inflight--;
	if (r->fill) {
		r->fill->inflight--;
		if (ret < 0 && !r->fill->res)
			r->fill->res = ret;
	}
	pthread_mutex_unlock(&c->lock);
	free(r);
}

/* Start one read for s (c->lock held, dropped around the submit). 0, or -errno: s gives up. */
static int
ra_issue(struct dio_cache *c, struct ra_stream *s, uint64_t pos, uint64_t end)
{
	struct ra_read *r = calloc(1, sizeof(*r));
	struct dio_buf *b = r ? dio_buf_get(dio_ctx_pool(c->ractx), end - pos) : NULL;
	bool fill = s->vio != NULL;
	int ret;

	if (!b) {
		free(r);
		return -ENOMEM;
	}
	*r = (struct ra_read){
		.d = { .op = DIO_REQ_READ, .pos = pos, .len = end - pos, .buf = b->data, .dbuf = b,
		       .done = ra_read_done, .priv = r },
		.c = c, .fill = fill ? s : NULL, .seq0 = c->mod_seq, .keep = !c->wt_inflight,
	};
	c->ra_inflight++;
	if (fill) {
		s->inflight++;
		c->st.prefetch_bytes += end - pos;
	} else {
		c->st.ra_bytes += end - pos;
	}
	pthread_mutex_unlock(&c->lock);
	ret = dio_submit(c->ractx, c->lower, &r->d);
	pthread_mutex_lock(&c->lock);
	if (ret < 0) {
		/* s may be another stream's slot by now: only a fill is ours to fail */
		c->ra_inflight--;
		if (fill) {
			s->inflight--;
			s->res = ret;
		}
		dio_buf_put(b);
		free(r);
	}
	return ret;
}

/* Answer the CACHE requests read whole (c->lock held, dropped around each answer). */
static void
ra_finish_fills(struct dio_cache *c, int why)
{
	struct ra_stream **pp = &c->fills, *f;

	while ((f = *pp)) {
		if ((f->ahead < f->target && !why) || f->inflight) {
			pp = &f->qnext;
			continue;
		}
		*pp = f->qnext;
		pthread_mutex_unlock(&c->lock);
		dio_vol_io_done(NULL, f->vio, f->ahead < f->target ? why : f->res);
		free(f);
		pthread_mutex_lock(&c->lock);
		pp = &c->fills;
	}
}

static void *
ra_thread(void *arg)
{
	struct dio_cache *c = arg;
	struct dio_ctx_opts o = c->ctx_opts;
	struct ra_stream *s;
	uint64_t pos, end;
	int ret;

	o.pool.arena_size = RA_ARENA;
	ret = dio_ctx_create(&o, &c->ractx);
	pthread_mutex_lock(&c->lock);
	c->ra_start_ret = ret;
	c->ra_started = true;
	pthread_cond_broadcast(&c->ra_cond);
	if (ret < 0) {
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	for (;;) {
		ra_finish_fills(c, 0);
		while (!c->ra_stop && c->ra_inflight < RA_QD && (s = ra_pick(c))) {
			if (!s->vio && c->ndirty_units >= c->max_units) {
				s->target = s->ahead;	/* no clean unit to read into */
				continue;
			}
			if (ra_next(c, s, &pos, &end) && ra_issue(c, s, pos, end) < 0) {
				if (!s->vio)
					s->target = s->ahead;
				break;
			}
		}
		if (c->ra_inflight) {
			pthread_mutex_unlock(&c->lock);
			(void)dio_ctx_reap(c->ractx, true);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->ra_stop)
			break;
		if (!ra_pick(c) && !c->fills)
			pthread_cond_wait(&c->ra_cond, &c->lock);
	}
	ra_finish_fills(c, -ESHUTDOWN);
	pthread_mutex_unlock(&c->lock);
	dio_ctx_destroy(c->ractx);
	c->ractx = NULL;
	return NULL;
}

int
cache_ra_start(struct dio_cache *c)
{
	int ret;

	c->ra_window = (c->max_units * CU_SIZE) / 8;
	if (c->ra_window > RA_WINDOW)
		c->ra_window = RA_WINDOW;
	ret = -pthread_create(&c->ra_thread, NULL, ra_thread, c);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&c->lock);
	while (!c->ra_started)
		pthread_cond_wait(&c->ra_cond, &c->lock);
	ret = c->ra_start_ret;
	pthread_mutex_unlock(&c->lock);
	if (ret < 0)
		pthread_join(c->ra_thread, NULL);
	return ret;
}

void
cache_ra_stop(struct dio_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->ra_stop = true;
	pthread_cond_signal(&c->ra_cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->ra_thread, NULL);
}

/* ---- NBD_CMD_CACHE ---- */

int
cache_prefetch(struct dio_cache *c, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	struct ra_stream *f = calloc(1, sizeof(*f)), **pp;
	uint64_t half = c->max_units * CU_SIZE / 2;

	if (!f)
		return -ENOMEM;
	/* A hint: more than half the cache would only evict what it read first. */
	f->ahead = req->pos;
	f->target = req->pos + (req->len < half ? req->len : half);
	f->vio = vio;
	pthread_mutex_lock(&c->lock);
	for (pp = &c->fills; *pp; pp = &(*pp)->qnext)
		;
	*pp = f;
	pthread_cond_signal(&c->ra_cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}
