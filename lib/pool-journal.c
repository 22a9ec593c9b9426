/* SPDX-License-Identifier: MIT */
/*
 * The pool's journal: records appended to the open transaction as their
 * data completes, committed to the ring with FUA (R2) only once the data
 * they expose is durable (R1), and replayed at open.
 *
 * Ring: block for sequence s is journal_start + s % journal_blocks; its
 * header has gen = s and aux = the transaction id (the sequence of the
 * transaction's first block). Every commit starts a new block, so a torn
 * or failed commit never damages an earlier one. Replay from the
 * superblock's journal_tail stops at the first block that does not verify,
 * has another sequence (a stale lap), or continues a transaction that is
 * not the open one; it applies only transactions that reached COMMIT.
 * Blocks past that end that do verify are never replayed later: the first
 * commit after such a replay is a checkpoint (dio_tpool.journal_gap).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

int
tp_append(struct dio_tpool *p, const struct tp_rec *r, uint64_t needs)
{
	if (tp_grow(&p->pend, &p->cappend, p->npend, sizeof(*p->pend), 64) < 0)
		return -ENOMEM;
	p->pend[p->npend++] = (struct tp_prec){ .serial = ++p->serial, .needs = needs, .r = *r };
	p->pend[p->npend - 1].r.words = (uint8_t)(tp_rec_size(r->type) / 8);
	p->dirty = true;
	return 0;
}

/* A device flush: every record appended before it becomes safe; the lock dropped when unlock. */
static int
tp_flush_io(struct dio_tpool *p, bool unlock)
{
	uint64_t id = ++p->flush_issued;
	int ret;

	if (unlock)
		pthread_mutex_unlock(&p->lock);
	ret = p->io->flush(p->io->priv, p->fd);
	if (unlock)
		pthread_mutex_lock(&p->lock);
	if (ret == 0 && id > p->flush_done)
		p->flush_done = id;
	return ret;
}

int
tp_flush_sync(struct dio_tpool *p)
{
	return tp_flush_io(p, false);
}

int
tp_flush_unlocked(struct dio_tpool *p)
{
	return tp_flush_io(p, true);
}

void
tp_commit_idle(struct dio_tpool *p)
{
	while (p->commit_busy)
		pthread_cond_wait(&p->discard_cond, &p->lock);
}

/* The record r is durable now: what it wrote is on disk (tp_ment.dbits). */
static void
tp_rec_durable(struct dio_tpool *p, const struct tp_rec *r)
{
	struct tp_vol *v;
	struct tp_ment *e;

	if (r->type != TP_R_MAP && r->type != TP_R_UNMAP && r->type != TP_R_COW)
		return;
	v = tp_vol_by_id(p, r->vol);
	e = v ? tp_ment(v, r->a) : NULL;
	if (!e || !e->p1)
		return;
	if ((r->type == TP_R_MAP || r->type == TP_R_COW) && e->p1 == r->b + 1)
		e->dbits |= r->bits;
	else if (r->type == TP_R_UNMAP)
		e->dbits &= ~r->bits;
}

/* Pack n pending records and a COMMIT into blocks at p->buf; the number of blocks. */
static uint64_t
tp_pack(struct dio_tpool *p, size_t n, bool write)
{
	uint64_t nb = 0, txn = p->head;
	size_t used = 0;
	uint32_t count = 0;
	uint8_t *blk = p->buf;
	struct tp_rec commit = { .type = TP_R_COMMIT, .words = 2, .a = txn };

	for (size_t i = 0; i <= n; i++) {
		const struct tp_rec *r = i < n ? &p->pend[i].r : &commit;
		size_t sz = tp_rec_size(r->type);

		if (used + sz > TP_PAYLOAD) {
			if (write) {
				uint64_t seq = p->head + nb;

				tp_seal(blk, p->sb.h.uuid, TP_BT_JOURNAL, 0, seq,
					p->sb.journal_start + seq % p->sb.journal_blocks, txn,
					count, (uint32_t)used);
				blk += TP_BLOCK;
			}
			nb++;
			used = 0;
			count = 0;
		}
		if (write) {
			if (used == 0)
				memset(blk, 0, TP_BLOCK);
			memcpy(blk + sizeof(struct tp_hdr) + used, r, sz);
		}
		used += sz;
		count++;
	}
	if (write) {
		uint64_t seq = p->head + nb;

		tp_seal(blk, p->sb.h.uuid, TP_BT_JOURNAL, 0, seq,
			p->sb.journal_start + seq % p->sb.journal_blocks, txn, count, (uint32_t)used);
	}
	return nb + 1;
}

/*
 * tp_journal_write's work, the device I/O without the lock when unlock
 * (p->commit_busy set by the caller): the records to commit are chosen and
 * packed first, their sequences from head, and p->buf goes with them (a
 * writer of metadata meanwhile gets a buffer of its own); only they are
 * taken off pending afterwards, and only once the journal write completed.
 */
static int
tp_journal_io(struct dio_tpool *p, bool all, bool unlock)
{
	uint64_t J = p->sb.journal_blocks, head = p->head, nb, first, done;
	size_t n = 0, buflen;
	uint8_t *buf;
	int ret;

	if (all) {
		for (size_t i = 0; i < p->npend; i++) {
			if (p->pend[i].needs > p->flush_done) {
				ret = tp_flush_io(p, unlock);
				if (ret < 0)
					return ret;
				break;
			}
		}
	}
	while (n < p->npend && p->pend[n].needs <= p->flush_done)
		n++;
	if (n == 0)
		return 0;
	nb = tp_pack(p, n, false);
	if (p->journal_gap || p->head + nb - p->sb.journal_tail > J)
		return 1;	/* no room: a checkpoint must absorb them (tp_commit) */
	ret = tp_buf_reserve(p, nb * TP_BLOCK);
	if (ret < 0)
		return ret;
	tp_pack(p, n, true);
	buf = p->buf;
	buflen = p->buflen;
	if (unlock) {
		p->buf = NULL;
		p->buflen = 0;
		pthread_mutex_unlock(&p->lock);
	}
	/* One FUA write per contiguous piece of the ring. */
	for (done = 0; done < nb; done += first) {
		uint64_t pos = (head + done) % J;

		first = nb - done < J - pos ? nb - done : J - pos;
		ret = p->io->pwrite(p->io->priv, p->fd, buf + done * TP_BLOCK,
				    first * TP_BLOCK, (p->sb.journal_start + pos) * TP_BLOCK, true);
		if (ret < 0)
			break;	/* pending stays; the next commit rewrites these blocks */
	}
	if (unlock) {
		pthread_mutex_lock(&p->lock);
		if (p->buflen >= buflen) {
			free(buf);
		} else {
			free(p->buf);
			p->buf = buf;
			p->buflen = buflen;
		}
	}
	if (ret < 0)
		return ret;
	p->head = head + nb;	/* commits and checkpoints waited: nobody moved it */
	for (size_t i = 0; i < n; i++)
		tp_rec_durable(p, &p->pend[i].r);
	tp_pfree_durable(p, p->pend[n - 1].serial);
	memmove(p->pend, p->pend + n, (p->npend - n) * sizeof(*p->pend));
	p->npend -= n;
	return 0;
}

int
tp_journal_write(struct dio_tpool *p, bool all)
{
	if (p->readonly)
		return -EROFS;
	tp_commit_idle(p);
	return tp_journal_io(p, all, false);
}

int
tp_journal_write_unlocked(struct dio_tpool *p, bool all)
{
	int ret;

	if (p->readonly)
		return -EROFS;
	tp_commit_idle(p);
	p->commit_busy = true;
	ret = tp_journal_io(p, all, true);
	p->commit_busy = false;
	pthread_cond_broadcast(&p->discard_cond);
	return ret;
}

/*
 * Records of one verified block into staged (grows it). 0, or -EUCLEAN
 * with why in err: the block verifies, so this version wrote it whole or
 * a newer one did, and a record it cannot read must not end the replay
 * quietly (the transactions after it would be dropped); -ENOMEM.
 */
static int
tp_parse(const uint8_t *blk, struct tp_rec **staged, size_t *nst, size_t *cap, bool *commit,
	 uint64_t txn, uint64_t seq, char *err, size_t errlen)
{
	const struct tp_hdr *h = (const void *)blk;
	size_t off = 0;
	uint32_t i;

	*commit = false;
	for (i = 0; i < h->count; i++) {
		struct tp_rec r;
		const uint8_t *src = blk + sizeof(*h) + off;
		size_t sz;

		if (off + 8 > h->used)
			goto bad;
		sz = tp_rec_size(src[0]);
		if (!sz) {
			snprintf(err, errlen, "journal block %llu: unknown record type %u "
				 "(written by a newer version?)", (unsigned long long)seq, src[0]);
			return -EUCLEAN;
		}
		if (src[1] * 8u != sz || off + sz > h->used)
			goto bad;
		memset(&r, 0, sizeof(r));
		memcpy(&r, src, sz);
		off += sz;
		if (r.type == TP_R_COMMIT) {
			if (r.a != txn || i + 1 != h->count)
				goto bad;
			*commit = true;
			return 0;
		}
		if (tp_grow(staged, cap, *nst, sizeof(**staged), 256) < 0)
			return -ENOMEM;
		(*staged)[(*nst)++] = r;
	}
	return 0;
bad:
	snprintf(err, errlen, "journal block %llu: malformed record %u of %u",
		 (unsigned long long)seq, i + 1, h->count);
	return -EUCLEAN;
}

int
tp_replay(struct dio_tpool *p, char *err, size_t errlen, unsigned int *nblocks)
{
	uint64_t J = p->sb.journal_blocks, seq = p->sb.journal_tail, open_txn = 0;
	struct tp_rec *staged = NULL;
	size_t nst = 0, cap = 0;
	bool open = false;
	int ret;

	*nblocks = 0;
	ret = tp_buf_reserve(p, J * TP_BLOCK);
	if (ret < 0)
		return ret;
	ret = p->io->pread(p->io->priv, p->fd, p->buf, J * TP_BLOCK,
			   p->sb.journal_start * TP_BLOCK);
	if (ret < 0)
		return ret;
	p->head = seq;
	for (uint64_t i = 0; i < J; i++, seq++) {
		const uint8_t *blk = p->buf + (seq % J) * TP_BLOCK;
		const struct tp_hdr *h = (const void *)blk;
		bool commit;

		if (!tp_verify(blk, p->sb.h.uuid, TP_BT_JOURNAL, p->sb.journal_start + seq % J) ||
		    h->gen != seq)
			break;
		if (h->aux == seq) {
			nst = 0;	/* a new transaction; an unfinished one is dropped */
			open = true;
			open_txn = seq;
		} else if (!open || h->aux != open_txn) {
			break;
		}
		ret = tp_parse(blk, &staged, &nst, &cap, &commit, open_txn, seq, err, errlen);
		if (ret < 0)
			goto out;
		if (!commit)
			continue;
		for (size_t k = 0; k < nst; k++) {
			ret = tp_apply(p, &staged[k], err, errlen);
			if (ret < 0)
				goto out;
		}
		nst = 0;
		open = false;
		p->head = seq + 1;
		(*nblocks) = (unsigned int)(p->head - p->sb.journal_tail);
	}
	/*
	 * Blocks past the replayed end that verify must stay unreachable:
	 * the next commit would go to p->head and a later replay would run on
	 * into them. New blocks start after the highest of their sequences.
	 */
	for (uint64_t i = 0; i < J; i++) {
		const struct tp_hdr *h = (const void *)(p->buf + i * TP_BLOCK);

		if (tp_verify(h, p->sb.h.uuid, TP_BT_JOURNAL, p->sb.journal_start + i) &&
		    h->gen >= p->head && h->gen < UINT64_MAX) {
			p->head = h->gen + 1;
			p->journal_gap = true;
		}
	}
	ret = 0;
out:
	free(staged);
	return ret;
}
