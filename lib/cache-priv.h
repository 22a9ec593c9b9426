/* SPDX-License-Identifier: MIT */
/*
 * The block cache's insides (cache.c: units, reads, write-through, the
 * volume; cache-write.c: writeback writes, FLUSH, the writeback thread).
 * The design, the rules of who writes what and the lock are at the top of
 * cache.c.
 */
#ifndef DIO_CACHE_PRIV_H
#define DIO_CACHE_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "dio/buf.h"
#include "dio/cache.h"
#include "now.h"

#define CU_SHIFT	16
#define CU_SIZE		(1u << CU_SHIFT)
#define WB_MAX		(1u << 20)	/* bytes per writeback write */
#define WB_INFLIGHT	16		/* writeback writes in flight at once */
#define WB_TICK_MS	200
#define WB_ARENA	(4u << 20)	/* the writeback ctx's pinned pool */

struct dio_cache;

/*
 * The memory of a unit: CU_SIZE bytes in a slab, with a header that lives
 * as long as the slab. The unit holds one reference; a READ answered
 * without a copy (DIO_REQ_LEND) holds another until its reply is sent, on
 * its own thread, so b.ref is atomic (dio_buf.release). While someone else
 * holds it, the bytes must not change: a write into the unit first moves
 * it to a new buffer (cu_wdata), and the old one goes back to the free
 * list with its last reference (cbuf_release), never before.
 */
struct cbuf {
	struct dio_buf b;		/* b.release = cbuf_release; b.next: the free list */
	struct dio_cache *c;
};

struct cunit {
	uint64_t idx;			/* pos >> CU_SHIFT */
	struct cunit *hnext;		/* hash chain */
	struct cunit *prev, *next;	/* LRU: c->lru.next is the most recent */
	uint64_t uptodate, dirty;	/* bit b: block b of the unit */
	uint64_t ra;			/* blocks read ahead that no READ has used yet */
	uint64_t seq;			/* moves whenever data changes */
	uint64_t dirtied_ns;		/* when it became dirty; 0 when clean */
	bool written;			/* was ever dirty: its eviction moves c->mod_seq */
	bool drop_lent;			/* blocks a reply may send were dropped in place */
	struct cbuf *buf;		/* its data: read through cu_rdata, written through cu_wdata */
};

enum cop_kind {
	COP_READ = 0,
	COP_WT,		/* write-through: WRITE, ZERO, TRIM */
	COP_FLUSH,
	COP_TWRITE,	/* a writeback WRITE waiting for room */
	COP_RMW,	/* a writeback WRITE reading the blocks it covers in part */
	COP_SYNC,	/* dio_cache_sync: write back everything, flush, wake the caller */
};

struct cop;

/*
 * Readahead (cache-ra.c): the sequential READ streams the cache follows,
 * and NBD_CMD_CACHE's fills, both read into the cache by the readahead
 * thread: [ahead, target) is still to be read.
 */
#define RA_STREAMS	8
#define RA_CHUNK	(256u << 10)	/* bytes per readahead read */
#define RA_QD		8		/* readahead reads in flight */
#define RA_WINDOW	(8u << 20)	/* bytes read ahead of a stream at most */
#define RA_ARENA	(RA_QD * RA_CHUNK)

struct ra_stream {
	uint64_t next;			/* where its next READ would start */
	uint64_t ahead, target;		/* read ahead up to ahead; wanted up to target */
	uint64_t used;			/* c->ra_tick when last used (the oldest is replaced) */
	unsigned int run;		/* sequential READs in a row */
	struct dio_vol_io *vio;		/* a CACHE request: done when all of it is read */
	unsigned int inflight;		/* its reads in flight */
	int res;
	struct ra_stream *qnext;	/* c->fills */
};

/* One request to the lower volume on behalf of an op. */
struct csub {
	struct dio_req d;		/* d.priv = this */
	struct cop *op;
};

struct cop {
	struct dio_cache *c;
	struct dio_vol_io *vio;
	enum cop_kind kind;
	struct cop *next;		/* writeback queue */
	int res;			/* first error */
	unsigned int pending;		/* subs in flight + 1 for the submitter */
	uint64_t seq0;			/* c->mod_seq when a READ started */
	bool fill;			/* READ: keep what is read */
	uint8_t *bounce;		/* RMW: the blocks read, bs bytes each */
	bool finished;			/* COP_SYNC: res is set (under c->lock) */
	unsigned int nsub, capsub;
	struct csub *subs;
};

struct dio_cache {
	struct dio_volume vol;		/* first: the cache volume itself */
	struct dio_volume *lower;
	uint32_t bs;			/* block size */
	unsigned int bpu;		/* blocks per unit (<= 64) */
	uint64_t max_units, dirty_limit;	/* dirty_limit in blocks */
	uint64_t expire_ns;
	bool no_ra;			/* opts.no_readahead: streams are not read ahead */
	struct dio_engine *engine;	/* given for the writeback ctx, until it owns it */
	struct dio_ctx_opts ctx_opts;
	pthread_t thread;
	struct dio_ctx *wbctx;		/* the writeback thread's */
	int start_ret;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* wakes the writeback thread */
	pthread_cond_t sync_cond;	/* wakes dio_cache_sync callers */
	struct cunit **hash;
	uint64_t hmask;
	struct cunit lru;
	/*
	 * Unit memory (cbuf_get): slabs mapped populated, CU_SLAB buffers
	 * each; free buffers on a list, reused before a new slab. Buffers in
	 * use (nbufs) are the units' (nunits <= max_units) and those that only
	 * READ replies still hold (nbufs - nunits: each has a reply in flight).
	 * The slabs hold max_units buffers, and more only while there are such.
	 */
	struct cbuf *free_bufs;
	struct cslab *slabs;
	size_t nslabs, capslabs;
	uint64_t slab_units;		/* buffers in the slabs */
	uint64_t nbufs;			/* buffers in use */
	bool zombie;			/* released while replies held buffers: the last frees c */
	uint64_t nunits, ndirty_units, ndirty;	/* ndirty in blocks */
	/* moves as write-through starts and ends, and as a unit once dirty is dropped */
	uint64_t mod_seq;
	unsigned int wt_inflight;
	uint64_t err_seq;		/* writeback writes that failed */
	int err;			/* the last one's -errno */
	struct cop *q_head, **q_tail;	/* for the writeback thread */
	bool stop, kick;
	struct dio_cache_stats st;	/* counters (size/used/dirty computed) */

	/* readahead (cache-ra.c), under c->lock too */
	pthread_t ra_thread;
	struct dio_ctx *ractx;		/* the readahead thread's */
	pthread_cond_t ra_cond;		/* wakes it */
	bool ra_started, ra_stop;
	int ra_start_ret;
	uint64_t ra_window;		/* bytes ahead of a stream */
	uint64_t ra_tick;
	unsigned int ra_inflight;
	struct ra_stream streams[RA_STREAMS];
	struct ra_stream *fills;	/* CACHE requests, in order, until all of each is read */
};

static inline struct dio_cache *
cache_of(struct dio_volume *vol)
{
	return (struct dio_cache *)vol;
}

/* ---- cache.c: units (under c->lock) ---- */
/* A unit's data, to read (under c->lock, or from a reference held). */
static inline const uint8_t *
cu_rdata(const struct cunit *u)
{
	return u->buf->b.data;
}
/*
 * A unit's data, to write the blocks in mask (or to drop them from
 * uptodate): its own first if a READ reply holds it and one of them is
 * uptodate (what a reply may send). NULL on out of memory.
 */
uint8_t *cu_wdata(struct dio_cache *c, struct cunit *u, uint64_t mask);

/* ---- cache-mem.c: units' buffers (under c->lock) ---- */
/* A buffer for a unit's data (ref 1), or NULL. */
struct cbuf *cbuf_get(struct dio_cache *c);
/* Drop the cache's reference to cb: the last one frees it. */
void cbuf_put_locked(struct dio_cache *c, struct cbuf *cb);
/* Buffers held by replies alone may have become more: keep their peak. */
void cbuf_note_lent(struct dio_cache *c);
/* Whether someone besides the unit holds its buffer (a READ reply). */
bool cu_lent(const struct cunit *u);
/* The slabs and c itself, once no buffer is in use (not under c->lock). */
void cache_free_mem(struct dio_cache *c);
/* The unit idx, or NULL. */
struct cunit *cu_find(struct dio_cache *c, uint64_t idx);
/* The unit idx, made (evicting the least recent clean one if need be); NULL if none is free. */
struct cunit *cu_get(struct dio_cache *c, uint64_t idx);
struct cunit *cu_get_keeping(struct dio_cache *c, uint64_t idx, uint64_t keep_lo,
			     uint64_t keep_hi);
/* Make u the most recently used. */
void cu_touch(struct dio_cache *c, struct cunit *u);
/* Blocks of unit idx that overlap [pos, end), or (whole) lie inside it. */
uint64_t cu_mask(const struct dio_cache *c, uint64_t idx, uint64_t pos, uint64_t end, bool whole);
/* The end of the block that starts at bpos (the volume may end inside it). */
uint64_t blk_end(const struct dio_cache *c, uint64_t bpos);
/* Whether a block overlapping [pos, end) is dirty. */
bool cache_range_dirty(struct dio_cache *c, uint64_t pos, uint64_t end);
/* Drop the clean cached blocks overlapping [pos, end); dirty ones stay. */
void cache_drop_clean(struct dio_cache *c, uint64_t pos, uint64_t end);

/* ---- cache.c: ops ---- */
struct cop *cop_new(struct dio_cache *c, struct dio_vol_io *vio, enum cop_kind kind);
void cop_free(struct cop *op);
/* A request to the lower volume for op; NULL on out of memory. */
struct csub *cop_sub(struct cop *op);
/* Hand an op to the writeback thread (takes c->lock). */
void cache_queue(struct dio_cache *c, struct cop *op);
/* WRITE, ZERO or TRIM to the lower volume, keeping the cache exact. 0 or -errno (refused). */
int cache_write_through(struct dio_cache *c, struct dio_vol_io *vio);
/* The lower volume's request for a write-through of req. */
void cache_wt_req(struct dio_req *d, const struct dio_req *req);
/* A write-through of [pos, end) starts (under c->lock) / ended (takes it). */
void cache_wt_begin(struct dio_cache *c, uint64_t pos, uint64_t end);
void cache_wt_end(struct dio_cache *c, uint64_t pos, uint64_t end);

/* ---- cache-ra.c ---- */
/* Start / stop the readahead thread. 0 or -errno. */
int cache_ra_start(struct dio_cache *c);
void cache_ra_stop(struct dio_cache *c);
/* A READ of [pos, end) that hit (miss false) or read the lower volume: follow its stream (under c->lock). */
void cache_ra_note(struct dio_cache *c, uint64_t pos, uint64_t end, bool miss);
/* NBD_CMD_CACHE: read [pos, pos+len) into the cache, then done(). 0 or -errno. */
int cache_prefetch(struct dio_cache *c, struct dio_vol_io *vio);
/* Keep the whole, non-zero blocks a read of [pos, pos+len) into buf brought in (ra: read ahead). */
void cache_fill(struct dio_cache *c, uint64_t pos, uint64_t len, const uint8_t *buf, uint64_t seq0,
		bool ra);

/* ---- cache-write.c ---- */
/* A WRITE: into the cache (writeback) or through it. 0 or -errno (refused). */
int cache_write(struct dio_cache *c, struct dio_vol_io *vio, bool may_rmw);
/* A FLUSH. 0 or -errno (refused). */
int cache_flush(struct dio_cache *c, struct dio_vol_io *vio);
/* The writeback thread (arg: the cache). */
void *wb_thread(void *arg);

#endif /* DIO_CACHE_PRIV_H */
