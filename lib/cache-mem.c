/* SPDX-License-Identifier: MIT */
/*
 * The block cache's memory (cache-priv.h): units' buffers carved from
 * populated slabs, reference-counted so that a READ reply can hold one
 * (DIO_REQ_LEND) while the cache goes on; the stable copy a write makes of
 * a unit a reply holds; and the slabs' end, with the last buffer in use.
 * Under c->lock, but for cbuf_release (any thread, takes it).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache-priv.h"

/* Units per slab: 2 MiB, one mmap that the kernel fills at once. */
#define CU_SLAB 32

/* A slab: n buffers' data in one mapping, and their headers. */
struct cslab {
	uint8_t *mem;
	struct cbuf *hdrs;
	uint64_t n;
};

static void cbuf_release(struct dio_buf *b);

/* Map a slab of n buffers onto the free list. false on out of memory. */
static bool
cbuf_slab(struct dio_cache *c, uint64_t n)
{
	struct cslab *s = c->slabs;

	if (c->nslabs == c->capslabs) {
		s = realloc(c->slabs, (c->capslabs ? 2 * c->capslabs : 16) * sizeof(*s));
		if (!s)
			return false;
		c->slabs = s;
		c->capslabs = c->capslabs ? 2 * c->capslabs : 16;
	}
	s = &c->slabs[c->nslabs];
	s->hdrs = calloc(n, sizeof(*s->hdrs));
	if (!s->hdrs)
		return false;
	s->mem = mmap(NULL, n * CU_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (s->mem == MAP_FAILED) {
		free(s->hdrs);
		return false;
	}
	s->n = n;
	c->nslabs++;
	c->slab_units += n;
	for (uint64_t i = 0; i < n; i++) {
		struct cbuf *cb = &s->hdrs[i];

		cb->c = c;
		cb->b.data = s->mem + i * CU_SIZE;
		cb->b.size = CU_SIZE;
		cb->b.index = -1;
		cb->b.release = cbuf_release;
		cb->b.next = (struct dio_buf *)c->free_bufs;	/* b is first */
		c->free_bufs = cb;
	}
	return true;
}

/*
 * A buffer for a unit's data (ref 1), or NULL. A miss used to malloc its
 * unit and fault its pages in one by one as blocks were copied in: on
 * this VM a page fault costs tens of microseconds, which made a cold
 * cache 6x slower than no cache. Slabs are mapped with MAP_POPULATE
 * (one call fills 2 MiB), and freed buffers are kept for the next one.
 * Past max_units (buffers that replies still hold), a slab of one.
 */
struct cbuf *
cbuf_get(struct dio_cache *c)
{
	struct cbuf *cb;

	if (!c->free_bufs) {
		uint64_t n = c->slab_units < c->max_units ? c->max_units - c->slab_units : 1;

		if (!cbuf_slab(c, n < CU_SLAB ? n : CU_SLAB))
			return NULL;
	}
	cb = c->free_bufs;
	c->free_bufs = (struct cbuf *)cb->b.next;
	cb->b.next = NULL;
	__atomic_store_n(&cb->b.ref, 1, __ATOMIC_RELAXED);
	c->nbufs++;
	return cb;
}

/* cb's last reference is gone: back to the free list (under c->lock). */
static void
cbuf_free(struct dio_cache *c, struct cbuf *cb)
{
	cb->b.next = (struct dio_buf *)c->free_bufs;	/* b is first */
	c->free_bufs = cb;
	c->nbufs--;
}

/* Drop the cache's reference to cb (under c->lock). */
void
cbuf_put_locked(struct dio_cache *c, struct cbuf *cb)
{
	if (__atomic_sub_fetch(&cb->b.ref, 1, __ATOMIC_ACQ_REL) == 0)
		cbuf_free(c, cb);
}

/* dio_buf.release: a READ reply put the last reference, on its own thread. */
static void
cbuf_release(struct dio_buf *b)
{
	struct cbuf *cb = (struct cbuf *)b;
	struct dio_cache *c = cb->c;
	bool last;

	pthread_mutex_lock(&c->lock);
	cbuf_free(c, cb);
	last = c->zombie && !c->nbufs;
	pthread_mutex_unlock(&c->lock);
	if (last)
		cache_free_mem(c);
}

/* Buffers held by replies alone may have become more: keep their peak. */
void
cbuf_note_lent(struct dio_cache *c)
{
	if ((c->nbufs - c->nunits) * CU_SIZE > c->st.peak_lent)
		c->st.peak_lent = (c->nbufs - c->nunits) * CU_SIZE;
}

/* Whether someone besides the unit holds its buffer (a READ reply). */
bool
cu_lent(const struct cunit *u)
{
	return __atomic_load_n(&u->buf->b.ref, __ATOMIC_ACQUIRE) > 1;
}

/*
 * A unit's data, to write the blocks in mask. While a READ reply holds its
 * buffer the bytes it sends must not change (nor become another block's),
 * so the unit moves to a new buffer first, with a copy of its uptodate
 * blocks: the "stable pages" of the kernel's writeback, done by copy
 * instead of wait. A reply sends only blocks uptodate when it took the
 * buffer, and those stay uptodate in that buffer (dropping them comes
 * here too), so blocks not uptodate are written in place: a fill of a
 * cold unit that replies are reading copies nothing.
 */
uint8_t *
cu_wdata(struct dio_cache *c, struct cunit *u, uint64_t mask)
{
	struct cbuf *nb;
	uint64_t m = u->uptodate;

	if (!cu_lent(u)) {
		u->drop_lent = false;	/* the replies are gone: nothing left to keep stable */
		return u->buf->b.data;
	}
	if (!(mask & m) && !u->drop_lent)
		return u->buf->b.data;
	nb = cbuf_get(c);
	if (!nb)
		return NULL;
	while (m) {
		unsigned int b = (unsigned int)__builtin_ctzll(m);
		size_t off = (size_t)b * c->bs;

		m &= m - 1;
		memcpy((uint8_t *)nb->b.data + off, cu_rdata(u) + off, c->bs);
	}
	cbuf_put_locked(c, u->buf);
	u->buf = nb;
	u->drop_lent = false;
	c->st.stable_copies++;
	cbuf_note_lent(c);
	return nb->b.data;
}

/* The slabs and c itself: when no buffer is in use any more. */
void
cache_free_mem(struct dio_cache *c)
{
	for (size_t i = 0; i < c->nslabs; i++) {
		munmap(c->slabs[i].mem, c->slabs[i].n * CU_SIZE);
		free(c->slabs[i].hdrs);
	}
	free(c->slabs);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
