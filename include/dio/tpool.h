/* SPDX-License-Identifier: MIT */
/*
 * The thin pool volume backend: one device or file carved into thin
 * volumes (design: POOL.md). Named 'tpool' because struct dio_pool is the
 * pinned buffer pool (buf.h).
 *
 * Stage 1: every map is in memory; metadata I/O (journal, checkpoints,
 * superblocks) is synchronous on the pool fd under the pool lock; data I/O
 * goes through the dio engine like any volume's.
 */
#ifndef DIO_TPOOL_H
#define DIO_TPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dio/volume.h"

struct dio_tpool;
struct dio_tpool_io;	/* metadata I/O hooks, for tests (lib/pool.h) */

#define DIO_TPOOL_NAME_MAX 55	/* bytes in a volume name, without the NUL */

/*
 * Long work under way (loading a checkpoint, recounting references): done
 * of total units of the step 'what' (total 0: not known ahead). Called
 * with the pool's lock held, often: it must not call into the pool, and a
 * display rate-limits itself.
 */
typedef void (*dio_tpool_progress_fn)(void *priv, const char *what, uint64_t done,
				      uint64_t total);

struct dio_tpool_opts {
	bool readonly;		/* open read-only: no metadata is ever written */
	bool no_direct;		/* buffered I/O (tmpfs, memfd); tests only */
	char *errbuf;		/* optional: why open/create failed */
	size_t errlen;
	const struct dio_tpool_io *io;	/* NULL: pread/pwrite/fdatasync */
	/*
	 * Commit what writes left waiting for a FLUSH within this many ms of
	 * the first such record, from a thread of the pool (0: only on FLUSH,
	 * FUA, a quarter of the journal and close). Servers use 1000.
	 */
	unsigned int commit_ms;
	/*
	 * Keep freed chunks on the device: no hole punched in a pool file, no
	 * discard sent to a device. For preallocated files (a write into a
	 * punched hole makes the filesystem allocate again, and a FUA write
	 * commit its journal too) and devices whose discard is slow.
	 */
	bool no_discard;
	dio_tpool_progress_fn progress;	/* optional, NULL: none */
	void *progress_priv;
};

struct dio_tpool_create_opts {
	uint32_t chunk_size;	/* power of two, 4 KiB..1 MiB; 0 = 64 KiB */
	uint64_t size;		/* bytes to use; 0 = the whole file or device */
	uint32_t journal_blocks;	/* 4 KiB blocks; 0 = sized from the pool */
	uint32_t max_volumes;	/* 0 = 256 */
};

/*
 * Write a new, empty pool on path (a file, grown to opts->size if smaller,
 * or a block device). Everything on it is lost. 0 or -errno.
 */
int dio_tpool_create(const char *path, const struct dio_tpool_create_opts *copts,
		     const struct dio_tpool_opts *opts);

/*
 * Open a pool: take an exclusive OFD lock (-EAGAIN when another process has
 * it open), pick the newest superblock whose checkpoint verifies, replay
 * the journal's committed transactions. Nothing is written while
 * recovering. 0 or -errno (the reason in opts->errbuf and the log).
 */
int dio_tpool_open(const char *path, const struct dio_tpool_opts *opts, struct dio_tpool **out);

/*
 * Drop the opener's reference: the pool is checkpointed and closed when
 * no volume of it is open any more. Errors are logged.
 */
void dio_tpool_close(struct dio_tpool *pool);

/* Flush the device and commit every pending record. 0 or -errno. */
int dio_tpool_sync(struct dio_tpool *pool);

/* Flush, write a checkpoint and move the journal tail. 0 or -errno. */
int dio_tpool_checkpoint(struct dio_tpool *pool);

/* Create an empty volume of size bytes (multiple of 4096), durably. 0 or -errno. */
int dio_tpool_volume_create(struct dio_tpool *pool, const char *name, uint64_t size);
/*
 * Delete a volume that is not open (-EBUSY), durably: its name is free
 * when it returns. Its chunks are free on disk then too; in memory they
 * come back as the reclaim goes (in the background in a pool opened with
 * commit_ms, dio_tpool_info.reclaim_chunks; before the return otherwise,
 * and at the latest at close). 0 or -errno.
 */
int dio_tpool_volume_delete(struct dio_tpool *pool, const char *name);

/*
 * A snapshot (read-only) or a clone (writable) of volume 'origin', named
 * 'name', durably: O(1) in the origin's size (its map's leaves are shared,
 * and copied on the first change; a chunk either side writes to while it
 * is shared is copied first). It holds every write to origin completed
 * before the call; writes in flight on an open origin are waited for (up
 * to 2 s, then -EBUSY), and writes that start meanwhile wait for the
 * snapshot (they land after it), 1 ms at most: past that they go on and
 * may land in it. Snapshots and clones are volumes like
 * any other: of them too, deleted in any order. 0 or -errno (-ENOENT: no origin,
 * -EEXIST: name taken, -ENOSPC: max_volumes, or the metadata reserve could
 * not hold the maps once they are copied apart, -EROFS). Writes that
 * would copy a shared map leaf past that reserve fail with ENOSPC too.
 */
int dio_tpool_volume_snapshot(struct dio_tpool *pool, const char *origin, const char *name);
int dio_tpool_volume_clone(struct dio_tpool *pool, const char *origin, const char *name);

/*
 * Revert volume 'name' to its snapshot 'snapshot', durably: the volume
 * then reads exactly what the snapshot reads, its size included; the
 * snapshot stays. One journal record: all or nothing across a crash. What
 * only the volume mapped is free on disk once that record is durable; in
 * memory it comes back as the volume delete's does. Only to a
 * read-only snapshot taken of this volume (its parent is the volume):
 * -EINVAL for another volume's snapshot, a clone, or a snapshot of a
 * snapshot; -EROFS when 'name' is itself a snapshot or the pool is
 * read-only; -EBUSY when the volume is open (served); -ENOENT when either
 * does not exist; -ENOSPC when the metadata reserve could not hold it.
 * 0 or -errno.
 */
int dio_tpool_volume_revert(struct dio_tpool *pool, const char *name, const char *snapshot);

/*
 * What changed in volume 'target' since volume 'base' (a snapshot of it,
 * or an older snapshot), over [off, off+len) of target: runs of target's
 * bytes, in order, adjacent runs alike merged, each changed or not. The
 * unit is the chunk: a chunk is changed when the two volumes map it
 * differently (another physical chunk, other written sub-blocks). fn runs
 * under the pool's lock: it must not call into the pool; a nonzero return
 * stops the walk and is returned. 0, fn's value, or -errno (-ENOENT: no
 * such volume, -EINVAL: off past target's end).
 */
typedef int (*dio_tpool_diff_fn)(void *priv, uint64_t off, uint64_t len, bool changed);
int dio_tpool_volume_diff(struct dio_tpool *pool, const char *base, const char *target,
			  uint64_t off, uint64_t len, dio_tpool_diff_fn fn, void *priv);
/* The same with target an open pool volume (dio_tpool_volume_open); -ENOTSUP for others. */
int dio_tpool_dvol_diff(struct dio_volume *vol, const char *base, uint64_t off, uint64_t len,
			dio_tpool_diff_fn fn, void *priv);
/*
 * The names of the volumes a diff of an open pool volume is offered
 * against (the server's qemu:dirty-bitmap contexts): the snapshots taken
 * of it, and when it is itself a snapshot, the other snapshots of its
 * origin. In a malloc'd array of *n (free it; NULL when none). 0 or
 * -errno (-ENOTSUP: not a pool volume).
 */
int dio_tpool_dvol_snapshots(struct dio_volume *vol, char (**names)[DIO_TPOOL_NAME_MAX + 1],
			     size_t *n);

/*
 * Resize a volume to size bytes (multiple of 4096), durably. A grow of an
 * open volume is seen by its next opener (the size an open volume reports
 * grows with it; clients that know the old one keep it). A shrink refuses
 * an open volume (-EBUSY), forgets what was written past the new end and
 * frees the chunks that held only that, in the same transaction as the new
 * size (in memory they come back as a volume delete's do). 0 or -errno
 * (-ENOENT: no such volume, -EROFS: read-only pool).
 */
int dio_tpool_volume_resize(struct dio_tpool *pool, const char *name, uint64_t size);

/*
 * The volume 'name' as a dio_volume (its fd is the pool's), holding one
 * reference: the same volume with one more reference when it is open
 * already. -ENOENT when there is no such volume.
 */
int dio_tpool_volume_open(struct dio_tpool *pool, const char *name, struct dio_volume **out);

struct dio_tpool_vol_info {
	char name[DIO_TPOOL_NAME_MAX + 1];
	uint32_t id;
	uint64_t size;
	uint64_t mapped;	/* chunks */
	uint8_t uuid[16];
	uint32_t parent;	/* id of the volume it is a snapshot or clone of; 0: none */
	bool readonly;		/* a snapshot */
};

/* The volumes, in id order, in a malloc'd array (free it). 0 or -errno. */
int dio_tpool_volume_list(struct dio_tpool *pool, struct dio_tpool_vol_info **out, size_t *n);

struct dio_tpool_info {
	uint8_t uuid[16];
	uint64_t dev_size;
	uint32_t chunk_size, sub_size, lbs;
	uint64_t nr_chunks, free_chunks;
	uint64_t gen;		/* checkpoint generation */
	uint64_t journal_blocks, journal_used;
	uint64_t meta_blocks;	/* the metadata area */
	uint64_t ckpt_blocks;	/* of those, the durable checkpoint's */
	uint32_t nr_volumes, max_volumes;
	bool readonly;
	/*
	 * Deleted volumes, and the old maps of reverted volumes and tails of
	 * shrunk ones, whose chunks are still being given back in the
	 * background, and the chunks they still hold (not in free_chunks yet;
	 * on disk they are free already: a reopen finds them so).
	 */
	uint32_t reclaim_volumes;
	uint64_t reclaim_chunks;
};

/* What the pool looks like now. */
void dio_tpool_get_info(struct dio_tpool *pool, struct dio_tpool_info *info);

/* Its metadata, beyond dio_tpool_info: what dionbd-pool dump shows. */
struct dio_tpool_meta {
	/* the superblock in use */
	uint32_t version, block_size;
	uint64_t feat_compat, feat_ro_compat, feat_incompat;
	uint64_t created;		/* unix time */
	uint64_t journal_start, meta_start, data_start;	/* blocks, blocks, bytes */
	uint64_t ckpt_root;		/* first root block of the checkpoint */
	uint64_t ckpt_blocks;		/* metadata blocks the checkpoint holds */
	uint64_t next_vol_id;
	/* the journal: sequences [tail, head) are committed since the checkpoint */
	uint64_t journal_head, journal_tail;
	uint64_t pending_records;	/* appended, not committed yet */
	/* the space map */
	uint64_t chunks_used, chunks_pending, chunks_free;	/* pending: freed, not durable */
	uint64_t refcount[4];		/* chunks with 0, 1, 2, 3 or more references */
	uint64_t leaked;		/* counted used, referenced by no volume */
};

/* Fill *m (recounts the references for 'leaked'). 0 or -ENOMEM. */
int dio_tpool_get_meta(struct dio_tpool *pool, struct dio_tpool_meta *m);

/*
 * Called for each mapped logical chunk of a volume, in order: the physical
 * chunk that holds it and its written sub-blocks (bit i: sub-block i).
 * Called with the pool's lock held: it must not call into the pool. A
 * nonzero return stops the walk and is returned.
 */
typedef int (*dio_tpool_map_fn)(void *priv, uint64_t lchunk, uint64_t pchunk, uint32_t written);

/* Walk the map of volume 'name'. 0, fn's nonzero return, or -ENOENT. */
int dio_tpool_volume_map(struct dio_tpool *pool, const char *name, dio_tpool_map_fn fn,
			 void *priv);

/* What dio_tpool_check found. */
struct dio_tpool_check_result {
	unsigned int problems;	/* damage: the pool cannot be trusted as it is */
	unsigned int leaks;	/* chunks counted used that nothing references */
	unsigned int notes;	/* worth knowing, harmless */
};

/* Called once per finding: severity 2 problem, 1 leak, 0 note. */
typedef void (*dio_tpool_report_fn)(void *priv, int severity, const char *msg);

/*
 * Check the pool at path without writing to it: both superblocks, the
 * checkpoint's blocks (crc, own number, owner, generation), the journal
 * chain, extent bounds and double references, and the space map against a
 * recount of references. 0 when it could look (see *res), or -errno.
 */
int dio_tpool_check(const char *path, const struct dio_tpool_opts *opts,
		    dio_tpool_report_fn report, void *priv, struct dio_tpool_check_result *res);

/*
 * Repair the pool at path: take back leaked chunks (counted used, mapped
 * by no volume) with a checkpoint. Anything worse (a problem check
 * reports) is refused with nothing written: res->problems says so and
 * report says why. Needs the pool's lock: -EAGAIN when it is open in
 * another process. 0 when it could look (see *res), or -errno (the reason
 * in opts->errbuf).
 */
int dio_tpool_repair(const char *path, const struct dio_tpool_opts *opts,
		     dio_tpool_report_fn report, void *priv, struct dio_tpool_check_result *res);

#endif /* DIO_TPOOL_H */
