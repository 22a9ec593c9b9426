/* SPDX-License-Identifier: MIT */
/*
 * What a pool holds, for the tools (dionbd-pool dump): the superblock in
 * use, the journal's extent, a summary of the space map and each
 * volume's map. Read-only, under the pool lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

int
dio_tpool_get_meta(struct dio_tpool *pool, struct dio_tpool_meta *m)
{
	const struct tp_super *sb = &pool->sb;
	uint16_t *refs;
	int ret;

	memset(m, 0, sizeof(*m));
	pthread_mutex_lock(&pool->lock);
	ret = tp_recount(pool, &refs, NULL, NULL);
	if (ret < 0)
		goto out;
	m->version = sb->h.version;
	m->block_size = sb->block_size;
	m->feat_compat = sb->feat_compat;
	m->feat_ro_compat = sb->feat_ro_compat;
	m->feat_incompat = sb->feat_incompat;
	m->created = sb->created;
	m->journal_start = sb->journal_start;
	m->meta_start = sb->meta_start;
	m->data_start = sb->data_start;
	m->ckpt_root = sb->ckpt_root;
	m->next_vol_id = pool->next_vol_id;
	for (uint64_t b = 0; b < sb->meta_blocks; b++)
		m->ckpt_blocks += pool->meta_used[b];
	m->journal_head = pool->head;
	m->journal_tail = sb->journal_tail;
	m->pending_records = pool->npend;
	for (uint64_t c = 0; c < sb->nr_chunks; c++) {
		tp_progress(pool, "summing the space map", c + 1, sb->nr_chunks);
		m->chunks_used += pool->cstate[c] == TP_C_USED;
		m->chunks_pending += pool->cstate[c] == TP_C_PENDING;
		m->chunks_free += pool->cstate[c] == TP_C_FREE || pool->cstate[c] == TP_C_DISCARD ||
				  pool->cstate[c] == TP_C_DISCARDING;
		m->refcount[pool->space[c] < 3 ? pool->space[c] : 3]++;
		m->leaked += pool->space[c] > refs[c];
	}
	free(refs);
out:
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_volume_map(struct dio_tpool *pool, const char *name, dio_tpool_map_fn fn, void *priv)
{
	struct tp_vol *v;
	int ret = 0;

	pthread_mutex_lock(&pool->lock);
	v = tp_vol_by_name(pool, name);
	if (!v)
		ret = -ENOENT;
	for (uint64_t i = 0; v && ret == 0 && i < (v->nl + TP_LEAF - 1) / TP_LEAF; i++) {
		/* Whole leaves of holes at once: most of a thin volume. */
		for (uint64_t l = i * TP_LEAF; v->leaf[i] && ret == 0 && l < v->nl &&
		     l < (i + 1) * TP_LEAF; l++) {
			const struct tp_ment *e = &v->leaf[i]->e[l % TP_LEAF];

			if (e->p1)
				ret = fn(priv, l, e->p1 - 1, e->bits);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	return ret;
}
