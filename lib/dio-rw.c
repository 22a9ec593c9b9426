/* SPDX-License-Identifier: MIT */
/*
 * Reads, and writes of whole blocks: the extent loop of fs/iomap's
 * iomap_dio_iter. HOLE and UNWRITTEN extents read as zeros (or as hole
 * segments for the caller) without device I/O; MAPPED ones become device
 * reads. Writes go to what map_begin allocated, with FUA as write-through
 * on pure overwrites and as a sync before map_end where they allocate.
 * A SHARED extent (copy-on-write) is written by a child dio: one read of
 * the old blocks to keep, merged with the request's bytes in a bounce
 * buffer, one write of the span to the new chunk. A write that map_begin
 * turns away with -EAGAIN (a copy of that chunk in flight) waits with
 * map_wait and goes on from there.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "dio-priv.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

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

int
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

void
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

/* ---- writes of whole blocks ------------------------------------------- */

/*
 * Zero the parts of the allocation blocks around a write into a NEW or
 * UNWRITTEN extent that the write does not cover (iomap_dio_zero), so a
 * later read of them can never return stale bytes.
 */
static int
dio_zero_padding(struct dio *dio, const struct dio_extent *ext, int rw_flags, uint32_t rec)
{
	uint32_t bs = dio->vol->blksize;
	uint64_t head = ext->pos - dio_round_down(ext->pos, bs);
	uint64_t end = ext->pos + ext->length;
	uint64_t tail = dio_round_up(end, bs) - end;
	int ret = 0;

	if (head)
		ret = dio_queue_zeroes(dio, ext->addr - head, head, rw_flags, rec);
	if (tail && ret == 0)
		ret = dio_queue_zeroes(dio, ext->addr + ext->length, tail, rw_flags, rec);
	return ret;
}

/* ---- copy-on-write ----------------------------------------------------- */

/* The child's I/O ended: a failure fails the parent's extent (map_end frees the chunk). */
static void
dio_cow_written(struct dio *child)
{
	struct dio_ext_rec *r = &child->parent->exts[child->cow_rec];

	if (child->error && r->ext.pos < r->fail_at)
		r->fail_at = r->ext.pos;
	dio_finish(child);
}

/* The old blocks are in: zero what is not kept, lay the request over, write the span. */
static void
dio_cow_merge(struct dio *child)
{
	const struct dio_extent *ext = &child->cow;
	uint32_t bs = child->vol->blksize;
	uint64_t head = ext->pos - ext->span_pos;
	uint8_t *span = child->bounce->data;

	if (child->error) {
		dio_cow_written(child);
		return;
	}
	for (uint32_t i = 0; i < ext->span_len / bs; i++) {
		uint64_t a = (uint64_t)i * bs, b = a + bs;

		if (!((ext->copy_mask >> i) & 1) && (a < head || b > head + ext->length))
			memset(span + a, 0, bs);
	}
	if (child->cow_data)
		memcpy(span + head, child->cow_data, ext->length);
	else
		memset(span + head, 0, ext->length);
	dio_stage(child, dio_cow_written);
	dio_set_error(child, dio_queue_rw(child, DIO_IO_WRITE, ext->addr - head, ext->span_len,
					  span, child->bounce->index, child->cow_rw_flags,
					  UINT32_MAX));
	dio_put(child);
}

/*
 * Write the SHARED extent ext (record rec of dio) with data (NULL: zeros):
 * a child dio reads the blocks of copy_mask from the old chunk, from the
 * first to the last in one read, then writes the span (extent.h).
 */
static int
dio_cow_start(struct dio *dio, const struct dio_extent *ext, const uint8_t *data, int rw_flags,
	      uint32_t rec)
{
	uint32_t bs = dio->vol->blksize, m = ext->copy_mask;
	struct dio_buf *b = dio_buf_get(dio->ctx->pool, ext->span_len);
	struct dio *child;

	if (!b)
		return -ENOMEM;
	child = dio_alloc(dio->ctx, dio->vol);
	if (!child) {
		dio_buf_put(b);
		return -ENOMEM;
	}
	child->fixed_file = dio->fixed_file;
	child->parent = dio;
	child->req = &child->own_req;
	child->own_req = (struct dio_req){ .op = DIO_REQ_WRITE, .pos = ext->span_pos,
					   .len = ext->span_len };
	child->op = DIO_REQ_WRITE;
	child->bounce = b;
	child->cow = *ext;
	child->cow_data = data;
	child->cow_rec = rec;
	child->cow_rw_flags = rw_flags;
	dio->ref++;
	dio_stage(child, dio_cow_merge);
	if (m) {
		uint32_t first = (uint32_t)__builtin_ctz(m), end = 32 - (uint32_t)__builtin_clz(m);

		dio_set_error(child, dio_queue_rw(child, DIO_IO_READ,
						  ext->src_addr - (ext->pos - ext->span_pos) +
						  (uint64_t)first * bs,
						  (uint64_t)(end - first) * bs,
						  b->data + (uint64_t)first * bs, b->index, 0,
						  UINT32_MAX));
	}
	dio_put(child);
	return 0;
}

/* ---- writes waiting for a copy-on-write ------------------------------- */

static void
dio_write_resume(struct dio_work *w)
{
	struct dio *dio = (struct dio *)((char *)w - offsetof(struct dio, work));

	dio_set_error(dio, dio_write_range(dio, dio->wait_pos, dio->wait_len, dio->wait_mem,
					   dio->wait_buf_index));
	dio_put(dio);
}

static void
dio_write_wake(struct dio_map_waiter *w)
{
	struct dio *dio = (struct dio *)((char *)w - offsetof(struct dio, waiter));

	dio->work.fn = dio_write_resume;
	dio_ctx_post(dio->ctx, &dio->work);
}

/*
 * map_begin said -EAGAIN at pos: the stage keeps a reference while the
 * rest, [pos, pos+len) from mem, waits; it goes on when woken. 1 when
 * waiting, 0 when the volume says to map again now, or -errno.
 */
static int
dio_write_wait(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index)
{
	int ret;

	if (!dio->vol->map_ops->map_wait)
		return -EAGAIN;
	dio->wait_pos = pos;
	dio->wait_len = len;
	dio->wait_mem = mem;
	dio->wait_buf_index = buf_index;
	dio->waiter.wake = dio_write_wake;
	dio->waiter.flags = DIO_MAP_WRITE | (dio->zeroes ? DIO_MAP_ZERO : 0) |
			    (dio->nexts ? DIO_MAP_HELD : 0);
	dio->ref++;
	ret = dio->vol->map_ops->map_wait(dio->vol, pos, &dio->waiter);
	if (ret <= 0)
		dio->ref--;
	return ret;
}

int
dio_write_range(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index)
{
	unsigned int mflags = DIO_MAP_WRITE | (dio->zeroes ? DIO_MAP_ZERO : 0);
	bool fua = dio->flags & DIO_REQ_FUA;
	struct dio_iter it;
	uint32_t rec;
	int ret;

	/* Extents mapped by an earlier stage keep their map_end until the end. */
	if (dio->nexts)
		mflags |= DIO_MAP_HELD;
	dio_iter_init(&it, pos, len, mflags);
	it.defer_end = true;
	while ((ret = dio_iter(&it, dio->vol)) > 0) {
		const struct dio_extent *ext = &it.ext;
		bool overwrite = ext->type == DIO_EXT_MAPPED &&
				 !(ext->flags & (DIO_EXT_NEW | DIO_EXT_SHARED));
		bool dirty = ext->flags & DIO_EXT_DIRTY;
		int rw_flags = 0;

		ret = dio_ext_record(dio, ext, &rec);
		if (ret < 0) {
			if (dio->vol->map_ops->map_end)
				dio->vol->map_ops->map_end(dio->vol, ext, 0, mflags);
			it.status = ret;
			continue;
		}
		it.flags |= DIO_MAP_HELD;	/* the next extents: this one waits for them */
		if (ext->type == DIO_EXT_HOLE) {
			/* A volume must allocate on a write: nothing to write to. */
			dio->exts[rec].fail_at = ext->pos;
			it.status = -EIO;
			continue;
		}
		if (overwrite && fua && !dirty) {
			rw_flags = RWF_DSYNC;	/* write-through: FUA or write+flush */
		} else if (fua && !dirty && dio->vol->map_commits_fua) {
			/* new space: data and padding through, then map_end commits */
			rw_flags = RWF_DSYNC;
			dio->map_fua = true;
		} else if (fua) {
			dio->need_sync = true;	/* allocation, conversion or mapping to commit */
		}

		ret = 0;
		if (ext->flags & DIO_EXT_SHARED) {
			/* Padding and all: the span is the child's one write. */
			ret = dio_cow_start(dio, ext, dio->zeroes ? NULL : mem + (ext->pos - pos),
					    rw_flags, rec);
		} else {
			if (!overwrite && dio->vol->blksize > dio->vol->lbs)
				ret = dio_zero_padding(dio, ext, rw_flags, rec);
			if (ret == 0 && dio->zeroes)
				ret = dio_queue_zeroes(dio, ext->addr, ext->length, rw_flags, rec);
			else if (ret == 0)
				ret = dio_queue_rw(dio, DIO_IO_WRITE, ext->addr, ext->length,
						   mem + (ext->pos - pos), buf_index, rw_flags,
						   rec);
		}
		if (ret < 0)
			dio->exts[rec].fail_at = ext->pos;	/* not all of it was queued */
		it.status = ret < 0 ? ret : (int64_t)ext->length;
	}
	if (ret == -EAGAIN) {
		/* map_begin of it.pos: that chunk is being copied by another write. */
		ret = dio_write_wait(dio, it.pos, it.len, mem + (it.pos - pos), buf_index);
		if (ret == 0)
			return dio_write_range(dio, it.pos, it.len, mem + (it.pos - pos), buf_index);
		return ret < 0 ? ret : 0;
	}
	return ret;
}

static void
dio_write_synced(struct dio *dio)
{
	dio_end_extents(dio);
	dio_finish(dio);
}

void
dio_write_done(struct dio *dio)
{
	if (dio->error || !dio->need_sync) {
		dio_write_synced(dio);
		return;
	}
	/* FUA on an allocating write: data flush + metadata commit. */
	dio_start_sync(dio, dio_write_synced);
}
