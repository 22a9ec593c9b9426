/* SPDX-License-Identifier: MIT */
/*
 * A connection's requests: the pool they come from and go back to, and the
 * send queue of finished requests whose replies are waiting to be written.
 * A request queued from outside the connection's own callbacks (a libdio
 * completion) wakes the connection through its libevent event.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct conn_req *
req_get(struct conn *c)
{
	struct conn_req *req = c->free_reqs;

	if (req) {
		c->free_reqs = req->next;
		c->nfree--;
	} else {
		req = malloc(sizeof(*req));
		if (!req)
			return NULL;
	}
	memset(&req->dreq, 0, sizeof(req->dreq));
	req->dreq.priv = req;
	req->conn = c;
	req->next = NULL;
	req->err = 0;
	req->acct = 0;
	req->start_ns = 0;
	req->submit_ns = 0;
	req->done_ns = 0;
	req->sr = false;
	req->dbuf = NULL;
	req->iov_idx = 0;
	req->niov = 0;
	/* relaxed stores: the control socket reads it from another thread */
	__atomic_store_n(&c->nreqs, c->nreqs + 1, __ATOMIC_RELAXED);
	return req;
}

void
req_put(struct conn *c, struct conn_req *req)
{
	if (req->dbuf) {
		dio_buf_put(req->dbuf);
		req->dbuf = NULL;
	}
	if (req->start_ns)
		stats_req_abandon(c->exp, req);
	c->inflight_bytes -= req->acct;
	__atomic_store_n(&c->nreqs, c->nreqs - 1, __ATOMIC_RELAXED);
	if (c->nfree < c->r->srv->cfg->max_inflight) {
		req->next = c->free_reqs;
		c->free_reqs = req;
		c->nfree++;
	} else {
		free(req);
	}
}

void
req_queue(struct conn *c, struct conn_req *req)
{
	stats_req_done(c->exp, req);
	if (c->dead) {
		/* nobody to send it to: recycle it, and let c see whether it may go */
		req_put(c, req);
	} else {
		req->next = NULL;
		if (c->sendq_tail)
			c->sendq_tail->next = req;
		else
			c->sendq = req;
		c->sendq_tail = req;
	}
	/* Inside a callback of c, conn_run flushes anyway; completions need a wake-up. */
	if (!c->busy)
		event_active(c->wake, 0, 0);
}

int
req_gather(const struct conn *c, struct iovec *iov, int max, size_t *total, size_t limit)
{
	int n = 0;

	for (const struct conn_req *req = c->sendq; req && n < max && *total < limit;
	     req = req->next) {
		for (unsigned int i = req->iov_idx; i < req->niov && n < max; i++) {
			if (!req->iov[i].iov_len)
				continue;
			iov[n] = req->iov[i];
			*total += iov[n++].iov_len;
		}
	}
	return n;
}

int
req_consume(struct conn *c, size_t left)
{
	struct conn_req *req;
	uint64_t now = 0;	/* when these bytes were written: one clock read */
	int freed = 0;

	while ((req = c->sendq)) {
		while (req->iov_idx < req->niov) {
			struct iovec *v = &req->iov[req->iov_idx];

			if (v->iov_len > left) {
				v->iov_base = (uint8_t *)v->iov_base + left;
				v->iov_len -= left;
				goto out;
			}
			left -= v->iov_len;
			req->iov_idx++;
		}
		c->sendq = req->next;
		if (!c->sendq)
			c->sendq_tail = NULL;
		stats_req_sent(c->exp, req, &now);
		req_put(c, req);
		freed++;
	}
out:
	if (freed && c->r->srv->cfg && c->r->srv->cfg->poll_check)
		pollcheck_count(&c->r->srv->pollcheck, (unsigned int)freed);
	return freed;
}

void
req_drop_queued(struct conn *c)
{
	struct conn_req *req;

	while ((req = c->sendq)) {
		c->sendq = req->next;
		req_put(c, req);
	}
	c->sendq_tail = NULL;
}

void
req_free_pool(struct conn *c)
{
	struct conn_req *req;

	while ((req = c->free_reqs)) {
		c->free_reqs = req->next;
		free(req);
	}
	c->nfree = 0;
}
