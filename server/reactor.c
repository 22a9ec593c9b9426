/* SPDX-License-Identifier: MIT */
/*
 * Reactors: one thread per core, each with an event_base, a dio_ctx (engine
 * + pinned buffer pool) whose event fd lives in the loop, and the
 * connections handed to it by the accepting thread.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cpuload.h"
#include "server.h"

/*
 * The ctx's event fd is readable: run completions. Each connection whose
 * requests finished was woken (req_queue) and sends their replies in one
 * batch when the loop runs its event next.
 */
static void
reactor_on_dio(evutil_socket_t fd, short what, void *arg)
{
	struct reactor *r = arg;
	int ret;

	reactor_work(r);
	ret = dio_ctx_reap(r->ctx, false);
	if (ret < 0)
		log_warn("reactor %u: reap: %s", r->id, strerror(-ret));
	if (ret > 0) {
		stats_add(&r->reaps, 1);
		stats_add(&r->completions, (uint64_t)ret);
	}
}

/* Graceful stop: arm the deadline and shut every connection down. */
static void
reactor_begin_stop(struct reactor *r)
{
	struct timeval tv = { .tv_sec = r->srv->cfg ? r->srv->cfg->stop_timeout : 5 };
	struct conn *c, *next;

	if (r->stopping)
		return;
	r->stopping = true;
	log_debug("reactor %u: stopping, %u connection(s)", r->id, r->nconns);
	evtimer_add(r->stop_timer, &tv);
	for (c = r->conns; c; c = next) {
		next = c->next;
		conn_shutdown(c);
	}
}

/* The stop deadline passed: close every socket; in-flight I/O still completes. */
static void
reactor_on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct reactor *r = arg;
	struct conn *c, *next;

	log_warn("reactor %u: %u connection(s) still busy at the stop deadline", r->id,
		 r->nconns);
	for (c = r->conns; c; c = next) {
		next = c->next;
		if (!c->dead)
			stats_conn_dropped(r->srv, STATS_DROP_SERVER_STOPPING);
		conn_abort(c, "server stopping");
		conn_run(c);	/* frees it if nothing is in flight */
	}
}

/*
 * Connections to removed exports get ESHUTDOWN for every new request
 * (protocol.c), so that their clients disconnect, and are closed at their
 * export's drop_at if they have not. The timer is armed for the next such
 * deadline.
 */
static void
reactor_sweep_exports(struct reactor *r)
{
	uint64_t now = stats_now_ns(), next_at = 0;
	struct conn *c, *next;

	for (c = r->conns; c; c = next) {
		next = c->next;
		if (c->dead || !c->exp || !__atomic_load_n(&c->exp->removed, __ATOMIC_ACQUIRE))
			continue;
		if (c->exp->drop_at <= now) {
			conn_abort(c, "its export was removed; the deadline passed");
			conn_run(c);
			continue;
		}
		if (!next_at || c->exp->drop_at < next_at)
			next_at = c->exp->drop_at;
	}
	if (next_at) {
		uint64_t ns = next_at - now;
		struct timeval tv = { .tv_sec = (time_t)(ns / 1000000000u),
				      .tv_usec = (suseconds_t)(ns % 1000000000u / 1000 + 1) };

		evtimer_add(r->sweep_timer, &tv);
	}
}

static void
reactor_on_sweep_timer(evutil_socket_t fd, short what, void *arg)
{
	reactor_sweep_exports(arg);
}

/* Hand-offs and stop requests from other threads. */
static void
reactor_on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct reactor *r = arg;
	uint64_t v;
	int *fds;
	size_t n;
	bool stop, sweep;

	reactor_work(r);
	if (read(r->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("reactor %u: eventfd: %s", r->id, strerror(errno));
	pthread_mutex_lock(&r->lock);
	fds = r->pending;
	n = r->npending;
	r->pending = NULL;
	r->npending = r->cap = 0;
	stop = r->stop_req;
	sweep = r->sweep_req;
	r->sweep_req = false;
	pthread_mutex_unlock(&r->lock);

	for (size_t i = 0; i < n; i++) {
		if (r->stopping || conn_create(r, fds[i]) < 0) {
			stats_conn_refused(r->srv, r->stopping ? STATS_REFUSE_STOPPING
							       : STATS_REFUSE_NOMEM);
			close(fds[i]);
			atomic_fetch_sub(&r->srv->nconns, 1);
		}
	}
	free(fds);
	if (sweep)
		reactor_sweep_exports(r);
	if (stop)
		reactor_begin_stop(r);
}

int
reactor_init(struct reactor *r, struct server *srv, unsigned int id)
{
	struct dio_ctx_opts opts = { 0 };
	struct event_config *ecfg;
	size_t align = 4096;
	int ret;

	r->srv = srv;
	r->id = id;
	r->wake_fd = -1;
	pthread_mutex_init(&r->lock, NULL);

	ecfg = event_config_new();
	if (!ecfg)
		return -ENOMEM;
	/* Each base is used by its own thread only: no locks inside libevent. */
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK);
	r->base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (!r->base)
		return -ENOMEM;

	if (srv->cfg) {
		opts.engine.kind = srv->cfg->engine;
		opts.engine.submit_batch = config_submit_batch(srv->cfg);
		struct export **v;
		size_t n = exports_snapshot(&srv->exports, &v);

		/* Exports added later with a larger block size are refused (control.c). */
		for (size_t i = 0; i < n; i++)
			while (align < v[i]->vol->lbs)
				align <<= 1;
		exports_snapshot_free(v, n);
	}
	opts.pool.align = align;
	r->buf_align = align;
	ret = dio_ctx_create(&opts, &r->ctx);
	if (ret < 0) {
		log_err("reactor %u: cannot create the I/O engine: %s", id, strerror(-ret));
		goto err_base;
	}
	r->dio_ev = event_new(r->base, dio_ctx_event_fd(r->ctx), EV_READ | EV_PERSIST,
			      reactor_on_dio, r);
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0) {
		ret = -errno;
		goto err_ctx;
	}
	r->wake_ev = event_new(r->base, r->wake_fd, EV_READ | EV_PERSIST, reactor_on_wake, r);
	r->stop_timer = evtimer_new(r->base, reactor_on_stop_timer, r);
	r->sweep_timer = evtimer_new(r->base, reactor_on_sweep_timer, r);
	if (!r->dio_ev || !r->wake_ev || !r->stop_timer || !r->sweep_timer) {
		ret = -ENOMEM;
		goto err_events;
	}
	event_add(r->dio_ev, NULL);
	event_add(r->wake_ev, NULL);
	log_debug("reactor %u: engine %s, pool %s", id,
		  dio_engine_name(dio_ctx_engine(r->ctx)),
		  dio_pool_pinned(dio_ctx_pool(r->ctx)) ? "pinned" : "not pinned");
	return 0;

err_events:
	if (r->sweep_timer)
		event_free(r->sweep_timer);
	if (r->stop_timer)
		event_free(r->stop_timer);
	if (r->wake_ev)
		event_free(r->wake_ev);
	close(r->wake_fd);
err_ctx:
	if (r->dio_ev)
		event_free(r->dio_ev);
	dio_ctx_destroy(r->ctx);
err_base:
	event_base_free(r->base);
	r->base = NULL;
	return ret;
}

void
reactor_fini(struct reactor *r)
{
	if (!r->base)
		return;
	/* Completions may still be owed to freed-socket connections: wait for them. */
	while (dio_ctx_inflight(r->ctx) > 0) {
		if (dio_ctx_reap(r->ctx, true) < 0)
			break;
		event_base_loop(r->base, EVLOOP_NONBLOCK);	/* the woken connections */
	}
	event_free(r->sweep_timer);
	event_free(r->stop_timer);
	event_free(r->wake_ev);
	event_free(r->dio_ev);
	close(r->wake_fd);
	dio_ctx_destroy(r->ctx);
	event_base_free(r->base);
	r->base = NULL;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->npending; i++)
		close(r->pending[i]);
	free(r->pending);
	r->pending = NULL;
	r->npending = 0;
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_destroy(&r->lock);
}

/* A loop turn ended: add the time since its first callback that did work. */
static void
reactor_busy_end(struct reactor *r)
{
	if (r->busy_since) {
		stats_add(&r->busy_ns, stats_now_ns() - r->busy_since);
		r->busy_since = 0;
	}
}

/* The loop was told to break, or has nothing left to serve while stopping
 * (connections take themselves off r->conns as they are freed). */
static bool
reactor_loop_over(struct reactor *r)
{
	return event_base_got_break(r->base) || event_base_got_exit(r->base) ||
	       (r->stopping && !r->nconns);
}

/*
 * Adaptive polling, after QEMU's AioContext polling (util/aio-posix.c):
 * having just done work, run the loop without blocking for up to `win`
 * ns before sleeping in epoll. On a loaded connection the next request or
 * completion usually arrives within tens of microseconds, and catching it
 * awake saves the wake-up (an IPI, a VM exit under virtualisation) on both
 * our side and the client's. An event that comes within the --poll-us cap
 * of the last work (window and sleep together) re-opens the full window
 * and a later one halves it (poll_window_next), so an idle reactor, one
 * whose clients pause for milliseconds, or one whose windows keep ending
 * just short of the next event, sleeps as before; the cost is CPU while a
 * connection keeps the reactor busy.
 *
 * With yield (poll-yield, the default) no window opens while the machine
 * is short of CPU (cpuload.c): then the spin would take the core from the
 * very thread, often the client, whose work it waits for. With check
 * (poll-check, the default) none opens while the last measurement said
 * polling does not pay (pollcheck.c): it answered too few more requests,
 * or took CPU from the machine's other work. The check sees both, so with
 * it on, yield asks only about steal time, not about runnable threads.
 */
static void
reactor_loop_polling(struct reactor *r, uint64_t max_ns, bool yield, bool check)
{
	uint64_t win = 0;

	for (;;) {
		uint64_t start, slept, seen, spun = 0;

		if (win) {
			uint64_t now = stats_now_ns();

			if ((yield && cpuload_crowded(now, !check)) ||
			    (check && !pollcheck_allowed(&r->srv->pollcheck, now)))
				win = 0;
		}
		__atomic_store_n(&r->polling, win != 0, __ATOMIC_RELAXED);
		if (win) {
			bool hit = false;

			start = stats_now_ns();
			do {
				seen = r->work;
				event_base_loop(r->base, EVLOOP_NONBLOCK);
				reactor_busy_end(r);
				if (reactor_loop_over(r))
					return;
				if (r->work != seen) {
					hit = true;
					break;
				}
			} while ((spun = stats_now_ns() - start) < win);
			if (hit) {
				stats_add(&r->poll_hits, 1);
				continue;	/* a fresh window from the last work */
			}
			stats_add(&r->poll_empty, 1);
			stats_add(&r->poll_empty_ns, spun);
		}
		start = stats_now_ns();
		event_base_loop(r->base, EVLOOP_ONCE);
		reactor_busy_end(r);
		if (reactor_loop_over(r))
			return;
		slept = stats_now_ns() - start;
		win = poll_window_next(win, max_ns, spun, slept);
	}
}

/* A reactor thread: init, report to reactor_start, loop, clean up. */
static void *
reactor_thread(void *arg)
{
	struct reactor *r = arg;
	struct server *srv = r->srv;
	unsigned int id = r->id;
	sem_t *started = &r->started;
	int ret;

	ret = reactor_init(r, srv, id);
	r->start_ret = ret;
	sem_post(started);
	if (ret < 0)
		return NULL;
	if (srv->cfg && srv->cfg->poll_us)
		reactor_loop_polling(r, (uint64_t)srv->cfg->poll_us * 1000, srv->cfg->poll_yield,
				     srv->cfg->poll_check);
	else
		while (!reactor_loop_over(r)) {
			event_base_loop(r->base, EVLOOP_ONCE);
			reactor_busy_end(r);
		}
	log_debug("reactor %u: stopped", r->id);
	reactor_fini(r);
	return NULL;
}

int
reactor_start(struct reactor *r, struct server *srv, unsigned int id)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->srv = srv;
	r->id = id;
	sem_init(&r->started, 0, 0);
	ret = pthread_create(&r->thread, NULL, reactor_thread, r);
	if (ret) {
		sem_destroy(&r->started);
		return -ret;
	}
	while (sem_wait(&r->started) < 0 && errno == EINTR)
		;
	if (r->start_ret < 0) {
		ret = r->start_ret;
		pthread_join(r->thread, NULL);
		return ret;
	}
	return 0;
}

/* Tell the loop to look at pending[] and stop_req. */
static void
reactor_wake(struct reactor *r)
{
	uint64_t one = 1;

	if (write(r->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("reactor %u: eventfd: %s", r->id, strerror(errno));
}

int
reactor_hand_off(struct reactor *r, int fd)
{
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	if (r->npending == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		int *p = realloc(r->pending, cap * sizeof(*p));

		if (!p) {
			ret = -ENOMEM;
			goto out_unlock;
		}
		r->pending = p;
		r->cap = cap;
	}
	r->pending[r->npending++] = fd;
out_unlock:
	pthread_mutex_unlock(&r->lock);
	if (ret < 0)
		close(fd);
	else
		reactor_wake(r);
	return ret;
}

void
reactor_stop(struct reactor *r)
{
	/*
	 * Once only: the main thread stops reactors on the first signal and
	 * again on its way out, when the thread may have closed wake_fd and
	 * destroyed the lock already.
	 */
	if (__atomic_exchange_n(&r->stop_sent, true, __ATOMIC_SEQ_CST))
		return;
	pthread_mutex_lock(&r->lock);
	r->stop_req = true;
	pthread_mutex_unlock(&r->lock);
	reactor_wake(r);
}

void
reactor_sweep(struct reactor *r)
{
	pthread_mutex_lock(&r->lock);
	r->sweep_req = true;
	pthread_mutex_unlock(&r->lock);
	reactor_wake(r);
}

void
reactor_join(struct reactor *r)
{
	pthread_join(r->thread, NULL);
	sem_destroy(&r->started);
}

int
reactor_serve_fd(struct reactor *r, int fd)
{
	atomic_fetch_add(&r->srv->nconns, 1);
	if (conn_create(r, fd) < 0) {
		atomic_fetch_sub(&r->srv->nconns, 1);
		return -ENOMEM;
	}
	return 0;
}

unsigned int
reactor_poll(struct reactor *r, bool block)
{
	event_base_loop(r->base, block ? EVLOOP_ONCE : EVLOOP_NONBLOCK);
	return r->nconns;
}
