/* SPDX-License-Identifier: MIT */
/*
 * Checkpoints: the whole in-memory state written copy-on-write to
 * metadata blocks the durable checkpoint does not use, flushed, then the
 * other superblock slot with FUA; only then does the journal tail move.
 *
 * A checkpoint of generation g: ROOT blocks (a chain through aux) listing
 * CKPT blocks (records: one VOL per volume, one MAP per chunk with written
 * sub-blocks) and SPACE blocks (2 bits per chunk: the refcount). Every one
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

/* Records of the state: VOLs then MAPs, into a malloc'd array. -ENOMEM or count. */
static int64_t
ckpt_records(struct dio_tpool *p, struct tp_rec **out)
{
	size_t n = 0, cap = 64;
	struct tp_rec *r = malloc(cap * sizeof(*r)), *nr;

	if (!r)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < p->nvols; i++) {
			struct tp_vol *v = p->vols[i];
			uint64_t l;

			if (!v)
				continue;
			for (l = 0; l < (pass ? v->nl : 1); l++) {
				struct tp_ment *e = pass ? tp_ment(v, l, false) : NULL;

				if (pass && (!e || !e->p1 || !e->bits))
					continue;
				if (n == cap) {
					cap *= 2;
					nr = realloc(r, cap * sizeof(*r));
					if (!nr) {
						free(r);
						return -ENOMEM;
					}
					r = nr;
				}
				memset(&r[n], 0, sizeof(r[n]));
				r[n].vol = v->id;
				if (pass) {
					r[n].type = TP_R_MAP;
					r[n].a = l;
					r[n].b = e->p1 - 1;
					r[n].bits = e->bits;
				} else {
					r[n].type = TP_R_VOL;
					r[n].a = v->size;
					r[n].flags = v->flags;
					memcpy(r[n].uuid, v->uuid, 16);
					memcpy(r[n].name, v->name, sizeof(r[n].name));
				}
				r[n].words = (uint8_t)(tp_rec_size(r[n].type) / 8);
				n++;
			}
		}
	}
	*out = r;
	return (int64_t)n;
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
	uint64_t gen = p->sb.h.gen + 1, nrec, nspace, nroot, total, *where = NULL;
	uint8_t *newused = NULL, *refs = NULL;
	struct tp_rec *recs = NULL;
	struct tp_super sb;
	int64_t n;
	int ret;

	if (p->readonly)
		return -EROFS;
	/* R1: the data every mapping exposes is durable before the mapping. */
	ret = tp_flush_sync(p);
	if (ret < 0)
		return ret;
	n = ckpt_records(p, &recs);
	if (n < 0)
		return (int)n;
	nrec = ckpt_rec_blocks(recs, (size_t)n);
	nspace = (p->sb.nr_chunks + TP_SPACE_MAX - 1) / TP_SPACE_MAX;
	nroot = (nrec + nspace + TP_ROOT_MAX - 1) / TP_ROOT_MAX;
	if (!nroot)
		nroot = 1;
	total = nrec + nspace + nroot;
	ret = -ENOMEM;
	where = malloc(total * sizeof(*where));
	newused = calloc(p->sb.meta_blocks, 1);
	refs = calloc(p->sb.nr_chunks, 1);
	if (!where || !newused || !refs || tp_buf_reserve(p, total * TP_BLOCK) < 0)
		goto out;
	/* Copy-on-write: only blocks the durable checkpoint does not use. */
	for (uint64_t b = 0, k = 0; k < total; b++) {
		if (b == p->sb.meta_blocks) {
			ret = -ENOSPC;	/* cannot happen: the reserve holds two (R5) */
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

			if (recs[i].type == TP_R_MAP)
				refs[recs[i].b] = 1;
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
			blk[sizeof(struct tp_hdr) + c / 4] |= (uint8_t)(refs[first + c] << (2 * (c % 4)));
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

		for (uint64_t l = 0; v && l < v->nl; l++) {
			struct tp_ment *e = tp_ment(v, l, false);

			if (e)
				e->dbits = e->bits;
		}
	}
	if (p->npend)
		tp_pfree_durable(p, p->pend[p->npend - 1].serial);
	tp_pfree_durable(p, p->serial);
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

int
tp_ckpt_load(struct dio_tpool *p, const struct tp_super *sb, char *err, size_t errlen)
{
	uint8_t *root = NULL, *blk = NULL, *space = NULL;
	uint64_t rb = sb->ckpt_root, nroots = 0, nread = 0;
	int ret;

	p->sb = *sb;
	if (posix_memalign((void **)&root, TP_BLOCK, TP_BLOCK) ||
	    posix_memalign((void **)&blk, TP_BLOCK, TP_BLOCK) ||
	    !(space = calloc(sb->nr_chunks, 1))) {
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

				if (!sz || off + sz > bh->used ||
				    (src[0] != TP_R_VOL && src[0] != TP_R_MAP)) {
					ret = load_err(err, errlen, -EUCLEAN,
						       "checkpoint block %llu: bad record %u",
						       (unsigned long long)b, k);
					goto out;
				}
				memset(&r, 0, sizeof(r));
				memcpy(&r, src, sz);
				off += (uint32_t)sz;
				ret = tp_apply(p, &r, err, errlen);
				if (ret < 0)
					goto out;
			}
		}
		rb = h->aux;
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
