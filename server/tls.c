/* SPDX-License-Identifier: MIT */
/*
 * TLS for the NBD handshake's STARTTLS (OpenSSL): one SSL_CTX shared by
 * every reactor, loaded from a credentials directory (the qemu-nbd and
 * nbdkit layout) and/or a psktool keys file; a conn_io_ops that c->io is
 * switched to after the STARTTLS ACK; the peer's identity for the exports'
 * allow-lists.
 *
 * The switch: handshake.c queues the ACK and calls tls_start. Everything
 * then in c->out is the last plaintext; tls_writev sends it with sendmsg,
 * and only then does the TLS handshake start, driven by the reactor's read
 * events (tls_read) and, when the socket is full, by a write event of our
 * own. No call here blocks; the handshake deadline is conn.c's timer.
 *
 * Writes: OpenSSL has no writev, and each SSL_write is at least one record
 * and one send(2). Small iovecs (reply headers, small READ data) are copied
 * into a record-sized staging buffer and sent as one record; large ones go
 * to SSL_write as they are (partial writes on, so progress is reported
 * record by record). A staged record that the socket refused must be
 * offered again unchanged, and conn.c must keep waiting for EV_WRITE, so
 * its last byte is not reported as written until the record is out
 * (tc->held).
 */
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

#define TLS_STAGE	(16 * 1024)	/* the largest TLS record's plaintext */
#define TLS_PSK_MAX	512		/* bytes of key: OpenSSL's PSK_MAX_PSK_LEN */

struct tls_psk {
	char *id;
	unsigned char *key;
	size_t keylen;
};

struct tls_ctx {
	SSL_CTX *ctx;
	struct tls_psk *psks;
	size_t npsks;
};

/* One connection's TLS state: c->io_priv once tls_start ran. */
struct tls_conn {
	struct conn *c;
	const struct tls_ctx *t;
	SSL *ssl;
	struct event *hs_wev;	/* the handshake waits for the socket to take output */
	size_t plain_left;	/* bytes of c->out to send in plaintext first (the ACK) */
	bool hs_done;
	bool failed;		/* fatal error: no close_notify */
	/* the peer, once the handshake is done */
	char *psk_id;
	char *cn;
	char *dn;		/* RFC 2253: "CN=client,O=example" */
	char *dn_slash;		/* OpenSSL's one-line form: "/O=example/CN=client" */
	/* write staging, see the top of this file */
	uint8_t *stage;
	size_t stage_len;
	bool stage_pending;
	size_t held;
};

/* Log OpenSSL's error queue under prefix, and empty it. */
static void
tls_log_errors(int level, const char *prefix)
{
	unsigned long e;
	char buf[256];
	bool any = false;

	while ((e = ERR_get_error())) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_msg(level, "%s: %s", prefix, buf);
		any = true;
	}
	if (!any)
		log_msg(level, "%s", prefix);
}

/* ---- keys file ---- */

/* Value of one hex digit, or -1. */
static int
tls_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Parse "identity:hexkey" into k. 0, or -1 with *why set. */
static int
tls_psk_parse(char *line, struct tls_psk *k, const char **why)
{
	char *colon = strchr(line, ':');
	size_t hexlen;
	const char *hex;

	if (!colon || colon == line) {
		*why = "expected identity:hexkey";
		return -1;
	}
	*colon = '\0';
	hex = colon + 1;
	hexlen = strlen(hex);
	if (!hexlen || hexlen % 2 || hexlen / 2 > TLS_PSK_MAX) {
		*why = "the key is not an even number of hex digits (at most 1024)";
		return -1;
	}
	if (colon - line > 255) {
		*why = "identity longer than 255 bytes";
		return -1;
	}
	k->keylen = hexlen / 2;
	k->key = malloc(k->keylen);
	k->id = strdup(line);
	if (!k->key || !k->id) {
		*why = "out of memory";
		goto err_free;
	}
	for (size_t i = 0; i < k->keylen; i++) {
		int hi = tls_hexval(hex[2 * i]), lo = tls_hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			*why = "the key is not hex";
			goto err_free;
		}
		k->key[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;

err_free:
	free(k->key);
	free(k->id);
	return -1;
}

/* Load a psktool keys file into t. 0 or -1 (logged). */
static int
tls_psk_load(struct tls_ctx *t, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, ret = -1;
	struct stat st;

	if (!f) {
		log_err("--tls-psk-file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		log_warn("--tls-psk-file %s: readable by others than its owner", path);
	while ((n = getline(&line, &cap, f)) >= 0) {
		struct tls_psk k, *p;
		const char *why;

		lineno++;
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (!n || line[0] == '#')
			continue;
		if (tls_psk_parse(line, &k, &why) < 0) {
			log_err("%s:%d: %s", path, lineno, why);
			goto out;
		}
		for (size_t i = 0; i < t->npsks; i++) {
			if (!strcmp(t->psks[i].id, k.id)) {
				log_err("%s:%d: identity '%s' given twice", path, lineno, k.id);
				free(k.id);
				free(k.key);
				goto out;
			}
		}
		p = realloc(t->psks, (t->npsks + 1) * sizeof(*p));
		if (!p) {
			free(k.id);
			free(k.key);
			goto out;
		}
		t->psks = p;
		t->psks[t->npsks++] = k;
	}
	if (!t->npsks) {
		log_err("--tls-psk-file %s: no keys", path);
		goto out;
	}
	ret = 0;
out:
	free(line);
	fclose(f);
	return ret;
}

/* The key of identity id[0..len), or NULL. */
static const struct tls_psk *
tls_psk_find(const struct tls_ctx *t, const void *id, size_t len)
{
	for (size_t i = 0; i < t->npsks; i++)
		if (strlen(t->psks[i].id) == len && !memcmp(t->psks[i].id, id, len))
			return &t->psks[i];
	return NULL;
}

/* TLS 1.3 external PSK: the session to resume for an identity the client offers. */
static int
tls_psk_find_session(SSL *ssl, const unsigned char *id, size_t len, SSL_SESSION **sess)
{
	static const unsigned char aes128gcm_sha256[] = { 0x13, 0x01 };
	struct tls_conn *tc = SSL_get_app_data(ssl);
	const struct tls_psk *k = tls_psk_find(tc->t, id, len);
	const SSL_CIPHER *cipher;
	SSL_SESSION *s;

	*sess = NULL;
	if (!k) {
		/*
		 * A client that offers a PSK means to be known by it: refuse
		 * rather than fall back to an anonymous certificate handshake.
		 * (We issue no session tickets, so no identity is a ticket.)
		 */
		log_info("%s: TLS: unknown PSK identity '%.*s'", tc->c->peer,
			 len > 64 ? 64 : (int)len, (const char *)id);
		return 0;
	}
	/*
	 * The binder's hash is the session cipher's; it must match the cipher
	 * already chosen. External PSKs (GnuTLS, qemu, libnbd) use SHA-256.
	 */
	cipher = SSL_get_pending_cipher(ssl);
	if (!cipher || SSL_CIPHER_get_handshake_digest(cipher) != EVP_sha256())
		cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
	s = SSL_SESSION_new();
	if (!s || !cipher || !SSL_SESSION_set1_master_key(s, k->key, k->keylen) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return 0;
	}
	free(tc->psk_id);
	tc->psk_id = strdup(k->id);
	if (!tc->psk_id) {
		SSL_SESSION_free(s);
		return 0;
	}
	*sess = s;
	return 1;
}

/* TLS 1.2 PSK: the key for identity, its length, or 0 (unknown: handshake fails). */
static unsigned int
tls_psk_server(SSL *ssl, const char *id, unsigned char *psk, unsigned int max)
{
	struct tls_conn *tc = SSL_get_app_data(ssl);
	const struct tls_psk *k = tls_psk_find(tc->t, id, strlen(id));

	if (!k) {
		log_info("%s: TLS: unknown PSK identity '%.64s'", tc->c->peer, id);
		return 0;
	}
	if (k->keylen > max)
		return 0;
	free(tc->psk_id);
	tc->psk_id = strdup(k->id);
	if (!tc->psk_id)
		return 0;
	memcpy(psk, k->key, k->keylen);
	return (unsigned int)k->keylen;
}

/* ---- context ---- */

/* dir/name into buf; whether it exists. */
static bool
tls_file(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
	return access(buf, F_OK) == 0;
}

/* Load the X.509 credentials directory into t->ctx. 0 or -1 (logged). */
static int
tls_load_creds(struct tls_ctx *t, const struct server_cfg *cfg, bool *have_ca)
{
	const char *dir = cfg->tls_creds;
	char path[4096];

	if (!tls_file(path, sizeof(path), dir, "server-cert.pem") ||
	    SSL_CTX_use_certificate_chain_file(t->ctx, path) != 1) {
		tls_log_errors(LOGL_ERR, "--tls-creds: cannot load server-cert.pem");
		log_err("--tls-creds: %s", path);
		return -1;
	}
	if (!tls_file(path, sizeof(path), dir, "server-key.pem") ||
	    SSL_CTX_use_PrivateKey_file(t->ctx, path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1) {
		tls_log_errors(LOGL_ERR, "--tls-creds: cannot load server-key.pem");
		log_err("--tls-creds: %s", path);
		return -1;
	}
	*have_ca = tls_file(path, sizeof(path), dir, "ca-cert.pem");
	if (*have_ca) {
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1) {
			tls_log_errors(LOGL_ERR, "--tls-creds: cannot load ca-cert.pem");
			return -1;
		}
		/* Tells clients with several certificates which one to present. */
		names = SSL_load_client_CA_file(path);
		if (names)
			SSL_CTX_set_client_CA_list(t->ctx, names);
	}
	if (tls_file(path, sizeof(path), dir, "ca-crl.pem")) {
		X509_STORE *st = SSL_CTX_get_cert_store(t->ctx);
		X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());

		if (!lk || X509_load_crl_file(lk, path, X509_FILETYPE_PEM) <= 0) {
			tls_log_errors(LOGL_ERR, "--tls-creds: cannot load ca-crl.pem");
			return -1;
		}
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	}
	return 0;
}

int
tls_ctx_new(const struct server_cfg *cfg, struct tls_ctx **out)
{
	static const unsigned char sid_ctx[] = "dionbd";
	struct tls_ctx *t;
	bool have_ca = false, any_allow = false;
	int verify = SSL_VERIFY_NONE;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	t->ctx = SSL_CTX_new(TLS_server_method());
	if (!t->ctx) {
		tls_log_errors(LOGL_ERR, "TLS: cannot create a context");
		goto err_free;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	/*
	 * No renegotiation (a client-driven CPU sink, and the NBD spec has no
	 * use for it), no compression (CRIME), no session tickets or cache
	 * (connections are long-lived; nothing to resume).
	 */
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				    SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(t->ctx, 0);
	SSL_CTX_set_session_id_context(t->ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* SHA-256 suites first: external PSKs from GnuTLS clients are bound to SHA-256. */
	if (SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:"
					     "TLS_CHACHA20_POLY1305_SHA256:"
					     "TLS_AES_256_GCM_SHA384") != 1)
		goto err_ssl;

	if (cfg->tls_creds && tls_load_creds(t, cfg, &have_ca) < 0)
		goto err_ctx;
	for (size_t i = 0; i < cfg->nexports; i++)
		any_allow |= cfg->exports[i].nallow > 0;
	if (cfg->tls_verify_peer) {
		if (!have_ca) {
			log_err("--tls-verify-peer needs ca-cert.pem in --tls-creds");
			goto err_ctx;
		}
		verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	} else if (have_ca && any_allow) {
		/* Allow-lists name certificate subjects: ask for one, verified if sent. */
		verify = SSL_VERIFY_PEER;
	}
	SSL_CTX_set_verify(t->ctx, verify, NULL);

	if (cfg->tls_psk_file) {
		if (tls_psk_load(t, cfg->tls_psk_file) < 0)
			goto err_ctx;
		SSL_CTX_set_psk_server_callback(t->ctx, tls_psk_server);
		SSL_CTX_set_psk_find_session_callback(t->ctx, tls_psk_find_session);
	}
	if (!cfg->tls_creds && !cfg->tls_psk_file) {
		log_err("--tls %s needs --tls-creds DIR or --tls-psk-file FILE",
			cfg->tls == TLS_REQUIRE ? "require" : "on");
		goto err_ctx;
	}
	log_info("TLS %s: %s%s%s%s", cfg->tls == TLS_REQUIRE ? "required" : "offered",
		 cfg->tls_creds ? "X.509" : "", cfg->tls_creds && cfg->tls_psk_file ? " + " : "",
		 cfg->tls_psk_file ? "PSK" : "",
		 cfg->tls_verify_peer ? ", client certificates required" : "");
	*out = t;
	return 0;

err_ssl:
	tls_log_errors(LOGL_ERR, "TLS: cannot set up the context");
err_ctx:
	tls_ctx_free(t);
	return -1;
err_free:
	free(t);
	return -1;
}

void
tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->npsks; i++) {
		OPENSSL_cleanse(t->psks[i].key, t->psks[i].keylen);
		free(t->psks[i].key);
		free(t->psks[i].id);
	}
	free(t->psks);
	SSL_CTX_free(t->ctx);
	free(t);
}

/* ---- the handshake ---- */

/* A certificate name as one string (RFC 2253 or one-line form), or NULL. */
static char *
tls_name_string(const X509_NAME *name, bool rfc2253)
{
	BIO *b;
	char *s = NULL;
	long n;
	char *p;

	if (!rfc2253)
		return X509_NAME_oneline(name, NULL, 0);
	b = BIO_new(BIO_s_mem());
	if (!b)
		return NULL;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		n = BIO_get_mem_data(b, &p);
		s = n >= 0 ? strndup(p, (size_t)n) : NULL;
	}
	BIO_free(b);
	return s;
}

/* Remember who the peer is (its verified certificate's subject). */
static void
tls_peer_identity(struct tls_conn *tc)
{
	X509 *cert = SSL_get0_peer_certificate(tc->ssl);
	const X509_NAME *name;
	unsigned char *utf8;
	int i, n;

	if (!cert || SSL_get_verify_result(tc->ssl) != X509_V_OK)
		return;
	name = X509_get_subject_name(cert);
	tc->dn = tls_name_string(name, true);
	tc->dn_slash = tls_name_string(name, false);
	i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i >= 0) {
		n = ASN1_STRING_to_UTF8(&utf8,
					X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
		if (n >= 0) {
			/* A CN with a NUL inside cannot be matched by name: leave it unset. */
			if (strlen((char *)utf8) == (size_t)n)
				tc->cn = strdup((char *)utf8);
			OPENSSL_free(utf8);
		}
	}
}

/*
 * Drive SSL_accept. 1 = done, 0 = waiting for the socket, -EPROTO = failed
 * (logged; the client gets OpenSSL's alert and nothing else).
 */
static int
tls_handshake(struct tls_conn *tc)
{
	struct conn *c = tc->c;
	int r, err;

	ERR_clear_error();
	r = SSL_accept(tc->ssl);
	if (r == 1) {
		tc->hs_done = true;
		tls_peer_identity(tc);
		log_info("%s: TLS %s %s, peer %s%s", c->peer, SSL_get_version(tc->ssl),
			 SSL_CIPHER_get_name(SSL_get_current_cipher(tc->ssl)),
			 tc->psk_id ? "PSK " : "",
			 tc->psk_id ? tc->psk_id : tc->dn ? tc->dn : "(anonymous)");
		return 1;
	}
	err = SSL_get_error(tc->ssl, r);
	if (err == SSL_ERROR_WANT_READ)
		return 0;
	if (err == SSL_ERROR_WANT_WRITE) {
		event_add(tc->hs_wev, NULL);
		return 0;
	}
	tc->failed = true;
	if (err == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		log_info("%s: TLS handshake: the client went away", c->peer);
	} else {
		char prefix[128];
		long vr = SSL_get_verify_result(tc->ssl);

		snprintf(prefix, sizeof(prefix), "%s: TLS handshake failed", c->peer);
		if (vr != X509_V_OK)
			log_info("%s: client certificate: %s", prefix,
				 X509_verify_cert_error_string(vr));
		tls_log_errors(LOGL_INFO, prefix);
	}
	return -EPROTO;
}

/* The socket takes output again: let the read path drive the handshake on. */
static void
tls_on_hs_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	event_active(c->rev, EV_READ, 0);
}

/* ---- conn_io_ops ---- */

/* An SSL_read/SSL_write failure as -errno; marks the session failed. */
static ssize_t
tls_io_error(struct tls_conn *tc, int err, const char *what)
{
	tc->failed = true;
	if (err == SSL_ERROR_SYSCALL && !ERR_peek_error())
		return errno ? -errno : -ECONNRESET;
	if (log_level >= LOGL_DEBUG) {
		char prefix[128];

		snprintf(prefix, sizeof(prefix), "%s: TLS %s", tc->c->peer, what);
		tls_log_errors(LOGL_DEBUG, prefix);
	}
	ERR_clear_error();
	return -EPROTO;
}

static ssize_t
tls_read(struct conn *c, void *buf, size_t len)
{
	struct tls_conn *tc = c->io_priv;
	size_t got = 0;

	if (tc->plain_left) {
		uint8_t b;
		ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return -EAGAIN;
		if (n <= 0)
			return n ? -errno : 0;
		/* Only a client that broke the rules talks before it has the ACK. */
		log_info("%s: data before the STARTTLS reply was sent", c->peer);
		tc->failed = true;
		return -EPROTO;
	}
	if (!tc->hs_done) {
		int r = tls_handshake(tc);

		if (r <= 0)
			return r ? r : -EAGAIN;
	}
	/* Many records per call: SSL_read returns one record at most. */
	while (got < len) {
		size_t n;
		int err;

		ERR_clear_error();
		if (SSL_read_ex(tc->ssl, (uint8_t *)buf + got, len - got, &n)) {
			got += n;
			continue;
		}
		err = SSL_get_error(tc->ssl, 0);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err == SSL_ERROR_WANT_WRITE) {
			/* A TLS 1.3 key update answer is waiting for the socket. */
			event_add(tc->hs_wev, NULL);
			break;
		}
		if (got)
			break;	/* report the error on the next call */
		if (err == SSL_ERROR_ZERO_RETURN)
			return 0;
		return tls_io_error(tc, err, "read");
	}
	return got ? (ssize_t)got : -EAGAIN;
}

/* Write the plaintext that precedes the TLS handshake (the STARTTLS ACK). */
static ssize_t
tls_write_plain(struct conn *c, struct tls_conn *tc, const struct iovec *iov, int n)
{
	size_t len = iov[0].iov_len < tc->plain_left ? iov[0].iov_len : tc->plain_left;
	ssize_t w;

	do
		w = send(c->fd, iov[0].iov_base, len, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno == ENOTSOCK)
		w = write(c->fd, iov[0].iov_base, len);
	if (w < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	tc->plain_left -= (size_t)w;
	return w;
}

/*
 * SSL_write of p[0..len): 1 = all written (*done = len), 0 = the socket is
 * full (retry with the same bytes), < 0 = -errno. Partial writes: *done
 * may be less than len with 1 returned, once a record is out.
 */
static int
tls_write_some(struct tls_conn *tc, const void *p, size_t len, size_t *done)
{
	int err;

	ERR_clear_error();
	if (SSL_write_ex(tc->ssl, p, len, done))
		return 1;
	*done = 0;
	err = SSL_get_error(tc->ssl, 0);
	if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
		return 0;
	return (int)tls_io_error(tc, err, "write");
}

/* Send the staged record. 1 = sent, 0 = retry later, < 0 = -errno. */
static int
tls_flush_stage(struct tls_conn *tc)
{
	size_t done = 0, off = 0;
	int r;

	while (off < tc->stage_len) {
		r = tls_write_some(tc, tc->stage + off, tc->stage_len - off, &done);
		if (r <= 0) {
			/* Keep what is left at the front: a retry must offer it unchanged. */
			if (off) {
				memmove(tc->stage, tc->stage + off, tc->stage_len - off);
				tc->stage_len -= off;
			}
			tc->stage_pending = r == 0;
			return r;
		}
		off += done;
	}
	tc->stage_len = 0;
	tc->stage_pending = false;
	return 1;
}

static ssize_t
tls_writev(struct conn *c, const struct iovec *iov, int n)
{
	struct tls_conn *tc = c->io_priv;
	size_t written = 0, off = 0;
	int i = 0, r;

	if (tc->plain_left)
		return tls_write_plain(c, tc, iov, n);
	if (!tc->hs_done) {
		r = tls_handshake(tc);
		if (r <= 0)
			return r ? r : -EAGAIN;
	}
	if (tc->stage_pending) {
		r = tls_flush_stage(tc);
		if (r <= 0)
			return r ? r : -EAGAIN;
		/* The record is out: the bytes held back from conn.c are written now. */
		written = off = tc->held;
		tc->held = 0;
	}
	while (i < n) {
		const uint8_t *p = (const uint8_t *)iov[i].iov_base + off;
		size_t len = iov[i].iov_len - off, k;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			i++;
			continue;
		}
		if (len >= TLS_STAGE) {
			/* Large: send what is staged first, then this without a copy. */
			if (tc->stage_len) {
				r = tls_flush_stage(tc);
				if (r < 0)
					return r;
				if (!r)
					goto refused;
			}
			/* A refused record is retried from the same place by the next call. */
			r = tls_write_some(tc, p, len, &k);
			if (r <= 0)
				return written ? (ssize_t)written : r ? r : -EAGAIN;
			off += k;
			written += k;
			continue;
		}
		k = TLS_STAGE - tc->stage_len < len ? TLS_STAGE - tc->stage_len : len;
		memcpy(tc->stage + tc->stage_len, p, k);
		tc->stage_len += k;
		off += k;
		written += k;
		if (tc->stage_len == TLS_STAGE) {
			r = tls_flush_stage(tc);
			if (r < 0)
				return r;
			if (!r)
				goto refused;
		}
	}
	if (tc->stage_len) {
		r = tls_flush_stage(tc);
		if (r < 0)
			return r;
		if (!r)
			goto refused;
	}
	return (ssize_t)written;

refused:
	/* Hold the record's last byte back: conn.c keeps it and waits for EV_WRITE. */
	tc->held = 1;
	return (ssize_t)(written - 1);
}

static bool
tls_pending(struct conn *c)
{
	struct tls_conn *tc = c->io_priv;

	return tc->hs_done && SSL_pending(tc->ssl) > 0;
}

static void
tls_close(struct conn *c)
{
	struct tls_conn *tc = c->io_priv;

	if (!tc)
		return;
	/* Best effort close_notify: never wait for the socket or the peer's answer. */
	if (tc->hs_done && !tc->failed) {
		ERR_clear_error();
		SSL_shutdown(tc->ssl);
	}
	ERR_clear_error();
	SSL_free(tc->ssl);
	event_free(tc->hs_wev);
	free(tc->psk_id);
	free(tc->cn);
	free(tc->dn);
	OPENSSL_free(tc->dn_slash);
	free(tc->stage);
	free(tc);
	c->io_priv = NULL;
}

static const struct conn_io_ops tls_io = {
	.read = tls_read,
	.writev = tls_writev,
	.pending = tls_pending,
	.close = tls_close,
};

int
tls_start(struct conn *c)
{
	const struct tls_ctx *t = c->r->srv->tls;
	struct tls_conn *tc;

	if (!t || c->io != &conn_io_plain)
		return -EINVAL;
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return -ENOMEM;
	tc->c = c;
	tc->t = t;
	tc->plain_left = c->out.len - c->out.off;
	tc->stage = malloc(TLS_STAGE);
	tc->ssl = SSL_new(t->ctx);
	tc->hs_wev = event_new(c->r->base, c->fd, EV_WRITE, tls_on_hs_write, c);
	if (!tc->stage || !tc->ssl || !tc->hs_wev)
		goto err_free;
	/* A socket BIO: records go straight between the kernel and OpenSSL's buffers. */
	if (SSL_set_fd(tc->ssl, c->fd) != 1)
		goto err_free;
	SSL_set_app_data(tc->ssl, tc);
	c->io_priv = tc;
	c->io = &tls_io;
	return 0;

err_free:
	ERR_clear_error();
	if (tc->hs_wev)
		event_free(tc->hs_wev);
	SSL_free(tc->ssl);
	free(tc->stage);
	free(tc);
	return -ENOMEM;
}

bool
tls_active(const struct conn *c)
{
	return c->io == &tls_io;
}

bool
tls_export_allowed(const struct conn *c, const struct export *exp)
{
	const struct tls_conn *tc;

	if (!exp->nallow)
		return true;
	if (!tls_active(c))
		return false;
	tc = c->io_priv;
	if (!tc || !tc->hs_done)
		return false;
	for (size_t i = 0; i < exp->nallow; i++) {
		const char *a = exp->allow[i];

		if ((tc->psk_id && !strcmp(a, tc->psk_id)) || (tc->cn && !strcmp(a, tc->cn)) ||
		    (tc->dn && !strcmp(a, tc->dn)) || (tc->dn_slash && !strcmp(a, tc->dn_slash)))
			return true;
	}
	return false;
}
