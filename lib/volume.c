/* SPDX-License-Identifier: MIT */
/*
 * What libdio keeps for every volume, whatever its backend: references and
 * identity, the write generation, and the block-range lock (volume-priv.h).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "volume-priv.h"

int
dio_volume_init(struct dio_volume *vol)
{
	static _Atomic uint64_t last_id;
	struct dio_vol_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	st->refs = 1;
	st->id = ++last_id;
	pthread_mutex_init(&st->range_lock, NULL);
	vol->state = st;
	if (!vol->blksize || vol->blksize < vol->lbs)
		vol->blksize = vol->lbs;
	return 0;
}

void
dio_volume_fini(struct dio_volume *vol)
{
	if (!vol->state)
		return;
	pthread_mutex_destroy(&vol->state->range_lock);
	free(vol->state);
	vol->state = NULL;
}

struct dio_volume *
dio_volume_get(struct dio_volume *vol)
{
	vol->state->refs++;
	return vol;
}

bool
dio_volume_tryget(struct dio_volume *vol)
{
	unsigned int n = atomic_load(&vol->state->refs);

	do {
		if (n == 0)
			return false;
	} while (!atomic_compare_exchange_weak(&vol->state->refs, &n, n + 1));
	return true;
}

void
dio_volume_put(struct dio_volume *vol)
{
	if (!vol || --vol->state->refs > 0)
		return;
	if (vol->vol_ops && vol->vol_ops->release)
		vol->vol_ops->release(vol);
	else
		dio_volume_fini(vol);
}

uint64_t
dio_volume_id(const struct dio_volume *vol)
{
	return vol->state->id;
}

void
dio_volume_write_begin(struct dio_volume *vol)
{
	/* writers first: a reader that saw the old generation then sees the writer */
	vol->state->writers++;
	vol->state->write_gen++;
}

void
dio_volume_write_end(struct dio_volume *vol)
{
	vol->state->writers--;
}

uint64_t
dio_volume_write_gen(const struct dio_volume *vol, bool *writing)
{
	/* generation before writers: see dio_volume_write_begin */
	uint64_t gen = vol->state->write_gen;

	if (writing)
		*writing = vol->state->writers > 0;
	return gen;
}

static bool
dio_range_overlap(const struct dio_range *a, const struct dio_range *b)
{
	return a->start < b->end && b->start < a->end;
}

bool
dio_range_lock(struct dio_volume *vol, struct dio_range *r)
{
	struct dio_vol_state *st = vol->state;
	struct dio_range **pp, *q;
	bool busy = false;

	pthread_mutex_lock(&st->range_lock);
	/* FIFO: wait behind any earlier holder or waiter that overlaps. */
	for (pp = &st->ranges; (q = *pp); pp = &q->next)
		if (dio_range_overlap(q, r))
			busy = true;
	r->next = NULL;
	r->waiting = busy;
	*pp = r;
	pthread_mutex_unlock(&st->range_lock);
	return !busy;
}

void
dio_range_unlock(struct dio_volume *vol, struct dio_range *r)
{
	struct dio_vol_state *st = vol->state;
	struct dio_range **pp, *q, *p;

	pthread_mutex_lock(&st->range_lock);
	for (pp = &st->ranges; (q = *pp); pp = &q->next)
		if (q == r) {
			*pp = r->next;
			break;
		}
	/* Hand the range to each waiter that no earlier entry overlaps any more. */
	for (q = st->ranges; q; q = q->next) {
		bool blocked = false;

		if (!q->waiting)
			continue;
		for (p = st->ranges; p != q; p = p->next)
			if (dio_range_overlap(p, q))
				blocked = true;
		if (!blocked) {
			q->waiting = false;
			dio_ctx_post(q->ctx, q->resume);
		}
	}
	pthread_mutex_unlock(&st->range_lock);
}
