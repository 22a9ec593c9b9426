/* SPDX-License-Identifier: MIT */
/*
 * The extent iterator: how libdio asks a volume what lies under a byte range.
 * Modelled on the kernel's fs/iomap/iter.c (iomap_iter, iomap_ops).
 */
#ifndef DIO_EXTENT_H
#define DIO_EXTENT_H

#include <stdbool.h>
#include <stdint.h>

struct dio_volume;

enum dio_ext_type {
	DIO_EXT_HOLE = 0,	/* nothing allocated: reads are zeros, no device I/O */
	DIO_EXT_MAPPED,		/* data at addr on the volume's device */
	DIO_EXT_UNWRITTEN,	/* allocated at addr, never written: reads are zeros */
};

/* dio_extent.flags */
#define DIO_EXT_NEW	(1u << 0)	/* allocated by this map_begin: sub-block padding is zeroed */
/*
 * Copy-on-write (MAPPED + NEW + SHARED): addr is in a new chunk; the old
 * one stays for the volumes that share it. ext->pos is always the pos
 * asked for, so the extent cannot grow backwards: instead it names the
 * span the engine writes, [span_pos, span_pos + span_len) with span_pos <=
 * pos and pos + length <= span_pos + span_len, in ONE device write to
 * addr - (pos - span_pos). The span is counted in blocks of vol->blksize
 * (at most 32); its bytes come from the request over [pos, pos + length),
 * from the old chunk (device offset src_addr - (pos - span_pos)) in the
 * blocks of copy_mask (bit i: the span's i-th block), zeros elsewhere.
 * The engine reads the old chunk once, from the first to the last block
 * of copy_mask (none when it is 0). length reaches the end of the write
 * within the chunk. map_end with done < length: nothing may have been
 * written; the backend frees the new chunk and keeps the old mapping.
 */
#define DIO_EXT_SHARED	(1u << 1)
/*
 * MAPPED, but the metadata that makes these blocks reachable is not durable
 * yet (iomap's IOMAP_F_DIRTY): a FUA write must not be written through and
 * replied to; it syncs and gets map_end with DIO_MAP_FUA like an
 * allocating write. No padding: the blocks hold data.
 */
#define DIO_EXT_DIRTY	(1u << 2)
/*
 * DIO_MAP_REPORT only: MAPPED data, but a write to it may need space the
 * volume does not hold (a shared chunk with no room reserved for its
 * copy). Block status reports it as a hole that is not known to read as
 * zeros (NBD: HOLE set, ZERO clear), since the NBD spec forbids ENOSPC on
 * a write to an extent reported without HOLE.
 */
#define DIO_EXT_UNRESERVED	(1u << 3)

struct dio_extent {
	uint64_t pos;		/* logical offset of the first byte; always the pos asked for */
	uint64_t length;	/* bytes; > 0; may be shorter than asked */
	uint64_t addr;		/* device offset of pos (MAPPED, UNWRITTEN) */
	uint16_t type;		/* enum dio_ext_type */
	uint16_t flags;		/* DIO_EXT_* */
	uint32_t reserved;
	/* DIO_EXT_SHARED only (zero otherwise), see there */
	uint64_t src_addr;	/* device offset of pos in the chunk copied from */
	uint64_t span_pos;	/* logical offset of the first byte the engine writes */
	uint32_t span_len;	/* bytes written from span_pos: whole blocks, one chunk at most */
	uint32_t copy_mask;	/* blocks of the span whose old bytes are kept */
};

/*
 * A writer waiting for map_begin to stop saying -EAGAIN (map_ops->map_wait).
 * wake is called once, from any thread, with no lock of the volume held.
 */
struct dio_map_waiter {
	void (*wake)(struct dio_map_waiter *w);
	struct dio_map_waiter *next;	/* the volume's, while queued */
	unsigned int flags;	/* the DIO_MAP_* of the map_begin that said -EAGAIN */
};

/* Flags passed to map_begin/map_end, and kept in dio_iter.flags. */
#define DIO_MAP_WRITE	(1u << 0)	/* the range will be written: allocate */
#define DIO_MAP_ZERO	(1u << 1)	/* the write carries zeros */
#define DIO_MAP_REPORT	(1u << 2)	/* only report the map (block status): no I/O follows */
#define DIO_MAP_FUA	(1u << 3)	/* map_end: make the change durable before returning */
/*
 * map_begin of a write: the request holds extents mapped before this one,
 * whose map_end waits until this one is done too. A backend must not make
 * it wait for those to end (a snapshot waiting for its writers to drain).
 */
#define DIO_MAP_HELD	(1u << 4)

struct dio_map_ops {
	/*
	 * Required. Map [pos, pos + len): fill *ext with the extent that starts
	 * at pos; ext->length may be shorter than len but never 0. For a write
	 * (DIO_MAP_WRITE), allocate here and say so with DIO_EXT_NEW, or leave
	 * the extent UNWRITTEN until map_end converts it. Returns 0 or -errno.
	 */
	int (*map_begin)(struct dio_volume *vol, uint64_t pos, uint64_t len,
			 unsigned int flags, struct dio_extent *ext);
	/*
	 * Optional - may be NULL. Called once per successful map_begin, after
	 * the device I/O for that extent has completed (and, with DIO_MAP_FUA,
	 * is durable). 'done' bytes from ext->pos were processed; it may be
	 * less than ext->length after a short or failed I/O: release or trim
	 * what was not written. Returns 0 or -errno.
	 */
	int (*map_end)(struct dio_volume *vol, const struct dio_extent *ext,
		       uint64_t done, unsigned int flags);
	/*
	 * Optional - may be NULL; required of a backend whose map_begin can
	 * return -EAGAIN for a write (an extent busy with a copy-on-write that
	 * another request is doing). Returns 0 when pos is no longer busy (map
	 * it again now), or 1 when w was queued: w->wake runs once it is.
	 */
	int (*map_wait)(struct dio_volume *vol, uint64_t pos, struct dio_map_waiter *w);
};

/*
 * One walk over [pos, pos + len). The body of the loop processes it->ext
 * (already clipped to what remains) and stores in it->status how many bytes
 * it processed, or -errno:
 *
 *	dio_iter_init(&it, pos, len, flags);
 *	while ((ret = dio_iter(&it, vol)) > 0)
 *		it.status = process(&it);
 *
 * dio_iter() calls map_end for the previous extent with what was processed,
 * advances, and maps the next extent. It returns 1 while there is an extent
 * to process, 0 when the range is done (or the body made no progress), and
 * -errno when map_begin, map_end or the body failed.
 */
struct dio_iter {
	uint64_t pos;		/* next byte to map */
	uint64_t len;		/* bytes left */
	unsigned int flags;	/* DIO_MAP_* */
	int64_t status;		/* set by the loop body */
	struct dio_extent ext;	/* valid while dio_iter() returns 1 */
	bool have_ext;		/* private: ext needs map_end / advancing */
	bool defer_end;		/* caller calls map_end itself (async I/O) */
};

/* Start a walk over [pos, pos + len) with DIO_MAP_* flags. */
void dio_iter_init(struct dio_iter *it, uint64_t pos, uint64_t len, unsigned int flags);

/* Advance the walk; see struct dio_iter. */
int dio_iter(struct dio_iter *it, struct dio_volume *vol);

#endif /* DIO_EXTENT_H */
