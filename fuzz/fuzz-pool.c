/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: opening damaged thin pools. Set up once: a small pool (two
 * superblock slots, an 8-block journal ring, a checkpoint of generation > 1
 * holding a volume and its maps (RUN and MAP records), two snapshots
 * sharing its map's leaf and a clone with its own (LEAF, LREF, REF
 * records), then a second volume,
 * MAP, UNMAP, SNAP, COW and VOLDEL records committed to the journal after
 * it, and a crash: nothing
 * checkpointed at the end), whose metadata region (every block before the
 * data chunks) is kept in memory as the pristine image.
 *
 * One input = patches over a copy of that region, each
 *
 *   u8 block (modulo the region's blocks), u16 offset (LE, modulo 4096),
 *   u8 lenflags: bits 0-5 length - 1, bit 6 keep the crc as patched
 *   (otherwise the block's crc32c is sealed again after all patches, so
 *   the fuzzer gets past R6 into the superblock's fields, the checkpoint's
 *   records and the journal's replay), bit 7 xor instead of overwrite,
 *   then length bytes (fewer at the end of the input).
 *
 * The image is then checked (dio_tpool_check), opened read-only and
 * read-write; what opens lists its volumes, opens each and reads it
 * through libdio (psync engine); the read-write one also writes, syncs,
 * checkpoints and closes, and must open again (R7). A malformed image must
 * be refused with a message; a crash, leak, sanitizer report or hang is a
 * finding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/engine.h"
#include "dio/tpool.h"
#include "pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define POOL_SIZE (2u << 20)
#define READ_MAX (256u << 10)

static char path[4096];
static uint8_t *pristine, *image;	/* the metadata region: nblocks blocks */
static uint32_t nblocks;
static struct dio_ctx *ctx;
static uint8_t *iobuf;

__attribute__((noreturn)) static void
die(const char *what, int err)
{
	fprintf(stderr, "fuzz-pool: setup: %s: %s\n", what, strerror(err < 0 ? -err : err));
	abort();
}

/* Synchronous request on vol; what done() got. */
static int
io(struct dio_volume *vol, unsigned int op, uint32_t flags, uint64_t pos, uint64_t len)
{
	struct dio_req r = { .op = (uint8_t)op, .flags = flags, .pos = pos, .len = len,
			     .buf = op == DIO_REQ_READ || op == DIO_REQ_WRITE ? iobuf : NULL };

	return dio_submit_sync(ctx, vol, &r);
}

/* The pristine pool: a checkpointed volume, then journaled changes, then a crash. */
static void
build_pristine(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 16 << 10, .journal_blocks = 8,
					    .max_volumes = 6 };
	struct dio_tpool_opts o = { .no_direct = true };
	struct dio_volume *a, *b, *c;
	struct dio_tpool *p;
	struct tp_super sb;
	int fd, ret;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, POOL_SIZE) < 0)
		die(path, errno);
	close(fd);
	if ((ret = dio_tpool_create(path, &co, &o)) < 0)
		die("dio_tpool_create", ret);
	if ((ret = dio_tpool_open(path, &o, &p)) < 0 ||
	    (ret = dio_tpool_volume_create(p, "a", 1 << 20)) < 0 ||
	    (ret = dio_tpool_volume_open(p, "a", &a)) < 0)
		die("volume a", ret);
	memset(iobuf, 0xa1, READ_MAX);
	if ((ret = io(a, DIO_REQ_WRITE, 0, 0, 40 << 10)) < 0 ||
	    (ret = io(a, DIO_REQ_WRITE, 0, 300 << 10, 4096)) < 0 ||
	    (ret = io(a, DIO_REQ_FLUSH, 0, 0, 0)) < 0)
		die("writes to a", ret);
	/*
	 * Snapshots s and s2 share a's leaf, clone c gets its own by writing,
	 * a its own too: the checkpoint holds a shared leaf (LEAF, LREF) and
	 * chunks with 3 references (REF).
	 */
	if ((ret = dio_tpool_volume_snapshot(p, "a", "s")) < 0 ||
	    (ret = dio_tpool_volume_snapshot(p, "a", "s2")) < 0 ||
	    (ret = dio_tpool_volume_clone(p, "a", "c")) < 0 ||
	    (ret = dio_tpool_volume_open(p, "c", &c)) < 0)
		die("snapshots of a", ret);
	memset(iobuf, 0xc3, READ_MAX);
	if ((ret = io(c, DIO_REQ_WRITE, 0, 4096, 4096)) < 0 ||
	    (ret = io(a, DIO_REQ_WRITE, 0, 200 << 10, 4096)) < 0 ||
	    (ret = io(a, DIO_REQ_FLUSH, 0, 0, 0)) < 0 || (ret = dio_tpool_checkpoint(p)) < 0)
		die("checkpoint of a and its snapshots", ret);
	dio_volume_put(c);
	/* After the checkpoint: journal records only. */
	if ((ret = dio_tpool_volume_create(p, "b", 512 << 10)) < 0 ||
	    (ret = dio_tpool_volume_open(p, "b", &b)) < 0)
		die("volume b", ret);
	memset(iobuf, 0xb2, READ_MAX);
	if ((ret = io(b, DIO_REQ_WRITE, 0, 16 << 10, 20 << 10)) < 0 ||
	    (ret = io(a, DIO_REQ_WRITE, 0, 600 << 10, 8192)) < 0 ||
	    (ret = io(a, DIO_REQ_TRIM, 0, 300 << 10, 4096)) < 0 ||
	    (ret = io(b, DIO_REQ_FLUSH, 0, 0, 0)) < 0 ||
	    (ret = io(b, DIO_REQ_WRITE, DIO_REQ_FUA, 100 << 10, 4096)) < 0)
		die("journaled writes", ret);
	/* a snapshot and a copy-on-write in the journal */
	dio_volume_put(b);
	if ((ret = dio_tpool_volume_delete(p, "s2")) < 0 ||
	    (ret = dio_tpool_volume_snapshot(p, "b", "bs")) < 0 ||
	    (ret = dio_tpool_volume_open(p, "b", &b)) < 0 ||
	    (ret = io(b, DIO_REQ_WRITE, DIO_REQ_FUA, 16 << 10, 4096)) < 0)
		die("journaled snapshot", ret);
	sb = p->sb;
	/* A crash: nothing more is written on the way out. */
	p->readonly = true;
	dio_volume_put(a);
	dio_volume_put(b);
	dio_tpool_close(p);

	nblocks = (uint32_t)(sb.data_start / TP_BLOCK);
	pristine = malloc((size_t)nblocks * TP_BLOCK);
	image = malloc((size_t)nblocks * TP_BLOCK);
	fd = open(path, O_RDONLY);
	if (!pristine || !image || fd < 0 ||
	    pread(fd, pristine, (size_t)nblocks * TP_BLOCK, 0) != (ssize_t)nblocks * TP_BLOCK)
		die("reading the pristine pool", errno);
	close(fd);
}

/* The pool file is opened by path for every input: it goes at exit. */
static void
remove_image(void)
{
	unlink(path);
}

static void
setup(void)
{
	const char *dir = getenv("DIO_FUZZ_DIR");
	struct dio_ctx_opts co = { .engine = { .kind = DIO_ENGINE_PSYNC, .threads = 1 },
				   .pool = { .arena_size = 1 << 20 } };
	int ret;

	if (ctx)
		return;
	snprintf(path, sizeof(path), "%s/fuzz-pool-%d.img", dir ? dir : ".", (int)getpid());
	atexit(remove_image);
	if ((ret = dio_ctx_create(&co, &ctx)) < 0)
		die("dio_ctx_create", ret);
	if (posix_memalign((void **)&iobuf, 4096, READ_MAX))
		die("buffer", ENOMEM);
	build_pristine();
}

/* Put the patched metadata region on the pool file (the data chunks stay). */
static void
write_image(const uint8_t *data, size_t size)
{
	uint8_t *resealed = calloc(nblocks, 1);
	int fd;

	memcpy(image, pristine, (size_t)nblocks * TP_BLOCK);
	while (resealed && size >= 4) {
		uint32_t blk = data[0] % nblocks, off = (data[1] | (uint32_t)data[2] << 8) % TP_BLOCK;
		uint32_t len = (data[3] & 0x3f) + 1u;
		bool keep_crc = data[3] & 0x40, xor = data[3] & 0x80;
		uint8_t *b = image + (size_t)blk * TP_BLOCK;

		data += 4;
		size -= 4;
		if (len > size)
			len = (uint32_t)size;
		if (len > TP_BLOCK - off)
			len = TP_BLOCK - off;
		for (uint32_t i = 0; i < len; i++)
			b[off + i] = xor ? b[off + i] ^ data[i] : data[i];
		data += len;
		size -= len;
		if (!keep_crc)
			resealed[blk] = 1;
	}
	for (uint32_t blk = 0; resealed && blk < nblocks; blk++) {
		struct tp_hdr *h = (struct tp_hdr *)(image + (size_t)blk * TP_BLOCK);

		if (!resealed[blk])
			continue;
		h->crc = 0;
		h->crc = tp_crc32c(0, h, TP_BLOCK);
	}
	free(resealed);
	fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, image, (size_t)nblocks * TP_BLOCK, 0) != (ssize_t)nblocks * TP_BLOCK ||
	    ftruncate(fd, POOL_SIZE) < 0)
		die("writing the image", errno);
	close(fd);
}

/* List the volumes of p, open each and read it; write too when rw. */
static void
exercise(struct dio_tpool *p, bool rw)
{
	struct dio_tpool_vol_info *vi;
	struct dio_tpool_info info;
	size_t n;

	dio_tpool_get_info(p, &info);
	if (dio_tpool_volume_list(p, &vi, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct dio_volume *v;
		uint64_t len = vi[i].size < READ_MAX ? vi[i].size : READ_MAX;

		if (dio_tpool_volume_open(p, vi[i].name, &v) < 0)
			continue;
		io(v, DIO_REQ_READ, 0, 0, len);
		if (vi[i].size > READ_MAX)
			io(v, DIO_REQ_READ, 0, vi[i].size - len, len);
		if (rw && len >= 8192) {
			memset(iobuf, 0x5a, 8192);
			io(v, DIO_REQ_WRITE, 0, 0, 8192);
			io(v, DIO_REQ_WRITE, DIO_REQ_FUA, len - 4096, 4096);
			io(v, DIO_REQ_TRIM, 0, 4096, 4096);
			io(v, DIO_REQ_FLUSH, 0, 0, 0);
			io(v, DIO_REQ_READ, 0, 0, len);
		}
		dio_volume_put(v);
	}
	free(vi);
	if (rw) {
		dio_tpool_sync(p);
		dio_tpool_checkpoint(p);
	}
}

static void
report(void *priv, int severity, const char *msg)
{
	(void)priv;
	(void)severity;
	if (!msg[0])
		abort();	/* every finding says what it is */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct dio_tpool_opts ro = { .readonly = true, .no_direct = true, .errbuf = err,
				     .errlen = sizeof(err) };
	struct dio_tpool_opts rw = { .no_direct = true, .errbuf = err, .errlen = sizeof(err) };
	struct dio_tpool_check_result res;
	struct dio_tpool *p;
	bool opened;
	int ret;

	setup();
	write_image(data, size);
	dio_tpool_check(path, &ro, report, NULL, &res);

	err[0] = 0;
	ret = dio_tpool_open(path, &ro, &p);
	if (ret < 0 && !err[0])
		abort();	/* refused without saying why */
	if (ret == 0) {
		exercise(p, false);
		dio_tpool_close(p);
	}

	err[0] = 0;
	ret = dio_tpool_open(path, &rw, &p);
	if (ret < 0 && !err[0])
		abort();
	opened = ret == 0;
	if (opened) {
		exercise(p, !p->readonly);
		dio_tpool_close(p);
		/* R7: what opened and was written and closed opens again. */
		ret = dio_tpool_open(path, &rw, &p);
		if (ret < 0) {
			fprintf(stderr, "fuzz-pool: opened, closed, cannot reopen: %s\n", err);
			abort();
		}
		dio_tpool_close(p);
	}
	return 0;
}
