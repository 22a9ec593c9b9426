/* SPDX-License-Identifier: MIT */
/*
 * Volumes that do their own I/O (vol_ops->submit): requests reach the
 * volume whole, completions signalled on its event fd come back through
 * the ctx's event fd and reap, done() runs once on the submitting ctx,
 * and a completion collected by another ctx reaches its owner.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dio/dio.h"

/* A volume in memory that finishes each request when told to (fake_fire). */
struct fake {
	struct dio_volume vol;
	int efd;
	uint8_t data[65536];
	struct dio_vol_io *pending[16];
	unsigned int npending, nready, flushes;
};

static int
fake_submit(struct dio_volume *vol, struct dio_vol_io *vio)
{
	struct fake *f = vol->priv;

	f->pending[f->npending++] = vio;
	return 0;
}

static int
fake_event_fd(struct dio_volume *vol)
{
	return ((struct fake *)vol->priv)->efd;
}

static void
fake_poll(struct dio_volume *vol, struct dio_ctx *ctx)
{
	struct fake *f = vol->priv;
	eventfd_t v;

	if (eventfd_read(f->efd, &v) < 0)
		return;
	for (unsigned int i = 0; i < f->nready; i++) {
		struct dio_vol_io *vio = f->pending[i];
		const struct dio_req *req = vio->req;

		if (req->op == DIO_REQ_WRITE)
			memcpy(f->data + req->pos, req->buf, req->len);
		else if (req->op == DIO_REQ_READ)
			memcpy(req->buf, f->data + req->pos, req->len);
		else if (req->op == DIO_REQ_FLUSH)
			f->flushes++;
		dio_vol_io_done(ctx, vio, 0);
	}
	memmove(f->pending, f->pending + f->nready, (f->npending - f->nready) * sizeof(void *));
	f->npending -= f->nready;
	f->nready = 0;
}

static int
fake_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	       uint64_t len, struct dio_io *io)
{
	return -EOPNOTSUPP;
}

static const struct dio_vol_ops fake_ops = {
	.prep_meta = fake_prep_meta,
	.submit = fake_submit,
	.event_fd = fake_event_fd,
	.poll = fake_poll,
};

static void
fake_fire(struct fake *f)
{
	f->nready = f->npending;
	eventfd_write(f->efd, 1);
}

static struct fake *
fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));

	cr_assert(f);
	f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->vol.vol_ops = &fake_ops;
	f->vol.fd = -1;
	f->vol.size = sizeof(f->data);
	f->vol.lbs = 1;
	f->vol.pbs = 4096;
	f->vol.priv = f;
	cr_assert_eq(dio_volume_init(&f->vol), 0);
	return f;
}

static unsigned int done_calls;
static int done_ret;

static void
count_done(struct dio_req *req, int ret)
{
	done_calls++;
	done_ret = ret;
}

Test(vol_submit, completions_reach_the_ctx_through_its_event_fd, .timeout = 30)
{
	struct fake *f = fake_new();
	struct dio_ctx *ctx;
	uint8_t in[100], out[100];
	struct dio_req w = { .op = DIO_REQ_WRITE, .pos = 7, .len = sizeof(in), .buf = in,
			     .done = count_done };
	struct dio_req r = { .op = DIO_REQ_READ, .pos = 7, .len = sizeof(out), .buf = out,
			     .done = count_done };
	struct pollfd pfd;

	cr_assert_eq(dio_ctx_create(NULL, &ctx), 0);
	pfd.fd = dio_ctx_event_fd(ctx);
	pfd.events = POLLIN;
	cr_assert(pfd.fd >= 0);
	memset(in, 0x5a, sizeof(in));
	done_calls = 0;
	cr_assert_eq(dio_submit(ctx, &f->vol, &w), 0);
	cr_assert_eq(f->npending, 1, "the volume got the write whole");
	cr_assert_eq(dio_ctx_reap(ctx, false), 0);
	cr_assert_eq(poll(&pfd, 1, 0), 0, "nothing to reap yet");
	fake_fire(f);
	cr_assert_eq(poll(&pfd, 1, 1000), 1, "the volume's event wakes the ctx's fd");
	cr_assert_eq(dio_ctx_reap(ctx, false), 1);
	cr_assert_eq(done_calls, 1);
	cr_assert_eq(done_ret, 0);
	cr_assert_eq(dio_ctx_inflight(ctx), 0);

	/* past the end is refused by libdio, before the volume sees it */
	r.pos = sizeof(f->data);
	cr_assert_eq(dio_submit(ctx, &f->vol, &r), -EINVAL);
	r.pos = 7;
	cr_assert_eq(dio_submit(ctx, &f->vol, &r), 0);
	fake_fire(f);
	cr_assert_eq(dio_ctx_reap(ctx, true), 1);
	cr_assert_eq(memcmp(in, out, sizeof(in)), 0);
	dio_ctx_destroy(ctx);
	dio_volume_put(&f->vol);
	close(f->efd);
	free(f);
}

Test(vol_submit, a_completion_collected_by_another_ctx_reaches_its_owner, .timeout = 30)
{
	struct fake *f = fake_new();
	struct dio_ctx *a, *b;
	struct dio_req fl = { .op = DIO_REQ_FLUSH, .done = count_done };
	struct dio_req fl2 = { .op = DIO_REQ_FLUSH };

	cr_assert_eq(dio_ctx_create(NULL, &a), 0);
	cr_assert_eq(dio_ctx_create(NULL, &b), 0);
	cr_assert(dio_ctx_event_fd(a) >= 0);
	done_calls = 0;
	cr_assert_eq(dio_submit(a, &f->vol, &fl), 0);
	cr_assert_eq(dio_submit(b, &f->vol, &fl2), 0);
	fake_fire(f);
	/* b polls the shared fd first and collects both */
	cr_assert_eq(dio_ctx_reap(b, false), 1);
	cr_assert_eq(done_calls, 0, "a's done() never runs on b");
	cr_assert_eq(dio_ctx_reap(a, true), 1);
	cr_assert_eq(done_calls, 1);
	cr_assert_eq(f->flushes, 2);
	dio_ctx_destroy(a);
	dio_ctx_destroy(b);
	dio_volume_put(&f->vol);
	close(f->efd);
	free(f);
}
