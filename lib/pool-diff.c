/* SPDX-License-Identifier: MIT */
/*
 * What changed between two volumes of a pool (issue 11's incremental
 * backup): a snapshot and the volume it was taken of, or two snapshots.
 * Maps share leaves (pool-map.c), so a leaf both tables still point to is
 * unchanged without looking inside: a diff costs one pointer compare per
 * TP_LEAF chunks that nobody wrote since the snapshot, and an entry
 * compare per chunk of the others. A chunk is changed when the two map it
 * differently: another physical chunk (a copy-on-write, a new allocation)
 * or other written sub-blocks (a TRIM, a write into an unwritten
 * sub-block). Granularity is the chunk: a CoW copies the chunk's other
 * sub-blocks, so they cannot be told apart from the written one without
 * reading data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "volume-priv.h"

/* Run state: adjacent chunks alike merged into one call of fn. */
struct diff_run {
	dio_tpool_diff_fn fn;
	void *priv;
	uint64_t off, len;
	bool changed, open;
};

static int
diff_emit(struct diff_run *r, uint64_t off, uint64_t len, bool changed)
{
	int ret = 0;

	if (r->open && r->changed == changed && r->off + r->len == off) {
		r->len += len;
		return 0;
	}
	if (r->open)
		ret = r->fn(r->priv, r->off, r->len, r->changed);
	*r = (struct diff_run){ .fn = r->fn, .priv = r->priv, .off = off, .len = len,
				.changed = changed, .open = true };
	return ret;
}

/* Entry l of v, or NULL past its end or in a leaf it never made (a hole). */
static const struct tp_ment *
diff_ent(struct tp_vol *v, uint64_t l)
{
	return l < v->nl ? tp_ment(v, l) : NULL;
}

static bool
diff_same(const struct tp_ment *a, const struct tp_ment *b)
{
	uint32_t ap = a ? a->p1 : 0, bp = b ? b->p1 : 0;

	if (!ap && !bp)
		return true;	/* holes both: the bits of a hole mean nothing */
	return ap == bp && a->bits == b->bits;
}

/* Under p->lock. */
static int
diff_walk(struct dio_tpool *p, struct tp_vol *base, struct tp_vol *target, uint64_t off,
	  uint64_t len, dio_tpool_diff_fn fn, void *priv)
{
	struct diff_run run = { .fn = fn, .priv = priv };
	uint64_t cs = p->chunk_size, end, l;
	int ret = 0;

	if (off > target->size)
		return -EINVAL;
	end = len > target->size - off ? target->size : off + len;
	for (l = off / cs; !ret && l * cs < end;) {
		uint64_t leaf = l / TP_LEAF, next = (leaf + 1) * TP_LEAF;
		uint64_t a = l * cs < off ? off : l * cs, b;

		if (l < base->nl && l < target->nl && base->leaf[leaf] == target->leaf[leaf]) {
			/* the same leaf (or none in both): nothing in it changed */
			next = next < base->nl ? next : base->nl;
			next = next < target->nl ? next : target->nl;
			b = next * cs < end ? next * cs : end;
			ret = diff_emit(&run, a, b - a, false);
			l = next;
			continue;
		}
		b = (l + 1) * cs < end ? (l + 1) * cs : end;
		ret = diff_emit(&run, a, b - a, !diff_same(diff_ent(base, l), diff_ent(target, l)));
		l++;
	}
	if (!ret && run.open)
		ret = fn(priv, run.off, run.len, run.changed);
	return ret;
}

int
dio_tpool_volume_diff(struct dio_tpool *pool, const char *base, const char *target,
		      uint64_t off, uint64_t len, dio_tpool_diff_fn fn, void *priv)
{
	struct tp_vol *b, *t;
	int ret;

	pthread_mutex_lock(&pool->lock);
	b = tp_vol_by_name(pool, base);
	t = tp_vol_by_name(pool, target);
	ret = b && t ? diff_walk(pool, b, t, off, len, fn, priv) : -ENOENT;
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_dvol_diff(struct dio_volume *vol, const char *base, uint64_t off, uint64_t len,
		    dio_tpool_diff_fn fn, void *priv)
{
	struct dio_tpool *pool;
	struct tp_vol *b, *t;
	int ret;

	if (!tp_dvol_of(vol, &pool, &t))
		return -ENOTSUP;
	pthread_mutex_lock(&pool->lock);
	b = tp_vol_by_name(pool, base);
	ret = b ? diff_walk(pool, b, t, off, len, fn, priv) : -ENOENT;
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

/*
 * Whether a diff against v is offered on t: v is a snapshot of t, or t is
 * a snapshot and v another snapshot of the same origin (between two
 * snapshots, as a backup reads them).
 */
static bool
diff_offered(const struct tp_vol *t, const struct tp_vol *v)
{
	if (!v || v == t || !(v->flags & TP_VF_RO))
		return false;
	return v->parent == t->id || ((t->flags & TP_VF_RO) && t->parent && v->parent == t->parent);
}

int
dio_tpool_dvol_snapshots(struct dio_volume *vol, char (**names)[DIO_TPOOL_NAME_MAX + 1],
			 size_t *n)
{
	struct dio_tpool *pool;
	struct tp_vol *t;
	size_t k = 0;

	*names = NULL;
	*n = 0;
	if (!tp_dvol_of(vol, &pool, &t))
		return -ENOTSUP;
	pthread_mutex_lock(&pool->lock);
	for (uint32_t i = 0; i < pool->nvols; i++)
		k += diff_offered(t, pool->vols[i]);
	if (k && !(*names = calloc(k, sizeof(**names)))) {
		pthread_mutex_unlock(&pool->lock);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < pool->nvols && *n < k; i++)
		if (diff_offered(t, pool->vols[i]))
			memcpy((*names)[(*n)++], pool->vols[i]->name, sizeof(pool->vols[i]->name));
	pthread_mutex_unlock(&pool->lock);
	return 0;
}
