/* SPDX-License-Identifier: MIT */
/*
 * What the raw NBD clients (server-raw.c, server-liveness.c, tls-raw.c)
 * share: the wire constants, written from the NBD protocol document rather
 * than taken from the server, big-endian packing, the Unix socket, and
 * building and checking handshake and request headers. Moving the bytes
 * stays with each client: the plain-socket ones through raw-socket.h,
 * tls-raw.c through TLS.
 */
#ifndef DIONBD_RAW_CLIENT_H
#define DIONBD_RAW_CLIENT_H

#include <sys/socket.h>
#include <sys/un.h>

#include "server-test.h"

#define MAGIC		UINT64_C(0x4e42444d41474943)	/* "NBDMAGIC" */
#define IHAVEOPT	UINT64_C(0x49484156454f5054)
#define REP_MAGIC	UINT64_C(0x0003e889045565a9)
#define REQ_MAGIC	UINT32_C(0x25609513)
#define SIMPLE_MAGIC	UINT32_C(0x67446698)
#define SR_MAGIC	UINT32_C(0x668e33ef)

#define FLAG_FIXED	1u
#define FLAG_NOZEROES	2u

#define OPT_EXPORT_NAME	1
#define OPT_ABORT	2
#define OPT_LIST	3
#define OPT_STARTTLS	5
#define OPT_INFO	6
#define OPT_GO		7
#define OPT_SR		8
#define OPT_SET_META	10

#define REP_ACK		1
#define REP_SERVER	2
#define REP_INFO	3
#define REP_META	4
#define REP_ERR		(1u << 31)
#define REP_ERR_UNSUP	(REP_ERR | 1)
#define REP_ERR_INVALID	(REP_ERR | 3)
#define REP_ERR_TLS_REQD (REP_ERR | 5)
#define REP_ERR_UNKNOWN	(REP_ERR | 6)
#define REP_ERR_TOO_BIG	(REP_ERR | 9)

#define INFO_EXPORT	0
#define INFO_BLOCK_SIZE	3

#define CMD_READ	0
#define CMD_WRITE	1
#define CMD_DISC	2
#define CMD_FLUSH	3
#define CMD_TRIM	4
#define CMD_CACHE	5
#define CMD_ZERO	6
#define CMD_BS		7

#define CF_FUA		(1u << 0)
#define CF_NO_HOLE	(1u << 1)
#define CF_DF		(1u << 2)
#define CF_REQ_ONE	(1u << 3)

#define TF_READ_ONLY	(1u << 1)
#define TF_SEND_DF	(1u << 7)

/* Store the low n bytes of v at p, most significant first. */
static inline void
put_be(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* The n bytes at p as a big-endian number. */
static inline uint64_t
get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

#define put16(p, v)	put_be((p), (uint16_t)(v), 2)
#define put32(p, v)	put_be((p), (uint32_t)(v), 4)
#define put64(p, v)	put_be((p), (uint64_t)(v), 8)
#define get16(p)	((uint16_t)get_be((p), 2))
#define get32(p)	((uint32_t)get_be((p), 4))
#define get64(p)	get_be((p), 8)

/* A socket connected to the Unix socket path; no send or recv on it blocks past secs. */
static inline int
unix_connect(const char *path, int secs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = secs };
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect %s: %s", path, strerror(errno));
	/* Nothing here may wait forever on a server that went quiet. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Check the 18-byte greeting g; return its handshake flags. */
static inline uint16_t
greeting_flags(const uint8_t *g)
{
	expect(get64(g) == MAGIC, "greeting: bad NBDMAGIC");
	expect(get64(g + 8) == IHAVEOPT, "greeting: not newstyle");
	return get16(g + 16);
}

/* The option header (16 bytes) for opt with len bytes of data. */
static inline size_t
opt_hdr(uint8_t *b, uint32_t opt, uint32_t len)
{
	put64(b, IHAVEOPT);
	put32(b + 8, opt);
	put32(b + 12, len);
	return 16;
}

/* Check the 20-byte header h of a reply to opt; return its type, its data length in *lenp. */
static inline uint32_t
opt_reply_hdr(const uint8_t *h, uint32_t opt, uint32_t *lenp)
{
	expect(get64(h) == REP_MAGIC, "option reply: bad magic");
	expect(get32(h + 8) == opt, "option reply for %u, want %u", get32(h + 8), opt);
	*lenp = get32(h + 16);
	return get32(h + 12);
}

/*
 * Build the data of INFO/GO for name, asking for NBD_INFO_BLOCK_SIZE if
 * block_size. Returns its length.
 */
static inline uint32_t
go_data(uint8_t *b, const char *name, size_t nlen, bool block_size)
{
	put32(b, (uint32_t)nlen);
	memcpy(b + 4, name, nlen);
	put16(b + 4 + nlen, block_size ? 1 : 0);
	if (block_size)
		put16(b + 6 + nlen, INFO_BLOCK_SIZE);
	return (uint32_t)(6 + nlen + (block_size ? 2 : 0));
}

/* Build the data of SET_META_CONTEXT asking for ctx on export name. Returns its length. */
static inline uint32_t
meta_data(uint8_t *b, const char *name, const char *ctx)
{
	size_t nlen = strlen(name), clen = strlen(ctx);

	put32(b, (uint32_t)nlen);
	memcpy(b + 4, name, nlen);
	put32(b + 4 + nlen, 1);
	put32(b + 8 + nlen, (uint32_t)clen);
	memcpy(b + 12 + nlen, ctx, clen);
	return (uint32_t)(12 + nlen + clen);
}

/* The request header (28 bytes). */
static inline size_t
req_hdr(uint8_t *b, uint16_t flags, uint16_t cmd, uint64_t cookie, uint64_t off,
	uint32_t count)
{
	put32(b, REQ_MAGIC);
	put16(b + 4, flags);
	put16(b + 6, cmd);
	put64(b + 8, cookie);
	put64(b + 16, off);
	put32(b + 24, count);
	return 28;
}

#endif /* DIONBD_RAW_CLIENT_H */
