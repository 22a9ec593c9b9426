/* SPDX-License-Identifier: MIT */
/*
 * tls-raw MODE SOCKET [OPTIONS]: an NBD client that speaks the wire itself
 * over a Unix socket, does STARTTLS by hand and then hands the socket to
 * OpenSSL with a chosen protocol version and credentials (what libnbd and
 * openssl s_client cannot: s_client knows no NBD STARTTLS). Constants are
 * written from the NBD protocol document, not taken from the server.
 *
 *   go       STARTTLS, TLS, GO EXPORT, READ 4 KiB, DISC: exit 0 if served.
 *            With -x: exit 0 if the TLS handshake or GO fails instead.
 *   list     STARTTLS, TLS, LIST: print the export names, one a line
 *   reset    STRUCTURED_REPLY and SET_META_CONTEXT in plaintext, STARTTLS:
 *            both forgotten (SET_META refused, simple replies, no DF, no
 *            BLOCK_STATUS); STARTTLS again refused
 *   inject   STARTTLS with GO (or a TLS ClientHello) in the same write, and
 *            STARTTLS then GO without waiting: dropped, never served
 *   require  without TLS: every option but STARTTLS and ABORT gets
 *            ERR_TLS_REQD, EXPORT_NAME is a disconnect
 *   stall    STARTTLS, then half a ClientHello and silence: the server must
 *            close the connection within 20 s (its handshake deadline)
 *
 * Options: -c DIR  client credentials (ca-cert.pem, client-cert.pem,
 *                  client-key.pem; each optional)
 *          -v VER  1.0 | 1.1 | 1.2 | 1.3 (default: 1.2 or newer)
 *          -p ID:HEXKEY   a PSK instead of certificates
 *          -e NAME export (default "")
 *          -x      expect failure
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>

#include "raw-client.h"

static const char *sock_path, *creds, *version, *psk, *export_name = "";
static bool expect_fail;

/* The connection: plain fd, or TLS over it once ssl is set. */
struct tconn {
	int fd;
	SSL *ssl;
};

/* What OpenSSL knows about a failure, after die()'s message. */
static void
print_ssl_errors(void)
{
	ERR_print_errors_fp(stderr);
}

/* Connect to the server's Unix socket. */
static struct tconn
tc_open(void)
{
	struct tconn t = { .fd = unix_connect(sock_path, 10) };

	return t;
}

static void
tc_close(struct tconn *t)
{
	if (t->ssl) {
		SSL_shutdown(t->ssl);
		SSL_free(t->ssl);
		t->ssl = NULL;
	}
	close(t->fd);
}

/* Send all of buf. */
static void
tx(struct tconn *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w;

		if (t->ssl) {
			size_t n;

			w = SSL_write_ex(t->ssl, p, len, &n) ? (ssize_t)n : -1;
		} else {
			w = send(t->fd, p, len, MSG_NOSIGNAL);
		}
		expect(w > 0, "send: %s", strerror(errno));
		p += w;
		len -= (size_t)w;
	}
}

/* Receive exactly len bytes; false at end of stream or error. */
static bool
rx_maybe(struct tconn *t, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r;

		if (t->ssl) {
			size_t n;

			r = SSL_read_ex(t->ssl, p, len, &n) ? (ssize_t)n : -1;
		} else {
			r = recv(t->fd, p, len, 0);
		}
		if (r <= 0)
			return false;
		p += r;
		len -= (size_t)r;
	}
	return true;
}

static void
rx(struct tconn *t, void *buf, size_t len)
{
	expect(rx_maybe(t, buf, len), "connection closed or failed: %s", strerror(errno));
}

/* Read the greeting and send the client flags (fixed newstyle, no zeroes). */
static void
hs_open(struct tconn *t)
{
	uint8_t g[18], f[4];

	step("greeting");
	rx(t, g, sizeof(g));
	greeting_flags(g);
	put32(f, 3);
	tx(t, f, 4);
}

static void
send_opt(struct tconn *t, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t b[16 + 1024];

	expect(len <= 1024, "option too long");
	opt_hdr(b, opt, len);
	if (len)
		memcpy(b + 16, data, len);
	tx(t, b, 16 + len);
}

/* One option reply: its type; data (at most max bytes kept) and length out. */
static uint32_t
read_reply(struct tconn *t, uint32_t opt, void *buf, size_t max, uint32_t *lenp)
{
	uint8_t h[20], sink[4096];
	uint32_t len, type;

	rx(t, h, sizeof(h));
	type = opt_reply_hdr(h, opt, &len);
	expect(len <= sizeof(sink), "reply of %u bytes", len);
	rx(t, sink, len);
	if (buf)
		memcpy(buf, sink, len < max ? len : max);
	if (lenp)
		*lenp = len;
	return type;
}

/* Send an option whose only reply is of type want. */
static void
opt_expect(struct tconn *t, uint32_t opt, const void *data, uint32_t len, uint32_t want)
{
	uint32_t got;

	send_opt(t, opt, data, len);
	got = read_reply(t, opt, NULL, 0, NULL);
	expect(got == want, "option %u: reply 0x%x, want 0x%x", opt, got, want);
}

/* GO/INFO data for export_name, asking for block sizes. */
static uint32_t
export_go_data(uint8_t *b)
{
	return go_data(b, export_name, strlen(export_name), true);
}

/* GO: 0 and the transmission flags, or the error reply type. */
static uint32_t
do_go(struct tconn *t, uint16_t *eflags)
{
	uint8_t b[1024], d[64];
	uint32_t type, len;

	step("GO");
	send_opt(t, OPT_GO, b, export_go_data(b));
	for (;;) {
		type = read_reply(t, OPT_GO, d, sizeof(d), &len);
		if (type == REP_ACK)
			return 0;
		if (type & REP_ERR)
			return type;
		expect(type == REP_INFO, "GO: reply type 0x%x", type);
		if (len >= 12 && get16(d) == 0)
			*eflags = get16(d + 10);
	}
}

/* Send a request header. */
static void
send_req(struct tconn *t, uint16_t cmd, uint64_t cookie, uint64_t off, uint32_t count)
{
	uint8_t b[28];

	tx(t, b, req_hdr(b, 0, cmd, cookie, off, count));
}

/* A simple reply to cookie: its error; the READ data (count bytes) is consumed. */
static uint32_t
simple_reply(struct tconn *t, uint64_t cookie, uint32_t count)
{
	uint8_t h[16];
	static uint8_t data[65536];
	uint32_t err;

	rx(t, h, sizeof(h));
	expect(get32(h) == SIMPLE_MAGIC, "want a simple reply, got magic 0x%08x", get32(h));
	expect(get64(h + 8) == cookie, "reply to cookie %llu", (unsigned long long)get64(h + 8));
	err = get32(h + 4);
	if (!err && count)
		rx(t, data, count);
	return err;
}

static void
tc_disconnect(struct tconn *t)
{
	send_req(t, CMD_DISC, 99, 0, 0);
	tc_close(t);
}

/* ---- TLS ---- */

/* The PSK to offer in TLS 1.3 (external PSK, SHA-256 as GnuTLS uses). */
static int
psk_use_session(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		SSL_SESSION **sess)
{
	static const unsigned char aes128gcm[] = { 0x13, 0x01 };
	static unsigned char key[512];
	const char *colon = strchr(psk, ':');
	size_t klen = 0;
	SSL_SESSION *s;

	for (const char *h = colon + 1; h[0] && h[1] && klen < sizeof(key); h += 2)
		sscanf(h, "%2hhx", &key[klen++]);
	s = SSL_SESSION_new();
	if (!s || !SSL_SESSION_set1_master_key(s, key, klen) ||
	    !SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, aes128gcm)) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return 0;
	}
	if (md && md != EVP_sha256()) {
		SSL_SESSION_free(s);
		*sess = NULL;
		return 1;
	}
	*id = (const unsigned char *)psk;
	*idlen = (size_t)(colon - psk);
	*sess = s;
	return 1;
}

/* TLS 1.2 PSK. */
static unsigned int
psk_client(SSL *ssl, const char *hint, char *id, unsigned int maxid, unsigned char *key,
	   unsigned int maxkey)
{
	const char *colon = strchr(psk, ':');
	unsigned int klen = 0;

	snprintf(id, maxid, "%.*s", (int)(colon - psk), psk);
	for (const char *h = colon + 1; h[0] && h[1] && klen < maxkey; h += 2)
		sscanf(h, "%2hhx", &key[klen++]);
	return klen;
}

/* A client context for -c/-v/-p. */
static SSL_CTX *
client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char path[4096];
	int ver = 0;

	expect(ctx, "SSL_CTX_new");
	if (version) {
		if (!strcmp(version, "1.0"))
			ver = TLS1_VERSION;
		else if (!strcmp(version, "1.1"))
			ver = TLS1_1_VERSION;
		else if (!strcmp(version, "1.2"))
			ver = TLS1_2_VERSION;
		else if (!strcmp(version, "1.3"))
			ver = TLS1_3_VERSION;
		else
			die("-v %s: not 1.0, 1.1, 1.2 or 1.3", version);
		/* Old versions need old ciphers and level 0 to be offered at all. */
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
		SSL_CTX_set_min_proto_version(ctx, ver);
		SSL_CTX_set_max_proto_version(ctx, ver);
	}
	if (psk) {
		expect(strchr(psk, ':'), "-p wants ID:HEXKEY");
		SSL_CTX_set_psk_use_session_callback(ctx, psk_use_session);
		SSL_CTX_set_psk_client_callback(ctx, psk_client);
		return ctx;
	}
	if (creds) {
		snprintf(path, sizeof(path), "%s/ca-cert.pem", creds);
		if (access(path, R_OK) == 0) {
			expect(SSL_CTX_load_verify_locations(ctx, path, NULL) == 1, "%s", path);
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		}
		snprintf(path, sizeof(path), "%s/client-cert.pem", creds);
		if (access(path, R_OK) == 0) {
			expect(SSL_CTX_use_certificate_chain_file(ctx, path) == 1, "%s", path);
			snprintf(path, sizeof(path), "%s/client-key.pem", creds);
			expect(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1, "%s",
			       path);
		}
	}
	return ctx;
}

/* STARTTLS and the TLS handshake. false (logged) if the handshake failed. */
static bool
starttls(struct tconn *t, SSL_CTX *ctx)
{
	step("STARTTLS");
	opt_expect(t, OPT_STARTTLS, NULL, 0, REP_ACK);
	step("TLS handshake");
	t->ssl = SSL_new(ctx);
	expect(t->ssl && SSL_set_fd(t->ssl, t->fd) == 1, "SSL_new");
	if (SSL_connect(t->ssl) != 1) {
		fprintf(stderr, "tls-raw: TLS handshake failed (as %s):\n",
			expect_fail ? "expected" : "not expected");
		ERR_print_errors_fp(stderr);
		return false;
	}
	/* TLS 1.3: a server's refusal of the client certificate comes after connect. */
	return true;
}

/* ---- modes ---- */

static int
mode_go(void)
{
	SSL_CTX *ctx = client_ctx();
	struct tconn t = tc_open();
	uint16_t eflags = 0;
	uint32_t err;
	bool ok;

	hs_open(&t);
	ok = starttls(&t, ctx);
	if (ok) {
		/* A TLS 1.3 certificate failure shows as a read error here. */
		err = 0;
		step("GO");
		send_opt(&t, OPT_GO, (uint8_t[1024]){ 0 }, 0);
		{
			uint8_t h[20];

			ok = rx_maybe(&t, h, sizeof(h));
			if (ok) {
				/* GO with no data is INVALID: proves the channel works. */
				uint8_t sink[4096];
				uint32_t len = get32(h + 16);

				expect(get32(h + 12) == REP_ERR_INVALID, "empty GO: 0x%x",
				       get32(h + 12));
				expect(len <= sizeof(sink), "reply too long");
				rx(&t, sink, len);
			}
		}
		if (ok) {
			err = do_go(&t, &eflags);
			ok = err == 0;
			if (!ok)
				fprintf(stderr, "tls-raw: GO '%s' refused: 0x%x\n", export_name, err);
		}
		if (ok) {
			step("READ");
			send_req(&t, CMD_READ, 1, 0, 4096);
			expect(simple_reply(&t, 1, 4096) == 0, "READ failed");
			printf("%s %s\n", SSL_get_version(t.ssl),
			       SSL_CIPHER_get_name(SSL_get_current_cipher(t.ssl)));
			tc_disconnect(&t);
		} else {
			tc_close(&t);
		}
	} else {
		tc_close(&t);
	}
	SSL_CTX_free(ctx);
	if (expect_fail && ok)
		die("served although it should have failed");
	if (!expect_fail && !ok)
		die("not served");
	return 0;
}

static int
mode_list(void)
{
	SSL_CTX *ctx = client_ctx();
	struct tconn t = tc_open();
	uint8_t d[4096 + 4];
	uint32_t type, len;

	hs_open(&t);
	expect(starttls(&t, ctx), "TLS handshake failed");
	step("LIST");
	send_opt(&t, OPT_LIST, NULL, 0);
	while ((type = read_reply(&t, OPT_LIST, d, sizeof(d), &len)) == REP_SERVER) {
		uint32_t n = get32(d);

		expect(n <= len - 4, "bad LIST entry");
		printf("%.*s\n", (int)n, (char *)d + 4);
	}
	expect(type == REP_ACK, "LIST: reply 0x%x", type);
	opt_expect(&t, OPT_ABORT, NULL, 0, REP_ACK);
	tc_close(&t);
	SSL_CTX_free(ctx);
	return 0;
}

/* SET_META_CONTEXT base:allocation on export_name. */
static uint32_t
set_meta(struct tconn *t)
{
	uint8_t b[1024];
	uint32_t type;

	send_opt(t, OPT_SET_META, b, meta_data(b, export_name, "base:allocation"));
	while ((type = read_reply(t, OPT_SET_META, NULL, 0, NULL)) == REP_META)
		;
	return type;
}

static int
mode_reset(void)
{
	SSL_CTX *ctx = client_ctx();
	struct tconn t = tc_open();
	uint16_t eflags = 0;

	hs_open(&t);
	step("plaintext STRUCTURED_REPLY");
	opt_expect(&t, OPT_SR, NULL, 0, REP_ACK);
	step("plaintext SET_META_CONTEXT");
	expect(set_meta(&t) == REP_ACK, "SET_META_CONTEXT refused before TLS");
	expect(starttls(&t, ctx), "TLS handshake failed");
	step("STARTTLS again");
	opt_expect(&t, OPT_STARTTLS, NULL, 0, REP_ERR_INVALID);
	step("SET_META_CONTEXT after STARTTLS");
	expect(set_meta(&t) == REP_ERR_INVALID,
	       "accepted: structured replies from before STARTTLS survived it");
	expect(do_go(&t, &eflags) == 0, "GO refused");
	step("transmission");
	expect(!(eflags & TF_SEND_DF), "SEND_DF offered: structured replies survived STARTTLS");
	send_req(&t, CMD_READ, 7, 0, 4096);
	expect(simple_reply(&t, 7, 4096) == 0, "READ failed");
	step("BLOCK_STATUS");
	send_req(&t, CMD_BS, 8, 0, 4096);
	expect(simple_reply(&t, 8, 0) == EINVAL,
	       "BLOCK_STATUS not refused: the meta context survived STARTTLS");
	tc_disconnect(&t);
	SSL_CTX_free(ctx);
	return 0;
}

/* Read until end of stream (10 s at most): the bytes the server sent. */
static size_t
drain(struct tconn *t, uint8_t *buf, size_t max)
{
	size_t got = 0;
	ssize_t r;

	while (got < max && (r = recv(t->fd, buf + got, max - got, 0)) > 0)
		got += (size_t)r;
	expect(r == 0 || errno == ECONNRESET, "the server kept the connection open: %s",
	       strerror(errno));
	return got;
}

/* No reply but possibly the STARTTLS ACK, then end of stream. */
static void
expect_dropped(struct tconn *t, const char *what)
{
	uint8_t buf[4096];
	size_t n;

	step(what);
	n = drain(t, buf, sizeof(buf));
	if (n >= 20) {
		expect(get32(buf + 8) == OPT_STARTTLS && get32(buf + 12) == REP_ACK,
		       "a reply to something else than STARTTLS");
		n -= 20;
	}
	expect(n == 0, "%zu more bytes: the server answered what followed STARTTLS", n);
	tc_close(t);
}

static int
mode_inject(void)
{
	uint8_t b[2048];
	size_t n;
	struct tconn t;

	/* STARTTLS and GO in one write. */
	t = tc_open();
	hs_open(&t);
	n = opt_hdr(b, OPT_STARTTLS, 0);
	{
		uint32_t gl = export_go_data(b + n + 16);

		n += opt_hdr(b + n, OPT_GO, gl) + gl;
	}
	tx(&t, b, n);
	expect_dropped(&t, "STARTTLS + GO in one write");

	/* STARTTLS and a real ClientHello in one write: still plaintext behind STARTTLS. */
	{
		SSL_CTX *ctx = client_ctx();
		SSL *ssl = SSL_new(ctx);
		BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
		char *hello;
		long hl;

		expect(ssl && rb && wb, "memory BIOs");
		SSL_set_bio(ssl, rb, wb);
		SSL_set_connect_state(ssl);
		SSL_do_handshake(ssl);
		hl = BIO_get_mem_data(wb, &hello);
		expect(hl > 0 && hl < 1500, "ClientHello of %ld bytes", hl);
		t = tc_open();
		hs_open(&t);
		n = opt_hdr(b, OPT_STARTTLS, 0);
		memcpy(b + n, hello, (size_t)hl);
		tx(&t, b, n + (size_t)hl);
		expect_dropped(&t, "STARTTLS + ClientHello in one write");
		SSL_free(ssl);
		SSL_CTX_free(ctx);
	}

	/* STARTTLS, then GO at once in a second write, not waiting for the ACK. */
	t = tc_open();
	hs_open(&t);
	send_opt(&t, OPT_STARTTLS, NULL, 0);
	n = export_go_data(b);
	send_opt(&t, OPT_GO, b, (uint32_t)n);
	expect_dropped(&t, "STARTTLS then GO without waiting");
	return 0;
}

static int
mode_require(void)
{
	struct tconn t = tc_open();
	uint8_t b[1024];
	uint32_t n;

	hs_open(&t);
	step("LIST before TLS");
	opt_expect(&t, OPT_LIST, NULL, 0, REP_ERR_TLS_REQD);
	step("STRUCTURED_REPLY before TLS");
	opt_expect(&t, OPT_SR, NULL, 0, REP_ERR_TLS_REQD);
	step("INFO before TLS");
	n = export_go_data(b);
	opt_expect(&t, OPT_INFO, b, n, REP_ERR_TLS_REQD);
	step("GO before TLS");
	opt_expect(&t, OPT_GO, b, n, REP_ERR_TLS_REQD);
	step("unknown option before TLS");
	opt_expect(&t, 4242, NULL, 0, REP_ERR_TLS_REQD);
	step("ABORT before TLS");
	opt_expect(&t, OPT_ABORT, NULL, 0, REP_ACK);
	tc_close(&t);

	t = tc_open();
	hs_open(&t);
	n = (uint32_t)strlen(export_name);
	send_opt(&t, OPT_EXPORT_NAME, export_name, n);
	expect_dropped(&t, "EXPORT_NAME before TLS");
	return 0;
}

static int
mode_stall(void)
{
	SSL_CTX *ctx = client_ctx();
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	struct timeval tv = { .tv_sec = 20 };
	struct tconn t = tc_open();
	uint8_t buf[256];
	char *hello;
	long hl;

	expect(ssl && rb && wb, "memory BIOs");
	SSL_set_bio(ssl, rb, wb);
	SSL_set_connect_state(ssl);
	SSL_do_handshake(ssl);
	hl = BIO_get_mem_data(wb, &hello);
	expect(hl > 20, "ClientHello of %ld bytes", hl);
	hs_open(&t);
	step("STARTTLS");
	opt_expect(&t, OPT_STARTTLS, NULL, 0, REP_ACK);
	tx(&t, hello, (size_t)hl / 2);
	setsockopt(t.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	step("stalled TLS handshake");
	expect(drain(&t, buf, sizeof(buf)) == 0, "the server answered half a ClientHello");
	tc_close(&t);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode;
	int opt;

	test_name = "tls-raw";
	die_extra = print_ssl_errors;
	signal(SIGPIPE, SIG_IGN);
	if (argc < 3) {
		fprintf(stderr, "usage: tls-raw go|list|reset|inject|require|stall SOCKET "
				"[-c DIR] [-v VER] [-p ID:HEX] [-e NAME] [-x]\n");
		return 2;
	}
	mode = argv[1];
	sock_path = argv[2];
	optind = 3;
	while ((opt = getopt(argc, argv, "c:v:p:e:x")) != -1) {
		switch (opt) {
		case 'c':
			creds = optarg;
			break;
		case 'v':
			version = optarg;
			break;
		case 'p':
			psk = optarg;
			break;
		case 'e':
			export_name = optarg;
			break;
		case 'x':
			expect_fail = true;
			break;
		default:
			return 2;
		}
	}
	if (!strcmp(mode, "go"))
		return mode_go();
	if (!strcmp(mode, "list"))
		return mode_list();
	if (!strcmp(mode, "reset"))
		return mode_reset();
	if (!strcmp(mode, "inject"))
		return mode_inject();
	if (!strcmp(mode, "require"))
		return mode_require();
	if (!strcmp(mode, "stall"))
		return mode_stall();
	fprintf(stderr, "tls-raw: unknown mode %s\n", mode);
	return 2;
}
