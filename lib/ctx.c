/* SPDX-License-Identifier: MIT */
/*
 * struct dio_ctx: a thread's engine, buffer pool and queues of deferred
 * work, and the reap loop that runs every completion on that thread.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ctx.h"

int
dio_ctx_create_engine(struct dio_engine *e, const struct dio_ctx_opts *opts,
		      struct dio_ctx **out)
{
	struct dio_ctx_opts def = { 0 };
	struct dio_ctx *ctx;
	int ret;

	if (!opts)
		opts = &def;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		ret = -ENOMEM;
		goto err_engine;
	}
	ctx->engine = e;
	ctx->efd = -1;	/* asked of the engine when somebody needs to poll */
	ctx->pollfd = -1;
	ctx->defer_tail = &ctx->defer_head;
	ctx->remote_tail = &ctx->remote_head;
	pthread_mutex_init(&ctx->remote_lock, NULL);
	ret = dio_pool_create(e, &opts->pool, &ctx->pool);
	if (ret < 0)
		goto err_free;
	*out = ctx;
	return 0;

err_free:
	pthread_mutex_destroy(&ctx->remote_lock);
	free(ctx);
err_engine:
	dio_engine_destroy(e);
	return ret;
}

int
dio_ctx_create(const struct dio_ctx_opts *opts, struct dio_ctx **out)
{
	struct dio_engine *e;
	int ret;

	ret = dio_engine_create(opts ? &opts->engine : NULL, &e);
	if (ret < 0)
		return ret;
	return dio_ctx_create_engine(e, opts, out);
}

void
dio_ctx_destroy(struct dio_ctx *ctx)
{
	if (!ctx)
		return;
	for (unsigned int i = 0; i < DIO_CTX_FILES; i++)
		if (ctx->files[i].vol_id && ctx->engine->ops->unregister_file)
			ctx->engine->ops->unregister_file(ctx->engine, ctx->files[i].slot);
	for (unsigned int k = 0; k < DIO_CACHE_NR; k++) {
		void *obj;

		while ((obj = ctx->cache[k])) {
			ctx->cache[k] = *(void **)obj;
			free(obj);
		}
	}
	dio_pool_destroy(ctx->pool);
	dio_engine_destroy(ctx->engine);
	if (ctx->pollfd >= 0)
		close(ctx->pollfd);
	free(ctx->srcs);
	free(ctx->zero_buf);
	pthread_mutex_destroy(&ctx->remote_lock);
	free(ctx);
}

struct dio_engine *
dio_ctx_engine(struct dio_ctx *ctx)
{
	return ctx->engine;
}

struct dio_pool *
dio_ctx_pool(struct dio_ctx *ctx)
{
	return ctx->pool;
}

unsigned int
dio_ctx_inflight(const struct dio_ctx *ctx)
{
	return ctx->inflight;
}

/*
 * Watch fd in the ctx's epoll (level-triggered, as the engine's eventfd is);
 * a source's fd of -1 is nothing to watch.
 */
static int
dio_ctx_watch(struct dio_ctx *ctx, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (fd < 0)
		return 0;
	if (epoll_ctl(ctx->pollfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * The ctx's thread only. One fd for the host to poll: an epoll of the
 * engine's eventfd (and its poll_fd, if it has one) and of the event fds
 * of the volumes with requests in flight here (sources). Without sources it is the engine's fd plus one
 * level of epoll, which costs a wake-up nothing measurable.
 */
int
dio_ctx_event_fd(struct dio_ctx *ctx)
{
	int fd, cfd = -1;

	if (ctx->pollfd >= 0)
		return ctx->pollfd;
	/* the engine's own completion fd, asked for first: see dio_engine_ops.poll_fd */
	if (ctx->engine->ops->poll_fd)
		cfd = ctx->engine->ops->poll_fd(ctx->engine);
	fd = __atomic_load_n(&ctx->efd, __ATOMIC_SEQ_CST);
	if (fd < 0) {
		fd = ctx->engine->ops->event_fd(ctx->engine);
		if (fd < 0)
			return fd;
		__atomic_store_n(&ctx->efd, fd, __ATOMIC_SEQ_CST);
	}
	ctx->pollfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->pollfd < 0)
		return -errno;
	if (dio_ctx_watch(ctx, fd) < 0 || dio_ctx_watch(ctx, cfd) < 0)
		goto err_close;
	for (unsigned int i = 0; i < ctx->nsrcs; i++)
		if (dio_ctx_watch(ctx, ctx->srcs[i].vol->vol_ops->event_fd(ctx->srcs[i].vol)) < 0)
			goto err_close;
	return ctx->pollfd;

err_close:
	fd = -errno;
	close(ctx->pollfd);
	ctx->pollfd = -1;
	return fd;
}

int
dio_ctx_source_get(struct dio_ctx *ctx, struct dio_volume *vol)
{
	struct dio_ctx_src *s;
	unsigned int i;
	int ret;

	for (i = 0; i < ctx->nsrcs; i++)
		if (ctx->srcs[i].vol == vol) {
			ctx->srcs[i].inflight++;
			return 0;
		}
	if (ctx->nsrcs == ctx->srcs_cap) {
		unsigned int cap = ctx->srcs_cap ? 2 * ctx->srcs_cap : 4;

		s = realloc(ctx->srcs, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		ctx->srcs = s;
		ctx->srcs_cap = cap;
	}
	if (ctx->pollfd >= 0) {
		ret = dio_ctx_watch(ctx, vol->vol_ops->event_fd(vol));
		if (ret < 0)
			return ret;
	}
	ctx->srcs[ctx->nsrcs++] = (struct dio_ctx_src){ .vol = vol, .inflight = 1 };
	return 0;
}

void
dio_ctx_source_put(struct dio_ctx *ctx, struct dio_volume *vol)
{
	for (unsigned int i = 0; i < ctx->nsrcs; i++) {
		int fd;

		if (ctx->srcs[i].vol != vol || --ctx->srcs[i].inflight > 0)
			continue;
		fd = vol->vol_ops->event_fd(vol);
		if (ctx->pollfd >= 0 && fd >= 0)
			(void)epoll_ctl(ctx->pollfd, EPOLL_CTL_DEL, fd, NULL);
		ctx->srcs[i] = ctx->srcs[--ctx->nsrcs];
		return;
	}
}

/*
 * Let every source deliver its completions. They arrive as deferred work
 * (dio_vol_io_done), so the list does not change under this loop.
 */
static void
dio_ctx_poll_sources(struct dio_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->nsrcs; i++)
		ctx->srcs[i].vol->vol_ops->poll(ctx->srcs[i].vol, ctx);
}

void *
dio_ctx_zero_buf(struct dio_ctx *ctx)
{
	if (!ctx->zero_buf && posix_memalign(&ctx->zero_buf, 4096, DIO_ZERO_BUF_LEN) == 0)
		memset(ctx->zero_buf, 0, DIO_ZERO_BUF_LEN);
	return ctx->zero_buf;
}

void *
dio_ctx_cache_get(struct dio_ctx *ctx, unsigned int kind, size_t size)
{
	void *obj = ctx->cache[kind];

	if (!obj)
		return malloc(size);
	ctx->cache[kind] = *(void **)obj;
	return obj;
}

void
dio_ctx_cache_put(struct dio_ctx *ctx, unsigned int kind, void *obj)
{
	*(void **)obj = ctx->cache[kind];
	ctx->cache[kind] = obj;
}

int
dio_ctx_file(struct dio_ctx *ctx, uint64_t vol_id, int fd)
{
	const unsigned int n = DIO_CTX_FILES;
	struct dio_engine *e = ctx->engine;
	unsigned int i;
	int slot;

	if (!e->ops->register_file)
		return 0;
	for (i = 0; i < n; i++)
		if (ctx->files[i].vol_id == vol_id)
			return ctx->files[i].slot + 1;
	for (i = 0; i < n && ctx->files[i].vol_id; i++)
		;
	if (i == n) {
		/* All taken: recycle one; its volume's I/O goes by fd until it returns. */
		i = ctx->files_next++ % n;
		if (e->ops->unregister_file)
			e->ops->unregister_file(e, ctx->files[i].slot);
		ctx->files[i].vol_id = 0;
	}
	slot = e->ops->register_file(e, fd);
	if (slot < 0)
		return 0;	/* unregistered fds still work, only a little slower */
	ctx->files[i].vol_id = vol_id;
	ctx->files[i].slot = slot;
	return slot + 1;
}

static void
dio_ctx_wake(struct dio_ctx *ctx)
{
	int fd = __atomic_load_n(&ctx->efd, __ATOMIC_SEQ_CST);

	/* Without a poller nobody needs waking: see dio_ctx_reap's wait. */
	if (fd >= 0)
		(void)eventfd_write(fd, 1);	/* fails only on overflow: still readable */
}

void
dio_ctx_defer(struct dio_ctx *ctx, struct dio_work *w)
{
	bool was_empty = !ctx->defer_head;

	w->next = NULL;
	*ctx->defer_tail = w;
	ctx->defer_tail = &w->next;
	/* A caller that polls the eventfd must learn there is work to reap. */
	if (was_empty)
		dio_ctx_wake(ctx);
}

void
dio_ctx_post(struct dio_ctx *ctx, struct dio_work *w)
{
	w->next = NULL;
	pthread_mutex_lock(&ctx->remote_lock);
	*ctx->remote_tail = w;
	ctx->remote_tail = &w->next;
	pthread_mutex_unlock(&ctx->remote_lock);
	dio_ctx_wake(ctx);
}

/* Run deferred work, local then remote. Returns how many items ran. */
static unsigned int
dio_ctx_run_deferred(struct dio_ctx *ctx)
{
	struct dio_work *list, *w;
	unsigned int n = 0;

	while ((list = ctx->defer_head)) {
		ctx->defer_head = NULL;
		ctx->defer_tail = &ctx->defer_head;
		while ((w = list)) {
			list = w->next;
			w->fn(w);
			n++;
		}
	}
	if (!__atomic_load_n(&ctx->remote_head, __ATOMIC_SEQ_CST))
		return n;
	pthread_mutex_lock(&ctx->remote_lock);
	list = ctx->remote_head;
	ctx->remote_head = NULL;
	ctx->remote_tail = &ctx->remote_head;
	pthread_mutex_unlock(&ctx->remote_lock);
	while ((w = list)) {
		list = w->next;
		w->fn(w);
		n++;
	}
	return n;
}

int
dio_ctx_kick(struct dio_ctx *ctx)
{
	int ret = dio_engine_submit(ctx->engine);

	return ret < 0 ? ret : 0;
}

int
dio_ctx_reap(struct dio_ctx *ctx, bool wait)
{
	uint64_t start = ctx->completed;
	struct pollfd pfd;
	int ret;

	for (;;) {
		dio_ctx_run_deferred(ctx);
		dio_ctx_kick(ctx);
		ret = dio_engine_reap(ctx->engine, false);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN)
			return ret;
		dio_ctx_poll_sources(ctx);
		dio_ctx_run_deferred(ctx);
		if (ctx->completed != start || !wait || ctx->inflight == 0)
			break;
		if (ctx->engine->inflight > 0) {
			ret = dio_engine_reap(ctx->engine, true);
			if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -ETIME)
				return ret;
			continue;
		}
		/* Nothing on the device: we wait for another thread's hand-over
		 * or a source's completion. A new eventfd was not there for earlier posts: look again first. */
		if (ctx->pollfd < 0) {
			if (dio_ctx_event_fd(ctx) < 0)
				return -EIO;
			continue;
		}
		pfd.fd = ctx->pollfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, -1) > 0) {
			eventfd_t v;

			(void)eventfd_read(ctx->efd, &v);
		}
	}
	return (int)(ctx->completed - start);
}
