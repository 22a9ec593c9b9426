/* SPDX-License-Identifier: MIT */
/*
 * server-aio URI FILE [OPS | sigterm]: 8 connections with 64 requests in
 * flight each (libnbd aio), random reads, writes (some FUA), trims,
 * write-zeroes and flushes over the whole export, checked against a shadow
 * copy in memory: every read as it completes, then the whole export and the
 * backing file at the end. Requests in flight never overlap, so the shadow
 * is exact. "sigterm": run until the server goes away (exit 0 then).
 * URI may list several URIs separated by spaces (exports of one file, say):
 * connection c goes to the (c mod n)th.
 * FILE "save:PATH" (an export that is no file, a pool volume say): no file
 * to compare with; the shadow, what the export holds at the end, is
 * written to PATH instead.
 */
#include <poll.h>

#include "server-test.h"

#define NCONN	8
#define DEPTH	64
#define BS	4096
#define MAXLEN	(64 * BS)

struct op {
	int conn;
	int type;		/* 0 read, 1 write, 2 trim, 3 zero, 4 flush */
	uint64_t off, len;
	uint8_t *buf;
	bool busy;
};

static uint8_t *shadow, *locks;
static uint64_t size, nblocks;
static struct op ops[NCONN][DEPTH];
static unsigned int inflight[NCONN];
static uint64_t completed, verified_bytes;
static bool until_error, server_gone;
static uint64_t rng = 0x9e3779b97f4a7c15;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
lock_range(struct op *o, uint8_t v)
{
	for (uint64_t b = o->off / BS; b < (o->off + o->len) / BS; b++)
		locks[b] = v;
}

static bool
range_free(uint64_t off, uint64_t len)
{
	for (uint64_t b = off / BS; b < (off + len) / BS; b++)
		if (locks[b])
			return false;
	return true;
}

static int
op_done(void *user_data, int *error)
{
	struct op *o = user_data;

	if (*error) {
		if (until_error) {
			server_gone = true;
		} else {
			die("connection %d: op %d at %" PRIu64 "+%" PRIu64 ": %s", o->conn, o->type,
			    o->off, o->len, strerror(*error));
		}
	} else if (o->type == 0) {
		int64_t d = first_diff(o->buf, shadow + o->off, o->len);

		expect(d < 0, "connection %d: READ %" PRIu64 "+%" PRIu64 ": wrong byte at %" PRIu64,
		       o->conn, o->off, o->len, o->off + (uint64_t)d);
		verified_bytes += o->len;
	}
	if (o->type != 4)
		lock_range(o, 0);
	o->busy = false;
	inflight[o->conn]--;
	completed++;
	return 1;
}

/* Start one random request on connection c if a free slot and range exist. */
static void
issue(struct nbd_handle *h, int c)
{
	struct op *o = NULL;
	nbd_completion_callback cb;
	int64_t r = 0;
	uint64_t k = rnd() % 100;

	for (int i = 0; i < DEPTH; i++)
		if (!ops[c][i].busy) {
			o = &ops[c][i];
			break;
		}
	if (!o)
		return;
	o->conn = c;
	o->type = k < 40 ? 0 : k < 85 ? 1 : k < 91 ? 2 : k < 97 ? 3 : 4;
	o->len = (rnd() % (MAXLEN / BS) + 1) * BS;
	o->off = (rnd() % (nblocks - o->len / BS + 1)) * BS;
	if (o->type != 4) {
		if (!range_free(o->off, o->len))
			return;
		lock_range(o, 1);
	}
	o->busy = true;
	inflight[c]++;
	cb = (nbd_completion_callback) { .callback = op_done, .user_data = o };
	switch (o->type) {
	case 0:
		r = nbd_aio_pread(h, o->buf, o->len, o->off, cb, 0);
		break;
	case 1:
		pattern_fill(o->buf, o->off, o->len, (uint16_t)(rnd() % 60000 + 1));
		memcpy(shadow + o->off, o->buf, o->len);
		r = nbd_aio_pwrite(h, o->buf, o->len, o->off, cb,
				   rnd() % 4 == 0 ? LIBNBD_CMD_FLAG_FUA : 0);
		break;
	case 2:
		memset(shadow + o->off, 0, o->len);
		r = nbd_aio_trim(h, o->len, o->off, cb, 0);
		break;
	case 3:
		memset(shadow + o->off, 0, o->len);
		r = nbd_aio_zero(h, o->len, o->off, cb,
				 rnd() % 2 ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
		break;
	case 4:
		r = nbd_aio_flush(h, cb, 0);
		break;
	}
	if (r == -1) {
		if (until_error) {
			server_gone = true;
			return;
		}
		die("connection %d: issue op %d: %s", c, o->type, nbd_get_error());
	}
}

/* Wait for socket events on every handle and let libnbd progress. */
static void
pump(struct nbd_handle **h)
{
	struct pollfd pfd[NCONN];

	for (int c = 0; c < NCONN; c++) {
		unsigned int dir = nbd_aio_get_direction(h[c]);

		pfd[c].fd = nbd_aio_get_fd(h[c]);
		pfd[c].events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
				((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
		pfd[c].revents = 0;
		if (pfd[c].fd < 0) {
			if (until_error) {
				server_gone = true;
				return;
			}
			die("connection %d is gone: %s", c, nbd_get_error());
		}
	}
	if (poll(pfd, NCONN, 10000) <= 0)
		die("no progress in 10 s (or poll: %s)", strerror(errno));
	for (int c = 0; c < NCONN; c++) {
		int r = 0;

		if (pfd[c].revents & (POLLIN | POLLHUP | POLLERR))
			r = nbd_aio_notify_read(h[c]);
		else if (pfd[c].revents & POLLOUT)
			r = nbd_aio_notify_write(h[c]);
		if (r == -1) {
			if (until_error) {
				server_gone = true;
				return;
			}
			die("connection %d: %s", c, nbd_get_error());
		}
	}
}

int
main(int argc, char **argv)
{
	struct nbd_handle *h[NCONN];
	uint64_t total = 20000, issued_rounds = 0;
	double start = now_s(), limit = 120;
	uint8_t *buf;
	const char *save;

	test_name = "server-aio";
	if (argc < 3) {
		fprintf(stderr, "usage: %s URI FILE [OPS | sigterm]\n", argv[0]);
		return 2;
	}
	if (argc > 3 && !strcmp(argv[3], "sigterm")) {
		until_error = true;
		total = UINT64_MAX;
		limit = 60;
	} else if (argc > 3) {
		total = strtoull(argv[3], NULL, 10);
	}
	save = strncmp(argv[2], "save:", 5) ? NULL : argv[2] + 5;
	char *uris[NCONN], *list = strdup(argv[1]), *tok = NULL;
	int nuris = 0;

	for (char *u = strtok_r(list, " ", &tok); u && nuris < NCONN; u = strtok_r(NULL, " ", &tok))
		uris[nuris++] = u;
	expect(nuris > 0, "no URI");
	for (int c = 0; c < NCONN; c++) {
		h[c] = connect_uri(uris[c % nuris]);
		for (int i = 0; i < DEPTH; i++)
			ops[c][i].buf = xmalloc(MAXLEN);
	}
	free(list);	/* the URIs point into it: used up (LeakSanitizer saw it on exits) */
	size = (uint64_t)nbd_get_size(h[0]);
	nblocks = size / BS;
	expect(nblocks >= 2 * MAXLEN / BS, "export too small");
	shadow = xmalloc(size);
	locks = calloc(nblocks, 1);
	/* The shadow starts as the export is now. */
	step("initial contents");
	for (uint64_t off = 0; off < size; off += MAXLEN)
		nbd_ok(h[0], nbd_pread(h[0], shadow + off, size - off < MAXLEN ? size - off : MAXLEN,
				       off, 0));

	step("random requests, 8 x 64 in flight");
	if (until_error) {
		/* for test-server-sigterm: now a stop finds requests in flight */
		printf("server-aio: requests in flight\n");
		fflush(stdout);
	}
	while (completed < total && !server_gone) {
		for (int c = 0; c < NCONN; c++)
			for (int tries = 0; tries < DEPTH && inflight[c] < DEPTH &&
			     completed + NCONN * DEPTH < total + NCONN * DEPTH; tries++)
				issue(h[c], c);
		if (server_gone)
			break;
		pump(h);
		issued_rounds++;
		expect(now_s() - start < limit, "not done in %.0f s (%" PRIu64 " completed)", limit,
		       completed);
	}
	if (until_error) {
		printf("server-aio: the server went away after %" PRIu64 " requests\n", completed);
		for (int c = 0; c < NCONN; c++)
			nbd_close(h[c]);	/* the server is gone: nothing to shut down */
		return 0;
	}
	step("drain");
	for (;;) {
		unsigned int n = 0;

		for (int c = 0; c < NCONN; c++)
			n += inflight[c];
		if (!n)
			break;
		pump(h);
	}
	step("flush and compare the whole export");
	buf = xmalloc(MAXLEN);
	for (int c = 0; c < NCONN; c++)
		nbd_ok(h[c], nbd_flush(h[c], 0));
	for (uint64_t off = 0; off < size; off += MAXLEN) {
		uint64_t n = size - off < MAXLEN ? size - off : MAXLEN;
		int64_t d;

		nbd_ok(h[off / MAXLEN % NCONN],
		       nbd_pread(h[off / MAXLEN % NCONN], buf, n, off, 0));
		d = first_diff(buf, shadow + off, n);
		expect(d < 0, "export differs from the shadow at %" PRIu64, off + (uint64_t)d);
		if (save)
			continue;
		file_pread(argv[2], buf, n, off);
		d = first_diff(buf, shadow + off, n);
		expect(d < 0, "file differs from the shadow at %" PRIu64, off + (uint64_t)d);
	}
	for (int c = 0; c < NCONN; c++)
		disconnect(h[c]);
	if (save) {
		FILE *f = fopen(save, "wb");

		expect(f && fwrite(shadow, 1, size, f) == size && fclose(f) == 0,
		       "cannot write the shadow to %s", save);
	}
	free(buf);
	printf("server-aio: ok: %" PRIu64 " requests, %" PRIu64 " MiB verified in %.1f s\n",
	       completed, verified_bytes >> 20, now_s() - start);
	return 0;
}
