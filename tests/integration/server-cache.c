/* SPDX-License-Identifier: MIT */
/*
 * server-cache: what dionbd's block cache promises, seen from a client.
 *   server-cache flush CACHED-URI FILE: a WRITE through a writeback export
 *     is not in FILE before FLUSH (so the cache is really in between), and is
 *     there once FLUSH replied; then leaves without NBD_CMD_DISC, so that the
 *     caller can SIGKILL the daemon and run "check".
 *   server-cache noflush CACHED-URI FILE: the same WRITE, not in FILE yet,
 *     and a clean disconnect without FLUSH (the daemon's stop must write it).
 *   server-cache check FILE: FILE holds what "flush" or "noflush" wrote.
 *   server-cache subblock CACHED-URI DIRECT-URI: writes of 512-byte sectors,
 *     smaller than the cache's 4 KiB blocks, through the cached export, read
 *     back at once through the other export of the same file and this one.
 */
#include "server-test.h"

#define REGION	(1u << 20)
#define SEED	4242

static void
check_file(const char *file, bool want)
{
	uint8_t *got = xmalloc(REGION), *exp = xmalloc(REGION);
	int64_t d;

	pattern_fill(exp, 0, REGION, SEED);
	file_pread(file, got, REGION, 0);
	d = first_diff(got, exp, REGION);
	if (want)
		expect(d < 0, "the file differs at %" PRId64 " from what FLUSH made durable", d);
	else
		expect(d >= 0, "a writeback WRITE reached the file before any FLUSH");
	free(got);
	free(exp);
}

int
main(int argc, char **argv)
{
	test_name = "server-cache";
	if (argc == 4 && (!strcmp(argv[1], "flush") || !strcmp(argv[1], "noflush"))) {
		bool flush = !strcmp(argv[1], "flush");
		struct nbd_handle *h = connect_uri(argv[2]);
		uint8_t *buf = xmalloc(REGION);

		pattern_fill(buf, 0, REGION, SEED);
		nbd_ok(h, nbd_pwrite(h, buf, REGION, 0, 0));
		check_file(argv[3], false);
		if (flush) {
			nbd_ok(h, nbd_flush(h, 0));
			check_file(argv[3], true);
			printf("server-cache: flushed\n");
			nbd_close(h);	/* no NBD_CMD_DISC: the daemon is killed next */
		} else {
			disconnect(h);
		}
		free(buf);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "check")) {
		check_file(argv[2], true);
		printf("server-cache: the flushed data survived\n");
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "subblock")) {
		struct nbd_handle *hc = connect_uri(argv[2]), *hd = connect_uri(argv[3]);
		uint64_t size = (uint64_t)nbd_get_size(hc);
		uint8_t *shadow = xmalloc(4 * REGION), w[3584], r[4608];
		uint64_t rng = 88172645463325252ull;

		expect(size >= 4 * REGION, "export too small");
		nbd_ok(hd, nbd_pread(hd, shadow, 4 * REGION, 0, 0));
		for (int i = 0; i < 2000; i++) {
			uint64_t off, len;

			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			off = rng % (4 * REGION - sizeof(w)) / 512 * 512;
			len = (rng >> 32) % 7 * 512 + 512;
			pattern_fill(w, off, len, (uint16_t)(i + 1));
			nbd_ok(hc, nbd_pwrite(hc, w, len, off, 0));
			memcpy(shadow + off, w, len);
			/* read around it through the other export, and through this one */
			off = off >= 512 ? off - 512 : 0;
			nbd_ok(hd, nbd_pread(hd, r, sizeof(r), off, 0));
			expect(first_diff(r, shadow + off, sizeof(r)) < 0,
			       "write %d: the direct export reads stale data at %" PRIu64, i, off);
			nbd_ok(hc, nbd_pread(hc, r, sizeof(r), off, 0));
			expect(first_diff(r, shadow + off, sizeof(r)) < 0,
			       "write %d: the cached export reads wrong data at %" PRIu64, i, off);
		}
		nbd_ok(hc, nbd_flush(hc, 0));
		disconnect(hc);
		disconnect(hd);
		free(shadow);
		printf("server-cache: 2000 sub-block writes read back exactly\n");
		return 0;
	}
	fprintf(stderr, "usage: %s flush URI FILE | check FILE | subblock URI URI\n", argv[0]);
	return 2;
}
