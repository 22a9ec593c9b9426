/* SPDX-License-Identifier: MIT */
/*
 * libdio: the direct-I/O core of dionbd. One request (struct dio_req) is
 * turned into extents (extent.h), then into device I/O on an engine
 * (engine.h) from pinned buffers (buf.h), against a volume (volume.h) of
 * a backend such as the file volume (file.h).
 *
 * Threads: a dio_ctx (engine + buffer pool + queues) belongs to one thread.
 * Volumes are shared. Requests submitted on a ctx complete on that ctx's
 * thread, from dio_ctx_reap() or dio_submit_sync(), never from dio_submit().
 */
#ifndef DIO_DIO_H
#define DIO_DIO_H

#include <stdbool.h>
#include <stdint.h>

#include "dio/buf.h"
#include "dio/engine.h"
#include "dio/extent.h"
#include "dio/file.h"
#include "dio/volume.h"

enum dio_req_op {
	DIO_REQ_READ = 0,
	DIO_REQ_WRITE,
	DIO_REQ_ZERO,		/* write zeroes */
	DIO_REQ_TRIM,
	DIO_REQ_FLUSH,
	DIO_REQ_CACHE,		/* prefetch hint */
	DIO_REQ_EXTENTS,	/* describe the map of [pos, pos+len) in segs */
};

/* dio_req.flags */
#define DIO_REQ_FUA		(1u << 0)	/* WRITE/ZERO/TRIM: durable before done() */
#define DIO_REQ_REPORT_HOLES	(1u << 1)	/* READ: describe zero ranges in segs, leave buf there */
#define DIO_REQ_NO_HOLE		(1u << 2)	/* ZERO: keep the range allocated */
#define DIO_REQ_FAST_ZERO	(1u << 3)	/* ZERO: fail with -EOPNOTSUPP unless it is fast */
/* Hints for a cache volume (cache.h); other volumes ignore them. */
#define DIO_REQ_WRITETHROUGH	(1u << 4)	/* WRITE: to the lower volume, not left dirty */
#define DIO_REQ_NOCACHE		(1u << 5)	/* READ: keep nothing; WRITE: as WRITETHROUGH */
/*
 * READ with a dbuf: the cache may answer with a reference to its own memory
 * instead of copying into buf. done() then finds dbuf replaced by that
 * reference (the caller's dbuf was put, on the submitting thread) and buf
 * pointing into it; the caller puts the new dbuf as it would have its own,
 * on any thread, and reads the data from buf (not dbuf->data).
 */
#define DIO_REQ_LEND		(1u << 6)
#define DIO_REQ_CACHE_HINTS	(DIO_REQ_WRITETHROUGH | DIO_REQ_NOCACHE | DIO_REQ_LEND)

enum dio_seg_type {
	DIO_SEG_DATA = 0,	/* bytes are in buf (READ) / allocated (EXTENTS) */
	DIO_SEG_HOLE,		/* unallocated: reads as zeros */
	DIO_SEG_ZERO,		/* allocated but unwritten: reads as zeros */
	DIO_SEG_UNRESERVED,	/* EXTENTS: data, but a write may need space not held (NBD: HOLE) */
};

struct dio_seg {
	uint64_t pos;
	uint64_t len;
	uint32_t type;		/* enum dio_seg_type */
};

struct dio_req;
struct dio_cache_writer;
/* Called exactly once per accepted request with 0 or -errno. */
typedef void (*dio_done_fn)(struct dio_req *req, int ret);

struct dio_req {
	/* in */
	uint8_t op;		/* enum dio_req_op */
	uint32_t flags;		/* DIO_REQ_* */
	uint64_t pos;
	uint64_t len;
	void *buf;		/* READ/WRITE: len bytes, any alignment (aligned is faster) */
	struct dio_buf *dbuf;	/* optional: pool buffer buf lies in (fixed-buffer I/O) */
	struct dio_seg *segs;	/* READ with REPORT_HOLES, EXTENTS: room for max_segs */
	uint32_t max_segs;
	dio_done_fn done;
	void *priv;		/* caller's */
	struct dio_cache_writer *writer;	/* WRITE, FLUSH on a cache volume: who, or NULL */
	/*
	 * out, valid in done():
	 * - nsegs: READ with REPORT_HOLES: segs[0..nsegs) cover [pos, pos+len)
	 *   exactly, DATA ranges hold bytes in buf, HOLE/ZERO ranges were not
	 *   touched. EXTENTS: segs[0..nsegs) describe a prefix (>= 1 segment)
	 *   of [pos, pos+len) in order.
	 * - fast: ZERO was done without writing zeros.
	 */
	uint32_t nsegs;
	bool fast;
	/* engine private */
	struct dio *dio;
};

struct dio_ctx_opts {
	struct dio_engine_opts engine;	/* ignored when an engine is given */
	struct dio_pool_opts pool;
};

struct dio_ctx;

/* A ctx with a new engine (opts may be NULL) and buffer pool. 0 or -errno. */
int dio_ctx_create(const struct dio_ctx_opts *opts, struct dio_ctx **out);
/* A ctx over an existing engine, which it then owns. 0 or -errno. */
int dio_ctx_create_engine(struct dio_engine *e, const struct dio_ctx_opts *opts,
			  struct dio_ctx **out);
/* Free a ctx; nothing may be in flight. */
void dio_ctx_destroy(struct dio_ctx *ctx);

struct dio_engine *dio_ctx_engine(struct dio_ctx *ctx);
struct dio_pool *dio_ctx_pool(struct dio_ctx *ctx);

/*
 * Submit a request. Returns 0 when accepted: done() then runs exactly once,
 * later, from dio_ctx_reap() (or the wait in dio_submit_sync). Returns
 * -errno when refused, and done() never runs:
 *  -EINVAL  past the end (READ, ZERO, TRIM, CACHE, EXTENTS), bad op/flags
 *  -ENOSPC  WRITE past the end
 *  -EPERM   WRITE/ZERO/TRIM on a read-only volume
 * Device I/O is queued; dio_ctx_kick() (or reap) pushes it to the device.
 */
int dio_submit(struct dio_ctx *ctx, struct dio_volume *vol, struct dio_req *req);

/* Submit and wait: returns what done() got (done may be NULL). */
int dio_submit_sync(struct dio_ctx *ctx, struct dio_volume *vol, struct dio_req *req);

/* Push queued device I/O to the engine. 0 or -errno. */
int dio_ctx_kick(struct dio_ctx *ctx);

/*
 * Run completions: kicks, reaps the engine and runs deferred work. When
 * wait is true and requests are in flight but nothing is ready, blocks
 * until something completes. Returns the number of requests completed.
 */
int dio_ctx_reap(struct dio_ctx *ctx, bool wait);

/* Requests accepted and not yet completed on this ctx. */
unsigned int dio_ctx_inflight(const struct dio_ctx *ctx);

/* Readable (poll POLLIN) when dio_ctx_reap has something to do. */
int dio_ctx_event_fd(struct dio_ctx *ctx);

/* Logging: libdio never prints; it calls this hook (default: nothing). */
enum dio_log_level { DIO_LOG_ERR = 0, DIO_LOG_WARN, DIO_LOG_INFO, DIO_LOG_DEBUG };
typedef void (*dio_log_fn)(int level, const char *msg);
void dio_set_log(dio_log_fn fn);
#ifdef __GNUC__
__attribute__((format(printf, 2, 3)))
#endif
void dio_log(int level, const char *fmt, ...);

#endif /* DIO_DIO_H */
