/* SPDX-License-Identifier: MIT */
/*
 * Checkpoints: the whole in-memory state written copy-on-write to
 * metadata blocks the durable checkpoint does not use, flushed, then the
 * other superblock slot with FUA; only then does the journal tail move.
 *
 * A checkpoint of generation g: ROOT blocks (a chain through aux) listing
 * CKPT blocks (records: one VOL per volume, one RUN per run of fully
 * written chunks mapped to consecutive chunks within a leaf, one MAP per
 * other chunk with written sub-blocks) and SPACE blocks (2 bits per chunk: the refcount). Every one
 * has gen g and its own number, so a torn or stale one is caught (R6).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define TP_ROOT_MAX (TP_PAYLOAD / 8)
#define TP_SPACE_MAX (TP_PAYLOAD * 4)

/* The records of a checkpoint being built, and the references they make. */
struct ckpt_build {
	struct tp_rec *r;
	size_t n, cap;
	uint16_t *refs;		/* per chunk: the leaves written that map it */
	bool share;		/* something needs TP_FEAT_INCOMPAT_SHARE */
	bool runs;		/* RUN records: TP_FEAT_INCOMPAT_RUNS */
};

/* Append a record of type t; its other fields zero. NULL on -ENOMEM. */
static struct tp_rec *
ckpt_push(struct ckpt_build *cb, unsigned int t, uint32_t vol, uint64_t a, uint64_t b)
{
	struct tp_rec *r;

	if (tp_grow(&cb->r, &cb->cap, cb->n, sizeof(*cb->r), 256) < 0)
		return NULL;
	r = &cb->r[cb->n++];
	memset(r, 0, sizeof(*r));
	r->type = (uint8_t)t;
	r->words = (uint8_t)(tp_rec_size(t) / 8);
	r->vol = vol;
	r->a = a;
	r->b = b;
	return r;
}

/*
 * Records of leaf lf's written entries, lchunk base + k under vol (0:
 * inside a LEAF): a RUN for each run of fully written entries mapping
 * consecutive chunks (one chunk too: it is half a MAP), a MAP for the others.
 */
static int
ckpt_leaf(struct ckpt_build *cb, const struct tp_leaf *lf, uint32_t vol, uint64_t base,
	  uint32_t full)
{
	for (uint32_t k = 0, n; k < TP_LEAF; k += n) {
		const struct tp_ment *e = &lf->e[k];
		struct tp_rec *r;

		n = 1;
		if (!e->p1 || !e->bits)
			continue;
		if (e->bits == full) {
			while (k + n < TP_LEAF && e[n].bits == full && e[n].p1 == e->p1 + n)
				n++;
			r = ckpt_push(cb, TP_R_RUN, 0, 0, 0);
			if (!r)
				return -ENOMEM;
			tp_run_rec(r, vol, (uint32_t)(base + k), e->p1 - 1, (uint16_t)n);
			cb->runs = true;
		} else {
			r = ckpt_push(cb, TP_R_MAP, vol, base + k, e->p1 - 1);
			if (!r)
				return -ENOMEM;
			r->bits = e->bits;
		}
		for (uint32_t j = 0; j < n; j++)
			cb->refs[e[j].p1 - 1]++;
	}
	return 0;
}

/*
 * Records of the state: VOLs; then each volume's leaves, as MAPs when the
 * volume has the leaf to itself, or as an LREF to a shared leaf written
 * once (LEAF and its MAPs) where first met; then REFs for the chunks with
 * more references than the space map's 2 bits hold.
 */
static int
ckpt_records(struct dio_tpool *p, struct ckpt_build *cb)
{
	uint32_t mark = tp_leaf_mark(p), num = 0;

	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];
		struct tp_rec *r;

		if (!v)
			continue;
		r = ckpt_push(cb, TP_R_VOL, v->id, v->size, v->parent);
		if (!r)
			return -ENOMEM;
		r->flags = v->flags;
		memcpy(r->uuid, v->uuid, 16);
		memcpy(r->name, v->name, sizeof(r->name));
		cb->share |= v->flags || v->parent;
	}
	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		for (uint64_t k = 0; v && k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++) {
			struct tp_leaf *lf = v->leaf[k];
			int ret = 0;

			if (!lf || !lf->n)
				continue;
			if (lf->refs == 1) {
				ret = ckpt_leaf(cb, lf, v->id, k * TP_LEAF, p->full_bits);
				if (ret < 0)
					return ret;
				continue;
			}
			cb->share = true;
			if (lf->mark != mark) {
				lf->mark = mark;
				lf->num = ++num;
				if (!ckpt_push(cb, TP_R_LEAF, 0, lf->num, 0) ||
				    ckpt_leaf(cb, lf, 0, 0, p->full_bits) < 0)
					return -ENOMEM;
			}
			if (!ckpt_push(cb, TP_R_LREF, v->id, k, lf->num))
				return -ENOMEM;
		}
	}
	for (uint64_t c = 0; c < p->sb.nr_chunks; c++) {
		if (cb->refs[c] < 3)
			continue;
		cb->share = true;
		if (!ckpt_push(cb, TP_R_REF, 0, cb->refs[c], c))
			return -ENOMEM;
	}
	return 0;
}

/* Blocks needed to hold recs[0..n). */
static uint64_t
ckpt_rec_blocks(const struct tp_rec *recs, size_t n)
{
	uint64_t nb = n ? 1 : 0;
	size_t used = 0;

	for (size_t i = 0; i < n; i++) {
		size_t sz = tp_rec_size(recs[i].type);

		if (used + sz > TP_PAYLOAD) {
			nb++;
			used = 0;
		}
		used += sz;
	}
	return nb;
}

int
tp_checkpoint(struct dio_tpool *p)
{
	uint64_t gen, nrec, nspace, nroot, total, *where = NULL;
	struct ckpt_build cb = { 0 };
	uint8_t *newused = NULL;
	struct tp_rec *recs;
	struct tp_super sb;
	uint16_t *refs;
	int64_t n;
	int ret;

	if (p->readonly)
		return -EROFS;
	tp_commit_idle(p);	/* a commit's journal write is not absorbed half done */
	gen = p->sb.h.gen + 1;
	/* R1: the data every mapping exposes is durable before the mapping. */
	ret = tp_flush_sync(p);
	if (ret < 0)
		return ret;
	cb.refs = refs = calloc(p->sb.nr_chunks, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	ret = ckpt_records(p, &cb);
	recs = cb.r;
	n = (int64_t)cb.n;
	if (ret < 0)
		goto out;
	nrec = ckpt_rec_blocks(recs, (size_t)n);
	nspace = (p->sb.nr_chunks + TP_SPACE_MAX - 1) / TP_SPACE_MAX;
	nroot = (nrec + nspace + TP_ROOT_MAX - 1) / TP_ROOT_MAX;
	if (!nroot)
		nroot = 1;
	total = nrec + nspace + nroot;
	ret = -ENOMEM;
	where = malloc(total * sizeof(*where));
	newused = calloc(p->sb.meta_blocks, 1);
	if (!where || !newused || tp_buf_reserve(p, total * TP_BLOCK) < 0)
		goto out;
	/* Copy-on-write: only blocks the durable checkpoint does not use. */
	for (uint64_t b = 0, k = 0; k < total; b++) {
		if (b == p->sb.meta_blocks) {
			/* the reserve holds two with every chunk mapped once (R5); shared
			 * leaves copied by many snapshots' writes can outgrow it */
			ret = -ENOSPC;
			goto out;
		}
		if (!p->meta_used[b]) {
			where[k++] = p->sb.meta_start + b;
			newused[b] = 1;
		}
	}
	/* Record blocks [0, nrec). */
	{
		uint64_t k = 0;
		size_t used = 0;
		uint32_t count = 0;
		uint8_t *blk = p->buf;

		memset(blk, 0, TP_BLOCK);
		for (int64_t i = 0; i < n; i++) {
			size_t sz = tp_rec_size(recs[i].type);

			if (used + sz > TP_PAYLOAD) {
				tp_seal(blk, p->sb.h.uuid, TP_BT_CKPT, 0, gen, where[k], 0, count,
					(uint32_t)used);
				blk += TP_BLOCK;
				memset(blk, 0, TP_BLOCK);
				k++;
				used = 0;
				count = 0;
			}
			memcpy(blk + sizeof(struct tp_hdr) + used, &recs[i], sz);
			used += sz;
			count++;
		}
		if (nrec)
			tp_seal(blk, p->sb.h.uuid, TP_BT_CKPT, 0, gen, where[k], 0, count,
				(uint32_t)used);
	}
	/* Space blocks [nrec, nrec + nspace): refcounts from the maps written. */
	for (uint64_t s = 0; s < nspace; s++) {
		uint8_t *blk = p->buf + (nrec + s) * TP_BLOCK;
		uint64_t first = s * TP_SPACE_MAX, cnt = p->sb.nr_chunks - first;

		if (cnt > TP_SPACE_MAX)
			cnt = TP_SPACE_MAX;
		memset(blk, 0, TP_BLOCK);
		for (uint64_t c = 0; c < cnt; c++)
			blk[sizeof(struct tp_hdr) + c / 4] |=
				(uint8_t)((refs[first + c] < 3 ? refs[first + c] : 3) << (2 * (c % 4)));
		tp_seal(blk, p->sb.h.uuid, TP_BT_SPACE, 0, gen, where[nrec + s], first,
			(uint32_t)cnt, (uint32_t)((cnt + 3) / 4));
	}
	/* Roots: each lists up to TP_ROOT_MAX blocks, aux chains to the next. */
	for (uint64_t r = 0; r < nroot; r++) {
		uint8_t *blk = p->buf + (nrec + nspace + r) * TP_BLOCK;
		uint64_t first = r * TP_ROOT_MAX, cnt = nrec + nspace - first;
		uint64_t next = r + 1 < nroot ? where[nrec + nspace + r + 1] : 0;

		if (first > nrec + nspace)
			cnt = 0;
		if (cnt > TP_ROOT_MAX)
			cnt = TP_ROOT_MAX;
		memset(blk, 0, TP_BLOCK);
		memcpy(blk + sizeof(struct tp_hdr), where + first, cnt * 8);
		tp_seal(blk, p->sb.h.uuid, TP_BT_ROOT, 0, gen, where[nrec + nspace + r], next,
			(uint32_t)cnt, (uint32_t)(cnt * 8));
	}
	for (uint64_t k = 0; k < total; k++) {
		ret = p->io->pwrite(p->io->priv, p->fd, p->buf + k * TP_BLOCK, TP_BLOCK,
				    where[k] * TP_BLOCK, false);
		if (ret < 0)
			goto out;
	}
	ret = tp_flush_sync(p);
	if (ret < 0)
		goto out;
	sb = p->sb;
	sb.h.gen = gen;
	sb.ckpt_root = where[nrec + nspace];
	sb.journal_tail = p->head;
	sb.next_vol_id = p->next_vol_id;
	if (cb.share)
		sb.feat_incompat |= TP_FEAT_INCOMPAT_SHARE;	/* sticky: never cleared */
	if (cb.runs)
		sb.feat_incompat |= TP_FEAT_INCOMPAT_RUNS;	/* sticky too */
	ret = tp_super_write(p, &sb);
	if (ret < 0)
		goto out;
	/* Durable: the new checkpoint is the one the next must not touch. */
	p->sb = sb;
	free(p->meta_used);
	p->meta_used = newused;
	newused = NULL;
	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		for (uint64_t k = 0; v && k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++)
			for (uint32_t j = 0; v->leaf[k] && j < TP_LEAF; j++)
				v->leaf[k]->e[j].dbits = v->leaf[k]->e[j].bits;
	}
	tp_pfree_durable(p, p->serial);	/* every record up to now is in it */
	p->npend = 0;
	p->dirty = false;
	p->journal_gap = false;	/* the tail is past every stale sequence */
out:
	free(where);
	free(newused);
	free(refs);
	free(recs);
	return ret;
}

/* Read metadata block b and verify it as type of generation gen. */
static int
ckpt_read(struct dio_tpool *p, uint64_t b, unsigned int type, uint64_t gen, uint8_t *blk)
{
	int ret;

	if (b < p->sb.meta_start || b >= p->sb.meta_start + p->sb.meta_blocks)
		return -EUCLEAN;
	ret = p->io->pread(p->io->priv, p->fd, blk, TP_BLOCK, b * TP_BLOCK);
	if (ret < 0)
		return ret;
	if (!tp_verify(blk, p->sb.h.uuid, type, b) || ((struct tp_hdr *)blk)->gen != gen)
		return -EUCLEAN;
	return 0;
}

static int load_err(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
load_err(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen && !err[0]) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* Loading a checkpoint: its shared leaves, and the counts past the space map's 2 bits. */
struct ckpt_load {
	struct tp_leaf **leaves;	/* by number - 1 */
	uint32_t nleaves, cap;
	struct tp_leaf *cur;		/* the LEAF whose MAPs come now */
	struct tp_rec *refs;		/* REF records */
	size_t nrefs, caprefs;
};

/*
 * Entry l of volume vol (0: of the LEAF being read) maps chunk c with
 * written bits: from a MAP, or one chunk of a RUN. 0, -EUCLEAN or -ENOMEM.
 */
static int
ckpt_load_ent(struct dio_tpool *p, struct ckpt_load *cl, uint32_t vol, uint64_t l, uint64_t c,
	      uint32_t bits, char *err, size_t errlen)
{
	struct tp_leaf *lf = cl->cur;
	struct tp_vol *v;
	struct tp_ment *e;

	if (vol) {
		/* Its chunk may be another leaf's too: shared, then copied. */
		v = tp_vol_by_id(p, vol);
		if (!v || l >= v->nl || c >= p->sb.nr_chunks || !bits || (bits & ~p->full_bits) ||
		    (tp_ment(v, l) && tp_ment(v, l)->p1))
			return load_err(err, errlen, -EUCLEAN, "volume %u: entry %llu out "
					"of bounds or twice", vol, (unsigned long long)l);
		e = tp_ment_w(p, v, l, true);
		if (!e)
			return -ENOMEM;
		tp_ent_map(p, v, l, e, c);
		e->bits = e->dbits = bits;
		return 0;
	}
	if (!lf || l >= TP_LEAF || c >= p->sb.nr_chunks || !bits || (bits & ~p->full_bits) ||
	    lf->e[l].p1)
		return load_err(err, errlen, -EUCLEAN, "shared leaf entry %llu out of bounds",
				(unsigned long long)l);
	lf->e[l] = (struct tp_ment){ (uint32_t)c + 1, bits, bits };
	lf->n++;
	p->space[c]++;
	return 0;
}

/* A RUN: count entries, within one leaf, each as a MAP of a full chunk. */
static int
ckpt_load_run(struct dio_tpool *p, struct ckpt_load *cl, const struct tp_rec *r, char *err,
	      size_t errlen)
{
	uint64_t l, c;
	uint32_t count;

	tp_run_get(r, &l, &c, &count);
	if (!count || count > TP_LEAF || l % TP_LEAF + count > TP_LEAF ||
	    c + count > p->sb.nr_chunks)
		return load_err(err, errlen, -EUCLEAN, "volume %u: run of %u chunks from %llu "
				"to chunk %llu out of bounds", r->vol, count,
				(unsigned long long)l, (unsigned long long)c);
	for (uint32_t k = 0; k < count; k++) {
		int ret = ckpt_load_ent(p, cl, r->vol, l + k, c + k, p->full_bits, err, errlen);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* One record of a checkpoint block into memory. 0, -EUCLEAN or -ENOMEM. */
static int
ckpt_load_rec(struct dio_tpool *p, struct ckpt_load *cl, const struct tp_rec *r, char *err,
	      size_t errlen)
{
	struct tp_vol *v;
	struct tp_leaf *lf;

	if ((r->type != TP_R_MAP && r->type != TP_R_RUN) || r->vol)
		cl->cur = NULL;
	switch (r->type) {
	case TP_R_VOL:
		return tp_apply(p, r, err, errlen);
	case TP_R_MAP:
		return ckpt_load_ent(p, cl, r->vol, r->a, r->b, r->bits, err, errlen);
	case TP_R_RUN:
		if (!(p->sb.feat_incompat & TP_FEAT_INCOMPAT_RUNS))
			return load_err(err, errlen, -EUCLEAN, "a run record in a checkpoint "
					"without the runs feature");
		return ckpt_load_run(p, cl, r, err, errlen);
	case TP_R_LEAF:
		if (r->a != cl->nleaves + 1)
			return load_err(err, errlen, -EUCLEAN, "shared leaf %llu out of order",
					(unsigned long long)r->a);
		if (cl->nleaves == cl->cap) {
			uint32_t cap = cl->cap ? 2 * cl->cap : 64;
			struct tp_leaf **n = realloc(cl->leaves, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			cl->leaves = n;
			cl->cap = cap;
		}
		lf = calloc(1, sizeof(*lf));
		if (!lf)
			return -ENOMEM;
		cl->leaves[cl->nleaves++] = cl->cur = lf;
		return 0;
	case TP_R_LREF:
		v = tp_vol_by_id(p, r->vol);
		if (!v || r->a >= (v->nl + TP_LEAF - 1) / TP_LEAF || v->leaf[r->a] ||
		    r->b == 0 || r->b > cl->nleaves)
			return load_err(err, errlen, -EUCLEAN, "volume %u: bad leaf reference %llu",
					r->vol, (unsigned long long)r->a);
		lf = cl->leaves[r->b - 1];
		/* Past the volume's end only holes (as tp_vol_size keeps them). */
		for (uint64_t k = 0; k < TP_LEAF; k++)
			if (lf->e[k].p1 && r->a * TP_LEAF + k >= v->nl)
				return load_err(err, errlen, -EUCLEAN, "volume %u: leaf %llu maps past "
						"its end", r->vol, (unsigned long long)r->a);
		v->leaf[r->a] = lf;
		lf->refs++;
		v->mapped += lf->n;
		return 0;
	case TP_R_REF:
		if (r->b >= p->sb.nr_chunks || r->a < 3 || r->a > UINT16_MAX)
			return load_err(err, errlen, -EUCLEAN, "reference count %llu of chunk %llu",
					(unsigned long long)r->a, (unsigned long long)r->b);
		if (tp_grow(&cl->refs, &cl->caprefs, cl->nrefs, sizeof(*cl->refs), 64) < 0)
			return -ENOMEM;
		cl->refs[cl->nrefs++] = *r;
		return 0;
	}
	return load_err(err, errlen, -EUCLEAN, "record type %u in a checkpoint", r->type);
}

int
tp_ckpt_load(struct dio_tpool *p, const struct tp_super *sb, char *err, size_t errlen)
{
	uint8_t *root = NULL, *blk = NULL;
	uint64_t rb = sb->ckpt_root, nroots = 0, nread = 0;
	struct ckpt_load cl = { 0 };
	uint16_t *space = NULL;
	int ret;

	p->sb = *sb;
	if (posix_memalign((void **)&root, TP_BLOCK, TP_BLOCK) ||
	    posix_memalign((void **)&blk, TP_BLOCK, TP_BLOCK) ||
	    !(space = calloc(sb->nr_chunks, sizeof(*space)))) {
		ret = -ENOMEM;
		goto out;
	}
	while (rb) {
		const struct tp_hdr *h = (const void *)root;

		if (++nroots > sb->meta_blocks) {
			ret = load_err(err, errlen, -EUCLEAN, "checkpoint root chain loops");
			goto out;
		}
		ret = ckpt_read(p, rb, TP_BT_ROOT, sb->h.gen, root);
		if (ret < 0) {
			load_err(err, errlen, ret, "checkpoint %llu: root block %llu does not verify",
				 (unsigned long long)sb->h.gen, (unsigned long long)rb);
			goto out;
		}
		p->meta_used[rb - sb->meta_start] = 1;
		for (uint32_t i = 0; i < h->count && i < TP_ROOT_MAX; i++) {
			uint64_t b;
			const struct tp_hdr *bh = (const void *)blk;

			memcpy(&b, root + sizeof(*h) + 8 * i, 8);
			ret = ckpt_read(p, b, TP_BT_CKPT, sb->h.gen, blk);
			if (ret == -EUCLEAN)
				ret = ckpt_read(p, b, TP_BT_SPACE, sb->h.gen, blk);
			if (ret < 0) {
				load_err(err, errlen, ret, "checkpoint %llu: block %llu does not verify",
					 (unsigned long long)sb->h.gen, (unsigned long long)b);
				goto out;
			}
			p->meta_used[b - sb->meta_start] = 1;
			tp_progress(p, "loading the checkpoint", ++nread, 0);
			if (bh->type == TP_BT_SPACE) {
				/* In 64 bits: aux + count and count + 3 must not wrap. */
				if (bh->aux > sb->nr_chunks || bh->count > sb->nr_chunks - bh->aux ||
				    bh->used < (bh->count + 3ull) / 4) {
					ret = load_err(err, errlen, -EUCLEAN, "space block %llu out of range",
						       (unsigned long long)b);
					goto out;
				}
				for (uint32_t c = 0; c < bh->count; c++)
					space[bh->aux + c] = (blk[sizeof(*bh) + c / 4] >> (2 * (c % 4))) & 3;
				continue;
			}
			for (uint32_t k = 0, off = 0; k < bh->count; k++) {
				struct tp_rec r;
				const uint8_t *src = blk + sizeof(*bh) + off;
				size_t sz = off + 8 <= bh->used ? tp_rec_size(src[0]) : 0;

				if (!sz || off + sz > bh->used) {
					ret = load_err(err, errlen, -EUCLEAN,
						       "checkpoint block %llu: bad record %u",
						       (unsigned long long)b, k);
					goto out;
				}
				memset(&r, 0, sizeof(r));
				memcpy(&r, src, sz);
				off += (uint32_t)sz;
				ret = ckpt_load_rec(p, &cl, &r, err, errlen);
				if (ret < 0) {
					load_err(err, errlen, ret, "checkpoint block %llu: bad record %u",
						 (unsigned long long)b, k);
					goto out;
				}
			}
		}
		rb = h->aux;
	}
	/* Counts of 3 and more: the REF records. */
	for (size_t k = 0; k < cl.nrefs; k++) {
		if (space[cl.refs[k].b] != 3) {
			ret = load_err(err, errlen, -EUCLEAN, "chunk %llu: a reference count record "
				       "where the space map says %u", (unsigned long long)cl.refs[k].b,
				       space[cl.refs[k].b]);
			goto out;
		}
		space[cl.refs[k].b] = (uint16_t)cl.refs[k].a;
	}
	/* The space map against the references just counted (R4). */
	for (uint64_t c = 0; c < sb->nr_chunks; c++) {
		if (space[c] < p->space[c]) {
			ret = load_err(err, errlen, -EUCLEAN,
				       "chunk %llu: %u references, space map says %u (under-count)",
				       (unsigned long long)c, p->space[c], space[c]);
			goto out;
		}
		p->space[c] = space[c];
	}
	if (sb->next_vol_id > p->next_vol_id)
		p->next_vol_id = sb->next_vol_id;
	ret = 0;
out:
	/* A leaf no volume refers to holds nothing: its counts stay (a leak, if any). */
	for (uint32_t k = 0; k < cl.nleaves; k++)
		if (!cl.leaves[k]->refs)
			free(cl.leaves[k]);
	free(cl.leaves);
	free(cl.refs);
	free(root);
	free(blk);
	free(space);
	return ret;
}

int
tp_commit(struct dio_tpool *p, bool all)
{
	int ret = tp_journal_write(p, all);

	/* The ring cannot take them: a checkpoint absorbs every pending record. */
	return ret == 1 ? tp_checkpoint(p) : ret;
}

int
tp_commit_unlocked(struct dio_tpool *p, bool all)
{
	int ret = tp_journal_write_unlocked(p, all);

	return ret == 1 ? tp_checkpoint(p) : ret;	/* the checkpoint under the lock */
}
