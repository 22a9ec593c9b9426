/* SPDX-License-Identifier: MIT */
/*
 * Requests on volumes that do their own I/O (vol_ops->submit), such as an
 * RBD image that librbd reads and writes over the network: there is no fd
 * for the engine and no device address under an extent, so the request
 * goes to the volume whole. What stays libdio's is what every request
 * gets: the checks in dio_submit, the in-flight count and write
 * generation, done() exactly once and only on the submitting ctx's thread.
 *
 * The volume signals completions on its event fd. While a ctx has requests
 * in flight on the volume, that fd is one of the ctx's sources (ctx.c): it
 * sits in the epoll behind dio_ctx_event_fd, and dio_ctx_reap calls
 * vol_ops->poll on the ctx's own thread, so a completion needs no thread
 * of ours in between. A volume shared by several ctxs has one event fd;
 * whichever of them polls first may collect another's completion, which
 * then moves to its owner as posted work (dio_ctx_post).
 */
#include <errno.h>
#include <stddef.h>

#include "dio-priv.h"

/* On the owner's thread: the volume is done with the request. */
static void
dio_vol_end(struct dio_work *w)
{
	struct dio *dio = (struct dio *)((char *)w - offsetof(struct dio, work));

	dio_ctx_source_put(dio->ctx, dio->vol);
	dio_put(dio);
}

void
dio_vol_io_done(struct dio_ctx *here, struct dio_vol_io *vio, int res)
{
	struct dio *dio = (struct dio *)((char *)vio - offsetof(struct dio, vio));

	dio_set_error(dio, res);
	dio->work.fn = dio_vol_end;
	/* Deferred even on the owner's thread: poll() may be walking its sources. */
	if (here == dio->ctx)
		dio_ctx_defer(dio->ctx, &dio->work);
	else
		dio_ctx_post(dio->ctx, &dio->work);
}

void
dio_start_vol(struct dio *dio)
{
	struct dio_volume *vol = dio->vol;
	int ret;

	dio_stage(dio, dio_finish);
	if (dio->op == DIO_REQ_CACHE && !vol->vol_ops->submit_cache)
		goto out;	/* a hint the volume does not take: done */
	if (dio->op == DIO_REQ_READ && (dio->flags & DIO_REQ_REPORT_HOLES)) {
		/*
		 * All of it is data: asking the volume's map on every read would
		 * cost more than it saves (block status still reports holes).
		 */
		dio->req->segs[0] = (struct dio_seg){ .pos = dio->req->pos, .len = dio->req->len,
						      .type = DIO_SEG_DATA };
		dio->req->nsegs = 1;
	}
	dio->vio = (struct dio_vol_io){ .req = dio->req, .ctx = dio->ctx };
	ret = dio_ctx_source_get(dio->ctx, vol);
	if (ret < 0) {
		dio_set_error(dio, ret);
		goto out;
	}
	dio->ref++;
	ret = vol->vol_ops->submit(vol, &dio->vio);
	if (ret < 0) {
		dio->ref--;
		dio_ctx_source_put(dio->ctx, vol);
		dio_set_error(dio, ret);
	}
out:
	dio_put(dio);
}
