/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's workloads by seed. See crash.h.
 */

#include <string.h>

#include "crash.h"
#include "helper.h"

/* ---- workloads by seed ---- */

/* An empty workload of n steps (seed: what made it, order: its completion order). */
static void
wl_init(struct workload *wl, uint64_t seed, int n, uint64_t order)
{
	memset(wl, 0, sizeof(*wl));
	wl->seed = seed;
	wl->order = order;
	wl->fail_step = -1;
	wl->n = n;
}

void
gen_workload(uint64_t seed, int n, bool conc, struct workload *wl)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 1;

	wl_init(wl, seed, n, conc ? seed * 2654435761u + 7 : 0);
	for (int i = 0; i < n; i++) {
		int x = (int)(rng_next(&r) % 100);
		uint32_t sec = (uint32_t)(rng_next(&r) % VSECS);
		uint32_t len = 1 + (uint32_t)(rng_next(&r) % 12);
		struct step *s = &wl->s[i];

		if (sec + len > VSECS)
			len = VSECS - sec;
		s->op = x < 55 ? OP_WRITE : x < 68 ? OP_FLUSH : x < 80 ? OP_TRIM : x < 90 ? OP_ZERO :
			x < 94 ? OP_VCREATE : x < 97 ? OP_VRESIZE : OP_VDELETE;
		s->vol = (int)(rng_next(&r) % 2);
		s->sec = sec;
		s->nsec = len;
		s->fua = rng_next(&r) % 3 == 0;
		if (s->op >= OP_VCREATE) {
			s->vol = s->sec = 0;
			s->nsec = 1 + (uint32_t)(rng_next(&r) % 4);
			s->fua = false;
		} else if (s->op == OP_FLUSH) {
			s->vol = s->sec = s->nsec = 0;
			s->fua = false;
		}
		s->par = conc && i > 0 && s->op < OP_VCREATE && rng_next(&r) % 4 != 0;
	}
}

/*
 * Step i of st ends the batch before it when it overlaps a data step of
 * that batch; true if it did. The recording engine logs writes in the
 * order they are queued, but the engine under it (psync's threads, or
 * io_uring's workers) may land two overlapping ones in the other order,
 * and a later copy-on-write copies what landed: the crash images, built
 * in log order, would then disagree with the copy (and run_twice would
 * see two runs copy different bytes). Workloads with copies therefore
 * never hold overlapping requests in one batch.
 */
bool
unpar_overlap(struct step *st, int i)
{
	struct step *s = &st[i];

	if (s->op == OP_FLUSH || s->op >= OP_VCREATE)
		return false;
	for (int j = i - 1; s->par && j >= 0; j--) {
		const struct step *o = &st[j];

		if (o->op != OP_FLUSH && o->op < OP_VCREATE && o->vol == s->vol &&
		    o->sec < s->sec + s->nsec && s->sec < o->sec + o->nsec)
			s->par = false;
		if (!o->par)
			break;	/* the first of the batch */
	}
	return !s->par;
}

/*
 * Snapshots, clones and deletes among writes over the first two chunks of
 * each volume (room for the copies in the pool's 8): a snapshot or clone
 * of any volume into v3, then v4, and deletes of any volume, shared or
 * not, in batches with requests in flight on the other volumes.
 */
void
gen_snap_workload(uint64_t seed, int n, bool conc, struct workload *wl)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 3;
	bool ex[NSLOT] = { true, true }, ro[NSLOT] = { false };
	bool busy[NSLOT] = { false };	/* data requests in the batch */
	int next = 3, parent[NSLOT] = { -1, -1, -1, -1, -1 };

	wl_init(wl, seed, n, conc ? seed * 2654435761u + 11 : 0);
	for (int i = 0; i < n; i++) {
		struct step *s = &wl->s[i];
		int x = i < 2 ? 50 : (int)(rng_next(&r) % 100), v = (int)(rng_next(&r) % NSLOT);
		uint32_t sec = (uint32_t)(rng_next(&r) % 16), len = 1 + (uint32_t)(rng_next(&r) % 10);
		bool fua = rng_next(&r) % 3 == 0;
		int o = -1, w = -1, t = -1;

		*s = (struct step){ .op = OP_FLUSH };
		s->par = conc && i > 0 && rng_next(&r) % 4 != 0;
		if (!s->par)
			memset(busy, 0, sizeof(busy));
		for (int j = 0; j < NSLOT; j++) {
			int c = (v + j) % NSLOT;

			if (o < 0 && ex[c] && !busy[c])
				o = c;	/* nothing of it in flight */
			if (w < 0 && ex[c] && !ro[c])
				w = c;
			if (t < 0 && ex[c] && ro[c] && ex[parent[c]] && !busy[parent[c]])
				t = c;	/* a snapshot to revert its origin to */
		}
		if (x < 25 && next < NSLOT && o >= 0) {
			s->op = rng_next(&r) % 2 ? OP_SNAP : OP_CLONE;
			s->vol = o;
			s->nsec = (uint32_t)next;
			ex[next] = true;
			parent[next] = o;
			ro[next++] = s->op == OP_SNAP;
		} else if (x < 33 && o >= 0) {
			s->op = OP_DEL;
			s->vol = o;
			ex[o] = false;
		} else if (x < 40 && t >= 0) {
			s->op = OP_REVERT;
			s->vol = parent[t];
			s->nsec = (uint32_t)t;
		} else if (x >= 65 && x < 77) {
			continue;	/* a FLUSH */
		} else if (w >= 0) {
			s->op = x < 88 ? OP_WRITE : x < 95 ? OP_TRIM : OP_ZERO;
			s->vol = w;
			s->sec = sec;
			s->nsec = sec + len > 16 ? 16 - sec : len;
			s->fua = fua;
			if (unpar_overlap(wl->s, i))
				memset(busy, 0, sizeof(busy));	/* a batch of its own */
			busy[w] = true;
		}
	}
}

/*
 * Resizes and reverts over mapped chunks: v2 made wide (two map leaves),
 * written in both, shrunk to one or two chunks (UNMAPs, and TP_RZ_DROP
 * for its second leaf) and grown back; v0 and v1 shrunk to two chunks and
 * grown back; a snapshot of v2 into v3, and reverts of v2 to it. Sizes
 * stay those covers() follows: at most VOLSZ, or WIDE grown from two
 * chunks or less. Writes stay within the volume's size and one half of a
 * wide one (voff).
 */
void
gen_resize_workload(uint64_t seed, int n, bool conc, struct workload *wl)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + 17;
	uint32_t size[NSLOT] = { 4, 4, WIDE, 0, 0 };	/* chunks; 0: none */

	wl_init(wl, seed, n, conc ? seed * 2654435761u + 19 : 0);
	wl->s[0] = (struct step){ .op = OP_VCREATE, .nsec = WIDE };
	for (int i = 1; i < n; i++) {
		struct step *s = &wl->s[i];
		int x = (int)(rng_next(&r) % 100), v = (int)(rng_next(&r) % 4);
		uint32_t end, sec, len, lim;

		v = v > 2 ? 2 : v;	/* v2 half the time */
		end = vsecs((uint64_t)size[v] * CHUNK);
		sec = (uint32_t)(rng_next(&r) % end);
		len = 1 + (uint32_t)(rng_next(&r) % 8);
		lim = size[v] == WIDE && sec < VSECS / 2 ? VSECS / 2 : end;

		*s = (struct step){ .op = OP_FLUSH };
		if (x < 10 && !size[3]) {
			*s = (struct step){ .op = OP_SNAP, .vol = 2, .nsec = 3 };
			size[3] = size[2];
		} else if (x < 20 && size[3]) {
			*s = (struct step){ .op = OP_REVERT, .vol = 2, .nsec = 3 };
			size[2] = size[3];
		} else if (x < 36) {
			uint32_t to = v < 2 ? (size[v] == 4 ? 2 : 4) :
				      size[2] == WIDE ? 1 + (uint32_t)(rng_next(&r) % 2) : WIDE;

			*s = (struct step){ .op = OP_VSIZE, .vol = v, .nsec = to };
			size[v] = to;
		} else if (x >= 48) {
			*s = (struct step){ .op = x < 80 ? OP_WRITE : x < 90 ? OP_TRIM : OP_ZERO,
					    .vol = v, .sec = sec,
					    .nsec = sec + len > lim ? lim - sec : len,
					    .fua = rng_next(&r) % 3 == 0 };
			s->par = conc && rng_next(&r) % 4 != 0;
			unpar_overlap(wl->s, i);
		}
	}
}
