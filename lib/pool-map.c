/* SPDX-License-Identifier: MIT */
/*
 * The pool's memory (stage 1 of POOL.md): each volume's map as leaves of
 * TP_LEAF entries made on demand, the state of every physical chunk, the
 * allocator (per-volume cursors, no chunk reused before the record that
 * freed it is durable: R3), and applying records to all of it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dio/dio.h"
#include "pool.h"

struct tp_ment *
tp_ment(struct tp_vol *v, uint64_t l)
{
	struct tp_leaf *lf;

	if (l >= v->nl)
		return NULL;
	lf = v->leaf[l / TP_LEAF];
	return lf ? &lf->e[l % TP_LEAF] : NULL;
}

/*
 * How many records copying shared leaf lf for one volume adds to a
 * checkpoint, counted as tp_meta_exact counts them (ckpt_records writes
 * no more). Before: lf once, as a LEAF and its n MAPs, and an LREF for
 * each volume in the table that points to it, this one among them.
 * After: the copy's n MAPs under this volume, its LREF gone. lf, with a
 * pointer fewer, is written as before less that LREF (n - 1 more in
 * all), or, down to one holder, as that volume's n MAPs without its LEAF
 * and LREF (n - 3 more) when that holder is a volume in the table: sure
 * when no reclaim is queued, since only a queued reclaim's ghost (a
 * deleted volume's map, a revert's or shrink's old leaves) holds a leaf
 * from outside it, and that one is not written. And each of lf's chunks
 * gets a reference more (space counts the leaves that map it): those at
 * 2 go to 3, a REF each; those at 3 or more have theirs. So n - 1 (or
 * n - 3) + the chunks at 2, never below 0; 2n - 1 at most.
 */
static uint64_t
leaf_copy_grows(const struct dio_tpool *p, const struct tp_leaf *lf)
{
	uint64_t grow = lf->n, fewer = lf->refs == 2 && !p->nrq ? 3 : 1;

	for (uint32_t k = 0; grow && k < TP_LEAF; k++)
		grow += lf->e[k].p1 && p->space[lf->e[k].p1 - 1] == 2;
	return grow > fewer ? grow - fewer : 0;
}

struct tp_ment *
tp_ment_w(struct dio_tpool *p, struct tp_vol *v, uint64_t l, bool make)
{
	uint64_t i = l / TP_LEAF;
	struct tp_leaf *lf, *n;

	if (l >= v->nl)
		return NULL;
	lf = v->leaf[i];
	if (!lf) {
		if (!make)
			return NULL;
		lf = calloc(1, sizeof(*lf));
		if (!lf)
			return NULL;
		lf->refs = 1;
		v->leaf[i] = lf;
		p->nleaves++;
	} else if (lf->refs > 1) {
		/* Shared: this volume gets its own copy, each chunk one more reference. */
		uint64_t grow = p->meta_guard || p->meta_credit ? leaf_copy_grows(p, lf) : 0;

		if (!tp_meta_fits(p, lf->n, 0, grow)) {
			errno = ENOSPC;
			return NULL;
		}
		n = malloc(sizeof(*n));
		if (!n)
			return NULL;
		memcpy(n, lf, sizeof(*n));
		n->refs = 1;
		n->mark = 0;
		n->num = 0;
		for (uint32_t k = 0; k < TP_LEAF; k++)
			if (n->e[k].p1)
				p->space[n->e[k].p1 - 1]++;
		p->nrefs += n->n;
		tp_meta_spend(p, grow);
		lf->refs--;
		v->leaf[i] = lf = n;
	}
	return &lf->e[l % TP_LEAF];
}

bool
tp_shared(const struct dio_tpool *p, const struct tp_vol *v, uint64_t l, const struct tp_ment *e)
{
	return v->leaf[l / TP_LEAF]->refs > 1 || p->space[e->p1 - 1] > 1;
}

void
tp_ent_map(struct dio_tpool *p, struct tp_vol *v, uint64_t l, struct tp_ment *e, uint64_t c)
{
	e->p1 = (uint32_t)c + 1;
	p->space[c]++;
	p->nrefs++;
	v->leaf[l / TP_LEAF]->n++;
	v->mapped++;
}

bool
tp_unsharing(const struct dio_tpool *p, uint64_t c)
{
	return p->unshare_all || (p->unsharing && (p->unsharing[c / 8] >> (c % 8)) & 1);
}

/* Chunk c lost a reference by record serial, not durable yet; another map keeps one. */
static void
unshare_pending(struct dio_tpool *p, uint64_t c, uint64_t serial)
{
	if (!p->unsharing ||
	    tp_grow(&p->punshare, &p->cappunshare, p->npunshare, sizeof(*p->punshare), 64) < 0) {
		p->unshare_all = serial;	/* every chunk copies until it is durable */
		return;
	}
	p->punshare[p->npunshare++] = (struct tp_pfree){ .chunk = c, .serial = serial };
	p->unsharing[c / 8] |= (uint8_t)(1u << (c % 8));
}

/* Records up to serial are durable: the chunks they unshared may be written in place. */
static void
unshare_durable(struct dio_tpool *p, uint64_t serial)
{
	size_t j = 0;

	for (size_t i = 0; i < p->npunshare; i++) {
		uint64_t c = p->punshare[i].chunk;

		if (p->punshare[i].serial > serial)
			p->punshare[j++] = p->punshare[i];
		else
			p->unsharing[c / 8] &= (uint8_t)~(1u << (c % 8));
	}
	/* a chunk unshared again by a later record keeps its bit */
	for (size_t i = 0; i < j; i++)
		p->unsharing[p->punshare[i].chunk / 8] |= (uint8_t)(1u << (p->punshare[i].chunk % 8));
	p->npunshare = j;
	if (p->unshare_all && p->unshare_all <= serial)
		p->unshare_all = 0;
}

/*
 * Record serial is not durable yet: replay (TP_NO_RELEASE) has only
 * durable records, serial 0 is none, and pend holds the records not yet
 * committed, oldest first.
 */
static bool
serial_pending(const struct dio_tpool *p, uint64_t serial)
{
	return serial && serial != TP_NO_RELEASE && p->npend && p->pend[0].serial <= serial;
}

/*
 * Space map entry of chunk c down by one; the last reference frees it
 * (see tp_ent_unmap). When one is left and record serial is not durable,
 * the chunk is unsharing (pool.h).
 */
static void
space_drop(struct dio_tpool *p, uint64_t c, uint64_t serial)
{
	if (!p->space[c])
		return;
	p->nrefs--;
	if (--p->space[c] == 0) {
		if (serial != TP_NO_RELEASE)
			tp_chunk_release(p, c, serial);
	} else if (serial_pending(p, serial)) {
		unshare_pending(p, c, serial);
	}
}

void
tp_ent_unmap(struct dio_tpool *p, struct tp_vol *v, uint64_t l, struct tp_ment *e,
	     uint64_t serial)
{
	uint64_t c = e->p1 - 1;

	e->p1 = 0;
	e->bits = e->dbits = 0;
	v->leaf[l / TP_LEAF]->n--;
	v->mapped--;
	space_drop(p, c, serial);
}

/*
 * Drop one reference to leaf lf; the last one drops its chunks' (serial:
 * see tp_ent_unmap). When others are left, the chunks' space entries do
 * not change (a leaf counts once), yet the holders left may map them
 * alone now: until record serial is durable the durable maps still have
 * this reference, so its chunks are unsharing as in space_drop.
 */
static void
leaf_put(struct dio_tpool *p, struct tp_leaf *lf, uint64_t serial)
{
	if (!lf)
		return;
	if (--lf->refs) {
		if (p && serial_pending(p, serial))
			for (uint32_t k = 0; k < TP_LEAF; k++)
				if (lf->e[k].p1)
					unshare_pending(p, lf->e[k].p1 - 1, serial);
		return;
	}
	for (uint32_t k = 0; p && k < TP_LEAF; k++)
		if (lf->e[k].p1)
			space_drop(p, lf->e[k].p1 - 1, serial);
	free(lf);
}

bool
tp_meta_room(const struct dio_tpool *p, uint64_t refs, uint64_t leaves)
{
	/* 32-byte records: a MAP per reference, a REF per 3, an LREF and half a LEAF per leaf */
	uint64_t recs = (p->nrefs + refs) * 4 / 3 + (p->nleaves + leaves) * 3 / 2;

	/* the reserve holds two checkpoints of a MAP per chunk (tp_geometry) */
	return recs <= p->sb.nr_chunks;
}

void
tp_meta_log(struct dio_tpool *p, const char *what)
{
	/* the exact count that refused (tp_meta_fits), to tell a full pool from a bug */
	dio_log(DIO_LOG_ERR, "pool %s: no metadata room to %s: a checkpoint would write %" PRIu64
		" records and this %" PRIu64 " more, against a reserve for %" PRIu64 " records (%"
		PRIu64 " references, %" PRIu64 " leaves); what needs more fails with ENOSPC",
		p->path, what, p->meta_need, p->meta_ask, p->sb.nr_chunks, p->nrefs, p->nleaves);
}

bool
tp_meta_wait(struct dio_tpool *p, const char *what)
{
	if (errno != ENOSPC)
		return false;
	if (!p->nrq) {
		tp_meta_log(p, what);
		errno = ENOSPC;
		return false;
	}
	/* each batch broadcasts; the queue empty, the room is what it is */
	pthread_cond_wait(&p->discard_cond, &p->lock);
	return true;
}

/*
 * An upper bound, in 32-byte records, of what a checkpoint of the maps
 * would write now (ckpt_records in pool-ckpt.c, VOLs aside: the reserve
 * has room of their own for them): a MAP per mapped entry of a leaf a
 * volume has alone (a RUN covers several), an LREF per volume's pointer
 * to a shared leaf and a LEAF (half a record) and its MAPs once per
 * shared leaf, a REF per chunk with 3 or more references.
 */
static uint64_t
tp_meta_exact(struct dio_tpool *p)
{
	uint32_t mark = tp_leaf_mark(p);
	uint64_t recs = 0;

	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		for (uint64_t k = 0; v && k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++) {
			struct tp_leaf *lf = v->leaf[k];

			if (!lf || !lf->n)
				continue;
			if (lf->refs == 1) {
				recs += lf->n;
				continue;
			}
			recs++;
			if (lf->mark != mark) {
				lf->mark = mark;
				recs += 1 + lf->n;
			}
		}
	}
	for (uint64_t c = 0; c < p->sb.nr_chunks; c++)
		recs += p->space[c] >= 3;
	return recs;
}

bool
tp_meta_fits(struct dio_tpool *p, uint64_t refs, uint64_t leaves, uint64_t grow)
{
	uint64_t recs;

	if (!p->meta_guard || p->meta_credit >= grow)
		return true;
	if (tp_meta_room(p, refs, leaves))
		return true;	/* the bound of the worst case holds */
	/* Shared leaves and chunks: count what a checkpoint would write (O(map)). */
	recs = tp_meta_exact(p);
	p->meta_credit = recs < p->sb.nr_chunks ? p->sb.nr_chunks - recs : 0;
	if (p->meta_credit >= grow)
		return true;
	p->meta_need = recs;	/* for tp_meta_log */
	p->meta_ask = grow;
	return false;
}

void
tp_meta_spend(struct dio_tpool *p, uint64_t grow)
{
	p->meta_credit = p->meta_credit > grow ? p->meta_credit - grow : 0;
}

uint64_t
tp_share_grows(const struct tp_vol *v)
{
	uint64_t grow = 0;

	/*
	 * A leaf a volume had alone goes from its n MAPs to a LEAF, the same
	 * n MAPs and two LREFs; one shared already gets an LREF more. No REF:
	 * space counts the leaves that map a chunk, not the pointers to them.
	 */
	for (uint64_t k = 0; k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++)
		if (v->leaf[k] && v->leaf[k]->n)
			grow += v->leaf[k]->refs == 1 ? 3 : 1;
	return grow;
}

uint32_t
tp_leaf_mark(struct dio_tpool *p)
{
	if (++p->leaf_mark == 0) {
		/* wrapped: no leaf may keep an old mark that looks new */
		for (uint32_t i = 0; i < p->nvols; i++)
			for (uint64_t k = 0; p->vols[i] && k < (p->vols[i]->nl + TP_LEAF - 1) / TP_LEAF;
			     k++)
				if (p->vols[i]->leaf[k])
					p->vols[i]->leaf[k]->mark = 0;
		p->leaf_mark = 1;
	}
	return p->leaf_mark;
}

/*
 * Grow or shrink v's map to size bytes; entries past the end must be holes.
 * A shrink frees the leaves past the new end and clears the rest of the
 * last one, so a later grow starts from holes. 0, -EFBIG past
 * TP_VOL_CHUNKS_MAX, or -ENOMEM.
 */
static int
tp_vol_size(struct dio_tpool *p, struct tp_vol *v, uint64_t size)
{
	uint64_t nl = size / p->chunk_size + (size % p->chunk_size != 0);
	uint64_t nleaf = (nl + TP_LEAF - 1) / TP_LEAF, old = (v->nl + TP_LEAF - 1) / TP_LEAF;
	struct tp_leaf **leaf;

	if (nl > TP_VOL_CHUNKS_MAX)
		return -EFBIG;
	if (nleaf < old) {
		/* holes only past the end (the caller unmapped them): no chunk to drop */
		for (uint64_t i = nleaf; i < old; i++) {
			p->nleaves -= v->leaf[i] != NULL;
			leaf_put(NULL, v->leaf[i], TP_NO_RELEASE);
			v->leaf[i] = NULL;
		}
	}
	/* Holes already: clearing them changes no leaf another volume sees. */
	if (nl < v->nl && nl % TP_LEAF && v->leaf[nl / TP_LEAF])
		memset(&v->leaf[nl / TP_LEAF]->e[nl % TP_LEAF], 0,
		       (TP_LEAF - nl % TP_LEAF) * sizeof(struct tp_ment));
	if (nleaf > old) {
		leaf = realloc(v->leaf, nleaf * sizeof(*leaf));
		if (!leaf)
			return -ENOMEM;
		memset(leaf + old, 0, (nleaf - old) * sizeof(*leaf));
		v->leaf = leaf;
	}
	v->nl = nl;
	v->size = size;
	return 0;
}

struct tp_vol *
tp_vol_new(struct dio_tpool *p, uint32_t id, const char *name, uint64_t size, const uint8_t *uuid)
{
	struct tp_vol *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->id = id;
	snprintf(v->name, sizeof(v->name), "%s", name);
	if (uuid)
		memcpy(v->uuid, uuid, 16);
	if (tp_vol_size(p, v, size) < 0) {
		free(v);
		return NULL;
	}
	/* Spread the volumes' cursors so each fills its own region. */
	v->cursor = p->sb.nr_chunks ? ((uint64_t)id * 2654435761u) % p->sb.nr_chunks : 0;
	return v;
}

void
tp_vol_free(struct tp_vol *v)
{
	if (!v)
		return;
	for (uint64_t i = 0; i < (v->nl + TP_LEAF - 1) / TP_LEAF; i++)
		leaf_put(NULL, v->leaf[i], TP_NO_RELEASE);
	free(v->leaf);
	free(v);
}

void
tp_vol_detach(struct dio_tpool *p, struct tp_vol *v)
{
	for (uint32_t i = 0; i < p->nvols; i++)
		if (p->vols[i] == v)
			p->vols[i] = NULL;
}

uint64_t
tp_vol_drop_leaves(struct dio_tpool *p, struct tp_vol *v, uint64_t *next, uint64_t max,
		   uint64_t serial)
{
	uint64_t nleaf = (v->nl + TP_LEAF - 1) / TP_LEAF, ents = 0;

	for (; *next < nleaf && max; ++*next) {
		struct tp_leaf *lf = v->leaf[*next];

		if (!lf)
			continue;
		max--;
		ents += lf->n;
		p->nleaves--;
		leaf_put(p, lf, serial);
		v->leaf[*next] = NULL;
	}
	return ents;
}

void
tp_vol_drop(struct dio_tpool *p, struct tp_vol *v, uint64_t serial)
{
	uint64_t next = 0;

	tp_vol_drop_leaves(p, v, &next, UINT64_MAX, serial);
	tp_vol_detach(p, v);
	tp_vol_free(v);
}

struct tp_vol *
tp_vol_ghost(struct dio_tpool *p, struct tp_vol *v, uint64_t from)
{
	uint64_t old = (v->nl + TP_LEAF - 1) / TP_LEAF, n = from < old ? old - from : 0;
	struct tp_vol *g = calloc(1, sizeof(*g));

	if (!g || !(g->leaf = calloc(n ? n : 1, sizeof(*g->leaf)))) {
		free(g);
		return NULL;
	}
	g->id = v->id;
	memcpy(g->name, v->name, sizeof(g->name));
	/* Its leaves stay in nleaves until dropped: what the reserve counts. */
	for (uint64_t i = 0; i < n; i++) {
		g->leaf[i] = v->leaf[from + i];
		v->leaf[from + i] = NULL;
		if (g->leaf[i])
			g->mapped += g->leaf[i]->n;
	}
	g->nl = n * TP_LEAF;
	g->size = g->nl * p->chunk_size;
	v->mapped -= g->mapped;
	return g;
}

int
tp_vol_revert(struct dio_tpool *p, struct tp_vol *v, struct tp_vol *s, uint64_t serial,
	      struct tp_vol **old_map)
{
	uint64_t nleaf = (s->nl + TP_LEAF - 1) / TP_LEAF, old = (v->nl + TP_LEAF - 1) / TP_LEAF;
	struct tp_leaf **leaf = calloc(nleaf ? nleaf : 1, sizeof(*leaf));

	if (!leaf)
		return -ENOMEM;
	/* Its old leaves to a ghost, whole: none of them is put here. */
	if (old_map && (*old_map = tp_vol_ghost(p, v, 0)))
		old = 0;
	tp_meta_spend(p, tp_share_grows(s));	/* LREFs to the shared leaves */
	/* Take the snapshot's leaves first: a leaf both map keeps its chunks. */
	for (uint64_t i = 0; i < nleaf; i++) {
		leaf[i] = s->leaf[i];
		if (leaf[i]) {
			leaf[i]->refs++;
			p->nleaves++;
		}
	}
	for (uint64_t i = 0; i < old; i++) {
		p->nleaves -= v->leaf[i] != NULL;
		leaf_put(p, v->leaf[i], serial);
	}
	free(v->leaf);
	v->leaf = leaf;
	v->nl = s->nl;
	v->size = s->size;
	v->mapped = s->mapped;
	return 0;
}

struct tp_vol *
tp_vol_by_id(struct dio_tpool *p, uint32_t id)
{
	for (uint32_t i = 0; i < p->nvols; i++)
		if (p->vols[i] && p->vols[i]->id == id)
			return p->vols[i];
	return NULL;
}

struct tp_vol *
tp_vol_by_name(struct dio_tpool *p, const char *name)
{
	for (uint32_t i = 0; i < p->nvols; i++)
		if (p->vols[i] && strcmp(p->vols[i]->name, name) == 0)
			return p->vols[i];
	return NULL;
}

int
tp_vol_add(struct dio_tpool *p, struct tp_vol *v)
{
	struct tp_vol **n = realloc(p->vols, (p->nvols + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	p->vols = n;
	p->vols[p->nvols++] = v;
	if (v->id >= p->next_vol_id)
		p->next_vol_id = v->id + 1;
	return 0;
}

int64_t
tp_alloc(struct dio_tpool *p, struct tp_vol *v)
{
	uint64_t n = p->sb.nr_chunks;
	/* A chunk whose discard is queued only when no FREE one is left. */
	int want = TP_C_FREE;

	for (;;) {
		if (p->free_chunks == 0 && !p->ndiscarding && !p->nrq)
			return -ENOSPC;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t c = (v->cursor + i) % n;

			if (p->cstate[c] == want) {
				/* (a DISCARD chunk: its run in dq skips it now) */
				p->cstate[c] = TP_C_USED;
				p->free_chunks--;
				v->cursor = (c + 1) % n;
				return (int64_t)c;
			}
		}
		if (want == TP_C_FREE && p->ndq && p->free_chunks) {
			want = TP_C_DISCARD;
			continue;
		}
		if (!p->ndiscarding && !p->nrq)
			return -ENOSPC;
		/*
		 * The last free chunks are being discarded, or a deleted volume's
		 * are still being reclaimed: wait for that batch (both broadcast).
		 */
		pthread_cond_wait(&p->discard_cond, &p->lock);
		return -EAGAIN;	/* the lock was dropped: the caller looks its entry up again */
	}
}

void
tp_chunk_release(struct dio_tpool *p, uint64_t c, uint64_t serial)
{
	if (serial == 0) {
		p->cstate[c] = TP_C_FREE;
		p->free_chunks++;
		return;
	}
	if (tp_grow(&p->pfree, &p->cappfree, p->npfree, sizeof(*p->pfree), 64) < 0) {
		/* Out of memory: leak the chunk until the next open (R4 allows it). */
		p->cstate[c] = TP_C_USED;
		return;
	}
	p->cstate[c] = TP_C_PENDING;
	p->pfree[p->npfree++] = (struct tp_pfree){ .chunk = c, .serial = serial };
}

/*
 * Pass chunks [c, c+n) down to the device as discarded: a pool on a file
 * gives the space back to the filesystem, an SSD learns the blocks are
 * free. Only for chunks whose freeing is durable (R3). Failures cost
 * nothing but space; a device that cannot is not asked again.
 */
static bool
tp_discard_wanted(const struct dio_tpool *p)
{
	return p->io->discard && !p->no_discard && !p->readonly;
}

/* Its device I/O alone: touches nothing the lock guards. */
static int
tp_discard_io(struct dio_tpool *p, uint64_t c, uint64_t n)
{
	return p->io->discard(p->io->priv, p->fd, p->sb.data_start + c * p->chunk_size,
			      n * p->chunk_size);
}

/* What a discard's result means for the pool, under lock. */
static void
tp_discard_result(struct dio_tpool *p, uint64_t c, uint64_t n, int ret)
{
	if (ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -EINVAL) {
		dio_log(DIO_LOG_INFO, "pool %s: the device does not take discards (%s): "
			"freed chunks keep their space on it", p->path, strerror(-ret));
		p->no_discard = true;
	} else if (ret < 0) {
		dio_log(DIO_LOG_WARN, "pool %s: discard of %llu chunks at chunk %llu: %s", p->path,
			(unsigned long long)n, (unsigned long long)c, strerror(-ret));
	}
}

static void
tp_discard(struct dio_tpool *p, uint64_t c, uint64_t n)
{
	if (n && tp_discard_wanted(p))
		tp_discard_result(p, c, n, tp_discard_io(p, c, n));
}

/*
 * Whether chunks freed now are discarded by the committer thread rather
 * than here, under the lock: when it runs (the daemon and the plugin set
 * commit_ms; the first write or volume delete starts it) and discards are
 * wanted at all.
 */
static bool
tp_discard_later(const struct dio_tpool *p)
{
	return !p->commit_stop && p->committer_on && tp_discard_wanted(p);
}

/* Queue the run [c, c+n) of TP_C_DISCARD chunks; false (discard it now) without memory. */
static bool
tp_dq_push(struct dio_tpool *p, uint64_t c, uint64_t n)
{
	if (tp_grow(&p->dq, &p->capdq, p->ndq, sizeof(*p->dq), 16) < 0)
		return false;
	p->dq[p->ndq++] = (struct tp_run){ .c = c, .n = n };
	return true;
}

/* The run [c, c+n) is free and durable: discard it now or queue it for the committer. */
static void
tp_freed_run(struct dio_tpool *p, uint64_t c, uint64_t n, bool later)
{
	if (!n)
		return;
	if (later && tp_dq_push(p, c, n)) {
		for (uint64_t i = c; i < c + n; i++)
			p->cstate[i] = TP_C_DISCARD;
		return;
	}
	tp_discard(p, c, n);
}

void
tp_pfree_durable(struct dio_tpool *p, uint64_t serial)
{
	bool later = tp_discard_later(p);
	uint64_t run = 0, run_n = 0, queued = p->ndq;
	size_t j = 0;

	if (p->npunshare || p->unshare_all)
		unshare_durable(p, serial);

	for (size_t i = 0; i < p->npfree; i++) {
		uint64_t c = p->pfree[i].chunk;

		if (p->pfree[i].serial > serial) {
			p->pfree[j++] = p->pfree[i];
			continue;
		}
		p->cstate[c] = TP_C_FREE;
		p->free_chunks++;
		/* neighbours in the order they were freed: one discard per run */
		if (run_n && c == run + run_n) {
			run_n++;
		} else {
			tp_freed_run(p, run, run_n, later);
			run = c;
			run_n = 1;
		}
	}
	tp_freed_run(p, run, run_n, later);
	p->npfree = j;
	/* (the thread, asleep with nothing to commit, has discards to do) */
	if (p->ndq > queued && p->committer_idle)
		pthread_cond_signal(&p->commit_cond);
}

/*
 * Take the next run of TP_C_DISCARD chunks off the queue (at most
 * discard_batch), marked TP_C_DISCARDING; n = 0 when the queue held
 * none still waiting (all allocated again since).
 */
static struct tp_run
tp_dq_take(struct dio_tpool *p)
{
	while (p->ndq) {
		struct tp_run *q = &p->dq[p->ndq - 1];
		uint64_t c = q->c, end = q->c + q->n, e;

		while (c < end && p->cstate[c] != TP_C_DISCARD)
			c++;
		for (e = c; e < end && e - c < p->discard_batch && p->cstate[e] == TP_C_DISCARD; e++)
			p->cstate[e] = TP_C_DISCARDING;
		if (e < end) {
			q->n = end - e;		/* the rest stays queued */
			q->c = e;
		} else {
			p->ndq--;
		}
		if (e > c) {
			p->free_chunks -= e - c;
			p->ndiscarding += e - c;
			return (struct tp_run){ .c = c, .n = e - c };
		}
	}
	return (struct tp_run){ 0 };
}

/* The discard of r is done (or failed: the chunks are free either way). */
static void
tp_dq_done(struct dio_tpool *p, struct tp_run r)
{
	for (uint64_t i = r.c; i < r.c + r.n; i++)
		p->cstate[i] = TP_C_FREE;
	p->free_chunks += r.n;
	p->ndiscarding -= r.n;
	p->discarded += r.n;
	pthread_cond_broadcast(&p->discard_cond);
}

void
tp_discard_some(struct dio_tpool *p)
{
	struct tp_run r = tp_dq_take(p);
	int ret;

	if (!r.n)
		return;
	if (tp_discard_wanted(p)) {
		pthread_mutex_unlock(&p->lock);
		ret = tp_discard_io(p, r.c, r.n);
		pthread_mutex_lock(&p->lock);
		tp_discard_result(p, r.c, r.n, ret);
	}
	tp_dq_done(p, r);
}

void
tp_discard_drain(struct dio_tpool *p)
{
	struct tp_run r;

	while ((r = tp_dq_take(p)).n) {
		tp_discard(p, r.c, r.n);
		tp_dq_done(p, r);
	}
}

static int
apply_err(char *err, size_t errlen, const char *what, const struct tp_rec *r)
{
	if (err && errlen)
		snprintf(err, errlen, "record type %u volume %u (%llu, %llu): %s", r->type, r->vol,
			 (unsigned long long)r->a, (unsigned long long)r->b, what);
	return -EUCLEAN;
}

/* A new volume from a VOL or SNAP record (checked): its map empty, or origin's shared. */
static int
apply_vol(struct dio_tpool *p, const struct tp_rec *r, struct tp_vol *origin)
{
	struct tp_vol *v = tp_vol_new(p, r->vol, r->name, r->a, r->uuid);

	if (!v)
		return -ENOMEM;
	v->flags = r->flags;
	v->parent = (uint32_t)r->b;
	if (origin) {
		/* LEAF and LREF records, taken before the leaves are shared */
		tp_meta_spend(p, tp_share_grows(origin));
		/* O(leaves): the table is copied, the leaves shared. */
		for (uint64_t i = 0; i < (v->nl + TP_LEAF - 1) / TP_LEAF; i++) {
			v->leaf[i] = origin->leaf[i];
			if (v->leaf[i])
				v->leaf[i]->refs++;
		}
		v->mapped = origin->mapped;
	}
	if (tp_vol_add(p, v) < 0) {
		tp_vol_free(v);
		return -ENOMEM;
	}
	for (uint64_t i = 0; origin && i < (v->nl + TP_LEAF - 1) / TP_LEAF; i++)
		p->nleaves += v->leaf[i] != NULL;
	return 0;
}

int
tp_apply(struct dio_tpool *p, const struct tp_rec *r, char *err, size_t errlen)
{
	struct tp_vol *v = r->type == TP_R_COMMIT ? NULL : tp_vol_by_id(p, r->vol);
	struct tp_vol *o = NULL;
	struct tp_ment *e;

	switch (r->type) {
	case TP_R_COMMIT:
		return 0;
	case TP_R_SNAP:
		o = tp_vol_by_id(p, (uint32_t)r->b);
		if (!o || o->size != r->a)
			return apply_err(err, errlen, "snapshot of no volume, or of another size", r);
		if (r->flags & TP_VF_REVERT) {
			if (!v || v == o || o->parent != v->id || (v->flags & TP_VF_RO))
				return apply_err(err, errlen, "revert to no snapshot of the volume", r);
			return tp_vol_revert(p, v, o, TP_NO_RELEASE, NULL);
		}
		/* fallthrough */
	case TP_R_VOL:
		if (v || r->vol == 0)
			return apply_err(err, errlen, "volume exists already", r);
		if (r->a % TP_BLOCK || r->a / p->chunk_size >= TP_VOL_CHUNKS_MAX)
			return apply_err(err, errlen, "bad volume size", r);
		/* The name field holds DIO_TPOOL_NAME_MAX bytes and a NUL. */
		if (!r->name[0] || !memchr(r->name, 0, sizeof(r->name)) ||
		    tp_vol_by_name(p, r->name))
			return apply_err(err, errlen, "bad or duplicate volume name", r);
		if (r->flags & ~TP_VF_RO)
			return apply_err(err, errlen, "unknown volume flags", r);
		return apply_vol(p, r, o);
	case TP_R_RESIZE:
		if (!v || r->a % TP_BLOCK || r->a / p->chunk_size >= TP_VOL_CHUNKS_MAX ||
		    (r->rsvd & ~TP_RZ_DROP))
			return apply_err(err, errlen, "resize of no volume, or to a bad size", r);
		if (r->rsvd & TP_RZ_DROP) {
			/* whole leaves past the end, with their chunks; the cut one had UNMAPs */
			uint64_t nl = (r->a + p->chunk_size - 1) / p->chunk_size;
			uint64_t next = (nl + TP_LEAF - 1) / TP_LEAF;

			v->mapped -= tp_vol_drop_leaves(p, v, &next, UINT64_MAX, TP_NO_RELEASE);
		}
		for (uint64_t l = (r->a + p->chunk_size - 1) / p->chunk_size; l < v->nl; l++) {
			if (!v->leaf[l / TP_LEAF]) {
				l |= TP_LEAF - 1;	/* a leaf of holes: the next one */
				continue;
			}
			e = tp_ment(v, l);
			if (e && e->p1)
				return apply_err(err, errlen, "shrink over mapped chunks", r);
		}
		return tp_vol_size(p, v, r->a);
	case TP_R_VOLDEL:
		if (!v)
			return apply_err(err, errlen, "delete of no volume", r);
		tp_vol_drop(p, v, TP_NO_RELEASE);
		return 0;
	case TP_R_MAP:
		if (!v || r->a >= v->nl || r->b >= p->sb.nr_chunks || !r->bits ||
		    (r->bits & ~p->full_bits))
			return apply_err(err, errlen, "map out of bounds", r);
		e = tp_ment(v, r->a);
		if (!e || !e->p1) {
			if (p->space[r->b])
				return apply_err(err, errlen, "chunk mapped twice", r);
			e = tp_ment_w(p, v, r->a, true);
			if (!e)
				return -ENOMEM;
			tp_ent_map(p, v, r->a, e, r->b);
		} else if (e->p1 != r->b + 1) {
			return apply_err(err, errlen, "remap of a mapped chunk", r);
		} else if ((r->bits & ~e->bits) && tp_shared(p, v, r->a, e)) {
			return apply_err(err, errlen, "write into a shared chunk", r);
		} else if (!(e = tp_ment_w(p, v, r->a, false))) {
			return -ENOMEM;
		}
		e->bits |= r->bits;
		e->dbits = e->bits;
		return 0;
	case TP_R_COW:
		if (!v || r->a >= v->nl || r->b >= p->sb.nr_chunks || (r->bits & ~p->full_bits))
			return apply_err(err, errlen, "copy-on-write out of bounds", r);
		e = tp_ment(v, r->a);
		if (p->space[r->b] || (e && e->p1 == r->b + 1))
			return apply_err(err, errlen, "copy-on-write to a used chunk", r);
		/*
		 * Unmapped already: a TRIM emptied the entry while the copy was
		 * in flight. The live pool kept the entry for the copy
		 * (inflight) and re-pointed it; the UNMAP before this record
		 * dropped the old chunk's reference here, so the copy maps its
		 * chunk anew, as a MAP onto a hole does.
		 */
		e = tp_ment_w(p, v, r->a, true);
		if (!e)
			return -ENOMEM;
		if (e->p1)
			tp_ent_unmap(p, v, r->a, e, TP_NO_RELEASE);
		tp_ent_map(p, v, r->a, e, r->b);
		e->bits = e->dbits = r->bits;
		return 0;
	case TP_R_UNMAP:
		if (!v || r->a >= v->nl)
			return apply_err(err, errlen, "unmap out of bounds", r);
		e = tp_ment(v, r->a);
		if (!e || !e->p1 || !(e->bits & r->bits))
			return 0;	/* unmapped already */
		e = tp_ment_w(p, v, r->a, false);
		if (!e)
			return -ENOMEM;
		e->bits &= ~r->bits;
		e->dbits = e->bits;
		if (!e->bits)
			tp_ent_unmap(p, v, r->a, e, TP_NO_RELEASE);
		return 0;
	}
	return apply_err(err, errlen, "unknown record", r);
}

void
tp_derive(struct dio_tpool *p)
{
	memset(p->cstate, TP_C_FREE, p->sb.nr_chunks);
	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		if (!v)
			continue;
		v->mapped = 0;
		for (uint64_t l = 0; l < v->nl; l++) {
			struct tp_ment *e = tp_ment(v, l);

			if (e && e->p1) {
				v->mapped++;
				p->cstate[e->p1 - 1] = TP_C_USED;
				v->cursor = e->p1 % p->sb.nr_chunks;	/* after its last chunk */
			}
		}
	}
	p->free_chunks = 0;
	p->nrefs = 0;
	p->nleaves = 0;
	p->meta_credit = 0;	/* counted again when needed */
	for (uint32_t i = 0; i < p->nvols; i++)
		for (uint64_t k = 0; p->vols[i] && k < (p->vols[i]->nl + TP_LEAF - 1) / TP_LEAF; k++)
			p->nleaves += p->vols[i]->leaf[k] != NULL;
	for (uint64_t c = 0; c < p->sb.nr_chunks; c++) {
		p->nrefs += p->space[c];
		/* A leak (space says used, nothing maps it) stays used: repair's job. */
		if (p->space[c])
			p->cstate[c] = TP_C_USED;
		p->free_chunks += p->cstate[c] == TP_C_FREE;
	}
}
