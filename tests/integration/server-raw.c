/* SPDX-License-Identifier: MIT */
/*
 * server-raw MODE SOCKET [ARGS]: a hostile or clumsy NBD client that speaks
 * the wire itself over a Unix socket (constants written from the NBD
 * protocol document, not taken from the server's header), and checks that
 * dionbd answers each abuse with the right error or a clean disconnect
 * while a second client is still served.
 *
 *   probe SOCK [EXPORT]  one well-behaved client: GO, READ, DISC
 *   handshake SOCK       plain newstyle, unknown flags and options, LIST,
 *                        INFO, option length 0xffffffff, commands before GO
 *   truncate SOCK        the handshake cut at every byte
 *   names SOCK           export names of 4096 (served) and 4097 bytes
 *   requests SOCK        ranges, alignment, 32 MiB and 32 MiB + 1,
 *                        unknown commands and flags, in sync after each
 *   mid-payload SOCK     a client that disconnects inside a WRITE payload
 *   no-read SOCK         a client that never reads its replies
 *   stuck SOCK N         N clients stuck in the handshake
 *   readonly SOCK        every write-type command on a read-only export
 *   bad-then-eof SOCK    a refused request, then the client hangs up
 */
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>

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

static int
sock_open(void)
{
	return unix_connect(sock_path, IO_TIMEOUT);
}

/* Send it all. 0, or -errno (the server closed, or a timeout). */
static int
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

static void
xsend(int fd, const void *buf, size_t len)
{
	int r = send_all(fd, buf, len);

	if (r < 0)
		die("send %zu bytes: %s", len, strerror(-r));
}

/* Receive exactly len bytes. 0, -ENODATA at end of stream, -errno. */
static int
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

static void
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
static void
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
static void
expect_closed(int fd)
{
	expect_eof(fd, 10, NULL);
	close(fd);
}

/* ---- handshake ---- */

/* Read the greeting; return the handshake flags. */
static uint16_t
hs_greeting(int fd)
{
	uint8_t b[18];

	xrecv(fd, b, sizeof(b));
	return greeting_flags(b);
}

/* Greeting, then our client flags. */
static void
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
static int
open_fixed(void)
{
	int fd = sock_open();

	hs_open(fd, FLAG_FIXED | FLAG_NOZEROES);
	return fd;
}

static void
send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	opt_hdr(h, opt, len);
	xsend(fd, h, 16);
	if (len)
		xsend(fd, data, len);
}

/* Read one option reply (data up to max bytes into buf); return its type. */
static uint32_t
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
static void
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
static uint32_t
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
static uint32_t
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
static int
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

static void
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
static uint32_t
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
static uint32_t
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
static void
request_fails(int fd, const struct export_info *ei, uint16_t flags, uint16_t cmd,
	      uint64_t off, uint32_t count, uint32_t want, uint32_t want2, const char *what)
{
	uint32_t err;

	step(what);
	err = request(fd, ei, flags, cmd, off, count, iobuf);
	expect(err == want || (want2 && err == want2), "error %u, want %u", err, want);
}

/* The stream is still in sync: a READ gets its own reply. */
static void
in_sync(int fd, const struct export_info *ei, const char *after)
{
	uint32_t err;

	step(after);
	err = request(fd, ei, 0, CMD_READ, 0, 4096, iobuf);
	expect(err == 0, "a READ after this fails with %u", err);
}

/* NBD_CMD_DISC; the server closes without a reply. */
static void
disconnect_raw(int fd)
{
	send_req(fd, 0, CMD_DISC, next_cookie++, 0, 0);
	expect_closed(fd);
}

/* ---- modes ---- */

/* One well-behaved client, start to end. */
static int
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

static int
mode_handshake(void)
{
	struct export_info ei = { 0 };
	uint8_t b[8192];
	uint32_t type, len, n;
	size_t extra;
	int fd;

	step("plain newstyle client: EXPORT_NAME, 124 zero bytes");
	fd = sock_open();
	hs_greeting(fd);
	put32(b, 0);
	xsend(fd, b, 4);
	send_opt(fd, OPT_EXPORT_NAME, NULL, 0);
	xrecv(fd, b, 10 + 124);
	ei.size = get64(b);
	ei.eflags = get16(b + 8);
	expect(ei.size > 0, "export size 0");
	expect(all_zero(b + 10, 124), "the 124 bytes are not zeros");
	expect(request(fd, &ei, 0, CMD_READ, 0, 512, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("fixed newstyle, NO_ZEROES, EXPORT_NAME");
	fd = open_fixed();
	send_opt(fd, OPT_EXPORT_NAME, NULL, 0);
	xrecv(fd, b, 10);
	expect(get64(b) == ei.size, "size differs");
	/* No padding: the next bytes are the reply. */
	expect(request(fd, &ei, 0, CMD_READ, 0, 512, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("unknown client flags: disconnect");
	fd = sock_open();
	hs_open(fd, FLAG_FIXED | FLAG_NOZEROES | (1u << 7));
	expect_closed(fd);

	fd = open_fixed();
	step("unknown option: ERR_UNSUP, then in sync");
	opt_expect(fd, 0x4242, "0123456789", 10, REP_ERR_UNSUP);
	opt_expect(fd, 0x7fffffff, NULL, 0, REP_ERR_UNSUP);
	step("LIST takes no data");
	opt_expect(fd, OPT_LIST, "x", 1, REP_ERR_INVALID);
	step("LIST");
	send_opt(fd, OPT_LIST, NULL, 0);
	n = 0;
	do {
		type = read_opt_reply(fd, OPT_LIST, b, sizeof(b), &len);
		expect(type == REP_SERVER || type == REP_ACK, "LIST reply 0x%x", type);
		if (type == REP_SERVER) {
			expect(len >= 4 && get32(b) <= len - 4, "REP_SERVER length");
			n++;
		}
	} while (type != REP_ACK);
	expect(n >= 1, "LIST gave no export");
	step("INFO on the default export");
	expect(info_or_go(fd, OPT_INFO, "", 0, true, &ei) == 0, "INFO failed");
	expect(ei.bmax == MAXPAY, "maximum payload %u", ei.bmax);
	expect(ei.bmin >= 1 && ei.bmin <= 4096 && !(ei.bmin & (ei.bmin - 1)), "minimum block %u",
	       ei.bmin);
	expect(ei.bpref >= ei.bmin && ei.bpref >= 4096, "preferred block %u", ei.bpref);
	step("INFO on an unknown export: ERR_UNKNOWN");
	type = info_or_go(fd, OPT_INFO, "no-such-export", 14, false, &ei);
	expect(type == REP_ERR_UNKNOWN, "reply 0x%x", type);
	step("GO with a name length past the data: ERR_INVALID");
	len = go_data(b, "abc", 3, false);
	put32(b, 100);
	opt_expect(fd, OPT_GO, b, len, REP_ERR_INVALID);
	step("GO after all that");
	expect(info_or_go(fd, OPT_GO, "", 0, true, &ei) == 0, "GO failed");
	ei.sr = false;
	expect(request(fd, &ei, 0, CMD_READ, 0, 4096, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("ABORT: ACK (or nothing), then the server closes");
	fd = open_fixed();
	send_opt(fd, OPT_ABORT, NULL, 0);
	expect_eof(fd, 10, &extra);
	expect(extra == 0 || extra == 20, "%zu bytes after ABORT", extra);
	close(fd);

	step("option length 0xffffffff: the server drops the client, not the others");
	for (int opt = 0; opt < 3; opt++) {
		static const uint32_t opts[] = { 0x4242, OPT_GO, OPT_EXPORT_NAME };

		fd = open_fixed();
		opt_hdr(b, opts[opt], 0xffffffff);
		xsend(fd, b, 16);
		mode_probe("");
		step("option length 0xffffffff");
		/* The server may stop reading: ignore a failed send. */
		memset(b, 'x', sizeof(b));
		for (int i = 0; i < 8; i++)
			if (send_all(fd, b, sizeof(b)) < 0)
				break;
		expect_eof(fd, 15, &extra);
		close(fd);
	}

	step("a command before GO: disconnect, no reply, no I/O");
	fd = open_fixed();
	send_req(fd, 0, CMD_READ, 1, 0, 4096);
	expect_closed(fd);
	step("a WRITE after INFO, before GO: disconnect, no reply");
	fd = open_fixed();
	expect(info_or_go(fd, OPT_INFO, "", 0, false, &ei) == 0, "INFO failed");
	send_req(fd, 0, CMD_WRITE, 1, 0, 4096);
	memset(b, 0xee, 4096);
	send_all(fd, b, 4096);
	expect_closed(fd);

	step("too many options: the server gives up on the client");
	fd = open_fixed();
	opt_hdr(b, 0x4242, 0);
	for (n = 0; n < 20000; n++) {
		if (send_all(fd, b, 16) < 0)
			break;
		/* Read replies as we go so neither side blocks. */
		while (recv(fd, b + 16, sizeof(b) - 16, MSG_DONTWAIT) > 0)
			;
	}
	expect_eof(fd, 15, &extra);
	close(fd);
	expect(n < 20000, "the server answered 20000 options on one connection");
	printf("server-raw: handshake ok\n");
	return 0;
}

/* The handshake cut after every byte, half-closed, reset, or left hanging. */
static int
mode_truncate(void)
{
	uint8_t s[256];
	uint32_t len;
	size_t n = 0;
	int hanging[160];
	int nhang = 0;

	put32(s, FLAG_FIXED | FLAG_NOZEROES);
	n = 4;
	n += opt_hdr(s + n, OPT_SR, 0);
	len = go_data(s + n + 16, "", 0, true);
	n += opt_hdr(s + n, OPT_GO, len) + len;
	n += req_hdr(s + n, 0, CMD_READ, 1, 0, 4096);
	n += req_hdr(s + n, 0, CMD_DISC, 0, 0, 0);
	expect(n < sizeof(s) && n <= 160, "stream of %zu bytes", n);

	step("connect and close before the greeting");
	for (int i = 0; i < 10; i++)
		close(sock_open());
	for (size_t k = 0; k <= n; k++) {
		int fd;
		size_t extra;

		step("truncated handshake");
		fd = sock_open();
		hs_greeting(fd);
		xsend(fd, s, k);
		if (k % 2 == 0) {
			shutdown(fd, SHUT_WR);
			expect_eof(fd, 15, &extra);
		}
		close(fd);

		fd = sock_open();
		hs_greeting(fd);
		xsend(fd, s, k);
		if (k < n)
			hanging[nhang++] = fd;
		else
			close(fd);
		if (k % 16 == 0)
			mode_probe("");
	}
	mode_probe("");
	for (int i = 0; i < nhang; i++)
		close(hanging[i]);
	mode_probe("");
	printf("server-raw: truncate ok (%zu-byte handshake, %d left hanging)\n", n, nhang);
	return 0;
}

static int
mode_names(void)
{
	char *name = xmalloc(4098);
	struct export_info ei = { 0 };
	uint8_t *b = xmalloc(8192);
	uint32_t type;
	int fd;

	memset(name, 'a', 4097);
	name[4097] = 0;
	step("GO with a 4096-byte name");
	name[4096] = 0;
	fd = open_export(name, true, true, &ei);
	expect(request(fd, &ei, 0, CMD_READ, 0, 4096, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("INFO with 4096 bytes, then GO with 4097: TOO_BIG or INVALID, in sync");
	fd = open_fixed();
	expect(info_or_go(fd, OPT_INFO, name, 4096, false, &ei) == 0,
	       "INFO with 4096 bytes failed");
	type = info_or_go(fd, OPT_GO, name, 4097, false, &ei);
	expect(type == REP_ERR_TOO_BIG || type == REP_ERR_INVALID, "GO 4097: reply 0x%x", type);
	type = info_or_go(fd, OPT_INFO, name, 4097, false, &ei);
	expect(type == REP_ERR_TOO_BIG || type == REP_ERR_INVALID, "INFO 4097: reply 0x%x", type);
	expect(info_or_go(fd, OPT_GO, "", 0, false, &ei) == 0, "GO '' after the errors failed");
	ei.sr = false;
	expect(request(fd, &ei, 0, CMD_READ, 0, 4096, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("EXPORT_NAME with 4096 bytes");
	fd = open_fixed();
	send_opt(fd, OPT_EXPORT_NAME, name, 4096);
	xrecv(fd, b, 10);
	ei.size = get64(b);
	expect(request(fd, &ei, 0, CMD_READ, 0, 4096, iobuf) == 0, "READ");
	disconnect_raw(fd);

	step("EXPORT_NAME with 4097 bytes: disconnect, no reply");
	fd = open_fixed();
	send_opt(fd, OPT_EXPORT_NAME, name, 4097);
	expect_closed(fd);
	free(name);
	free(b);
	printf("server-raw: names ok\n");
	return 0;
}

/* Every abuse of a request in one connection; sr: structured replies. */
static void
requests_on(bool sr)
{
	struct export_info ei;
	uint64_t size;
	uint32_t bmin;
	int fd;

	fd = open_export("", sr, true, &ei);
	size = ei.size;
	bmin = ei.bmin;
	expect(size >= 64 * MiB && size % 4096 == 0, "this test wants >= 64 MiB");

	step("32 MiB WRITE and READ");
	pattern_fill(iobuf, 0, MAXPAY, sr ? 11 : 12);
	expect(request(fd, &ei, 0, CMD_WRITE, 0, MAXPAY, iobuf) == 0, "32 MiB WRITE");
	memset(iobuf, 0xa5, MAXPAY);
	expect(request(fd, &ei, 0, CMD_READ, 0, MAXPAY, iobuf) == 0, "32 MiB READ");
	pattern_fill(iobuf + MAXPAY, 0, 65536, sr ? 11 : 12);
	expect(!memcmp(iobuf, iobuf + MAXPAY, 65536), "32 MiB READ: wrong data");

	request_fails(fd, &ei, 0, CMD_READ, 0, MAXPAY + 1, E_INVAL, E_OVERFLOW,
		      "READ of 32 MiB + 1");
	in_sync(fd, &ei, "after READ of 32 MiB + 1");
	request_fails(fd, &ei, 0, CMD_READ, 0, MAXPAY + 4096, E_INVAL, E_OVERFLOW,
		      "READ of 32 MiB + 4096");
	in_sync(fd, &ei, "after READ of 32 MiB + 4096");

	request_fails(fd, &ei, 0, CMD_READ, size, 4096, E_INVAL, 0, "READ at the end");
	request_fails(fd, &ei, 0, CMD_READ, size - 4096, 8192, E_INVAL, 0, "READ across the end");
	request_fails(fd, &ei, 0, CMD_READ, UINT64_MAX - 4095, 8192, E_INVAL, 0,
		      "READ wrapping past 2^64");
	request_fails(fd, &ei, 0, CMD_WRITE, size, 4096, E_NOSPC, 0, "WRITE at the end");
	in_sync(fd, &ei, "after WRITE past the end");
	request_fails(fd, &ei, 0, CMD_WRITE, size - 4096, 8192, E_NOSPC, 0, "WRITE across the end");
	in_sync(fd, &ei, "after WRITE across the end");
	request_fails(fd, &ei, 0, CMD_ZERO, size, 4096, E_NOSPC, 0, "WRITE_ZEROES past the end");
	request_fails(fd, &ei, 0, CMD_TRIM, size - 4096, 8192, E_INVAL, 0, "TRIM past the end");
	request_fails(fd, &ei, 0, CMD_CACHE, size, 4096, E_INVAL, 0, "CACHE past the end");
	in_sync(fd, &ei, "after requests past the end");

	if (bmin > 1) {
		request_fails(fd, &ei, 0, CMD_READ, 1, bmin, E_INVAL, 0, "unaligned READ offset");
		request_fails(fd, &ei, 0, CMD_READ, 0, bmin + 1, E_INVAL, 0, "unaligned READ length");
		request_fails(fd, &ei, 0, CMD_WRITE, bmin / 2, bmin, E_INVAL, 0, "unaligned WRITE");
		in_sync(fd, &ei, "after an unaligned WRITE");
		request_fails(fd, &ei, 0, CMD_TRIM, 1, bmin, E_INVAL, 0, "unaligned TRIM");
		request_fails(fd, &ei, 0, CMD_ZERO, 0, bmin - 1, E_INVAL, 0, "unaligned WRITE_ZEROES");
		in_sync(fd, &ei, "after unaligned requests");
	}

	request_fails(fd, &ei, 0, 0x42, 0, 4096, E_INVAL, 0, "unknown command 0x42");
	in_sync(fd, &ei, "after an unknown command");
	request_fails(fd, &ei, 0, 0xffff, 0, 0, E_INVAL, 0, "unknown command 0xffff");
	request_fails(fd, &ei, 1u << 9, CMD_READ, 0, 4096, E_INVAL, 0, "READ with flag 1<<9");
	request_fails(fd, &ei, 1u << 15, CMD_FLUSH, 0, 0, E_INVAL, 0, "FLUSH with flag 1<<15");
	request_fails(fd, &ei, 1u << 12, CMD_WRITE, 0, 4096, E_INVAL, 0, "WRITE with flag 1<<12");
	in_sync(fd, &ei, "after a WRITE with an unknown flag");
	request_fails(fd, &ei, CF_NO_HOLE, CMD_READ, 0, 4096, E_INVAL, 0, "READ with NO_HOLE");
	if (!sr) {
		request_fails(fd, &ei, CF_DF, CMD_READ, 0, 4096, E_INVAL, 0,
			      "DF without structured replies");
		request_fails(fd, &ei, 0, CMD_BS, 0, 4096, E_INVAL, 0,
			      "BLOCK_STATUS without a meta context");
	} else {
		step("BLOCK_STATUS with REQ_ONE");
		expect(request(fd, &ei, CF_REQ_ONE, CMD_BS, 0, 4096, iobuf) == 0, "failed");
	}
	in_sync(fd, &ei, "after unknown commands and flags");

	step("TRIM and WRITE_ZEROES larger than 32 MiB");
	expect(request(fd, &ei, 0, CMD_TRIM, 0, 48 * MiB, iobuf) == 0, "TRIM of 48 MiB");
	expect(request(fd, &ei, 0, CMD_ZERO, 0, 40 * MiB, iobuf) == 0, "ZERO of 40 MiB");
	expect(request(fd, &ei, 0, CMD_READ, 0, MAXPAY, iobuf) == 0, "READ");
	expect(all_zero(iobuf, MAXPAY), "not zeros after TRIM + WRITE_ZEROES");
	step("FLUSH");
	expect(request(fd, &ei, 0, CMD_FLUSH, 0, 0, iobuf) == 0, "FLUSH");
	disconnect_raw(fd);

	step("a WRITE over 32 MiB: EINVAL in sync, or a disconnect");
	fd = open_export("", sr, true, &ei);
	send_req(fd, 0, CMD_WRITE, 77, 0, MAXPAY + 4096);
	memset(iobuf, 0xee, MAXPAY + 4096);
	if (send_all(fd, iobuf, MAXPAY + 4096) == 0) {
		uint8_t h[4];
		size_t extra;
		int r = recv(fd, h, 1, MSG_PEEK);

		if (r == 1) {
			uint32_t err = read_reply(fd, &ei, 77, 0, iobuf, 0, false);

			expect(err == E_INVAL || err == E_OVERFLOW, "error %u", err);
			in_sync(fd, &ei, "after a WRITE over 32 MiB");
			disconnect_raw(fd);
			fd = -1;
		} else {
			expect_eof(fd, 10, &extra);
		}
	}
	if (fd >= 0)
		close(fd);
	mode_probe("");
	step("nothing of the refused WRITEs landed");
	fd = open_export("", sr, true, &ei);
	expect(request(fd, &ei, 0, CMD_READ, 0, MAXPAY, iobuf) == 0, "READ");
	expect(all_zero(iobuf, MAXPAY), "a refused WRITE changed the data");
	disconnect_raw(fd);

	step("no block sizes agreed: unaligned requests work (read-modify-write)");
	fd = open_export("", sr, false, &ei);
	pattern_fill(iobuf, 4097, 1000, 13);
	expect(request(fd, &ei, 0, CMD_WRITE, 4097, 1000, iobuf) == 0, "unaligned WRITE");
	expect(request(fd, &ei, 0, CMD_READ, 4096, 1002, iobuf) == 0, "unaligned READ");
	expect(iobuf[0] == 0 && iobuf[1001] == 0, "bytes around the write changed");
	pattern_fill(iobuf + 8192, 4097, 1000, 13);
	expect(!memcmp(iobuf + 1, iobuf + 8192, 1000), "unaligned data");
	expect(request(fd, &ei, 0, CMD_ZERO, 4097, 1000, iobuf) == 0, "WRITE_ZEROES unaligned");
	expect(request(fd, &ei, 0, CMD_READ, 4096, 4096, iobuf) == 0, "READ");
	expect(all_zero(iobuf, 4096), "not zeros");
	disconnect_raw(fd);
}

static int
mode_requests(void)
{
	requests_on(false);
	requests_on(true);
	printf("server-raw: requests ok\n");
	return 0;
}

/* Clients that vanish inside a WRITE payload write nothing. */
static int
mode_mid_payload(void)
{
	struct export_info ei;
	uint32_t cuts[] = { 0, 1, 511, 512, 4096, 65535, 65536, 500000, 1048575 };

	memset(iobuf, 0xee, MiB);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		int fd;

		step("disconnect inside a WRITE payload");
		fd = open_export("", i % 2, true, &ei);
		send_req(fd, CF_FUA, CMD_WRITE, 1, 8 * MiB, MiB);
		send_all(fd, iobuf, cuts[i]);
		if (i % 3 == 0) {
			shutdown(fd, SHUT_WR);
			expect_eof(fd, 10, NULL);
		}
		close(fd);
	}
	step("the range is untouched");
	{
		int fd = open_export("", true, true, &ei);

		expect(request(fd, &ei, 0, CMD_READ, 8 * MiB, MiB, iobuf) == 0, "READ");
		expect(all_zero(iobuf, MiB), "a partial WRITE landed");
		disconnect_raw(fd);
	}
	printf("server-raw: mid-payload ok\n");
	return 0;
}

/* fd, stalled mid-request, is closed by the server after about secs (not before). */
static void
expect_dropped(int fd, int secs, bool probe_meanwhile)
{
	double t0 = now_s(), t;

	if (probe_meanwhile)
		mode_probe("");		/* others are served meanwhile */
	expect_eof(fd, secs + 10, NULL);
	t = now_s() - t0;
	expect(t > secs - 1.5, "dropped after %.1f s, before the %d s deadline", t, secs);
	close(fd);
}

/*
 * The request deadline (dionbd --request-timeout secs): a stalled WRITE
 * payload or half a header gets the client dropped after about secs; an
 * idle connection, and a request that arrives slowly but in time, do not.
 */
static int
mode_stall(int secs)
{
	struct export_info ei;
	int fd, idle;
	uint8_t hdr[28];

	memset(iobuf, 0x5a, MiB);
	idle = open_export("", true, true, &ei);

	step("a WRITE whose payload stops half way");
	fd = open_export("", true, true, &ei);
	send_req(fd, 0, CMD_WRITE, 1, 8 * MiB, MiB);
	xsend(fd, iobuf, MiB / 2);
	expect_dropped(fd, secs, true);

	step("half a request header");
	fd = open_export("", false, true, &ei);
	req_hdr(hdr, 0, CMD_READ, 2, 0, 4096);
	xsend(fd, hdr, 10);
	expect_dropped(fd, secs, false);

	step("a WRITE that arrives slowly but within the deadline");
	fd = open_export("", true, true, &ei);
	send_req(fd, 0, CMD_WRITE, 3, 16 * MiB, 4096);
	for (int i = 0; i < 4; i++) {
		usleep((useconds_t)(secs * 1000000 / 8));
		xsend(fd, iobuf + i * 1024, 1024);
	}
	expect(read_reply(fd, &ei, 3, 16 * MiB, iobuf, 4096, false) == 0, "slow WRITE");
	in_sync(fd, &ei, "after the slow WRITE");
	disconnect_raw(fd);

	step("a connection idle for longer than the deadline");
	expect(request(idle, &ei, 0, CMD_READ, 16 * MiB, 4096, iobuf + MiB) == 0,
	       "READ on the idle connection");
	expect(!memcmp(iobuf + MiB, iobuf, 4096), "the slow WRITE's data");
	step("the stalled WRITE left nothing");
	expect(request(idle, &ei, 0, CMD_READ, 8 * MiB, MiB, iobuf) == 0, "READ");
	expect(all_zero(iobuf, MiB), "part of the stalled WRITE landed");
	disconnect_raw(idle);
	printf("server-raw: stall ok\n");
	return 0;
}

static long
rss_kib(long pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* A client that sends READs and never reads the replies cannot hog the server. */
static int
mode_no_read(long pid)
{
	struct export_info ei;
	uint8_t req[28 * 64];
	long rss0 = pid > 0 ? rss_kib(pid) : -1, rss1;
	uint64_t sent = 0, total = 100000;
	double stall = 0;
	int fd;

	step("flood READs, read nothing");
	fd = open_export("", true, true, &ei);
	for (int i = 0; i < 64; i++)
		req_hdr(req + 28 * i, 0, CMD_READ, (uint64_t)i + 1, (uint64_t)i * MiB, MiB);
	/* Send until the server stops taking requests for 2 s (or all went). */
	while (sent < total) {
		ssize_t n = send(fd, req, sizeof(req), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			/* Keep whole requests on the wire: finish a cut one. */
			if (n % 28) {
				xsend(fd, req + n, 28 - (size_t)(n % 28));
				n += 28 - n % 28;
			}
			sent += (uint64_t)n / 28;
			stall = 0;
			continue;
		}
		if (n < 0 && errno != EAGAIN)
			die("send: %s", strerror(errno));
		if (stall == 0)
			stall = now_s();
		else if (now_s() - stall > 2)
			break;
		usleep(10000);
	}
	expect(sent < total, "the server took all %" PRIu64 " READs (%" PRIu64 " GiB of replies)"
	       " from a client that reads nothing", total, total >> 10);
	fprintf(stderr, "server-raw: the server stopped reading after %" PRIu64 " READs\n", sent);
	mode_probe("");
	step("memory");
	rss1 = pid > 0 ? rss_kib(pid) : -1;
	if (rss0 > 0 && rss1 > 0)
		expect(rss1 - rss0 < 512 * 1024, "the daemon grew by %ld MiB", (rss1 - rss0) >> 10);
	close(fd);
	mode_probe("");
	printf("server-raw: no-read ok\n");
	return 0;
}

/* n clients stuck in the handshake do not lock out a real one. */
static int
mode_stuck(int n)
{
	int *fds = xmalloc(sizeof(int) * (size_t)n);
	struct rlimit rl;
	uint8_t b[16];
	double t;

	/* n sockets and then some. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	step("clients stuck in the handshake");
	for (int i = 0; i < n; i++) {
		fds[i] = sock_open();
		if (i % 3 == 1) {
			put32(b, FLAG_FIXED | FLAG_NOZEROES);
			xsend(fds[i], b, 4);
		} else if (i % 3 == 2) {
			put32(b, FLAG_FIXED | FLAG_NOZEROES);
			xsend(fds[i], b, 4);
			opt_hdr(b, OPT_GO, 100);
			xsend(fds[i], b, 12);
		}
	}
	t = now_s();
	mode_probe("");
	t = now_s() - t;
	expect(t < 5, "a real client waited %.1f s", t);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	mode_probe("");
	printf("server-raw: %d stuck clients, a real one served in %.3f s\n", n, t);
	return 0;
}

static int
mode_readonly(void)
{
	for (int sr = 0; sr < 2; sr++) {
		struct export_info ei;
		int fd = open_export("", sr, true, &ei);

		step("read-only export");
		expect(ei.eflags & TF_READ_ONLY, "transmission flags 0x%x lack READ_ONLY", ei.eflags);
		memset(iobuf, 0x5a, 65536);
		request_fails(fd, &ei, 0, CMD_WRITE, 0, 65536, E_PERM, 0, "WRITE");
		in_sync(fd, &ei, "after a refused WRITE");
		request_fails(fd, &ei, CF_FUA, CMD_WRITE, 0, 4096, E_PERM, 0, "FUA WRITE");
		request_fails(fd, &ei, 0, CMD_TRIM, 0, 65536, E_PERM, 0, "TRIM");
		request_fails(fd, &ei, 0, CMD_ZERO, 0, 65536, E_PERM, 0, "WRITE_ZEROES");
		request_fails(fd, &ei, CF_NO_HOLE, CMD_ZERO, 0, 65536, E_PERM, 0,
			      "WRITE_ZEROES NO_HOLE");
		step("READ, FLUSH and CACHE still work");
		expect(request(fd, &ei, 0, CMD_READ, 0, 65536, iobuf) == 0, "READ");
		expect(iobuf[0] != 0x5a || iobuf[65535] != 0x5a, "a refused WRITE landed");
		expect(request(fd, &ei, 0, CMD_FLUSH, 0, 0, iobuf) == 0, "FLUSH");
		expect(request(fd, &ei, 0, CMD_CACHE, 0, 65536, iobuf) == 0, "CACHE");
		disconnect_raw(fd);
	}
	printf("server-raw: readonly ok\n");
	return 0;
}

/* A refused request, then the client hangs up: nothing may keep its slot. */
static int
mode_bad_then_eof(void)
{
	struct export_info ei;
	int fd = open_export("", true, true, &ei);

	step("unknown command, then end of stream");
	send_req(fd, 0x4444, 0x4444, 1, 0, 4096);
	expect(read_reply(fd, &ei, 1, 0, iobuf, 0, false) == E_INVAL, "want EINVAL");
	shutdown(fd, SHUT_WR);
	expect_closed(fd);
	printf("server-raw: bad-then-eof ok\n");
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode;

	test_name = "server-raw";
	if (argc < 3) {
		fprintf(stderr, "usage: %s MODE SOCKET [ARGS]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mode = argv[1];
	sock_path = argv[2];
	iobuf = xmalloc(MAXPAY + 65536);
	if (!strcmp(mode, "probe"))
		return mode_probe(argc > 3 ? argv[3] : "");
	if (!strcmp(mode, "handshake"))
		return mode_handshake();
	if (!strcmp(mode, "truncate"))
		return mode_truncate();
	if (!strcmp(mode, "names"))
		return mode_names();
	if (!strcmp(mode, "requests"))
		return mode_requests();
	if (!strcmp(mode, "mid-payload"))
		return mode_mid_payload();
	if (!strcmp(mode, "no-read"))
		return mode_no_read(argc > 3 ? atol(argv[3]) : 0);
	if (!strcmp(mode, "stuck"))
		return mode_stuck(argc > 3 ? atoi(argv[3]) : 300);
	if (!strcmp(mode, "stall"))
		return mode_stall(argc > 3 ? atoi(argv[3]) : 2);
	if (!strcmp(mode, "bad-then-eof"))
		return mode_bad_then_eof();
	if (!strcmp(mode, "readonly"))
		return mode_readonly();
	fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
	return 2;
}
