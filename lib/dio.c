/* SPDX-License-Identifier: MIT */
/*
 * The dio engine: one client request -> extents -> device I/O -> exactly one
 * done(). Modelled on fs/iomap/direct-io.c (struct iomap_dio).
 *
 * Lifetime of a struct dio, as in __iomap_dio_rw:
 *  - dio->ref counts the submitter of the current stage plus every device
 *    I/O (or child dio) in flight for it. A stage starts with ref = 1, adds
 *    one per I/O, and drops its own reference when it has issued all of them.
 *  - Whoever drops the last reference runs dio->next, the end of the stage:
 *    (a) the submitter, when every I/O already finished (all holes, or the
 *        engine completed inline): then we are inside dio_submit, so the
 *        user's done() is deferred to the next reap;
 *    (b) an I/O completion in dio_ctx_reap;
 *    (c) a child dio finishing (zeroes, RMW pieces).
 *  - A stage end either starts the next stage (RMW write after its read,
 *    the sync after FUA writes, map_end after the sync) or finishes: one
 *    call of dio_finish, which calls done() (or the parent) and frees.
 *  - The first error wins (dio_set_error); later ones are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "dio-internal.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

#define DIO_INLINE_EXTS 4
#define DIO_META_RETRIES 8

/* A range of blocks held by an unaligned read-modify-write. */
struct dio_rmw {
	uint64_t start, end;	/* block-aligned, [start, end) */
	struct dio *dio;
	struct dio_rmw *next;	/* under vol->rmw_lock */
	bool waiting;		/* queued behind an overlapping RMW */
};

/* An extent a write went to; map_end runs for it once the data is in. */
struct dio_ext_rec {
	struct dio_extent ext;
	uint64_t fail_at;	/* first byte that failed, or UINT64_MAX */
};

/* One device I/O of a dio; resubmitted in place when it comes back short. */
struct dio_piece {
	struct dio_io io;
	struct dio *dio;
	uint32_t rec;		/* index in dio->exts, or UINT32_MAX */
	uint64_t rw_done;	/* bytes already transferred (short I/O) */
	struct dio_piece *next_free;
};

struct dio {
	struct dio_ctx *ctx;
	struct dio_volume *vol;
	struct dio_req *req;	/* the caller's, or &own_req for a child */
	struct dio *parent;	/* set for a child dio */
	struct dio_work work;	/* deferred finish / RMW hand-over */
	void (*next)(struct dio *dio);	/* end of the current stage */
	int ref;
	int error;

	uint8_t op;		/* DIO_REQ_* of the work this dio does */
	uint32_t flags;
	bool zeroes;		/* WRITE source is zeros, not buf */
	bool need_sync;		/* FUA on an allocating write: sync before done */
	bool rmw_held;
	bool fast;
	int fixed_file;		/* the volume's file on this ctx's engine (dio_io.fixed_file) */
	unsigned int meta_tries;

	/* the range and memory the current stage works on */
	uint64_t pos, len;
	uint8_t *buf;
	int buf_index;
	struct dio_buf *bounce;	/* aligned copy for unaligned requests */

	struct dio_ext_rec *exts;	/* WRITE: extents awaiting map_end */
	uint32_t nexts, exts_cap;
	struct dio_ext_rec inline_exts[DIO_INLINE_EXTS];

	struct dio_rmw rmw;
	enum dio_meta_op meta_op;
	unsigned int meta_flags;
	uint64_t meta_pos, meta_len;
	struct dio_io meta_io;
	struct dio_req own_req;	/* a child's request */
	struct dio *next_free;
};

static void dio_finish(struct dio *dio);
static void dio_start_write(struct dio *dio);
static void dio_write_done(struct dio *dio);

/* ---- small helpers ---------------------------------------------------- */

static inline bool
dio_aligned(uint64_t v, uint32_t a)
{
	return (v & (a - 1)) == 0;
}

static inline uint64_t
dio_round_down(uint64_t v, uint32_t a)
{
	return v & ~(uint64_t)(a - 1);
}

static inline uint64_t
dio_round_up(uint64_t v, uint32_t a)
{
	return (v + a - 1) & ~(uint64_t)(a - 1);
}

static void
dio_set_error(struct dio *dio, int err)
{
	if (err < 0 && dio->error == 0)
		dio->error = err;
}

static void
dio_put(struct dio *dio)
{
	if (--dio->ref == 0)
		dio->next(dio);
}

/* Begin a stage whose end is 'next': the caller holds the stage's ref. */
static void
dio_stage(struct dio *dio, void (*next)(struct dio *))
{
	dio->ref = 1;
	dio->next = next;
}

static struct dio *
dio_alloc(struct dio_ctx *ctx)
{
	struct dio *dio = ctx->free_dios;

	if (dio)
		ctx->free_dios = dio->next_free;
	else if (!(dio = malloc(sizeof(*dio))))
		return NULL;
	memset(dio, 0, offsetof(struct dio, inline_exts));
	dio->ctx = ctx;
	dio->buf_index = -1;
	dio->exts = dio->inline_exts;
	dio->exts_cap = DIO_INLINE_EXTS;
	return dio;
}

static void
dio_free(struct dio *dio)
{
	struct dio_ctx *ctx = dio->ctx;

	if (dio->exts != dio->inline_exts)
		free(dio->exts);
	dio->next_free = ctx->free_dios;
	ctx->free_dios = dio;
}

static struct dio_piece *
dio_piece_alloc(struct dio *dio)
{
	struct dio_ctx *ctx = dio->ctx;
	struct dio_piece *p = ctx->free_pieces;

	if (p)
		ctx->free_pieces = p->next_free;
	else if (!(p = malloc(sizeof(*p))))
		return NULL;
	memset(p, 0, sizeof(*p));
	p->dio = dio;
	p->rec = UINT32_MAX;
	p->io.buf_index = -1;
	p->io.priv = p;
	return p;
}

static void
dio_piece_free(struct dio_piece *p)
{
	struct dio_ctx *ctx = p->dio->ctx;

	p->next_free = ctx->free_pieces;
	ctx->free_pieces = p;
}

void
dio_ctx_free_caches(struct dio_ctx *ctx)
{
	struct dio_piece *p;
	struct dio *d;

	while ((d = ctx->free_dios)) {
		ctx->free_dios = d->next_free;
		free(d);
	}
	while ((p = ctx->free_pieces)) {
		ctx->free_pieces = p->next_free;
		free(p);
	}
}

/* ---- volumes ---------------------------------------------------------- */

void
dio_volume_init(struct dio_volume *vol)
{
	static _Atomic uint64_t last_id;

	vol->id = ++last_id;
	pthread_mutex_init(&vol->rmw_lock, NULL);
	vol->rmw_busy = NULL;
	if (!vol->blksize || vol->blksize < vol->lbs)
		vol->blksize = vol->lbs;
}

void
dio_volume_fini(struct dio_volume *vol)
{
	if (vol->vol_ops && vol->vol_ops->close)
		vol->vol_ops->close(vol);
	pthread_mutex_destroy(&vol->rmw_lock);
}

/* ---- device I/O ------------------------------------------------------- */

static void dio_piece_end_io(struct dio_io *io, int64_t res);

/*
 * A write piece failed: note the first logical byte of its extent that may
 * not have been written, so map_end is told only what really made it.
 * Padding outside the extent (or before it) fails the whole extent.
 */
static void
dio_piece_failed(struct dio *dio, struct dio_piece *p)
{
	struct dio_ext_rec *r;
	uint64_t at;

	if (p->rec == UINT32_MAX)
		return;
	r = &dio->exts[p->rec];
	if (p->io.offset < r->ext.addr || p->io.offset >= r->ext.addr + r->ext.length)
		at = r->ext.pos;
	else
		at = r->ext.pos + (p->io.offset - r->ext.addr);
	if (at < r->fail_at)
		r->fail_at = at;
}

static void
dio_piece_queue(struct dio *dio, struct dio_piece *p)
{
	int ret;

	dio->ref++;
	ret = dio_engine_queue(dio->ctx->engine, &p->io);
	if (ret < 0) {
		/* Never queued: account for it as a failed I/O. */
		dio_set_error(dio, ret);
		dio_piece_failed(dio, p);
		dio_piece_free(p);
		dio->ref--;
	}
}

/* Queue a READ or WRITE of [addr, addr+len) from/to mem. */
static int
dio_queue_rw(struct dio *dio, uint8_t op, uint64_t addr, uint64_t len, uint8_t *mem,
	     int buf_index, int rw_flags, uint32_t rec)
{
	while (len) {
		uint64_t n = len < DIO_IO_MAX_LEN ? len : DIO_IO_MAX_LEN;
		struct dio_piece *p = dio_piece_alloc(dio);

		if (!p)
			return -ENOMEM;
		p->io.op = op;
		p->io.fd = dio->vol->fd;
		p->io.fixed_file = dio->fixed_file;
		p->io.offset = addr;
		p->io.len = n;
		p->io.buf = mem;
		p->io.buf_index = buf_index;
		p->io.rw_flags = rw_flags;
		p->io.end_io = dio_piece_end_io;
		p->rec = rec;
		dio_piece_queue(dio, p);
		addr += n;
		mem += n;
		len -= n;
	}
	return 0;
}

/* Queue a WRITE of zeros over [addr, addr+len) from the ctx's zero buffer. */
static int
dio_queue_zeroes(struct dio *dio, uint64_t addr, uint64_t len, int rw_flags, uint32_t rec)
{
	uint8_t *zero = dio_ctx_zero_buf(dio->ctx);
	int ret;

	if (!zero)
		return -ENOMEM;
	while (len) {
		uint64_t n = len < DIO_ZERO_BUF_LEN ? len : DIO_ZERO_BUF_LEN;

		ret = dio_queue_rw(dio, DIO_IO_WRITE, addr, n, zero, -1, rw_flags, rec);
		if (ret < 0)
			return ret;
		addr += n;
		len -= n;
	}
	return 0;
}

static void
dio_piece_end_io(struct dio_io *io, int64_t res)
{
	struct dio_piece *p = io->priv;
	struct dio *dio = p->dio;

	if (res > 0 && (uint64_t)res < io->len) {
		/* Short: resubmit the rest, never report it as success. */
		io->offset += res;
		io->len -= res;
		io->buf = (uint8_t *)io->buf + res;
		p->rw_done += res;
		dio->ref--;	/* dio_piece_queue takes it again */
		dio_piece_queue(dio, p);
		if (dio->ref == 0)
			dio->next(dio);
		return;
	}
	if (res == 0 && io->len > 0 && (io->op == DIO_IO_READ || io->op == DIO_IO_WRITE)) {
		/* A read at end of file gives zeros, as a file past EOF reads. */
		if (io->op == DIO_IO_READ)
			memset(io->buf, 0, io->len);
		else
			res = -EIO;
	}
	if (res < 0) {
		dio_set_error(dio, (int)res);
		dio_piece_failed(dio, p);
	}
	dio_piece_free(p);
	dio_put(dio);
}

/* ---- reads ------------------------------------------------------------ */

/* Record [pos, pos+len) of 'type' in the caller's segs, merging neighbours.
 * When segs is full, a zero range is filled in buf and joined to DATA. */
static void
dio_seg_add(struct dio *dio, uint64_t pos, uint64_t len, uint32_t type, uint8_t *mem)
{
	struct dio_req *req = dio->req;
	struct dio_seg *last = req->nsegs ? &req->segs[req->nsegs - 1] : NULL;

	if (last && last->type == type && last->pos + last->len == pos) {
		last->len += len;
		return;
	}
	if (req->nsegs < req->max_segs) {
		req->segs[req->nsegs++] = (struct dio_seg){ .pos = pos, .len = len, .type = type };
		return;
	}
	/* Full: turn the tail into data so every byte is still accounted for. */
	if (type != DIO_SEG_DATA)
		memset(mem, 0, len);
	if (last->type != DIO_SEG_DATA) {
		memset((uint8_t *)req->buf + (last->pos - req->pos), 0, last->len);
		last->type = DIO_SEG_DATA;
	}
	last->len += len;
}

/*
 * Map and read [pos, pos+len) into mem: device reads for MAPPED extents,
 * zeros (or hole segments) for HOLE and UNWRITTEN without device I/O.
 */
static int
dio_read_range(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index,
	       bool report)
{
	struct dio_iter it;
	int ret;

	dio_iter_init(&it, pos, len, 0);
	while ((ret = dio_iter(&it, dio->vol)) > 0) {
		const struct dio_extent *ext = &it.ext;
		uint8_t *m = mem + (ext->pos - pos);

		if (ext->type == DIO_EXT_MAPPED) {
			ret = dio_queue_rw(dio, DIO_IO_READ, ext->addr, ext->length, m,
					   buf_index, 0, UINT32_MAX);
			if (report && ret == 0)
				dio_seg_add(dio, ext->pos, ext->length, DIO_SEG_DATA, m);
		} else {
			ret = 0;
			if (report)
				dio_seg_add(dio, ext->pos, ext->length,
					    ext->type == DIO_EXT_HOLE ? DIO_SEG_HOLE : DIO_SEG_ZERO,
					    m);
			else
				memset(m, 0, ext->length);
		}
		it.status = ret < 0 ? ret : (int64_t)ext->length;
	}
	return ret;
}

static void
dio_read_done(struct dio *dio)
{
	struct dio_req *req = dio->req;

	if (!dio->error && dio->bounce) {
		memcpy(req->buf, dio->bounce->data + (req->pos - dio->pos), req->len);
		if (req->flags & DIO_REQ_REPORT_HOLES) {
			req->segs[0] = (struct dio_seg){ .pos = req->pos, .len = req->len,
							 .type = DIO_SEG_DATA };
			req->nsegs = 1;
		}
	}
	dio_finish(dio);
}

/* Give the dio an aligned bounce buffer covering [pos, pos+len) aligned out. */
static int
dio_bounce(struct dio *dio)
{
	uint32_t lbs = dio->vol->lbs;
	uint64_t start = dio_round_down(dio->req->pos, lbs);
	uint64_t end = dio_round_up(dio->req->pos + dio->req->len, lbs);

	dio->bounce = dio_buf_get(dio->ctx->pool, end - start);
	if (!dio->bounce)
		return -ENOMEM;
	dio->pos = start;
	dio->len = end - start;
	dio->buf = dio->bounce->data;
	dio->buf_index = dio->bounce->index;
	return 0;
}

/* The caller's memory can go to the device as it is. */
static bool
dio_mem_direct(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;

	return dio_aligned(req->pos, lbs) && dio_aligned(req->len, lbs) &&
	       dio_aligned((uintptr_t)req->buf, lbs);
}

static void
dio_use_req_mem(struct dio *dio)
{
	struct dio_req *req = dio->req;

	dio->pos = req->pos;
	dio->len = req->len;
	dio->buf = req->buf;
	dio->buf_index = -1;
	if (req->dbuf && (uint8_t *)req->buf >= (uint8_t *)req->dbuf->data &&
	    (uint8_t *)req->buf + req->len <= (uint8_t *)req->dbuf->data + req->dbuf->size)
		dio->buf_index = req->dbuf->index;
}

static void
dio_start_read(struct dio *dio)
{
	struct dio_req *req = dio->req;
	bool report = req->flags & DIO_REQ_REPORT_HOLES;
	int ret;

	dio_stage(dio, dio_read_done);
	if (dio_mem_direct(dio)) {
		dio_use_req_mem(dio);
	} else {
		ret = dio_bounce(dio);
		if (ret < 0) {
			dio_set_error(dio, ret);
			goto out;
		}
		report = false;	/* the whole range comes back as one DATA segment */
	}
	ret = dio_read_range(dio, dio->pos, dio->len, dio->buf, dio->buf_index, report);
	dio_set_error(dio, ret);
out:
	dio_put(dio);
}

/* ---- writes ----------------------------------------------------------- */

static int
dio_ext_record(struct dio *dio, const struct dio_extent *ext, uint32_t *idx)
{
	if (dio->nexts == dio->exts_cap) {
		uint32_t cap = dio->exts_cap * 2;
		struct dio_ext_rec *n = malloc(cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		memcpy(n, dio->exts, dio->nexts * sizeof(*n));
		if (dio->exts != dio->inline_exts)
			free(dio->exts);
		dio->exts = n;
		dio->exts_cap = cap;
	}
	dio->exts[dio->nexts] = (struct dio_ext_rec){ .ext = *ext, .fail_at = UINT64_MAX };
	*idx = dio->nexts++;
	return 0;
}

/*
 * Zero the parts of the allocation blocks around a write into a NEW or
 * UNWRITTEN extent that the write does not cover (iomap_dio_zero), so a
 * later read of them can never return stale bytes.
 */
static int
dio_zero_padding(struct dio *dio, const struct dio_extent *ext, uint32_t rec)
{
	uint32_t bs = dio->vol->blksize;
	uint64_t head = ext->pos - dio_round_down(ext->pos, bs);
	uint64_t end = ext->pos + ext->length;
	uint64_t tail = dio_round_up(end, bs) - end;
	int ret = 0;

	if (head)
		ret = dio_queue_zeroes(dio, ext->addr - head, head, 0, rec);
	if (tail && ret == 0)
		ret = dio_queue_zeroes(dio, ext->addr + ext->length, tail, 0, rec);
	return ret;
}

/* Map [pos, pos+len) for writing and queue the data writes. */
static int
dio_write_range(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index)
{
	unsigned int mflags = DIO_MAP_WRITE | (dio->zeroes ? DIO_MAP_ZERO : 0);
	bool fua = dio->flags & DIO_REQ_FUA;
	struct dio_iter it;
	uint32_t rec;
	int ret;

	dio_iter_init(&it, pos, len, mflags);
	it.defer_end = true;
	while ((ret = dio_iter(&it, dio->vol)) > 0) {
		const struct dio_extent *ext = &it.ext;
		bool overwrite = ext->type == DIO_EXT_MAPPED &&
				 !(ext->flags & (DIO_EXT_NEW | DIO_EXT_SHARED));
		int rw_flags = 0;

		ret = dio_ext_record(dio, ext, &rec);
		if (ret < 0) {
			if (dio->vol->map_ops->map_end)
				dio->vol->map_ops->map_end(dio->vol, ext, 0, mflags);
			it.status = ret;
			continue;
		}
		if (ext->type == DIO_EXT_HOLE) {
			/* A volume must allocate on a write: nothing to write to. */
			dio->exts[rec].fail_at = ext->pos;
			it.status = -EIO;
			continue;
		}
		if (overwrite && fua)
			rw_flags = RWF_DSYNC;	/* write-through: FUA or write+flush */
		else if (!overwrite && fua)
			dio->need_sync = true;	/* allocation or conversion to commit */

		ret = 0;
		if (!overwrite && dio->vol->blksize > dio->vol->lbs)
			ret = dio_zero_padding(dio, ext, rec);
		if (ret == 0 && dio->zeroes)
			ret = dio_queue_zeroes(dio, ext->addr, ext->length, rw_flags, rec);
		else if (ret == 0)
			ret = dio_queue_rw(dio, DIO_IO_WRITE, ext->addr, ext->length,
					   mem + (ext->pos - pos), buf_index, rw_flags, rec);
		if (ret < 0)
			dio->exts[rec].fail_at = ext->pos;	/* not all of it was queued */
		it.status = ret < 0 ? ret : (int64_t)ext->length;
	}
	return ret;
}

/* Run map_end for every extent written, with how much of it made it. */
static void
dio_write_end_extents(struct dio *dio)
{
	const struct dio_map_ops *ops = dio->vol->map_ops;
	unsigned int mflags = DIO_MAP_WRITE | (dio->zeroes ? DIO_MAP_ZERO : 0);
	int ret;

	if (dio->need_sync && !dio->error)
		mflags |= DIO_MAP_FUA;
	for (uint32_t i = 0; i < dio->nexts; i++) {
		struct dio_ext_rec *r = &dio->exts[i];
		uint64_t done = r->ext.length;

		if (r->fail_at != UINT64_MAX)
			done = r->fail_at > r->ext.pos ? r->fail_at - r->ext.pos : 0;
		if (!ops->map_end)
			continue;
		ret = ops->map_end(dio->vol, &r->ext, done, mflags);
		dio_set_error(dio, ret);
	}
	dio->nexts = 0;
}

static void dio_meta_start(struct dio *dio);

/* A stage that makes everything done so far durable (the volume's FLUSH),
 * then runs next. */
static void
dio_start_sync(struct dio *dio, void (*next)(struct dio *))
{
	dio_stage(dio, next);
	dio->meta_op = DIO_META_FLUSH;
	dio->meta_flags = 0;
	dio->meta_tries = 0;
	dio_meta_start(dio);
	dio_put(dio);
}

static void
dio_write_synced(struct dio *dio)
{
	dio_write_end_extents(dio);
	dio_finish(dio);
}

static void
dio_write_done(struct dio *dio)
{
	if (dio->error || !dio->need_sync) {
		dio_write_synced(dio);
		return;
	}
	/* FUA on an allocating write: data flush + metadata commit. */
	dio_start_sync(dio, dio_write_synced);
}

/* Take the block range [start, end) for an RMW, or queue behind a holder.
 * Returns true when taken now; otherwise dio resumes via its ctx later. */
static bool
dio_rmw_lock(struct dio *dio, uint64_t start, uint64_t end)
{
	struct dio_volume *vol = dio->vol;
	struct dio_rmw **pp, *r;
	bool busy = false;

	dio->rmw = (struct dio_rmw){ .start = start, .end = end, .dio = dio };
	pthread_mutex_lock(&vol->rmw_lock);
	/* FIFO: wait behind any earlier holder or waiter that overlaps. */
	for (pp = &vol->rmw_busy; (r = *pp); pp = &r->next)
		if (r->start < end && start < r->end)
			busy = true;
	dio->rmw.waiting = busy;
	*pp = &dio->rmw;
	pthread_mutex_unlock(&vol->rmw_lock);
	dio->rmw_held = true;
	return !busy;
}

static void
dio_rmw_unlock(struct dio *dio)
{
	struct dio_volume *vol = dio->vol;
	struct dio_rmw **pp, *r, *q;

	pthread_mutex_lock(&vol->rmw_lock);
	for (pp = &vol->rmw_busy; (r = *pp); pp = &r->next)
		if (r == &dio->rmw) {
			*pp = r->next;
			break;
		}
	/* Hand the range to each waiter no earlier entry overlaps any more. */
	for (r = vol->rmw_busy; r; r = r->next) {
		bool blocked = false;

		if (!r->waiting)
			continue;
		for (q = vol->rmw_busy; q != r; q = q->next)
			if (q->start < r->end && r->start < q->end)
				blocked = true;
		if (!blocked) {
			r->waiting = false;
			dio_ctx_post(r->dio->ctx, &r->dio->work);
		}
	}
	pthread_mutex_unlock(&vol->rmw_lock);
	dio->rmw_held = false;
}

static void
dio_rmw_modified(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint8_t *dst = dio->bounce->data + (req->pos - dio->pos);

	if (dio->error) {
		dio_finish(dio);
		return;
	}
	if (dio->zeroes)
		memset(dst, 0, req->len);
	else
		memcpy(dst, req->buf, req->len);
	/* The bounce now holds whole blocks: write them as ordinary data. */
	dio->zeroes = false;
	dio_stage(dio, dio_write_done);
	dio_set_error(dio, dio_write_range(dio, dio->pos, dio->len, dio->buf, dio->buf_index));
	dio_put(dio);
}

/* Read the partial head and tail blocks of an unaligned write. */
static void
dio_rmw_read(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;
	uint64_t end = dio->pos + dio->len;
	int ret = 0;

	dio_stage(dio, dio_rmw_modified);
	if (req->pos != dio->pos)
		ret = dio_read_range(dio, dio->pos, lbs, dio->buf, dio->buf_index, false);
	if (ret == 0 && req->pos + req->len != end &&
	    (end - lbs != dio->pos || req->pos == dio->pos))
		ret = dio_read_range(dio, end - lbs, lbs, dio->buf + (end - lbs - dio->pos),
				     dio->buf_index, false);
	dio_set_error(dio, ret);
	dio_put(dio);
}

static void
dio_rmw_resume(struct dio_work *w)
{
	dio_rmw_read((struct dio *)((char *)w - offsetof(struct dio, work)));
}

static void
dio_start_write(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;
	int ret;

	if (!dio_aligned(req->pos, lbs) || !dio_aligned(req->len, lbs)) {
		ret = dio_bounce(dio);
		if (ret < 0) {
			dio_stage(dio, dio_finish);
			dio_set_error(dio, ret);
			dio_put(dio);
			return;
		}
		dio->work.fn = dio_rmw_resume;
		if (dio_rmw_lock(dio, dio->pos, dio->pos + dio->len))
			dio_rmw_read(dio);
		return;
	}

	dio_stage(dio, dio_write_done);
	if (dio->zeroes || dio_mem_direct(dio)) {
		dio_use_req_mem(dio);
	} else {
		ret = dio_bounce(dio);
		if (ret < 0) {
			dio_set_error(dio, ret);
			dio_put(dio);
			return;
		}
		memcpy(dio->buf, req->buf, req->len);
	}
	dio_set_error(dio, dio_write_range(dio, dio->pos, dio->len, dio->buf, dio->buf_index));
	dio_put(dio);
}

/* ---- children: zeroing pieces that go through the write path ----------- */

static void
dio_spawn_zero_write(struct dio *parent, uint64_t pos, uint64_t len)
{
	struct dio *child = dio_alloc(parent->ctx);

	if (!child) {
		dio_set_error(parent, -ENOMEM);
		return;
	}
	child->vol = parent->vol;
	child->fixed_file = parent->fixed_file;
	child->parent = parent;
	child->req = &child->own_req;
	child->own_req = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = pos, .len = len };
	child->op = DIO_REQ_WRITE;
	child->zeroes = true;
	/* FUA is the parent's business: it syncs once at the end. */
	child->flags = 0;
	parent->ref++;
	dio_start_write(child);
}

/* ---- trim, zero, flush, cache: the volume's own methods ----------------- */

static void dio_meta_exhausted(struct dio *dio);

static void
dio_meta_end_io(struct dio_io *io, int64_t res)
{
	struct dio *dio = (struct dio *)((char *)io - offsetof(struct dio, meta_io));
	const struct dio_vol_ops *vops = dio->vol->vol_ops;
	int ret = (int)res;

	if (vops->end_meta)
		ret = vops->end_meta(dio->vol, dio->meta_op, dio->meta_flags, dio->meta_pos,
				     dio->meta_len, io, ret);
	if ((ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -EINVAL) &&
	    dio->meta_op != DIO_META_FLUSH && ++dio->meta_tries < DIO_META_RETRIES) {
		/* That way is ruled out; try the next one the volume offers. */
		dio_meta_start(dio);
	} else if (ret < 0) {
		dio_set_error(dio, ret);
	} else if (dio->meta_op == DIO_META_ZERO) {
		dio->fast = true;
	}
	dio_put(dio);
}

/* Ask the volume for the next way to do dio->meta_op and queue it. */
static void
dio_meta_start(struct dio *dio)
{
	struct dio_volume *vol = dio->vol;
	int ret;

	memset(&dio->meta_io, 0, sizeof(dio->meta_io));
	dio->meta_io.buf_index = -1;
	dio->meta_io.fd = vol->fd;
	dio->meta_io.fixed_file = dio->fixed_file;
	ret = vol->vol_ops->prep_meta(vol, dio->meta_op, dio->meta_flags, dio->meta_pos,
				      dio->meta_len, &dio->meta_io);
	if (ret == -EOPNOTSUPP && dio->meta_op == DIO_META_FLUSH) {
		/* Durability is not optional: fall back to fdatasync of the fd. */
		dio->meta_io.op = DIO_IO_FSYNC;
		dio->meta_io.fd = vol->fd;
		ret = 0;
	}
	if (dio->meta_io.fd != vol->fd)
		dio->meta_io.fixed_file = 0;	/* the slot names vol->fd's file only */
	if (ret == -EOPNOTSUPP) {
		dio_meta_exhausted(dio);
		return;
	}
	if (ret < 0) {
		dio_set_error(dio, ret);
		return;
	}
	dio->meta_io.end_io = dio_meta_end_io;
	dio->ref++;
	ret = dio_engine_queue(dio->ctx->engine, &dio->meta_io);
	if (ret < 0) {
		dio->ref--;
		dio_set_error(dio, ret);
	}
}

static void
dio_meta_exhausted(struct dio *dio)
{
	if (dio->meta_op != DIO_META_ZERO)
		return;	/* TRIM and CACHE are hints: doing nothing is correct */
	if (dio->flags & DIO_REQ_FAST_ZERO) {
		dio_set_error(dio, -EOPNOTSUPP);
		return;
	}
	dio->fast = false;
	dio_spawn_zero_write(dio, dio->meta_pos, dio->meta_len);
}

/* End of trim/zero/cache: with FUA, one sync makes all of it durable. */
static void
dio_meta_done(struct dio *dio)
{
	if (dio->error || !(dio->flags & DIO_REQ_FUA) || dio->meta_op == DIO_META_FLUSH) {
		dio_finish(dio);
		return;
	}
	dio_start_sync(dio, dio_finish);
}

static void
dio_start_meta(struct dio *dio, enum dio_meta_op op, uint64_t pos, uint64_t len)
{
	dio_stage(dio, dio_meta_done);
	dio->meta_op = op;
	dio->meta_pos = pos;
	dio->meta_len = len;
	if (op == DIO_META_ZERO && !(dio->flags & DIO_REQ_NO_HOLE))
		dio->meta_flags = DIO_META_MAY_TRIM;
	if (len || op == DIO_META_FLUSH)
		dio_meta_start(dio);
	dio_put(dio);
}

/* ZERO: whole blocks by the volume's fast methods, partial ones by RMW. */
static void
dio_start_zero(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;
	uint64_t end = req->pos + req->len;
	uint64_t a = dio_round_up(req->pos, lbs), b = dio_round_down(end, lbs);

	if (a >= b) {
		a = b = req->pos;	/* inside one block: all of it is RMW */
		if (dio->flags & DIO_REQ_FAST_ZERO)
			goto not_fast;
	}
	if ((req->pos != a || end != b) && (dio->flags & DIO_REQ_FAST_ZERO))
		goto not_fast;

	dio_stage(dio, dio_meta_done);
	dio->meta_op = DIO_META_ZERO;
	dio->meta_pos = a;
	dio->meta_len = b - a;
	dio->meta_flags = (dio->flags & DIO_REQ_NO_HOLE) ? 0 : DIO_META_MAY_TRIM;
	if (req->pos < a)
		dio_spawn_zero_write(dio, req->pos, (a < end ? a : end) - req->pos);
	if (b > a && end > b)
		dio_spawn_zero_write(dio, b, end - b);
	else if (a == b && end > a && req->pos == a)
		dio_spawn_zero_write(dio, a, end - a);
	if (b > a)
		dio_meta_start(dio);
	dio_put(dio);
	return;

not_fast:
	dio_stage(dio, dio_finish);
	dio_set_error(dio, -EOPNOTSUPP);
	dio_put(dio);
}

/* ---- extents (block status) ------------------------------------------- */

static void
dio_do_extents(struct dio *dio)
{
	struct dio_req *req = dio->req;
	struct dio_iter it;
	int ret;

	dio_stage(dio, dio_finish);
	dio_iter_init(&it, req->pos, req->len, DIO_MAP_REPORT);
	while ((ret = dio_iter(&it, dio->vol)) > 0) {
		const struct dio_extent *ext = &it.ext;
		uint32_t type = ext->type == DIO_EXT_MAPPED ? DIO_SEG_DATA :
				ext->type == DIO_EXT_HOLE ? DIO_SEG_HOLE : DIO_SEG_ZERO;
		struct dio_seg *last = req->nsegs ? &req->segs[req->nsegs - 1] : NULL;

		if (last && last->type == type && last->pos + last->len == ext->pos) {
			last->len += ext->length;
		} else if (req->nsegs < req->max_segs) {
			req->segs[req->nsegs++] = (struct dio_seg){
				.pos = ext->pos, .len = ext->length, .type = type };
		} else {
			it.status = 0;	/* full: the answer is a prefix */
			continue;
		}
		it.status = ext->length;
	}
	dio_set_error(dio, ret);
	dio_put(dio);
}

/* ---- completion ------------------------------------------------------- */

static void
dio_finish_deferred(struct dio_work *w)
{
	struct dio *dio = (struct dio *)((char *)w - offsetof(struct dio, work));

	dio_finish(dio);
}

/* Complete the dio: exactly once per dio, by construction of the stages. */
static void
dio_finish(struct dio *dio)
{
	struct dio_ctx *ctx = dio->ctx;
	struct dio_req *req = dio->req;
	struct dio *parent = dio->parent;

	if (!parent && ctx->in_submit) {
		/* Never call done() from inside dio_submit. */
		dio->work.fn = dio_finish_deferred;
		dio_ctx_defer(ctx, &dio->work);
		return;
	}
	if (dio->nexts)
		dio_write_end_extents(dio);
	if (dio->rmw_held)
		dio_rmw_unlock(dio);
	if (dio->bounce) {
		dio_buf_put(dio->bounce);
		dio->bounce = NULL;
	}
	if (parent) {
		dio_set_error(parent, dio->error);
		dio_free(dio);
		dio_put(parent);
		return;
	}
	req->fast = dio->fast;
	req->dio = NULL;
	ctx->inflight--;
	ctx->completed++;
	int err = dio->error;

	dio_free(dio);
	if (req->done)
		req->done(req, err);
}

/* ---- submission ------------------------------------------------------- */

static int
dio_check(struct dio_volume *vol, struct dio_req *req)
{
	uint64_t end = req->pos + req->len;
	bool past = end < req->pos || end > vol->size;

	switch (req->op) {
	case DIO_REQ_READ:
		if (req->flags & ~DIO_REQ_REPORT_HOLES)
			return -EINVAL;
		if ((req->flags & DIO_REQ_REPORT_HOLES) && (!req->segs || !req->max_segs))
			return -EINVAL;
		return past ? -EINVAL : (req->len && !req->buf ? -EINVAL : 0);
	case DIO_REQ_WRITE:
		if (req->flags & ~DIO_REQ_FUA)
			return -EINVAL;
		if (vol->readonly)
			return -EPERM;
		return past ? -ENOSPC : (req->len && !req->buf ? -EINVAL : 0);
	case DIO_REQ_ZERO:
		if (req->flags & ~(DIO_REQ_FUA | DIO_REQ_NO_HOLE | DIO_REQ_FAST_ZERO))
			return -EINVAL;
		/* fallthrough */
	case DIO_REQ_TRIM:
		if (req->op == DIO_REQ_TRIM && (req->flags & ~DIO_REQ_FUA))
			return -EINVAL;
		if (vol->readonly)
			return -EPERM;
		return past ? -EINVAL : 0;
	case DIO_REQ_CACHE:
		return req->flags ? -EINVAL : (past ? -EINVAL : 0);
	case DIO_REQ_EXTENTS:
		if (req->flags || !req->segs || !req->max_segs)
			return -EINVAL;
		return past ? -EINVAL : 0;
	case DIO_REQ_FLUSH:
		return req->flags ? -EINVAL : 0;
	}
	return -EINVAL;
}

int
dio_submit(struct dio_ctx *ctx, struct dio_volume *vol, struct dio_req *req)
{
	struct dio *dio;
	int ret;

	ret = dio_check(vol, req);
	if (ret < 0)
		return ret;
	dio = dio_alloc(ctx);
	if (!dio)
		return -ENOMEM;
	dio->vol = vol;
	dio->req = req;
	dio->op = req->op;
	dio->flags = req->flags;
	req->dio = dio;
	req->nsegs = 0;
	req->fast = false;
	ctx->inflight++;
	ctx->in_submit++;
	dio->fixed_file = dio_ctx_file(ctx, vol);

	if (req->len == 0 && req->op != DIO_REQ_FLUSH) {
		dio_stage(dio, dio_finish);
		dio_put(dio);
		goto out;
	}
	switch (req->op) {
	case DIO_REQ_READ:
		dio_start_read(dio);
		break;
	case DIO_REQ_WRITE:
		dio_start_write(dio);
		break;
	case DIO_REQ_ZERO:
		dio_start_zero(dio);
		break;
	case DIO_REQ_TRIM: {
		/* Only whole blocks can be given back; the rest stays as it is. */
		uint64_t a = dio_round_up(req->pos, vol->lbs);
		uint64_t b = dio_round_down(req->pos + req->len, vol->lbs);

		dio_start_meta(dio, DIO_META_TRIM, a, b > a ? b - a : 0);
		break;
	}
	case DIO_REQ_FLUSH:
		dio_start_meta(dio, DIO_META_FLUSH, 0, 0);
		break;
	case DIO_REQ_CACHE:
		dio_start_meta(dio, DIO_META_CACHE, req->pos, req->len);
		break;
	case DIO_REQ_EXTENTS:
		dio_do_extents(dio);
		break;
	}
out:
	ctx->in_submit--;
	return 0;
}

struct dio_sync_wait {
	dio_done_fn done;
	void *priv;
	int ret;
	bool finished;
};

static void
dio_sync_done(struct dio_req *req, int ret)
{
	struct dio_sync_wait *w = req->priv;

	w->ret = ret;
	w->finished = true;
}

int
dio_submit_sync(struct dio_ctx *ctx, struct dio_volume *vol, struct dio_req *req)
{
	struct dio_sync_wait w = { .done = req->done, .priv = req->priv };
	int ret;

	req->done = dio_sync_done;
	req->priv = &w;
	ret = dio_submit(ctx, vol, req);
	if (ret == 0) {
		while (!w.finished) {
			ret = dio_ctx_reap(ctx, true);
			if (ret < 0 && !w.finished) {
				/* The engine itself failed: nothing will complete. */
				break;
			}
		}
		ret = w.finished ? w.ret : ret;
	}
	req->done = w.done;
	req->priv = w.priv;
	if (w.finished && req->done)
		req->done(req, ret);
	return ret;
}
