/* SPDX-License-Identifier: MIT */
/*
 * TLS sessions for the NBD handshake's STARTTLS (OpenSSL), made from
 * tls-creds.c's context: a conn_io_ops that c->io is switched to after the
 * STARTTLS ACK; the peer's identity (certificate subject or PSK identity)
 * for the exports' allow-lists.
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
#include <unistd.h>

#include "server.h"
#include "tls.h"

#define TLS_STAGE	(16 * 1024)	/* the largest TLS record's plaintext */

/* One connection's TLS state: c->io_priv once tls_start ran. */
struct tls_conn {
	struct conn *c;
	const struct tls_ctx *t;
	SSL *ssl;
	struct event *hs_wev;	/* the handshake waits for the socket to take output */
	size_t plain_left;	/* bytes of c->out to send in plaintext first (the ACK) */
	bool hs_done;
	bool failed;		/* fatal error: no close_notify */
	bool psk_unknown;	/* the client offered a PSK identity we lack (metrics) */
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

/* ---- PSK ---- */

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
		tc->psk_unknown = true;
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
		tc->psk_unknown = true;
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

/* Why the handshake failed, for the metrics (before the error queue is logged). */
static enum stats_tls
tls_fail_cause(const struct tls_conn *tc, long verify_result)
{
	int reason = ERR_GET_REASON(ERR_peek_error());

	if (verify_result != X509_V_OK || reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return STATS_TLS_CERTIFICATE;
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
	/* OpenSSL 3 reports a peer that left mid-handshake as an error, not SYSCALL */
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return STATS_TLS_PEER_CLOSED;
#endif
	return tc->psk_unknown ? STATS_TLS_UNKNOWN_PSK : STATS_TLS_PROTOCOL;
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
		/* for the control socket's connection list (read by another thread) */
		pthread_mutex_lock(&c->r->srv->conns_lock);
		snprintf(c->ident, sizeof(c->ident), "%s%s", tc->psk_id ? "psk:" : "",
			 tc->psk_id ? tc->psk_id : tc->dn ? tc->dn : "");
		pthread_mutex_unlock(&c->r->srv->conns_lock);
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
		stats_tls_failed(c->r->srv, STATS_TLS_PEER_CLOSED);
		log_info("%s: TLS handshake: the client went away", c->peer);
	} else {
		char prefix[128];
		long vr = SSL_get_verify_result(tc->ssl);

		stats_tls_failed(c->r->srv, tls_fail_cause(tc, vr));
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
		stats_tls_failed(c->r->srv, STATS_TLS_EARLY_DATA);
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
	tls_ctx_free((struct tls_ctx *)tc->t);
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
	struct server *srv = c->r->srv;
	struct tls_ctx *t;
	struct tls_conn *tc;

	if (!srv->tls || c->io != &conn_io_plain)
		return -EINVAL;
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return -ENOMEM;
	/* The context of now, kept by this session even if a reload replaces it. */
	pthread_mutex_lock(&srv->tls_lock);
	t = srv->tls;
	__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&srv->tls_lock);
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
	/* Same as on the SSL_CTX: SSL_new copies the context's callbacks. */
	if (t->npsks) {
		SSL_set_psk_server_callback(tc->ssl, tls_psk_server);
		SSL_set_psk_find_session_callback(tc->ssl, tls_psk_find_session);
	}
	c->io_priv = tc;
	c->io = &tls_io;
	return 0;

err_free:
	ERR_clear_error();
	if (tc->hs_wev)
		event_free(tc->hs_wev);
	SSL_free(tc->ssl);
	tls_ctx_free(t);
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
