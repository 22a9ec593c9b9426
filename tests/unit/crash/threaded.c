/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's threaded workloads. See crash.h.
 */

#include <string.h>

#include "crash.h"
#include "helper.h"

/* ---- threaded workloads ---- */

/*
 * Several threads at once, as the daemon's reactors: three writers with a
 * dio_ctx each (v0's first two chunks, v0's last two, v1), and a thread of
 * volume operations on v2..v4 (create, snapshot, clone, delete, and its
 * own requests), in a pool with the committer (commit_ms) and the reclaim
 * thread running. v2 is wide (voff): deleting it or its snapshot or clone
 * drops two map leaves, which goes to the reclaim thread, and its chunks
 * come back to the writers while they allocate (R3).
 *
 * The log's order is whatever the threads made: the oracle judges it as
 * it judges any log (what was replied before the crash point, in that
 * order). No sector is written by two threads, so the order of the
 * requests to a sector is its thread's. A threaded run is not run again
 * (run_twice): its failing states are saved as traces (write_trace),
 * which replay alone, without threads.
 */
#define TW_WRITERS 3
#define TW_STEPS 32

struct tthread {
	pthread_t t;
	int vol;		/* a writer's volume; -1: the volume operations */
	uint32_t lo, hi;	/* a writer's sectors */
	uint64_t order;		/* its engine's completion order */
	int n;
	struct step s[TW_STEPS];
	struct dio_tpool *p;
	int mine[MAXR], nmine;	/* its requests */
};

static struct tthread tw[TW_WRITERS + 1];

/*
 * A writer holds quiet[its volume] shared over each batch (submitted to
 * drained); a snapshot or clone of v0 or v1 takes it exclusive, so that
 * nothing of its origin is in flight, as run_workload drains before one
 * (the pool would wait, then refuse). Writer-preferring: two writers of
 * v0 taking turns would starve it otherwise.
 */
static pthread_rwlock_t quiet[2];

/*
 * Whether the volume operations snapshot and clone the writers' volumes
 * too (threaded_snapshots_of_written_volumes): where a clone wrote in place
 * over a chunk its origin's durable map still held was found
 * (cow_then_clone_writes_in_place, tp_unsharing).
 */
bool tw_origins;

/*
 * Whether the volume operations also revert v2 to a snapshot of it and
 * shrink it (over its second map leaf: TP_RZ_DROP) and grow it back
 * (threaded_shrinks_and_reverts): a reverted map of two leaves goes to a
 * ghost that the reclaim thread drops.
 */
bool tw_resizes;

struct tw_stats tws;

/* A request of step s on volume on, numbered and submitted now. */
static struct rreq *
t_req(struct tthread *t, const struct step *s, int on)
{
	struct rreq *r;

	pthread_mutex_lock(&evlock);
	need(rq.nr < MAXR, "too many requests");
	r = &rq.r[rq.nr];
	*r = (struct rreq){ .s = *s, .seq = (uint64_t)rq.nr + 1, .on = on, .done = -1 };
	t->mine[t->nmine++] = rq.nr++;
	r->sub = dl.ev++;
	pthread_mutex_unlock(&evlock);
	return r;
}

static void
t_submit(struct tthread *t, struct dio_ctx *ctx, struct dio_volume *vol, int v,
	 const struct step *s)
{
	static const uint8_t reqop[] = { DIO_REQ_WRITE, DIO_REQ_FLUSH, DIO_REQ_TRIM, DIO_REQ_ZERO };
	struct rreq *r = t_req(t, s, v);
	int ret;

	r->buf = test_alloc((size_t)s->nsec * SEC);
	for (uint32_t k = 0; k < s->nsec; k++)
		payload(r->buf + k * SEC, s->vol, s->sec + k, r->seq);
	r->req = (struct dio_req){ .op = reqop[s->op], .flags = s->fua ? DIO_REQ_FUA : 0,
				   .pos = voff(vol->size, s->sec), .len = (uint64_t)s->nsec * SEC,
				   .buf = s->op == OP_WRITE ? r->buf : NULL, .done = req_done,
				   .priv = r };
	if (s->op == OP_FLUSH)
		r->req.pos = r->req.len = 0;
	ret = dio_submit(ctx, vol, &r->req);
	if (ret < 0) {
		r->ret = ret;
		log_event(&dl, &r->done);
	}
}

/* Reap until none of t's requests is in flight. */
static void
t_drain(struct tthread *t, struct dio_ctx *ctx)
{
	for (;;) {
		int n = 0;

		pthread_mutex_lock(&evlock);
		for (int i = 0; i < t->nmine; i++)
			n += rq.r[t->mine[i]].done < 0;
		pthread_mutex_unlock(&evlock);
		if (!n)
			return;
		n = dio_ctx_reap(ctx, true);
		need(n >= 0, "reap: %s", strerror(-n));
	}
}

static void *
t_writer(void *arg)
{
	struct tthread *t = arg;
	struct dio_ctx *ctx = rec_ctx(t->order);
	struct dio_volume *vol;

	need(dio_tpool_volume_open(t->p, vname(t->vol), &vol) == 0, "%s", vname(t->vol));
	for (int i = 0; i < t->n; i++) {
		if (i == 0 || !t->s[i].par)
			pthread_rwlock_rdlock(&quiet[t->vol]);
		t_submit(t, ctx, vol, t->vol, &t->s[i]);
		if (i + 1 == t->n || !t->s[i + 1].par) {
			t_drain(t, ctx);
			pthread_rwlock_unlock(&quiet[t->vol]);
		}
	}
	dio_volume_put(vol);
	dio_ctx_destroy(ctx);
	return NULL;
}

static void *
t_ops(void *arg)
{
	struct tthread *t = arg;
	struct dio_ctx *ctx = rec_ctx(t->order);
	struct dio_volume *vols[NSLOT] = { NULL };

	for (int i = 0; i < t->n; i++) {
		const struct step *s = &t->s[i];
		struct rreq *r;
		int v;

		if (s->op >= OP_VCREATE) {
			bool q = is_derive(s->op) && s->vol < 2;

			/* as run_workload: its own requests complete first */
			t_drain(t, ctx);
			if (q)
				pthread_rwlock_wrlock(&quiet[s->vol]);
			r = t_req(t, s, s->vol);
			r->ret = vol_op(t->p, vols, s);
			log_event(&dl, &r->done);
			if (q)
				pthread_rwlock_unlock(&quiet[s->vol]);
			continue;
		}
		v = req_volume(t->p, vols, s->vol);
		if (v < 0) {
			r = t_req(t, s, s->vol);
			r->ret = v;
			log_event(&dl, &r->done);
			continue;
		}
		t_submit(t, ctx, vols[v], v, s);
		if (i + 1 == t->n || !t->s[i + 1].par)
			t_drain(t, ctx);
	}
	t_drain(t, ctx);
	for (int v = 0; v < NSLOT; v++)
		if (vols[v])
			dio_volume_put(vols[v]);
	dio_ctx_destroy(ctx);
	return NULL;
}

/* A writer's steps over sectors [t->lo, t->hi) of its volume. */
static void
gen_writer(uint64_t *r, struct tthread *t, int n)
{
	t->n = n;
	for (int i = 0; i < n; i++) {
		struct step *s = &t->s[i];
		int x = (int)(rng_next(r) % 100);
		uint32_t sec = t->lo + (uint32_t)(rng_next(r) % (t->hi - t->lo));
		uint32_t len = 1 + (uint32_t)(rng_next(r) % 10);

		*s = (struct step){ .op = x < 60 ? OP_WRITE : x < 72 ? OP_FLUSH :
					  x < 86 ? OP_TRIM : OP_ZERO,
				    .vol = t->vol, .sec = sec,
				    .nsec = sec + len > t->hi ? t->hi - sec : len,
				    .fua = rng_next(r) % 4 == 0,
				    .par = i > 0 && rng_next(r) % 3 != 0 };
		if (s->op == OP_FLUSH)
			s->sec = s->nsec = s->fua = 0;
		unpar_overlap(t->s, i);
	}
}

/*
 * The volume operations' steps on v2..v4: v2 created wide, snapshots and
 * clones of what exists into a free slot, deletes, and requests within
 * one half of a volume (one map leaf of a wide one).
 */
static void
gen_ops(uint64_t *r, struct tthread *t, int n)
{
	bool ex[NSLOT] = { false }, ro[NSLOT] = { false };
	uint32_t sz[NSLOT] = { 4, 4 };	/* chunks (tw_resizes) */
	int parent[NSLOT] = { -1, -1, -1, -1, -1 };

	t->n = n;
	for (int i = 0; i < n; i++) {
		struct step *s = &t->s[i];
		int x = (int)(rng_next(r) % 100), v = (int)(rng_next(r) % 3);
		uint32_t half = (uint32_t)(rng_next(r) % 2) * (VSECS / 2);
		uint32_t sec = half + (uint32_t)(rng_next(r) % (VSECS / 2));
		uint32_t len = 1 + (uint32_t)(rng_next(r) % 8);
		int o = -1, w = -1, f = -1;

		for (int j = 0; j < 3; j++) {
			int c = 2 + (v + j) % 3;

			if (o < 0 && ex[c])
				o = c;
			if (w < 0 && ex[c] && !ro[c])
				w = c;
			if (f < 0 && !ex[c] && c > 2)
				f = c;
		}
		*s = (struct step){ .op = OP_FLUSH };
		if (!ex[2] && (x < 20 || o < 0)) {
			*s = (struct step){ .op = OP_VCREATE, .nsec = WIDE };
			ex[2] = true;
			ro[2] = false;
			sz[2] = WIDE;
		} else if (x < 35 && f >= 0 && (o >= 0 || tw_origins)) {
			/* of a writer's volume too, a third of the time (tw_origins) */
			s->op = rng_next(r) % 2 ? OP_SNAP : OP_CLONE;
			s->vol = o;
			if (tw_origins && (o < 0 || rng_next(r) % 3 == 0))
				s->vol = (int)(rng_next(r) % 2);
			s->nsec = (uint32_t)f;
			ex[f] = true;
			ro[f] = s->op == OP_SNAP;
			sz[f] = sz[s->vol];
			parent[f] = s->vol;
		} else if (tw_resizes && x < 60 && ex[2] && !ro[2]) {
			/* v2 reverted to a snapshot of it, or shrunk or grown back */
			int snap = -1;

			for (int c = 3; c < NSLOT; c++)
				if (ex[c] && ro[c] && parent[c] == 2)
					snap = c;
			if (snap >= 0 && x % 2) {
				*s = (struct step){ .op = OP_REVERT, .vol = 2, .nsec = (uint32_t)snap };
				sz[2] = sz[snap];
			} else {
				s->op = OP_VSIZE;
				s->vol = 2;
				s->nsec = sz[2] == WIDE ? 1 + (uint32_t)(rng_next(r) % 2) : WIDE;
				sz[2] = s->nsec;
			}
		} else if (x < 50 && o >= 0) {
			s->op = OP_DEL;
			s->vol = o;
			ex[o] = false;
		} else if (x < 92 && w >= 0) {
			if (tw_resizes && sz[w] != WIDE) {
				/* within the volume: a sector of a small one is where it says */
				sec %= vsecs((uint64_t)sz[w] * CHUNK);
				half = sec / (VSECS / 2) * (VSECS / 2);
			}
			s->op = x < 78 ? OP_WRITE : x < 86 ? OP_TRIM : OP_ZERO;
			s->vol = w;
			s->sec = sec;
			s->nsec = sec + len > half + VSECS / 2 ? half + VSECS / 2 - sec : len;
			if (tw_resizes && sz[w] != WIDE && sec + s->nsec > vsecs((uint64_t)sz[w] * CHUNK))
				s->nsec = vsecs((uint64_t)sz[w] * CHUNK) - sec;
			s->fua = rng_next(r) % 4 == 0;
			s->par = i > 0 && rng_next(r) % 3 != 0;
			unpar_overlap(t->s, i);
		}
	}
}

/* The threads' steps of seed: writers of n steps each, volume operations of n. */
void
gen_threaded(uint64_t seed, int n)
{
	static const int wv[TW_WRITERS] = { 0, 0, 1 };
	static const uint32_t wlo[TW_WRITERS] = { 0, VSECS / 2, 0 };
	static const uint32_t whi[TW_WRITERS] = { VSECS / 2, VSECS, VSECS };
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 5;

	need(n <= TW_STEPS, "%d steps a thread", n);
	for (int i = 0; i <= TW_WRITERS; i++) {
		struct tthread *t = &tw[i];

		memset(t, 0, sizeof(*t));
		t->order = seed * 2654435761u + 13 + (uint64_t)i;
		if (i == TW_WRITERS) {
			t->vol = -1;
			gen_ops(&r, t, n);
			continue;
		}
		t->vol = wv[i];
		t->lo = wlo[i];
		t->hi = whi[i];
		gen_writer(&r, t, n);
	}
}

/*
 * Run the threads of gen_threaded on a pool opened from base with
 * commit_ms (the committer and the reclaim thread), every device op and
 * request logged in the order they came.
 */
void
run_threaded(struct workload *wl)
{
	struct dio_tpool *p = open_logged(1);
	int ret;

	for (int v = 0; v < 2; v++) {
		pthread_rwlockattr_t a;

		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&quiet[v], &a);
		pthread_rwlockattr_destroy(&a);
	}
	rec.on = true;
	for (int i = 0; i <= TW_WRITERS; i++) {
		tw[i].p = p;
		ret = pthread_create(&tw[i].t, NULL, i < TW_WRITERS ? t_writer : t_ops, &tw[i]);
		need(ret == 0, "pthread_create: %s", strerror(ret));
	}
	for (int i = 0; i <= TW_WRITERS; i++)
		pthread_join(tw[i].t, NULL);
	for (int v = 0; v < 2; v++)
		pthread_rwlock_destroy(&quiet[v]);
	/* A crash: nothing after this is logged, nor written once closing. */
	pthread_mutex_lock(&evlock);
	rec.on = false;
	pthread_mutex_unlock(&evlock);
	pthread_mutex_lock(&p->lock);
	p->readonly = true;
	tws.bg_commits += p->bg_commits;
	tws.reclaimed += p->reclaimed;
	pthread_mutex_unlock(&p->lock);
	dio_tpool_close(p);
	for (int i = 0; i < rq.nr; i++) {
		tws.reqs++;
		tws.failed += rq.r[i].ret != 0;
	}
	wl->trace = true;
	wl->n = 0;
	cur = wl;
	workloads++;
	compute_frozen();
	if (getenv("DIO_CRASH_TRACE"))
		print_log(stderr);
}
