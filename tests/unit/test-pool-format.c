/* SPDX-License-Identifier: MIT */
/*
 * The pool's on-disk format: crc32c, block headers (R6), geometry and the
 * metadata reserve, create/open/close, superblock slots A/B and feature
 * bits, the lock against a second opener, checkpoints copy-on-write, and
 * the journal: replay of committed transactions only, one corrupted byte
 * per block, wrap-around with stale blocks of the previous lap.
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

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * 1024, .journal_blocks = 16 };

	path = test_file_create(32 * MiB);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), 0, "%s", errbuf);
}

static void
teardown(void)
{
	unlink(path);
	free(path);
}

static struct dio_tpool *
open_pool(void)
{
	struct dio_tpool *p;
	int ret = dio_tpool_open(path, &opts, &p);

	cr_assert_eq(ret, 0, "open: %s", errbuf);
	return p;
}

Test(pool_format, crc32c_known_vector)
{
	cr_assert_eq(tp_crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(tp_crc32c(0, "", 0), 0);
}

Test(pool_format, seal_verify_every_field)
{
	static uint8_t b[TP_BLOCK], uuid[16] = { 1, 2, 3 }, other[16] = { 9 };

	tp_seal(b, uuid, TP_BT_CKPT, 7, 42, 100, 0, 0, 0);
	cr_assert(tp_verify(b, uuid, TP_BT_CKPT, 100));
	cr_assert_not(tp_verify(b, other, TP_BT_CKPT, 100), "another pool's uuid");
	cr_assert_not(tp_verify(b, uuid, TP_BT_ROOT, 100), "wrong type");
	cr_assert_not(tp_verify(b, uuid, TP_BT_CKPT, 101), "wrong own block number");
	for (size_t i = 0; i < TP_BLOCK; i += 97) {
		b[i] ^= 0x10;
		cr_assert_not(tp_verify(b, uuid, TP_BT_CKPT, 100), "byte %zu flipped", i);
		b[i] ^= 0x10;
	}
}

Test(pool_format, geometry_and_reserve)
{
	struct tp_super sb;

	cr_assert_eq(tp_geometry(&sb, 1ull << 30, 0, 0, 0, 512), 0);
	cr_assert_eq(sb.chunk_size, 64 * 1024);
	cr_assert_eq(sb.sub_size, 2048, "chunk/32");
	cr_assert_eq(sb.data_start % sb.chunk_size, 0);
	/* Two full checkpoints fit: 16384 chunks need 131 MAP blocks each. */
	cr_assert_geq(sb.meta_blocks, 2 * (16384 / 126));
	cr_assert_eq(tp_geometry(&sb, 1ull << 30, 4096, 0, 0, 4096), 0);
	cr_assert_eq(sb.sub_size, 4096, "never below the logical block size");
	cr_assert_eq(tp_geometry(&sb, 1ull << 30, 3000, 0, 0, 512), -EINVAL);
	cr_assert_eq(tp_geometry(&sb, 1ull << 30, 2u << 20, 0, 0, 512), -EINVAL);
	cr_assert_eq(tp_geometry(&sb, 64 * 1024, 65536, 0, 0, 512), -ENOSPC);
}

Test(pool_format, create_open_info_volumes, .init = setup, .fini = teardown)
{
	struct dio_tpool *p = open_pool();
	struct dio_tpool_vol_info *vi;
	struct dio_tpool_info info;
	size_t n;

	dio_tpool_get_info(p, &info);
	cr_assert_eq(info.chunk_size, 64 * 1024);
	cr_assert_eq(info.free_chunks, info.nr_chunks);
	cr_assert_eq(info.gen, 1);
	cr_assert_eq(dio_tpool_volume_create(p, "a", 8 * MiB), 0);
	cr_assert_eq(dio_tpool_volume_create(p, "b", 4 * MiB), 0);
	cr_assert_eq(dio_tpool_volume_create(p, "a", 4 * MiB), -EEXIST);
	cr_assert_eq(dio_tpool_volume_create(p, "c", 1000), -EINVAL);
	cr_assert_eq(dio_tpool_volume_delete(p, "b"), 0);
	cr_assert_eq(dio_tpool_volume_delete(p, "b"), -ENOENT);
	dio_tpool_close(p);

	p = open_pool();
	cr_assert_eq(dio_tpool_volume_list(p, &vi, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(vi[0].name, "a");
	cr_assert_eq(vi[0].size, 8 * MiB);
	free(vi);
	dio_tpool_get_info(p, &info);
	cr_assert_eq(info.gen, 2, "close checkpointed once");
	dio_tpool_close(p);
}

Test(pool_format, second_opener_refused, .init = setup, .fini = teardown)
{
	struct dio_tpool *p = open_pool(), *q;

	struct dio_tpool_create_opts co = { .chunk_size = 64 * 1024, .journal_blocks = 16 };
	struct dio_tpool_info before, after;

	cr_assert_eq(dio_tpool_open(path, &opts, &q), -EAGAIN);
	/* create over a pool in use is refused before it writes a byte */
	dio_tpool_get_info(p, &before);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), -EAGAIN);
	cr_assert(strstr(errbuf, "open in another process"), "%s", errbuf);
	dio_tpool_close(p);
	q = open_pool();
	dio_tpool_get_info(q, &after);
	cr_assert_eq(memcmp(before.uuid, after.uuid, 16), 0, "the pool was created anew");
	dio_tpool_close(q);
}

/* Overwrite 4 KiB block b of the pool file. */
static void
poke_block(uint64_t b, const void *buf)
{
	int fd = open(path, O_RDWR);

	cr_assert(fd >= 0);
	cr_assert_eq(pwrite(fd, buf, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	close(fd);
}

static void
peek_block(uint64_t b, void *buf)
{
	int fd = open(path, O_RDONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, buf, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	close(fd);
}

Test(pool_format, superblock_slots_and_features, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool();
	struct dio_tpool_info info;
	struct tp_super *sb = (struct tp_super *)blk;

	cr_assert_eq(dio_tpool_volume_create(p, "a", 1 * MiB), 0);
	cr_assert_eq(dio_tpool_checkpoint(p), 0);	/* gen 2: slot A */
	dio_tpool_close(p);				/* nothing changed: no gen 3 */

	/* A torn newest slot: the older one (gen 1, slot B) and the journal. */
	peek_block(0, blk);
	cr_assert_eq(sb->h.gen, 2);
	blk[300] ^= 1;
	poke_block(0, blk);
	p = open_pool();
	dio_tpool_get_info(p, &info);
	cr_assert_eq(info.gen, 1);
	cr_assert_eq(info.nr_volumes, 1, "volume create replayed from the journal");
	dio_tpool_close(p);	/* dirty: writes gen 2 into slot A again */

	/* Unknown incompat feature: refused; unknown ro_compat: read-only. */
	peek_block(0, blk);
	sb->feat_incompat = 1ull << 40;
	tp_seal(blk, sb->h.uuid, TP_BT_SUPER, 0, sb->h.gen, 0, 0, 0, sizeof(*sb));
	poke_block(0, blk);
	cr_assert_eq(dio_tpool_open(path, &opts, &p), -EOPNOTSUPP);
	sb->feat_incompat = 0;
	sb->feat_ro_compat = 1ull << 40;
	tp_seal(blk, sb->h.uuid, TP_BT_SUPER, 0, sb->h.gen, 0, 0, 0, sizeof(*sb));
	poke_block(0, blk);
	p = open_pool();
	dio_tpool_get_info(p, &info);
	cr_assert(info.readonly);
	cr_assert_eq(dio_tpool_volume_create(p, "x", 1 * MiB), -EROFS);
	dio_tpool_close(p);
}

Test(pool_format, checkpoint_is_copy_on_write, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool();
	struct tp_super *sb = (struct tp_super *)blk;
	uint64_t root1, root2;

	cr_assert_eq(dio_tpool_volume_create(p, "a", 1 * MiB), 0);
	cr_assert_eq(dio_tpool_checkpoint(p), 0);
	peek_block(0, blk);
	root1 = sb->ckpt_root;
	cr_assert_eq(dio_tpool_volume_create(p, "b", 1 * MiB), 0);
	cr_assert_eq(dio_tpool_checkpoint(p), 0);
	peek_block(1, blk);
	root2 = sb->ckpt_root;
	cr_assert_neq(root1, root2, "the new checkpoint must not overwrite the durable one");
	dio_tpool_close(p);
	/* Destroy the newest checkpoint's root: the older slot still opens. */
	memset(blk, 0, sizeof(blk));
	poke_block(root2, blk);
	p = open_pool();
	{
		struct dio_tpool_info info;

		dio_tpool_get_info(p, &info);
		cr_assert_eq(info.gen, 2);
		cr_assert_eq(info.nr_volumes, 2, "b replayed from the journal after gen 2");
	}
	dio_tpool_close(p);
}
