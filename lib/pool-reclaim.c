/* SPDX-License-Identifier: MIT */
/*
 * Background reclaim of dropped maps (issue 11: "delete replies at once
 * and frees in the background, resuming after a crash"; revert and
 * shrink the same way).
 *
 * A delete appends its VOLDEL record, commits it (durable before the
 * reply, as any volume operation) and takes the volume out of the table:
 * its name is free at once and list no longer shows it. A revert appends
 * its SNAP record (TP_VF_REVERT): the volume takes the snapshot's leaves
 * at once and its old leaf table goes to a ghost (tp_vol_ghost), a volume
 * that is in no table, listed nowhere. A shrink appends UNMAPs for the
 * leaf the new end falls in (cut here) and a RESIZE with TP_RZ_DROP: the
 * whole leaves past the end go to a ghost. What is left is bookkeeping in
 * memory: the detached volume's or ghost's leaves still hold a reference
 * each, and the chunks of the leaves nothing else shares hold one per
 * entry. The reclaim thread drops them reclaim_leaves leaves per lock
 * hold, letting the lock go between batches so I/O on other volumes goes
 * on; the free count rises as it goes.
 *
 * On disk nothing follows the record: it frees every chunk of the map at
 * once. Replay drops the whole map in memory (VOLDEL: the volume; a
 * revert: the old map, tp_vol_revert; RESIZE with TP_RZ_DROP: the leaves
 * past the end), which is recovery, R7: nothing written. A checkpoint
 * writes the volumes of the table only, each with the map it has now (a
 * reverted one the snapshot's leaves, a shrunk one its leaves up to the
 * end), and a space map counted from the maps it writes, so a checkpoint
 * taken mid-reclaim holds no trace of the dropped map and its chunks are
 * free in it; a leaf a ghost shares with a table volume is written for
 * that volume alone. A crash at any point therefore finds either the
 * record in the journal or a checkpoint without the map: no leak, no
 * under-count (R4), and no cursor to journal.
 *
 * Format: VOLDEL and a revert's SNAP meant "drop the whole map" before
 * the reclaim was moved here, so their journals replay the same in any
 * version. A shrink used to write an UNMAP per mapped chunk past the end;
 * TP_RZ_DROP (pool.h) is new: a version without it refuses the record at
 * replay (shrink over mapped chunks) and the open fails, nothing lost or
 * written, until this one has replayed it and checkpointed (every close
 * does).
 *
 * R3: a chunk the reclaim frees is allocatable once the record is
 * durable. Every batch releases its chunks as freed by that record
 * (tp_chunk_release with its serial); when the record is durable already
 * (the usual case: the operation committed it before replying) the batch
 * makes them free at once, and the committer discards them off the lock
 * as it does any freed chunk; when it is not (its commit failed), they
 * wait for the commit that makes it durable, as any other pending free.
 *
 * The thread runs in pools that do background work (commit_ms: the
 * daemon and the plugin) and starts with the first map that needs it,
 * never at open (nbdkit forks after opening). Elsewhere (dionbd-pool,
 * library users without commit_ms), and for a map of at most
 * reclaim_leaves leaves (no longer than one batch), the operation drops
 * the references before it returns, as before. Closing the pool stops the
 * thread and finishes what is left, so the freed chunks are discarded too.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "dio/dio.h"
#include "pool.h"

/* Milliseconds since t0 (CLOCK_MONOTONIC), for the log. */
static double
ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Leaves of v that hold entries: what its reclaim walks. */
static uint64_t
leaves_of(const struct tp_vol *v)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (v->nl + TP_LEAF - 1) / TP_LEAF; i++)
		n += v->leaf[i] != NULL;
	return n;
}

/* Chunks freed by record serial: allocatable now if it is durable (R3). */
static void
release(struct dio_tpool *p, uint64_t serial)
{
	/* pend holds the records not yet committed, oldest first */
	if (!p->npend || p->pend[0].serial > serial)
		tp_pfree_durable(p, serial);
}

static void *
tp_reclaimer(void *arg);

/* The thread, started at the first delete that needs it. false: none (reclaim here). */
static bool
reclaimer_up(struct dio_tpool *p)
{
	if (p->reclaimer_on)
		return true;
	pthread_cond_init(&p->reclaim_cond, NULL);
	if (pthread_create(&p->reclaimer, NULL, tp_reclaimer, p) != 0) {
		pthread_cond_destroy(&p->reclaim_cond);
		dio_log(DIO_LOG_WARN, "pool %s: no reclaim thread: deletes free their chunks "
			"before they reply", p->path);
		return false;
	}
	p->reclaimer_on = true;
	return true;
}

void
tp_reclaim_map(struct dio_tpool *p, struct tp_vol *v, uint64_t serial, const char *why)
{
	uint64_t leaves = leaves_of(v), batch = p->reclaim_leaves ? p->reclaim_leaves : 1;
	uint64_t mapped = v->mapped, next = 0;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (leaves > batch && p->commit_ms && !p->readonly && !p->reclaim_stop &&
	    tp_grow(&p->rq, &p->caprq, p->nrq, sizeof(*p->rq), 4) == 0 && reclaimer_up(p)) {
		p->rq[p->nrq++] = (struct tp_reclaim){ .v = v, .why = why, .serial = serial,
						       .chunks = mapped, .left = mapped, .t0 = t0 };
		pthread_cond_signal(&p->reclaim_cond);
		dio_log(DIO_LOG_INFO, "pool %s: volume %s (id %" PRIu32 ") %s: reclaiming its %"
			PRIu64 " chunks (%" PRIu64 " leaves) in the background", p->path, v->name,
			v->id, why, mapped, leaves);
		return;
	}
	/* Here: a small map, or no background work in this pool. */
	tp_vol_drop_leaves(p, v, &next, UINT64_MAX, serial);
	if (leaves > batch)
		dio_log(DIO_LOG_INFO, "pool %s: volume %s (id %" PRIu32 ") %s: %" PRIu64
			" chunks reclaimed in %.1f ms", p->path, v->name, v->id, why, mapped,
			ms_since(&t0));
	tp_vol_free(v);
}

void
tp_reclaim_start(struct dio_tpool *p, struct tp_vol *v, uint64_t serial)
{
	tp_vol_detach(p, v);
	tp_reclaim_map(p, v, serial, "deleted");
}

/* One batch of the oldest reclaim, lock held. */
static void
reclaim_some(struct dio_tpool *p, uint64_t max)
{
	struct tp_reclaim *r = &p->rq[0];
	uint64_t n = tp_vol_drop_leaves(p, r->v, &r->next, max, r->serial);

	r->left = n < r->left ? r->left - n : 0;
	p->reclaimed += n;
	release(p, r->serial);
	/* an allocation that found the pool full waits for this (tp_alloc) */
	pthread_cond_broadcast(&p->discard_cond);
	if (r->next < (r->v->nl + TP_LEAF - 1) / TP_LEAF)
		return;
	dio_log(DIO_LOG_INFO, "pool %s: volume %s (id %" PRIu32 "): %" PRIu64 " chunks reclaimed "
		"in %.1f ms (%s)", p->path, r->v->name, r->v->id, r->chunks, ms_since(&r->t0),
		r->why);
	tp_vol_free(r->v);
	memmove(p->rq, p->rq + 1, (p->nrq - 1) * sizeof(*p->rq));
	p->nrq--;
}

static void *
tp_reclaimer(void *arg)
{
	struct dio_tpool *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->reclaim_stop) {
		if (!p->nrq) {
			pthread_cond_wait(&p->reclaim_cond, &p->lock);
			continue;
		}
		if (p->reclaim_gate) {
			void (*gate)(struct dio_tpool *) = p->reclaim_gate;

			pthread_mutex_unlock(&p->lock);
			gate(p);
			pthread_mutex_lock(&p->lock);
			if (p->reclaim_stop || !p->nrq)
				continue;
		}
		reclaim_some(p, p->reclaim_leaves ? p->reclaim_leaves : 1);
		/* the lock free between batches: requests waiting for it go first */
		pthread_mutex_unlock(&p->lock);
		sched_yield();
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void
tp_reclaim_finish(struct dio_tpool *p)
{
	pthread_mutex_lock(&p->lock);
	p->reclaim_stop = true;
	if (p->reclaimer_on) {
		pthread_cond_signal(&p->reclaim_cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->reclaimer, NULL);
		pthread_cond_destroy(&p->reclaim_cond);
		pthread_mutex_lock(&p->lock);
		p->reclaimer_on = false;
	}
	while (p->nrq)
		reclaim_some(p, UINT64_MAX);
	pthread_mutex_unlock(&p->lock);
}

uint64_t
tp_reclaim_left(const struct dio_tpool *p)
{
	uint64_t n = 0;

	for (size_t i = 0; i < p->nrq; i++)
		n += p->rq[i].left;
	return n;
}

void
tp_reclaim_free(struct dio_tpool *p)
{
	for (size_t i = 0; i < p->nrq; i++)
		tp_vol_free(p->rq[i].v);
	free(p->rq);
	p->rq = NULL;
	p->nrq = p->caprq = 0;
}
