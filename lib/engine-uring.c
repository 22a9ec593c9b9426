/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine: one ring per thread, batch submission, fixed buffers
 * and files, completions signalled on an eventfd the host polls.
 *
 * Operations the ring cannot do (BLKDISCARD/BLKZEROOUT, opcodes the kernel
 * lacks) go to a helper thread of the engine's own, started on first need,
 * so that a discard of a large range does not stall the caller's thread
 * (a reactor and every connection on it). Their completions wait on a list
 * for the next reap(), and the eventfd is kicked, so end_io still runs only
 * in reap. If the thread cannot be started they run inside queue() instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "dio/dio.h"
#include "engine-priv.h"

/* Fixed-file slots: one per volume fd a thread touches, so a few suffice. */
#define URING_FILE_SLOTS 64

struct uring_engine {
	struct dio_engine e;
	struct io_uring ring;
	int efd;
	_Atomic bool efd_live;		/* somebody polls it */
	bool ring_polled;		/* somebody polls the ring fd: CQEs need no eventfd */
	bool native[DIO_IO_NR_OPS];	/* the ring has an opcode for it */
	bool disabled;			/* created R_DISABLED: enable on first use */
	unsigned int nbufs;		/* registered buffers */
	bool files_ok;			/* sparse file table registered */
	bool file_used[URING_FILE_SLOTS];	/* fixed slots handed out */
	struct dio_io_list done;	/* done synchronously, end_io not yet run */
	struct uring_aux *aux;		/* helper thread for the others, or NULL */
	bool aux_failed;		/* it could not be started: run them inline */
	unsigned int submit_batch;	/* enter once this many SQEs wait (dio_engine_opts) */
};

/* The helper thread and its two lists; lock guards everything below it. */
struct uring_aux {
	struct uring_engine *u;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work;		/* todo grew, or stop */
	pthread_cond_t done_cond;	/* done grew */
	struct dio_io_list todo;
	struct dio_io_list done;
	unsigned int pending;		/* queued here, end_io not yet run */
	bool stop;
};

static inline struct uring_engine *
to_uring(struct dio_engine *e)
{
	return (struct uring_engine *)e;
}

/* Wake whoever polls the eventfd. */
static void
uring_kick_eventfd(struct uring_engine *u)
{
	/* nobody polls: the waiting reap finds the work itself */
	if (atomic_load(&u->efd_live))
		dio_eventfd_kick(u->efd);
}

/*
 * Whether the CQ ring holds completions: then a poller of the ring fd was
 * woken by them, and nothing says the eventfd was written at all.
 */
static bool
uring_cq_pending(struct uring_engine *u)
{
	return u->ring_polled && io_uring_cq_ready(&u->ring) > 0;
}

/*
 * The ring is created disabled so that the thread that first uses it (not
 * the one that created it) becomes its single issuer: the kernel binds
 * SINGLE_ISSUER to the task that enables the ring.
 */
static int
uring_enable(struct uring_engine *u)
{
	int ret;

	if (!u->disabled)
		return 0;
	/* liburing 2.3 declares io_uring_enable_rings() but does not export it */
	ret = (int)syscall(__NR_io_uring_register, u->ring.ring_fd,
			   IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	if (ret < 0)
		return -errno;
	u->disabled = false;
	return 0;
}

/* Register iov[0..n) as fixed buffers, replacing any earlier set. */
static int
uring_register_buffers(struct dio_engine *e, const struct iovec *iov, unsigned int n)
{
	struct uring_engine *u = to_uring(e);
	int ret;

	if (!(e->caps & DIO_CAP_FIXED_BUFS))
		return -EOPNOTSUPP;
	if (u->nbufs) {
		ret = io_uring_unregister_buffers(&u->ring);
		if (ret < 0)
			return ret;
		u->nbufs = 0;
	}
	if (n == 0)
		return 0;
	ret = io_uring_register_buffers(&u->ring, iov, n);
	if (ret < 0)
		return ret;
	u->nbufs = n;
	return 0;
}

/* Put fd's file in a free fixed-file slot; the slot or -errno. */
static int
uring_register_file(struct dio_engine *e, int fd)
{
	struct uring_engine *u = to_uring(e);
	int ret;

	if (!u->files_ok)
		return -EOPNOTSUPP;
	if (fd < 0)
		return -EBADF;
	for (int i = 0; i < URING_FILE_SLOTS; i++) {
		if (u->file_used[i])
			continue;
		/* the table takes its own reference to the file behind fd */
		ret = io_uring_register_files_update(&u->ring, i, &fd, 1);
		if (ret < 0)
			return ret;
		u->file_used[i] = true;
		return i;
	}
	return -ENOSPC;
}

/* Empty a slot from uring_register_file. */
static void
uring_unregister_file(struct dio_engine *e, int slot)
{
	struct uring_engine *u = to_uring(e);
	int none = -1;

	if (slot < 0 || slot >= URING_FILE_SLOTS || !u->file_used[slot])
		return;
	/* I/O already in flight keeps its own reference to the file */
	io_uring_register_files_update(&u->ring, slot, &none, 1);
	u->file_used[slot] = false;
}

/* Run io now and park its completion for the next reap. */
static void
uring_queue_sync(struct uring_engine *u, struct dio_io *io)
{
	io->res = dio_io_exec_sync(io);
	dio_io_list_add(&u->done, io);
	uring_kick_eventfd(u);
}

/* The helper thread: run what queue() handed over, one at a time, in order. */
static void *
uring_aux_main(void *arg)
{
	struct uring_aux *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct dio_io *io;
		int64_t res;

		while (!a->todo.head && !a->stop)
			pthread_cond_wait(&a->work, &a->lock);
		io = dio_io_list_pop(&a->todo);
		if (!io)
			break;	/* stopping, and nothing left */
		pthread_mutex_unlock(&a->lock);
		res = dio_io_exec_sync(io);
		pthread_mutex_lock(&a->lock);
		io->res = res;
		dio_io_list_add(&a->done, io);
		pthread_cond_broadcast(&a->done_cond);
		pthread_mutex_unlock(&a->lock);
		uring_kick_eventfd(a->u);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* Hand io to the helper thread, starting it if need be. 0, or -1: run it inline. */
static int
uring_aux_queue(struct uring_engine *u, struct dio_io *io)
{
	struct uring_aux *a = u->aux;

	if (!a) {
		if (u->aux_failed)
			return -1;
		a = calloc(1, sizeof(*a));
		if (!a) {
			u->aux_failed = true;
			return -1;
		}
		a->u = u;
		pthread_mutex_init(&a->lock, NULL);
		pthread_cond_init(&a->work, NULL);
		pthread_cond_init(&a->done_cond, NULL);
		if (pthread_create(&a->thread, NULL, uring_aux_main, a) != 0) {
			pthread_cond_destroy(&a->done_cond);
			pthread_cond_destroy(&a->work);
			pthread_mutex_destroy(&a->lock);
			free(a);
			u->aux_failed = true;
			dio_log(DIO_LOG_WARN, "io_uring engine: no helper thread; discards and "
					      "zero-outs will block the caller");
			return -1;
		}
		u->aux = a;
	}
	pthread_mutex_lock(&a->lock);
	dio_io_list_add(&a->todo, io);
	a->pending++;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/*
 * Run end_io for what the helper finished; with wait, first wait for it to
 * finish something if nothing is done yet (only when the ring has nothing
 * in flight that could wake us instead). Returns the number run.
 */
static int
uring_aux_reap(struct uring_engine *u, bool wait)
{
	struct uring_aux *a = u->aux;
	struct dio_io *io, *first;
	unsigned int n = 0;

	if (!a)
		return 0;
	pthread_mutex_lock(&a->lock);
	while (wait && !a->done.head && a->pending)
		pthread_cond_wait(&a->done_cond, &a->lock);
	first = dio_io_list_take(&a->done);
	for (io = first; io; io = io->next)
		n++;
	a->pending -= n;
	pthread_mutex_unlock(&a->lock);
	return dio_io_list_complete(&u->e, first);
}

/* Ops queued to the helper and not yet reaped. */
static unsigned int
uring_aux_pending(struct uring_engine *u)
{
	unsigned int n;

	if (!u->aux)
		return 0;
	pthread_mutex_lock(&u->aux->lock);
	n = u->aux->pending;
	pthread_mutex_unlock(&u->aux->lock);
	return n;
}

/* Whether io can go to the ring as an sqe (rather than run synchronously). */
static bool
uring_can_ring(const struct uring_engine *u, const struct dio_io *io)
{
	if (!u->native[io->op])
		return false;
	/* the FADVISE sqe carries a 32-bit length (liburing 2.3) */
	if (io->op == DIO_IO_FADVISE && io->len > UINT32_MAX)
		return false;
	return true;
}

/* Fill sqe for io: fixed buffer and fixed file when it has them. */
static void
uring_prep(struct uring_engine *u, struct io_uring_sqe *sqe, const struct dio_io *io)
{
	int slot = u->files_ok && io->fixed_file > 0 && io->fixed_file <= URING_FILE_SLOTS &&
		   u->file_used[io->fixed_file - 1] ? io->fixed_file - 1 : -1;
	int fd = slot >= 0 ? slot : io->fd;

	switch (io->op) {
	case DIO_IO_READ:
		if (io->buf_index >= 0)
			io_uring_prep_read_fixed(sqe, fd, io->buf, (unsigned int)io->len,
						 io->offset, io->buf_index);
		else
			io_uring_prep_read(sqe, fd, io->buf, (unsigned int)io->len, io->offset);
		sqe->rw_flags = io->rw_flags;
		break;
	case DIO_IO_WRITE:
		if (io->buf_index >= 0)
			io_uring_prep_write_fixed(sqe, fd, io->buf, (unsigned int)io->len,
						  io->offset, io->buf_index);
		else
			io_uring_prep_write(sqe, fd, io->buf, (unsigned int)io->len, io->offset);
		sqe->rw_flags = io->rw_flags;
		break;
	case DIO_IO_FSYNC:
		io_uring_prep_fsync(sqe, fd, io->mode ? 0 : IORING_FSYNC_DATASYNC);
		break;
	case DIO_IO_FALLOCATE:
		io_uring_prep_fallocate(sqe, fd, io->mode, (off_t)io->offset, (off_t)io->len);
		break;
	case DIO_IO_FADVISE:
		io_uring_prep_fadvise(sqe, fd, io->offset, (off_t)io->len, io->mode);
		break;
	}
	if (slot >= 0)
		io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
	io_uring_sqe_set_data(sqe, (void *)io);
}

/* Queue io as an sqe, or run it now and park its completion. */
static int
uring_queue(struct dio_engine *e, struct dio_io *io)
{
	struct uring_engine *u = to_uring(e);
	struct io_uring_sqe *sqe;
	int ret;

	if (io->op >= DIO_IO_NR_OPS)
		return -EINVAL;
	if ((io->op == DIO_IO_READ || io->op == DIO_IO_WRITE) &&
	    (io->len > DIO_IO_MAX_LEN || !io->buf))
		return -EINVAL;
	if (io->buf_index >= 0 && (io->op == DIO_IO_READ || io->op == DIO_IO_WRITE) &&
	    (unsigned int)io->buf_index >= u->nbufs)
		return -EINVAL;
	ret = uring_enable(u);
	if (ret < 0)
		return ret;
	if (!uring_can_ring(u, io)) {
		e->inflight++;
		if (uring_aux_queue(u, io) < 0)
			uring_queue_sync(u, io);
		return 0;
	}
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		/* SQ full: push what is there to make room */
		ret = io_uring_submit(&u->ring);
		if (ret < 0)
			return ret;
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			return -EBUSY;
	}
	uring_prep(u, sqe, io);
	e->inflight++;
	/*
	 * Early, not at the end of the caller's turn: what is queued does not
	 * wait for the rest of a batch, unplugged below 3. A refusal here
	 * leaves the SQEs in the ring; dio_engine_submit reports it.
	 */
	if (io_uring_sq_ready(&u->ring) >= u->submit_batch)
		io_uring_submit(&u->ring);
	return 0;
}

/* One io_uring_enter for everything queued; sqes submitted or -errno. */
static int
uring_submit(struct dio_engine *e)
{
	struct uring_engine *u = to_uring(e);
	int ret;

	if (io_uring_sq_ready(&u->ring) == 0)
		return 0;
	ret = uring_enable(u);
	if (ret < 0)
		return ret;
	do
		ret = io_uring_submit(&u->ring);
	while (ret == -EINTR);
	return ret;
}

/* Deliver the synchronous completions that were parked before this reap. */
static int
uring_reap_sync(struct uring_engine *u)
{
	/* detach first: end_io may park new ones, those wait for the next reap */
	return dio_io_list_complete(&u->e, dio_io_list_take(&u->done));
}

/* Deliver the CQEs posted so far, at most a ring's worth. */
static int
uring_reap_cqes(struct uring_engine *u)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	/* one CQE at a time: end_io may queue and even submit new I/O */
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		/*
		 * Bounded, so that end_io resubmitting fast I/O cannot keep
		 * the thread here; the eventfd brings the poller back.
		 */
		if (n == (int)u->ring.cq.ring_entries) {
			uring_kick_eventfd(u);
			break;
		}
		struct dio_io *io = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;

		io_uring_cqe_seen(&u->ring, cqe);
		io->res = res;
		u->e.inflight--;
		io->end_io(io, res);
		n++;
		/*
		 * Resubmissions from end_io went out before this with
		 * submit_batch (uring_queue): at QD32, waiting for 32 end_io
		 * calls left the device queue shallow (measured in bench/).
		 */
	}
	return n;
}

/* Run end_io for parked and posted completions; see dio_engine_ops.reap. */
static int
uring_reap(struct dio_engine *e, bool wait)
{
	struct uring_engine *u = to_uring(e);
	uint64_t cnt;
	int n, ret;
	ssize_t r;

	/*
	 * Clear the eventfd before draining: a kick after this re-arms it.
	 * With the ring fd polled, a wake-up that finds CQEs came from the
	 * ring and the read (a system call per batch) is skipped; a kick
	 * that came with them keeps the eventfd readable, so the poller
	 * returns at once and that reap, finding the CQ empty, reads it.
	 * The lists below are drained either way.
	 */
	if (u->efd_live && !uring_cq_pending(u)) {
		r = read(u->efd, &cnt, sizeof(cnt));
		(void)r;
	}
	n = uring_reap_sync(u);
	n += uring_aux_reap(u, false);
	n += uring_reap_cqes(u);
	while (wait && n == 0 && e->inflight > 0) {
		if (u->done.head) {
			n = uring_reap_sync(u);
			break;
		}
		/* only the helper has work: the ring would wait for nothing */
		if (e->inflight == uring_aux_pending(u)) {
			n = uring_aux_reap(u, true);
			break;
		}
		ret = uring_enable(u);
		if (ret < 0)
			return ret;
		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		n = uring_reap_cqes(u);
	}
	/*
	 * What end_io queued (resubmissions) goes out now rather than at some
	 * later kick. A failure here stays queued for the caller's next submit,
	 * which reports it; n end_io calls have run and that is what we return.
	 */
	if (io_uring_sq_ready(&u->ring))
		io_uring_submit(&u->ring);
	return n;
}

/*
 * The eventfd, registered with the ring on first request: a ring with an
 * eventfd signals it on every CQE, and a reap then reads it, which costs a
 * sync caller (plugin, bench) two system calls per I/O for nothing. When
 * the ring fd is polled (uring_poll_fd) the ring signals nothing: the
 * eventfd only carries kicks (parked and helper completions, the host's).
 */
static int
uring_event_fd(struct dio_engine *e)
{
	struct uring_engine *u = to_uring(e);

	if (!u->efd_live) {
		if (!u->ring_polled && io_uring_register_eventfd(&u->ring, u->efd) < 0)
			return -1;
		u->efd_live = true;
		/* completions parked before now would otherwise go unannounced */
		if (u->done.head || io_uring_cq_ready(&u->ring) || uring_aux_pending(u))
			uring_kick_eventfd(u);
	}
	return u->efd;
}

/*
 * The ring fd: io_uring's poll reports it readable while the CQ ring holds
 * CQEs, and reaping them makes it unreadable, with no system call. Under
 * COOP_TASKRUN a completion interrupts the poller's sleep, the task work
 * that posts the CQE runs on its way out, and its next poll sees the fd.
 */
static int
uring_poll_fd(struct dio_engine *e)
{
	struct uring_engine *u = to_uring(e);

	/* too late once the ring signals the eventfd: keep that */
	if (u->efd_live)
		return -1;
	u->ring_polled = true;
	return u->ring.ring_fd;
}

/* Tear down the ring; nothing may be in flight. */
static void
uring_destroy(struct dio_engine *e)
{
	struct uring_engine *u = to_uring(e);
	struct uring_aux *a = u->aux;

	if (a) {
		pthread_mutex_lock(&a->lock);
		a->stop = true;
		pthread_cond_signal(&a->work);
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->thread, NULL);
		pthread_cond_destroy(&a->done_cond);
		pthread_cond_destroy(&a->work);
		pthread_mutex_destroy(&a->lock);
		free(a);
	}
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	free(u);
}

static const struct dio_engine_ops uring_ops = {
	.name = "uring",
	.register_buffers = uring_register_buffers,
	.register_file = uring_register_file,
	.unregister_file = uring_unregister_file,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.event_fd = uring_event_fd,
	.poll_fd = uring_poll_fd,
	.destroy = uring_destroy,
};

/* Remember which of our operations the kernel has opcodes for. */
static void
uring_probe(struct uring_engine *u)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&u->ring);

	if (!p) {
		/* no probe (before 5.6): READ/WRITE and FSYNC are 5.1 opcodes */
		u->native[DIO_IO_FSYNC] = true;
		return;
	}
	u->native[DIO_IO_READ] = io_uring_opcode_supported(p, IORING_OP_READ);
	u->native[DIO_IO_WRITE] = io_uring_opcode_supported(p, IORING_OP_WRITE);
	u->native[DIO_IO_FSYNC] = io_uring_opcode_supported(p, IORING_OP_FSYNC);
	u->native[DIO_IO_FALLOCATE] = io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
	u->native[DIO_IO_FADVISE] = io_uring_opcode_supported(p, IORING_OP_FADVISE);
	if (io_uring_opcode_supported(p, IORING_OP_READ_FIXED) &&
	    io_uring_opcode_supported(p, IORING_OP_WRITE_FIXED))
		u->e.caps |= DIO_CAP_FIXED_BUFS;
	io_uring_free_probe(p);
}

/* Create the ring with the best flags this kernel accepts. */
static int
uring_init_ring(struct uring_engine *u, const struct dio_engine_opts *opts, unsigned int depth)
{
	unsigned int base = opts->sqpoll ? IORING_SETUP_SQPOLL : 0;
	/*
	 * COOP_TASKRUN: completions wait for our next syscall instead of an
	 * IPI; TASKRUN_FLAG tells liburing's peek when to enter the kernel
	 * to run them, so a non-blocking reap still finds them.
	 */
	unsigned int fast = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
			    IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED;
	int ret;

	ret = io_uring_queue_init(depth, &u->ring, base | fast);
	if (ret == 0) {
		u->disabled = true;
		return 0;
	}
	/* -EINVAL: a kernel before 6.0 does not know these flags */
	if (ret != -EINVAL)
		return ret;
	return io_uring_queue_init(depth, &u->ring, base);
}

/* An io_uring engine of opts->depth entries; -ENOSYS/-EPERM when refused. */
int
dio_engine_uring_create(const struct dio_engine_opts *opts, struct dio_engine **out)
{
	struct dio_engine_opts def = { 0 };
	struct uring_engine *u;
	unsigned int depth;
	int ret;

	if (!opts)
		opts = &def;
	depth = opts->depth ? opts->depth : 128;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->e.ops = &uring_ops;
	u->e.depth = depth;
	u->submit_batch = opts->submit_batch ? opts->submit_batch : DIO_SUBMIT_BATCH_DEFAULT;

	ret = uring_init_ring(u, opts, depth);
	if (ret < 0)
		goto err_free;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0) {
		ret = -errno;
		goto err_ring;
	}
	uring_probe(u);
	/* sparse tables came with 5.19; without them fds are passed as is */
	if (io_uring_register_files_sparse(&u->ring, URING_FILE_SLOTS) == 0)
		u->files_ok = true;
	*out = &u->e;
	return 0;

err_ring:
	io_uring_queue_exit(&u->ring);
err_free:
	free(u);
	return ret;
}
