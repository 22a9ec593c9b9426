/* SPDX-License-Identifier: MIT */
/*
 * The psync engine: a pool of worker threads doing preadv2/pwritev2 and
 * friends, for when io_uring is unavailable (seccomp, io_uring_disabled).
 * Same contract as the ring: queue() collects, submit() hands the batch to
 * the workers, workers post completions on a list and the eventfd, and
 * reap() runs end_io on the owner's thread only.
 *
 * Locks: sq_lock guards the submission list and 'stop'; cq_lock guards the
 * completion list. A worker never holds both.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dio/dio.h"
#include "engine-priv.h"

struct psync_engine {
	struct dio_engine e;
	int efd;
	/* owner's thread only: queued, not yet submitted */
	struct dio_io_list pend;
	unsigned int npend;

	pthread_mutex_t sq_lock;
	pthread_cond_t sq_cond;		/* work arrived or stop */
	struct dio_io_list sq;
	bool stop;

	pthread_mutex_t cq_lock;
	pthread_cond_t cq_cond;		/* a completion arrived */
	struct dio_io_list cq;

	unsigned int nthreads;
	pthread_t *threads;
};

static inline struct psync_engine *
to_psync(struct dio_engine *e)
{
	return (struct psync_engine *)e;
}

/* Worker: take one io at a time, run it, post its completion. */
static void *
psync_worker(void *arg)
{
	struct psync_engine *p = arg;
	struct dio_io *io;

	for (;;) {
		pthread_mutex_lock(&p->sq_lock);
		while (!p->sq.head && !p->stop)
			pthread_cond_wait(&p->sq_cond, &p->sq_lock);
		io = dio_io_list_pop(&p->sq);
		pthread_mutex_unlock(&p->sq_lock);
		if (!io)
			break;

		io->res = dio_io_exec_sync(io);

		pthread_mutex_lock(&p->cq_lock);
		dio_io_list_add(&p->cq, io);
		pthread_cond_signal(&p->cq_cond);
		pthread_mutex_unlock(&p->cq_lock);
		dio_eventfd_kick(p->efd);
	}
	return NULL;
}

/* Append io to the private batch; hand it over when the batch is full. */
static int
psync_queue(struct dio_engine *e, struct dio_io *io)
{
	struct psync_engine *p = to_psync(e);

	if (io->op >= DIO_IO_NR_OPS)
		return -EINVAL;
	if ((io->op == DIO_IO_READ || io->op == DIO_IO_WRITE) &&
	    (io->len > DIO_IO_MAX_LEN || !io->buf))
		return -EINVAL;
	/* no registered buffers here: buf is an ordinary address either way */
	dio_io_list_add(&p->pend, io);
	p->npend++;
	e->inflight++;
	if (p->npend >= e->depth)
		e->ops->submit(e);
	return 0;
}

/* Hand the batch to the workers; number handed over. */
static int
psync_submit(struct dio_engine *e)
{
	struct psync_engine *p = to_psync(e);
	int n = (int)p->npend;

	if (!n)
		return 0;
	pthread_mutex_lock(&p->sq_lock);
	dio_io_list_splice(&p->sq, &p->pend);
	if (n == 1)
		pthread_cond_signal(&p->sq_cond);
	else
		pthread_cond_broadcast(&p->sq_cond);
	pthread_mutex_unlock(&p->sq_lock);
	p->npend = 0;
	return n;
}

/* Run end_io for what the workers finished; see dio_engine_ops.reap. */
static int
psync_reap(struct dio_engine *e, bool wait)
{
	struct psync_engine *p = to_psync(e);
	struct dio_io *io;
	uint64_t cnt;
	ssize_t r;
	int n;

	/* clear before taking the list: a later completion re-arms it */
	r = read(p->efd, &cnt, sizeof(cnt));
	(void)r;
	if (wait && e->inflight > 0)
		psync_submit(e);	/* waiting on unsubmitted I/O would hang */

	pthread_mutex_lock(&p->cq_lock);
	while (wait && !p->cq.head && e->inflight > p->npend)
		pthread_cond_wait(&p->cq_cond, &p->cq_lock);
	io = dio_io_list_take(&p->cq);
	pthread_mutex_unlock(&p->cq_lock);

	/* end_io may queue more: that goes to pend, not to this batch */
	n = dio_io_list_complete(e, io);
	/* what end_io queued (resubmissions) goes out now, not at some later kick */
	psync_submit(e);
	return n;
}

/* The eventfd the workers write after each completion. */
static int
psync_event_fd(struct dio_engine *e)
{
	return to_psync(e)->efd;
}

/* Stop and join the first n workers. */
static void
psync_stop_workers(struct psync_engine *p, unsigned int n)
{
	pthread_mutex_lock(&p->sq_lock);
	p->stop = true;
	pthread_cond_broadcast(&p->sq_cond);
	pthread_mutex_unlock(&p->sq_lock);
	for (unsigned int i = 0; i < n; i++)
		pthread_join(p->threads[i], NULL);
}

/* Stop and join the workers; nothing may be in flight. */
static void
psync_destroy(struct dio_engine *e)
{
	struct psync_engine *p = to_psync(e);

	psync_stop_workers(p, p->nthreads);
	pthread_mutex_destroy(&p->sq_lock);
	pthread_cond_destroy(&p->sq_cond);
	pthread_mutex_destroy(&p->cq_lock);
	pthread_cond_destroy(&p->cq_cond);
	close(p->efd);
	free(p->threads);
	free(p);
}

static const struct dio_engine_ops psync_ops = {
	.name = "psync",
	.queue = psync_queue,
	.submit = psync_submit,
	.reap = psync_reap,
	.event_fd = psync_event_fd,
	.destroy = psync_destroy,
};

/* A thread-pool engine with opts->threads workers. */
int
dio_engine_psync_create(const struct dio_engine_opts *opts, struct dio_engine **out)
{
	struct dio_engine_opts def = { 0 };
	struct psync_engine *p;
	unsigned int i;
	int ret;

	if (!opts)
		opts = &def;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->e.ops = &psync_ops;
	p->e.depth = opts->depth ? opts->depth : 128;
	p->nthreads = opts->threads ? opts->threads : 16;
	p->threads = calloc(p->nthreads, sizeof(*p->threads));
	if (!p->threads) {
		ret = -ENOMEM;
		goto err_free;
	}
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		ret = -errno;
		goto err_free_threads;
	}
	pthread_mutex_init(&p->sq_lock, NULL);
	pthread_cond_init(&p->sq_cond, NULL);
	pthread_mutex_init(&p->cq_lock, NULL);
	pthread_cond_init(&p->cq_cond, NULL);
	for (i = 0; i < p->nthreads; i++) {
		ret = -pthread_create(&p->threads[i], NULL, psync_worker, p);
		if (ret < 0)
			goto err_stop;
	}
	*out = &p->e;
	return 0;

err_stop:
	psync_stop_workers(p, i);
	pthread_mutex_destroy(&p->sq_lock);
	pthread_cond_destroy(&p->sq_cond);
	pthread_mutex_destroy(&p->cq_lock);
	pthread_cond_destroy(&p->cq_cond);
	close(p->efd);
err_free_threads:
	free(p->threads);
err_free:
	free(p);
	return ret;
}
