/* SPDX-License-Identifier: MIT */
/*
 * nbd-load: an NBD load generator that should not be the limit of what it
 * measures. libnbd's asynchronous API, several connections per thread,
 * a fixed number of requests in flight on each, and a latency histogram
 * of every request.
 *
 *   nbd-load [-c CONNS] [-T THREADS] [-q DEPTH] [-b BYTES] [-t SECS]
 *            [-w PERCENT] [-S] [-f] [-p] [-F WRITES] [-R] URI
 *
 *   -c  connections (default 1), spread over -T threads (default 1)
 *   -q  requests in flight per connection (default 32)
 *   -b  request size (default 4096)
 *   -t  seconds to run (default 5)
 *   -w  percentage of writes (default 0: all reads)
 *   -S  sequential (each connection walks its own slice) instead of random
 *   -f  FUA on writes
 *   -p  one pass: each connection visits every block of the export once,
 *       in its own random order, and the run ends when all have (or at -t)
 *   -F  a FLUSH on each connection after every WRITES writes it sent
 *       (in the queue like any request; not counted in iops or latency)
 *   -R  raw transmission: libnbd connects and negotiates (simple replies
 *       only), then the requests go on the socket directly, every request
 *       a batch of completions frees in one write() and the replies read in
 *       large recv()s. libnbd's per-request cost (a send and two or more
 *       receives each) is most of this client's CPU; -R shows what a server
 *       does with a client that costs next to nothing, as the kernel's
 *       nbd client nearly does.
 *
 * Prints one line of key=value pairs: iops, mbps, lat_p50_us .. lat_p999_us,
 * cpu_us_per_io (this process's user+system time per request), flushes,
 * errors, ios (requests completed, FLUSHes aside) and secs (the run's
 * length).
 * Exit 0, 1 on a failure (connection, request error), 2 on usage.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS	64
#define MAX_DEPTH	1024
/* Latency buckets: 8 per power of two of nanoseconds (12.5 % wide at most). */
#define HIST_SUB	8
#define HIST_N		(64 * HIST_SUB)

struct opts {
	const char *uri;
	unsigned int conns, threads, depth, write_pct, flush_every;
	uint32_t bs;
	double secs;
	bool seq, fua, pass, raw;
};

/* The NBD wire (doc/proto.md): a request header, a simple reply's. */
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	0x67446698u
#define NBD_REQ_LEN		28
#define NBD_REPLY_LEN		16
enum { RQ_READ = 0, RQ_WRITE = 1, RQ_DISC = 2, RQ_FLUSH = 3 };
#define RAW_IN_MIN		(256u << 10)

struct conn;

struct slot {
	struct conn *c;
	void *buf;
	uint64_t start_ns;
	bool busy;
	bool flush;		/* the request is a FLUSH */
	bool read;		/* -R: a READ, whose reply carries the data */
	bool done;		/* completed: submit the next one after the poll */
	int err;
};

struct conn {
	struct nbd_handle *h;
	struct worker *w;
	struct slot *slots;
	uint64_t next_off;	/* sequential mode: where the next request goes */
	uint64_t lo, hi;	/* sequential mode: this connection's slice */
	uint32_t *perm;		/* -p: the blocks in this connection's order */
	uint64_t nperm, perm_pos;
	unsigned int inflight;
	unsigned int writes;	/* -F: writes since the last FLUSH */
	/* -R: the socket, requests not yet written, replies not yet parsed */
	int fd;
	char *out, *in;
	size_t out_len, out_off, in_len, in_cap, out_cap;
};

struct worker {
	const struct opts *o;
	pthread_t tid;
	struct conn conns[MAX_CONNS];
	unsigned int nconns;
	uint64_t size;
	uint64_t rng;
	uint64_t ios, bytes, errors, flushes;
	uint64_t hist[HIST_N];
	uint64_t stop_ns;
	int ret;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap, and each thread has its own. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static unsigned int
hist_bucket(uint64_t ns)
{
	unsigned int msb, sub;

	if (ns < HIST_SUB)
		return (unsigned int)ns;
	msb = 63u - (unsigned int)__builtin_clzll(ns);
	sub = (unsigned int)(ns >> (msb - 3)) & (HIST_SUB - 1);
	return msb * HIST_SUB + sub;
}

/* The lower edge of a bucket, in ns. */
static uint64_t
hist_value(unsigned int b)
{
	unsigned int msb = b / HIST_SUB, sub = b % HIST_SUB;

	if (msb < 3)
		return b;
	return ((uint64_t)(HIST_SUB + sub)) << (msb - 3);
}

static int
on_done(void *user_data, int *error)
{
	struct slot *s = user_data;

	/* No libnbd call on the handle from inside its callback: just note it. */
	s->err = *error;
	s->done = true;
	return 1;	/* retire the command */
}

/*
 * Start the next request on slot s: the FLUSH that -F owes, else a READ
 * or WRITE. 0, 1 when the connection has nothing left to send (-p: every
 * block visited), or -1 (libnbd refused it).
 */
static int
pick(struct worker *w, struct slot *s, int *type, uint64_t *off)
{
	const struct opts *o = w->o;
	struct conn *c = s->c;

	s->flush = o->flush_every && c->writes >= o->flush_every;
	if (s->flush) {
		c->writes = 0;
		*type = RQ_FLUSH;
		*off = 0;
		goto picked;
	}
	if (o->pass && c->perm_pos >= c->nperm)
		return 1;
	*type = o->write_pct && rng_next(&w->rng) % 100 < o->write_pct ? RQ_WRITE : RQ_READ;
	if (o->pass) {
		*off = (uint64_t)c->perm[c->perm_pos++] * o->bs;
	} else if (o->seq) {
		if (c->next_off + o->bs > c->hi)
			c->next_off = c->lo;
		*off = c->next_off;
		c->next_off += o->bs;
	} else {
		*off = rng_next(&w->rng) % (w->size / o->bs) * o->bs;
	}
	if (*type == RQ_WRITE)
		c->writes++;
picked:
	s->busy = true;
	s->done = false;
	s->read = *type == RQ_READ;
	s->start_ns = now_ns();
	return 0;
}

/* -R: append a request header (and a WRITE's data) to c's output. */
static void
raw_put(struct conn *c, uint16_t flags, int type, uint64_t cookie, uint64_t off, uint32_t len,
	const void *data)
{
	uint32_t magic = htobe32(NBD_REQUEST_MAGIC), blen = htobe32(len);
	uint16_t bflags = htobe16(flags), btype = htobe16((uint16_t)type);
	uint64_t bcookie = htobe64(cookie), boff = htobe64(off);
	char *h;

	/*
	 * What is left of the output belongs to requests in flight, so with it
	 * moved to the front a request more always fits (out_cap: one of each
	 * slot); a socket that took part of a large batch leaves such a tail.
	 */
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + NBD_REQ_LEN + (data ? len : 0) > c->out_cap) {
		fprintf(stderr, "nbd-load: -R: output overflow (a bug)\n");
		abort();
	}
	h = c->out + c->out_len;
	memcpy(h, &magic, 4);
	memcpy(h + 4, &bflags, 2);
	memcpy(h + 6, &btype, 2);
	memcpy(h + 8, &bcookie, 8);
	memcpy(h + 16, &boff, 8);
	memcpy(h + 24, &blen, 4);
	c->out_len += NBD_REQ_LEN;
	if (data) {
		memcpy(c->out + c->out_len, data, len);
		c->out_len += len;
	}
}

/*
 * Start the next request on slot s: the FLUSH that -F owes, else a READ
 * or WRITE. 0, 1 when the connection has nothing left to send (-p: every
 * block visited), or -1 (libnbd refused it). With -R the request only
 * joins c's output: raw_send writes it.
 */
static int
submit(struct worker *w, struct slot *s)
{
	const struct opts *o = w->o;
	struct conn *c = s->c;
	nbd_completion_callback cb = { .callback = on_done, .user_data = s };
	uint64_t off;
	int64_t cookie;
	int type, ret;

	ret = pick(w, s, &type, &off);
	if (ret)
		return ret;
	if (o->raw) {
		raw_put(c, type == RQ_WRITE && o->fua ? 1 : 0, type, (uint64_t)(s - c->slots),
			off, type == RQ_FLUSH ? 0 : o->bs, type == RQ_WRITE ? s->buf : NULL);
		c->inflight++;
		return 0;
	}
	if (type == RQ_FLUSH)
		cookie = nbd_aio_flush(c->h, cb, 0);
	else if (type == RQ_WRITE)
		cookie = nbd_aio_pwrite(c->h, s->buf, o->bs, off, cb,
					o->fua ? LIBNBD_CMD_FLAG_FUA : 0);
	else
		cookie = nbd_aio_pread(c->h, s->buf, o->bs, off, cb, 0);
	if (cookie < 0) {
		fprintf(stderr, "nbd-load: %s\n", nbd_get_error());
		s->busy = false;
		return -1;
	}
	c->inflight++;
	return 0;
}

/* -R: write what c's output holds, as far as the socket takes it. 0 or -1. */
static int
raw_send(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			fprintf(stderr, "nbd-load: write: %s\n", strerror(errno));
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/*
 * -R: read what the socket has and mark the slots whose replies are whole
 * done (a READ's data copied into its buffer). 0, or -1 on a broken reply
 * or a closed socket.
 */
static int
raw_recv(struct worker *w, struct conn *c)
{
	size_t pos = 0;
	ssize_t n;

	n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0) {
		fprintf(stderr, "nbd-load: the server closed the connection\n");
		return -1;
	}
	c->in_len += (size_t)n;
	while (c->in_len - pos >= NBD_REPLY_LEN) {
		uint32_t magic, err;
		uint64_t cookie;
		struct slot *s;
		size_t need = NBD_REPLY_LEN;

		memcpy(&magic, c->in + pos, 4);
		memcpy(&err, c->in + pos + 4, 4);
		memcpy(&cookie, c->in + pos + 8, 8);
		cookie = be64toh(cookie);
		if (be32toh(magic) != NBD_SIMPLE_REPLY_MAGIC || cookie >= w->o->depth ||
		    !c->slots[cookie].busy || c->slots[cookie].done) {
			fprintf(stderr, "nbd-load: a reply that is no simple reply to a request in flight\n");
			return -1;
		}
		s = &c->slots[cookie];
		err = be32toh(err);
		/* an error's reply has no data (simple replies, doc/proto.md) */
		if (s->read && !err)
			need += w->o->bs;
		if (c->in_len - pos < need)
			break;
		if (need > NBD_REPLY_LEN)
			memcpy(s->buf, c->in + pos + NBD_REPLY_LEN, w->o->bs);
		s->err = (int)err;
		s->done = true;
		pos += need;
	}
	memmove(c->in, c->in + pos, c->in_len - pos);
	c->in_len -= pos;
	return 0;
}

/* Account the requests that completed; start their successors while running. */
static int
harvest(struct worker *w, struct conn *c, bool running)
{
	for (unsigned int i = 0; i < w->o->depth; i++) {
		struct slot *s = &c->slots[i];

		if (!s->busy || !s->done)
			continue;
		s->busy = false;
		c->inflight--;
		if (s->err) {
			w->errors++;
			fprintf(stderr, "nbd-load: request failed: %s\n", strerror(s->err));
		} else if (s->flush) {
			w->flushes++;
		} else {
			w->ios++;
			w->bytes += w->o->bs;
			w->hist[hist_bucket(now_ns() - s->start_ns)]++;
		}
		if (running && submit(w, s) < 0)
			return -1;
	}
	return 0;
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct pollfd pfd[MAX_CONNS];
	bool running = true;
	unsigned int left;

	for (unsigned int k = 0; k < w->nconns; k++) {
		for (unsigned int i = 0; i < w->o->depth; i++)
			if (submit(w, &w->conns[k].slots[i]) < 0)
				goto fail;
		if (w->o->raw && raw_send(&w->conns[k]) < 0)
			goto fail;
	}
	/*
	 * Every finished slot sends its successor while running, so nothing in
	 * flight means the time is up or (-p) every connection is through.
	 */
	for (;;) {
		if (running && now_ns() >= w->stop_ns)
			running = false;
		left = 0;
		for (unsigned int k = 0; k < w->nconns; k++) {
			struct conn *c = &w->conns[k];

			if (w->o->raw) {
				pfd[k].fd = c->fd;
				pfd[k].events = POLLIN | (c->out_len ? POLLOUT : 0);
			} else {
				unsigned int dir = nbd_aio_get_direction(c->h);

				pfd[k].fd = nbd_aio_get_fd(c->h);
				pfd[k].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
						(dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
			}
			pfd[k].revents = 0;
			left += c->inflight;
		}
		if (!left)
			break;
		if (poll(pfd, w->nconns, 1000) < 0 && errno != EINTR)
			goto fail;
		for (unsigned int k = 0; k < w->nconns; k++) {
			struct conn *c = &w->conns[k];

			if (w->o->raw) {
				if ((pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) && raw_recv(w, c) < 0)
					goto fail;
				/* the successors of what completed go out in one write */
				if (harvest(w, c, running) < 0 || raw_send(c) < 0)
					goto fail;
				continue;
			}
			if ((pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    nbd_aio_notify_read(c->h) < 0)
				goto nbd_fail;
			if ((pfd[k].revents & POLLOUT) && nbd_aio_notify_write(c->h) < 0)
				goto nbd_fail;
			if (harvest(w, c, running) < 0)
				goto fail;
		}
	}
	return NULL;
nbd_fail:
	fprintf(stderr, "nbd-load: %s\n", nbd_get_error());
fail:
	w->ret = -1;
	return NULL;
}

/* -p: the n blocks of the export in a random order (Fisher-Yates). 0 or -1. */
static int
perm_make(struct conn *c, uint64_t n, uint64_t seed)
{
	uint64_t rng = seed | 1;

	if (n > UINT32_MAX) {
		fprintf(stderr, "nbd-load: -p takes at most 2^32 blocks\n");
		return -1;
	}
	c->perm = malloc(n * sizeof(*c->perm));
	if (!c->perm)
		return -1;
	for (uint64_t i = 0; i < n; i++)
		c->perm[i] = (uint32_t)i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = rng_next(&rng) % (i + 1);
		uint32_t t = c->perm[i];

		c->perm[i] = c->perm[j];
		c->perm[j] = t;
	}
	c->nperm = n;
	return 0;
}

static struct nbd_handle *
connect_one(const char *uri, bool raw)
{
	struct nbd_handle *h = nbd_create();

	/* -R parses simple replies only */
	if (!h || (raw && nbd_set_request_structured_replies(h, false) < 0) ||
	    nbd_connect_uri(h, uri) < 0) {
		fprintf(stderr, "nbd-load: %s: %s\n", uri, nbd_get_error());
		if (h)
			nbd_close(h);
		return NULL;
	}
	if (raw && nbd_get_structured_replies_negotiated(h) != 0) {
		fprintf(stderr, "nbd-load: %s: structured replies negotiated: -R cannot parse them\n", uri);
		nbd_close(h);
		return NULL;
	}
	return h;
}

/* -R: the socket libnbd connected, non-blocking, and the buffers. 0 or -1. */
static int
raw_setup(struct conn *c, const struct opts *o)
{
	int fl;

	c->fd = nbd_aio_get_fd(c->h);
	if (c->fd < 0 || (fl = fcntl(c->fd, F_GETFL)) < 0 ||
	    fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	/* every slot's request with its data at once, and the DISC at the end */
	c->out_cap = (size_t)o->depth * (NBD_REQ_LEN + o->bs) + NBD_REQ_LEN;
	c->in_cap = 2 * ((size_t)NBD_REPLY_LEN + o->bs);
	if (c->in_cap < RAW_IN_MIN)
		c->in_cap = RAW_IN_MIN;
	c->out = malloc(c->out_cap);
	c->in = malloc(c->in_cap);
	return c->out && c->in ? 0 : -1;
}

/* -R: say goodbye on the wire (libnbd's state machine never saw the requests). */
static void
raw_disconnect(struct conn *c)
{
	int fl = fcntl(c->fd, F_GETFL);

	if (fl >= 0)
		fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	c->out_len = c->out_off = 0;
	raw_put(c, 0, RQ_DISC, 0, 0, 0, NULL);
	(void)raw_send(c);
}

static void
usage(void)
{
	fprintf(stderr, "usage: nbd-load [-c CONNS] [-T THREADS] [-q DEPTH] [-b BYTES] [-t SECS]\n"
			"                [-w PERCENT] [-S] [-f] [-p] [-F WRITES] [-R] URI\n");
}

static bool
parse_uint(const char *s, unsigned long max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return false;
	*out = (unsigned int)v;
	return true;
}

int
main(int argc, char **argv)
{
	struct opts o = { .conns = 1, .threads = 1, .depth = 32, .bs = 4096, .secs = 5 };
	static struct worker workers[MAX_CONNS];
	uint64_t hist[HIST_N] = { 0 }, ios = 0, bytes = 0, errors = 0, flushes = 0, seen, size = 0;
	double pct[] = { 50, 90, 99, 99.9 }, elapsed, cpu_us;
	const char *pname[] = { "p50", "p90", "p99", "p999" };
	struct rusage ru0, ru1;
	uint64_t t0, t1;
	unsigned int bs, i, p;
	int opt, ret = 0;
	char *end;

	while ((opt = getopt(argc, argv, "c:T:q:b:t:w:SfpF:R")) != -1) {
		switch (opt) {
		case 'c':
			if (!parse_uint(optarg, MAX_CONNS, &o.conns) || !o.conns)
				goto bad;
			break;
		case 'T':
			if (!parse_uint(optarg, MAX_CONNS, &o.threads) || !o.threads)
				goto bad;
			break;
		case 'q':
			if (!parse_uint(optarg, MAX_DEPTH, &o.depth) || !o.depth)
				goto bad;
			break;
		case 'b':
			if (!parse_uint(optarg, 32u << 20, &bs) || !bs)
				goto bad;
			o.bs = bs;
			break;
		case 't':
			o.secs = strtod(optarg, &end);
			if (*end || !(o.secs > 0) || o.secs > 3600)
				goto bad;
			break;
		case 'w':
			if (!parse_uint(optarg, 100, &o.write_pct))
				goto bad;
			break;
		case 'S':
			o.seq = true;
			break;
		case 'f':
			o.fua = true;
			break;
		case 'p':
			o.pass = true;
			break;
		case 'R':
			o.raw = true;
			break;
		case 'F':
			if (!parse_uint(optarg, 1u << 20, &o.flush_every) || !o.flush_every)
				goto bad;
			break;
		default:
			goto bad;
		}
	}
	if (optind + 1 != argc)
		goto bad;
	o.uri = argv[optind];
	if (o.threads > o.conns)
		o.threads = o.conns;

	for (i = 0; i < o.conns; i++) {
		struct worker *w = &workers[i % o.threads];
		struct conn *c = &w->conns[w->nconns++];
		int64_t sz;

		c->w = w;
		c->h = connect_one(o.uri, o.raw);
		if (!c->h)
			return 1;
		if (o.raw && raw_setup(c, &o) < 0) {
			fprintf(stderr, "nbd-load: -R: %s\n", strerror(errno));
			return 1;
		}
		sz = nbd_get_size(c->h);
		if (sz < (int64_t)o.bs) {
			fprintf(stderr, "nbd-load: the export (%" PRId64 " bytes) is smaller than one request\n", sz);
			return 1;
		}
		size = (uint64_t)sz;
		/* Sequential: each connection its own slice, so streams do not overlap. */
		c->lo = size / o.conns * i / o.bs * o.bs;
		c->hi = size / o.conns * (i + 1) / o.bs * o.bs;
		if (c->hi - c->lo < o.bs) {
			c->lo = 0;
			c->hi = size / o.bs * o.bs;
		}
		c->next_off = c->lo;
		if (o.pass && perm_make(c, size / o.bs, 0x9E3779B97F4A7C15ull * (i + 1)) < 0)
			return 1;
		c->slots = calloc(o.depth, sizeof(*c->slots));
		if (!c->slots)
			return 1;
		for (unsigned int k = 0; k < o.depth; k++) {
			c->slots[k].c = c;
			if (posix_memalign(&c->slots[k].buf, 4096, o.bs))
				return 1;
			memset(c->slots[k].buf, 0x5a ^ (int)k, o.bs);
		}
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	for (i = 0; i < o.threads; i++) {
		workers[i].o = &o;
		workers[i].size = size;
		workers[i].rng = 0x9E3779B97F4A7C15ull * (i + 1) ^ t0;
		workers[i].stop_ns = t0 + (uint64_t)(o.secs * 1e9);
		if (pthread_create(&workers[i].tid, NULL, worker_run, &workers[i])) {
			fprintf(stderr, "nbd-load: cannot start a thread\n");
			return 1;
		}
	}
	for (i = 0; i < o.threads; i++) {
		pthread_join(workers[i].tid, NULL);
		if (workers[i].ret)
			ret = 1;
		ios += workers[i].ios;
		bytes += workers[i].bytes;
		errors += workers[i].errors;
		flushes += workers[i].flushes;
		for (unsigned int b = 0; b < HIST_N; b++)
			hist[b] += workers[i].hist[b];
	}
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	elapsed = (double)(t1 - t0) / 1e9;
	cpu_us = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e6 +
		 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
		 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 +
		 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);

	printf("iops=%.0f mbps=%.1f", (double)ios / elapsed, (double)bytes / elapsed / 1e6);
	for (p = 0, seen = 0, i = 0; p < sizeof(pct) / sizeof(pct[0]); p++) {
		uint64_t want = (uint64_t)((double)ios * pct[p] / 100.0);

		while (i < HIST_N && seen + hist[i] <= want && seen + hist[i] < ios)
			seen += hist[i++];
		printf(" lat_%s_us=%.1f", pname[p], i < HIST_N ? (double)hist_value(i) / 1e3 : 0.0);
	}
	printf(" cpu_us_per_io=%.2f flushes=%" PRIu64 " errors=%" PRIu64 " ios=%" PRIu64
	       " secs=%.3f\n", ios ? cpu_us / (double)ios : 0.0, flushes, errors, ios, elapsed);
	for (i = 0; i < o.threads; i++)
		for (unsigned int k = 0; k < workers[i].nconns; k++) {
			if (o.raw)
				raw_disconnect(&workers[i].conns[k]);
			else
				nbd_shutdown(workers[i].conns[k].h, 0);
			nbd_close(workers[i].conns[k].h);
			free(workers[i].conns[k].out);
			free(workers[i].conns[k].in);
			for (unsigned int s = 0; s < o.depth; s++)
				free(workers[i].conns[k].slots[s].buf);
			free(workers[i].conns[k].slots);
			free(workers[i].conns[k].perm);
		}
	return ret || errors ? 1 : 0;
bad:
	usage();
	return 2;
}
