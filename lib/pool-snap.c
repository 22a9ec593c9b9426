/* SPDX-License-Identifier: MIT */
/*
 * Snapshots and clones of a pool volume (issue 11): O(1) in its size, the
 * new volume sharing the origin's leaves. A snapshot is a FLUSH of its
 * origin (R1), done without holding the pool lock over device I/O, and
 * new writes on the origin wait (map_wait, pool-vol.c) only while the
 * writes under way end and the record is applied: about the time of one
 * write, TP_SNAP_PARK_US at most before they are let go again. The device
 * is flushed before that only when the origin has something to flush.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dio/dio.h"
#include "pool.h"

/* Writes in flight on an open volume: how long a snapshot waits for them to end. */
#define TP_SNAP_WAIT_US (2 * 1000 * 1000)
/*
 * How long new writes stay parked while the writes under way end, before
 * the snapshot lets them go and waits again (issue 11: an origin paused
 * 1 ms at most by the snapshot, whatever the device does).
 */
#define TP_SNAP_PARK_US 1000

/* Whether origin can have a snapshot name now (lock held): 0 or -errno, *o the origin. */
static int
tp_snap_check(struct dio_tpool *pool, const char *origin, const char *name, struct tp_vol **o)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < pool->nvols; i++)
		n += pool->vols[i] != NULL;
	*o = tp_vol_by_name(pool, origin);
	if (pool->readonly)
		return -EROFS;
	if (!*o)
		return -ENOENT;
	if (tp_vol_by_name(pool, name))
		return -EEXIST;
	if (n >= pool->sb.max_volumes || n >= UINT16_MAX)
		return -ENOSPC;	/* and a chunk's count fits its 16 bits */
	if (!tp_meta_fits(pool, 0, ((*o)->nl + TP_LEAF - 1) / TP_LEAF, tp_share_grows(*o))) {
		tp_meta_log(pool, "take a snapshot");
		return -ENOSPC;	/* the metadata reserve could not hold its map (R5) */
	}
	return 0;
}

/*
 * Wait (lock held, dropped meanwhile) until origin has no write between
 * map_begin and map_end, wait_us at most: o->snaps raised, so that
 * new writes wait for the snapshot instead of keeping the count above 0.
 * Writes already mapped never wait for this one (DIO_MAP_HELD), so they
 * end. The writers parked meanwhile are left in *parked, to be woken
 * without the lock once the record is applied (or the snapshot gave up).
 * 0, or -errno with o->snaps dropped again.
 */
static int
tp_snap_drain(struct dio_tpool *pool, const char *origin, const char *name, struct tp_vol **o,
	      struct dio_map_waiter **parked, uint64_t wait_us)
{
	struct timespec until;
	int ret = tp_snap_check(pool, origin, name, o);

	*parked = NULL;
	if (ret < 0 || !(*o)->writers)
		return ret;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(wait_us / 1000000);
	until.tv_nsec += (long)(wait_us % 1000000 * 1000);
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	(*o)->snaps++;
	while ((*o)->writers && !pthread_cond_timedwait(&pool->snap_cond, &pool->lock, &until))
		;
	/* o stays: no delete or revert while snaps is raised */
	(*o)->snaps--;
	if (!(*o)->snaps)
		*parked = tp_dvol_waiters(*o);
	/* the lock was dropped: all of it again */
	ret = tp_snap_check(pool, origin, name, o);
	if (ret == 0 && (*o)->writers)
		ret = -EBUSY;
	return ret;
}

/* Wake the writers parked in *parked without the lock (held on return); none left. */
static void
tp_snap_wake(struct dio_tpool *pool, struct dio_map_waiter **parked)
{
	pthread_mutex_unlock(&pool->lock);
	tp_dvol_wake(*parked);
	*parked = NULL;
	pthread_mutex_lock(&pool->lock);
}

/*
 * Make the records up to serial (a snapshot's) durable, flushing the
 * device first only when one of them needs it (R1): not for the records
 * appended after it, by the writes it woke. 0 or -errno.
 */
static int
tp_snap_commit(struct dio_tpool *pool, uint64_t serial)
{
	int ret = 0;

	for (size_t i = 0; i < pool->npend && pool->pend[i].serial <= serial; i++)
		if (pool->pend[i].needs > pool->flush_done) {
			ret = tp_flush_unlocked(pool);
			break;
		}
	/* after that flush, every record up to serial is safe: the commit takes them */
	if (ret == 0)
		ret = tp_commit_unlocked(pool, false);
	if (ret == 0 && pool->npend && pool->pend[0].serial <= serial)
		ret = tp_commit_unlocked(pool, true);
	return ret;
}

/*
 * A snapshot is a FLUSH of its origin: it shares the origin's chunks as
 * they read when its record is appended, so that record becomes durable
 * only after every write they hold (R1). Writes with a record of their own
 * order themselves (their records come first, with their needs); a write
 * in place has none, and o->wneeds says which flush covers the last one.
 *
 * An origin with writes under way, or in place and not flushed, is
 * flushed first, without the lock: the origin writes meanwhile, and the
 * flush the commit needs after the record covers only what completes
 * during this one (on a file, before the writes that copy shared chunks
 * allocate space). An idle one is not: its snapshot writes the journal
 * and nothing else, when no record up to its own needs a flush.
 *
 * Then new writes are parked (tp_snap_drain) while the writes under way
 * end, the record is appended and applied, and they are woken: about one
 * write's time. A write under way slower than TP_SNAP_PARK_US (a busy
 * device) lets the parked ones go before the snapshot waits again
 * (TP_SNAP_WAIT_US at most, then -EBUSY). Last the commit
 * (tp_snap_commit), its device I/O without the lock.
 */
static int
tp_snapshot(struct dio_tpool *pool, const char *origin, const char *name, bool writable)
{
	struct tp_rec r = { .type = TP_R_SNAP, .flags = writable ? 0 : TP_VF_RO };
	struct dio_map_waiter *parked = NULL;
	struct tp_vol *o;
	uint64_t serial;
	int ret;

	if (!name[0] || strlen(name) > DIO_TPOOL_NAME_MAX)
		return -EINVAL;
	if (getrandom(r.uuid, 16, 0) != 16)
		return -EIO;
	snprintf(r.name, sizeof(r.name), "%s", name);
	pthread_mutex_lock(&pool->lock);
	memset(pool->snap_t, 0, sizeof(pool->snap_t));
	pool->snap_t[TP_SP_START] = dio_now_ns();
	pool->snap_park_t = 0;
	/*
	 * One that completes during this flush raises o->wneeds past it, and
	 * the commit flushes again for it.
	 */
	ret = tp_snap_check(pool, origin, name, &o);
	if (ret == 0 && (o->writers || o->wneeds > pool->flush_done)) {
		ret = tp_flush_unlocked(pool);
		pool->snap_t[TP_SP_FLUSH] = dio_now_ns();
	}
	if (ret < 0)
		goto out;
	/*
	 * A write between map_begin and map_end may be writing in place into
	 * a chunk the snapshot would share: what it writes would show in the
	 * snapshot and miss the origin's copy. Wait until none is.
	 */
	ret = tp_snap_drain(pool, origin, name, &o, &parked, TP_SNAP_PARK_US);
	if (ret == -EBUSY) {
		/* A slow one: the parked writes go on meanwhile. */
		pool->snap_t[TP_SP_LETGO] = dio_now_ns();
		tp_snap_wake(pool, &parked);
		ret = tp_snap_drain(pool, origin, name, &o, &parked, TP_SNAP_WAIT_US);
	}
	if (ret < 0)
		goto out;
	pool->snap_t[TP_SP_DRAIN] = dio_now_ns();
	r.vol = (uint32_t)pool->next_vol_id;
	r.a = o->size;
	r.b = o->id;
	/* needs <= flush_done when a flush covered every write in place */
	ret = tp_append(pool, &r, o->wneeds);
	serial = pool->serial;
	if (ret == 0) {
		char err[200];

		ret = tp_apply(pool, &r, err, sizeof(err));
		if (ret < 0) {
			pool->npend--;	/* never happened */
			dio_log(DIO_LOG_ERR, "%s: snapshot of %s: %s", pool->path, origin, err);
		}
	}
	pool->snap_t[TP_SP_APPLY] = dio_now_ns();
	if (parked) {
		/* Applied: the parked writes see its chunks shared, and copy them. */
		tp_snap_wake(pool, &parked);
	}
	pool->snap_t[TP_SP_WAKE] = dio_now_ns();
	/* A pool from before snapshots: a checkpoint marks it as one that has them. */
	if (ret == 0 && !(pool->sb.feat_incompat & TP_FEAT_INCOMPAT_SHARE))
		ret = tp_checkpoint(pool);
	else if (ret == 0)
		ret = tp_snap_commit(pool, serial);	/* the origin writes meanwhile */
	if (ret == 0)
		pool->snap_t[TP_SP_COMMIT] = dio_now_ns();
out:
	pthread_mutex_unlock(&pool->lock);
	tp_dvol_wake(parked);	/* gave up: they go on as before */
	return ret;
}

int
dio_tpool_volume_snapshot(struct dio_tpool *pool, const char *origin, const char *name)
{
	return tp_snapshot(pool, origin, name, false);
}

int
dio_tpool_volume_clone(struct dio_tpool *pool, const char *origin, const char *name)
{
	return tp_snapshot(pool, origin, name, true);
}
