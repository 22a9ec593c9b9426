/* SPDX-License-Identifier: MIT */
/*
 * TLS credentials (OpenSSL): the one SSL_CTX shared by every reactor,
 * loaded from a credentials directory (the qemu-nbd and nbdkit layout:
 * server-cert.pem, server-key.pem, ca-cert.pem, ca-crl.pem) and/or a
 * psktool keys file. The sessions made from it are tls.c's.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"
#include "tls.h"

#define TLS_PSK_MAX	512		/* bytes of key: OpenSSL's PSK_MAX_PSK_LEN */

/* Log OpenSSL's error queue under prefix, and empty it. */
void
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
const struct tls_psk *
tls_psk_find(const struct tls_ctx *t, const void *id, size_t len)
{
	for (size_t i = 0; i < t->npsks; i++)
		if (strlen(t->psks[i].id) == len && !memcmp(t->psks[i].id, id, len))
			return &t->psks[i];
	return NULL;
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
	if (t)
		t->refs = 1;
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
		/* tls_start installs the PSK callbacks on each session. */
		if (tls_psk_load(t, cfg->tls_psk_file) < 0)
			goto err_ctx;
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
	if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
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

void
tls_ctx_swap(struct server *srv, struct tls_ctx *t)
{
	struct tls_ctx *old;

	pthread_mutex_lock(&srv->tls_lock);
	old = srv->tls;
	srv->tls = t;
	pthread_mutex_unlock(&srv->tls_lock);
	tls_ctx_free(old);
}
