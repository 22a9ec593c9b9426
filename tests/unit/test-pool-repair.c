/* SPDX-License-Identifier: MIT */
/*
 * dio_tpool_repair: leaks (space map entries over the references, made
 * here by editing a checkpoint's space block) are taken back durably and
 * check is clean after, mapped data untouched; an under-count is refused
 * with nothing written, and so is a newest checkpoint that does not verify
 * (open falls back to the older slot); a pool open elsewhere is refused (its lock); a
 * clean pool is left as it is. Progress reaches the caller's callback.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/tpool.h"
#include "helper.h"
#include "pool.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
static uint64_t mapped[2];	/* chunks volume a's writes took */

static void
pool_op(void (*fn)(struct dio_tpool *, struct dio_ctx *))
{
	struct dio_ctx *ctx = test_ctx_create(NULL, NULL);
	struct dio_tpool *p;

	cr_assert_eq(dio_tpool_open(path, &opts, &p), 0, "%s", errbuf);
	fn(p, ctx);
	dio_tpool_close(p);
	dio_ctx_destroy(ctx);
}

static void
write_two_chunks(struct dio_tpool *p, struct dio_ctx *ctx)
{
	uint8_t *buf = test_alloc(128 * KiB);
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_create(p, "a", 4 * MiB), 0);
	cr_assert_eq(dio_tpool_volume_open(p, "a", &v), 0);
	test_pattern(buf, 128 * KiB, 0, 1);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_WRITE, DIO_REQ_FUA, 0, 128 * KiB, buf), 0);
	for (int l = 0; l < 2; l++)
		mapped[l] = tp_ment(tp_vol_by_name(p, "a"), (uint64_t)l)->p1 - 1;
	dio_volume_put(v);
	free(buf);
}

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * KiB, .journal_blocks = 16 };

	path = test_file_create(32 * MiB);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), 0, "%s", errbuf);
	pool_op(write_two_chunks);
}

static void
teardown(void)
{
	unlink(path);
	free(path);
}

/* Set chunk c's entry in the durable checkpoint's space map to n, sealed again. */
static void
set_space(uint64_t c, unsigned int n)
{
	uint8_t root[TP_BLOCK], blk[TP_BLOCK];
	const struct tp_hdr *rh = (const void *)root, *h = (const void *)blk;
	struct dio_tpool *p;
	char err[400];
	int fd = open(path, O_RDWR);
	bool done = false;

	cr_assert(fd >= 0);
	cr_assert_eq(tp_load(path, &opts, true, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p->head, p->sb.journal_tail, "the journal is not empty");
	cr_assert_eq(pread(fd, root, TP_BLOCK, (off_t)(p->sb.ckpt_root * TP_BLOCK)), TP_BLOCK);
	for (uint32_t i = 0; i < rh->count && !done; i++) {
		uint64_t b;
		uint8_t *e;

		memcpy(&b, root + sizeof(*rh) + 8 * i, 8);
		cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		if (h->type != TP_BT_SPACE || c < h->aux || c >= h->aux + h->count)
			continue;
		e = blk + sizeof(*h) + (c - h->aux) / 4;
		*e = (uint8_t)((*e & ~(3u << (2 * ((c - h->aux) % 4)))) |
			       (n << (2 * ((c - h->aux) % 4))));
		tp_seal(blk, p->sb.h.uuid, TP_BT_SPACE, 0, p->sb.h.gen, b, h->aux, h->count, h->used);
		cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		done = true;
	}
	cr_assert(done, "no space block for chunk %llu", (unsigned long long)c);
	tp_free(p);
	close(fd);
}

static struct dio_tpool_check_result
check(void)
{
	struct dio_tpool_check_result res;

	cr_assert_eq(dio_tpool_check(path, &opts, NULL, NULL, &res), 0);
	return res;
}

static uint64_t
free_chunks(void)
{
	struct dio_tpool_opts ro = opts;
	struct dio_tpool_info i;
	struct dio_tpool *p;

	ro.readonly = true;
	cr_assert_eq(dio_tpool_open(path, &ro, &p), 0, "%s", errbuf);
	dio_tpool_get_info(p, &i);
	dio_tpool_close(p);
	return i.free_chunks;
}

/* An unmapped chunk other than the ones a holds. */
static uint64_t
unmapped(uint64_t from)
{
	while (from == mapped[0] || from == mapped[1])
		from++;
	return from;
}

static void
read_back(struct dio_tpool *p, struct dio_ctx *ctx)
{
	uint8_t *buf = test_alloc(128 * KiB);
	struct dio_volume *v;

	cr_assert_eq(dio_tpool_volume_open(p, "a", &v), 0);
	cr_assert_eq(test_io(ctx, v, DIO_REQ_READ, 0, 0, 128 * KiB, buf), 0);
	cr_assert(test_pattern_check(buf, 128 * KiB, 0, 1), "repair changed a volume's data");
	dio_volume_put(v);
	free(buf);
}

struct msgs {
	int n[3];
	char last[3][600];
};

static void
collect(void *priv, int sev, const char *msg)
{
	struct msgs *m = priv;

	m->n[sev]++;
	snprintf(m->last[sev], sizeof(m->last[sev]), "%s", msg);
}

Test(pool_repair, leaks_taken_back, .init = setup, .fini = teardown)
{
	uint64_t free0 = free_chunks(), a = unmapped(3), b = unmapped(a + 10);
	struct dio_tpool_check_result res;
	struct msgs m = { 0 };

	set_space(a, 1);
	set_space(b, 3);
	res = check();
	cr_assert_eq(res.problems, 0);
	cr_assert_eq(res.leaks, 2);
	cr_assert_eq(free_chunks(), free0 - 2, "leaked chunks counted free");
	cr_assert_eq(dio_tpool_repair(path, &opts, collect, &m, &res), 0, "%s", errbuf);
	cr_assert_eq(res.problems, 0);
	cr_assert_eq(res.leaks, 2);
	cr_assert_eq(m.n[1], 1, "the leak is reported once");
	cr_assert(strstr(m.last[0], "2 leaked chunks taken back"), "%s", m.last[0]);
	res = check();
	cr_assert_eq(res.problems, 0);
	cr_assert_eq(res.leaks, 0, "check after repair still finds leaks");
	cr_assert_eq(free_chunks(), free0);
	pool_op(read_back);
}

Test(pool_repair, clean_pool_left_alone, .init = setup, .fini = teardown)
{
	struct dio_tpool_check_result res;
	uint8_t before[TP_BLOCK * 2], after[TP_BLOCK * 2];
	int fd = open(path, O_RDONLY);

	cr_assert_eq(pread(fd, before, sizeof(before), 0), (ssize_t)sizeof(before));
	cr_assert_eq(dio_tpool_repair(path, &opts, NULL, NULL, &res), 0, "%s", errbuf);
	cr_assert_eq(res.problems + res.leaks, 0);
	cr_assert_eq(pread(fd, after, sizeof(after), 0), (ssize_t)sizeof(after));
	cr_assert_eq(memcmp(before, after, sizeof(before)), 0, "a clean pool was written");
	close(fd);
}

Test(pool_repair, under_count_refused, .init = setup, .fini = teardown)
{
	struct dio_tpool_check_result res;
	struct msgs m = { 0 };
	uint8_t *before = test_alloc(32 * MiB), *after = test_alloc(32 * MiB);
	int fd = open(path, O_RDONLY);

	set_space(mapped[1], 0);
	cr_assert_gt(check().problems, 0);
	cr_assert_eq(pread(fd, before, 32 * MiB, 0), 32 * MiB);
	cr_assert_eq(dio_tpool_repair(path, &opts, collect, &m, &res), 0);
	cr_assert_gt(res.problems, 0);
	/* Open falls back to the older slot; repair must not checkpoint over the newer. */
	cr_assert(strstr(m.last[2], "does not verify"), "the refusal does not say why: %s",
		  m.last[2]);
	cr_assert(strstr(m.last[0], "nothing written"), "%s", m.last[0]);
	cr_assert_eq(pread(fd, after, 32 * MiB, 0), 32 * MiB);
	cr_assert_eq(memcmp(before, after, 32 * MiB), 0, "a refused repair wrote");
	close(fd);
	free(before);
	free(after);
}

Test(pool_repair, open_pool_refused, .init = setup, .fini = teardown)
{
	struct dio_tpool_check_result res;
	struct dio_tpool *p;

	set_space(unmapped(5), 1);
	cr_assert_eq(dio_tpool_open(path, &opts, &p), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_repair(path, &opts, NULL, NULL, &res), -EAGAIN);
	cr_assert(strstr(errbuf, "open in another process"), "%s", errbuf);
	dio_tpool_close(p);
	cr_assert_eq(dio_tpool_repair(path, &opts, NULL, NULL, &res), 0, "%s", errbuf);
	cr_assert_eq(res.leaks, 1);
	cr_assert_eq(check().leaks, 0);
}

struct prog {
	int calls;
	bool refs, space, ckpt;
	uint64_t last_total;
};

static void
on_progress(void *priv, const char *what, uint64_t done, uint64_t total)
{
	struct prog *g = priv;

	g->calls++;
	g->refs |= strcmp(what, "counting references") == 0 && done == total;
	g->space |= strcmp(what, "checking the space map") == 0 && done == total;
	g->ckpt |= strcmp(what, "loading the checkpoint") == 0;
	cr_assert(total == 0 || done <= total);
}

Test(pool_repair, progress_reported, .init = setup, .fini = teardown)
{
	struct prog g = { 0 };
	struct dio_tpool_opts o = opts;
	struct dio_tpool_check_result res;

	o.progress = on_progress;
	o.progress_priv = &g;
	cr_assert_eq(dio_tpool_check(path, &o, NULL, NULL, &res), 0);
	cr_assert(g.refs && g.space && g.ckpt, "calls %d refs %d space %d ckpt %d", g.calls,
		  g.refs, g.space, g.ckpt);
}
