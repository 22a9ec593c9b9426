/* SPDX-License-Identifier: MIT */
/*
 * The dio engine's insides, shared by its files and private to libdio:
 *   dio.c        the public entry: checks, dispatch, submit and wait
 *   dio-meta.c   TRIM, ZERO, FLUSH and CACHE requests
 *   dio-rmw.c    writes: aligned ones go straight on, unaligned ones by
 *                read-modify-write under the volume's range lock
 *   dio-rw.c     reads, and writes of whole blocks (the iomap_dio_iter part)
 *   dio-vol.c    whole requests on volumes that do their own I/O
 *                (vol_ops->submit: RBD), beside the iterator and engine
 *   dio-core.c   a struct dio's life: stages, references, device I/O,
 *                the volume's own methods, completion
 * Each file calls only the ones below it in this list.
 *
 * Lifetime of a struct dio, as in __iomap_dio_rw:
 *  - dio->ref counts the submitter of the current stage plus every device
 *    I/O (or child dio) in flight for it. A stage starts with ref = 1, adds
 *    one per I/O, and drops its own reference when it has issued all of them.
 *  - Whoever drops the last reference runs dio->next, the end of the stage:
 *    (a) the submitter, when every I/O already finished (all holes, or the
 *        engine completed inline): then we are inside dio_submit, so the
 *        user's done() is deferred to the next reap;
 *    (b) an I/O completion in dio_ctx_reap;
 *    (c) a child dio finishing (zeroes, RMW pieces).
 *  - A stage end either starts the next stage (RMW write after its read,
 *    the sync after FUA writes, map_end after the sync) or finishes: one
 *    call of dio_finish, which calls done() (or the parent) and frees.
 *  - The first error wins (dio_set_error); later ones are dropped.
 */
#ifndef DIO_DIO_PRIV_H
#define DIO_DIO_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "volume-priv.h"

#define DIO_INLINE_EXTS 4

/* An extent a write went to; map_end runs for it once the data is in. */
struct dio_ext_rec {
	struct dio_extent ext;
	uint64_t fail_at;	/* first byte that failed, or UINT64_MAX */
};

/* One device I/O of a dio; resubmitted in place when it comes back short. */
struct dio_piece {
	struct dio_io io;
	struct dio *dio;
	uint32_t rec;		/* index in dio->exts, or UINT32_MAX */
	uint64_t rw_done;	/* bytes already transferred (short I/O) */
};

struct dio {
	struct dio_ctx *ctx;
	struct dio_volume *vol;
	struct dio_req *req;	/* the caller's, or &own_req for a child */
	struct dio *parent;	/* set for a child dio */
	struct dio_work work;	/* deferred finish / range lock hand-over */
	void (*next)(struct dio *dio);	/* end of the current stage */
	int ref;
	int error;

	uint8_t op;		/* DIO_REQ_* of the work this dio does */
	uint32_t flags;
	bool zeroes;		/* WRITE source is zeros, not buf */
	bool need_sync;		/* FUA on an allocating write: sync before done */
	bool map_fua;		/* FUA written through into new space: map_end commits */
	bool writing;		/* counted in the volume's writers */
	bool range_held;	/* rmw is on the volume's range lock */
	bool fast;
	bool meta_exhausted;	/* the volume offered no way (left) for meta_op */
	int fixed_file;		/* the volume's file on this ctx's engine (dio_io.fixed_file) */
	unsigned int meta_tries;

	/* the range and memory the current stage works on */
	uint64_t pos, len;
	uint8_t *buf;
	int buf_index;
	struct dio_buf *bounce;	/* aligned copy for unaligned requests */

	struct dio_ext_rec *exts;	/* WRITE: extents awaiting map_end */
	uint32_t nexts, exts_cap;

	struct dio_range rmw;	/* the blocks an unaligned write holds */
	enum dio_meta_op meta_op;
	unsigned int meta_flags;
	uint64_t meta_pos, meta_len;
	struct dio_io meta_io;
	struct dio_req own_req;	/* a child's request */

	/* a copy-on-write child (dio-rw.c): the parent's SHARED extent it writes */
	struct dio_extent cow;
	const uint8_t *cow_data;	/* the request's bytes for cow.pos; NULL: zeros */
	uint32_t cow_rec;		/* the extent's index in the parent's exts */
	int cow_rw_flags;
	/* a write waiting for map_wait (a copy-on-write of its chunk): where it goes on */
	struct dio_map_waiter waiter;
	uint64_t wait_pos, wait_len;
	uint8_t *wait_mem;
	int wait_buf_index;
	struct dio_vol_io vio;	/* the request on a volume with vol_ops->submit */
	struct dio_ext_rec inline_exts[DIO_INLINE_EXTS];
};

static inline bool
dio_aligned(uint64_t v, uint32_t a)
{
	return (v & (a - 1)) == 0;
}

static inline uint64_t
dio_round_down(uint64_t v, uint32_t a)
{
	return v & ~(uint64_t)(a - 1);
}

static inline uint64_t
dio_round_up(uint64_t v, uint32_t a)
{
	return (v + a - 1) & ~(uint64_t)(a - 1);
}

/* ---- dio-core.c ---- */

/* A zeroed dio on ctx for a request on vol, or NULL. */
struct dio *dio_alloc(struct dio_ctx *ctx, struct dio_volume *vol);
/* A child of parent for a zero-write of [pos, pos+len); parent->ref taken. NULL on ENOMEM. */
struct dio *dio_alloc_child(struct dio *parent, uint64_t pos, uint64_t len);
/* Record err unless an error is recorded already (the first one wins). */
void dio_set_error(struct dio *dio, int err);
/* Begin a stage whose end is 'next': the caller holds the stage's ref. */
void dio_stage(struct dio *dio, void (*next)(struct dio *));
/* Drop a reference; the last one ends the stage. */
void dio_put(struct dio *dio);
/* Queue a READ or WRITE of [addr, addr+len) from/to mem for extent record rec. */
int dio_queue_rw(struct dio *dio, uint8_t op, uint64_t addr, uint64_t len, uint8_t *mem,
		 int buf_index, int rw_flags, uint32_t rec);
/* Queue a WRITE of zeros over [addr, addr+len) from the ctx's zero buffer. */
int dio_queue_zeroes(struct dio *dio, uint64_t addr, uint64_t len, int rw_flags, uint32_t rec);
/* Keep ext for map_end once the data is in; its index in *idx. 0 or -ENOMEM. */
int dio_ext_record(struct dio *dio, const struct dio_extent *ext, uint32_t *idx);
/* Run map_end for every extent recorded, with how much of it made it. */
void dio_end_extents(struct dio *dio);
/* An aligned bounce buffer covering the request, rounded out to blocks. 0 or -ENOMEM. */
int dio_bounce(struct dio *dio);
/* Whether the caller's memory can go to the device as it is. */
bool dio_mem_direct(const struct dio *dio);
/* Work on the caller's memory (and its pool buffer, if it lies in one). */
void dio_use_req_mem(struct dio *dio);
/*
 * Ask the volume for a way to do dio->meta_op on [meta_pos, meta_pos +
 * meta_len) and queue it, trying the next way when one turns out not to
 * be supported. When none is (left), meta_exhausted is set for the stage
 * end to decide; FLUSH always has one (fdatasync).
 */
void dio_meta_start(struct dio *dio);
/* A stage that makes everything done so far durable (a FLUSH), then runs next. */
void dio_start_sync(struct dio *dio, void (*next)(struct dio *));
/* Complete the dio: exactly once per dio, by construction of the stages. */
void dio_finish(struct dio *dio);

/* ---- dio-rw.c ---- */

/* Map and read [pos, pos+len) into mem (report: describe holes in the caller's segs). */
int dio_read_range(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index,
		   bool report);
/* READ: the whole request. */
void dio_start_read(struct dio *dio);
/* Map [pos, pos+len) for writing and queue the data writes (whole blocks). */
int dio_write_range(struct dio *dio, uint64_t pos, uint64_t len, uint8_t *mem, int buf_index);
/* End of a write stage: sync if FUA asked for it, map_end, finish. */
void dio_write_done(struct dio *dio);

/* ---- dio-rmw.c ---- */

/* WRITE (or a zero-write child): aligned straight on, unaligned by read-modify-write. */
void dio_start_write(struct dio *dio);

/* ---- dio-vol.c ---- */

/* Any request but EXTENTS on a volume with vol_ops->submit: the volume does it. */
void dio_start_vol(struct dio *dio);

/* ---- dio-meta.c ---- */

/* ZERO: whole blocks by the volume's fast methods, partial ones written. */
void dio_start_zero(struct dio *dio);
/* TRIM, FLUSH, CACHE: the volume's own methods over [pos, pos+len). */
void dio_start_meta(struct dio *dio, enum dio_meta_op op, uint64_t pos, uint64_t len);

#endif /* DIO_DIO_PRIV_H */
