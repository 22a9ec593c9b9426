/* SPDX-License-Identifier: MIT */
/*
 * server-strict MODE URI [FILE]: libnbd with its client-side checks off
 * (nbd_set_strict_mode(h, 0)), so the server's own checks answer.
 *   errors URI           out of range, unaligned, oversized, unknown flags
 *   multiconn URI FILE   FLUSH on one connection covers the others' writes
 */
#include "server-test.h"

#define MiB (UINT64_C(1) << 20)

static struct nbd_handle *
connect_lax(const char *uri, bool meta)
{
	struct nbd_handle *h = nbd_create();

	if (!h)
		die("nbd_create: %s", nbd_get_error());
	if (meta)
		nbd_ok(h, nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION));
	nbd_ok(h, nbd_set_strict_mode(h, 0));
	if (nbd_connect_uri(h, uri) == -1)
		die("connect %s: %s", uri, nbd_get_error());
	return h;
}

/* An extent callback for requests that must fail before any extent. */
static int
no_extent(void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries,
	  size_t nr_entries, int *error)
{
	return 0;
}

/* nbd_get_errno() is one of a or b after a failed call. */
static void
expect_errno2(int r, int a, int b, const char *what)
{
	step(what);
	expect(r == -1, "succeeded, want %s", strerror(a));
	expect(nbd_get_errno() == a || nbd_get_errno() == b, "errno %d (%s), want %s",
	       nbd_get_errno(), nbd_get_error(), strerror(a));
}

static int
mode_errors(const char *uri)
{
	struct nbd_handle *h = connect_lax(uri, true), *h2;
	uint8_t *buf = xmalloc(32 * MiB + 65536);
	int64_t size = nbd_get_size(h);
	int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);

	memset(buf, 0x3c, 32 * MiB + 65536);
	step("READ past the end");
	nbd_fails(h, EINVAL, nbd_pread(h, buf, 4096, (uint64_t)size, 0));
	nbd_fails(h, EINVAL, nbd_pread(h, buf, 8192, (uint64_t)size - 4096, 0));
	step("WRITE past the end");
	nbd_fails(h, ENOSPC, nbd_pwrite(h, buf, 4096, (uint64_t)size, 0));
	nbd_fails(h, ENOSPC, nbd_pwrite(h, buf, 8192, (uint64_t)size - 4096, LIBNBD_CMD_FLAG_FUA));
	step("WRITE_ZEROES past the end");
	nbd_fails(h, ENOSPC, nbd_zero(h, 8192, (uint64_t)size - 4096, 0));
	step("TRIM and CACHE past the end");
	nbd_fails(h, EINVAL, nbd_trim(h, 8192, (uint64_t)size - 4096, 0));
	nbd_fails(h, EINVAL, nbd_cache(h, 8192, (uint64_t)size, 0));
	step("BLOCK_STATUS past the end");
	{
		nbd_extent_callback cb = { .callback = no_extent };

		nbd_fails(h, EINVAL, nbd_block_status(h, 4096, (uint64_t)size, cb, 0));
	}

	if (min > 1) {
		step("unaligned requests");
		nbd_fails(h, EINVAL, nbd_pread(h, buf, (size_t)min, 1, 0));
		nbd_fails(h, EINVAL, nbd_pread(h, buf, (size_t)min + 1, 0, 0));
		nbd_fails(h, EINVAL, nbd_pwrite(h, buf, (size_t)min, (uint64_t)min / 2, 0));
		nbd_fails(h, EINVAL, nbd_zero(h, (uint64_t)min - 1, 0, 0));
		nbd_fails(h, EINVAL, nbd_trim(h, (uint64_t)min, 3, 0));
	}

	step("unknown command flags");
	nbd_fails(h, EINVAL, nbd_pread(h, buf, 4096, 0, 1u << 9));
	nbd_fails(h, EINVAL, nbd_pwrite(h, buf, 4096, 0, 1u << 13));
	nbd_fails(h, EINVAL, nbd_flush(h, LIBNBD_CMD_FLAG_NO_HOLE));
	nbd_fails(h, EINVAL, nbd_trim(h, 4096, 0, LIBNBD_CMD_FLAG_REQ_ONE));

	step("READ of 32 MiB is served, 32 MiB + 4096 refused");
	nbd_ok(h, nbd_pread(h, buf, 32 * MiB, 0, 0));
	expect_errno2(nbd_pread(h, buf, 32 * MiB + 4096, 0, 0), EINVAL, EOVERFLOW,
		      "READ of 32 MiB + 4096");
	step("the connection still works");
	nbd_ok(h, nbd_pwrite(h, buf, 65536, 0, 0));
	nbd_ok(h, nbd_pread(h, buf + 32 * MiB, 65536, 0, 0));
	expect(!memcmp(buf, buf + 32 * MiB, 65536), "data");
	disconnect(h);

	step("BLOCK_STATUS without a meta context");
	h = connect_lax(uri, false);
	{
		nbd_extent_callback cb = { .callback = no_extent };

		nbd_fails(h, EINVAL, nbd_block_status(h, 4096, 0, cb, 0));
	}
	nbd_ok(h, nbd_pread(h, buf, 4096, 0, 0));
	disconnect(h);

	step("WRITE of 32 MiB + 4096: refused or disconnected, others served");
	h = connect_lax(uri, true);
	expect(nbd_pwrite(h, buf, 32 * MiB + 4096, 0, 0) == -1, "succeeded");
	h2 = connect_lax(uri, true);
	nbd_ok(h2, nbd_pread(h2, buf, 4096, 0, 0));
	disconnect(h2);
	nbd_close(h);
	free(buf);
	printf("server-strict: errors ok\n");
	return 0;
}

static int
mode_multiconn(const char *uri, const char *file)
{
	struct nbd_handle *h[4];
	uint8_t *want = xmalloc(MiB), *got = xmalloc(MiB);

	for (int i = 0; i < 4; i++) {
		h[i] = connect_uri(uri);
		step("CAN_MULTI_CONN");
		expect(nbd_can_multi_conn(h[i]) == 1, "connection %d: no CAN_MULTI_CONN", i);
	}
	for (int round = 0; round < 4; round++) {
		step("writes on three connections, FLUSH on the fourth");
		for (int i = 0; i < 4; i++) {
			if (i == round)
				continue;
			pattern_fill(want, (uint64_t)i * MiB, MiB, (uint16_t)(round * 4 + i + 1));
			nbd_ok(h[i], nbd_pwrite(h[i], want, MiB, (uint64_t)i * MiB, 0));
		}
		nbd_ok(h[round], nbd_flush(h[round], 0));
		for (int i = 0; i < 4; i++) {
			if (i == round)
				continue;
			pattern_fill(want, (uint64_t)i * MiB, MiB, (uint16_t)(round * 4 + i + 1));
			step("the flushing connection reads the others' writes");
			nbd_ok(h[round], nbd_pread(h[round], got, MiB, (uint64_t)i * MiB, 0));
			expect(first_diff(got, want, MiB) < 0, "round %d, connection %d", round, i);
			step("the file holds them");
			file_pread(file, got, MiB, (uint64_t)i * MiB);
			expect(first_diff(got, want, MiB) < 0, "round %d, connection %d", round, i);
		}
	}
	for (int i = 0; i < 4; i++)
		disconnect(h[i]);
	free(want);
	free(got);
	printf("server-strict: multiconn ok\n");
	return 0;
}

int
main(int argc, char **argv)
{
	test_name = "server-strict";
	if (argc >= 3 && !strcmp(argv[1], "errors"))
		return mode_errors(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "multiconn"))
		return mode_multiconn(argv[2], argv[3]);
	fprintf(stderr, "usage: %s errors URI | multiconn URI FILE\n", argv[0]);
	return 2;
}
