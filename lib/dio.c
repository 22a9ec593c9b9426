/* SPDX-License-Identifier: MIT */
/*
 * The dio engine's entry: one client request -> extents -> device I/O ->
 * exactly one done(). dio_submit checks the request and hands it to the
 * part that does its kind of work (dio-priv.h lists them); block status
 * is answered here from the extent iterator alone.
 */
#include <errno.h>
#include <string.h>

#include "dio-priv.h"

/* EXTENTS: describe the map of the range in the caller's segs; no device I/O. */
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
		uint32_t type = ext->type == DIO_EXT_HOLE ? DIO_SEG_HOLE :
				ext->type != DIO_EXT_MAPPED ? DIO_SEG_ZERO :
				(ext->flags & DIO_EXT_UNRESERVED) ? DIO_SEG_UNRESERVED : DIO_SEG_DATA;
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

static int
dio_check(struct dio_volume *vol, struct dio_req *req)
{
	uint64_t end = req->pos + req->len;
	bool past = end < req->pos || end > vol->size;
	/* Cache hints mean something to a cache volume only (cache.h). */
	uint32_t flags = req->flags & ~(uint32_t)DIO_REQ_CACHE_HINTS;

	switch (req->op) {
	case DIO_REQ_READ:
		if (flags & ~DIO_REQ_REPORT_HOLES)
			return -EINVAL;
		if ((flags & DIO_REQ_REPORT_HOLES) && (!req->segs || !req->max_segs))
			return -EINVAL;
		return past ? -EINVAL : (req->len && !req->buf ? -EINVAL : 0);
	case DIO_REQ_WRITE:
		if (flags & ~DIO_REQ_FUA)
			return -EINVAL;
		if (vol->readonly)
			return -EPERM;
		return past ? -ENOSPC : (req->len && !req->buf ? -EINVAL : 0);
	case DIO_REQ_ZERO:
		if (flags & ~(DIO_REQ_FUA | DIO_REQ_NO_HOLE | DIO_REQ_FAST_ZERO))
			return -EINVAL;
		/* fallthrough */
	case DIO_REQ_TRIM:
		if (req->op == DIO_REQ_TRIM && (flags & ~DIO_REQ_FUA))
			return -EINVAL;
		if (vol->readonly)
			return -EPERM;
		return past ? -EINVAL : 0;
	case DIO_REQ_CACHE:
		return flags ? -EINVAL : (past ? -EINVAL : 0);
	case DIO_REQ_EXTENTS:
		if (flags || !req->segs || !req->max_segs)
			return -EINVAL;
		return past ? -EINVAL : 0;
	case DIO_REQ_FLUSH:
		return flags ? -EINVAL : 0;
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
	dio = dio_alloc(ctx, vol);
	if (!dio)
		return -ENOMEM;
	dio->req = req;
	dio->op = req->op;
	dio->flags = req->flags;
	if (!vol->vol_ops->submit)
		dio->fixed_file = dio_ctx_file(ctx, dio_volume_id(vol), vol->fd);
	req->dio = dio;
	req->nsegs = 0;
	req->fast = false;
	ctx->inflight++;
	ctx->in_submit++;
	if (req->op == DIO_REQ_WRITE || req->op == DIO_REQ_ZERO || req->op == DIO_REQ_TRIM) {
		/* readers that cache (readahead) must see this before it starts */
		dio_volume_write_begin(vol);
		dio->writing = true;
	}

	if (req->len == 0 && req->op != DIO_REQ_FLUSH) {
		dio_stage(dio, dio_finish);
		dio_put(dio);
		goto out;
	}
	if (vol->vol_ops->submit && req->op != DIO_REQ_EXTENTS) {
		dio_start_vol(dio);
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
