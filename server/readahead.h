/* SPDX-License-Identifier: MIT */
/*
 * Readahead: a layer under the READ path, over libdio. protocol.c hands it
 * a connection's READs; it answers them from chunks read ahead of a
 * sequential stream, or reads them from the volume. It calls libdio only.
 */
#ifndef DIONBD_READAHEAD_H
#define DIONBD_READAHEAD_H

#include <stdint.h>

#include "dio/dio.h"

struct ra_stream;

/* A stream of READs of vol on ctx's thread, keeping at most max_chunks chunks. NULL on ENOMEM. */
struct ra_stream *ra_stream_new(struct dio_ctx *ctx, struct dio_volume *vol,
				unsigned int max_chunks);
/* Forget the stream and let go of every chunk (nobody will ask for them). */
void ra_stream_reset(struct ra_stream *s);
/* The connection is done with s (NULL is fine): it frees itself once its reads have ended. */
void ra_stream_close(struct ra_stream *s);
/* Chunks read so far, and how many of them answered a READ. */
void ra_stream_stats(const struct ra_stream *s, uint64_t *issued, uint64_t *hits);

/*
 * READ d through the stream, as dio_submit would read it, except that d
 * comes without memory (d->dbuf and d->buf NULL): the data arrives in a
 * pool buffer the layer gives it, the chunk's own when a chunk answers
 * (no copy). Returns
 *   1  answered now from a chunk; done() does not run,
 *   0  accepted: done() runs once, later, from the ctx's reap,
 *  -errno refused, as dio_submit refuses (-ENOMEM: no buffer).
 * In done(), or on return of 1, d->dbuf holds the data and d->buf points
 * into it; the caller owns that buffer from then on (it may be set even
 * when refused: the caller puts it).
 */
int ra_read(struct ra_stream *s, struct dio_req *d);

#endif /* DIONBD_READAHEAD_H */
