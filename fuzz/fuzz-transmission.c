/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: a valid handshake (chosen by the first input byte: structured
 * replies or not, base:allocation or not, the read-write or the read-only
 * export, block sizes agreed or not), then arbitrary transmission bytes.
 */
#include <endian.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
put_opt(uint8_t *p, uint32_t opt, const void *body, uint32_t len)
{
	uint64_t magic = htobe64(NBDP_IHAVEOPT);
	uint32_t o = htobe32(opt), l = htobe32(len);

	memcpy(p, &magic, 8);
	memcpy(p + 8, &o, 4);
	memcpy(p + 12, &l, 4);
	if (len)
		memcpy(p + 16, body, len);
	return 16 + len;
}

/* The client's handshake bytes for variant v. */
static size_t
handshake(uint8_t *p, uint8_t v)
{
	static const char ctx[] = NBDP_META_BASE_ALLOCATION;
	const char *name = (v & 4) ? "ro" : "";
	uint32_t nlen = (uint32_t)strlen(name);
	uint8_t body[64];
	uint32_t be;
	uint16_t be16;
	size_t n = 0, b = 0;

	be = htobe32(NBDP_FLAG_C_FIXED_NEWSTYLE | NBDP_FLAG_C_NO_ZEROES);
	memcpy(p, &be, 4);
	n = 4;
	if (v & 1)
		n += put_opt(p + n, NBDP_OPT_STRUCTURED_REPLY, NULL, 0);
	if ((v & 3) == 3) {
		be = htobe32(nlen);
		memcpy(body, &be, 4);
		memcpy(body + 4, name, nlen);
		b = 4 + nlen;
		be = htobe32(1);
		memcpy(body + b, &be, 4);
		be = htobe32(sizeof(ctx) - 1);
		memcpy(body + b + 4, &be, 4);
		memcpy(body + b + 8, ctx, sizeof(ctx) - 1);
		n += put_opt(p + n, NBDP_OPT_SET_META_CONTEXT, body, (uint32_t)(b + 8 + sizeof(ctx) - 1));
	}
	be = htobe32(nlen);
	memcpy(body, &be, 4);
	memcpy(body + 4, name, nlen);
	b = 4 + nlen;
	be16 = htobe16((v & 8) ? 1 : 0);
	memcpy(body + b, &be16, 2);
	b += 2;
	if (v & 8) {
		be16 = htobe16(NBDP_INFO_BLOCK_SIZE);
		memcpy(body + b, &be16, 2);
		b += 2;
	}
	n += put_opt(p + n, NBDP_OPT_GO, body, (uint32_t)b);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pre[256];
	size_t npre;

	if (size < 1)
		return 0;
	fuzz_setup();
	npre = handshake(pre, data[0]);
	fuzz_serve(pre, npre, data + 1, size - 1);
	return 0;
}
