/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's oracle: a crash image recovered, checked, read and
 * judged against the workload's requests. See crash.h.
 */

#include <errno.h>
#include <string.h>

#include "crash.h"
#include "helper.h"

/* ---- the oracle ---- */

/*
 * Snapshots and clones. The rules the oracle holds them to:
 * - A replied snapshot or clone of volume O is a FLUSH for O: every
 *   request to O that completed before it was submitted is durable (it
 *   holds them, durably). The harness completes every request in flight
 *   on O before it submits the snapshot (a snapshot waits for them).
 * - Its contents are frozen then: O's contents at that moment, which is
 *   what O reads in the crash image just after the reply with every
 *   volatile write present (nothing of O is in flight: that image holds
 *   O's whole history until then). That image is one of the states
 *   enumerated, where O itself is checked by the ordinary rules, so the
 *   frozen contents are a state O may legally have had. frozen[i] holds
 *   them for the snapshot or clone request i.
 * - A volume made by snapshot or clone request i reads, sector by sector,
 *   its frozen contents or what its own requests after i wrote, by the
 *   ordinary rules with the frozen contents in place of the zeros of a
 *   new volume; a trim may leave zeros or what was before it.
 * - A sector of O that no request touched since a replied snapshot or
 *   clone of O reads exactly that one's frozen contents.
 * - A revert of O to its snapshot S makes O anew with S's frozen contents
 *   (a snapshot never changes): from it on, O's sectors are held to them
 *   as a new clone's. All or nothing: O reads as of one of its
 *   beginnings (its making, or the last revert replied, and each revert
 *   after that one), the same for every sector.
 * - Every volume operation is all-or-nothing and durable once replied:
 *   the volumes present and their sizes are what some prefix of the
 *   volume operations makes, from the last one replied (they commit in
 *   order) to the last one submitted. A refused operation (-ENOENT,
 *   -EEXIST, -ENOSPC, -EBUSY, -EINVAL, -EPERM, -EROFS: before any I/O)
 *   makes nothing.
 * - After every recovery the pool's check finds no problem (leaks are
 *   allowed: R4, a crash may leak), and the references counted here from
 *   the volumes' leaves are never more than the space map's (R4).
 */
#define FROZEN_UNKNOWN INT64_MIN
static int64_t frozen[MAXR][VSECS];

static bool
refused(int ret)
{
	return ret == -ENOENT || ret == -EEXIST || ret == -ENOSPC || ret == -EBUSY ||
	       ret == -EINVAL || ret == -EPERM || ret == -EROFS;
}

/* Whether request r makes volume v (v2 by create, v3, v4 by snapshot or clone). */
static bool
makes(const struct rreq *r, int v)
{
	if (refused(r->ret))
		return false;
	return (r->s.op == OP_VCREATE && v == 2) || (is_derive(r->s.op) && (int)r->s.nsec == v);
}

/* Whether request r is required durable at crash point k (R2). */
static bool
required(const struct rreq *r, int k)
{
	if (r->s.op == OP_FLUSH || r->ret != 0 || r->done < 0 || r->done >= k)
		return false;
	if (r->s.fua || r->s.op >= OP_VCREATE)
		return true;
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *f = &rq.r[i];

		if (f->ret == 0 && f->sub > r->done && f->done >= 0 && f->done < k &&
		    (f->s.op == OP_FLUSH || (is_derive(f->s.op) && f->s.vol == r->s.vol)))
			return true;
	}
	return false;
}

/*
 * Whether request r leaves something in sector sec of vol: a data request
 * over it (a WRITE its payload, the others zeros), or a resize that cuts it
 * off (zeros: grown back, the volume reads zeros there). Sizes are at most
 * VOLSZ or WIDE, and only one of 2 chunks or less grows to WIDE: a sector
 * is at the same place in the volume at every size that holds it (voff).
 */
static bool
covers(const struct rreq *r, int vol, uint32_t sec)
{
	if ((r->s.op == OP_VSIZE && r->s.vol == vol) || (r->s.op == OP_VRESIZE && vol == 2))
		return !refused(r->ret) && sec >= vsecs((uint64_t)r->s.nsec * CHUNK);
	return r->s.op != OP_FLUSH && r->s.op < OP_VCREATE && r->s.vol == vol &&
	       sec >= r->s.sec && sec < r->s.sec + r->s.nsec;
}

/* Whether request r reverts volume v. */
static bool
resets(const struct rreq *r, int v)
{
	return r->s.op == OP_REVERT && r->s.vol == v && !refused(r->ret);
}

/*
 * What sector sec of the volume held when request born made it or
 * reverted it (-1: v0, v1 from the start): zeros, a snapshot's or clone's
 * frozen contents, or those of the snapshot a revert took.
 */
static int64_t
held_when_born(int born, uint32_t sec)
{
	int from = born;

	if (born >= 0 && rq.r[born].s.op == OP_REVERT) {
		from = -1;
		for (int i = 0; i < born; i++)
			if (makes(&rq.r[i], (int)rq.r[born].s.nsec))
				from = i;
	}
	if (from < 0 || !is_derive(rq.r[from].s.op))
		return from < 0 && born >= 0 ? FROZEN_UNKNOWN : 0;
	return frozen[from][sec];
}

/* Add what request who would leave in a sector (seq v, 0 zeros) to the list acc. */
static void
accepted(char *acc, size_t n, int64_t v, int who)
{
	size_t l = strlen(acc);

	char w[24];

	snprintf(w, sizeof(w), who < 0 ? "from the start" : "request %d", who);
	if (v == FROZEN_UNKNOWN)
		snprintf(acc + l, n - l, " unknown (%s)", w);
	else if (v == 0)
		snprintf(acc + l, n - l, " zeros (%s)", w);
	else
		snprintf(acc + l, n - l, " seq %lld (%s)", (long long)v, w);
}

/*
 * Sector (vol, sec) holding seq x (0 zeros) against the history before k,
 * the volume's own from request born on (its making or a revert).
 */
static bool
oracle_sector(const struct vstate *vs, int vol, uint32_t sec, int64_t x, int k, int born)
{
	int req = -1, snap = -1;
	int64_t was = held_when_born(born, sec);	/* what it held then */
	char acc[160] = "";	/* the contents that would have been right */
	bool ok = false;

	if (x < 0)
		return failf("v%d sector %u (byte %u) holds foreign or stale bytes: %s", vol, sec,
			     sec * SEC, vs->bad);
	if (was == FROZEN_UNKNOWN)
		return failf("v%d, made or reverted by request %d: what it took does not read just "
			     "after it", vol, born);
	/* The last request required durable; it, or any request after it, may show. */
	for (int i = born + 1; i < rq.nr; i++)
		if (rq.r[i].sub < k && covers(&rq.r[i], vol, sec) && required(&rq.r[i], k))
			req = i;
	for (int i = born + 1; i < rq.nr && !ok; i++) {
		const struct rreq *r = &rq.r[i];

		if (r->sub >= k || !covers(r, vol, sec))
			continue;
		/*
		 * A trim may leave what was before it; a write still in flight
		 * when the required one was submitted may land after it.
		 */
		if (i >= req || rq.r[req].s.op == OP_TRIM || r->done < 0 ||
		    r->done > rq.r[req].sub) {
			ok = (r->s.op == OP_WRITE ? (int64_t)r->seq : 0) == x;
			accepted(acc, sizeof(acc), r->s.op == OP_WRITE ? (int64_t)r->seq : 0, i);
		}
	}
	if (req < 0 || rq.r[req].s.op == OP_TRIM) {
		ok = ok || x == was || (req >= 0 && x == 0);
		accepted(acc, sizeof(acc), was, born);
		if (req >= 0)
			accepted(acc, sizeof(acc), 0, req);
	}
	if (!ok) {
		char found[40];

		snprintf(found, sizeof(found), x ? "seq %lld" : "zeros", (long long)x);
		return failf("v%d sector %u (byte %u) reads %s; expected one of:%s (required "
			     "request %d, volume made by %d)", vol, sec, sec * SEC, found,
			     acc[0] ? acc : " none", req, born);
	}
	/* Untouched since a replied snapshot or clone of it: exactly what that froze. */
	for (int i = born + 1; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		if (r->sub >= k)
			continue;
		if (is_derive(r->s.op) && r->s.vol == vol && r->ret == 0 && r->done < k)
			snap = i;
		else if (snap >= 0 && covers(r, vol, sec))
			snap = -1;
	}
	if (snap >= 0 && frozen[snap][sec] != FROZEN_UNKNOWN && x != frozen[snap][sec])
		return failf("v%d sector %u (byte %u) reads seq %lld, untouched since request %d "
			     "(a snapshot or clone of it) froze seq %lld", vol, sec, sec * SEC,
			     (long long)x, snap,
			     (long long)frozen[snap][sec]);
	return true;
}

/* The volumes and their sizes after the volume operations up to request last. */
static void
vols_after(int last, bool *ex, uint64_t *sz)
{
	for (int v = 0; v < NSLOT; v++) {
		ex[v] = v < 2;
		sz[v] = v < 2 ? VOLSZ : 0;
	}
	for (int i = 0; i <= last; i++) {
		const struct step *s = &rq.r[i].s;
		int t = (int)s->nsec;

		if (s->op < OP_VCREATE || refused(rq.r[i].ret))
			continue;
		if (s->op == OP_VCREATE && !ex[2]) {
			ex[2] = true;
			sz[2] = (uint64_t)s->nsec * CHUNK;
		} else if (s->op == OP_VDELETE && ex[2]) {
			ex[2] = false;
			sz[2] = 0;
		} else if (s->op == OP_VRESIZE && ex[2]) {
			sz[2] = (uint64_t)s->nsec * CHUNK;
		} else if (is_derive(s->op) && ex[s->vol] && !ex[t]) {
			ex[t] = true;
			sz[t] = sz[s->vol];
		} else if (s->op == OP_DEL && ex[s->vol]) {
			ex[s->vol] = false;
			sz[s->vol] = 0;
		} else if (s->op == OP_REVERT && ex[s->vol] && ex[t]) {
			sz[s->vol] = sz[t];
		} else if (s->op == OP_VSIZE && ex[s->vol]) {
			sz[s->vol] = (uint64_t)s->nsec * CHUNK;
		}
	}
}

/* Volume operations: all or nothing, present once replied (point 4). */
static bool
oracle_vols(const struct vstate *vs, int k)
{
	char have[NSLOT * 24] = "";
	int req = -1;

	for (int i = 0; i < rq.nr; i++)
		if (rq.r[i].s.op >= OP_VCREATE && rq.r[i].sub < k && required(&rq.r[i], k))
			req = i;
	for (int j = req; j < rq.nr; j++) {
		bool ex[NSLOT], same = true;
		uint64_t sz[NSLOT];

		if (j >= 0 && (rq.r[j].sub >= k || (j > req && rq.r[j].s.op < OP_VCREATE)))
			continue;
		vols_after(j, ex, sz);
		for (int v = 0; v < NSLOT; v++)
			same = same && ex[v] == vs->exists[v] && sz[v] == vs->size[v];
		if (same)
			return true;
	}
	for (int v = 0; v < NSLOT; v++)
		if (vs->exists[v])
			snprintf(have + strlen(have), sizeof(have) - strlen(have), " %s:%llu",
				 vname(v), (unsigned long long)vs->size[v]);
	return failf("volumes%s: not what a prefix of the volume operations since request %d "
		     "makes", have, req);
}

/* Every sector of volume v as of its beginning born. */
static bool
oracle_volume(const struct vstate *vs, int v, int k, int born)
{
	for (uint32_t s = 0; s < vsecs(vs->size[v]); s++)
		if (!oracle_sector(vs, v, s, vs->seq[v][s], k, born))
			return false;
	return true;
}

static bool
oracle(const struct vstate *vs, int k)
{
	if (!oracle_vols(vs, k))
		return false;
	/* What a shrink or a revert dropped is free again once its record is (pool-reclaim.c). */
	if (run.no_leaks && vs->leaks)
		return failf("R4: %u chunks leaked (counted used, mapped by no volume)", vs->leaks);
	for (int v = 0; v < NSLOT; v++) {
		int start = -1;
		bool ok;

		if (!vs->exists[v])
			continue;
		/* Its making, or the last revert replied: the first beginning it may have. */
		for (int i = 0; i < rq.nr; i++)
			if (rq.r[i].sub < k && (makes(&rq.r[i], v) ||
						(resets(&rq.r[i], v) && required(&rq.r[i], k))))
				start = i;
		ok = oracle_volume(vs, v, k, start);
		for (int i = start + 1; i < rq.nr && !ok; i++) {
			char why[sizeof(failmsg)];

			if (rq.r[i].sub >= k || !resets(&rq.r[i], v))
				continue;
			memcpy(why, failmsg, sizeof(why));
			ok = oracle_volume(vs, v, k, i);
			if (!ok)
				memcpy(failmsg, why, sizeof(why));
		}
		if (!ok)
			return false;
	}
	return true;
}

/* The sequence in sector s read from offset sec: 0 zeros, -1 foreign or garbage. */
static int64_t
payload_seq(const uint8_t *s, uint32_t sec)
{
	uint32_t crc, v, o;
	uint64_t seq;

	if (test_all_zero(s, SEC))
		return 0;
	memcpy(&crc, s + SEC - 4, 4);
	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (memcmp(s, "PAYL", 4) || crc != tp_crc32c(0, s, SEC - 4) || o != sec || seq < 1 ||
	    seq > (uint64_t)rq.nr)
		return -1;
	/* The request of that sequence wrote it, to that volume. */
	if (rq.r[seq - 1].s.op != OP_WRITE || rq.r[seq - 1].s.vol != (int)v)
		return -1;
	return (int64_t)seq;
}

/* What sector s, read from offset sec, holds that is no payload of this workload. */
static void
describe_bad(const uint8_t *s, uint32_t sec, char *out, size_t n)
{
	uint32_t crc, v, o;
	uint64_t seq;

	memcpy(&crc, s + SEC - 4, 4);
	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (!memcmp(s, "GARBAGE", 7))
		snprintf(out, n, "the base's free-space garbage (of a device sector = %u mod 256)",
			 (unsigned int)(s[7] ^ 0xa5));
	else if (memcmp(s, "PAYL", 4))
		snprintf(out, n, "no payload (bytes %02x %02x %02x %02x %02x %02x %02x %02x)",
			 s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
	else
		snprintf(out, n, "a payload of v%u sector %u seq %llu, crc %s (read as sector %u)",
			 v, o, (unsigned long long)seq,
			 crc == tp_crc32c(0, s, SEC - 4) ? "good" : "bad", sec);
}

/* Sector s of vol as it reads on image im: its data, or NULL for zeros. */
static const uint8_t *
read_sector(struct dio_volume *vol, const uint8_t *im, uint32_t s)
{
	struct dio_extent ext;
	const uint8_t *d = NULL;

	if (vol->map_ops->map_begin(vol, voff(vol->size, s), SEC, 0, &ext) < 0)
		return (const uint8_t *)"";
	if (ext.type == DIO_EXT_MAPPED)
		d = im + ext.addr;
	vol->map_ops->map_end(vol, &ext, SEC, 0);
	return d;
}

/*
 * R4 counted here, not by the pool's check: the references to each chunk
 * from the volumes' leaves (each leaf once, however many volumes share
 * it) are never more than the space map's count, and a referenced chunk
 * is in use. More is a leak, which a crash may leave.
 */
static bool
recount(const struct dio_tpool *p)
{
	const struct tp_leaf *seen[64];
	uint32_t *refs = calloc(p->sb.nr_chunks, sizeof(*refs));
	int nseen = 0;
	bool ok = true;

	need(refs, "out of memory");
	for (uint32_t i = 0; i < p->nvols; i++) {
		const struct tp_vol *v = p->vols[i];

		for (uint64_t l = 0; v && l < (v->nl + TP_LEAF - 1) / TP_LEAF; l++) {
			const struct tp_leaf *lf = v->leaf[l];
			bool dup = false;

			for (int j = 0; lf && j < nseen; j++)
				dup = dup || seen[j] == lf;
			if (!lf || dup)
				continue;
			need(nseen < 64, "too many map leaves");
			seen[nseen++] = lf;
			for (uint32_t e = 0; e < TP_LEAF; e++)
				if (lf->e[e].p1 && lf->e[e].p1 <= p->sb.nr_chunks)
					refs[lf->e[e].p1 - 1]++;
		}
	}
	for (uint64_t c = 0; c < p->sb.nr_chunks && ok; c++)
		if (refs[c] > p->space[c] || (refs[c] && p->cstate[c] != TP_C_USED))
			ok = failf("R4: chunk %llu is mapped by %u leaves; the space map counts %u, "
				   "state %u", (unsigned long long)c, refs[c], p->space[c],
				   p->cstate[c]);
	free(refs);
	return ok;
}

/* Open the pool on image im read-only, check it and read it into *vs. */
static bool
read_image(uint8_t *im, struct vstate *vs)
{
	struct memdev m = { .img = im, .size = img_size };
	struct dio_tpool_io hooks = { .pread = md_pread, .pwrite = md_pwrite, .flush = md_flush,
				      .priv = &m };
	struct dio_tpool_opts o = { .readonly = true, .no_direct = true, .io = &hooks,
				    .errbuf = errbuf, .errlen = sizeof(errbuf) };
	struct dio_tpool_check_result res;
	struct dio_volume *vol;
	struct dio_tpool *p;
	bool ok = true;
	int ret;

	memset(vs, 0, sizeof(*vs));
	errbuf[0] = 0;
	ret = dio_tpool_check(path, &o, NULL, NULL, &res);
	if (ret < 0)
		return failf("check: %s", errbuf);
	if (res.problems)
		return failf("check finds %u problems", res.problems);
	vs->leaks = res.leaks;
	ret = dio_tpool_open(path, &o, &p);
	if (ret < 0)
		return failf("open: %s", errbuf);
	ok = recount(p);
	for (int v = 0; v < NSLOT && ok; v++) {
		if (dio_tpool_volume_open(p, vname(v), &vol) < 0)
			continue;
		vs->exists[v] = true;
		vs->size[v] = vol->size;
		if (vol->size > VOLSZ && vol->size != (uint64_t)WIDE * CHUNK)
			ok = failf("%s is %llu bytes, more than any volume here", vname(v),
				   (unsigned long long)vol->size);
		for (uint32_t s = 0; ok && s < vsecs(vol->size); s++) {
			const uint8_t *d = read_sector(vol, im, s);

			vs->seq[v][s] = d ? payload_seq(d, s) : 0;
			if (vs->seq[v][s] < 0 && !vs->bad[0])
				describe_bad(d, s, vs->bad, sizeof(vs->bad));
		}
		dio_volume_put(vol);
	}
	dio_tpool_close(p);
	if (ok && m.writes)
		ok = failf("R7: recovery wrote before it was done");
	states++;
	return ok;
}

/* Recover a copy of src for real (open, close) into rimg, its writes logged in rl. */
bool
run_recovery(const uint8_t *src)
{
	struct memdev m = { .img = rimg, .size = img_size, .log = &rl };
	struct dio_tpool_io hooks = { .pread = md_pread, .pwrite = md_pwrite, .flush = md_flush,
				      .priv = &m };
	struct dio_tpool_opts o = { .no_direct = true, .io = &hooks, .errbuf = errbuf,
				    .errlen = sizeof(errbuf) };
	struct dio_tpool *p;

	memcpy(rimg, src, img_size);
	dlog_reset(&rl);
	if (dio_tpool_open(path, &o, &p) < 0)
		return failf("recovery open: %s", errbuf);
	dio_tpool_close(p);
	return true;
}

static bool
same_state(const struct vstate *a, const struct vstate *b)
{
	for (int v = 0; v < NSLOT; v++) {
		if (a->exists[v] != b->exists[v] || a->size[v] != b->size[v])
			return failf("R7: after a crash in recovery %s differs", vname(v));
		for (uint32_t s = 0; s < VSECS; s++)
			if (a->seq[v][s] != b->seq[v][s])
				return failf("R7: after a crash in recovery %s sector %u reads %lld, "
					     "not %lld", vname(v), s, (long long)b->seq[v][s],
					     (long long)a->seq[v][s]);
	}
	return true;
}

/* frozen[] of the workload just run (see the rules above). */
void
compute_frozen(void)
{
	static struct cstate cs;
	struct vstate vs;

	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		if (!is_derive(r->s.op))
			continue;
		for (uint32_t s = 0; s < VSECS; s++)
			frozen[i][s] = FROZEN_UNKNOWN;
		if (refused(r->ret) || r->done < 0)
			continue;
		cs.k = r->done + 1;
		cs.nsel = volatile_set(&dl, cs.k, cs.sel);
		build(img, base, img_size, &dl, cs.k, cs.sel, cs.nsel, -1, 0, 0);
		if (read_image(img, &vs) && vs.exists[r->s.vol])
			memcpy(frozen[i], vs.seq[r->s.vol], sizeof(frozen[i]));
		states--;	/* checked with the others, by crash_states */
	}
}

bool rl_current;	/* rl already holds the recovery of the state's image */

/* Check one crash state of the logged workload. */
bool
check_state(const struct cstate *cs)
{
	struct vstate vs, rvs;

	build(img, base, img_size, &dl, cs->k, cs->sel, cs->nsel, cs->tw, cs->ta, cs->tb);
	if (!read_image(img, &vs) || !oracle(&vs, cs->k))
		return false;
	if (cs->rk < 0)
		return true;
	if (!rl_current && !run_recovery(img))
		return false;
	memcpy(rbase, img, img_size);
	build(rimg, rbase, img_size, &rl, cs->rk, cs->rsel, cs->nrsel, cs->rtw, cs->rta, cs->rtb);
	if (!read_image(rimg, &rvs)) {
		char why[sizeof(failmsg)];

		memcpy(why, failmsg, sizeof(why));
		return failf("after a crash in recovery at %d: %s", cs->rk, why);
	}
	return same_state(&vs, &rvs);
}
