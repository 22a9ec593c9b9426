/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's workloads run: payloads, the base pool image, a
 * workload run on a pool with every device op logged. See crash.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "crash.h"
#include "helper.h"

/* ---- client requests ---- */

const char opchar[OP_NR] = { 'W', 'F', 'T', 'Z', 'C', 'D', 'R', 'S', 'K', 'X', 'V', 'H' };

bool
is_derive(int op)
{
	return op == OP_SNAP || op == OP_CLONE;
}

/* Operations whose nsec is a volume. */
bool
names_two(int op)
{
	return is_derive(op) || op == OP_REVERT;
}

struct reqlog rq;

/*
 * Where sector sec of a volume of sz bytes is: in a wide volume (threaded
 * workloads) the second half is in the second map leaf, so that deleting
 * it goes to the reclaim thread (more than one leaf).
 */
uint64_t
voff(uint64_t sz, uint32_t sec)
{
	if (sz <= VOLSZ || sec < VSECS / 2)
		return (uint64_t)sec * SEC;
	return (uint64_t)TP_LEAF * CHUNK + (uint64_t)(sec - VSECS / 2) * SEC;
}

/* The sectors the oracle follows in a volume of sz bytes. */
uint32_t
vsecs(uint64_t sz)
{
	return sz > VOLSZ ? VSECS : (uint32_t)(sz / SEC);
}

/* ---- payloads: (volume, sector, sequence, crc) in every sector ---- */

void
payload(uint8_t *s, int vol, uint32_t sec, uint64_t seq)
{
	uint32_t crc;

	memset(s, (int)(seq * 31 + sec), SEC);
	memcpy(s, "PAYL", 4);
	memcpy(s + 4, &vol, 4);
	memcpy(s + 8, &sec, 4);
	memcpy(s + 16, &seq, 8);
	crc = tp_crc32c(0, s, SEC - 4);
	memcpy(s + SEC - 4, &crc, 4);
}

/* ---- the pool images ---- */

char *path;
uint8_t *base, *img, *rimg, *rbase;
uint64_t img_size;
uint64_t data_start;	/* the pool's first data chunk: metadata below */
uint64_t states, workloads;
char errbuf[512];
char failmsg[600];

bool
failf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(failmsg, sizeof(failmsg), fmt, ap);
	va_end(ap);
	return false;
}

void
file_put(const uint8_t *b)
{
	int fd = open(path, O_WRONLY);

	need(fd >= 0 && pwrite(fd, b, img_size, 0) == (ssize_t)img_size, "%s: %s", path,
	     strerror(errno));
	close(fd);
}

static void
file_get(uint8_t *b)
{
	int fd = open(path, O_RDONLY);

	need(fd >= 0 && pread(fd, b, img_size, 0) == (ssize_t)img_size, "%s: %s", path,
	     strerror(errno));
	close(fd);
}

/* Garbage over [a, b) of buf: what a used device holds in its free space. */
void
garbage(uint8_t *buf, uint64_t a, uint64_t b)
{
	for (uint64_t o = a; o < b; o += SEC) {
		memset(buf + o, 0xa5 ^ (int)(o / SEC), SEC);
		memcpy(buf + o, "GARBAGE", 7);
	}
}

/* A fresh tiny pool with volumes v0 and v1 on garbage; its bytes become base. */
void
make_base(void)
{
	struct dio_tpool_opts o = { .no_direct = true, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_create_opts co = { .chunk_size = CHUNK, .journal_blocks = 8,
					    .max_volumes = 8 };
	struct tp_super sb;
	struct dio_tpool *p;
	uint64_t size = 16 * CHUNK;
	int fd, ret;

	/* The smallest pool with NCHUNKS data chunks. */
	while (tp_geometry(&sb, size, CHUNK, 8, 8, 512) < 0 || sb.nr_chunks < NCHUNKS)
		size += CHUNK;
	co.size = size;
	img_size = size;
	need(asprintf(&path, "%s/crash-XXXXXX", test_dir()) > 0, "asprintf");
	fd = mkstemp(path);
	need(fd >= 0, "mkstemp %s: %s", path, strerror(errno));
	base = malloc(size);
	img = malloc(size);
	rimg = malloc(size);
	rbase = malloc(size);
	need(base && img && rimg && rbase, "out of memory");
	garbage(base, 0, size);
	need(pwrite(fd, base, size, 0) == (ssize_t)size, "write %s", path);
	close(fd);
	ret = dio_tpool_create(path, &co, &o);
	need(ret == 0, "create: %s", errbuf);
	ret = dio_tpool_open(path, &o, &p);
	need(ret == 0, "open: %s", errbuf);
	need(dio_tpool_volume_create(p, "v0", VOLSZ) == 0, "volume v0");
	need(dio_tpool_volume_create(p, "v1", VOLSZ) == 0, "volume v1");
	data_start = p->sb.data_start;
	dio_tpool_close(p);
	file_get(base);
}

void
free_base(void)
{
	dlog_reset(&dl);
	dlog_reset(&rl);
	unlink(path);
	free(path);
	free(base);
	free(img);
	free(rimg);
	free(rbase);
	path = NULL;
}

/* ---- workloads ---- */
const struct workload *cur;	/* the one whose log is in dl and rq */

void
req_done(struct dio_req *req, int ret)
{
	struct rreq *r = req->priv;

	r->ret = ret;
	log_event(&dl, &r->done);
}

const char *
vname(int v)
{
	static const char *n[NSLOT] = { "v0", "v1", "v2", "v3", "v4" };

	return n[v];
}

/* Requests still in flight on volume v (-1: on any), FLUSHes too when flushes. */
static int
in_flight(int v, bool flushes)
{
	int n = 0;

	for (int r = 0; r < rq.nr; r++)
		n += rq.r[r].done < 0 && (v < 0 || (rq.r[r].on == v &&
						    (flushes || rq.r[r].s.op != OP_FLUSH)));
	return n;
}

/*
 * Reap until no request is in flight on volume v (-1: none at all): its
 * writes for a snapshot, every request before it is closed (flushes).
 */
void
drain(struct dio_ctx *ctx, int v, bool flushes)
{
	while (in_flight(v, flushes)) {
		int n = dio_ctx_reap(ctx, true);

		need(n >= 0, "reap: %s", strerror(-n));
	}
}

/* A volume operation of step s, synchronous: its return value. */
int
vol_op(struct dio_tpool *p, struct dio_volume **vols, const struct step *s)
{
	uint64_t sz = (uint64_t)s->nsec * CHUNK;

	switch (s->op) {
	case OP_VCREATE:
		return dio_tpool_volume_create(p, "v2", sz);
	case OP_VDELETE:
		return dio_tpool_volume_delete(p, "v2");
	case OP_VRESIZE:
		return dio_tpool_volume_resize(p, "v2", sz);
	case OP_SNAP:
	case OP_CLONE:
		need(s->nsec < NSLOT, "no volume %u", s->nsec);
		return s->op == OP_SNAP ? dio_tpool_volume_snapshot(p, vname(s->vol), vname((int)s->nsec))
					: dio_tpool_volume_clone(p, vname(s->vol), vname((int)s->nsec));
	default:	/* OP_DEL, OP_REVERT, OP_VSIZE: a volume open here is closed first (-EBUSY) */
		if (vols[s->vol])
			dio_volume_put(vols[s->vol]);
		vols[s->vol] = NULL;
		if (s->op == OP_REVERT)
			return dio_tpool_volume_revert(p, vname(s->vol), vname((int)s->nsec));
		if (s->op == OP_VSIZE)
			return dio_tpool_volume_resize(p, vname(s->vol), sz);
		return dio_tpool_volume_delete(p, vname(s->vol));
	}
}

/*
 * The open volume a request goes to: v, opened now if need be; for a
 * FLUSH (v -1) any volume, v0 unless it was deleted. Its index or -errno.
 */
int
req_volume(struct dio_tpool *p, struct dio_volume **vols, int v)
{
	for (int i = 0; v < 0 && i < NSLOT; i++)
		if (vols[i])
			return i;
	for (int i = v < 0 ? 0 : v; i < (v < 0 ? NSLOT : v + 1); i++)
		if (vols[i] || dio_tpool_volume_open(p, vname(i), &vols[i]) == 0)
			return i;
	return -ENOENT;
}

/* The workload's device log and requests, in event order, as comments. */
void
print_log(FILE *f)
{
	fprintf(f, "# device log (event: write off+len fua submit..done / flush)\n");
	for (int e = 0; e < dl.ev; e++) {
		for (int i = 0; i < dl.nw; i++)
			if (dl.w[i].sub == e)
				fprintf(f, "# %d: write %d %llu+%llu%s done %d crc %08x\n", e, i,
					(unsigned long long)dl.w[i].off,
					(unsigned long long)dl.w[i].len, dl.w[i].fua ? " fua" : "",
					dl.w[i].done,
					tp_crc32c(0, dl.w[i].data, (size_t)dl.w[i].len));
		for (int i = 0; i < dl.nf; i++)
			if (dl.f[i].sub == e)
				fprintf(f, "# %d: flush done %d\n", e, dl.f[i].done);
		for (int i = 0; i < rq.nr; i++)
			if (rq.r[i].sub == e)
				fprintf(f, "# %d: request %d %c v%d %u+%u%s done %d ret %d\n", e, i,
					opchar[rq.r[i].s.op], rq.r[i].s.vol, rq.r[i].s.sec,
					rq.r[i].s.nsec, rq.r[i].s.fua ? " fua" : "", rq.r[i].done,
					rq.r[i].ret);
	}
}

/* Run the workload on a pool opened from base, every device op logged. */
/* The pool opened afresh from base, its device ops logged (logs and requests emptied). */
struct dio_tpool *
open_logged(unsigned int commit_ms)
{
	struct dio_tpool_opts o = { .no_direct = true, .io = &rec_io_hooks,
				    .commit_ms = commit_ms };
	struct dio_tpool *p;
	int ret;

	file_put(base);
	dlog_reset(&dl);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	memset(&rq, 0, sizeof(rq));
	memset(&rec, 0, sizeof(rec));
	ret = dio_tpool_open(path, &o, &p);
	need(ret == 0, "open: %s", strerror(-ret));
	return p;
}

/* Data step j of wl submitted (a FLUSH, WRITE, TRIM or ZERO), logged in rq. */
static void
submit_data(struct dio_tpool *p, struct dio_volume **vols, struct dio_ctx *ctx,
	    const struct workload *wl, int j)
{
	static const uint8_t reqop[] = { DIO_REQ_WRITE, DIO_REQ_FLUSH, DIO_REQ_TRIM, DIO_REQ_ZERO };
	const struct step *s = &wl->s[j];
	struct rreq *r = &rq.r[rq.nr++];
	int ret;

	*r = (struct rreq){ .s = *s, .seq = (uint64_t)j + 1 };
	r->sub = dl.ev++;
	r->buf = test_alloc((size_t)s->nsec * SEC);
	for (uint32_t k = 0; k < s->nsec; k++)
		payload(r->buf + k * SEC, s->vol, s->sec + k, r->seq);
	r->req = (struct dio_req){ .op = reqop[s->op],
				   .flags = s->fua ? DIO_REQ_FUA : 0,
				   .pos = (uint64_t)s->sec * SEC,
				   .len = (uint64_t)s->nsec * SEC,
				   .buf = s->op == OP_WRITE ? r->buf : NULL,
				   .done = req_done, .priv = r };
	if (s->op == OP_FLUSH)
		r->req.pos = r->req.len = 0;
	r->done = -1;
	ret = req_volume(p, vols, s->op == OP_FLUSH ? -1 : s->vol);
	if (ret >= 0) {
		r->on = ret;
		if (s->op != OP_FLUSH)	/* a wide volume's second half: voff */
			r->req.pos = voff(vols[ret]->size, s->sec);
		ret = dio_submit(ctx, vols[ret], &r->req);
	}
	if (ret < 0) {
		r->ret = ret;
		r->done = dl.ev++;
	}
}

/*
 * A delete, revert or resize beside writers (X, V or H with step.fua): it
 * runs in a thread of its own, started during the next device flush under
 * way without the pool lock (a FUA write's commit). It drops its maps and waits for that
 * commit; then the data steps after it in its batch are submitted, and
 * map with its record not yet durable, as writes do beside a delete in
 * the server. Armed by run_workload, run by rec_fsync (late.under).
 */
static struct {
	bool started;
	int finished;		/* the thread's vol_op returned (atomic) */
	pthread_t t;
	struct dio_tpool *p;
	struct dio_volume **vols;
	struct dio_ctx *ctx;
	const struct workload *wl;
	int r, from, to;
} under;

static void *
under_op(void *arg)
{
	struct rreq *r = &rq.r[under.r];
	int ret = vol_op(under.p, under.vols, &r->s);

	(void)arg;
	r->ret = ret;
	log_event(&dl, &r->done);
	__atomic_store_n(&under.finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
submit_under(void)
{
	uint64_t serial;

	pthread_mutex_lock(&under.p->lock);
	serial = under.p->serial;
	pthread_mutex_unlock(&under.p->lock);
	log_event(&dl, &rq.r[under.r].sub);
	need(pthread_create(&under.t, NULL, under_op, NULL) == 0, "volume op thread");
	under.started = true;
	/* its record appended: it holds the lock from before that to its wait for the commit */
	for (;;) {
		bool appended;

		pthread_mutex_lock(&under.p->lock);
		appended = under.p->serial > serial;
		pthread_mutex_unlock(&under.p->lock);
		if (appended || __atomic_load_n(&under.finished, __ATOMIC_ACQUIRE))
			break;
		usleep(100);
	}
	for (int j = under.from; j < under.to; j++)
		submit_data(under.p, under.vols, under.ctx, under.wl, j);
}

void
run_workload(const struct workload *wl)
{
	struct dio_volume *vols[NSLOT] = { NULL };
	struct dio_tpool *p = open_logged(0);
	struct dio_ctx *ctx = rec_ctx(wl->order);

	need(dio_tpool_volume_open(p, "v0", &vols[0]) == 0, "v0");
	need(dio_tpool_volume_open(p, "v1", &vols[1]) == 0, "v1");
	rec.on = true;
	for (int i = 0; i < wl->n;) {
		int j = i;

		/*
		 * A batch: step i and the steps after it marked par, in flight
		 * together; C, D and R end it, S, K and X run within it.
		 */
		do {
			const struct step *s = &wl->s[j];

			if (j == wl->fail_step && wl->fail_from) {
				rec.fail_from = wl->fail_from;
				rec.nops = 0;
			}
			if (s->op >= OP_VCREATE) {
				struct rreq *r = &rq.r[rq.nr++];

				*r = (struct rreq){ .s = *s, .seq = (uint64_t)j + 1 };
				/*
				 * Writes in flight on the volume would make a snapshot
				 * wait (2 s), then refuse, and a delete refuse: they
				 * complete first, before the operation is submitted.
				 */
				if (is_derive(s->op) && s->fua)
					late = (typeof(late)){ true, ctx, s->vol, rq.nr - 1, NULL };
				else if (s->op >= OP_SNAP)
					drain(ctx, s->vol, s->op == OP_DEL || s->op == OP_REVERT ||
						       s->op == OP_VSIZE);
				if ((s->op == OP_DEL || s->op == OP_REVERT || s->op == OP_VSIZE) &&
				    s->fua) {
					/* it and the data steps after it in its batch: during a commit */
					under = (typeof(under)){ .p = p, .vols = vols, .ctx = ctx, .wl = wl,
								 .r = rq.nr - 1, .from = j + 1, .to = j + 1 };
					while (under.to < wl->n && wl->s[under.to].par &&
					       wl->s[under.to].op < OP_VCREATE)
						under.to++;
					late = (typeof(late)){ true, ctx, s->vol, rq.nr - 1, submit_under };
					j = under.to;
					continue;
				}
				r->sub = dl.ev++;
				r->ret = vol_op(p, vols, s);
				late.on = false;
				r->done = dl.ev++;
				j++;
				if (s->op < OP_SNAP)
					break;
				continue;
			}
			submit_data(p, vols, ctx, wl, j);
			j++;
		} while (j < wl->n && wl->s[j].par && (wl->s[j].op < OP_VCREATE || wl->s[j].op >= OP_SNAP));
		drain(ctx, -1, true);
		if (late.on && late.under) {
			late.on = false;	/* no flush came: the operation, then its steps */
			submit_under();
			drain(ctx, -1, true);
		}
		if (under.started) {
			pthread_join(under.t, NULL);
			under.started = false;
		}
		i = j;
	}
	rec.on = false;
	rec.fail_from = 0;
	p->readonly = true;	/* a crash: nothing more is written */
	for (int v = 0; v < NSLOT; v++)
		if (vols[v])
			dio_volume_put(vols[v]);
	dio_ctx_destroy(ctx);
	dio_tpool_close(p);
	cur = wl;
	workloads++;
	compute_frozen();
	if (getenv("DIO_CRASH_TRACE"))
		print_log(stderr);
}

/*
 * The simulator is deterministic: a workload run again logs the same
 * device ops, with the same data, completing in the same order, and its
 * requests end the same. What a second run must match (metadata bytes
 * aside: they hold the random uuids of new volumes).
 */
struct runsig {
	int ev, nw, nf, nr;
	struct {
		uint64_t off, len;
		int sub, done;
		bool fua;
		uint32_t crc;	/* data_hash */
	} w[MAXW];
	struct frec f[MAXW];
	struct {
		int sub, done, ret;
	} r[MAXR];
};

/*
 * What a write carried, for run_twice. Not a CRC: a payload sector ends
 * with its own crc32c, and a CRC is affine in its input, so the CRC of a
 * run of such sectors comes out the same whatever their payloads say.
 * FNV-1a, folded to 32 bits.
 */
static uint32_t
data_hash(const uint8_t *d, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static void
take_sig(struct runsig *g)
{
	g->ev = dl.ev;
	g->nw = dl.nw;
	g->nf = dl.nf;
	g->nr = rq.nr;
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];

		g->w[i].off = w->off;
		g->w[i].len = w->len;
		g->w[i].sub = w->sub;
		g->w[i].done = w->done;
		g->w[i].fua = w->fua;
		g->w[i].crc = w->off >= data_start ? data_hash(w->data, (size_t)w->len) : 0;
	}
	memcpy(g->f, dl.f, (size_t)dl.nf * sizeof(*g->f));
	for (int i = 0; i < rq.nr; i++) {
		g->r[i].sub = rq.r[i].sub;
		g->r[i].done = rq.r[i].done;
		g->r[i].ret = rq.r[i].ret;
	}
}

/* Where run a and run b of one workload differ, into failmsg; false if they do not. */
static bool
sig_differs(const struct runsig *a, const struct runsig *b)
{
	if (a->nw != b->nw || a->nf != b->nf || a->nr != b->nr || a->ev != b->ev)
		return !failf("%d writes, %d flushes, %d requests, %d events; then %d, %d, %d, %d",
			      a->nw, a->nf, a->nr, a->ev, b->nw, b->nf, b->nr, b->ev);
	for (int i = 0; i < a->nw; i++)
		if (a->w[i].off != b->w[i].off || a->w[i].len != b->w[i].len ||
		    a->w[i].sub != b->w[i].sub || a->w[i].done != b->w[i].done ||
		    a->w[i].fua != b->w[i].fua || a->w[i].crc != b->w[i].crc)
			return !failf("write %d: %llu+%llu%s events %d..%d crc %08x; then %llu+%llu%s "
				      "events %d..%d crc %08x", i, (unsigned long long)a->w[i].off,
				      (unsigned long long)a->w[i].len, a->w[i].fua ? " fua" : "",
				      a->w[i].sub, a->w[i].done, a->w[i].crc,
				      (unsigned long long)b->w[i].off,
				      (unsigned long long)b->w[i].len, b->w[i].fua ? " fua" : "",
				      b->w[i].sub, b->w[i].done, b->w[i].crc);
	for (int i = 0; i < a->nf; i++)
		if (a->f[i].sub != b->f[i].sub || a->f[i].done != b->f[i].done)
			return !failf("flush %d: events %d..%d; then %d..%d", i, a->f[i].sub,
				      a->f[i].done, b->f[i].sub, b->f[i].done);
	for (int i = 0; i < a->nr; i++)
		if (a->r[i].sub != b->r[i].sub || a->r[i].done != b->r[i].done ||
		    a->r[i].ret != b->r[i].ret)
			return !failf("request %d: events %d..%d ret %d; then %d..%d ret %d", i,
				      a->r[i].sub, a->r[i].done, a->r[i].ret, b->r[i].sub,
				      b->r[i].done, b->r[i].ret);
	return false;
}

/*
 * Run wl twice and compare: a workload whose log changes from run to run
 * makes findings that come and go (a flaky test) and cases that do not
 * replay. True when both runs logged the same; dl and rq hold the second.
 */
bool
run_twice(const struct workload *wl, const char *name)
{
	static struct runsig a, b;

	run_workload(wl);
	take_sig(&a);
	run_workload(wl);
	workloads--;	/* one workload */
	take_sig(&b);
	if (!sig_differs(&a, &b))
		return true;
	fprintf(stderr, "crash simulator: NOT DETERMINISTIC: %s (seed %llu, order %llu) run "
		"twice differs: %s\n", name, (unsigned long long)wl->seed,
		(unsigned long long)wl->order, failmsg);
	print_log(stderr);
	return false;
}
