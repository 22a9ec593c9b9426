/* SPDX-License-Identifier: MIT */
/*
 * One client connection: input buffer, output queue, the in-flight budget
 * and the connection's lifetime. The protocol itself is in handshake.c and
 * protocol.c; they parse c->in and queue replies, this file moves bytes.
 *
 * Lifetime: a connection is freed when its socket is closed (dead), no
 * request is owned by libdio or readahead (nreqs == 0) and no callback of
 * it is on the stack (busy == 0). It keeps its reactor's list and counts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "readahead.h"
#include "server.h"

#define CONN_WRITE_IOV	64	/* iovecs per sendmsg */
#define CONN_READ_TURNS	16	/* reads per wakeup, so one client cannot hog a reactor */
#define CONN_DIRECT_MIN	(16 * 1024)	/* read a payload this big straight into its buffer */
/* Replies per write stop at this many bytes while the client may send more (conn_flush) */
#define CONN_WRITE_CHUNK	(32 * 1024)

/* ---- plain socket I/O (TLS provides another conn_io_ops) ---- */

/* read(2) on the socket, as conn_io_ops.read wants it. */
static ssize_t
conn_plain_read(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(c->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

/* sendmsg(2) on the socket, as conn_io_ops.writev wants it. */
static ssize_t
conn_plain_writev(struct conn *c, const struct iovec *iov, int n)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	ssize_t w;

	/* MSG_NOSIGNAL: a vanished client gives EPIPE here, never SIGPIPE. */
	do
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno == ENOTSOCK) {
		do
			w = writev(c->fd, iov, n);
		while (w < 0 && errno == EINTR);
	}
	if (w < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return w;
}

const struct conn_io_ops conn_io_plain = {
	.read = conn_plain_read,
	.writev = conn_plain_writev,
};

static void conn_maybe_free(struct conn *c);
static bool conn_want_read(const struct conn *c);
static bool conn_read_once(struct conn *c);

/* ---- output ---- */

int
conn_out_append(struct conn *c, const void *data, size_t len)
{
	struct conn_obuf *o = &c->out;

	if (!len)
		return 0;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 1024;
		uint8_t *p;

		while (cap < o->len + len)
			cap *= 2;
		p = realloc(o->data, cap);
		if (!p)
			return -ENOMEM;
		o->data = p;
		o->cap = cap;
	}
	memcpy(o->data + o->len, data, len);
	o->len += len;
	return 0;
}

/* Whether anything is still to be written. */
static bool
conn_output_pending(const struct conn *c)
{
	return c->out.off < c->out.len || c->sendq;
}

/* Advance the output past left written bytes; returns requests recycled. */
static int
conn_consume(struct conn *c, size_t left)
{
	if (c->out.off < c->out.len) {
		size_t k = c->out.len - c->out.off;

		if (k > left)
			k = left;
		c->out.off += k;
		left -= k;
		if (c->out.off == c->out.len)
			c->out.off = c->out.len = 0;
	}
	return req_consume(c, left);
}

/*
 * Write what is queued, many replies per sendmsg. Returns the number of
 * requests whose reply went out (their budget is free again), or -1.
 *
 * While the client may send more, a write stops at CONN_WRITE_CHUNK bytes
 * of replies, and the socket is read before the next: a client at depth N
 * sends new requests for the first replies it gets, and those reach the
 * device while the rest of the batch is still being written. With one
 * write per batch, one connection's requests went round as one group: a
 * reap pass ran ~32 completions at QD32, one sendmsg carried all their
 * replies, and the device sat idle meanwhile (bench/README.md, "One
 * connection's requests travel together").
 */
static int
conn_flush(struct conn *c)
{
	int freed = 0, reads = 0;

	while (!c->dead && conn_output_pending(c)) {
		struct iovec iov[CONN_WRITE_IOV];
		size_t total = 0;
		ssize_t w;
		int n = 0, done;

		if (c->out.off < c->out.len) {
			iov[n].iov_base = c->out.data + c->out.off;
			iov[n].iov_len = c->out.len - c->out.off;
			total += iov[n++].iov_len;
		}
		n += req_gather(c, iov + n, CONN_WRITE_IOV - n, &total,
				conn_want_read(c) ? CONN_WRITE_CHUNK : SIZE_MAX);
		if (!n) {
			freed += conn_consume(c, 0);
			break;
		}
		w = c->io->writev(c, iov, n);
		if (w == -EAGAIN) {
			c->want_write = true;
			return freed;
		}
		if (w < 0) {
			log_debug("%s: write: %s", c->peer, strerror((int)-w));
			return -1;
		}
		done = conn_consume(c, (size_t)w);
		if (done > 0) {
			stats_add(&c->r->reply_writes, 1);
			stats_add(&c->r->replies, (uint64_t)done);
		}
		freed += done;
		if ((size_t)w < total) {
			c->want_write = true;
			return freed;
		}
		/*
		 * Before the next chunk, what the client sent for the replies it
		 * has; at most CONN_READ_TURNS reads, as a wakeup's, since answers
		 * made at once (block cache hits) could keep this loop going.
		 */
		if (conn_output_pending(c) && conn_want_read(c) && reads++ < CONN_READ_TURNS)
			conn_read_once(c);	/* a protocol error ends the loop: c->dead */
	}
	c->want_write = false;
	return freed;
}

/* ---- input ---- */

/* Whether c holds as much in-flight work as it may: then it is not read. */
static bool
conn_over_budget(const struct conn *c)
{
	const struct server_cfg *cfg = c->r->srv->cfg;

	if (c->out.len - c->out.off > CONN_OUT_HIGH)
		return true;
	return c->nreqs >= cfg->max_inflight || c->inflight_bytes >= cfg->max_inflight_bytes;
}

/* Payload of a request already accepted: read it whatever the budget. */
static bool
conn_in_payload(const struct conn *c)
{
	return c->state == CONN_TX_PAYLOAD || c->state == CONN_TX_DISCARD ||
	       c->state == CONN_HS_DISCARD;
}

/* Whether the socket's read event should be armed. */
static bool
conn_want_read(const struct conn *c)
{
	if (c->dead || c->eof_in || c->stop_parse)
		return false;
	if (conn_in_payload(c))
		return true;
	/* Stopping: answer what is buffered (ESHUTDOWN), read no new requests. */
	return !c->closing && !conn_over_budget(c);
}

/* Parse what is buffered. 0, or -1 to drop the client. */
static int
conn_process(struct conn *c)
{
	int ret;

	for (;;) {
		/*
		 * Stopping: requests not started yet are left unanswered, and
		 * the connection closes once those in flight are: a client that
		 * reconnects (QEMU's reconnect-delay) sends them again, where an
		 * ESHUTDOWN reply would have been a final error.
		 */
		if (c->dead || c->stop_parse || (c->closing && c->state >= CONN_TX_HDR))
			return 0;
		if (!conn_in_payload(c) && conn_over_budget(c))
			return 0;
		if (c->state < CONN_TX_HDR)
			ret = hs_process(c);
		else
			ret = proto_process(c);
		if (ret <= 0)
			return ret;
	}
}

/* Keep room at the end of c->in for the next read. */
static void
conn_compact(struct conn *c)
{
	size_t avail = conn_in_avail(c);

	if (!avail) {
		c->in_start = c->in_end = 0;
	} else if (c->in_start && CONN_INBUF - c->in_end < CONN_INBUF / 2) {
		memmove(c->in, c->in + c->in_start, avail);
		c->in_start = 0;
		c->in_end = avail;
	}
}

/*
 * One read from the socket into c->in (or a WRITE buffer), and parse what
 * came. True when it filled the room offered: there may be more to read.
 */
static bool
conn_read_once(struct conn *c)
{
	bool direct = false;
	size_t room;
	void *dst;
	ssize_t n;

	/*
	 * Big WRITE payloads go straight into their pinned buffer; small ones
	 * come through c->in with the headers around them, which saves a
	 * read(2) per request at high queue depth.
	 */
	if (c->state == CONN_TX_PAYLOAD && !conn_in_avail(c) &&
	    c->cur->count - c->payload_got >= CONN_DIRECT_MIN) {
		dst = proto_payload_dest(c, &room);
		direct = true;
	} else {
		conn_compact(c);
		dst = c->in + c->in_end;
		room = CONN_INBUF - c->in_end;
		if (!room)
			return false;
	}
	n = c->io->read(c, dst, room);
	if (n == -EAGAIN)
		return false;
	if (n <= 0) {
		if (n < 0)
			log_debug("%s: read: %s", c->peer, strerror((int)-n));
		c->eof_in = true;
		return false;
	}
	if (direct)
		proto_payload_read(c, (size_t)n);
	else
		c->in_end += (size_t)n;
	if (conn_process(c) < 0) {
		stats_conn_dropped(c->r->srv, STATS_DROP_PROTOCOL_ERROR);
		conn_abort(c, "protocol error");
		return false;
	}
	return (size_t)n == room;
}

/* The socket is readable: read and parse, a few times at most. */
static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	reactor_work(c->r);
	c->busy++;
	for (int turn = 0; turn < CONN_READ_TURNS && conn_want_read(c); turn++)
		if (!conn_read_once(c))
			break;
	c->busy--;
	conn_run(c);
}

/* The socket takes output again. */
static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	reactor_work(c->r);
	conn_run(c);
}

/* Requests finished outside c's callbacks (req_queue): send their replies. */
static void
conn_on_wake(evutil_socket_t fd, short what, void *arg)
{
	conn_run(arg);
}

/* Whether part of a request (header or WRITE payload) is in and the rest is not. */
static bool
conn_mid_request(const struct conn *c)
{
	return c->state >= CONN_TX_HDR && (conn_in_payload(c) || conn_in_avail(c) > 0);
}

/* The handshake deadline, or the deadline of a request being received. */
static void
conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->state < CONN_TX_HDR) {
		stats_conn_dropped(c->r->srv, STATS_DROP_HANDSHAKE_DEADLINE);
		conn_abort(c, "handshake deadline passed");
		conn_maybe_free(c);
	} else if (c->req_timer_on && conn_mid_request(c)) {
		c->req_timer_on = false;
		stats_conn_dropped(c->r->srv, STATS_DROP_REQUEST_DEADLINE);
		log_warn("%s: request not received in full within %u s, dropping the client",
			 c->peer, c->r->srv->cfg->request_timeout);
		conn_abort(c, NULL);
		conn_maybe_free(c);
	}
}

/*
 * Transmission: a request must arrive whole within request_timeout of
 * when its first bytes did. Waiting between requests has no limit (NBD
 * clients idle for hours), nor does time we spend not reading the socket
 * (the client's budget is full); but a client that starts a WRITE and
 * trickles or stalls its payload would hold a buffer of up to 32 MiB.
 */
static void
conn_update_req_timer(struct conn *c)
{
	unsigned int secs = c->r->srv->cfg->request_timeout;
	struct timeval tv = { .tv_sec = secs };
	uint64_t seq;

	if (c->state < CONN_TX_HDR)
		return;		/* the timer is the handshake's */
	if (!secs || c->dead || !conn_mid_request(c) || !conn_want_read(c)) {
		if (c->req_timer_on) {
			event_del(c->timer);
			c->req_timer_on = false;
		}
		return;
	}
	/* The request being received: the one parsed last, or the next one. */
	seq = conn_in_payload(c) ? c->reqs_parsed : c->reqs_parsed + 1;
	if (!c->req_timer_on || c->req_timer_seq != seq) {
		evtimer_add(c->timer, &tv);
		c->req_timer_on = true;
		c->req_timer_seq = seq;
	}
}

/* Arm or disarm the read and write events to match the state. */
static void
conn_update_events(struct conn *c)
{
	bool r = conn_want_read(c), w = !c->dead && c->want_write;

	if (r != c->rev_on) {
		if (r)
			event_add(c->rev, NULL);
		else
			event_del(c->rev);
		c->rev_on = r;
	}
	conn_update_req_timer(c);
	/* Input buffered inside the I/O layer never wakes the socket's event. */
	if (r && c->io->pending && c->io->pending(c))
		event_active(c->rev, EV_READ, 0);
	if (w != c->wev_on) {
		if (w)
			event_add(c->wev, NULL);
		else
			event_del(c->wev);
		c->wev_on = w;
	}
}

void
conn_run(struct conn *c)
{
	int freed;

	if (c->dead) {
		/* Requests queued just before a protocol error must still reach the device. */
		dio_ctx_kick(c->r->ctx);
		conn_maybe_free(c);
		return;
	}
	c->busy++;
	for (int i = 0; i < 8; i++) {
		if (conn_process(c) < 0) {
			stats_conn_dropped(c->r->srv, STATS_DROP_PROTOCOL_ERROR);
			conn_abort(c, "protocol error");
			goto out;
		}
		freed = conn_flush(c);
		if (freed < 0) {
			stats_conn_dropped(c->r->srv, STATS_DROP_WRITE_ERROR);
			conn_abort(c, NULL);
			goto out;
		}
		if (c->dead)
			goto out;	/* a protocol error in what conn_flush read */
		if (!freed)
			break;
	}
	/* Nothing more will come in: chunks read ahead would wait for nobody. */
	if (c->ra && (c->eof_in || c->stop_parse || c->closing))
		ra_stream_reset(c->ra);
	/* Done: nothing more will come in, everything accepted was answered. */
	if ((c->eof_in || c->stop_parse || c->closing) &&
	    c->nreqs == (c->cur ? 1u : 0u) && !conn_output_pending(c))
		conn_abort(c, NULL);
	else
		conn_update_events(c);
out:
	/* One kick per batch of input; requests queued before an error must go too. */
	dio_ctx_kick(c->r->ctx);
	c->busy--;
	conn_maybe_free(c);
}

void
conn_enter_transmission(struct conn *c, struct export *exp)
{
	const struct server_cfg *cfg = c->r->srv->cfg;

	pthread_mutex_lock(&c->r->srv->conns_lock);	/* listed by the control socket */
	c->exp = exp;
	pthread_mutex_unlock(&c->r->srv->conns_lock);
	c->eflags = proto_eflags(c, exp);
	/* On a volume with a cache, each export says how it uses it (cache.h hints). */
	if (dio_volume_is_cache(exp->vol))
		c->cache_flags = exp->cache == EXPORT_CACHE_WRITEBACK ? 0 :
				 exp->cache == EXPORT_CACHE_READ ? DIO_REQ_WRITETHROUGH :
				 DIO_REQ_WRITETHROUGH | DIO_REQ_NOCACHE;
	c->state = CONN_TX_HDR;
	event_del(c->timer);
	/*
	 * Chunks read ahead take at most half the request budget's count, so
	 * that a small budget still leaves room for the client's own READs.
	 * An export that reads through the block cache has the cache's
	 * readahead instead (lib/cache-ra.c): one place decides what to fetch.
	 */
	if (cfg->readahead && cfg->max_inflight >= 2 &&
	    !(dio_volume_is_cache(exp->vol) && exp->cache != EXPORT_CACHE_NONE)) {
		c->ra = ra_stream_new(c->r->ctx, exp->vol, cfg->max_inflight / 2);
		if (!c->ra)
			log_warn("%s: out of memory for readahead: reading without", c->peer);
	}
	log_info("%s: serving export '%s'%s", c->peer, exp->name,
		 c->sr ? " (structured replies)" : "");
}

void
conn_shutdown(struct conn *c)
{
	if (c->dead || c->closing)
		return;
	c->closing = true;
	if (c->state < CONN_TX_HDR) {
		stats_conn_dropped(c->r->srv, STATS_DROP_SERVER_STOPPING);
		conn_abort(c, "server stopping");
		conn_maybe_free(c);
		return;
	}
	/* In-flight requests finish and are answered; nothing more is parsed (conn_process). */
	conn_run(c);
}

void
conn_abort(struct conn *c, const char *why)
{
	struct conn_req *req;

	if (c->dead)
		return;
	if (why)
		log_info("%s: closing: %s", c->peer, why);
	else
		log_debug("%s: closed", c->peer);
	c->dead = true;
	event_del(c->rev);
	event_del(c->wev);
	event_del(c->timer);
	c->rev_on = c->wev_on = false;
	if (c->io->close)
		c->io->close(c);
	close(c->fd);
	c->fd = -1;
	if (c->cur) {
		req = c->cur;
		c->cur = NULL;
		req_put(c, req);
	}
	if (c->ra)
		ra_stream_reset(c->ra);
	req_drop_queued(c);
}

/* Free c if nothing can refer to it any more (see the top of this file). */
static void
conn_maybe_free(struct conn *c)
{
	struct reactor *r = c->r;
	uint64_t issued = 0, hits = 0;

	if (!c->dead || c->nreqs || c->busy)
		return;
	if (c->ra) {
		ra_stream_stats(c->ra, &issued, &hits);
		if (issued)
			log_info("%s: readahead: %llu of %llu chunks answered a READ", c->peer,
				 (unsigned long long)hits, (unsigned long long)issued);
		ra_stream_close(c->ra);
	}
	req_free_pool(c);
	if (c->exp)
		export_put(c->exp);
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->timer);
	event_free(c->wake);
	free(c->in);
	free(c->out.data);
	pthread_mutex_lock(&r->srv->conns_lock);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		r->srv->conns = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	pthread_mutex_unlock(&r->srv->conns_lock);
	/* Off the reactor's list: a stopping reactor's loop ends with its last one. */
	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->nconns--;
	atomic_fetch_sub(&r->srv->nconns, 1);
	free(c);
}

/* "addr:port" or "unix" for log lines. */
static void
conn_name_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	snprintf(c->peer, sizeof(c->peer), "fd %d", c->fd);
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(s4->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(s6->sin6_port));
	} else if (ss.ss_family == AF_UNIX) {
		static atomic_uint serial;

		snprintf(c->peer, sizeof(c->peer), "unix#%u", atomic_fetch_add(&serial, 1) + 1);
	}
}

int
conn_create(struct reactor *r, int fd)
{
	struct timeval tv = { .tv_sec = r->srv->cfg->handshake_timeout };
	struct conn *c;
	int one = 1, fl;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->in = malloc(CONN_INBUF);
	if (!c->in)
		goto err_free;
	c->r = r;
	c->fd = fd;
	c->io = &conn_io_plain;
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/* Replies are written whole by writev: Nagle would only add latency. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_name_peer(c);
	c->rev = event_new(r->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wev = event_new(r->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->timer = evtimer_new(r->base, conn_on_timer, c);
	c->wake = event_new(r->base, -1, 0, conn_on_wake, c);
	if (!c->rev || !c->wev || !c->timer || !c->wake)
		goto err_events;
	if (hs_start(c) < 0)
		goto err_events;
	evtimer_add(c->timer, &tv);

	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->nconns++;
	pthread_mutex_lock(&r->srv->conns_lock);
	c->id = ++r->srv->next_conn_id;
	c->started = (int64_t)time(NULL);
	c->all_next = r->srv->conns;
	if (c->all_next)
		c->all_next->all_prev = c;
	r->srv->conns = c;
	pthread_mutex_unlock(&r->srv->conns_lock);
	log_debug("%s: connected (reactor %u)", c->peer, r->id);
	conn_run(c);
	return 0;

err_events:
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->timer)
		event_free(c->timer);
	if (c->wake)
		event_free(c->wake);
	free(c->out.data);
	free(c->in);
err_free:
	free(c);
	return -ENOMEM;
}
