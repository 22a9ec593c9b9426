/* SPDX-License-Identifier: MIT */
/* Shared bits of the unit tests: which engine to test, scratch files. */
#ifndef DIO_TEST_HELPER_H
#define DIO_TEST_HELPER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/dio.h"
#include "engine-fault.h"

/* The engine under test: $DIO_TEST_ENGINE = uring (default) or psync. */
enum dio_engine_kind test_engine_kind(void);
/* Create the engine under test, or fail the test. */
struct dio_engine *test_engine_create(void);
/* Create a ctx on the engine under test (optionally wrapped by the fault
 * engine when fault != NULL; *fault_out gets the wrapper). */
struct dio_ctx *test_ctx_create(const struct dio_fault_opts *fault, struct dio_engine **fault_out);

/* A scratch directory on a filesystem that takes O_DIRECT ($DIO_TEST_DIR or ./tmp). */
const char *test_dir(void);
/* A new empty file in test_dir() of 'size' bytes (sparse); returns a malloc'd path. */
char *test_file_create(uint64_t size);
/* Fill buf with a pattern that encodes (seed, offset) so misplaced bytes show. */
void test_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed);
/* 1 when buf holds test_pattern(len, offset, seed). */
int test_pattern_check(const void *buf, size_t len, uint64_t offset, uint32_t seed);
/* An aligned, zeroed allocation (free with free()). */
void *test_alloc(size_t len);
/* vol's prep_meta for [pos, pos+len), asserted to return want (and, on 0, to aim there). */
struct dio_io test_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags,
			     uint64_t pos, uint64_t len, int want);
/* Whether len bytes at p are all zero. */
bool test_all_zero(const void *p, size_t len);
/* One request on vol through ctx, waited for; dio_submit_sync's result. */
int test_io(struct dio_ctx *ctx, struct dio_volume *vol, uint8_t op, uint32_t flags,
	    uint64_t pos, uint64_t len, void *buf);

/*
 * A thin pool for a test: a scratch file of file_size made a pool with co,
 * opened with opts, with a volume "a" of vol_size bytes unless 0. *path
 * gets the file's name.
 */
struct dio_tpool;
struct dio_tpool_create_opts;
struct dio_tpool_opts;
struct dio_tpool_vol_info;
struct dio_tpool *test_pool_make(char **path, uint64_t file_size,
				 const struct dio_tpool_create_opts *co,
				 const struct dio_tpool_opts *opts, uint64_t vol_size);
/* Open the pool at path with opts, or fail the test. */
struct dio_tpool *test_pool_open(const char *path, const struct dio_tpool_opts *opts);
/* Close pool (when not NULL), then remove and free path. */
void test_pool_remove(struct dio_tpool *pool, char *path);
/* The listing of pool's volume 'name' (the test fails when there is none). */
struct dio_tpool_vol_info test_pool_vol_info(struct dio_tpool *pool, const char *name);
/* The chunks pool has free now. */
uint64_t test_pool_free_chunks(struct dio_tpool *pool);
/* The pool at path (closed) checks clean: no problem, no leak; findings logged. */
void test_pool_check_clean(const char *path, const struct dio_tpool_opts *opts);

#endif

/*
 * A synthetic volume for unit tests of the engine: an extent map the test
 * writes by hand over a scratch file that plays the device. It counts
 * map_begin/map_end calls and can be told to fail.
 */
#define SYN_MAX_EXT 64
#define SYN_MAX_LOG 1024

struct syn_ext {
	uint64_t pos, len, addr;
	uint16_t type, flags;
};

struct syn_end {
	uint64_t pos, len, done;
	unsigned int flags;
	uint16_t type;
};

struct synvol {
	struct dio_volume vol;
	char *path;
	struct syn_ext ext[SYN_MAX_EXT];
	unsigned int n;
	unsigned int begins, ends;
	unsigned int fail_begin_nth;	/* fail this map_begin (1-based) with fail_errno */
	int fail_errno;
	int convert_on_end;		/* map_end of a write turns its range into MAPPED */
	int zero_ok;			/* prep_meta(ZERO) offers ZERO_RANGE; else -EOPNOTSUPP */
	unsigned int metas[4];		/* prep_meta calls by op */
	struct syn_end log[SYN_MAX_LOG];
	pthread_mutex_t lock;
};

/* A synthetic volume of 'size' bytes, block size lbs, allocation unit blksize,
 * all one MAPPED extent at addr = pos until the test sets ext[]. */
struct synvol *synvol_create(uint64_t size, uint32_t lbs, uint32_t blksize);
void synvol_destroy(struct synvol *s);
/* Replace the map: n extents, in order, covering the volume. */
void synvol_set(struct synvol *s, const struct syn_ext *ext, unsigned int n);
/* Direct access to the scratch "device". */
void synvol_pwrite(struct synvol *s, const void *buf, size_t len, uint64_t addr);
void synvol_pread(struct synvol *s, void *buf, size_t len, uint64_t addr);
