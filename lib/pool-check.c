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
dio_tpool_check(const char *path, const struct dio_tpool_opts *opts, dio_tpool_report_fn report,
		void *priv, struct dio_tpool_check_result *res)
{
	struct dio_tpool *p;
	struct tp_super sb;
	uint8_t *refs;
	char err[400];
	uint64_t leaks = 0;
	int ret;

	memset(res, 0, sizeof(*res));
	ret = tp_load(path, opts, true, &p, err, sizeof(err));
	if (ret == -EUCLEAN || ret == -EOPNOTSUPP) {
		say(report, priv, res, 2, "%s", err);
		return 0;
	}
	if (ret < 0)
		return ret;
	for (int s = 0; s < 2; s++) {
		int r = tp_super_read(p, s, &sb);

		if (r < 0)
			say(report, priv, res, 0, "superblock slot %c: %s", 'A' + s,
			    r == -EUCLEAN ? "not valid (never written, or torn)" : strerror(-r));
		else if (memcmp(sb.h.uuid, p->sb.h.uuid, 16))
			say(report, priv, res, 0, "superblock slot %c: another pool's", 'A' + s);
		else
			say(report, priv, res, 0, "superblock slot %c: generation %" PRIu64 "%s",
			    'A' + s, sb.h.gen, sb.h.gen == p->sb.h.gen ? " (in use)" : "");
	}
	say(report, priv, res, 0, "journal: %" PRIu64 " blocks of committed transactions",
	    p->head - p->sb.journal_tail);
	refs = calloc(p->sb.nr_chunks, 1);
	if (!refs) {
		tp_free(p);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->nvols; i++) {
		struct tp_vol *v = p->vols[i];

		for (uint64_t l = 0; v && l < v->nl; l++) {
			struct tp_ment *e = tp_ment(v, l, false);

			if (!e || !e->p1)
				continue;
			if (e->p1 - 1 >= p->sb.nr_chunks || refs[e->p1 - 1]) {
				say(report, priv, res, 2, "volume %s: chunk %" PRIu64
				    " maps to %u, out of bounds or shared", v->name, l, e->p1 - 1);
				continue;
			}
			refs[e->p1 - 1] = 1;
		}
	}
	for (uint64_t c = 0; c < p->sb.nr_chunks; c++) {
		if (p->space[c] < refs[c])
			say(report, priv, res, 2, "chunk %" PRIu64 ": referenced, space map says "
			    "free (under-count)", c);
		else if (p->space[c] > refs[c])
			leaks++;
	}
	if (leaks) {
		res->leaks += (unsigned int)leaks - 1;
		say(report, priv, res, 1, "%" PRIu64 " chunks counted used that nothing references "
		    "(leaked; a checkpoint takes them back)", leaks);
	}
	free(refs);
	tp_free(p);
	return 0;
}
