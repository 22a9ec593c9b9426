/* SPDX-License-Identifier: MIT */
/*
 * A pool volume as a dio_volume: POOL.md's request path.
 *
 *  map_begin  hole + write: a chunk from the volume's cursor, UNWRITTEN +
 *             NEW (the engine writes only what the request covers and
 *             zero-pads partial sub-blocks); written sub-blocks: MAPPED in
 *             place, DIRTY while their record is not durable (so a FUA
 *             write to them commits, R2); unwritten: UNWRITTEN; reads of
 *             holes and unwritten sub-blocks: no device I/O.
 *  shared     a write to a chunk another volume maps too (a snapshot's or
 *             clone's), or did until a record not yet durable (a copy,
 *             a TRIM: tp_unsharing, the durable maps still share it): a
 *             new chunk, MAPPED + NEW + SHARED, naming the old
 *             chunk's written sub-blocks the write does not cover; the
 *             engine reads those and writes them merged with the new data
 *             in one device write; map_end re-points the lchunk with one
 *             COW record carrying the final bits (the old chunk loses this
 *             reference with it). Until then reads see the old chunk, and
 *             other writes to that lchunk get -EAGAIN and wait (map_wait).
 *  snapshot   while one waits for the volume's writes under way to end,
 *             new writes (not DIO_MAP_HELD) get -EAGAIN and wait too; the
 *             snapshot wakes them once its record is applied.
 *  map_end    after the data completed: written bits + a MAP record into
 *             the open transaction; with DIO_MAP_FUA (the engine flushed
 *             the data first) the transaction is committed before return.
 *  FLUSH      the engine's fdatasync of the pool, then (end_meta) a commit
 *             of every record whose data that flush covered (R1, R2).
 *  TRIM/ZERO  no device I/O; end_meta clears bits (UNMAP) and frees whole
 *             chunks, allocatable again once that record is durable (R3).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dio/dio.h"
#include "pool.h"
#include "volume-priv.h"

/*
 * tp_alloc waited for a chunk with the pool lock dropped (-EAGAIN): a
 * snapshot, or another write to the same lchunk, may have changed what
 * the entry says (a leaf now shared, a hole now mapped), so map_begin
 * looks the lchunk up again.
 */
#define TPV_LOOK_AGAIN 1

/* One open pool volume. tv is guarded by pool->lock. */
struct tp_dvol {
	struct dio_volume vol;
	struct dio_tpool *pool;	/* holds a pool reference */
	struct tp_vol *tv;
	/*
	 * Under pool->lock: lchunks with a copy-on-write between map_begin
	 * and map_end (a handful: at most one per request in flight), and
	 * the writers waiting for one of them to end.
	 */
	uint64_t *cow;
	uint32_t ncow, capcow;
	struct dio_map_waiter *waiters;
};

static inline struct tp_dvol *
to_dv(struct dio_volume *vol)
{
	return (struct tp_dvol *)vol;
}

/* Bits of sub-blocks [a, b). */
static uint32_t
sub_mask(uint32_t a, uint32_t b)
{
	uint64_t m = ((1ull << b) - 1) & ~((1ull << a) - 1);

	return (uint32_t)m;
}

/*
 * A write to lchunk l of v (entry e, mapped) must go to a copy: another
 * map holds the chunk, or held it until a record not yet durable
 * (tp_unsharing), and a crash would bring that map back with the write in it.
 */
static bool
tpv_must_copy(const struct dio_tpool *p, const struct tp_vol *v, uint64_t l,
	      const struct tp_ment *e)
{
	return tp_shared(p, v, l, e) || tp_unsharing(p, e->p1 - 1);
}

/*
 * v's lchunk l maps a chunk another volume maps too (or did, tpv_must_copy): copy its written
 * sub-blocks to a new chunk and point l at it (the volume's own leaf,
 * copied from the shared one first). For a resize's tail (tpv_zero_tail),
 * not the request path (tpv_cow_begin): synchronous under the pool lock,
 * like stage 1's metadata I/O, and written whole: the COW
 * record, durable only after the next flush (R1), makes the new chunk
 * hold everything the old one held, so a crash before the write's own
 * MAP still reads the old data. The old chunk keeps its other references.
 * The entry, or NULL with *err = -errno.
 */
static struct tp_ment *
tpv_cow(struct dio_tpool *p, struct tp_vol *v, uint64_t l, int *err)
{
	uint64_t cs = p->chunk_size, ss = p->sub_size, old, from, len;
	struct tp_rec r = { .type = TP_R_COW, .vol = v->id, .a = l };
	struct tp_ment *e;
	int64_t c;
	int ret;

again:
	e = tp_ment_w(p, v, l, false);
	if (!e) {
		if (tp_meta_wait(p, "copy a shared leaf"))
			goto again;	/* a reclaim gave some room back */
		*err = -errno;	/* ENOMEM, or ENOSPC: no metadata room for a copy of the leaf */
		return NULL;
	}
	old = e->p1 - 1;
	if (p->space[old] <= 1 && !tp_unsharing(p, old))
		return e;	/* the leaf was shared, the chunk is its alone */
	c = tp_alloc(p, v);
	if (c == -EAGAIN)
		goto again;	/* it waited for a chunk: as TPV_LOOK_AGAIN */
	if (c < 0) {
		dio_log(DIO_LOG_ERR, "pool %s is full: writes that need a new chunk fail "
			"with ENOSPC (here to copy a shared one)", p->path);
		*err = (int)c;
		return NULL;
	}
	if (e->bits) {
		uint32_t a = (uint32_t)__builtin_ctz(e->bits), b = 32 - (uint32_t)__builtin_clz(e->bits);

		from = a * ss;
		len = (b - a) * ss;
		ret = tp_buf_reserve(p, len);
		if (ret == 0)
			ret = p->io->pread(p->io->priv, p->fd, p->buf, len,
					   p->sb.data_start + old * cs + from);
		if (ret == 0)
			ret = p->io->pwrite(p->io->priv, p->fd, p->buf, len,
					    p->sb.data_start + (uint64_t)c * cs + from, false);
		if (ret < 0) {
			tp_chunk_release(p, (uint64_t)c, 0);
			*err = ret;
			return NULL;
		}
	}
	r.b = (uint64_t)c;
	r.bits = e->bits;
	/* The copy completed: the next flush makes it durable. */
	ret = tp_append(p, &r, p->flush_issued + 1);
	if (ret < 0) {
		tp_chunk_release(p, (uint64_t)c, 0);
		*err = ret;
		return NULL;
	}
	tp_ent_unmap(p, v, l, e, p->serial);
	tp_ent_map(p, v, l, e, (uint64_t)c);
	e->bits = r.bits;
	e->dbits = 0;
	p->cow_chunks++;
	return e;
}

/* Whether lchunk l of dv has a copy-on-write in flight. */
static bool
tpv_cow_busy(const struct tp_dvol *dv, uint64_t l)
{
	for (uint32_t i = 0; i < dv->ncow; i++)
		if (dv->cow[i] == l)
			return true;
	return false;
}

/*
 * A write of [off, off + len) of lchunk l (offsets in the chunk) to a chunk
 * e shares with another volume: a new chunk, and the extent that tells the
 * engine what to copy (extent.h, DIO_EXT_SHARED). The copy is the written
 * sub-blocks the write does not wholly cover; partial sub-blocks of the
 * write that were never written take zeros. Nothing changes in the map
 * until map_end. 0, -errno, or TPV_LOOK_AGAIN (see tpv_map_begin).
 */
static int
tpv_cow_begin(struct tp_dvol *dv, uint64_t l, struct tp_ment *e, uint64_t off, uint64_t len,
	      struct dio_extent *ext)
{
	struct dio_tpool *p = dv->pool;
	struct tp_vol *v = dv->tv;
	uint64_t cs = p->chunk_size, ss = p->sub_size, old = e->p1 - 1;
	uint32_t a = (uint32_t)(off / ss), b = (uint32_t)((off + len + ss - 1) / ss);
	uint32_t copy = e->bits & ~sub_mask((uint32_t)((off + ss - 1) / ss),
					    (uint32_t)((off + len) / ss));
	int64_t c;

	if (dv->ncow == dv->capcow) {
		uint32_t cap = dv->capcow ? dv->capcow * 2 : 8;
		uint64_t *n = realloc(dv->cow, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		dv->cow = n;
		dv->capcow = cap;
	}
	c = tp_alloc(p, v);
	if (c == -EAGAIN)
		return TPV_LOOK_AGAIN;	/* it waited for a chunk: e may be stale */
	if (c < 0) {
		dio_log(DIO_LOG_ERR, "pool %s is full: writes that need a new chunk fail "
			"with ENOSPC (here to copy a shared one)", p->path);
		return (int)c;
	}
	if (copy) {
		uint32_t ca = (uint32_t)__builtin_ctz(copy), cb = 32 - (uint32_t)__builtin_clz(copy);

		a = ca < a ? ca : a;
		b = cb > b ? cb : b;
	}
	ext->type = DIO_EXT_MAPPED;
	ext->flags = DIO_EXT_NEW | DIO_EXT_SHARED;
	ext->addr = p->sb.data_start + (uint64_t)c * cs + off;
	ext->length = len;
	ext->src_addr = p->sb.data_start + old * cs + off;
	ext->span_pos = l * cs + a * ss;
	ext->span_len = (uint32_t)((b - a) * ss);
	ext->copy_mask = copy >> a;
	dv->cow[dv->ncow++] = l;
	p->inflight[c]++;
	p->inflight[old]++;	/* a TRIM meanwhile keeps the entry */
	v->writers++;
	return 0;
}

/*
 * map_end of a copy-on-write: done, one COW record re-points lchunk l to
 * the new chunk with the final bits, and the old chunk loses this
 * volume's reference (freed, if that was the last, once the record is
 * durable: R3); not done, the new chunk goes back. Either way the writers
 * waiting on l are handed to *wake, to be woken without the lock.
 */
static int
tpv_cow_end(struct tp_dvol *dv, const struct dio_extent *ext, bool done, unsigned int flags,
	    struct dio_map_waiter **wake)
{
	struct dio_tpool *p = dv->pool;
	struct tp_vol *v = dv->tv;
	uint64_t cs = p->chunk_size, ss = p->sub_size, l = ext->pos / cs;
	uint64_t c = (ext->addr - p->sb.data_start) / cs, old = (ext->src_addr - p->sb.data_start) / cs;
	uint64_t off = ext->pos % cs;
	struct tp_ment *e = tp_ment(v, l);
	struct tp_rec r = { .type = TP_R_COW, .vol = v->id, .a = l, .b = c };
	int ret = 0;

	for (uint32_t i = 0; i < dv->ncow; i++)
		if (dv->cow[i] == l) {
			dv->cow[i] = dv->cow[--dv->ncow];
			break;
		}
	*wake = dv->waiters;
	dv->waiters = NULL;
	if (p->inflight[old])
		p->inflight[old]--;
	/* Nobody re-points l meanwhile: writes wait, a TRIM keeps the entry (inflight). */
	if (!done || !e || e->p1 != old + 1) {
		tp_chunk_release(p, c, 0);	/* never reachable */
		return done ? -EIO : 0;
	}
	/* Written now: what was (less a TRIM's meanwhile), and what the write touched. */
	r.bits = e->bits | sub_mask((uint32_t)(off / ss),
				    (uint32_t)((off + ext->length + ss - 1) / ss));
	/* Its data is durable after the next flush, or now with FUA (R1). */
	ret = tp_append(p, &r, (flags & DIO_MAP_FUA) ? 0 : p->flush_issued + 1);
	if (ret < 0) {
		tp_chunk_release(p, c, 0);
		return ret;
	}
	tp_ent_unmap(p, v, l, e, p->serial);
	tp_ent_map(p, v, l, e, c);
	e->bits = r.bits;
	e->dbits = 0;
	p->cow_chunks++;
	return 0;
}

/*
 * Whether the metadata reserve holds every leaf copy writes to writable
 * volumes mapping `mapped` chunks could ask for: a copy of a leaf of n
 * entries adds n references and at most 2n - 1 records (leaf_copy_grows),
 * so mapped more references and 2 x mapped more records bound them all.
 * The bound of the worst case first, then the credit, then an exact count
 * (O(map)) at most once a second from here: a block status of a whole
 * volume asks for every chunk, and in between "no" is the safe answer.
 */
static bool
tpv_cow_meta_room(struct dio_tpool *p, uint64_t mapped)
{
	uint64_t now;

	if (!p->meta_guard || tp_meta_room(p, mapped, 0) || p->meta_credit >= 2 * mapped)
		return true;
	now = dio_now_ns();
	if (p->meta_report_ns && now - p->meta_report_ns < 1000000000ull)
		return false;
	p->meta_report_ns = now;
	return tp_meta_fits(p, mapped, 0, 2 * mapped);
}

/*
 * base:allocation honesty: a shared chunk reports as allocated (HOLE clear)
 * only when the pool could copy every chunk a write may have to: its free
 * chunks cover all the chunks mapped by writable volumes (an upper bound of
 * the copies that can be asked for, O(volumes) to count), and the metadata
 * reserve their leaf copies (a write to a shared leaf fails with ENOSPC
 * when the reserve cannot take its copy, tp_meta_fits). Otherwise it is
 * DIO_EXT_UNRESERVED: NBD HOLE set, ZERO clear (docs/dionbd.md, "Thin pools").
 */
static bool
tpv_cow_room(struct dio_tpool *p)
{
	uint64_t need = 0;

	for (uint32_t i = 0; i < p->nvols; i++)
		if (p->vols[i] && !(p->vols[i]->flags & TP_VF_RO))
			need += p->vols[i]->mapped;
	return p->free_chunks >= need && tpv_cow_meta_room(p, need);
}

/* Map [pos, pos+len) from the volume's map; allocate for a write into a hole. */
static int
tpv_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
	      struct dio_extent *ext)
{
	struct tp_dvol *dv = to_dv(vol);
	struct dio_tpool *p = dv->pool;
	struct tp_vol *v = dv->tv;
	bool write = (flags & DIO_MAP_WRITE) && !(flags & DIO_MAP_REPORT);
	uint64_t cs = p->chunk_size, ss = p->sub_size, l = pos / cs, off = pos % cs, max;
	struct tp_ment *e;
	uint32_t s, t, state;
	int ret = 0;

	if (len == 0 || pos >= vol->size)
		return -EINVAL;
	if (len > vol->size - pos)
		len = vol->size - pos;
	max = len < cs - off ? len : cs - off;
	pthread_mutex_lock(&p->lock);
again:
	memset(ext, 0, sizeof(*ext));
	ext->pos = pos;
	if (write && (v->flags & TP_VF_RO)) {
		ret = -EPERM;	/* a snapshot */
		goto out;
	}
	if (write && v->snaps && !(flags & DIO_MAP_HELD)) {
		/* A snapshot waits for the writes under way: this one goes after it. */
		p->snap_parks++;
		if (!p->snap_park_t)
			p->snap_park_t = dio_now_ns();
		ret = -EAGAIN;
		goto out;
	}
	if (write && dv->ncow && tpv_cow_busy(dv, l)) {
		ret = -EAGAIN;	/* one copy at a time, and not to the old chunk: map_wait */
		goto out;
	}
	e = tp_ment(v, l);
	if (write && (!e || !e->p1)) {
		e = tp_ment_w(p, v, l, true);	/* its own leaf to allocate in */
		if (!e && tp_meta_wait(p, "copy a shared leaf"))
			goto again;	/* a reclaim gave some room back: as TPV_LOOK_AGAIN */
		if (!e) {
			ret = -errno;	/* ENOMEM, or ENOSPC (tp_meta_fits) */
			goto out;
		}
	} else if (write && tpv_must_copy(p, v, l, e)) {
		/* Its own leaf first: the chunk may then be the volume's alone. */
		e = tp_ment_w(p, v, l, false);
		if (!e && tp_meta_wait(p, "copy a shared leaf"))
			goto again;
		if (!e) {
			ret = -errno;
			goto out;
		}
		if (p->space[e->p1 - 1] > 1 || tp_unsharing(p, e->p1 - 1)) {
			ret = tpv_cow_begin(dv, l, e, off, max, ext);
			if (ret == TPV_LOOK_AGAIN)
				goto again;
			goto out;
		}
	}
	if (!e || !e->p1) {
		if (!write) {
			/* A hole: as far as the following chunks are holes too. */
			uint64_t n = max;

			while (n < len) {
				struct tp_ment *f = tp_ment(v, (pos + n) / cs);

				if (f && f->p1)
					break;
				n += len - n < cs ? len - n : cs;
			}
			ext->type = DIO_EXT_HOLE;
			ext->length = n;
			goto out;
		}
		/* a MAP more; no chunk free: tp_alloc waits for one or says the pool is full */
		if (p->free_chunks && !tp_meta_fits(p, 1, 1, 1)) {
			errno = ENOSPC;
			if (tp_meta_wait(p, "map a new chunk"))
				goto again;	/* a reclaim gave some room back */
			ret = -ENOSPC;	/* a checkpoint would outgrow the reserve (R5) */
			goto out;
		}
		int64_t c = tp_alloc(p, v);

		if (c == -EAGAIN)
			goto again;	/* TPV_LOOK_AGAIN */
		if (c < 0) {
			dio_log(DIO_LOG_ERR, "pool %s is full: writes that need a new chunk fail "
				"with ENOSPC", p->path);
			ret = (int)c;
			goto out;
		}
		tp_ent_map(p, v, l, e, (uint64_t)c);
		tp_meta_spend(p, 1);
		e->bits = e->dbits = 0;
		p->inflight[c]++;
		v->writers++;
		ext->type = DIO_EXT_UNWRITTEN;
		ext->flags = DIO_EXT_NEW;
		ext->addr = p->sb.data_start + (uint64_t)c * cs + off;
		ext->length = max;
		goto out;
	}
	/* A run of sub-blocks in the same state: written or not, durable or not. */
	s = (uint32_t)(off / ss);
	state = ((e->bits >> s) & 1) | (write ? ((e->dbits >> s) & 1) << 1 : 0);
	for (t = s + 1; t * ss < off + max; t++) {
		uint32_t st = ((e->bits >> t) & 1) | (write ? ((e->dbits >> t) & 1) << 1 : 0);

		if (st != state)
			break;
	}
	ext->length = (t * ss < off + max ? t * ss : off + max) - off;
	ext->addr = p->sb.data_start + (uint64_t)(e->p1 - 1) * cs + off;
	ext->type = (state & 1) ? DIO_EXT_MAPPED : DIO_EXT_UNWRITTEN;
	if (write && state == 1)
		ext->flags = DIO_EXT_DIRTY;	/* written, record not durable yet */
	if ((flags & DIO_MAP_REPORT) && (state & 1) && !(v->flags & TP_VF_RO) &&
	    tpv_must_copy(p, v, l, e) && !tpv_cow_room(p))
		ext->flags = DIO_EXT_UNRESERVED;
	if (write) {
		p->inflight[e->p1 - 1]++;
		v->writers++;
	}
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* After the data of a write completed: record what is written now. */
static int
tpv_map_end(struct dio_volume *vol, const struct dio_extent *ext, uint64_t done,
	    unsigned int flags)
{
	struct tp_dvol *dv = to_dv(vol);
	struct dio_tpool *p = dv->pool;
	struct tp_vol *v = dv->tv;
	uint64_t cs = p->chunk_size, ss = p->sub_size, c, l = ext->pos / cs, off = ext->pos % cs;
	bool meta = ext->type == DIO_EXT_UNWRITTEN || (ext->flags & (DIO_EXT_NEW | DIO_EXT_DIRTY));
	struct dio_map_waiter *wake = NULL;
	struct tp_ment *e;
	int ret = 0;

	if (!(flags & DIO_MAP_WRITE) || (flags & DIO_MAP_REPORT) || ext->type == DIO_EXT_HOLE)
		return 0;
	c = (ext->addr - p->sb.data_start) / cs;
	pthread_mutex_lock(&p->lock);
	if (p->inflight[c])
		p->inflight[c]--;
	if (v->writers)
		v->writers--;
	if (v->snaps && !v->writers)
		pthread_cond_broadcast(&p->snap_cond);	/* tp_snapshot can go on */
	e = tp_ment(v, l);
	/*
	 * In place, no record: a snapshot taken from now on shares these
	 * bytes, and its record must wait for a flush after this (R1).
	 * Failed or short, some of it may be on the device all the same.
	 */
	if (ext->type == DIO_EXT_MAPPED && !(ext->flags & DIO_EXT_SHARED) &&
	    !(flags & DIO_MAP_FUA))
		v->wneeds = p->flush_issued + 1;
	if (ext->flags & DIO_EXT_SHARED) {
		ret = tpv_cow_end(dv, ext, done >= ext->length, flags, &wake);
	} else if (done && e && e->p1 == c + 1 && ext->type == DIO_EXT_UNWRITTEN) {
		/* Its leaf is the volume's own since map_begin (snapshots wait for writers). */
		uint64_t a = off / ss * ss, b = off + done;
		uint32_t bits;

		/* A partial sub-block counts only when its padding was written too. */
		b = done >= ext->length ? (b + ss - 1) / ss * ss : b / ss * ss;
		bits = b > a ? sub_mask((uint32_t)(a / ss), (uint32_t)(b / ss)) & ~e->bits : 0;
		if (bits) {
			struct tp_rec r = { .type = TP_R_MAP, .vol = v->id, .a = l, .b = c,
					    .bits = bits };
			/* Its data is durable after the next flush, or now with FUA. */
			uint64_t needs = (flags & DIO_MAP_FUA) ? 0 : p->flush_issued + 1;

			ret = tp_append(p, &r, needs);
			if (ret == 0)
				e->bits |= bits;
		}
	}
	/* The commit's device I/O without the lock: other writes go on meanwhile. */
	if (ret == 0 && (flags & DIO_MAP_FUA) && meta)
		ret = tp_commit_unlocked(p, true);
	else if (ret == 0 && p->npend * 32 > p->sb.journal_blocks * TP_BLOCK / 4)
		ret = tp_commit_unlocked(p, true);	/* a quarter of the journal is waiting */
	else if (p->npend)
		tp_committer_kick(p);	/* the rest: within commit_ms */
	pthread_mutex_unlock(&p->lock);
	tp_dvol_wake(wake);
	return ret;
}

struct dio_map_waiter *
tp_dvol_waiters(struct tp_vol *v)
{
	struct dio_map_waiter *w = v->dv ? v->dv->waiters : NULL;

	if (w)
		v->dv->waiters = NULL;
	return w;
}

void
tp_dvol_wake(struct dio_map_waiter *w)
{
	while (w) {
		struct dio_map_waiter *n = w->next;

		w->wake(w);	/* may free w: another thread resumes its write */
		w = n;
	}
}

/*
 * A write got -EAGAIN: a copy-on-write of its lchunk in flight, or a
 * snapshot of the volume waiting for the writes already under way. Wait
 * for that to end (a write of either kind woken early maps again and may
 * wait again).
 */
static int
tpv_map_wait(struct dio_volume *vol, uint64_t pos, struct dio_map_waiter *w)
{
	struct tp_dvol *dv = to_dv(vol);
	struct dio_tpool *p = dv->pool;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (tpv_cow_busy(dv, pos / p->chunk_size) ||
	    (dv->tv->snaps && !(w->flags & DIO_MAP_HELD))) {
		struct dio_map_waiter **pp = &dv->waiters;

		while (*pp)
			pp = &(*pp)->next;	/* in arrival order: a few at most */
		w->next = NULL;
		*pp = w;
		ret = 1;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static const struct dio_map_ops tpv_map_ops = {
	.map_begin = tpv_map_begin,
	.map_end = tpv_map_end,
	.map_wait = tpv_map_wait,
};

/* FLUSH: the pool's fdatasync (end_meta commits); TRIM/ZERO: no device I/O. */
static int
tpv_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	      uint64_t len, struct dio_io *io)
{
	struct dio_tpool *p = to_dv(vol)->pool;
	struct tp_vol *v = to_dv(vol)->tv;
	uint64_t ss = p->sub_size, cs = p->chunk_size;

	io->fd = vol->fd;
	switch (op) {
	case DIO_META_FLUSH:
		io->op = DIO_IO_FSYNC;
		pthread_mutex_lock(&p->lock);
		/* Records appended before now have their data covered by this flush. */
		io->priv = (void *)(uintptr_t)++p->flush_issued;
		pthread_mutex_unlock(&p->lock);
		return 0;
	case DIO_META_ZERO:
		if (!(flags & DIO_META_MAY_TRIM))
			return -EOPNOTSUPP;	/* keep it allocated: zeros are written */
		/* A written sub-block only partly covered needs real zeros. */
		pthread_mutex_lock(&p->lock);
		for (int end = 0; end < 2; end++) {
			uint64_t x = end ? pos + len : pos;
			struct tp_ment *e = tp_ment(v, x / cs);

			if (x % ss && e && e->p1 && ((e->bits >> (x % cs / ss)) & 1)) {
				pthread_mutex_unlock(&p->lock);
				return -EOPNOTSUPP;
			}
		}
		pthread_mutex_unlock(&p->lock);
		/* fallthrough */
	case DIO_META_TRIM:
		/* Metadata only: a harmless no-op for the engine to complete. */
		io->op = DIO_IO_FADVISE;
		io->mode = POSIX_FADV_NORMAL;
		io->offset = 0;
		io->len = 0;
		return 0;
	case DIO_META_CACHE:
		return -EOPNOTSUPP;
	}
	return -EINVAL;
}

/* A TRIM left undone for want of metadata room: said at most once a minute. */
static void
tpv_trim_skipped(struct dio_tpool *p, uint64_t pos, uint64_t len)
{
	uint64_t now = dio_now_ns();

	p->trim_skips++;
	if (p->trim_skip_ns && now - p->trim_skip_ns < 60 * 1000000000ull)
		return;
	p->trim_skip_ns = now;
	dio_log(DIO_LOG_WARN, "pool %s: a TRIM of %" PRIu64 " bytes at %" PRIu64 " left undone"
		" (%" PRIu64 " so far): the metadata reserve has no room to copy the map a snapshot"
		" shares; the data stays, the space is not given back", p->path, len, pos,
		p->trim_skips);
}

/*
 * Clear the written bits of whole sub-blocks of [pos, pos+len); free
 * emptied chunks. A TRIM (trim) that meets a shared leaf the metadata
 * reserve cannot copy stops there and succeeds: the NBD spec lets a server
 * ignore a TRIM, and the data stays readable; a zeroing must fail instead.
 */
static int
tpv_unmap(struct tp_dvol *dv, uint64_t pos, uint64_t len, bool trim)
{
	struct dio_tpool *p = dv->pool;
	struct tp_vol *v = dv->tv;
	uint64_t cs = p->chunk_size, ss = p->sub_size;
	uint64_t a = (pos + ss - 1) / ss * ss, b = (pos + len) / ss * ss;
	int ret = 0;

	while (a < b && ret == 0) {
		uint64_t l = a / cs, ce = (l + 1) * cs, end = b < ce ? b : ce;
		struct tp_ment *e = tp_ment(v, l);
		uint32_t bits;

		if (e && e->p1) {
			uint64_t c = e->p1 - 1;

			bits = sub_mask((uint32_t)(a % cs / ss),
					(uint32_t)((end - l * cs) / ss)) & e->bits;
			/* A shared leaf: this volume's own copy changes, the chunk stays. */
			if ((bits || !e->bits) && !(e = tp_ment_w(p, v, l, false))) {
				ret = -errno;
				if (trim && ret == -ENOSPC) {
					tpv_trim_skipped(p, a, b - a);
					ret = 0;
				}
				break;
			}
			if (bits) {
				struct tp_rec r = { .type = TP_R_UNMAP, .vol = v->id, .a = l,
						    .bits = bits };

				ret = tp_append(p, &r, 0);
				if (ret < 0)
					break;
				e->bits &= ~bits;
			}
			if (!e->bits && !p->inflight[c]) {
				/* R3: allocatable once the records up to now are durable. */
				tp_ent_unmap(p, v, l, e, p->npend ? p->serial : 0);
			}
		}
		a = end;
	}
	if (p->npend)
		tp_committer_kick(p);	/* committed by FLUSH, FUA, or within commit_ms */
	return ret;
}

static int
tpv_end_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	     uint64_t len, const struct dio_io *io, int res)
{
	struct dio_tpool *p = to_dv(vol)->pool;
	int ret = 0;

	if (res < 0)
		return res;
	pthread_mutex_lock(&p->lock);
	if (op == DIO_META_FLUSH) {
		uint64_t id = (uintptr_t)io->priv;

		if (id > p->flush_done)
			p->flush_done = id;
		ret = p->readonly ? 0 : tp_commit_unlocked(p, false);
	} else if (op == DIO_META_TRIM || op == DIO_META_ZERO) {
		ret = tpv_unmap(to_dv(vol), pos, len, op == DIO_META_TRIM);
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* The last reference to the volume went: forget it, drop the pool's. */
static void
tpv_release(struct dio_volume *vol)
{
	struct tp_dvol *dv = to_dv(vol);
	struct dio_tpool *p = dv->pool;

	pthread_mutex_lock(&p->lock);
	if (dv->tv && dv->tv->dv == dv)
		dv->tv->dv = NULL;
	pthread_mutex_unlock(&p->lock);
	dio_volume_fini(vol);
	free(dv->cow);
	free(dv);
	tp_put(p);
}

static const struct dio_vol_ops tpv_vol_ops = {
	.prep_meta = tpv_prep_meta,
	.end_meta = tpv_end_meta,
	.release = tpv_release,
};

int
tp_dvol_open(struct dio_tpool *p, struct tp_vol *v, struct dio_volume **out)
{
	struct tp_dvol *dv;
	int ret;

	if (v->dv && dio_volume_tryget(&v->dv->vol)) {
		*out = &v->dv->vol;
		return 0;
	}
	dv = calloc(1, sizeof(*dv));
	if (!dv)
		return -ENOMEM;
	dv->pool = p;
	dv->tv = v;
	dv->vol.map_ops = &tpv_map_ops;
	dv->vol.vol_ops = &tpv_vol_ops;
	dv->vol.fd = p->fd;
	dv->vol.size = v->size;
	dv->vol.lbs = p->lbs;
	dv->vol.pbs = p->lbs;
	dv->vol.blksize = (uint32_t)p->sub_size;
	dv->vol.readonly = p->readonly || (v->flags & TP_VF_RO);
	dv->vol.wcache = true;
	dv->vol.can_trim = true;
	dv->vol.can_zero = true;
	dv->vol.map_commits_fua = true;	/* tpv_map_end commits a FUA write's records */
	dv->vol.priv = v;
	ret = dio_volume_init(&dv->vol);
	if (ret < 0) {
		free(dv);
		return ret;
	}
	tp_get(p);
	v->dv = dv;
	*out = &dv->vol;
	return 0;
}

/*
 * Growing v: the bytes of its last written sub-block past the old end may
 * hold what a shrink cut off; they read as zeros from now on. Written
 * before the new size is committed, as they are past the end until then.
 */
static int
tpv_zero_tail(struct dio_tpool *p, struct tp_vol *v)
{
	uint64_t cs = p->chunk_size, ss = p->sub_size, o = v->size, len = ss - o % ss;
	struct tp_ment *e = tp_ment(v, o / cs);
	int ret = 0;

	if (o % ss == 0 || !e || !e->p1 || !((e->bits >> (o % cs / ss)) & 1))
		return 0;
	if (v->dv && tpv_cow_busy(v->dv, o / cs))
		return -EBUSY;	/* a write is copying that chunk right now */
	/* Not in a chunk a snapshot sees: a copy of its own first. */
	if (tpv_must_copy(p, v, o / cs, e) && !(e = tpv_cow(p, v, o / cs, &ret)))
		return ret;
	ret = tp_buf_reserve(p, len);
	if (ret < 0)
		return ret;
	memset(p->buf, 0, len);
	ret = p->io->pwrite(p->io->priv, p->fd, p->buf, len,
			    p->sb.data_start + (uint64_t)(e->p1 - 1) * cs + o % cs, false);
	return ret < 0 ? ret : tp_flush_sync(p);
}

/* Leaves of a volume of size bytes. */
static uint64_t
tpv_leaves(const struct dio_tpool *p, uint64_t size)
{
	return (size / p->chunk_size + (size % p->chunk_size != 0) + TP_LEAF - 1) / TP_LEAF;
}

/*
 * Shrinking v to size, in the leaf the new end falls in: UNMAP records
 * for the sub-blocks wholly past it; chunks left with none are freed,
 * allocatable once the records are durable (R3). A sub-block the end cuts
 * stays written. The whole leaves past it are the RESIZE record's
 * (TP_RZ_DROP): O(leaf) here, whatever the size of the tail.
 */
static int
tpv_unmap_tail(struct dio_tpool *p, struct tp_vol *v, uint64_t size)
{
	uint64_t cs = p->chunk_size, ss = p->sub_size, end = tpv_leaves(p, size) * TP_LEAF;

	for (uint64_t l = size / cs; l < v->nl && l < end; l++) {
		struct tp_ment *e = tp_ment(v, l);
		uint64_t from = l * cs < size ? size - l * cs : 0;
		uint32_t bits = sub_mask((uint32_t)((from + ss - 1) / ss), p->nsub);
		struct tp_rec r = { .type = TP_R_UNMAP, .vol = v->id, .a = l, .bits = bits };
		int ret;

		if (!e || !e->p1 || (!(e->bits & bits) && e->bits))
			continue;
		e = tp_ment_w(p, v, l, false);
		if (!e)
			return -errno;
		ret = tp_append(p, &r, 0);
		if (ret < 0)
			return ret;
		e->bits &= ~bits;
		e->dbits &= ~bits;
		if (!e->bits)
			tp_ent_unmap(p, v, l, e, p->serial);
	}
	return 0;
}

int
dio_tpool_volume_resize(struct dio_tpool *pool, const char *name, uint64_t size)
{
	struct tp_rec r = { .type = TP_R_RESIZE, .a = size };
	char err[200];
	struct tp_vol *v;
	int ret;

	if (size == 0 || size % TP_BLOCK ||
	    size / pool->chunk_size >= TP_VOL_CHUNKS_MAX)
		return -EINVAL;
	pthread_mutex_lock(&pool->lock);
	v = tp_vol_by_name(pool, name);
	if (pool->readonly)
		ret = -EROFS;
	else if (!v)
		ret = -ENOENT;
	else if (v->flags & TP_VF_RO)
		ret = -EPERM;	/* a snapshot stays as it was taken */
	else if (size == v->size)
		ret = 0;
	else if (size < v->size && v->dv)
		ret = -EBUSY;	/* its clients may be writing past the new end */
	else {
		uint64_t from = tpv_leaves(pool, size), tail = 0;

		r.vol = v->id;
		ret = size > v->size ? tpv_zero_tail(pool, v) : tpv_unmap_tail(pool, v, size);
		for (uint64_t k = from; size < v->size && k < tpv_leaves(pool, v->size); k++)
			tail += v->leaf[k] ? v->leaf[k]->n : 0;
		if (tail)
			r.rsvd = TP_RZ_DROP;
		if (ret == 0)
			ret = tp_append(pool, &r, 0);
		if (ret == 0 && tail) {
			/*
			 * The whole leaves past the end go to a ghost, dropped
			 * here or in the background as a deleted volume's map
			 * (pool-reclaim.c); no memory for one: here. Their chunks
			 * are free once the record is durable (R3).
			 */
			struct tp_vol *g = tp_vol_ghost(pool, v, from);

			tp_committer_kick(pool);	/* to discard them off the lock */
			if (g)
				tp_reclaim_map(pool, g, pool->serial, "shrunk");
			else
				v->mapped -= tp_vol_drop_leaves(pool, v, &from, UINT64_MAX,
								pool->serial);
		}
		if (ret == 0) {
			ret = tp_apply(pool, &r, err, sizeof(err));
			if (ret < 0) {
				pool->npend--;	/* never happened */
				dio_log(DIO_LOG_ERR, "%s: resize of %s: %s", pool->path, name, err);
			}
		}
		if (ret == 0 && v->dv)
			__atomic_store_n(&v->dv->vol.size, size, __ATOMIC_RELAXED);
		/* The UNMAPs and the size in one transaction: all or nothing. */
		if (ret == 0)
			ret = tp_commit(pool, true);
	}
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

int
dio_tpool_volume_open(struct dio_tpool *pool, const char *name, struct dio_volume **out)
{
	struct tp_vol *v;
	int ret;

	pthread_mutex_lock(&pool->lock);
	v = tp_vol_by_name(pool, name);
	ret = v ? tp_dvol_open(pool, v, out) : -ENOENT;
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

bool
tp_dvol_of(struct dio_volume *vol, struct dio_tpool **pool, struct tp_vol **tv)
{
	if (!vol || vol->vol_ops != &tpv_vol_ops)
		return false;
	*pool = to_dv(vol)->pool;
	*tv = to_dv(vol)->tv;
	return true;
}
