/* SPDX-License-Identifier: MIT */
/*
 * Opening a pool and recovering it, closing it, its volume operations and
 * what it reports. Recovery (R7) reads the newest superblock whose
 * checkpoint verifies, replays the journal's committed transactions and
 * derives every count and cursor again; it writes nothing, so a crash
 * during recovery recovers to the same state.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "pool.h"

/*
 * How long opening waits for a pool whose lock is held. A process killed
 * while it served the pool leaves its lock held until the kernel drops the
 * last reference to its open file description, and io_uring drops the
 * files a ring holds in the ring's exit work, after the process is gone:
 * about 60 ms after a SIGKILL here (Linux 6.18), so that a restart right
 * after a crash found the pool "open in another process". A live holder
 * keeps it: the open fails as before, this much later.
 */
#define TP_LOCK_WAIT_MS 2000

/* Take lock fl on the whole pool, retrying every 10 ms while held: 0 or -errno. */
static int
tp_lock_pool(int fd, struct flock *fl)
{
	struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };

	for (int waited = 0;; waited += 10) {
		if (fcntl(fd, F_OFD_SETLK, fl) == 0)
			return 0;
		if (errno != EACCES && errno != EAGAIN)
			return -errno;
		if (waited >= TP_LOCK_WAIT_MS)
			return -EAGAIN;
		nanosleep(&tick, NULL);
	}
}

static int
open_error(const struct dio_tpool_opts *opts, int err, const char *path, const char *why)
{
	char msg[600];

	snprintf(msg, sizeof(msg), "%s: %s", path, why && why[0] ? why : strerror(err));
	if (opts && opts->errbuf && opts->errlen)
		snprintf(opts->errbuf, opts->errlen, "%s", msg);
	dio_log(DIO_LOG_ERR, "%s", msg);
	return -err;
}

void
tp_free(struct dio_tpool *p)
{
	if (!p)
		return;
	tp_reclaim_free(p);
	for (uint32_t i = 0; i < p->nvols; i++)
		tp_vol_free(p->vols[i]);
	free(p->vols);
	free(p->path);
	tp_state_free(p);
	pthread_cond_destroy(&p->discard_cond);
	pthread_cond_destroy(&p->snap_cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Memory for the geometry of sb. 0 or -ENOMEM. */
static int
tp_alloc_state(struct dio_tpool *p, const struct tp_super *sb)
{
	free(p->cstate);
	free(p->space);
	free(p->inflight);
	free(p->unsharing);
	free(p->meta_used);
	p->npunshare = 0;
	p->unshare_all = 0;
	for (uint32_t i = 0; i < p->nvols; i++)
		tp_vol_free(p->vols[i]);
	p->nvols = 0;
	p->next_vol_id = 1;
	p->sb = *sb;
	p->chunk_size = sb->chunk_size;
	p->sub_size = sb->sub_size;
	p->nsub = (uint32_t)(p->chunk_size / p->sub_size);
	p->full_bits = p->nsub == 32 ? UINT32_MAX : (1u << p->nsub) - 1;
	p->cstate = calloc(sb->nr_chunks, 1);
	p->space = calloc(sb->nr_chunks, sizeof(*p->space));
	p->inflight = calloc(sb->nr_chunks, sizeof(*p->inflight));
	p->unsharing = calloc(sb->nr_chunks / 8 + 1, 1);
	p->meta_used = calloc(sb->meta_blocks, 1);
	return p->cstate && p->space && p->inflight && p->unsharing && p->meta_used ? 0 : -ENOMEM;
}

int
tp_load(const char *path, const struct dio_tpool_opts *opts, bool check, struct dio_tpool **out,
	char *err, size_t errlen)
{
	bool direct = !(opts && opts->no_direct);
	bool ro = (opts && opts->readonly) || check;
	struct tp_super sbs[2];
	int ok[2], order[2], ret = -ENOMEM;
	struct dio_tpool *p = calloc(1, sizeof(*p));
	unsigned int nblocks;
	pthread_condattr_t ca;

	err[0] = 0;
	if (!p)
		return -ENOMEM;
	p->fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->discard_cond, NULL);
	/* a snapshot's bound on its wait: immune to the wall clock's steps */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->snap_cond, &ca);
	pthread_condattr_destroy(&ca);
	p->io = opts && opts->io ? opts->io : &tp_sys_io;
	p->commit_ms = opts ? opts->commit_ms : 0;
	p->no_discard = opts && opts->no_discard;
	p->discard_batch = TP_DISCARD_BATCH;
	p->reclaim_leaves = TP_RECLAIM_LEAVES;
	p->progress = opts ? opts->progress : NULL;
	p->progress_priv = opts ? opts->progress_priv : NULL;
	p->path = strdup(path);
	p->refs = 1;
	if (!p->path)
		goto fail;
	p->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (p->fd < 0 && errno == EINVAL && direct) {
		direct = false;
		p->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	}
	if (p->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
		goto fail;
	}
	{
		/*
		 * One writer at a time: an exclusive OFD lock on the whole pool,
		 * shared by readers. check takes it too: a pool another process
		 * writes while check reads it would show that process's writes in
		 * flight (a checkpoint half replaced) as damage.
		 */
		struct flock fl = { .l_type = ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };

		ret = tp_lock_pool(p->fd, &fl);
		if (ret < 0) {
			snprintf(err, errlen, "the pool is open in another process (%s)",
				 strerror(-ret));
			goto fail;
		}
	}
	p->readonly = ro;
	for (int s = 0; s < 2; s++) {
		ok[s] = tp_super_read(p, s, &sbs[s]) == 0;
		if (ok[s] && s && ok[0] && memcmp(sbs[0].h.uuid, sbs[1].h.uuid, 16))
			ok[s] = 0;	/* another pool's stale slot */
	}
	order[0] = ok[1] && (!ok[0] || sbs[1].h.gen > sbs[0].h.gen);
	order[1] = !order[0];
	ret = -EUCLEAN;
	for (int k = 0; k < 2; k++) {
		const struct tp_super *sb = &sbs[order[k]];

		if (!ok[order[k]])
			continue;
		if (sb->feat_incompat & ~TP_FEAT_INCOMPAT_KNOWN) {
			ret = -EOPNOTSUPP;
			snprintf(err, errlen, "unknown incompatible features %#" PRIx64,
				 sb->feat_incompat);
			goto fail;
		}
		if (sb->feat_ro_compat & ~TP_FEAT_RO_COMPAT_KNOWN)
			p->readonly = true;
		ret = tp_alloc_state(p, sb);
		if (ret < 0)
			goto fail;
		ret = tp_ckpt_load(p, sb, err, errlen);
		if (ret == 0)
			break;
		if (ret != -EUCLEAN)
			goto fail;
		dio_log(DIO_LOG_WARN, "%s: superblock slot %d: %s", path, order[k], err);
	}
	if (ret < 0) {
		if (!err[0])
			snprintf(err, errlen, "no valid superblock: not a pool, or damaged");
		goto fail;
	}
	ret = tp_replay(p, err, errlen, &nblocks);
	if (ret < 0)
		goto fail;
	tp_derive(p);
	p->lbs = p->sb.lbs;
	if (p->sb.sub_size < p->lbs) {
		ret = -EINVAL;
		snprintf(err, errlen, "sub-block %u smaller than the device block %u",
			 p->sb.sub_size, p->lbs);
		goto fail;
	}
	p->dirty = nblocks > 0;
	*out = p;
	return 0;
fail:
	tp_free(p);
	return ret;
}

int
dio_tpool_open(const char *path, const struct dio_tpool_opts *opts, struct dio_tpool **out)
{
	char err[400];
	struct dio_tpool *p;
	int ret = tp_load(path, opts, false, &p, err, sizeof(err));

	if (ret < 0)
		return open_error(opts, -ret, path, err);
	p->meta_guard = true;	/* recovered: live changes keep within the reserve */
	dio_log(DIO_LOG_INFO, "%s: pool generation %" PRIu64 ", %" PRIu64 " of %" PRIu64
		" chunks free, journal at %" PRIu64 "%s", path, p->sb.h.gen, p->free_chunks,
		p->sb.nr_chunks, p->head, p->no_discard ? ", freed chunks kept on the device" : "");
	*out = p;
	return 0;
}

void
tp_get(struct dio_tpool *p)
{
	p->refs++;
}

void
tp_put(struct dio_tpool *p)
{
	int ret;

	if (--p->refs)
		return;
	/* What deletes left to reclaim is done here: their chunks discarded too. */
	tp_reclaim_finish(p);
	tp_committer_stop(p);
	if (!p->readonly && (p->dirty || p->npend)) {
		ret = tp_checkpoint(p);
		if (ret < 0)
			dio_log(DIO_LOG_ERR, "%s: checkpoint at close: %s", p->path, strerror(-ret));
	}
	tp_discard_drain(p);
	tp_free(p);
}

void
dio_tpool_close(struct dio_tpool *pool)
{
	if (pool)
		tp_put(pool);
}

int
dio_tpool_sync(struct dio_tpool *pool)
{
	int ret;

	pthread_mutex_lock(&pool->lock);
	ret = pool->readonly ? 0 : tp_commit(pool, true);
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_checkpoint(struct dio_tpool *pool)
{
	int ret;

	pthread_mutex_lock(&pool->lock);
	ret = tp_checkpoint(pool);
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

/* Append r, apply it and commit everything durably: a volume operation. */
static int
tp_vol_op(struct dio_tpool *p, const struct tp_rec *r)
{
	char err[200];
	int ret = tp_append(p, r, 0);

	if (ret < 0)
		return ret;
	ret = tp_apply(p, r, err, sizeof(err));
	if (ret < 0) {
		p->npend--;	/* never happened */
		return ret;
	}
	return tp_commit(p, true);
}

int
dio_tpool_volume_create(struct dio_tpool *pool, const char *name, uint64_t size)
{
	struct tp_rec r = { .type = TP_R_VOL };
	uint32_t n = 0;
	int ret;

	if (!name[0] || strlen(name) > DIO_TPOOL_NAME_MAX || size == 0 || size % TP_BLOCK ||
	    size / pool->chunk_size >= TP_VOL_CHUNKS_MAX)
		return -EINVAL;
	if (getrandom(r.uuid, 16, 0) != 16)
		return -EIO;
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.a = size;
	pthread_mutex_lock(&pool->lock);
	for (uint32_t i = 0; i < pool->nvols; i++)
		n += pool->vols[i] != NULL;
	if (pool->readonly)
		ret = -EROFS;
	else if (tp_vol_by_name(pool, name))
		ret = -EEXIST;
	else if (n >= pool->sb.max_volumes)
		ret = -ENOSPC;
	else {
		r.vol = (uint32_t)pool->next_vol_id;
		ret = tp_vol_op(pool, &r);
	}
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_volume_delete(struct dio_tpool *pool, const char *name)
{
	struct tp_rec r = { .type = TP_R_VOLDEL };
	struct tp_vol *v;
	int ret;

	pthread_mutex_lock(&pool->lock);
	v = tp_vol_by_name(pool, name);
	if (pool->readonly) {
		ret = -EROFS;
	} else if (!v) {
		ret = -ENOENT;
	} else if (v->dv || v->snaps) {
		ret = -EBUSY;	/* open, or a snapshot of it waits with the lock dropped */
	} else {
		r.vol = v->id;
		tp_committer_kick(pool);	/* to discard the chunks it frees, off the lock */
		ret = tp_append(pool, &r, 0);
		if (ret == 0) {
			/*
			 * Out of the table now. Its leaves lose a reference and
			 * the chunks of those that had no other lose theirs, here
			 * or in the background (pool-reclaim.c); the ones no
			 * volume maps any more stay unallocatable until the delete
			 * is durable (R3), which the commit makes it before the reply.
			 */
			tp_reclaim_start(pool, v, pool->serial);
			ret = tp_commit(pool, true);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_volume_revert(struct dio_tpool *pool, const char *name, const char *snapshot)
{
	struct tp_rec r = { .type = TP_R_SNAP, .flags = TP_VF_REVERT };
	struct tp_vol *v, *s, *old = NULL;
	int ret;

	pthread_mutex_lock(&pool->lock);
	v = tp_vol_by_name(pool, name);
	s = tp_vol_by_name(pool, snapshot);
	if (pool->readonly)
		ret = -EROFS;
	else if (!v || !s)
		ret = -ENOENT;
	else if (v->flags & TP_VF_RO)
		ret = -EROFS;	/* a snapshot stays what it was */
	else if (s->parent != v->id || !(s->flags & TP_VF_RO))
		ret = -EINVAL;	/* only to a snapshot taken of this volume */
	else if (v->dv || v->snaps)
		ret = -EBUSY;
	else if (!tp_meta_fits(pool, 0, (s->nl + TP_LEAF - 1) / TP_LEAF, tp_share_grows(s))) {
		tp_meta_log(pool, "revert to a snapshot");
		ret = -ENOSPC;	/* its map shared once more (R5) */
	} else {
		r.vol = v->id;
		r.a = s->size;
		r.b = s->id;
		memcpy(r.uuid, v->uuid, 16);
		snprintf(r.name, sizeof(r.name), "%s", v->name);
		tp_committer_kick(pool);	/* to discard the chunks it frees, off the lock */
		ret = tp_append(pool, &r, 0);
		if (ret == 0) {
			/*
			 * v reads as s at once; its old map goes to a ghost whose
			 * references are dropped here or in the background, as a
			 * deleted volume's (pool-reclaim.c). The chunks only v
			 * mapped are free once the record is durable (R3).
			 */
			ret = tp_vol_revert(pool, v, s, pool->serial, &old);
			if (ret < 0)
				pool->npend--;	/* never happened */
			else if (old)
				tp_reclaim_map(pool, old, pool->serial, "reverted");
		}
		if (ret == 0)
			ret = tp_commit(pool, true);
	}
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_volume_list(struct dio_tpool *pool, struct dio_tpool_vol_info **out, size_t *n)
{
	struct dio_tpool_vol_info *a;
	size_t k = 0;

	pthread_mutex_lock(&pool->lock);
	a = calloc(pool->nvols + 1, sizeof(*a));
	if (!a) {
		pthread_mutex_unlock(&pool->lock);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < pool->nvols; i++) {
		struct tp_vol *v = pool->vols[i];

		if (!v)
			continue;
		snprintf(a[k].name, sizeof(a[k].name), "%s", v->name);
		a[k].id = v->id;
		a[k].size = v->size;
		a[k].mapped = v->mapped;
		a[k].parent = v->parent;
		a[k].readonly = v->flags & TP_VF_RO;
		memcpy(a[k].uuid, v->uuid, 16);
		k++;
	}
	pthread_mutex_unlock(&pool->lock);
	*out = a;
	*n = k;
	return 0;
}

void
dio_tpool_get_info(struct dio_tpool *pool, struct dio_tpool_info *info)
{
	pthread_mutex_lock(&pool->lock);
	memset(info, 0, sizeof(*info));
	memcpy(info->uuid, pool->sb.h.uuid, 16);
	info->dev_size = pool->sb.dev_size;
	info->chunk_size = pool->sb.chunk_size;
	info->sub_size = pool->sb.sub_size;
	info->lbs = pool->lbs;
	info->nr_chunks = pool->sb.nr_chunks;
	info->free_chunks = pool->free_chunks + pool->ndiscarding;	/* being discarded: free too */
	info->gen = pool->sb.h.gen;
	info->journal_blocks = pool->sb.journal_blocks;
	info->journal_used = pool->head - pool->sb.journal_tail;
	info->meta_blocks = pool->sb.meta_blocks;
	for (uint64_t b = 0; b < pool->sb.meta_blocks; b++)
		info->ckpt_blocks += pool->meta_used[b];
	info->max_volumes = pool->sb.max_volumes;
	for (uint32_t i = 0; i < pool->nvols; i++)
		info->nr_volumes += pool->vols[i] != NULL;
	info->readonly = pool->readonly;
	info->reclaim_volumes = (uint32_t)pool->nrq;
	info->reclaim_chunks = tp_reclaim_left(pool);
	pthread_mutex_unlock(&pool->lock);
}

int
dio_tpool_create(const char *path, const struct dio_tpool_create_opts *copts,
		 const struct dio_tpool_opts *opts)
{
	struct dio_tpool p;
	int ret = tp_create_layout(path, copts, opts, &p);

	if (ret < 0)
		return ret;
	ret = tp_checkpoint(&p);	/* the first one: from now on it is a pool */
	if (ret < 0) {
		dio_log(DIO_LOG_ERR, "%s: writing the pool: %s", path, strerror(-ret));
		if (opts && opts->errbuf && opts->errlen)
			snprintf(opts->errbuf, opts->errlen, "%s: writing the pool: %s", path,
				 strerror(-ret));
	}
	tp_state_free(&p);
	return ret;
}
