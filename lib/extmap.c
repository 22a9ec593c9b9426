/* SPDX-License-Identifier: MIT */
/*
 * extmap: the in-memory extent map of a volume (see extmap.h for the
 * representation and the cost of each operation).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dio/extent.h"
#include "extmap.h"

int
extmap_init(struct extmap *m)
{
	pthread_rwlockattr_t attr;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = pthread_rwlockattr_init(&attr);
	if (ret)
		return -ret;
	/*
	 * glibc's default lets a steady stream of readers (map_begin on every
	 * thread) starve the writers (map_end after each allocating write).
	 */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ret = pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return -ret;
}

void
extmap_destroy(struct extmap *m)
{
	pthread_rwlock_destroy(&m->lock);
	free(m->runs);
	m->runs = NULL;
	m->nr = m->cap = 0;
}

/* Index of the first run that ends after pos (nr if none). Lock held. */
static size_t
first_end_after(const struct extmap *m, uint64_t pos)
{
	size_t lo = 0, hi = m->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->runs[mid].end > pos)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Index of the first run at or after 'from' that starts at or after pos. */
static size_t
first_start_from(const struct extmap *m, size_t from, uint64_t pos)
{
	size_t lo = from, hi = m->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->runs[mid].start >= pos)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Make room for at least 'want' runs. 0 or -ENOMEM. Write lock held. */
static int
reserve(struct extmap *m, size_t want)
{
	struct extmap_run *r;
	size_t cap;

	if (want <= m->cap)
		return 0;
	cap = m->cap ? m->cap * 2 : 16;
	while (cap < want)
		cap *= 2;
	r = realloc(m->runs, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	m->runs = r;
	m->cap = cap;
	return 0;
}

static bool
valid_type(unsigned int type)
{
	return type == DIO_EXT_HOLE || type == DIO_EXT_MAPPED || type == DIO_EXT_UNWRITTEN;
}

uint64_t
extmap_lookup(struct extmap *m, uint64_t pos, uint64_t maxlen, unsigned int *type)
{
	uint64_t len;
	size_t i;

	pthread_rwlock_rdlock(&m->lock);
	/* Runs are disjoint and sorted, so ends are sorted too. */
	i = first_end_after(m, pos);
	if (i < m->nr && m->runs[i].start <= pos) {
		*type = m->runs[i].type;
		len = m->runs[i].end - pos;
	} else {
		*type = DIO_EXT_MAPPED;
		len = i < m->nr ? m->runs[i].start - pos : maxlen;
	}
	pthread_rwlock_unlock(&m->lock);
	return len < maxlen ? len : maxlen;
}

int
extmap_set(struct extmap *m, uint64_t pos, uint64_t len, unsigned int type)
{
	struct extmap_run piece[3];
	size_t i, j, lo, hi, np = 0, k, nr;
	uint64_t end = pos + len;
	int ret = 0;

	if (!valid_type(type) || end < pos)
		return -EINVAL;
	if (len == 0)
		return 0;

	pthread_rwlock_wrlock(&m->lock);
	/* Runs [i, j) overlap [pos, end); they are replaced by up to 3 pieces. */
	i = first_end_after(m, pos);
	j = first_start_from(m, i, end);
	if (i < j && m->runs[i].start < pos)
		piece[np++] = (struct extmap_run){ m->runs[i].start, pos, m->runs[i].type };
	if (type != DIO_EXT_MAPPED)
		piece[np++] = (struct extmap_run){ pos, end, type };
	if (i < j && m->runs[j - 1].end > end)
		piece[np++] = (struct extmap_run){ end, m->runs[j - 1].end, m->runs[j - 1].type };

	/* Merge touching pieces of one type, then with the neighbours. */
	for (k = 1; k < np;) {
		if (piece[k - 1].end == piece[k].start && piece[k - 1].type == piece[k].type) {
			piece[k - 1].end = piece[k].end;
			memmove(&piece[k], &piece[k + 1], (np - k - 1) * sizeof(piece[0]));
			np--;
		} else {
			k++;
		}
	}
	lo = i;
	hi = j;
	if (np && lo > 0 && m->runs[lo - 1].end == piece[0].start &&
	    m->runs[lo - 1].type == piece[0].type) {
		piece[0].start = m->runs[lo - 1].start;
		lo--;
	}
	if (np && hi < m->nr && m->runs[hi].start == piece[np - 1].end &&
	    m->runs[hi].type == piece[np - 1].type) {
		piece[np - 1].end = m->runs[hi].end;
		hi++;
	}

	nr = m->nr - (hi - lo) + np;
	ret = reserve(m, nr);
	if (ret && type == DIO_EXT_MAPPED && i < j) {
		/*
		 * No memory to split a run: make the whole of runs [i, j) data
		 * instead, which shrinks the array. See extmap.h for why
		 * calling too much data is safe and too little is not.
		 */
		lo = i;
		hi = j;
		np = 0;
		nr = m->nr - (hi - lo);
		ret = 0;
	}
	if (ret)
		goto out_unlock;
	memmove(&m->runs[lo + np], &m->runs[hi], (m->nr - hi) * sizeof(m->runs[0]));
	memcpy(&m->runs[lo], piece, np * sizeof(piece[0]));
	m->nr = nr;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

int
extmap_append(struct extmap *m, uint64_t start, uint64_t end, unsigned int type)
{
	struct extmap_run *last;
	int ret = 0;

	if (type != DIO_EXT_HOLE && type != DIO_EXT_UNWRITTEN)
		return -EINVAL;
	pthread_rwlock_wrlock(&m->lock);
	last = m->nr ? &m->runs[m->nr - 1] : NULL;
	if (last && start < last->end)
		start = last->end;
	if (start >= end)
		goto out_unlock;
	if (last && last->end == start && last->type == type) {
		last->end = end;
		goto out_unlock;
	}
	ret = reserve(m, m->nr + 1);
	if (ret)
		goto out_unlock;
	m->runs[m->nr++] = (struct extmap_run){ start, end, type };
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

size_t
extmap_count(struct extmap *m)
{
	size_t nr;

	pthread_rwlock_rdlock(&m->lock);
	nr = m->nr;
	pthread_rwlock_unlock(&m->lock);
	return nr;
}

int
extmap_validate(struct extmap *m)
{
	int ret = 0;

	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < m->nr && !ret; i++) {
		const struct extmap_run *r = &m->runs[i];

		if (r->start >= r->end ||
		    (r->type != DIO_EXT_HOLE && r->type != DIO_EXT_UNWRITTEN))
			ret = -EUCLEAN;
		else if (i > 0 && (m->runs[i - 1].end > r->start ||
				   (m->runs[i - 1].end == r->start &&
				    m->runs[i - 1].type == r->type)))
			ret = -EUCLEAN;
	}
	pthread_rwlock_unlock(&m->lock);
	return ret;
}
