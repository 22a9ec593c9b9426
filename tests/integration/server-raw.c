/* SPDX-License-Identifier: MIT */
/*
 * server-raw MODE SOCKET [ARGS]: a hostile or clumsy NBD client that speaks
 * the wire itself over a Unix socket (constants written from the NBD
 * protocol document, not taken from the server's header), and checks that
 * dionbd answers each abuse with the right error or a clean disconnect
 * while a second client is still served. Clients that stall, vanish or
 * never read are server-liveness.c's.
 *
 *   probe SOCK [EXPORT]  one well-behaved client: GO, READ, DISC
 *   handshake SOCK       plain newstyle, unknown flags and options, LIST,
 *                        INFO, option length 0xffffffff, commands before GO
 *   truncate SOCK        the handshake cut at every byte
 *   names SOCK           export names of 4096 (served) and 4097 bytes
 *   requests SOCK        ranges, alignment, 32 MiB and 32 MiB + 1,
 *                        unknown commands and flags, in sync after each
 *   readonly SOCK        every write-type command on a read-only export
 *   bad-then-eof SOCK    a refused request, then the client hangs up
 *   pipeline SOCK        64 KiB READs 32 deep, each batch of replies answered
 *                        with new READs while the rest are still coming;
 *                        then a burst of READs ending in garbage
 */
#include <signal.h>

#include "raw-socket.h"

/* ---- modes ---- */

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

/* The byte at off of what mode_pipeline writes. */
static uint8_t
pipe_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 12) * 13 + (off >> 16));
}

/*
 * One simple READ reply of PIPE_LEN bytes, whichever request it answers:
 * its cookie (1..ncookies, at most once) and its data checked against
 * pipe_byte. false at end of stream (a partial reply at the end is not
 * checked: the server may close mid-reply after a protocol error).
 */
#define PIPE_LEN	65536u
#define PIPE_DEPTH	32u
static bool
pipe_reply(int fd, uint64_t *offs, bool *seen, uint64_t ncookies, uint64_t *cookie)
{
	uint8_t h[16];
	uint64_t k;

	if (recv_all(fd, h, sizeof(h)) < 0)
		return false;
	expect(get32(h) == SIMPLE_MAGIC, "bad reply magic 0x%x", get32(h));
	expect(get32(h + 4) == 0, "READ failed with %u", get32(h + 4));
	k = get64(h + 8);
	expect(k >= 1 && k <= ncookies && !seen[k], "reply for cookie %" PRIu64, k);
	if (recv_all(fd, iobuf, PIPE_LEN) < 0)
		return false;
	for (uint32_t i = 0; i < PIPE_LEN; i++)
		expect(iobuf[i] == pipe_byte(offs[k] + i),
		       "cookie %" PRIu64 ": byte %u of the READ at %" PRIu64 " is %u, want %u", k,
		       i, offs[k], iobuf[i], pipe_byte(offs[k] + i));
	seen[k] = true;
	*cookie = k;
	return true;
}

/*
 * A client that keeps 32 READs in flight and sends new ones as soon as a
 * few replies are in, while the rest of the batch is still on its way:
 * the server reads those between chunks of its replies (conn.c,
 * conn_flush). Every reply whole, once, with the right data; then the
 * same burst ending in a bad magic: the replies sent before the server
 * closes are whole and right, and the server still serves others.
 */
static int
mode_pipeline(void)
{
	const uint64_t span = 16 * MiB, total = 512;
	uint64_t *offs = xmalloc((total + PIPE_DEPTH + 2) * sizeof(*offs));
	bool *seen = xmalloc(total + PIPE_DEPTH + 2);
	uint8_t burst[(PIPE_DEPTH + 1) * 28];
	struct export_info ei;
	uint64_t sent = 0, got = 0, k;
	size_t n = 0;
	int fd;

	memset(seen, 0, total + PIPE_DEPTH + 2);
	step("write the pattern");
	fd = open_export("", false, true, &ei);
	expect(ei.size >= span, "the export is smaller than %" PRIu64, span);
	for (uint64_t off = 0; off < span; off += MiB) {
		for (uint32_t i = 0; i < MiB; i++)
			iobuf[i] = pipe_byte(off + i);
		expect(request(fd, &ei, 0, CMD_WRITE, off, (uint32_t)MiB, iobuf) == 0, "WRITE");
	}

	step("READs 32 deep, new ones sent as replies come in");
	/* cookies 1..total; offsets spread over the span, 4 KiB aligned, not 64 KiB */
	for (k = 1; k <= total; k++)
		offs[k] = (k * 2654435761u) % (span / 4096 - PIPE_LEN / 4096) * 4096;
	for (; sent < PIPE_DEPTH; sent++)
		n += req_hdr(burst + n, 0, CMD_READ, sent + 1, offs[sent + 1], PIPE_LEN);
	xsend(fd, burst, n);
	while (got < total) {
		expect(pipe_reply(fd, offs, seen, total, &k), "the server closed after %" PRIu64
		       " replies", got);
		got++;
		/* after every 4 replies, 4 more READs: the server is mid-batch */
		if (got % 4 == 0 && sent < total) {
			n = 0;
			for (int i = 0; i < 4 && sent < total; i++, sent++)
				n += req_hdr(burst + n, 0, CMD_READ, sent + 1, offs[sent + 1],
					     PIPE_LEN);
			xsend(fd, burst, n);
		}
	}
	disconnect_raw(fd);

	step("a burst of READs ending in a bad magic");
	memset(seen, 0, total + PIPE_DEPTH + 2);
	fd = open_export("", false, true, &ei);
	n = 0;
	for (k = 1; k <= PIPE_DEPTH; k++)
		n += req_hdr(burst + n, 0, CMD_READ, k, offs[k], PIPE_LEN);
	memset(burst + n, 0xee, 28);
	xsend(fd, burst, n + 28);
	got = 0;
	while (pipe_reply(fd, offs, seen, PIPE_DEPTH, &k))
		got++;
	close(fd);
	mode_probe("");
	free(offs);
	free(seen);
	printf("server-raw: pipeline ok (%" PRIu64 " READs, then %" PRIu64
	       " whole replies before the close)\n", total, got);
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
	if (!strcmp(mode, "bad-then-eof"))
		return mode_bad_then_eof();
	if (!strcmp(mode, "readonly"))
		return mode_readonly();
	if (!strcmp(mode, "pipeline"))
		return mode_pipeline();
	fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
	return 2;
}
