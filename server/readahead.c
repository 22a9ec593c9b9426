/* SPDX-License-Identifier: MIT */
/*
 * Readahead for sequential READ streams, one per connection.
 *
 * A client reading a volume front to back (nbdcopy, qemu-img convert, a
 * backup) keeps only its own queue depth of reads in flight, and every
 * read waits for the one before it to cross the socket. As the kernel's
 * on-demand readahead does for files (mm/readahead.c), we notice the
 * stream (a READ that starts where the previous one ended, of the same
 * size) and read the next chunks before they are asked for, so the device
 * queue stays deep while replies travel.
 *
 * A chunk is a conn_req of its own, read through libdio exactly as a READ
 * of that range would be (holes reported as holes). When the client's READ
 * of that range arrives, the chunk becomes its request: it takes the
 * client's cookie and is answered at once, or when its read completes.
 *
 * No stale byte may be served. Every command that changes an export bumps
 * its write generation when it starts and counts itself a writer until it
 * ends. A chunk is read only while no writer is in flight and remembers
 * the generation it saw; a chunk whose generation has moved on by the time
 * a READ claims it is thrown away and the READ goes to the device. So a
 * chunk can only hold data written before any write still to start, on
 * any connection: the same as a READ sent at the time the chunk was read.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "server.h"

/* Chunks read ahead of a stream, and the bytes they may hold. */
#define RA_MAX_CHUNKS	CONN_RA_CHUNKS
#define RA_WINDOW	(16u << 20)
/* Streams of smaller reads are left alone: their cost is the round trip. */
#define RA_MIN_COUNT	(64u << 10)

int
ra_export_init(struct export *e)
{
	e->writes = calloc(1, sizeof(*e->writes));
	return e->writes ? 0 : -1;
}

void
ra_write_begin(const struct export *e)
{
	if (!e->writes)
		return;
	/* writers first: a reader that saw the old gen then sees the writer */
	atomic_fetch_add(&e->writes->writers, 1);
	atomic_fetch_add(&e->writes->gen, 1);
}

void
ra_write_end(const struct export *e)
{
	if (e->writes)
		atomic_fetch_sub(&e->writes->writers, 1);
}

/*
 * Let go of one chunk: now if it is read, when its read completes if not.
 * Called from c's own callbacks or conn_abort, which see to c's closing.
 */
static void
ra_release(struct conn *c, struct conn_req *ch)
{
	if (ch->ra == RA_INFLIGHT) {
		ch->ra = RA_DROPPED;
		return;
	}
	ch->ra = RA_NONE;
	conn_req_put(c, ch);
}

void
ra_drop(struct conn *c)
{
	for (unsigned int i = 0; i < c->ra_n; i++)
		ra_release(c, c->ra_q[i]);
	c->ra_n = 0;
	c->ra_ahead = 0;
	c->ra_run = 0;
}

/* Take chunk i out of the queue (the caller owns it now). */
static struct conn_req *
ra_remove(struct conn *c, unsigned int i)
{
	struct conn_req *ch = c->ra_q[i];

	c->ra_n--;
	for (; i < c->ra_n; i++)
		c->ra_q[i] = c->ra_q[i + 1];
	return ch;
}

/* The oldest chunk, out of the queue. */
static struct conn_req *
ra_pop(struct conn *c)
{
	return ra_remove(c, 0);
}

bool
ra_claim(struct conn *c, struct conn_req *req)
{
	struct conn_req *ch;

	if (!c->ra_n || (req->flags & NBDP_CMD_FLAG_DF))
		return false;
	/* Chunks the stream has passed will never be asked for. */
	while (c->ra_n && c->ra_q[0]->offset < req->offset)
		ra_release(c, ra_pop(c));
	if (!c->ra_n)
		return false;
	ch = c->ra_q[0];
	if (ch->offset != req->offset || ch->count != req->count)
		return false;
	if (ch->ra_gen != atomic_load(&c->exp->writes->gen) ||
	    (ch->ra == RA_READY && ch->ra_ret < 0)) {
		/* written since, or failed: the READ goes to the device itself */
		ra_drop(c);
		return false;
	}
	ra_pop(c);
	ch->cookie = req->cookie;
	ch->flags = req->flags;
	ch->acct = ch->count;
	c->inflight_bytes += ch->count;
	c->ra_hits++;
	conn_req_put(c, req);
	if (ch->ra == RA_READY) {
		ch->ra = RA_NONE;
		proto_read_reply(c, ch);
	} else {
		ch->ra = RA_NONE;	/* proto_done answers it */
	}
	return true;
}

void
ra_advance(struct conn *c, uint64_t offset, uint32_t count, uint16_t flags)
{
	const struct export *e = c->exp;
	unsigned int max;
	uint64_t gen;

	if (!e->writes || (flags & NBDP_CMD_FLAG_DF) || count < RA_MIN_COUNT ||
	    count > RA_WINDOW / 2) {
		ra_drop(c);
		return;
	}
	if (offset == c->ra_next && count == c->ra_count) {
		c->ra_run++;
	} else {
		ra_drop(c);	/* a new stream, or none */
		c->ra_run = 1;
	}
	c->ra_next = offset + count;
	c->ra_count = count;
	if (c->ra_run < 2)
		return;
	if (c->ra_ahead < c->ra_next)
		c->ra_ahead = c->ra_next;
	max = RA_WINDOW / count;
	if (max > RA_MAX_CHUNKS)
		max = RA_MAX_CHUNKS;
	/* gen before writers: see ra_write_begin */
	gen = atomic_load(&e->writes->gen);
	if (atomic_load(&e->writes->writers))
		return;
	/*
	 * Chunks count in the connection's request budget; they take at most
	 * half of it, so the client's READ that would claim one can always be
	 * read (at max-inflight 8, chunks of a full budget would wait forever).
	 */
	while (c->ra_n < max && c->ra_ahead - c->ra_next < (uint64_t)max * count &&
	       c->ra_ahead + count <= e->vol->size &&
	       c->nreqs < c->r->srv->cfg->max_inflight / 2) {
		struct conn_req *ch = conn_req_get(c);

		if (!ch)
			return;
		ch->cmd = NBDP_CMD_READ;
		ch->flags = 0;
		ch->offset = c->ra_ahead;
		ch->count = count;
		ch->sr = c->sr;
		ch->ra = RA_INFLIGHT;
		ch->ra_gen = gen;
		c->ra_q[c->ra_n++] = ch;
		if (proto_read_submit(c, ch) < 0) {
			/* no buffer or refused: the client's READs will do */
			c->ra_n--;
			ch->ra = RA_NONE;
			conn_req_put(c, ch);
			return;
		}
		c->ra_ahead += count;
		c->ra_issued++;
	}
}

void
ra_chunk_done(struct conn *c, struct conn_req *ch, int ret)
{
	/* Nobody will ask for it: the connection is going, or the chunk was dropped. */
	if (ch->ra == RA_DROPPED || c->dead || c->eof_in || c->stop_parse || c->r->stopping) {
		/* a dropped chunk has left the queue already */
		for (unsigned int i = 0; ch->ra != RA_DROPPED && i < c->ra_n; i++) {
			if (c->ra_q[i] == ch) {
				ra_remove(c, i);
				break;
			}
		}
		ch->ra = RA_NONE;
		conn_req_drop(c, ch);
		return;
	}
	ch->ra = RA_READY;
	ch->ra_ret = ret;
}
