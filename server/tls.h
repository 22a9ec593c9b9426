/* SPDX-License-Identifier: MIT */
/*
 * What the two halves of server/'s TLS share: the context that tls-creds.c
 * builds (certificates, keys, CRL, PSKs) and that tls.c's sessions are made
 * from. tls.c uses tls-creds.c, never the other way round.
 */
#ifndef DIONBD_TLS_H
#define DIONBD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

struct tls_psk {
	char *id;
	unsigned char *key;
	size_t keylen;
};

/*
 * Built by tls_ctx_new, read-only while connections use it; each TLS
 * session holds a reference, so a reload (tls_ctx_swap) can replace it
 * while older sessions finish on the old one.
 */
struct tls_ctx {
	unsigned int refs;	/* atomic */
	SSL_CTX *ctx;
	struct tls_psk *psks;	/* owned; npsks > 0 iff a keys file was loaded */
	size_t npsks;
};

/* Log OpenSSL's error queue under prefix, and empty it. */
void tls_log_errors(int level, const char *prefix);
/* The key of identity id[0..len), or NULL. */
const struct tls_psk *tls_psk_find(const struct tls_ctx *t, const void *id, size_t len);

#endif
