/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

enum dio_engine_kind
test_engine_kind(void)
{
	const char *e = getenv("DIO_TEST_ENGINE");

	if (e && strcmp(e, "psync") == 0)
		return DIO_ENGINE_PSYNC;
	return DIO_ENGINE_URING;
}

struct dio_engine *
test_engine_create(void)
{
	struct dio_engine_opts o = { .kind = test_engine_kind(), .depth = 64, .threads = 4 };
	struct dio_engine *e = NULL;
	int ret = dio_engine_create(&o, &e);

	cr_assert_eq(ret, 0, "engine create: %s", strerror(-ret));
	return e;
}

struct dio_ctx *
test_ctx_create(const struct dio_fault_opts *fault, struct dio_engine **fault_out)
{
	struct dio_ctx_opts o = { .pool = { .arena_size = 8 << 20 } };
	struct dio_engine *e = test_engine_create();
	struct dio_ctx *ctx = NULL;
	int ret;

	if (fault) {
		struct dio_engine *w = NULL;

		ret = dio_engine_fault_create(e, fault, &w);
		cr_assert_eq(ret, 0, "fault create: %s", strerror(-ret));
		e = w;
		if (fault_out)
			*fault_out = w;
	}
	ret = dio_ctx_create_engine(e, &o, &ctx);
	cr_assert_eq(ret, 0, "ctx create: %s", strerror(-ret));
	return ctx;
}

const char *
test_dir(void)
{
	const char *d = getenv("DIO_TEST_DIR");

	if (!d)
		d = "./tmp";
	mkdir(d, 0755);
	return d;
}

char *
test_file_create(uint64_t size)
{
	char *path = NULL;
	int fd;

	cr_assert(asprintf(&path, "%s/unit-XXXXXX", test_dir()) > 0);
	fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp %s: %s", path, strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return path;
}

static inline uint8_t
pattern_byte(uint64_t off, uint32_t seed)
{
	uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ull + seed;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (off & 7)));
}

void
test_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = pattern_byte(offset + i, seed);
}

int
test_pattern_check(const void *buf, size_t len, uint64_t offset, uint32_t seed)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(offset + i, seed))
			return 0;
	return 1;
}

void *
test_alloc(size_t len)
{
	void *p = NULL;

	cr_assert_eq(posix_memalign(&p, 4096, len ? len : 4096), 0);
	memset(p, 0, len);
	return p;
}

bool
test_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

int
test_io(struct dio_ctx *ctx, struct dio_volume *vol, uint8_t op, uint32_t flags,
	uint64_t pos, uint64_t len, void *buf)
{
	struct dio_req req = { .op = op, .flags = flags, .pos = pos, .len = len, .buf = buf };

	return dio_submit_sync(ctx, vol, &req);
}

struct dio_io
test_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	       uint64_t len, int want)
{
	struct dio_io io;

	memset(&io, 0, sizeof(io));
	cr_assert_eq(vol->vol_ops->prep_meta(vol, op, flags, pos, len, &io), want,
		     "prep_meta(op %d, flags %u)", op, flags);
	if (want == 0) {
		cr_assert_eq(io.fd, vol->fd);
		cr_assert_eq(io.offset, pos);
		cr_assert_eq(io.len, len);
	}
	return io;
}
