/* SPDX-License-Identifier: MIT */
/*
 * server-extents prepare FILE | check URI FILE: BLOCK_STATUS
 * (base:allocation) against the backing file's real map. "prepare" lays out
 * data, unwritten (fallocated) ranges and holes in FILE before the daemon
 * starts; "check" compares every 4 KiB block's status with FIEMAP and
 * SEEK_DATA/SEEK_HOLE, changes the map through NBD (write, trim,
 * write-zeroes with and without NO_HOLE) and compares again.
 */
#include "server-test.h"

#define MiB (UINT64_C(1) << 20)
#define BS 4096

static int
mode_prepare(const char *file)
{
	uint8_t *buf = xmalloc(MiB);
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);

	step("prepare");
	if (fd < 0 || ftruncate(fd, 32 * MiB) < 0)
		die("%s: %s", file, strerror(errno));
	pattern_fill(buf, 0, MiB, 1);
	if (pwrite(fd, buf, MiB, 0) != (ssize_t)MiB ||
	    pwrite(fd, buf, 8192, 4 * MiB + BS) != 8192 ||
	    pwrite(fd, buf, BS, 32 * MiB - BS) != BS)
		die("pwrite: %s", strerror(errno));
	if (fallocate(fd, 0, 2 * MiB, MiB) < 0)
		die("fallocate: %s", strerror(errno));
	/* Unwritten, then written in its middle. */
	if (fallocate(fd, 0, 6 * MiB, MiB) < 0 ||
	    pwrite(fd, buf, 65536, 6 * MiB + 65536) != 65536)
		die("fallocate+pwrite: %s", strerror(errno));
	if (fsync(fd) < 0)
		die("fsync: %s", strerror(errno));
	close(fd);
	free(buf);
	return 0;
}

struct bs_state {
	const enum file_kind *map;
	uint64_t nblocks;
	uint64_t next;		/* where the next extent must start */
	unsigned int calls, entries;
};

static int
bs_extent(void *user_data, const char *ctx, uint64_t offset, uint32_t *e, size_t n, int *error)
{
	struct bs_state *st = user_data;

	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION))
		return 0;
	st->calls++;
	expect(offset == st->next, "extents start at %" PRIu64 ", want %" PRIu64, offset,
	       st->next);
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint64_t len = e[i];
		uint32_t flags = e[i + 1];

		st->entries++;
		expect(len > 0, "an extent of length 0 at %" PRIu64, st->next);
		expect(!(flags & ~(uint32_t)(LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)),
		       "unknown state bits 0x%x", flags);
		for (uint64_t pos = st->next; pos < st->next + len && pos / BS < st->nblocks;
		     pos += BS) {
			enum file_kind k = st->map[pos / BS];
			bool hole = flags & LIBNBD_STATE_HOLE, zero = flags & LIBNBD_STATE_ZERO;

			switch (k) {
			case FK_HOLE:
				expect(hole && zero, "block at %" PRIu64 " is a hole in the file, "
				       "status 0x%x", pos, flags);
				break;
			case FK_UNWRITTEN:
				expect(zero, "block at %" PRIu64 " is unwritten in the file, "
				       "status 0x%x", pos, flags);
				break;
			case FK_DATA:
				expect(!hole && !zero, "block at %" PRIu64 " holds data in the file, "
				       "status 0x%x", pos, flags);
				break;
			}
		}
		st->next += len;
	}
	return 0;
}

/* The whole export's block status agrees with the file's map. */
static void
compare(struct nbd_handle *h, const char *file, const char *what)
{
	struct bs_state st = { 0 };
	uint64_t size = (uint64_t)nbd_get_size(h);
	enum file_kind *map;

	step(what);
	map = file_map(file, BS, &st.nblocks);
	st.map = map;
	while (st.next < size) {
		uint64_t before = st.next;
		uint64_t len = size - st.next > 64 * MiB ? 64 * MiB : size - st.next;

		nbd_ok(h, nbd_block_status(h, len, st.next,
					   (nbd_extent_callback) { .callback = bs_extent,
								   .user_data = &st }, 0));
		expect(st.next > before, "no progress at %" PRIu64, before);
	}
	step("REQ_ONE: one extent per reply");
	for (uint64_t off = 0; off < size; off += 3 * MiB) {
		struct bs_state one = { .map = map, .nblocks = st.nblocks, .next = off };

		nbd_ok(h, nbd_block_status(h, MiB, off,
					   (nbd_extent_callback) { .callback = bs_extent,
								   .user_data = &one },
					   LIBNBD_CMD_FLAG_REQ_ONE));
		expect(one.entries == 1, "%u extents at %" PRIu64, one.entries, off);
	}
	free(map);
}

static int
mode_check(const char *uri, const char *file)
{
	struct nbd_handle *h = connect_uri(uri);
	uint8_t *buf = xmalloc(MiB);
	uint64_t nb;
	enum file_kind *map;

	expect(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1,
	       "base:allocation not negotiated");
	compare(h, file, "the prepared map");

	step("change the map through NBD");
	pattern_fill(buf, 8 * MiB, MiB, 2);
	nbd_ok(h, nbd_pwrite(h, buf, MiB, 8 * MiB, 0));
	nbd_ok(h, nbd_trim(h, 512 * 1024, 0, 0));
	nbd_ok(h, nbd_zero(h, 8192, 4 * MiB, 0));
	nbd_ok(h, nbd_zero(h, 65536, 10 * MiB, LIBNBD_CMD_FLAG_NO_HOLE));
	nbd_ok(h, nbd_trim(h, 2 * MiB, 6 * MiB, 0));
	nbd_ok(h, nbd_flush(h, 0));
	step("trimmed ranges are no longer data");
	map = file_map(file, BS, &nb);
	for (uint64_t b = 0; b < 512 * 1024 / BS; b++)
		expect(map[b] != FK_DATA, "block %" PRIu64 " still data after TRIM", b);
	for (uint64_t b = 10 * MiB / BS; b < (10 * MiB + 65536) / BS; b++)
		expect(map[b] != FK_HOLE, "NO_HOLE left block %" PRIu64 " a hole", b);
	free(map);
	compare(h, file, "the map after write, trim and write-zeroes");
	disconnect(h);
	free(buf);
	printf("server-extents: ok\n");
	return 0;
}

int
main(int argc, char **argv)
{
	test_name = "server-extents";
	if (argc == 3 && !strcmp(argv[1], "prepare"))
		return mode_prepare(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "check"))
		return mode_check(argv[2], argv[3]);
	fprintf(stderr, "usage: %s prepare FILE | check URI FILE\n", argv[0]);
	return 2;
}
