/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's enumeration: every crash state of a workload's log,
 * checked, its failures reported and saved. See crash.h.
 */

#include <string.h>

#include "crash.h"
#include "helper.h"

/* ---- enumeration ---- */

struct run_opts run;

/*
 * A failing state on stderr at once, whatever reports it later (ctest
 * --output-on-failure keeps it): the first few in one line each, the
 * first of a workload also as a whole case file to cut out of the log and
 * replay (test-pool-crash --replay FILE).
 */
static void
report_state(const struct workload *wl, const struct cstate *cs, const char *name)
{
	bool first = !run.wfails++;
	char torn[80] = "", rcv[48] = "";

	if (run.reported >= 20)
		return;
	run.reported++;
	if (cs->tw >= 0)
		snprintf(torn, sizeof(torn), ", write %d torn to sectors [%u, %u)", cs->tw, cs->ta,
			 cs->tb);
	if (cs->rk >= 0)
		snprintf(rcv, sizeof(rcv), ", recovery crashed at %d", cs->rk);
	fprintf(stderr, "crash simulator: FAILING STATE of %s (seed %llu, order %llu): crash "
		"point %d, %d volatile writes present%s%s: %s\n", name,
		(unsigned long long)wl->seed, (unsigned long long)wl->order, cs->k, cs->nsel, torn,
		rcv, failmsg);
	if (!first || run.dumped >= (wl->trace ? 1 : 3))
		return;	/* a trace is long: the first one only */
	run.dumped++;
	fprintf(stderr, "crash simulator: the case, to replay from a file:\n");
	write_case(stderr, wl, cs);
	fprintf(stderr, "crash simulator: end of the case\n");
}

static void
try_state(struct cstate *cs, const char *name)
{
	if (check_state(cs))
		return;
	if (!run.failures++)
		snprintf(run.first, sizeof(run.first), "%s k=%d: %s", name, cs->k, failmsg);
	save_case(cur, cs);
	report_state(cur, cs, name);
}

typedef void (*subset_fn)(struct cstate *cs, void *arg);

/* The volatile subsets (and torn writes) at crash point k of L, each into cs. */
static void
for_subsets(const struct dlog *L, int k, int *sel, int *nsel, int *tw, uint32_t *ta,
	    uint32_t *tb, struct cstate *cs, subset_fn fn, void *arg)
{
	int vol[MAXW];
	int nv = volatile_set(L, k, vol);
	int lim = run.lng ? 10 : 8;
	uint64_t nm = nv <= lim ? 1ull << nv : 2 + 2 * (uint64_t)nv + (run.lng ? 16 : 0);

	for (uint64_t m = 0; m < nm; m++) {
		*nsel = 0;
		for (int j = 0; j < nv; j++) {
			bool in;

			if (nv <= lim)
				in = (m >> j) & 1;
			else if (m < 2)
				in = m == 1;
			else if (m < 2 + 2 * (uint64_t)nv)
				in = ((m - 2) / 2 == (uint64_t)j) == ((m & 1) == 0);
			else
				in = rng_next(&run.rng) & 1;
			if (in)
				sel[(*nsel)++] = vol[j];
		}
		fn(cs, arg);
	}
	/* Torn: the first half, the second half, and in the long mode a random range. */
	*nsel = 0;
	for (int j = 0; j < nv; j++) {
		uint32_t n = (uint32_t)(L->w[vol[j]].len / SEC);

		if (n < 2)
			continue;
		for (int t = 0; t < (run.lng ? 3 : 2); t++) {
			uint32_t a = t == 0 ? 0 : n / 2, b = t == 0 ? n / 2 : n;

			if (t == 2) {
				a = (uint32_t)(rng_next(&run.rng) % n);
				b = a + 1 + (uint32_t)(rng_next(&run.rng) % (n - a));
			}
			*tw = vol[j];
			*ta = a;
			*tb = b;
			fn(cs, arg);
		}
	}
	*tw = -1;
}

static void
recov_state(struct cstate *cs, void *arg)
{
	try_state(cs, arg);
}

static void
recov_point(struct cstate *cs, void *arg)
{
	build(img, base, img_size, &dl, cs->k, cs->sel, cs->nsel, cs->tw, cs->ta, cs->tb);
	if (!run_recovery(img)) {
		cs->rk = 0;
		try_state(cs, arg);	/* fails the same way, and is saved */
		cs->rk = -1;
		return;
	}
	rl_current = true;
	for (int rk = 0; rk <= rl.ev; rk++) {
		/* The long mode: about 6 points of each recovery. */
		if (run.lng && rl.ev > 6 && rng_next(&run.rng) % (uint64_t)rl.ev >= 6)
			continue;
		cs->rk = rk;
		for_subsets(&rl, rk, cs->rsel, &cs->nrsel, &cs->rtw, &cs->rta, &cs->rtb, cs,
			    recov_state, arg);
	}
	rl_current = false;
	cs->rk = -1;
	cs->nrsel = 0;
}

static void
data_state(struct cstate *cs, void *arg)
{
	cs->rk = -1;
	try_state(cs, arg);
	if (run.recov_every && ++run.counter % (uint64_t)run.recov_every == 0)
		recov_point(cs, arg);
}

/* Whether k is just after the reply of a snapshot or clone. */
static bool
derive_point(int k)
{
	for (int i = 0; i < rq.nr; i++)
		if (is_derive(rq.r[i].s.op) && rq.r[i].done + 1 == k)
			return true;
	return false;
}

/*
 * Whether k is just after a metadata write completed: where a record made
 * durable too early (R1) shows, as the data it maps may still be volatile.
 */
static bool
meta_point(int k)
{
	for (int i = 0; i < dl.nw; i++)
		if (dl.w[i].off < data_start && dl.w[i].done + 1 == k)
			return true;
	return false;
}

/* Every crash point of the logged workload, with its volatile subsets. */
uint64_t
crash_states(const char *name)
{
	static struct cstate cs;
	uint64_t f0 = run.failures;

	run.saved = run.wfails = 0;
	for (int k = 0; k <= dl.ev; k++) {
		/*
		 * The long mode: about 24 crash points a workload, for more
		 * workloads (run.points, when set); always the one after each
		 * snapshot or clone (its frozen contents, checked there), and
		 * with run.points the one after each metadata write.
		 */
		int pts = run.points ? run.points : 24;

		if ((run.lng || run.points) && dl.ev > pts &&
		    rng_next(&run.rng) % (uint64_t)dl.ev >= (uint64_t)pts && !derive_point(k) &&
		    !(run.points && meta_point(k)))
			continue;
		cs = (struct cstate){ .k = k, .tw = -1, .rk = -1, .rtw = -1 };
		for_subsets(&dl, k, cs.sel, &cs.nsel, &cs.tw, &cs.ta, &cs.tb, &cs, data_state,
			    (void *)name);
	}
	return run.failures - f0;
}

/* Every subset at crash point cs->k of the logged workload (and, with rk, of its recovery). */
uint64_t
crash_point(struct cstate *cs, const char *name)
{
	uint64_t f0 = run.failures;

	run.saved = run.wfails = 0;
	run.recov_every = cs->rk >= 0;
	cs->tw = -1;
	cs->rk = -1;
	cs->rtw = -1;
	for_subsets(&dl, cs->k, cs->sel, &cs->nsel, &cs->tw, &cs->ta, &cs->tb, cs, data_state,
		    (void *)name);
	run.recov_every = 0;
	return run.failures - f0;
}
