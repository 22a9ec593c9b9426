/* SPDX-License-Identifier: MIT */
/*
 * I/O engines: where device I/O is submitted and reaped. One engine belongs
 * to one thread; nothing here is thread-safe unless it says so.
 */
#ifndef DIO_ENGINE_H
#define DIO_ENGINE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum dio_io_op {
	DIO_IO_READ = 0,	/* pread into buf */
	DIO_IO_WRITE,		/* pwrite from buf; rw_flags may hold RWF_DSYNC */
	DIO_IO_FSYNC,		/* fdatasync (mode 0) or fsync (mode 1) */
	DIO_IO_FALLOCATE,	/* fallocate(fd, mode, offset, len) */
	DIO_IO_DISCARD,		/* ioctl BLKDISCARD on a block device */
	DIO_IO_ZEROOUT,		/* ioctl BLKZEROOUT on a block device */
	DIO_IO_FADVISE,		/* posix_fadvise(fd, offset, len, mode) */
	DIO_IO_NR_OPS
};

struct dio_io;

/*
 * Completion of one device I/O: res is the byte count for READ/WRITE (may be
 * short), 0 for the others, or -errno. Runs from dio_engine_reap() on the
 * engine's thread, never from inside queue or submit.
 */
typedef void (*dio_io_end_fn)(struct dio_io *io, int64_t res);

/* One device I/O. The submitter owns it until end_io has run. */
struct dio_io {
	uint8_t op;		/* enum dio_io_op */
	int fd;			/* open file or block device */
	uint64_t offset;
	uint64_t len;		/* READ/WRITE: at most DIO_IO_MAX_LEN */
	void *buf;		/* READ/WRITE: aligned for O_DIRECT */
	int buf_index;		/* registered buffer holding buf, or -1 */
	int fixed_file;		/* register_file's slot + 1 naming fd's file, or 0 */
	int rw_flags;		/* READ/WRITE: RWF_* for preadv2/pwritev2 */
	int mode;		/* FSYNC, FALLOCATE, FADVISE argument */
	dio_io_end_fn end_io;
	void *priv;		/* submitter's */
	/* engine private */
	struct dio_io *next;
	int64_t res;
};

#define DIO_IO_MAX_LEN (1u << 30)

struct dio_engine;

struct dio_engine_ops {
	const char *name;
	/*
	 * Optional - may be NULL. Pin and register iov[0..n) so that I/O with
	 * buf_index = i uses the fixed buffer i. Replaces an earlier set.
	 * 0 or -errno (-ENOMEM/-EPERM when RLIMIT_MEMLOCK forbids pinning).
	 */
	int (*register_buffers)(struct dio_engine *e, const struct iovec *iov, unsigned int n);
	/*
	 * Optional - may be NULL. Register fd's file in a free fixed-file
	 * slot: the slot (>= 0), or -errno (-ENOSPC when none is free). I/O
	 * with fixed_file = slot + 1 then goes to that file, whatever fd
	 * number it carries; the slot keeps the file open until emptied.
	 */
	int (*register_file)(struct dio_engine *e, int fd);
	/* Optional - may be NULL. Empty a slot; I/O in flight is not affected. */
	void (*unregister_file)(struct dio_engine *e, int slot);
	/*
	 * Required. Queue io; it reaches the device at the next submit (or
	 * earlier when the queue is full). 0, or -errno and io is not queued.
	 */
	int (*queue)(struct dio_engine *e, struct dio_io *io);
	/* Required. Push everything queued to the device. >= 0 or -errno. */
	int (*submit)(struct dio_engine *e);
	/*
	 * Required. Run end_io for completed I/O; when wait is true and
	 * nothing has completed yet, block until at least one I/O completes.
	 * Returns the number completed or -errno.
	 */
	int (*reap)(struct dio_engine *e, bool wait);
	/* Required. An eventfd that becomes readable when reap has work. */
	int (*event_fd)(struct dio_engine *e);
	/*
	 * Optional - may be NULL. An fd that is readable (level-triggered)
	 * while completions wait for reap, and that reap itself makes
	 * unreadable by running them: io_uring's own ring fd. Asked for
	 * before event_fd; a poller that watches it too spares the engine
	 * signalling, and reap reading, the eventfd for each batch of
	 * completions. The eventfd stays for everything else.
	 */
	int (*poll_fd)(struct dio_engine *e);
	/* Required. Free the engine; nothing may be in flight. */
	void (*destroy)(struct dio_engine *e);
};

/* dio_engine.caps: what the engine can do natively, probed at start. */
#define DIO_CAP_FIXED_BUFS	(1u << 0)

struct dio_engine {
	const struct dio_engine_ops *ops;
	unsigned int caps;	/* DIO_CAP_* */
	unsigned int inflight;	/* queued or submitted, end_io not yet run */
	unsigned int depth;	/* queue depth it was created with */
};

enum dio_engine_kind {
	DIO_ENGINE_AUTO = 0,	/* io_uring, psync when io_uring is unavailable */
	DIO_ENGINE_URING,
	DIO_ENGINE_PSYNC,
};

/*
 * io_uring: how many queued SQEs make the engine enter the kernel at once
 * rather than at the next dio_engine_submit. A batch held for a whole
 * loop turn waits there, and 3 or more go to the block layer plugged,
 * dispatched together: on the 2026-12-02 virtio disk that held dionbd at
 * 0.74x of fio's 4 KiB QD32 writes (bench/README.md, "Submitting early").
 */
#define DIO_SUBMIT_BATCH_DEFAULT 2u
#define DIO_SUBMIT_AT_TURN UINT_MAX	/* only at dio_engine_submit */

struct dio_engine_opts {
	enum dio_engine_kind kind;
	unsigned int depth;	/* io_uring entries / psync queue; 0 = 128 */
	unsigned int threads;	/* psync worker threads; 0 = 16 */
	bool sqpoll;		/* io_uring SQPOLL (needs privileges) */
	unsigned int submit_batch;	/* io_uring, see above; 0 = DIO_SUBMIT_BATCH_DEFAULT */
};

/* Create an engine of opts->kind (NULL: defaults). 0 or -errno. */
int dio_engine_create(const struct dio_engine_opts *opts, struct dio_engine **out);
int dio_engine_uring_create(const struct dio_engine_opts *opts, struct dio_engine **out);
int dio_engine_psync_create(const struct dio_engine_opts *opts, struct dio_engine **out);

/* Thin helpers over the ops table. */
static inline int
dio_engine_queue(struct dio_engine *e, struct dio_io *io)
{
	return e->ops->queue(e, io);
}

static inline int
dio_engine_submit(struct dio_engine *e)
{
	return e->ops->submit(e);
}

static inline int
dio_engine_reap(struct dio_engine *e, bool wait)
{
	return e->ops->reap(e, wait);
}

void dio_engine_destroy(struct dio_engine *e);

/* Name of the engine ("uring", "psync", "fault(uring)"). */
const char *dio_engine_name(const struct dio_engine *e);

#endif /* DIO_ENGINE_H */
