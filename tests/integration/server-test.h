/* SPDX-License-Identifier: MIT */
/*
 * What the dionbd test programs (tests/integration/server-*.c) share:
 * failing loudly, patterns that show misplaced bytes, libnbd connections,
 * and the backing file's own view of its extents.
 */
#ifndef DIONBD_SERVER_TEST_H
#define DIONBD_SERVER_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *test_name = "server-test";
static const char *test_step = "start";
/* If set, die() calls it after its message: what only the program can add. */
static void (*die_extra)(void);

/* Print "NAME: FAIL: step: message" and exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: FAIL: %s: ", test_name, test_step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (die_extra)
		die_extra();
	exit(1);
}

/* Name what the following checks are about, for the failure message. */
static inline void
step(const char *what)
{
	test_step = what;
}

#define expect(cond, ...)			\
	do {					\
		if (!(cond))			\
			die(__VA_ARGS__);	\
	} while (0)

/* A libnbd call that must succeed. */
#define nbd_ok(h, call)							\
	do {								\
		if ((call) == -1)					\
			die("%s: %s", #call, nbd_get_error());		\
	} while (0)

/* A libnbd call that must fail with errno want. */
#define nbd_fails(h, want, call)					\
	do {								\
		if ((call) != -1)					\
			die("%s succeeded, want %s", #call, strerror(want)); \
		if (nbd_get_errno() != (want))				\
			die("%s: got errno %d (%s), want %s", #call,	\
			    nbd_get_errno(), nbd_get_error(), strerror(want)); \
	} while (0)

static inline double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory (%zu bytes)", n);
	return p;
}

/*
 * Fill buf with the bytes at [off, off+len) of a pattern made of 8-byte
 * words that encode (seed, their own offset): a byte read from the wrong
 * place or the wrong write shows.
 */
static inline void
pattern_fill(void *buf, uint64_t off, size_t len, uint16_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		uint64_t pos = off + i;
		uint64_t word = ((uint64_t)seed << 48) | (pos & ~UINT64_C(7));

		p[i] = (uint8_t)(word >> (8 * (pos & 7)));
	}
}

/* The first offset where buf differs from want, or -1. */
static inline int64_t
first_diff(const void *buf, const void *want, size_t len)
{
	const uint8_t *a = buf, *b = want;

	if (!memcmp(a, b, len))
		return -1;
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (int64_t)i;
	return -1;
}

static inline bool
all_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	return len == 0 || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

/* A new handle connected to uri, with base:allocation asked for. */
static inline struct nbd_handle *
connect_uri(const char *uri)
{
	struct nbd_handle *h = nbd_create();

	if (!h)
		die("nbd_create: %s", nbd_get_error());
	nbd_ok(h, nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION));
	if (nbd_connect_uri(h, uri) == -1)
		die("connect %s: %s", uri, nbd_get_error());
	return h;
}

/* Shut a handle down cleanly (NBD_CMD_DISC) and free it. */
static inline void
disconnect(struct nbd_handle *h)
{
	nbd_ok(h, nbd_shutdown(h, 0));
	nbd_close(h);
}

/* Read [off, off+len) of a file, bypassing nothing: what a reader would see. */
static inline void
file_pread(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY);
	size_t got = 0;

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (n < 0)
			die("pread %s: %s", path, strerror(errno));
		if (n == 0) {
			memset((char *)buf + got, 0, len - got);
			break;
		}
		got += (size_t)n;
	}
	close(fd);
}

enum file_kind { FK_HOLE, FK_UNWRITTEN, FK_DATA };

static inline const char *
file_kind_name(enum file_kind k)
{
	return k == FK_HOLE ? "hole" : k == FK_UNWRITTEN ? "unwritten" : "data";
}

/*
 * What the file holds at each of its nblocks blocks of bs bytes, from
 * FIEMAP (synced first): a hole, an unwritten (allocated, reads as zeros)
 * extent, or data. Checked against SEEK_DATA/SEEK_HOLE: a block SEEK_HOLE
 * calls data must be allocated. Returns a malloc'ed array.
 */
static inline enum file_kind *
file_map(const char *path, uint64_t bs, uint64_t *nblocks)
{
	enum { N = 128 };
	size_t sz = sizeof(struct fiemap) + N * sizeof(struct fiemap_extent);
	struct fiemap *fm = xmalloc(sz);
	enum file_kind *map;
	struct stat st;
	uint64_t start = 0, nb;
	bool last = false;
	off_t pos;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		die("open %s: %s", path, strerror(errno));
	nb = ((uint64_t)st.st_size + bs - 1) / bs;
	map = xmalloc(nb * sizeof(*map));
	for (uint64_t i = 0; i < nb; i++)
		map[i] = FK_HOLE;
	while (!last) {
		memset(fm, 0, sz);
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = N;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
			die("FIEMAP %s: %s", path, strerror(errno));
		if (fm->fm_mapped_extents == 0)
			break;
		for (unsigned int i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];
			enum file_kind k = (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) ?
					   FK_UNWRITTEN : FK_DATA;

			for (uint64_t b = e->fe_logical / bs;
			     b < nb && b * bs < e->fe_logical + e->fe_length; b++)
				map[b] = k;
			start = e->fe_logical + e->fe_length;
			last = e->fe_flags & FIEMAP_EXTENT_LAST;
		}
	}
	/* SEEK_DATA stops at every allocated range (ext4 may skip unwritten ones). */
	pos = 0;
	while ((pos = lseek(fd, pos, SEEK_DATA)) >= 0 && pos < st.st_size) {
		off_t end = lseek(fd, pos, SEEK_HOLE);

		if (end < 0)
			die("SEEK_HOLE %s: %s", path, strerror(errno));
		for (uint64_t b = (uint64_t)pos / bs; b * bs < (uint64_t)end && b < nb; b++)
			if (map[b] == FK_HOLE)
				die("%s: SEEK_DATA says block %" PRIu64 " is data, FIEMAP has none",
				    path, b);
		pos = end;
	}
	/* SEEK_DATA past the last data gives ENXIO. */
	if (pos < 0 && errno != ENXIO)
		die("SEEK_DATA %s: %s", path, strerror(errno));
	close(fd);
	free(fm);
	*nblocks = nb;
	return map;
}

#endif /* DIONBD_SERVER_TEST_H */
