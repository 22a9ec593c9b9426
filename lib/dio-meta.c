/* SPDX-License-Identifier: MIT */
/*
 * TRIM, WRITE ZEROES, FLUSH and CACHE: the volume's own methods
 * (prep_meta/end_meta) over whole blocks. Zeroing falls back to writing
 * zeros when the volume has no fast way (unless the client asked for a
 * fast zero only), and the partial blocks at either end of a ZERO are
 * written as zeros through the write path. With FUA, one sync at the end
 * makes all of it durable.
 */
#include <errno.h>

#include "dio-priv.h"

/* Write zeros over [pos, pos+len) as a child of dio (the write path does RMW). */
static void
dio_spawn_zero_write(struct dio *dio, uint64_t pos, uint64_t len)
{
	struct dio *child = dio_alloc_child(dio, pos, len);

	if (!child) {
		dio_set_error(dio, -ENOMEM);
		return;
	}
	dio_start_write(child);
}

/* End of trim/zero/flush/cache: fall back to writing zeros, sync for FUA, finish. */
static void
dio_meta_done(struct dio *dio)
{
	if (dio->meta_exhausted && dio->meta_op == DIO_META_ZERO && !dio->error) {
		/* TRIM and CACHE are hints, doing nothing is correct; ZERO is not. */
		dio->meta_exhausted = false;
		if (dio->flags & DIO_REQ_FAST_ZERO) {
			dio_set_error(dio, -EOPNOTSUPP);
		} else {
			dio->fast = false;
			dio_stage(dio, dio_meta_done);
			dio_spawn_zero_write(dio, dio->meta_pos, dio->meta_len);
			dio_put(dio);
			return;
		}
	}
	if (dio->error || !(dio->flags & DIO_REQ_FUA) || dio->meta_op == DIO_META_FLUSH) {
		dio_finish(dio);
		return;
	}
	dio_start_sync(dio, dio_finish);
}

void
dio_start_meta(struct dio *dio, enum dio_meta_op op, uint64_t pos, uint64_t len)
{
	dio_stage(dio, dio_meta_done);
	dio->meta_op = op;
	dio->meta_pos = pos;
	dio->meta_len = len;
	if (len || op == DIO_META_FLUSH)
		dio_meta_start(dio);
	dio_put(dio);
}

void
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
