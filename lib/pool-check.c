/* SPDX-License-Identifier: MIT */
/*
 * The checker: recovery in memory (nothing written), then everything
 * recovery does not refuse on its own. Damage (a superblock or checkpoint
 * that does not verify with no good one left, a record out of bounds, a
 * chunk mapped twice, a space map under-count) is a problem; a chunk the
 * space map counts but nothing references is a leak (R4 allows it).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

__attribute__((format(printf, 5, 6))) static void
say(dio_tpool_report_fn report, void *priv, struct dio_tpool_check_result *res, int sev,
    const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == 2)
		res->problems++;
	else if (sev == 1)
		res->leaks++;
	else
		res->notes++;
	if (report)
		report(priv, sev, msg);
}

int
tp_recount(struct dio_tpool *p, uint16_t **out, tp_recount_fn bad, void *priv)
{
	uint64_t n = p->sb.nr_chunks ? p->sb.nr_chunks : 1, total = 0, done = 0;
	uint16_t *refs = calloc(n, sizeof(*refs));
	uint32_t *at = calloc(n, sizeof(*at));	/* lchunk + 1 of its first reference */
	uint32_t mark = tp_leaf_mark(p);

	if (!refs || !at) {
		free(refs);
		free(at);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->nvols; i++)
		total += p->vols[i] ? p->vols[i]->nl : 0;
	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		for (uint64_t k = 0; v && k < (v->nl + TP_LEAF - 1) / TP_LEAF; k++) {
			struct tp_leaf *lf = v->leaf[k];

			done += TP_LEAF;
			tp_progress(p, "counting references", done < total ? done : total, total);
			/* A shared leaf counts once, like the snapshot that shared it. */
			if (!lf || lf->mark == mark)
				continue;
			lf->mark = mark;
			for (uint64_t j = 0; j < TP_LEAF; j++) {
				uint64_t l = k * TP_LEAF + j, c = lf->e[j].p1 - 1;

				if (!lf->e[j].p1)
					continue;
				/* Shared only where a snapshot shared it: the same lchunk. */
				if (c >= p->sb.nr_chunks || l >= v->nl || (at[c] && at[c] != l + 1) ||
				    refs[c] == UINT16_MAX) {
					if (bad)
						bad(priv, v, l, c);
					continue;
				}
				at[c] = (uint32_t)l + 1;
				refs[c]++;
			}
		}
	}
	free(at);
	*out = refs;
	return 0;
}

/* What check and repair share: where they report, what they found. */
struct tp_finder {
	dio_tpool_report_fn report;
	void *priv;
	struct dio_tpool_check_result *res;
};

static void
bad_ref(void *priv, const struct tp_vol *v, uint64_t l, uint64_t c)
{
	struct tp_finder *f = priv;

	say(f->report, f->priv, f->res, 2, "volume %s: chunk %" PRIu64 " maps to %" PRIu64
	    ", out of bounds or mapped elsewhere too", v->name, l, c);
}

/*
 * Slot s holds a newer superblock than the one open fell back to: its
 * checkpoint did not verify, and what was committed since is not seen.
 */
static void
newer_slot(struct tp_finder *f, int s, const struct tp_super *sb, uint64_t in_use)
{
	say(f->report, f->priv, f->res, 2, "superblock slot %c: generation %" PRIu64 " is newer "
	    "than the one in use (%" PRIu64 ") but its checkpoint does not verify (the log says "
	    "why): what was committed after generation %" PRIu64 " is not seen", 'A' + s,
	    sb->h.gen, in_use, in_use);
}

/*
 * Recount p's references against its space map: under-counts are
 * problems, over-counts leaks (one finding for the chunks nothing
 * references, one for shared ones counted too high). The recount goes
 * to *counts when counts is not NULL. 0 or -ENOMEM.
 */
static int
find(struct dio_tpool *p, struct tp_finder *f, uint16_t **counts)
{
	uint64_t leaks = 0, over = 0;
	uint16_t *refs;
	int ret = tp_recount(p, &refs, bad_ref, f);

	if (ret < 0)
		return ret;
	for (uint64_t c = 0; c < p->sb.nr_chunks; c++) {
		tp_progress(p, "checking the space map", c + 1, p->sb.nr_chunks);
		if (p->space[c] < refs[c])
			say(f->report, f->priv, f->res, 2, "chunk %" PRIu64 ": %u references, space "
			    "map says %u (under-count)", c, refs[c], p->space[c]);
		else if (p->space[c] > refs[c] && refs[c] == 0)
			leaks++;
		else if (p->space[c] > refs[c])
			over++;
	}
	if (leaks) {
		f->res->leaks += (unsigned int)leaks - 1;
		say(f->report, f->priv, f->res, 1, "%" PRIu64 " chunks counted used that nothing "
		    "references (leaked; repair takes them back)", leaks);
	}
	if (over) {
		f->res->leaks += (unsigned int)over - 1;
		say(f->report, f->priv, f->res, 1, "%" PRIu64 " shared chunks counted with more "
		    "references than maps hold them (leaked; repair corrects the counts)", over);
	}
	if (counts)
		*counts = refs;
	else
		free(refs);
	return 0;
}

int
dio_tpool_check(const char *path, const struct dio_tpool_opts *opts, dio_tpool_report_fn report,
		void *priv, struct dio_tpool_check_result *res)
{
	struct tp_finder f = { report, priv, res };
	struct dio_tpool *p;
	struct tp_super sb;
	char err[400];
	int ret;

	memset(res, 0, sizeof(*res));
	ret = tp_load(path, opts, true, &p, err, sizeof(err));
	if (ret == -EUCLEAN || ret == -EOPNOTSUPP) {
		say(report, priv, res, 2, "%s", err);
		return 0;
	}
	if (ret < 0) {
		if (opts && opts->errbuf && opts->errlen)
			snprintf(opts->errbuf, opts->errlen, "%s", err);
		return ret;
	}
	for (int s = 0; s < 2; s++) {
		int r = tp_super_read(p, s, &sb);

		if (r < 0)
			say(report, priv, res, 0, "superblock slot %c: %s", 'A' + s,
			    r == -EUCLEAN ? "not valid (never written, or torn)" : strerror(-r));
		else if (memcmp(sb.h.uuid, p->sb.h.uuid, 16))
			say(report, priv, res, 0, "superblock slot %c: another pool's", 'A' + s);
		else if (sb.h.gen > p->sb.h.gen)
			newer_slot(&f, s, &sb, p->sb.h.gen);
		else
			say(report, priv, res, 0, "superblock slot %c: generation %" PRIu64 "%s",
			    'A' + s, sb.h.gen, sb.h.gen == p->sb.h.gen ? " (in use)" : "");
	}
	say(report, priv, res, 0, "journal: %" PRIu64 " blocks of committed transactions",
	    p->head - p->sb.journal_tail);
	ret = find(p, &f, NULL);
	tp_free(p);
	return ret;
}

int
dio_tpool_repair(const char *path, const struct dio_tpool_opts *opts,
		 dio_tpool_report_fn report, void *priv, struct dio_tpool_check_result *res)
{
	struct dio_tpool_opts o = opts ? *opts : (struct dio_tpool_opts){ 0 };
	struct tp_finder f = { report, priv, res };
	struct dio_tpool *p;
	uint16_t *counts;
	char err[400];
	int ret;

	memset(res, 0, sizeof(*res));
	o.readonly = false;
	/* The lock: not while a daemon (or another tool) has the pool open. */
	ret = tp_load(path, &o, false, &p, err, sizeof(err));
	if (ret == -EUCLEAN || ret == -EOPNOTSUPP) {
		say(report, priv, res, 2, "%s: not repairable here (%s)", err,
		    ret == -EUCLEAN ? "no superblock with a checkpoint that verifies, or a "
		    "journal record that contradicts it" : "written by a newer version");
		return 0;
	}
	if (ret < 0) {
		if (opts && opts->errbuf && opts->errlen)
			snprintf(opts->errbuf, opts->errlen, "%s", err[0] ? err : strerror(-ret));
		return ret;
	}
	if (p->readonly) {
		say(report, priv, res, 2, "read-only compatible features %#" PRIx64 " this version "
		    "does not know: it may not write the pool", p->sb.feat_ro_compat);
		tp_free(p);
		return 0;
	}
	for (int s = 0; s < 2; s++) {
		struct tp_super sb;

		/* Writing a checkpoint over an older state would lose the newer one. */
		if (tp_super_read(p, s, &sb) == 0 && !memcmp(sb.h.uuid, p->sb.h.uuid, 16) &&
		    sb.h.gen > p->sb.h.gen)
			newer_slot(&f, s, &sb, p->sb.h.gen);
	}
	ret = find(p, &f, &counts);
	if (ret < 0 || res->problems) {
		/* An under-count or a shared chunk: whose is it? Not guessed here. */
		if (ret == 0)
			say(report, priv, res, 0, "nothing written: repair takes back leaks only, "
			    "and refuses a pool with problems");
		if (ret == 0)
			free(counts);
		tp_free(p);
		return ret;
	}
	if (res->leaks) {
		/* Nothing maps them: free now, and the checkpoint writes the recount. */
		for (uint64_t c = 0; c < p->sb.nr_chunks; c++) {
			if (p->space[c] <= counts[c])
				continue;
			p->space[c] = counts[c];
			if (!counts[c] && p->cstate[c] == TP_C_USED) {
				p->cstate[c] = TP_C_FREE;
				p->free_chunks++;
			}
		}
		ret = tp_checkpoint(p);
		if (ret == 0)
			say(report, priv, res, 0, "%u leaked chunks taken back (checkpoint %" PRIu64
			    ")", res->leaks, p->sb.h.gen);
	}
	free(counts);
	tp_free(p);
	return ret;
}
