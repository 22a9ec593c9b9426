/* SPDX-License-Identifier: MIT */
/*
 * Readahead for sequential READ streams, one stream per connection: a
 * layer under the READ path and over libdio, the shape of an nbdkit filter
 * (it takes a READ as the next layer's pread would, and calls only libdio).
 *
 * A client reading a volume front to back (nbdcopy, qemu-img convert, a
 * backup) keeps only its own queue depth of reads in flight, and every
 * read waits for the one before it to cross the socket. As the kernel's
 * on-demand readahead does for files (mm/readahead.c), we notice the
 * stream (a READ that starts where the previous one ended, of the same
 * size and flags) and read the next chunks before they are asked for, so
 * the device queue stays deep while replies travel.
 *
 * A chunk is a READ of its own through libdio, exactly as the client's
 * READ of that range would be (holes reported as holes). When the client's
 * READ of that range arrives, it takes the chunk's buffer and segments:
 * at once if the chunk is read, or when its read completes.
 *
 * No stale byte may be served. The volume's write generation moves as
 * each WRITE, ZERO or TRIM starts, on any connection of any export of it
 * (dio_volume_write_gen). A chunk is read only while no write is running
 * and remembers the generation it saw; a chunk whose generation has moved
 * on when a READ would take it is thrown away and the READ goes to the
 * volume. So a chunk only holds data written before any write still to
 * start: the same as a READ sent at the time the chunk was read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "readahead.h"

/* Chunks read ahead of a stream, and the bytes they may hold. */
#define RA_MAX_CHUNKS	8
#define RA_WINDOW	(16u << 20)
/* Streams of smaller reads are left alone: their cost is the round trip. */
#define RA_MIN_COUNT	(64u << 10)
/* Segments a chunk can describe (a READ asking for fewer never takes one). */
#define RA_SEGS		16

enum ra_state {
	RA_INFLIGHT = 0,	/* being read */
	RA_READY,		/* read, waiting for the client's READ */
};

struct ra_chunk {
	struct dio_req dreq;		/* dreq.priv = this */
	struct ra_stream *s;
	enum ra_state state;
	bool dropped;			/* out of the queue: free when the read ends */
	int ret;			/* RA_READY: the read's result */
	uint64_t gen;			/* the volume's write generation when read */
	struct dio_req *waiter;		/* a client's READ waiting for this read */
	struct dio_seg segs[RA_SEGS];
};

struct ra_stream {
	struct dio_ctx *ctx;
	struct dio_volume *vol;
	unsigned int max_chunks;
	struct ra_chunk *q[RA_MAX_CHUNKS];	/* chunks, in volume order */
	unsigned int n;			/* chunks in q */
	unsigned int inflight;		/* chunks libdio still reads, queued or dropped */
	bool closed;			/* the connection is gone: free after the last read */
	unsigned int run;		/* sequential READs in a row */
	uint64_t next;			/* where the stream's next READ would start */
	uint32_t count;			/* the stream's READ size */
	uint32_t flags;			/* the stream's READ flags (DIO_REQ_REPORT_HOLES) */
	uint64_t ahead;			/* chunks are read up to here */
	uint64_t issued, hits;		/* chunks read, chunks that answered a READ */
};

struct ra_stream *
ra_stream_new(struct dio_ctx *ctx, struct dio_volume *vol, unsigned int max_chunks)
{
	struct ra_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ctx = ctx;
	s->vol = vol;
	s->max_chunks = max_chunks < RA_MAX_CHUNKS ? max_chunks : RA_MAX_CHUNKS;
	return s;
}

static void
ra_chunk_free(struct ra_chunk *ch)
{
	dio_buf_put(ch->dreq.dbuf);
	free(ch);
}

/* Let go of a chunk out of the queue: now if it is read, when its read ends if not. */
static void
ra_release(struct ra_chunk *ch)
{
	if (ch->state == RA_INFLIGHT)
		ch->dropped = true;
	else
		ra_chunk_free(ch);
}

/* Take chunk i out of the queue (the caller owns it now). */
static struct ra_chunk *
ra_remove(struct ra_stream *s, unsigned int i)
{
	struct ra_chunk *ch = s->q[i];

	s->n--;
	memmove(&s->q[i], &s->q[i + 1], (s->n - i) * sizeof(s->q[0]));
	return ch;
}

void
ra_stream_reset(struct ra_stream *s)
{
	while (s->n)
		ra_release(ra_remove(s, 0));
	s->ahead = 0;
	s->run = 0;
}

void
ra_stream_close(struct ra_stream *s)
{
	if (!s)
		return;
	ra_stream_reset(s);
	s->closed = true;
	if (!s->inflight)
		free(s);
}

void
ra_stream_stats(const struct ra_stream *s, uint64_t *issued, uint64_t *hits)
{
	*issued = s->issued;
	*hits = s->hits;
}

/* Hand a read chunk's data to the client's READ d: its buffer, and its segments copied. */
static void
ra_hand_over(struct ra_chunk *ch, struct dio_req *d)
{
	d->dbuf = ch->dreq.dbuf;
	d->buf = d->dbuf->data;
	ch->dreq.dbuf = NULL;
	d->nsegs = ch->dreq.nsegs;
	memcpy(d->segs, ch->segs, ch->dreq.nsegs * sizeof(ch->segs[0]));
}

/* Give d a pool buffer of its own to read into, if it has none. 0 or -ENOMEM. */
static int
ra_give_buffer(struct ra_stream *s, struct dio_req *d)
{
	if (d->dbuf)
		return 0;
	d->dbuf = dio_buf_get(dio_ctx_pool(s->ctx), d->len);
	if (!d->dbuf)
		return -ENOMEM;
	d->buf = d->dbuf->data;
	return 0;
}

/* libdio finished reading a chunk. */
static void
ra_chunk_done(struct dio_req *dreq, int ret)
{
	struct ra_chunk *ch = dreq->priv;
	struct ra_stream *s = ch->s;
	struct dio_req *d = ch->waiter;

	s->inflight--;
	if (d) {
		/* A client's READ took the chunk while it was being read. */
		if (ret == 0)
			ra_hand_over(ch, d);
		ra_chunk_free(ch);
		if (ret == 0)
			d->done(d, 0);
		else if ((ret = ra_give_buffer(s, d)) < 0 || (ret = dio_submit(s->ctx, s->vol, d)) < 0)
			d->done(d, ret);	/* not inside dio_submit: a reap runs us */
	} else if (ch->dropped) {
		ra_chunk_free(ch);
	} else {
		ch->state = RA_READY;
		ch->ret = ret;
	}
	if (s->closed && !s->inflight)
		free(s);
}

/*
 * Answer d from the chunk at its offset: 1 answered now, 0 accepted (the
 * chunk is still being read; done() follows), -1 no such chunk.
 */
static int
ra_claim(struct ra_stream *s, struct dio_req *d)
{
	struct ra_chunk *ch;
	bool writing;

	if (!s->n || d->max_segs < RA_SEGS)
		return -1;
	/* Chunks the stream has passed will never be asked for. */
	while (s->n && s->q[0]->dreq.pos < d->pos)
		ra_release(ra_remove(s, 0));
	if (!s->n)
		return -1;
	ch = s->q[0];
	if (ch->dreq.pos != d->pos || ch->dreq.len != d->len || ch->dreq.flags != d->flags)
		return -1;
	if (ch->gen != dio_volume_write_gen(s->vol, &writing) ||
	    (ch->state == RA_READY && ch->ret < 0)) {
		/* written since, or failed: the READ goes to the volume itself */
		ra_stream_reset(s);
		return -1;
	}
	ra_remove(s, 0);
	s->hits++;
	if (ch->state == RA_INFLIGHT) {
		ch->waiter = d;		/* ra_chunk_done answers it */
		return 0;
	}
	ra_hand_over(ch, d);
	ra_chunk_free(ch);
	return 1;
}

/* Start reading one chunk of the stream at s->ahead. 0 or -errno. */
static int
ra_issue(struct ra_stream *s, uint64_t gen)
{
	struct ra_chunk *ch = calloc(1, sizeof(*ch));
	int ret;

	if (!ch)
		return -ENOMEM;
	ch->s = s;
	ch->gen = gen;
	ch->dreq = (struct dio_req){
		.op = DIO_REQ_READ,
		.flags = s->flags,
		.pos = s->ahead,
		.len = s->count,
		.done = ra_chunk_done,
		.priv = ch,
	};
	ch->dreq.dbuf = dio_buf_get(dio_ctx_pool(s->ctx), s->count);
	if (!ch->dreq.dbuf) {
		free(ch);
		return -ENOMEM;
	}
	ch->dreq.buf = ch->dreq.dbuf->data;
	if (s->flags & DIO_REQ_REPORT_HOLES) {
		ch->dreq.segs = ch->segs;
		ch->dreq.max_segs = RA_SEGS;
	}
	ret = dio_submit(s->ctx, s->vol, &ch->dreq);
	if (ret < 0) {
		ra_chunk_free(ch);
		return ret;
	}
	s->q[s->n++] = ch;
	s->inflight++;
	s->issued++;
	s->ahead += s->count;
	return 0;
}

/* A READ of [pos, pos+count) with flags went by: follow the stream, read ahead. */
static void
ra_advance(struct ra_stream *s, uint64_t pos, uint32_t count, uint32_t flags)
{
	unsigned int max;
	bool writing;
	uint64_t gen;

	if (count < RA_MIN_COUNT || count > RA_WINDOW / 2 || !s->max_chunks) {
		ra_stream_reset(s);
		return;
	}
	if (pos == s->next && count == s->count && flags == s->flags) {
		s->run++;
	} else {
		ra_stream_reset(s);	/* a new stream, or none */
		s->run = 1;
	}
	s->next = pos + count;
	s->count = count;
	s->flags = flags;
	if (s->run < 2)
		return;
	if (s->ahead < s->next)
		s->ahead = s->next;
	max = RA_WINDOW / count;
	if (max > s->max_chunks)
		max = s->max_chunks;
	gen = dio_volume_write_gen(s->vol, &writing);
	if (writing)
		return;
	while (s->n < max && s->ahead - s->next < (uint64_t)max * count &&
	       s->ahead + count <= s->vol->size) {
		if (ra_issue(s, gen) < 0)
			return;	/* no buffer or refused: the client's READs will do */
	}
}

int
ra_read(struct ra_stream *s, struct dio_req *d)
{
	uint64_t pos = d->pos;
	uint32_t count = (uint32_t)d->len, flags = d->flags;
	int ret;

	ret = ra_claim(s, d);
	if (ret < 0) {
		ret = ra_give_buffer(s, d);
		if (ret == 0)
			ret = dio_submit(s->ctx, s->vol, d);
		if (ret < 0)
			return ret;
	}
	/* d may be complete (1) or in flight (0): only its range is used from here */
	ra_advance(s, pos, count, flags);
	return ret;
}
