/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection engine, for tests: wraps another engine and counts,
 * fails, shortens, delays and reorders its operations (struct
 * dio_fault_opts). Each io goes to the inner engine as a private shadow
 * copy whose completion is caught here and held until our own reap, so the
 * submitter's end_io still runs only from dio_engine_reap() of this engine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dio/dio.h"
#include "engine-fault.h"
#include "engine-priv.h"

/* One io of the submitter while it is ours. */
struct fault_io {
	struct dio_io shadow;		/* what the inner engine sees */
	struct dio_io *orig;		/* the submitter's io */
	struct fault_engine *f;
	unsigned int hold;		/* reaps left before delivery */
	struct fault_io *next;		/* on f->held */
};

struct fault_engine {
	struct dio_engine e;
	struct dio_engine *inner;	/* owned */
	struct dio_fault_opts opts;
	struct dio_fault_stats st;
	uint64_t nth;			/* matching ops queued since the last set */
	/* completed (by inner or by failing), end_io not yet run: FIFO */
	struct fault_io *held_head, *held_tail;
	struct dio_engine_ops ops;	/* fault_ops with our own name */
	char name[40];
};

static inline struct fault_engine *
to_fault(struct dio_engine *e)
{
	return (struct fault_engine *)e;
}

/* Wake whoever polls the inner engine's eventfd, which is ours too. */
static void
fault_kick_eventfd(struct fault_engine *f)
{
	dio_eventfd_kick(f->inner->ops->event_fd(f->inner));
}

/* Hold the completion of fio with res for delay_reaps reaps. */
static void
fault_hold(struct fault_engine *f, struct fault_io *fio, int64_t res)
{
	fio->orig->res = res;
	fio->hold = f->opts.delay_reaps;
	fio->next = NULL;
	if (f->held_tail)
		f->held_tail->next = fio;
	else
		f->held_head = fio;
	f->held_tail = fio;
}

/* end_io of a shadow: runs inside the inner reap, which runs inside ours. */
static void
fault_inner_done(struct dio_io *io, int64_t res)
{
	struct fault_io *fio = io->priv;

	fault_hold(fio->f, fio, res);
}

/* Forwarded to the inner engine. */
static int
fault_register_buffers(struct dio_engine *e, const struct iovec *iov, unsigned int n)
{
	struct dio_engine *inner = to_fault(e)->inner;

	if (!inner->ops->register_buffers)
		return -EOPNOTSUPP;
	return inner->ops->register_buffers(inner, iov, n);
}

/* Forwarded to the inner engine. */
static int
fault_register_file(struct dio_engine *e, int fd)
{
	struct dio_engine *inner = to_fault(e)->inner;

	if (!inner->ops->register_file)
		return -EOPNOTSUPP;
	return inner->ops->register_file(inner, fd);
}

/* Forwarded to the inner engine. */
static void
fault_unregister_file(struct dio_engine *e, int slot)
{
	struct dio_engine *inner = to_fault(e)->inner;

	if (inner->ops->unregister_file)
		inner->ops->unregister_file(inner, slot);
}

/* Whether io counts towards the op numbering (op_mask). */
static bool
fault_matches(const struct fault_engine *f, const struct dio_io *io)
{
	return !f->opts.op_mask || (f->opts.op_mask & (1u << io->op));
}

/* Whether matching op number nth is one to fail. */
static bool
fault_should_fail(const struct fault_engine *f, uint64_t nth)
{
	uint64_t count = f->opts.fail_count ? f->opts.fail_count : 1;

	return f->opts.fail_nth && nth >= f->opts.fail_nth && nth - f->opts.fail_nth < count;
}

/* Account io in the counters. */
static void
fault_count(struct fault_engine *f, const struct dio_io *io)
{
	f->st.ops[io->op]++;
	f->st.bytes[io->op] += io->len;
	if (io->op == DIO_IO_WRITE && (io->rw_flags & RWF_DSYNC))
		f->st.dsync_writes++;
}

/* Number io, then fail it here or forward a (maybe shortened) shadow. */
static int
fault_queue(struct dio_engine *e, struct dio_io *io)
{
	struct fault_engine *f = to_fault(e);
	struct fault_io *fio;
	uint64_t nth = 0;
	int ret;

	if (io->op >= DIO_IO_NR_OPS)
		return -EINVAL;
	fio = calloc(1, sizeof(*fio));
	if (!fio)
		return -ENOMEM;
	fio->orig = io;
	fio->f = f;
	if (fault_matches(f, io))
		nth = f->nth + 1;

	if (nth && fault_should_fail(f, nth)) {
		f->nth = nth;
		fault_count(f, io);
		f->st.failed++;
		fault_hold(f, fio, -(int64_t)f->opts.fail_errno);
		e->inflight++;
		fault_kick_eventfd(f);
		return 0;
	}

	fio->shadow = *io;
	fio->shadow.end_io = fault_inner_done;
	fio->shadow.priv = fio;
	fio->shadow.next = NULL;
	if (nth && nth == f->opts.short_nth && f->opts.short_len &&
	    (io->op == DIO_IO_READ || io->op == DIO_IO_WRITE) && f->opts.short_len < io->len)
		fio->shadow.len = f->opts.short_len;
	ret = f->inner->ops->queue(f->inner, &fio->shadow);
	if (ret < 0) {
		free(fio);
		return ret;
	}
	if (nth)
		f->nth = nth;
	if (fio->shadow.len != io->len)
		f->st.shortened++;
	fault_count(f, io);
	e->inflight++;
	return 0;
}

/* Forwarded to the inner engine. */
static int
fault_submit(struct dio_engine *e)
{
	struct fault_engine *f = to_fault(e);

	return f->inner->ops->submit(f->inner);
}

/*
 * Take the completions due now off the held list (all of them when force),
 * age the others by one reap, and return the due ones in delivery order.
 */
static struct fault_io *
fault_take_due(struct fault_engine *f, bool force)
{
	struct fault_io *due = NULL, **due_tail = &due;
	struct fault_io *fio = f->held_head, *keep = NULL, *keep_tail = NULL;

	while (fio) {
		struct fault_io *next = fio->next;

		fio->next = NULL;
		if (force || fio->hold == 0) {
			*due_tail = fio;
			due_tail = &fio->next;
		} else {
			fio->hold--;
			if (keep_tail)
				keep_tail->next = fio;
			else
				keep = fio;
			keep_tail = fio;
		}
		fio = next;
	}
	f->held_head = keep;
	f->held_tail = keep_tail;

	if (f->opts.reorder) {
		struct fault_io *rev = NULL;

		while (due) {
			struct fault_io *next = due->next;

			due->next = rev;
			rev = due;
			due = next;
		}
		due = rev;
	}
	return due;
}

/* Run end_io for the list fio in order; the number run. */
static int
fault_deliver(struct fault_engine *f, struct fault_io *fio)
{
	int n = 0;

	while (fio) {
		struct fault_io *next = fio->next;
		struct dio_io *io = fio->orig;

		free(fio);
		f->e.inflight--;
		io->end_io(io, io->res);
		fio = next;
		n++;
	}
	return n;
}

/* Whether the gate lets completions through; with wait, sleep until it does. */
static bool
fault_gate_pass(struct fault_engine *f, bool wait)
{
	struct dio_fault_gate *g = f->opts.gate;
	bool open;

	if (!g)
		return true;
	pthread_mutex_lock(&g->m);
	if (!g->open && wait) {
		g->waiting++;
		pthread_cond_broadcast(&g->cond);
		while (!g->open)
			pthread_cond_wait(&g->cond, &g->m);
		g->waiting--;
	}
	open = g->open;
	pthread_mutex_unlock(&g->m);
	return open;
}

/* Reap inner, age held completions and deliver the due ones. */
static int
fault_reap(struct dio_engine *e, bool wait)
{
	struct fault_engine *f = to_fault(e);
	int n = 0, ret;

	ret = f->inner->ops->reap(f->inner, false);
	if (ret < 0)
		return ret;
	if (fault_gate_pass(f, false))
		n = fault_deliver(f, fault_take_due(f, false));
	while (wait && n == 0 && e->inflight > 0) {
		/* holding completions: deliver them rather than block on inner */
		if (f->held_head && fault_gate_pass(f, true)) {
			n = fault_deliver(f, fault_take_due(f, true));
			break;
		}
		ret = f->inner->ops->reap(f->inner, true);
		if (ret < 0)
			return ret;
	}
	/* what end_io queued goes out now; a failure shows at the next submit */
	f->inner->ops->submit(f->inner);
	/* still holding: make sure the poller comes back for them */
	if (f->held_head)
		fault_kick_eventfd(f);
	return n;
}

/* The inner engine's eventfd. */
static int
fault_event_fd(struct dio_engine *e)
{
	struct dio_engine *inner = to_fault(e)->inner;

	return inner->ops->event_fd(inner);
}

/* Free the wrapper and the inner engine. */
static void
fault_destroy(struct dio_engine *e)
{
	struct fault_engine *f = to_fault(e);
	struct fault_io *fio = f->held_head;

	/* "nothing may be in flight", but do not leak what a test forgot */
	while (fio) {
		struct fault_io *next = fio->next;

		free(fio);
		fio = next;
	}
	dio_engine_destroy(f->inner);
	free(f);
}

static const struct dio_engine_ops fault_ops = {
	.name = "fault",
	.register_buffers = fault_register_buffers,
	.register_file = fault_register_file,
	.unregister_file = fault_unregister_file,
	.queue = fault_queue,
	.submit = fault_submit,
	.reap = fault_reap,
	.event_fd = fault_event_fd,
	.destroy = fault_destroy,
};

/* Wrap inner (taken over) with the fault plan opts (NULL: none). */
int
dio_engine_fault_create(struct dio_engine *inner, const struct dio_fault_opts *opts,
			struct dio_engine **out)
{
	struct fault_engine *f;

	if (!inner)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->inner = inner;
	/* a per-engine ops copy so that dio_engine_name() says what is inside */
	f->ops = fault_ops;
	f->ops.name = f->name;
	f->e.ops = &f->ops;
	f->e.caps = inner->caps;
	f->e.depth = inner->depth;
	if (opts)
		f->opts = *opts;
	snprintf(f->name, sizeof(f->name), "fault(%s)", dio_engine_name(inner));
	*out = &f->e;
	return 0;
}

/* New plan; numbering and counters restart from 0. No-op on other engines. */
void
dio_engine_fault_set(struct dio_engine *e, const struct dio_fault_opts *opts)
{
	struct fault_engine *f;

	if (e->ops->queue != fault_queue)
		return;
	f = to_fault(e);
	if (opts)
		f->opts = *opts;
	else
		memset(&f->opts, 0, sizeof(f->opts));
	f->nth = 0;
	memset(&f->st, 0, sizeof(f->st));
}

/* Copy the counters (zeros for an engine that is not a fault wrapper). */
void
dio_engine_fault_stats(struct dio_engine *e, struct dio_fault_stats *st)
{
	if (e->ops->queue != fault_queue) {
		memset(st, 0, sizeof(*st));
		return;
	}
	*st = to_fault(e)->st;
}
