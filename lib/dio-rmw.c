/* SPDX-License-Identifier: MIT */
/*
 * Writes. Whole blocks go straight to dio-rw.c. A write that starts or
 * ends inside a block (below the device's logical block size) is done as
 * fs/direct-io.c's blkfactor case would have the caller do it: read the
 * partial head and tail blocks into a bounce buffer, merge the new bytes,
 * write whole blocks. Overlapping read-modify-writes of one volume, from
 * any thread or export, are serialised by the volume's range lock, held
 * until map_end has run, so a later one reads what an earlier one wrote.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "dio-priv.h"

/* The read is in: merge the new bytes and write the whole blocks. */
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

/* The range lock was handed over to a waiting RMW. */
static void
dio_rmw_resume(struct dio_work *w)
{
	dio_rmw_read((struct dio *)((char *)w - offsetof(struct dio, work)));
}

/* An unaligned write: bounce, lock the blocks, read, merge, write. */
static void
dio_start_rmw(struct dio *dio)
{
	int ret = dio_bounce(dio);

	if (ret < 0) {
		dio_stage(dio, dio_finish);
		dio_set_error(dio, ret);
		dio_put(dio);
		return;
	}
	dio->work.fn = dio_rmw_resume;
	dio->rmw = (struct dio_range){ .start = dio->pos, .end = dio->pos + dio->len,
				       .ctx = dio->ctx, .resume = &dio->work };
	dio->range_held = true;
	if (dio_range_lock(dio->vol, &dio->rmw))
		dio_rmw_read(dio);
}

void
dio_start_write(struct dio *dio)
{
	struct dio_req *req = dio->req;
	uint32_t lbs = dio->vol->lbs;
	int ret;

	if (!dio_aligned(req->pos, lbs) || !dio_aligned(req->len, lbs)) {
		dio_start_rmw(dio);
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
