/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: arbitrary bytes from a client inside TLS, after STARTTLS
 * (--tls require, PSK). The harness is the TLS client: greeting, flags,
 * STARTTLS in plaintext, a real TLS 1.3 handshake over the socketpair, then
 * the input is written as application data, in records cut where the input
 * says (so the server's read path sees records of every size), and the
 * client half-closes. What is fuzzed is the server's handshake and
 * transmission parsing behind its TLS layer, and the layer itself.
 *
 * Input: byte 0 picks the record size (1 + b * 64 bytes); the rest is the
 * plaintext stream.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TURNS	100000	/* loop turns per input before it counts as a hang */

static const unsigned char fuzz_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static SSL_CTX *fuzz_client;

/* The client's TLS 1.3 external PSK (identity "fuzz"). */
static int
fuzz_psk_session(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		 SSL_SESSION **sess)
{
	static const unsigned char aes128gcm[] = { 0x13, 0x01 };
	SSL_SESSION *s = SSL_SESSION_new();

	if (!s || !SSL_SESSION_set1_master_key(s, fuzz_key, sizeof(fuzz_key)) ||
	    !SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, aes128gcm)) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return 0;
	}
	*id = (const unsigned char *)"fuzz";
	*idlen = 4;
	*sess = s;
	return 1;
}

/* Once: the server's PSK file and TLS context, the client's context. */
static void
fuzz_tls_setup(void)
{
	static char path[4096];
	const char *dir = getenv("DIO_FUZZ_DIR");
	FILE *f;

	fuzz_setup();
	(void)fuzz_serve;	/* the plaintext harness: not used here */
	if (fuzz_srv.tls)
		return;
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, sizeof(path), "%s/fuzz-keys-%d.psk", dir ? dir : ".", (int)getpid());
	f = fopen(path, "w");
	if (!f)
		abort();
	fprintf(f, "fuzz:");
	for (size_t i = 0; i < sizeof(fuzz_key); i++)
		fprintf(f, "%02x", fuzz_key[i]);
	fprintf(f, "\n");
	fclose(f);
	fuzz_cfg.tls = TLS_REQUIRE;
	fuzz_cfg.tls_psk_file = strdup(path);
	if (tls_ctx_new(&fuzz_cfg, &fuzz_srv.tls) < 0)
		abort();
	unlink(path);
	fuzz_client = SSL_CTX_new(TLS_client_method());
	if (!fuzz_client)
		abort();
	SSL_CTX_set_min_proto_version(fuzz_client, TLS1_3_VERSION);
	SSL_CTX_set_psk_use_session_callback(fuzz_client, fuzz_psk_session);
}

/* Read and drop whatever the server sent in plaintext; false once it closed. */
static bool
fuzz_drain_plain(int fd, size_t *got)
{
	uint8_t sink[256];
	ssize_t n;

	while ((n = recv(fd, sink, sizeof(sink), 0)) > 0)
		*got += (size_t)n;
	return n != 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* client flags (fixed newstyle, no zeroes), then STARTTLS */
	static const uint8_t pre[] = {
		0, 0, 0, 3,
		0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0, 0, 0, 5, 0, 0, 0, 0,
	};
	uint8_t sink[65536];
	size_t got = 0, off = 0, rec;
	bool closed = false, wr_open = true;
	SSL *ssl = NULL;
	int sv[2], turns = 0, r;

	if (!size)
		return 0;
	fuzz_tls_setup();
	rec = 1 + (size_t)data[0] * 64;
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (reactor_serve_fd(&fuzz_r, sv[0]) < 0)
		abort();
	if (send(sv[1], pre, sizeof(pre), MSG_NOSIGNAL) != (ssize_t)sizeof(pre))
		abort();
	/* Greeting (18 bytes) and the STARTTLS ACK (20 bytes), in plaintext. */
	while (got < 18 + 20) {
		if (++turns > FUZZ_TURNS || !fuzz_drain_plain(sv[1], &got))
			abort();
		reactor_poll(&fuzz_r, false);
	}
	ssl = SSL_new(fuzz_client);
	if (!ssl || SSL_set_fd(ssl, sv[1]) != 1)
		abort();
	while ((r = SSL_connect(ssl)) != 1) {
		int err = SSL_get_error(ssl, r);

		if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) ||
		    ++turns > FUZZ_TURNS)
			abort();	/* a good client must get through */
		reactor_poll(&fuzz_r, false);
	}
	/* The input as application data; replies read and dropped; then half-close. */
	while (!closed) {
		size_t n;

		if (++turns > FUZZ_TURNS)
			abort();
		while (wr_open && off < size) {
			size_t len = size - off < rec ? size - off : rec;

			if (!SSL_write_ex(ssl, data + off, len, &n)) {
				int err = SSL_get_error(ssl, 0);

				if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ)
					wr_open = false;	/* the server closed */
				break;
			}
			off += n;
		}
		if (wr_open && off == size) {
			shutdown(sv[1], SHUT_WR);
			wr_open = false;
		}
		for (;;) {
			if (SSL_read_ex(ssl, sink, sizeof(sink), &n))
				continue;
			r = SSL_get_error(ssl, 0);
			if (r != SSL_ERROR_WANT_READ)
				closed = true;	/* end of stream, close_notify or error */
			break;
		}
		ERR_clear_error();
		if (!reactor_poll(&fuzz_r, !closed && !wr_open) && closed)
			break;
	}
	while (fuzz_r.nconns)
		reactor_poll(&fuzz_r, true);
	SSL_free(ssl);
	close(sv[1]);
	return 0;
}
