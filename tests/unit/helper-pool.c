/* SPDX-License-Identifier: MIT */
/* Thin pools for the pool unit tests: made, opened and removed. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dio/tpool.h"
#include "helper.h"

struct dio_tpool *
test_pool_make(char **path, uint64_t file_size, const struct dio_tpool_create_opts *co,
	       const struct dio_tpool_opts *opts, uint64_t vol_size)
{
	struct dio_tpool *pool;

	*path = test_file_create(file_size);
	cr_assert_eq(dio_tpool_create(*path, co, opts), 0, "create: %s",
		     opts->errbuf ? opts->errbuf : "");
	pool = test_pool_open(*path, opts);
	if (vol_size)
		cr_assert_eq(dio_tpool_volume_create(pool, "a", vol_size), 0);
	return pool;
}

struct dio_tpool *
test_pool_open(const char *path, const struct dio_tpool_opts *opts)
{
	struct dio_tpool *pool;

	cr_assert_eq(dio_tpool_open(path, opts, &pool), 0, "open: %s",
		     opts->errbuf ? opts->errbuf : "");
	return pool;
}

void
test_pool_remove(struct dio_tpool *pool, char *path)
{
	if (pool)
		dio_tpool_close(pool);
	unlink(path);
	free(path);
}

struct dio_tpool_vol_info
test_pool_vol_info(struct dio_tpool *pool, const char *name)
{
	struct dio_tpool_vol_info *vi, r = { 0 };
	size_t n;

	cr_assert_eq(dio_tpool_volume_list(pool, &vi, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(vi[i].name, name) == 0)
			r = vi[i];
	free(vi);
	cr_assert_str_eq(r.name, name, "no volume %s", name);
	return r;
}

uint64_t
test_pool_free_chunks(struct dio_tpool *pool)
{
	struct dio_tpool_info i;

	dio_tpool_get_info(pool, &i);
	return i.free_chunks;
}

static void
check_report(void *priv, int sev, const char *msg)
{
	(void)priv;
	cr_log_info("check (%d): %s", sev, msg);
}

void
test_pool_check_clean(const char *path, const struct dio_tpool_opts *opts)
{
	struct dio_tpool_check_result res;

	cr_assert_eq(dio_tpool_check(path, opts, check_report, NULL, &res), 0);
	cr_assert_eq(res.problems, 0, "check: %u problems", res.problems);
	cr_assert_eq(res.leaks, 0, "check: %u leaks", res.leaks);
}
