/* SPDX-License-Identifier: MIT */
/*
 * The pool's journal: committed transactions replay, uncommitted ones do
 * not; a corrupted byte anywhere in a block stops replay exactly there;
 * wrap-around leaves stale blocks of the previous lap that replay must
 * not take; a commit waits for the flush that covers its data (R1).
 * Crashes are simulated by dropping the pool without closing it.
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
#define NVOLCHUNKS 64

static char *path;
static char errbuf[512];
static struct dio_tpool_opts opts = { .errbuf = errbuf, .errlen = sizeof(errbuf) };

static void
setup(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * 1024, .journal_blocks = 16 };
	struct dio_tpool *p;

	path = test_file_create(32 * MiB);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), 0, "%s", errbuf);
	cr_assert_eq(dio_tpool_open(path, &opts, &p), 0);
	cr_assert_eq(dio_tpool_volume_create(p, "v", NVOLCHUNKS * 64 * 1024), 0);
	dio_tpool_close(p);	/* checkpoint: the journal starts empty */
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

/* Map lchunk l of v to chunk c with bits as the request path does (data durable). */
static void
map_rec(struct dio_tpool *p, uint64_t l, uint64_t c, uint32_t bits)
{
	struct tp_vol *v = tp_vol_by_name(p, "v");
	struct tp_ment *e = tp_ment_w(p, v, l, true);
	struct tp_rec r = { .type = TP_R_MAP, .vol = v->id, .a = l, .b = c, .bits = bits };

	if (!e->p1) {
		cr_assert_eq(p->cstate[c], TP_C_FREE);
		p->cstate[c] = TP_C_USED;
		p->free_chunks--;
		tp_ent_map(p, v, l, e, c);
	}
	e->bits |= bits;
	cr_assert_eq(tp_append(p, &r, 0), 0);
}

/* Bits of lchunk l in the volume "v" of p (0 for a hole). */
static uint32_t
bits_of(struct dio_tpool *p, uint64_t l)
{
	struct tp_ment *e = tp_ment(tp_vol_by_name(p, "v"), l);

	return e && e->p1 ? e->bits : 0;
}

/* A crash: forget the pool without writing anything. */
static void
crash(struct dio_tpool *p)
{
	tp_free(p);
}

Test(pool_journal, committed_replay_uncommitted_not, .init = setup, .fini = teardown)
{
	struct dio_tpool *p = open_pool();

	map_rec(p, 0, 10, 1);
	cr_assert_eq(tp_commit(p, true), 0);
	map_rec(p, 1, 11, 3);	/* appended, never committed */
	crash(p);
	p = open_pool();
	cr_assert_eq(bits_of(p, 0), 1);
	cr_assert_eq(bits_of(p, 1), 0, "an uncommitted record replayed");
	cr_assert_eq(p->cstate[11], TP_C_FREE);
	cr_assert_eq(p->cstate[10], TP_C_USED);
	crash(p);
}

Test(pool_journal, commit_waits_for_the_flush_of_its_data, .init = setup, .fini = teardown)
{
	struct dio_tpool *p = open_pool();
	struct tp_vol *v = tp_vol_by_name(p, "v");
	struct tp_rec r = { .type = TP_R_MAP, .vol = v->id, .a = 0, .b = 5, .bits = 1 };

	/* Data completed after the last flush was issued: not committable yet. */
	cr_assert_eq(tp_append(p, &r, p->flush_issued + 1), 0);
	cr_assert_eq(tp_commit(p, false), 0);
	cr_assert_eq(p->npend, 1, "R1: committed before the data was flushed");
	cr_assert_eq(tp_commit(p, true), 0);
	cr_assert_eq(p->npend, 0);
	crash(p);
}

/* Commit n single-block transactions mapping lchunk i -> chunk 20 + i. */
static void
commit_n(struct dio_tpool *p, int n)
{
	for (int i = 0; i < n; i++) {
		map_rec(p, (uint64_t)i, 20 + (uint64_t)i, 1);
		cr_assert_eq(tp_commit(p, false), 0);
	}
}

Test(pool_journal, one_corrupted_byte_per_block, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool();
	uint64_t jstart = p->sb.journal_start, tail = p->sb.journal_tail;
	const int n = 8;
	int fd;

	commit_n(p, n);
	crash(p);
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	for (int j = 0; j < n; j++) {
		uint64_t b = jstart + (tail + (uint64_t)j) % 16;
		/* header, first record, commit record, unused tail */
		size_t offs[] = { 0, 5, 20, 40, 63, 64, 70, 100, 130, 2000, 4095 };

		cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
			blk[offs[k]] ^= 0x40;
			cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
			p = open_pool();
			for (int i = 0; i < n; i++)
				cr_assert_eq(bits_of(p, (uint64_t)i), i < j ? 1u : 0u,
					     "block %d byte %zu: transaction %d", j, offs[k], i);
			crash(p);
			blk[offs[k]] ^= 0x40;
			cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
		}
	}
	close(fd);
	p = open_pool();
	for (int i = 0; i < n; i++)
		cr_assert_eq(bits_of(p, (uint64_t)i), 1u);
	crash(p);
}

/*
 * A block that verifies but holds a record type this version does not know
 * (a newer version wrote it): the open is refused, naming it, instead of
 * ending the replay there and dropping the transactions after it.
 */
Test(pool_journal, unknown_record_type_is_refused, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool(), *q;
	uint64_t b = p->sb.journal_start + (p->sb.journal_tail + 1) % 16;
	const uint8_t *uuid;
	struct tp_hdr *h = (void *)blk;
	uint8_t id[16];
	int fd;

	memcpy(id, p->sb.h.uuid, 16);
	uuid = id;
	commit_n(p, 3);
	crash(p);
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	cr_assert_eq(blk[sizeof(*h)], TP_R_MAP);
	blk[sizeof(*h)] = 250;	/* the second transaction's MAP, now of an unknown type */
	tp_seal(blk, uuid, TP_BT_JOURNAL, h->owner, h->gen, b, h->aux, h->count, h->used);
	cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	close(fd);
	errbuf[0] = 0;
	cr_assert_eq(dio_tpool_open(path, &opts, &q), -EUCLEAN,
		     "a journal with a record it cannot read was opened");
	cr_assert(strstr(errbuf, "unknown record type 250"), "message: %s", errbuf);
}

Test(pool_journal, wrap_with_stale_blocks, .init = setup, .fini = teardown)
{
	struct dio_tpool *p = open_pool();
	uint64_t gen0 = p->sb.h.gen;

	/* 16 blocks: 40 commits wrap twice, checkpointing when full. */
	commit_n(p, 40);
	cr_assert_gt(p->sb.h.gen, gen0, "a full journal checkpoints");
	cr_assert_lt(p->head - p->sb.journal_tail, 16);
	crash(p);
	/* Older laps' blocks lie after head: they must not replay. */
	p = open_pool();
	for (int i = 0; i < 40; i++)
		cr_assert_eq(bits_of(p, (uint64_t)i), 1u, "transaction %d", i);
	cr_assert_eq(bits_of(p, 40), 0u);
	/* And keep working from there. */
	map_rec(p, 41, 61, 2);
	cr_assert_eq(tp_commit(p, false), 0);
	crash(p);
	p = open_pool();
	cr_assert_eq(bits_of(p, 41), 2u);
	crash(p);
}

Test(pool_journal, multi_block_transaction_needs_its_commit, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool();
	uint64_t jstart = p->sb.journal_start, tail = p->sb.journal_tail;
	int fd;

	/* 60 lchunks x 3 records > 126 per block: a transaction of 2 blocks. */
	for (int i = 0; i < 60; i++)
		for (int k = 0; k < 3; k++)
			map_rec(p, (uint64_t)i, 100 + (uint64_t)i, 1u << k);
	cr_assert_eq(tp_commit(p, false), 0);
	cr_assert_eq(p->head - tail, 2);
	crash(p);
	/* Damage the second block (the one with COMMIT): nothing of it applies. */
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)((jstart + (tail + 1) % 16) * TP_BLOCK)),
		     TP_BLOCK);
	blk[200] ^= 1;
	cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)((jstart + (tail + 1) % 16) * TP_BLOCK)),
		     TP_BLOCK);
	close(fd);
	p = open_pool();
	for (int i = 0; i < 60; i++)
		cr_assert_eq(bits_of(p, (uint64_t)i), 0u, "half a transaction applied");
	/* The next commit reuses that place; the orphan block must not join it. */
	map_rec(p, 0, 7, 1);
	cr_assert_eq(tp_commit(p, false), 0);
	crash(p);
	p = open_pool();
	cr_assert_eq(bits_of(p, 0), 1u);
	for (int i = 1; i < 60; i++)
		cr_assert_eq(bits_of(p, (uint64_t)i), 0u);
	crash(p);
}

/*
 * A damaged journal block hides the transactions after it, and they stay
 * hidden: a commit after that recovery must not let a later replay run on
 * from the new block into them (here: a delete of the volume whose
 * creation was lost, which would delete the new one or refuse the pool).
 */
Test(pool_journal, blocks_past_a_damaged_one_stay_hidden, .init = setup, .fini = teardown)
{
	static uint8_t blk[TP_BLOCK];
	struct dio_tpool *p = open_pool();
	uint64_t b;
	int fd;

	cr_assert_eq(dio_tpool_volume_create(p, "x", MiB), 0);
	b = p->sb.journal_start + (p->head - 1) % p->sb.journal_blocks;
	cr_assert_eq(dio_tpool_volume_delete(p, "x"), 0);
	crash(p);
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	blk[100] ^= 0x40;
	cr_assert_eq(pwrite(fd, blk, TP_BLOCK, (off_t)(b * TP_BLOCK)), TP_BLOCK);
	close(fd);

	p = open_pool();
	cr_assert_null(tp_vol_by_name(p, "x"), "replay went past the damaged block");
	cr_assert_eq(dio_tpool_volume_create(p, "z", MiB), 0);
	crash(p);
	p = open_pool();
	cr_assert_not_null(tp_vol_by_name(p, "z"), "the volume created after recovery is gone");
	cr_assert_not_null(tp_vol_by_name(p, "v"));
	crash(p);
	p = open_pool();
	cr_assert_not_null(tp_vol_by_name(p, "z"));
	dio_tpool_close(p);
}

/*
 * A replay of more than 64 blocks (replay once read the ring 64 blocks at
 * a time; it reads every block now, for the stale-block check) running
 * over the ring's end still takes every block.
 */
Test(pool_journal, replay_across_read_windows_and_the_ring_end, .fini = teardown)
{
	struct dio_tpool_create_opts co = { .chunk_size = 64 * 1024, .journal_blocks = 200 };
	struct dio_tpool *p;
	int i;

	path = test_file_create(32 * MiB);
	cr_assert_eq(dio_tpool_create(path, &co, &opts), 0, "%s", errbuf);
	p = open_pool();
	cr_assert_eq(dio_tpool_volume_create(p, "v", 300 * 64 * 1024), 0);
	for (i = 0; i < 150; i++) {
		map_rec(p, (uint64_t)i, 20 + (uint64_t)i, 1);
		cr_assert_eq(tp_commit(p, false), 0);
	}
	cr_assert_eq(dio_tpool_checkpoint(p), 0);	/* the tail moves to ~150 */
	for (; i < 280; i++) {
		map_rec(p, (uint64_t)i, 20 + (uint64_t)i, 1);
		cr_assert_eq(tp_commit(p, false), 0);
	}
	cr_assert_gt(p->head - p->sb.journal_tail, 64, "not longer than a window");
	cr_assert_gt(p->sb.journal_tail % 200 + (p->head - p->sb.journal_tail), 200,
		     "does not run over the ring's end");
	crash(p);
	p = open_pool();
	for (i = 0; i < 280; i++)
		cr_assert_eq(bits_of(p, (uint64_t)i), 1u, "transaction %d", i);
	cr_assert_eq(bits_of(p, 280), 0u);
	crash(p);
}
