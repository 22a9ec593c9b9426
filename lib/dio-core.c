/* SPDX-License-Identifier: MIT */
/*
 * The life of a struct dio (dio-priv.h has the rules): allocation,
 * stages and references, device I/O pieces with short-I/O resubmission,
 * the extents a write waits to end, the volume's own methods (flush,
 * trim, zero, cache), and completion. Modelled on fs/iomap/direct-io.c.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dio-priv.h"

#define DIO_META_RETRIES 8

struct dio *
dio_alloc(struct dio_ctx *ctx, struct dio_volume *vol)
{
	struct dio *dio = dio_ctx_cache_get(ctx, DIO_CACHE_DIO, sizeof(*dio));

	if (!dio)
		return NULL;
	memset(dio, 0, offsetof(struct dio, inline_exts));
	dio->ctx = ctx;
	dio->vol = vol;
	dio->buf_index = -1;
	dio->exts = dio->inline_exts;
	dio->exts_cap = DIO_INLINE_EXTS;
	return dio;
}

static void
dio_free(struct dio *dio)
{
	if (dio->exts != dio->inline_exts)
		free(dio->exts);
	dio_ctx_cache_put(dio->ctx, DIO_CACHE_DIO, dio);
}

struct dio *
dio_alloc_child(struct dio *parent, uint64_t pos, uint64_t len)
{
	struct dio *child = dio_alloc(parent->ctx, parent->vol);

	if (!child)
		return NULL;
	child->fixed_file = parent->fixed_file;
	child->parent = parent;
	child->req = &child->own_req;
	child->own_req = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = pos, .len = len };
	child->op = DIO_REQ_WRITE;
	child->zeroes = true;
	/* FUA is the parent's business: it syncs once at the end. */
	child->flags = 0;
	parent->ref++;
	return child;
}

void
dio_set_error(struct dio *dio, int err)
{
	if (err < 0 && dio->error == 0)
		dio->error = err;
}

void
dio_put(struct dio *dio)
{
	if (--dio->ref == 0)
		dio->next(dio);
}

void
dio_stage(struct dio *dio, void (*next)(struct dio *))
{
	dio->ref = 1;
	dio->next = next;
}

/* ---- device I/O ------------------------------------------------------- */

static struct dio_piece *
dio_piece_alloc(struct dio *dio)
{
	struct dio_piece *p = dio_ctx_cache_get(dio->ctx, DIO_CACHE_PIECE, sizeof(*p));

	if (!p)
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
	dio_ctx_cache_put(p->dio->ctx, DIO_CACHE_PIECE, p);
}

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

int
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

int
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

/* ---- extents a write went to ------------------------------------------ */

int
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

void
dio_end_extents(struct dio *dio)
{
	const struct dio_map_ops *ops = dio->vol->map_ops;
	unsigned int mflags = DIO_MAP_WRITE | (dio->zeroes ? DIO_MAP_ZERO : 0);
	int ret;

	if ((dio->need_sync || dio->map_fua) && !dio->error)
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

/* ---- memory ----------------------------------------------------------- */

int
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

bool
dio_mem_direct(const struct dio *dio)
{
	const struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;

	return dio_aligned(req->pos, lbs) && dio_aligned(req->len, lbs) &&
	       dio_aligned((uintptr_t)req->buf, lbs);
}

void
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

/* ---- the volume's own methods: flush, trim, zero, cache ---------------- */

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

void
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
		dio->meta_exhausted = true;
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

void
dio_start_sync(struct dio *dio, void (*next)(struct dio *))
{
	dio_stage(dio, next);
	dio->meta_op = DIO_META_FLUSH;
	dio->meta_flags = 0;
	dio->meta_tries = 0;
	dio_meta_start(dio);
	dio_put(dio);
}

/* ---- completion ------------------------------------------------------- */

static void
dio_finish_deferred(struct dio_work *w)
{
	dio_finish((struct dio *)((char *)w - offsetof(struct dio, work)));
}

void
dio_finish(struct dio *dio)
{
	struct dio_ctx *ctx = dio->ctx;
	struct dio_req *req = dio->req;
	struct dio *parent = dio->parent;
	int err;

	if (!parent && ctx->in_submit) {
		/* Never call done() from inside dio_submit. */
		dio->work.fn = dio_finish_deferred;
		dio_ctx_defer(ctx, &dio->work);
		return;
	}
	if (dio->nexts)
		dio_end_extents(dio);
	/* After map_end: the next RMW of these blocks must see what we wrote. */
	if (dio->range_held) {
		dio_range_unlock(dio->vol, &dio->rmw);
		dio->range_held = false;
	}
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
	if (dio->writing)
		dio_volume_write_end(dio->vol);
	req->fast = dio->fast;
	req->dio = NULL;
	ctx->inflight--;
	ctx->completed++;
	err = dio->error;
	dio_free(dio);
	if (req->done)
		req->done(req, err);
}
