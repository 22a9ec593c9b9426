/* SPDX-License-Identifier: MIT */
/*
 * The thin pool's insides (POOL.md), private to libdio and its tests:
 *   pool-format.c  crc32c, block headers, superblocks, pool creation
 *   pool-map.c     in-memory maps, chunk states, the allocator
 *   pool-journal.c records, commit (group of safe records), replay
 *   pool-ckpt.c    checkpoints: write copy-on-write, load and verify
 *   pool-open.c    open/recovery, close, volume operations, info
 *   pool-commit.c  the commit thread: group commit, discards off the lock
 *   pool-snap.c    snapshots and clones (drain the origin, commit, share)
 *   pool-reclaim.c the background reclaim of deleted and ghost maps
 *   pool-diff.c    changed chunks between a snapshot and now (diff, dirty bitmap)
 *   pool-inspect.c info, list and dump
 *   pool-check.c   the checker
 *   pool-vol.c     the dio_volume backend: map_begin/map_end/prep_meta
 * docs/pool-internals.md is the guide to all of it.
 *
 * On disk, little-endian (stage 1 writes host order and refuses to build
 * on big-endian hosts), 4 KiB metadata blocks:
 *
 *   block 0: superblock slot A, block 1: slot B
 *   journal ring: journal_blocks blocks from journal_start
 *   metadata: meta_blocks blocks from meta_start (checkpoints, CoW)
 *   data: nr_chunks chunks from data_start (chunk-aligned)
 */
#ifndef DIO_POOL_H
#define DIO_POOL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dio/tpool.h"
#include "dio/volume.h"
#include "now.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the pool's on-disk format is written in host order: little-endian hosts only"
#endif

#define TP_BLOCK	4096u
#define TP_MAGIC	0x4c504944u	/* "DIPL" */
#define TP_VERSION	1

/* tp_hdr.type */
enum tp_btype {
	TP_BT_SUPER = 1,	/* superblock slot */
	TP_BT_JOURNAL,		/* journal block: records, aux = transaction id */
	TP_BT_ROOT,		/* checkpoint root: block numbers, aux = next root */
	TP_BT_CKPT,		/* checkpoint records (volumes, maps) */
	TP_BT_SPACE,		/* space map: 2 bits per chunk, aux = first chunk */
};

/* The first 64 bytes of every metadata block (R6: self-describing). */
struct tp_hdr {
	uint32_t magic;		/* TP_MAGIC */
	uint32_t crc;		/* crc32c of the 4 KiB block with this field 0 */
	uint8_t uuid[16];	/* the pool's */
	uint16_t type;		/* enum tp_btype */
	uint16_t version;	/* TP_VERSION */
	uint32_t owner;		/* volume id, 0 = the pool */
	uint64_t gen;		/* checkpoint generation, or journal sequence */
	uint64_t blocknr;	/* this block's own number */
	uint64_t aux;		/* per type, see enum tp_btype */
	uint32_t count;		/* records or entries that follow */
	uint32_t used;		/* payload bytes that follow */
};
_Static_assert(sizeof(struct tp_hdr) == 64, "tp_hdr is 64 bytes");
#define TP_PAYLOAD	(TP_BLOCK - sizeof(struct tp_hdr))

/*
 * Feature bits: unknown incompat refuses, ro_compat opens read-only.
 * SHARE: snapshots and clones. Checkpoints may hold LEAF/LREF/REF records
 * and volumes with a parent or TP_VF_RO, the journal SNAP and COW records,
 * the space map counts above 1. Set by create, and by the first snapshot
 * of an older pool (a checkpoint); a version without it refuses the pool
 * ("unknown incompatible features 0x1") instead of serving a snapshot
 * writable or freeing a shared chunk.
 */
#define TP_FEAT_INCOMPAT_SHARE	(1ull << 0)
/*
 * RUNS: checkpoints may hold RUN records (runs of fully written chunks).
 * Set by the first checkpoint that writes one (sticky, like SHARE): a
 * version without it refuses the pool at its newest superblock instead of
 * calling the checkpoint damaged and falling back to the older slot.
 */
#define TP_FEAT_INCOMPAT_RUNS	(1ull << 1)
#define TP_FEAT_COMPAT_KNOWN	0ull
#define TP_FEAT_RO_COMPAT_KNOWN	0ull
#define TP_FEAT_INCOMPAT_KNOWN	(TP_FEAT_INCOMPAT_SHARE | TP_FEAT_INCOMPAT_RUNS)

/* A superblock slot: fits in 512 bytes; the rest of the block is zero. */
struct tp_super {
	struct tp_hdr h;	/* gen = checkpoint generation */
	uint64_t feat_compat, feat_ro_compat, feat_incompat;
	uint64_t dev_size;	/* bytes the pool covers */
	uint32_t block_size;	/* TP_BLOCK */
	uint32_t chunk_size;
	uint32_t sub_size;	/* one written bit per sub_size bytes */
	uint32_t lbs;		/* logical block size at creation */
	uint64_t journal_start, journal_blocks;
	uint64_t meta_start, meta_blocks;
	uint64_t data_start;	/* bytes, chunk-aligned */
	uint64_t nr_chunks;
	uint64_t ckpt_root;	/* first TP_BT_ROOT block of this generation */
	uint64_t journal_tail;	/* first journal sequence to replay */
	uint64_t next_vol_id;
	uint32_t max_volumes;
	uint32_t pad;
	uint64_t created;	/* unix time */
};
_Static_assert(sizeof(struct tp_super) <= 512, "superblock fits in 512 bytes");

/* Records (journal and checkpoint), 8-byte aligned, never across blocks. */
enum tp_rtype {
	TP_R_MAP = 1,		/* vol: lchunk -> pchunk, written bits |= bits */
	TP_R_UNMAP,		/* vol: lchunk written bits &= ~bits; none left: chunk freed */
	TP_R_VOL,		/* volume create (journal) / volume (checkpoint) */
	TP_R_VOLDEL,		/* volume delete: its chunks are freed */
	TP_R_RESIZE,		/* volume size */
	TP_R_COMMIT,		/* end of a transaction: a = transaction id */
	/* SHARE (TP_FEAT_INCOMPAT_SHARE) */
	TP_R_SNAP,		/* vol: a new volume sharing volume b's map; as VOL */
	TP_R_COW,		/* vol: lchunk a re-pointed to new pchunk b, written bits = bits;
				 * the reference to the old chunk is dropped */
	TP_R_LEAF,		/* checkpoint: a shared leaf (a = its number); MAPs with vol 0 follow */
	TP_R_LREF,		/* checkpoint: vol's leaf a is shared leaf b */
	TP_R_REF,		/* checkpoint: chunk b has a references (space map says 3) */
	/* RUNS (TP_FEAT_INCOMPAT_RUNS), checkpoints only: never in the journal */
	TP_R_RUN,		/* vol: count lchunks from l -> pchunks from c, every sub-block
				 * written; 16 bytes (tp_run_rec), within one leaf; vol 0
				 * inside a LEAF (l: its entry) */
};

/* tp_rec.flags of VOL/SNAP, tp_vol.flags */
#define TP_VF_RO	(1u << 0)	/* a snapshot: served read-only */
/*
 * SNAP record only, never in tp_vol.flags: a revert. Volume vol (which
 * exists) drops its map and shares the map of its snapshot b (size a)
 * instead; its name, uuid, flags and parent stay. A SNAP, not a record
 * type of its own: a version that knows SHARE but not revert refuses the
 * record at replay ("volume exists already") instead of stopping the
 * replay silently at a record type it cannot size.
 */
#define TP_VF_REVERT	(1u << 1)

/*
 * RESIZE record, in rsvd: a shrink that drops the map's whole leaves past
 * the new end with their chunks, with no UNMAP for them (the leaf the end
 * falls in is still cut by UNMAPs before it). Without it a shrink over
 * mapped chunks is damage. A version that does not know it ignores rsvd
 * and refuses the record at replay ("shrink over mapped chunks") rather
 * than serve the chunks past the end or drop the transactions after it;
 * once a checkpoint has passed the record it opens the pool again.
 */
#define TP_RZ_DROP	(1u << 0)

struct tp_rec {
	uint8_t type;		/* enum tp_rtype */
	uint8_t words;		/* length in 8-byte words */
	uint16_t rsvd;
	uint32_t vol;		/* volume id */
	uint64_t a;		/* MAP/UNMAP/COW: lchunk; VOL/SNAP/RESIZE: size; COMMIT: txn */
	uint64_t b;		/* MAP/COW: pchunk; VOL/SNAP: parent volume id (0: none) */
	uint32_t bits;		/* MAP/UNMAP */
	uint32_t flags;		/* VOL */
	uint8_t uuid[16];	/* VOL */
	char name[DIO_TPOOL_NAME_MAX + 1];	/* VOL */
};
_Static_assert(sizeof(struct tp_rec) == 104, "tp_rec is 104 bytes");
#define TP_REC_MAX 104

/*
 * A RUN record in a tp_rec: rsvd = count (1..TP_LEAF), a = l | c << 32
 * (lchunks < TP_VOL_CHUNKS_MAX and pchunks + 1 fit in 32 bits, as in
 * tp_ment); nothing else, so its 16 bytes are the whole record.
 */
static inline void
tp_run_rec(struct tp_rec *r, uint32_t vol, uint32_t l, uint32_t c, uint16_t count)
{
	memset(r, 0, sizeof(*r));
	r->type = TP_R_RUN;
	r->words = 2;
	r->rsvd = count;
	r->vol = vol;
	r->a = l | (uint64_t)c << 32;
}

static inline void
tp_run_get(const struct tp_rec *r, uint64_t *l, uint64_t *c, uint32_t *count)
{
	*l = (uint32_t)r->a;
	*c = r->a >> 32;
	*count = r->rsvd;
}

/* crc32c (Castagnoli, reflected 0x82F63B78), software: pool-format.c. */
uint32_t tp_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * Room for one more element in the array *arr of *cap elements of size
 * bytes, n of them used: doubled when full, first elements at first. 0 or
 * -ENOMEM (the array unchanged).
 */
static inline int
tp_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
	size_t c = *cap ? 2 * *cap : first;
	void *a, *na;

	if (n < *cap)
		return 0;
	memcpy(&a, arr, sizeof(a));	/* arr: the address of a T *, whatever T */
	na = realloc(a, c * size);
	if (!na)
		return -ENOMEM;
	memcpy(arr, &na, sizeof(na));
	*cap = c;
	return 0;
}

/* Bytes a record of type t takes on disk. */
size_t tp_rec_size(unsigned int t);

/* Fill h and the crc of the block b (4 KiB, header at its start). */
void tp_seal(void *b, const uint8_t *uuid, unsigned int type, uint32_t owner, uint64_t gen,
	     uint64_t blocknr, uint64_t aux, uint32_t count, uint32_t used);
/* Whether block b is sound: magic, crc, uuid, type, own number (gen unchecked). */
bool tp_verify(const void *b, const uint8_t *uuid, unsigned int type, uint64_t blocknr);

/* Metadata I/O: synchronous, on the pool fd (stage 1). Tests hook it. */
struct dio_tpool_io {
	int (*pread)(void *priv, int fd, void *buf, size_t len, uint64_t off);
	/* fua: durable when it returns (RWF_DSYNC) */
	int (*pwrite)(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua);
	int (*flush)(void *priv, int fd);
	/* optional: the device may forget [off, off+len) (freed chunks); NULL = never */
	int (*discard)(void *priv, int fd, uint64_t off, uint64_t len);
	void *priv;
};
extern const struct dio_tpool_io tp_sys_io;

/* ---- in memory ---- */

/* One logical chunk of a volume. */
struct tp_ment {
	uint32_t p1;		/* physical chunk + 1; 0 = hole */
	uint32_t bits;		/* written sub-blocks (in memory: the data completed) */
	uint32_t dbits;		/* of those, the ones whose records are durable */
};

#define TP_LEAF 1024	/* entries per map leaf */

/*
 * A leaf of TP_LEAF entries, shared by the volumes whose tables point to
 * it (a snapshot copies the table, not the leaves). A chunk's refcount
 * (dio_tpool.space) counts the leaves that map it, so a snapshot is
 * O(leaves); a leaf is copied before any of its entries changes while
 * refs > 1 (tp_ment_w), and the copy adds a reference to each chunk.
 */
struct tp_leaf {
	uint32_t refs;		/* volume tables pointing here */
	uint32_t n;		/* entries with a chunk */
	uint32_t mark;		/* walks that visit each leaf once (tp_leaf_walk) */
	uint32_t num;		/* checkpoint writer: its number, 0 = none yet */
	struct tp_ment e[TP_LEAF];
};
/*
 * Logical chunks of a volume at most (16 TiB of 64 KiB chunks): its leaf
 * table stays within 2 MiB and a walk of its map (checkpoint, check,
 * delete) within 2^28 entries.
 */
#define TP_VOL_CHUNKS_MAX (1ull << 28)

struct tp_vol {
	uint32_t id;
	uint32_t flags;		/* TP_VF_* */
	uint32_t parent;	/* the volume it was a snapshot or clone of, 0: none */
	char name[DIO_TPOOL_NAME_MAX + 1];
	uint8_t uuid[16];
	uint64_t size;
	uint64_t nl;		/* logical chunks */
	struct tp_leaf **leaf;	/* nl / TP_LEAF rounded up, leaves on demand */
	uint32_t writers;	/* writes between map_begin and map_end */
	/*
	 * Snapshots of it waiting for writers to drain (pool-snap.c): new
	 * writes (not DIO_MAP_HELD) get -EAGAIN and wait (map_wait) until the
	 * last one's record is applied; the volume cannot be deleted meanwhile.
	 */
	uint32_t snaps;
	/*
	 * The flush id that makes the last write in place (no record of its
	 * own) durable, as tp_prec.needs: a snapshot's record needs it (R1).
	 */
	uint64_t wneeds;
	uint64_t cursor;	/* allocation cursor (physical chunk) */
	uint64_t mapped;	/* chunks mapped */
	struct tp_dvol *dv;	/* the open dio_volume, or NULL */
};

/* chunk states, tp_pool.cstate */
enum {
	TP_C_FREE = 0,
	TP_C_USED = 1,
	TP_C_PENDING = 2,	/* freed, not durable (R3) */
	/*
	 * Free and durable, its discard not done yet (pool-map.c): the
	 * committer thread discards it outside the lock, so a delete does not
	 * wait for the device. Allocated (its discard dropped) only once no
	 * FREE chunk is left; counted in free_chunks.
	 */
	TP_C_DISCARD = 3,
	TP_C_DISCARDING = 4,	/* being discarded now: not in free_chunks, not allocatable */
};

/* The most chunks one background discard covers: the lock is free meanwhile. */
#define TP_DISCARD_BATCH 1024

/*
 * A map being reclaimed: a deleted volume out of the volume table (its
 * name is free), or a ghost (tp_vol_ghost: the old map of a reverted
 * volume, the leaves past a shrunk volume's new end) that never was in
 * it; its leaf table still holds the references the map made. One record
 * (VOLDEL, a revert's SNAP, a RESIZE with TP_RZ_DROP) frees all of them
 * at once on disk (replay drops the map; a checkpoint writes no record of
 * it, so its chunks count free there): the reclaim changes memory only,
 * and needs no record of its progress.
 */
struct tp_reclaim {
	struct tp_vol *v;
	const char *why;	/* for the log: "deleted", "reverted", "shrunk" */
	uint64_t serial;	/* its record: what it frees is allocatable once that is durable */
	uint64_t next;		/* the next leaf to drop */
	uint64_t chunks;	/* chunks it mapped at the delete */
	uint64_t left;		/* of those, the ones whose leaves still hold them */
	struct timespec t0;	/* when the delete handed it over (CLOCK_MONOTONIC) */
};

/* Leaves one reclaim batch drops by default: one lock hold. */
#define TP_RECLAIM_LEAVES 1

/* Phases of a snapshot, in order (dio_tpool.snap_t). */
enum tp_snap_phase {
	TP_SP_START,	/* the call: locked */
	TP_SP_FLUSH,	/* the origin's writes in place flushed, lock dropped (0: idle, none) */
	TP_SP_LETGO,	/* a write under way was slow: the parked ones let go (0: not) */
	TP_SP_DRAIN,	/* the origin's writes under way ended (new ones parked meanwhile) */
	TP_SP_APPLY,	/* the record appended and applied */
	TP_SP_WAKE,	/* the parked writes woken */
	TP_SP_COMMIT,	/* the record durable */
	TP_SP_N
};

/* Chunks [c, c + n). */
struct tp_run {
	uint64_t c, n;
};

/* A record waiting for its commit. */
struct tp_prec {
	uint64_t serial;	/* order of appending */
	uint64_t needs;		/* flush id that makes its data durable (0: none needed) */
	struct tp_rec r;
};

/* A chunk freed by record 'serial': allocatable once that record is durable. */
struct tp_pfree {
	uint64_t chunk;
	uint64_t serial;
};

/*
 * The pool. Lock order: lock, then nothing (dio_log only). lock guards
 * every field below it and the volumes and their maps. Checkpoints and
 * synchronous copies still do their metadata I/O under it; a commit's
 * flush and journal write, snapshot flushes and background discards drop
 * it (commit_busy and the flush ids keep them in order).
 */
struct dio_tpool {
	char *path;
	int fd;
	bool readonly;
	uint32_t lbs;
	const struct dio_tpool_io *io;
	dio_tpool_progress_fn progress;	/* dio_tpool_opts', or NULL */
	void *progress_priv;
	_Atomic unsigned int refs;	/* opener + each open volume */
	pthread_mutex_t lock;

	struct tp_super sb;		/* the durable superblock, decoded */
	uint64_t chunk_size, sub_size;
	uint32_t nsub;			/* sub-blocks per chunk (<= 32) */
	uint32_t full_bits;

	struct tp_vol **vols;		/* by index; NULL when deleted */
	uint32_t nvols;
	uint64_t next_vol_id;
	uint32_t leaf_mark;		/* last tp_leaf.mark used */
	/*
	 * The metadata reserve (R5) with shared leaves: a checkpoint writes a
	 * record per reference (nrefs = the sum of space), one per leaf a
	 * volume points to (nleaves, LREF when shared) and a REF per chunk
	 * with 3 or more. Live (meta_guard), a write into a hole, copying a
	 * shared leaf, a snapshot or a revert fails with ENOSPC once a
	 * checkpoint with it would outgrow the reserve (tp_meta_fits).
	 */
	uint64_t nrefs, nleaves;
	/*
	 * Records the maps may grow by without counting again: the room an
	 * exact count found left (tp_meta_fits), less what everything that
	 * grew the records since took from it (tp_meta_spend).
	 */
	uint64_t meta_credit;
	uint64_t meta_need, meta_ask;	/* the last refusal's count and ask, for the log */
	uint64_t meta_report_ns;	/* block status's last exact count (tpv_cow_meta_room) */
	uint64_t trim_skip_ns, trim_skips;	/* TRIMs left undone for it (tpv_trim_skipped) */
	bool meta_guard;
	uint64_t cow_chunks;		/* chunks copied for writes to shared ones */
	/* a volume's writers drained while a snapshot of it waits (CLOCK_MONOTONIC) */
	pthread_cond_t snap_cond;
	uint64_t snap_parks;		/* writes turned away (map_wait) by a snapshot */
	/*
	 * The last snapshot's phases (pool-snap.c), CLOCK_MONOTONIC ns when
	 * each ended (0: not reached), and when it first parked a write (0:
	 * none): what bench/pool-snap-bench -p breaks a snapshot's time into.
	 */
	uint64_t snap_t[TP_SP_N];
	uint64_t snap_park_t;

	uint8_t *cstate;		/* TP_C_* per physical chunk */
	uint16_t *space;		/* refcount per chunk: the leaves that map it (+ leaks) */
	uint16_t *inflight;		/* writes between map_begin and map_end, per chunk */
	uint64_t free_chunks;

	/* journal */
	uint64_t head;			/* next sequence to write */
	uint64_t serial;		/* records appended so far */
	struct tp_prec *pend;		/* appended, not yet committed, in order */
	size_t npend, cappend;
	struct tp_pfree *pfree;		/* chunks freed, not yet durable */
	size_t npfree, cappfree;
	/*
	 * Chunks a record not yet durable took a reference from while
	 * another map keeps one (a copy-on-write, a TRIM, a revert): the
	 * durable maps still share them, so their remaining holder must not
	 * write them in place until that record is durable, or a crash shows
	 * the write in the map that let go. A bit per chunk (unsharing) to
	 * look up, the (chunk, record serial) pairs (punshare) to clear by;
	 * unshare_all, when there was no memory for a pair: every chunk counts
	 * as unsharing until record unshare_all is durable.
	 */
	uint8_t *unsharing;
	struct tp_pfree *punshare;
	size_t npunshare, cappunshare;
	uint64_t unshare_all;
	uint64_t flush_issued;		/* ids given to device flushes */
	uint64_t flush_done;		/* highest id of a completed flush */
	/*
	 * Replay stopped before blocks that verify (a damaged block, or a
	 * commit torn in the middle): the next commit is a checkpoint, which
	 * moves the tail past their sequences before any block follows the
	 * replayed end, so a later replay can never take them.
	 */
	bool journal_gap;
	bool dirty;			/* changed since the last checkpoint */
	bool no_discard;		/* the device refused a discard: do not ask again */
	/* background discards (pool-map.c), under lock */
	struct tp_run *dq;		/* runs that may hold TP_C_DISCARD chunks */
	size_t ndq, capdq;
	uint64_t ndiscarding;		/* chunks TP_C_DISCARDING */
	pthread_cond_t discard_cond;	/* a discard in flight completed, a commit's I/O, or a reclaim batch */
	uint64_t discarded;		/* chunks discarded in the background */
	uint32_t discard_batch;		/* the most chunks one background discard covers */

	/* background commit (pool-commit.c); fields under lock once the thread runs */
	unsigned int commit_ms;		/* 0: none */
	bool committer_on, commit_stop;
	bool committer_idle;		/* waiting for records, not for its clock */
	pthread_t committer;
	pthread_cond_t commit_cond;	/* a first record waits, or stop */
	uint64_t bg_commits;		/* commits the thread made */
	/*
	 * A commit's device I/O in flight without the lock (tp_commit_unlocked,
	 * pool-journal.c): the flush and the journal write of the records it
	 * packed, at sequences from head. Meanwhile no other commit or
	 * checkpoint starts (tp_commit_idle waits on discard_cond, which is
	 * broadcast when it ends) and nothing else removes pending records
	 * but the last appended; writers append and allocate as usual.
	 */
	bool commit_busy;

	/*
	 * Background reclaim of dropped maps (pool-reclaim.c), under lock
	 * once the thread runs: the volumes a delete detached and the ghosts
	 * of reverts and shrinks, whose leaves still hold their references,
	 * dropped reclaim_leaves leaves per lock hold.
	 */
	struct tp_reclaim *rq;		/* oldest first */
	size_t nrq, caprq;
	uint32_t reclaim_leaves;	/* leaves dropped per lock hold */
	bool reclaimer_on, reclaim_stop;
	pthread_t reclaimer;
	pthread_cond_t reclaim_cond;	/* a volume to reclaim, or stop */
	uint64_t reclaimed;		/* chunk entries dropped in the background */
	/* tests: called by the thread before each batch, lock not held */
	void (*reclaim_gate)(struct dio_tpool *p);

	/* checkpoints: blocks of the durable one, which the next must not touch */
	uint8_t *meta_used;		/* per metadata block */
	uint8_t *buf;			/* TP_BLOCK-aligned scratch for metadata I/O */
	size_t buflen;
};

/*
 * Progress of long work (dio_tpool_progress_fn): every 1024 units and at
 * the end, or every unit when the total is not known.
 */
static inline void
tp_progress(struct dio_tpool *p, const char *what, uint64_t done, uint64_t total)
{
	if (p->progress && (total == 0 || done % 1024 == 0 || done == total))
		p->progress(p->progress_priv, what, done, total);
}

/* ---- pool-format.c ---- */

/* Fill sb for a pool of dev_size bytes (geometry). 0 or -EINVAL. */
int tp_geometry(struct tp_super *sb, uint64_t dev_size, uint32_t chunk_size,
		uint32_t journal_blocks, uint32_t max_volumes, uint32_t lbs);
/* Read and verify superblock slot (0/1) into *sb. 0, -EUCLEAN (bad) or -errno. */
int tp_super_read(struct dio_tpool *p, int slot, struct tp_super *sb);
/* Write sb to slot gen & 1 with FUA. 0 or -errno. */
int tp_super_write(struct dio_tpool *p, const struct tp_super *sb);
/* Grow the scratch buffer to len bytes. 0 or -ENOMEM. */
int tp_buf_reserve(struct dio_tpool *p, size_t len);

/* ---- pool-map.c ---- */

/* Entry of lchunk l of v, to read. NULL: none. */
struct tp_ment *tp_ment(struct tp_vol *v, uint64_t l);
/*
 * Entry of lchunk l of v, to change: its leaf made when make, copied first
 * when shared. NULL: none, or errno ENOMEM, or ENOSPC when a copy would
 * outgrow the metadata reserve (tp_meta_fits).
 */
struct tp_ment *tp_ment_w(struct dio_tpool *p, struct tp_vol *v, uint64_t l, bool make);
/* Whether the chunk of e (mapped) is shared with another volume: copy-on-write. */
bool tp_shared(const struct dio_tpool *p, const struct tp_vol *v, uint64_t l,
	       const struct tp_ment *e);
/* e (of v) maps chunk c now: a reference, counted. */
void tp_ent_map(struct dio_tpool *p, struct tp_vol *v, uint64_t l, struct tp_ment *e, uint64_t c);
/*
 * e (of v) maps nothing now: its reference dropped; the chunk, if that was
 * the last one, freed now (serial 0) or once record serial is durable (R3).
 */
void tp_ent_unmap(struct dio_tpool *p, struct tp_vol *v, uint64_t l, struct tp_ment *e,
		  uint64_t serial);
/* tp_ent_unmap serial: replay and loading, where tp_derive works out the chunk states. */
#define TP_NO_RELEASE UINT64_MAX
/*
 * v's map becomes s's (shared leaf by leaf), its size s's. Its old leaves
 * go to *old, a ghost (tp_vol_ghost) for the caller to drop, when old is
 * set and there is memory for one (else *old = NULL); otherwise they lose
 * a reference here, their chunks as tp_ent_unmap (serial). 0 or -ENOMEM
 * (nothing changed).
 */
int tp_vol_revert(struct dio_tpool *p, struct tp_vol *v, struct tp_vol *s, uint64_t serial,
		  struct tp_vol **old);
/*
 * A ghost of v: a volume out of the table (same id and name, for the
 * log), holding v's leaves from leaf number from on, which v keeps no
 * more (its slots NULL, its mapped count without them). Its references
 * are dropped by tp_reclaim_map. NULL: -ENOMEM, v unchanged.
 */
struct tp_vol *tp_vol_ghost(struct dio_tpool *p, struct tp_vol *v, uint64_t from);
/* Drop v's references to its leaves (and their chunks), as tp_ent_unmap; free v. */
void tp_vol_drop(struct dio_tpool *p, struct tp_vol *v, uint64_t serial);
/* Take v out of the volume table (its memory stays). */
void tp_vol_detach(struct dio_tpool *p, struct tp_vol *v);
/*
 * Drop up to max of v's leaves from *next on, as tp_vol_drop does, and
 * move *next past them: the number of chunk entries they held.
 */
uint64_t tp_vol_drop_leaves(struct dio_tpool *p, struct tp_vol *v, uint64_t *next, uint64_t max,
			    uint64_t serial);
/*
 * A quick bound of the worst case: whether a checkpoint still fits the
 * reserve with refs more references, leaves more leaves.
 */
bool tp_meta_room(const struct dio_tpool *p, uint64_t refs, uint64_t leaves);
/*
 * Whether the records a checkpoint would write may grow by grow more, as
 * tp_meta_exact counts them, and still fit the reserve (R5; lock held):
 * the credit first, then tp_meta_room's bound with refs and leaves more,
 * past both an exact count (O(map)), whose room left becomes the credit.
 * Nothing is taken: what then grows the records spends (tp_meta_spend)
 * under the same hold of the lock. false: ENOSPC (the counts kept for
 * tp_meta_log). Always true while not live (meta_guard unset).
 */
bool tp_meta_fits(struct dio_tpool *p, uint64_t refs, uint64_t leaves, uint64_t grow);
/*
 * The records may have grown by up to grow: taken from the credit, which
 * ends at 0 when it had less. Anything that can grow them calls it,
 * guarded or not (replay), so the credit never counts room gone.
 */
void tp_meta_spend(struct dio_tpool *p, uint64_t grow);
/* How many records sharing every leaf of v with one more volume adds (snapshot, revert). */
uint64_t tp_share_grows(const struct tp_vol *v);
/*
 * tp_ment_w failed (errno) for a write while a dropped map is still being
 * reclaimed: its leaves' references are metadata room about to come
 * back, as its chunks are data (tp_alloc). On ENOSPC with a reclaim
 * pending, wait for its next batch (lock dropped) and true: the caller
 * looks its entry up again. false: the error stands (ENOSPC: logged by
 * tp_meta_log, nothing left to reclaim).
 */
bool tp_meta_wait(struct dio_tpool *p, const char *what);
/* Log why tp_meta_fits refused (what: the operation refused). */
void tp_meta_log(struct dio_tpool *p, const char *what);
/* A new mark for a walk that visits each shared leaf once. */
uint32_t tp_leaf_mark(struct dio_tpool *p);
/* A volume record in memory (maps empty). NULL on -ENOMEM. */
struct tp_vol *tp_vol_new(struct dio_tpool *p, uint32_t id, const char *name, uint64_t size,
			  const uint8_t *uuid);
/* Free a volume's memory. */
void tp_vol_free(struct tp_vol *v);
/* Volume by id or name, NULL when none. */
struct tp_vol *tp_vol_by_id(struct dio_tpool *p, uint32_t id);
struct tp_vol *tp_vol_by_name(struct dio_tpool *p, const char *name);
/* Add v to the table. 0 or -ENOMEM. */
int tp_vol_add(struct dio_tpool *p, struct tp_vol *v);
/*
 * A free chunk for v near its cursor, now USED; -ENOSPC when none;
 * -EAGAIN when it waited (lock dropped) for a discard or a reclaim batch
 * to give some back: what the caller looked up may have changed, so it
 * looks again before it calls again.
 */
int64_t tp_alloc(struct dio_tpool *p, struct tp_vol *v);
/* Chunk c no longer referenced by v: free now or pending record serial (R3). */
void tp_chunk_release(struct dio_tpool *p, uint64_t c, uint64_t serial);
/* Records up to serial are durable: their pending chunks become free. */
void tp_pfree_durable(struct dio_tpool *p, uint64_t serial);
/*
 * Whether a write to chunk c must go to a copy though no other map holds
 * it now: one lost its reference by a record not yet durable (punshare).
 */
bool tp_unsharing(const struct dio_tpool *p, uint64_t c);
/* The committer: discard one batch of queued chunks, dropping the lock meanwhile. */
void tp_discard_some(struct dio_tpool *p);
/* At close, no committer left: discard everything still queued, here. */
void tp_discard_drain(struct dio_tpool *p);
/* Apply a record to the maps and space map (replay and checkpoint load). 0 or -EUCLEAN. */
int tp_apply(struct dio_tpool *p, const struct tp_rec *r, char *err, size_t errlen);
/* Derived state from maps and space map (R7): chunk states, counts, cursors. */
void tp_derive(struct dio_tpool *p);

/* ---- pool-journal.c ---- */

/* Append a record to the open transaction (needs: see tp_prec). 0 or -ENOMEM. */
int tp_append(struct dio_tpool *p, const struct tp_rec *r, uint64_t needs);
/* A device flush now: every record appended so far becomes safe. 0 or -errno. */
int tp_flush_sync(struct dio_tpool *p);
/* tp_flush_sync, the lock dropped while the device flushes. */
int tp_flush_unlocked(struct dio_tpool *p);
/*
 * Write the longest prefix of pending records whose data is durable
 * (needs <= flush_done), or all of them after a device flush when all is
 * set, to the journal with FUA (R1, R2). 0, 1 when the journal has no room
 * for them (nothing written: a checkpoint must take them), or -errno (the
 * records stay pending).
 */
int tp_journal_write(struct dio_tpool *p, bool all);
/*
 * tp_journal_write with p->lock held, the device flush and journal write
 * done without it, so that writes go on meanwhile (allocating writes never
 * wait on the commit's device I/O). Records appended meanwhile wait for
 * the next commit. Returns as tp_journal_write.
 */
int tp_journal_write_unlocked(struct dio_tpool *p, bool all);
/* Wait (lock held) until no commit's device I/O is in flight. */
void tp_commit_idle(struct dio_tpool *p);
/* Replay committed transactions from sb.journal_tail; sets head. 0 or -errno. */
int tp_replay(struct dio_tpool *p, char *err, size_t errlen, unsigned int *nblocks);

/*
 * A new pool at path, laid out and wiped but for its first checkpoint:
 * *p is ready for tp_checkpoint, then tp_state_free. 0 or -errno
 * (reported; nothing to free).
 */
int tp_create_layout(const char *path, const struct dio_tpool_create_opts *copts,
		     const struct dio_tpool_opts *opts, struct dio_tpool *p);
/* Free a pool's in-memory state (maps, buffers, pending records) and close its fd. */
void tp_state_free(struct dio_tpool *p);

/* ---- pool-ckpt.c ---- */

/* Flush, write the whole state copy-on-write, flush, superblock FUA. 0 or -errno. */
int tp_checkpoint(struct dio_tpool *p);
/*
 * Commit the pending records whose data is durable (all of them, after a
 * flush, when all is set): to the journal, or by a checkpoint when the
 * journal is full. 0 or -errno (the records stay pending).
 */
int tp_commit(struct dio_tpool *p, bool all);
/* tp_commit, its device I/O without p->lock (tp_journal_write_unlocked); a checkpoint with it. */
int tp_commit_unlocked(struct dio_tpool *p, bool all);
/* Load the checkpoint sb names into memory (R6 checks). 0, -EUCLEAN or -errno. */
int tp_ckpt_load(struct dio_tpool *p, const struct tp_super *sb, char *err, size_t errlen);

/* ---- pool-open.c ---- */

/* Open and recover without the lock or the volumes' side (open and check). */
int tp_load(const char *path, const struct dio_tpool_opts *opts, bool check,
	    struct dio_tpool **out, char *err, size_t errlen);
/* Free a pool's memory and close its fd. */
void tp_free(struct dio_tpool *p);
/* Take / drop a pool reference; the last one closes it. */
void tp_get(struct dio_tpool *p);
void tp_put(struct dio_tpool *p);

/* ---- pool-commit.c ---- */

/* Records wait to be committed (lock held): start the thread, or its clock. */
void tp_committer_kick(struct dio_tpool *p);
/* Stop and join the thread (lock not held); before the last checkpoint. */
void tp_committer_stop(struct dio_tpool *p);

/* ---- pool-reclaim.c ---- */

/*
 * Volume v is deleted (lock held, its VOLDEL appended as record serial):
 * out of the table now, its references dropped as tp_reclaim_map.
 */
void tp_reclaim_start(struct dio_tpool *p, struct tp_vol *v, uint64_t serial);
/*
 * The map of v, out of the table (deleted, or a ghost), is freed by
 * record serial (lock held, appended): its references dropped here or,
 * for a map of more than reclaim_leaves leaves in a pool with background
 * work (commit_ms), by the reclaim thread; v is freed after. why: for the log.
 */
void tp_reclaim_map(struct dio_tpool *p, struct tp_vol *v, uint64_t serial, const char *why);
/* Stop the thread (lock not held), then finish every reclaim left, here. */
void tp_reclaim_finish(struct dio_tpool *p);
/* Chunk entries the reclaims under way still hold, lock held. */
uint64_t tp_reclaim_left(const struct dio_tpool *p);
/* Free the memory of reclaims left (the pool is being freed: no references matter). */
void tp_reclaim_free(struct dio_tpool *p);

/* ---- pool-check.c ---- */

/* Called by tp_recount for a mapping out of bounds or of a chunk mapped already. */
typedef void (*tp_recount_fn)(void *priv, const struct tp_vol *v, uint64_t lchunk,
			      uint64_t pchunk);
/* References to each chunk from the maps (leaves), in a malloc'd array. 0 or -ENOMEM. */
int tp_recount(struct dio_tpool *p, uint16_t **refs, tp_recount_fn bad, void *priv);

/* ---- pool-vol.c ---- */

/* The pool and volume of an open pool volume; false for other volumes. */
bool tp_dvol_of(struct dio_volume *vol, struct dio_tpool **pool, struct tp_vol **tv);

/* The writers waiting on v's open volume (lock held), to wake without the lock. */
struct dio_map_waiter *tp_dvol_waiters(struct tp_vol *v);
/* Wake a list tp_dvol_waiters gave (lock not held). */
void tp_dvol_wake(struct dio_map_waiter *w);

/* The open dio_volume of v (a new one, or another reference). 0 or -errno. */
int tp_dvol_open(struct dio_tpool *p, struct tp_vol *v, struct dio_volume **out);

#endif /* DIO_POOL_H */
