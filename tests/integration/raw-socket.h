/* SPDX-License-Identifier: MIT */
/*
 * The plain-socket half of the raw NBD clients (server-raw.c,
 * server-liveness.c): moving bytes over the Unix socket, the fixed-newstyle
 * handshake, requests and their (simple or structured) replies, checked
 * against the NBD protocol document, and one well-behaved client to show
 * that others are still served. tls-raw.c moves its bytes through TLS
 * instead; the wire format they share is raw-client.h.
 */
#ifndef DIONBD_RAW_SOCKET_H
#define DIONBD_RAW_SOCKET_H

#include <poll.h>

#include "raw-client.h"

#define CHUNK_DONE	1u
#define CHUNK_NONE	0
#define CHUNK_DATA	1
#define CHUNK_HOLE	2
#define CHUNK_BS	5
#define CHUNK_ERR	((1u << 15) | 1)
#define CHUNK_ERR_OFF	((1u << 15) | 2)

#define E_PERM		1
#define E_INVAL		22
#define E_NOSPC		28
#define E_OVERFLOW	75

#define MiB		(UINT64_C(1) << 20)
#define MAXPAY		(32 * MiB)
#define IO_TIMEOUT	15	/* seconds any single read or write may block */

static const char *sock_path;

/* ---- bytes on a socket ---- */

static inline int
sock_open(void)
{
	return unix_connect(sock_path, IO_TIMEOUT);
}

/* Send it all. 0, or -errno (the server closed, or a timeout). */
static inline int
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline void
xsend(int fd, const void *buf, size_t len)
{
	int r = send_all(fd, buf, len);

	if (r < 0)
		die("send %zu bytes: %s", len, strerror(-r));
}

/* Receive exactly len bytes. 0, -ENODATA at end of stream, -errno. */
static inline int
recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static inline void
xrecv(int fd, void *buf, size_t len)
{
	int r = recv_all(fd, buf, len);

	if (r == -ENODATA)
		die("the server closed the connection (wanted %zu bytes)", len);
	if (r < 0)
		die("recv %zu bytes: %s", len, strerror(-r));
}

/*
 * The server must close the connection within secs seconds without
 * sending anything more (bytes it sent are counted into *extra if given).
 */
static inline void
expect_eof(int fd, int secs, size_t *extra)
{
	double end = now_s() + secs;
	char buf[4096];
	size_t got = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int left = (int)((end - now_s()) * 1000);

		if (left <= 0)
			die("the server did not close the connection within %d s", secs);
		if (poll(&pfd, 1, left) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (!pfd.revents)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			die("recv: %s", strerror(errno));
		if (n > 0)
			got += (size_t)n;
	}
	if (extra)
		*extra = got;
	else if (got)
		die("the server sent %zu unexpected bytes before closing", got);
}

/* The server must close fd within 10 s, sending nothing; then close it too. */
static inline void
expect_closed(int fd)
{
	expect_eof(fd, 10, NULL);
	close(fd);
}

/* ---- handshake ---- */

/* Read the greeting; return the handshake flags. */
static inline uint16_t
hs_greeting(int fd)
{
	uint8_t b[18];

	xrecv(fd, b, sizeof(b));
	return greeting_flags(b);
}

/* Greeting, then our client flags. */
static inline void
hs_open(int fd, uint32_t cflags)
{
	uint16_t gflags = hs_greeting(fd);
	uint8_t b[4];

	expect(gflags & FLAG_FIXED, "server flags 0x%x lack FIXED_NEWSTYLE", gflags);
	expect(gflags & FLAG_NOZEROES, "server flags 0x%x lack NO_ZEROES", gflags);
	put32(b, cflags);
	xsend(fd, b, 4);
}

/* A new connection past the greeting, with fixed newstyle and no zeroes agreed. */
static inline int
open_fixed(void)
{
	int fd = sock_open();

	hs_open(fd, FLAG_FIXED | FLAG_NOZEROES);
	return fd;
}

static inline void
send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	opt_hdr(h, opt, len);
	xsend(fd, h, 16);
	if (len)
		xsend(fd, data, len);
}

/* Read one option reply (data up to max bytes into buf); return its type. */
static inline uint32_t
read_opt_reply(int fd, uint32_t opt, void *buf, size_t max, uint32_t *lenp)
{
	uint8_t h[20];
	uint32_t len, type;

	xrecv(fd, h, sizeof(h));
	type = opt_reply_hdr(h, opt, &len);
	expect(len <= max, "option reply of %u bytes (type 0x%x), want at most %zu", len,
	       type, max);
	if (len)
		xrecv(fd, buf, len);
	if (lenp)
		*lenp = len;
	return type;
}

/* An option that must be answered with exactly one reply of type want. */
static inline void
opt_expect(int fd, uint32_t opt, const void *data, uint32_t len, uint32_t want)
{
	uint8_t buf[8192];
	uint32_t type;

	send_opt(fd, opt, data, len);
	type = read_opt_reply(fd, opt, buf, sizeof(buf), NULL);
	expect(type == want, "option %u: reply 0x%x, want 0x%x", opt, type, want);
}

struct export_info {
	uint64_t size;
	uint16_t eflags;
	uint32_t bmin, bpref, bmax;
	bool sr;
	bool meta;
};

/*
 * Read the replies to INFO/GO up to ACK, filling *ei. Returns 0, or the
 * error reply type.
 */
static inline uint32_t
go_replies(int fd, uint32_t opt, struct export_info *ei)
{
	uint8_t buf[8192];
	uint32_t type, len;
	bool have_export = false;

	for (int i = 0; i < 16; i++) {
		type = read_opt_reply(fd, opt, buf, sizeof(buf), &len);
		if (type & REP_ERR)
			return type;
		if (type == REP_ACK) {
			expect(have_export, "GO/INFO acknowledged without NBD_INFO_EXPORT");
			return 0;
		}
		expect(type == REP_INFO, "GO/INFO: reply type 0x%x", type);
		expect(len >= 2, "NBD_REP_INFO of %u bytes", len);
		switch (get16(buf)) {
		case INFO_EXPORT:
			expect(len == 12, "NBD_INFO_EXPORT of %u bytes", len);
			ei->size = get64(buf + 2);
			ei->eflags = get16(buf + 10);
			have_export = true;
			break;
		case INFO_BLOCK_SIZE:
			expect(len == 14, "NBD_INFO_BLOCK_SIZE of %u bytes", len);
			ei->bmin = get32(buf + 2);
			ei->bpref = get32(buf + 6);
			ei->bmax = get32(buf + 10);
			break;
		}
	}
	die("GO/INFO: more than 16 replies");
}

/* INFO or GO (opt) for the nlen bytes of name, with block sizes if block_size. */
static inline uint32_t
info_or_go(int fd, uint32_t opt, const char *name, size_t nlen, bool block_size,
	   struct export_info *ei)
{
	uint8_t buf[8192];
	uint32_t len = go_data(buf, name, nlen, block_size);

	send_opt(fd, opt, buf, len);
	return go_replies(fd, opt, ei);
}

/*
 * A full fixed-newstyle handshake to the transmission phase: structured
 * replies (and base:allocation) if sr, GO with block sizes if block_size.
 */
static inline int
open_export(const char *name, bool sr, bool block_size, struct export_info *ei)
{
	uint8_t buf[8192];
	uint32_t len, type;
	int fd = sock_open();

	memset(ei, 0, sizeof(*ei));
	hs_open(fd, FLAG_FIXED | FLAG_NOZEROES);
	if (sr) {
		static const char ctx[] = "base:allocation";

		opt_expect(fd, OPT_SR, NULL, 0, REP_ACK);
		ei->sr = true;
		len = meta_data(buf, name, ctx);
		send_opt(fd, OPT_SET_META, buf, len);
		type = read_opt_reply(fd, OPT_SET_META, buf, sizeof(buf), &len);
		expect(type == REP_META, "SET_META_CONTEXT: reply 0x%x", type);
		type = read_opt_reply(fd, OPT_SET_META, buf, sizeof(buf), &len);
		expect(type == REP_ACK, "SET_META_CONTEXT: no ACK (0x%x)", type);
		ei->meta = true;
	}
	type = info_or_go(fd, OPT_GO, name, strlen(name), block_size, ei);
	expect(type == 0, "GO '%s': error 0x%x", name, type);
	return fd;
}

/* ---- transmission ---- */

static inline void
send_req(int fd, uint16_t flags, uint16_t cmd, uint64_t cookie, uint64_t off, uint32_t count)
{
	uint8_t b[28];

	xsend(fd, b, req_hdr(b, flags, cmd, cookie, off, count));
}

/*
 * Read the whole reply to the request cookie at [off, off+count) (a READ's
 * data lands in buf when is_read). Structured reads must cover every byte
 * exactly once with data and hole chunks. Returns the NBD error, 0 on success.
 */
static inline uint32_t
read_reply(int fd, const struct export_info *ei, uint64_t cookie, uint64_t off,
	   void *buf, uint32_t count, bool is_read)
{
	uint8_t h[20], p[64];
	uint8_t *out = buf;
	uint64_t covered = 0;
	uint32_t err = 0;

	/* With structured replies a server may still answer anything but READ data simply. */
	xrecv(fd, h, 4);
	if (!ei->sr || get32(h) == SIMPLE_MAGIC) {
		xrecv(fd, h + 4, 12);
		expect(get32(h) == SIMPLE_MAGIC, "simple reply: bad magic 0x%x", get32(h));
		expect(get64(h + 8) == cookie, "reply for cookie %" PRIu64 ", want %" PRIu64,
		       get64(h + 8), cookie);
		err = get32(h + 4);
		expect(!(ei->sr && is_read && !err), "READ data in a simple reply");
		if (!err && is_read)
			xrecv(fd, out, count);
		return err;
	}
	for (bool first = true;; first = false) {
		uint16_t flags, type;
		uint32_t len;
		uint64_t coff;

		xrecv(fd, first ? h + 4 : h, first ? 16 : 20);
		expect(get32(h) == SR_MAGIC, "structured reply: bad magic 0x%x", get32(h));
		flags = get16(h + 4);
		type = get16(h + 6);
		len = get32(h + 16);
		expect(get64(h + 8) == cookie, "chunk for cookie %" PRIu64 ", want %" PRIu64,
		       get64(h + 8), cookie);
		switch (type) {
		case CHUNK_NONE:
			expect(len == 0, "NONE chunk of %u bytes", len);
			expect(flags & CHUNK_DONE, "NONE chunk without DONE");
			break;
		case CHUNK_DATA:
			expect(is_read && len > 8, "data chunk of %u bytes", len);
			xrecv(fd, p, 8);
			coff = get64(p);
			expect(coff >= off && coff - off + (len - 8) <= count,
			       "data chunk %" PRIu64 "+%u outside the request", coff, len - 8);
			xrecv(fd, out + (coff - off), len - 8);
			covered += len - 8;
			break;
		case CHUNK_HOLE:
			expect(is_read && len == 12, "hole chunk of %u bytes", len);
			xrecv(fd, p, 12);
			coff = get64(p);
			expect(coff >= off && coff - off + get32(p + 8) <= count,
			       "hole chunk %" PRIu64 "+%u outside the request", coff, get32(p + 8));
			memset(out + (coff - off), 0, get32(p + 8));
			covered += get32(p + 8);
			break;
		case CHUNK_BS:
			while (len) {
				uint32_t n = len < sizeof(p) ? len : sizeof(p);

				xrecv(fd, p, n);
				len -= n;
			}
			break;
		case CHUNK_ERR:
		case CHUNK_ERR_OFF: {
			uint8_t e[6 + 4096 + 8];

			expect(len >= 6 && len <= sizeof(e), "error chunk of %u bytes", len);
			xrecv(fd, e, len);
			expect(get16(e + 4) + 6u <= len, "error message past the chunk");
			err = get32(e);
			expect(err != 0, "error chunk with error 0");
			break;
		}
		default:
			die("chunk type 0x%x", type);
		}
		if (flags & CHUNK_DONE)
			break;
	}
	if (is_read && !err)
		expect(covered == count, "chunks cover %" PRIu64 " of %u bytes", covered, count);
	return err;
}

static uint64_t next_cookie = 1;

/* One request and its reply. Returns the NBD error. */
static inline uint32_t
request(int fd, const struct export_info *ei, uint16_t flags, uint16_t cmd, uint64_t off,
	uint32_t count, void *buf)
{
	uint64_t cookie = next_cookie++;

	send_req(fd, flags, cmd, cookie, off, count);
	if (cmd == CMD_WRITE)
		xsend(fd, buf, count);
	return read_reply(fd, ei, cookie, off, buf, count, cmd == CMD_READ);
}

static uint8_t *iobuf;	/* 32 MiB + 64 KiB */

/* A request that must fail with the NBD error want (or want2 if nonzero). */
static inline void
request_fails(int fd, const struct export_info *ei, uint16_t flags, uint16_t cmd,
	      uint64_t off, uint32_t count, uint32_t want, uint32_t want2, const char *what)
{
	uint32_t err;

	step(what);
	err = request(fd, ei, flags, cmd, off, count, iobuf);
	expect(err == want || (want2 && err == want2), "error %u, want %u", err, want);
}

/* The stream is still in sync: a READ gets its own reply. */
static inline void
in_sync(int fd, const struct export_info *ei, const char *after)
{
	uint32_t err;

	step(after);
	err = request(fd, ei, 0, CMD_READ, 0, 4096, iobuf);
	expect(err == 0, "a READ after this fails with %u", err);
}

/* NBD_CMD_DISC; the server closes without a reply. */
static inline void
disconnect_raw(int fd)
{
	send_req(fd, 0, CMD_DISC, next_cookie++, 0, 0);
	expect_closed(fd);
}

/* One well-behaved client, start to end. */
static inline int
mode_probe(const char *name)
{
	struct export_info ei;
	int fd;

	step("probe");
	fd = open_export(name, true, true, &ei);
	expect(request(fd, &ei, 0, CMD_READ, 0, 4096, iobuf) == 0, "READ failed");
	disconnect_raw(fd);
	return 0;
}

#endif /* DIONBD_RAW_SOCKET_H */
