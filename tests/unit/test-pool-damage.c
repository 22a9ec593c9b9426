/* SPDX-License-Identifier: MIT */
/*
 * Damaged pools (what fuzz/fuzz-pool.c found): a record, superblock or
 * checkpoint block that is sound by its crc but says something no pool
 * can hold is refused at open with a message naming it, never an
 * allocation of what it claims, a crash or a pool that cannot open again.
 * Records are put in the journal through the pool's own commit, as a
 * damaged or hostile writer would, then the pool is dropped (a crash).
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

#define MiB (1024u * 1024u)
#define CS (64u * 1024u)

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CS, .journal_blocks = 16 };
	struct dio_tpool *p;

	path = test_file_create(32 * MiB);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_open(path, &opts, &p), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_volume_create(p, "v", 4 * MiB), 0);
	dio_tpool_close(p);
}

static void
teardown(void)
{
	test_pool_remove(NULL, path);
}

static struct dio_tpool *
open_pool(void)
{
	return test_pool_open(path, &opts);
}

/* Commit r to the journal as it is (nothing applied in memory), then crash. */
static void
commit_raw(const struct tp_rec *r)
{
	struct dio_tpool *p = open_pool();

	cr_assert_eq(tp_append(p, r, 0), 0);
	cr_assert_eq(tp_commit(p, true), 0);
	tp_free(p);
}

/* The pool is refused as damaged, with a message that contains what. */
static void
refused(const char *what)
{
	struct dio_tpool *p;
	int ret;

	errbuf[0] = 0;
	ret = dio_tpool_open(path, &opts, &p);
	cr_assert_eq(ret, -EUCLEAN, "open: %d (%s)", ret, errbuf);
	cr_assert(strstr(errbuf, what), "the message: %s", errbuf);
}

Test(pool_damage, volume_size_past_the_map_limit, .init = setup, .fini = teardown)
{
	struct tp_rec r = { .type = TP_R_VOL, .vol = 9, .a = 1ull << 62, .name = "huge" };
	struct dio_tpool *p = open_pool();

	cr_assert_eq(dio_tpool_volume_create(p, "big", TP_VOL_CHUNKS_MAX * CS), -EINVAL);
	dio_tpool_close(p);
	commit_raw(&r);
	refused("bad volume size");
}

Test(pool_damage, resize_past_the_map_limit, .init = setup, .fini = teardown)
{
	struct tp_rec r = { .type = TP_R_RESIZE, .vol = 1, .a = TP_VOL_CHUNKS_MAX * CS };

	commit_raw(&r);
	refused("bad size");
}

Test(pool_damage, volume_name_without_its_nul, .init = setup, .fini = teardown)
{
	struct tp_rec r = { .type = TP_R_VOL, .vol = 9, .a = MiB };

	memset(r.name, 'n', sizeof(r.name));
	commit_raw(&r);
	refused("bad or duplicate volume name");
}

Test(pool_damage, volume_name_twice, .init = setup, .fini = teardown)
{
	struct tp_rec r = { .type = TP_R_VOL, .vol = 9, .a = MiB, .name = "v" };

	commit_raw(&r);
	refused("bad or duplicate volume name");
}

/* The two superblock slots as they were, to put back. */
static void
slots_io(uint8_t *slots, bool write)
{
	int fd = open(path, O_RDWR);

	cr_assert(fd >= 0);
	if (write)
		cr_assert_eq(pwrite(fd, slots, 2 * TP_BLOCK, 0), 2 * TP_BLOCK);
	else
		cr_assert_eq(pread(fd, slots, 2 * TP_BLOCK, 0), 2 * TP_BLOCK);
	close(fd);
}

/* Both superblock slots rewritten (sound crc) with what change() makes of them. */
static void
both_slots(void (*change)(struct tp_super *))
{
	struct dio_tpool *p = open_pool();
	struct tp_super sb = p->sb;

	change(&sb);
	for (int k = 1; k <= 2; k++) {
		sb.h.gen = p->sb.h.gen + (uint64_t)k;
		cr_assert_eq(tp_super_write(p, &sb), 0);
	}
	tp_free(p);
}

static void
chunks_wrap(struct tp_super *sb)
{
	sb->nr_chunks = 1ull << 48;	/* nr_chunks * chunk_size is 2^64: 0 */
}

static void
no_block_size(struct tp_super *sb)
{
	sb->lbs = 0;
}

static void
past_the_device(struct tp_super *sb)
{
	sb->dev_size *= 4;
	sb->nr_chunks = (sb->dev_size - sb->data_start) / sb->chunk_size;
}

static void
journal_wraps(struct tp_super *sb)
{
	sb->journal_blocks = UINT64_MAX - 1;	/* journal_start + it wraps to 0 */
}

Test(pool_damage, superblock_geometry, .init = setup, .fini = teardown)
{
	void (*changes[])(struct tp_super *) = { chunks_wrap, no_block_size, past_the_device,
						 journal_wraps };

	static uint8_t slots[2 * TP_BLOCK];

	slots_io(slots, false);
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		both_slots(changes[i]);
		refused("no valid superblock");
		slots_io(slots, true);
		dio_tpool_close(open_pool());
	}
}

/* The SPACE blocks of the checkpoint that superblock slot names, sealed again. */
static void
space_blocks(int fd, int slot, uint64_t first, uint32_t count)
{
	static uint8_t sbb[TP_BLOCK], root[TP_BLOCK], blk[TP_BLOCK];
	const struct tp_super *sb = (const void *)sbb;
	const struct tp_hdr *rh = (const void *)root;
	struct tp_hdr *h = (void *)blk;
	uint8_t uuid[16];

	cr_assert_eq(pread(fd, sbb, TP_BLOCK, (off_t)slot * TP_BLOCK), TP_BLOCK);
	cr_assert_eq(pread(fd, root, TP_BLOCK, (off_t)(sb->ckpt_root * TP_BLOCK)), TP_BLOCK);
	for (uint32_t i = 0; i < rh->count; i++) {
		uint64_t b;

		memcpy(&b, root + sizeof(*rh) + 8 * i, 8);
		cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		if (h->type != TP_BT_SPACE)
			continue;
		memcpy(uuid, h->uuid, 16);
		tp_seal(blk, uuid, TP_BT_SPACE, h->owner, h->gen, b, first, count, h->used);
		cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	}
}

/*
 * The SPACE blocks of both slots' checkpoints rewritten (sound crc) with
 * their first chunk and count: they must describe chunks of the pool,
 * within the block's payload.
 */
static void
space_block(uint64_t first, uint32_t count)
{
	int fd = open(path, O_RDWR);

	cr_assert(fd >= 0);
	for (int slot = 0; slot < 2; slot++)
		space_blocks(fd, slot, first, count);
	close(fd);
}

Test(pool_damage, space_block_range_wraps, .init = setup, .fini = teardown)
{
	space_block(UINT64_MAX - 1, 2);	/* first + count wraps to 0 */
	refused("space block");
}
