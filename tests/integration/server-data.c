/* SPDX-License-Identifier: MIT */
/*
 * server-data URI FILE: the data path of dionbd through libnbd. Patterned
 * writes read back (structured and simple replies) and found in the backing
 * FILE; FUA; flush; trim then zeros; write-zeroes plain, NO_HOLE (the range
 * stays allocated) and FAST_ZERO (zeros or a quick ENOTSUP).
 */
#include "server-test.h"

#define MiB (UINT64_C(1) << 20)

struct wcase {
	uint64_t off;
	uint64_t len;
};

/* Disjoint, aligned to 4096 (the largest minimum block a volume may have). */
static const struct wcase cases[] = {
	{ 0, 4096 },
	{ 4096, 65536 },
	{ 1 * MiB, 4096 },
	{ 3 * MiB, 4 * MiB },
	{ 8 * MiB + 3 * 4096, 12288 },
	{ 9 * MiB, 1 * MiB },
	{ 16 * MiB, 32 * MiB },	/* the largest payload the server takes */
	{ 64 * MiB - 8192, 8192 },	/* the end of the export */
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static uint8_t *want, *got;

static void
check_caps(struct nbd_handle *h, const char *file)
{
	struct stat st;
	int64_t min, pref, max;

	step("capabilities");
	if (stat(file, &st) < 0)
		die("stat %s: %s", file, strerror(errno));
	expect(nbd_get_size(h) == st.st_size, "size %" PRId64 ", file has %jd",
	       nbd_get_size(h), (intmax_t)st.st_size);
	expect(nbd_get_size(h) == (int64_t)(64 * MiB), "this test wants a 64 MiB export");
	expect(nbd_is_read_only(h) == 0, "read-only");
	expect(nbd_can_flush(h) == 1, "no FLUSH");
	expect(nbd_can_fua(h) == 1, "no FUA");
	expect(nbd_can_trim(h) == 1, "no TRIM");
	expect(nbd_can_zero(h) == 1, "no WRITE_ZEROES");
	expect(nbd_can_cache(h) == 1, "no CACHE");
	expect(nbd_can_df(h) == 1, "no DF");
	expect(nbd_can_multi_conn(h) == 1, "no CAN_MULTI_CONN");
	expect(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1,
	       "base:allocation not negotiated");
	expect(nbd_get_structured_replies_negotiated(h) == 1, "no structured replies");
	min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
	max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	expect(min >= 1 && min <= 4096 && !(min & (min - 1)), "minimum block %" PRId64, min);
	expect(pref >= 4096 && pref >= min && !(pref & (pref - 1)), "preferred block %" PRId64,
	       pref);
	expect(max == (int64_t)(32 * MiB), "maximum payload %" PRId64 ", want 32 MiB", max);
}

/* Every case reads back through h as written, and the file holds it. */
static void
check_cases(struct nbd_handle *h, const char *file, const char *what)
{
	for (size_t i = 0; i < NCASES; i++) {
		const struct wcase *c = &cases[i];
		int64_t d;

		step(what);
		pattern_fill(want, c->off, c->len, (uint16_t)(i + 1));
		nbd_ok(h, nbd_pread(h, got, c->len, c->off, 0));
		d = first_diff(got, want, c->len);
		expect(d < 0, "case %zu (%" PRIu64 "+%" PRIu64 "): first wrong byte at %" PRIu64,
		       i, c->off, c->len, c->off + (uint64_t)d);
		if (!file)
			continue;
		file_pread(file, got, c->len, c->off);
		d = first_diff(got, want, c->len);
		expect(d < 0, "file, case %zu: first wrong byte at %" PRIu64, i,
		       c->off + (uint64_t)d);
	}
}

/* [off, off+len) reads as zeros through h and in the file. */
static void
check_zero(struct nbd_handle *h, const char *file, uint64_t off, uint64_t len)
{
	nbd_ok(h, nbd_pread(h, got, len, off, 0));
	expect(all_zero(got, len), "%" PRIu64 "+%" PRIu64 " does not read as zeros", off, len);
	file_pread(file, got, len, off);
	expect(all_zero(got, len), "file: %" PRIu64 "+%" PRIu64 " is not zeros", off, len);
}

static void
write_case(struct nbd_handle *h, size_t i, uint32_t flags)
{
	const struct wcase *c = &cases[i];

	pattern_fill(want, c->off, c->len, (uint16_t)(i + 1));
	nbd_ok(h, nbd_pwrite(h, want, c->len, c->off, flags));
}

struct df_state {
	unsigned int chunks;
};

/* Count a DF read's chunks; libnbd has already placed their data in the buffer. */
static int
df_chunk(void *user_data, const void *subbuf, size_t count, uint64_t offset,
	 unsigned int status, int *error)
{
	struct df_state *df = user_data;

	if (status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE)
		df->chunks++;
	return 0;
}

int
main(int argc, char **argv)
{
	struct df_state df;
	struct nbd_handle *h, *h2;
	const char *uri, *file;
	uint64_t nb;
	enum file_kind *map;
	int r;

	test_name = "server-data";
	if (argc != 3) {
		fprintf(stderr, "usage: %s URI FILE\n", argv[0]);
		return 2;
	}
	uri = argv[1];
	file = argv[2];
	want = xmalloc(32 * MiB);
	got = xmalloc(32 * MiB);
	h = connect_uri(uri);
	check_caps(h, file);

	step("a fresh volume reads as zeros (32 MiB of holes in one READ)");
	nbd_ok(h, nbd_pread(h, got, 32 * MiB, 0, 0));
	expect(all_zero(got, 32 * MiB), "not zeros");

	step("patterned writes");
	for (size_t i = 0; i < NCASES; i++)
		write_case(h, i, 0);
	check_cases(h, NULL, "read back");
	step("flush");
	nbd_ok(h, nbd_flush(h, 0));
	check_cases(h, file, "read back after flush");

	step("simple replies");
	h2 = nbd_create();
	if (!h2)
		die("nbd_create: %s", nbd_get_error());
	nbd_ok(h2, nbd_set_request_structured_replies(h2, false));
	nbd_ok(h2, nbd_connect_uri(h2, uri));
	expect(nbd_get_structured_replies_negotiated(h2) == 0, "structured replies anyway");
	check_cases(h2, NULL, "read back with simple replies");
	step("simple replies: a hole");
	nbd_ok(h2, nbd_pread(h2, got, 1 * MiB, 2 * MiB, 0));
	expect(all_zero(got, 1 * MiB), "a hole with simple replies");
	disconnect(h2);

	step("FUA writes: overwrite and allocating");
	write_case(h, 2, LIBNBD_CMD_FLAG_FUA);
	pattern_fill(want, 12 * MiB, 256 * 1024, 100);
	nbd_ok(h, nbd_pwrite(h, want, 256 * 1024, 12 * MiB, LIBNBD_CMD_FLAG_FUA));
	file_pread(file, got, 256 * 1024, 12 * MiB);
	expect(first_diff(got, want, 256 * 1024) < 0, "file lacks the FUA write");

	step("DF read: one chunk");
	df.chunks = 0;
	nbd_ok(h, nbd_pread_structured(h, got, 256 * 1024, 12 * MiB,
				       (nbd_chunk_callback) { .callback = df_chunk, .user_data = &df },
				       LIBNBD_CMD_FLAG_DF));
	expect(df.chunks == 1, "%u chunks", df.chunks);
	expect(first_diff(got, want, 256 * 1024) < 0, "DF read");

	step("cache");
	nbd_ok(h, nbd_cache(h, 3 * MiB, 1 * MiB, 0));

	step("trim then read zeros");
	nbd_ok(h, nbd_trim(h, 1 * MiB, 3 * MiB, 0));
	nbd_ok(h, nbd_flush(h, 0));
	check_zero(h, file, 3 * MiB, 1 * MiB);
	step("trim with FUA");
	nbd_ok(h, nbd_trim(h, 512 * 1024, 9 * MiB, LIBNBD_CMD_FLAG_FUA));
	check_zero(h, file, 9 * MiB, 512 * 1024);
	pattern_fill(want, 9 * MiB, 1 * MiB, 6);
	nbd_ok(h, nbd_pread(h, got, 512 * 1024, 9 * MiB + 512 * 1024, 0));
	expect(first_diff(got, want + 512 * 1024, 512 * 1024) < 0,
	       "data after the trimmed range changed");

	step("write-zeroes");
	nbd_ok(h, nbd_zero(h, 256 * 1024, 5 * MiB, 0));
	check_zero(h, file, 5 * MiB, 256 * 1024);
	pattern_fill(want, 3 * MiB, 4 * MiB, 4);
	nbd_ok(h, nbd_pread(h, got, 1 * MiB, 6 * MiB, 0));
	expect(first_diff(got, want + 3 * MiB, 1 * MiB) < 0, "data after the zeroes changed");

	step("write-zeroes with NO_HOLE");
	nbd_ok(h, nbd_zero(h, 1 * MiB, 16 * MiB, LIBNBD_CMD_FLAG_NO_HOLE));
	nbd_ok(h, nbd_flush(h, 0));
	check_zero(h, file, 16 * MiB, 1 * MiB);
	map = file_map(file, 4096, &nb);
	for (uint64_t b = 16 * MiB / 4096; b < 17 * MiB / 4096; b++)
		expect(map[b] != FK_HOLE, "NO_HOLE left a hole at block %" PRIu64, b);
	free(map);

	step("write-zeroes with FUA and NO_HOLE");
	nbd_ok(h, nbd_zero(h, 64 * 1024, 17 * MiB, LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FUA));
	check_zero(h, file, 17 * MiB, 64 * 1024);

	step("write-zeroes with FAST_ZERO");
	if (nbd_can_fast_zero(h) == 1) {
		r = nbd_zero(h, 1 * MiB, 20 * MiB, LIBNBD_CMD_FLAG_FAST_ZERO);
		if (r == -1) {
			expect(nbd_get_errno() == ENOTSUP, "FAST_ZERO failed with %s, want ENOTSUP",
			       nbd_get_error());
		} else {
			check_zero(h, file, 20 * MiB, 1 * MiB);
		}
		r = nbd_zero(h, 1 * MiB, 21 * MiB,
			     LIBNBD_CMD_FLAG_FAST_ZERO | LIBNBD_CMD_FLAG_NO_HOLE);
		if (r == -1)
			expect(nbd_get_errno() == ENOTSUP, "FAST_ZERO|NO_HOLE failed with %s",
			       nbd_get_error());
		else
			check_zero(h, file, 21 * MiB, 1 * MiB);
	} else {
		fprintf(stderr, "%s: the server does not advertise FAST_ZERO\n", test_name);
	}

	step("the rest is untouched");
	pattern_fill(want, 16 * MiB, 32 * MiB, 7);
	nbd_ok(h, nbd_pread(h, got, 8 * MiB, 24 * MiB, 0));
	expect(first_diff(got, want + 8 * MiB, 8 * MiB) < 0, "data at 24 MiB changed");
	pattern_fill(want, 64 * MiB - 8192, 8192, 8);
	nbd_ok(h, nbd_pread(h, got, 8192, 64 * MiB - 8192, 0));
	expect(first_diff(got, want, 8192) < 0, "the last blocks changed");

	step("disconnect");
	disconnect(h);
	free(want);
	free(got);
	printf("%s: ok\n", test_name);
	return 0;
}
