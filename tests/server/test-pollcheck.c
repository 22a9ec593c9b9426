/* SPDX-License-Identifier: MIT */
/* server/pollcheck.c: the decision, and the cycle of phases driven by a clock of our own. */
#include <criterion/criterion.h>

#include "pollcheck.h"

#define MS (1000ull * 1000)

Test(pollcheck, decide)
{
	uint64_t w = POLLCHECK_WINDOW_NS;

	/* polling must gain at least POLLCHECK_GAIN_PCT */
	cr_assert(pollcheck_decide(1000, w, 900, w, false));
	cr_assert_not(pollcheck_decide(1000, w, 1000, w, true), "a tie goes to not polling");
	cr_assert_not(pollcheck_decide(1040, w, 1000, w, true), "4%% is not enough");
	cr_assert(pollcheck_decide(1060, w, 1000, w, false));
	cr_assert_not(pollcheck_decide(597, w, 853, w, true), "QD1 on shared cores: polling loses");
	/* rates, not counts: a window that ran long counts for its length */
	cr_assert_not(pollcheck_decide(2000, 2 * w, 1000, w, true));
	cr_assert(pollcheck_decide(2000, 2 * w, 800, w, false));
	/* too few replies to tell: keep what we have */
	cr_assert(pollcheck_decide(10, w, 0, w, true));
	cr_assert_not(pollcheck_decide(0, w, 10, w, false));
	cr_assert(pollcheck_decide(POLLCHECK_MIN_REPLIES, w, 0, w, false));
	cr_assert(pollcheck_decide(100, 0, 100, w, true), "an empty window decides nothing");
}

/*
 * Drive one whole cycle: replies arrive at with_rate per ms while polling is
 * allowed and at without_rate while not. Returns whether polling is allowed
 * in the RUN phase that follows.
 */
static bool
cycle(struct pollcheck *pc, uint64_t *now, unsigned int with_rate, unsigned int without_rate)
{
	uint64_t end = *now + POLLCHECK_PERIOD_NS;

	while (*now < end) {
		bool allowed = pollcheck_allowed(pc, *now);

		pollcheck_count(pc, allowed ? with_rate : without_rate);
		*now += MS;
	}
	return pollcheck_allowed(pc, *now);
}

Test(pollcheck, cycle_keeps_the_better_mode)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS;

	pollcheck_init(&pc);
	cr_assert(pollcheck_allowed(&pc, now), "polls as configured until measured");
	/* polling gains 30%: kept */
	cr_assert(cycle(&pc, &now, 13, 10));
	cr_assert(cycle(&pc, &now, 13, 10));
	cr_assert_eq(pc.trials, 2);
	cr_assert_eq(pc.trials_poll, 2);
	/* the machine changed: now polling loses, and is dropped at the next check */
	cr_assert_not(cycle(&pc, &now, 6, 8));
	cr_assert_eq(pc.trials_poll, 2);
	cr_assert_eq(pc.last_poll, 600);
	cr_assert_eq(pc.last_nopoll, 800);
	/* no polling while it loses, but still tried each cycle: it comes back */
	cr_assert_not(cycle(&pc, &now, 6, 8));
	cr_assert(cycle(&pc, &now, 20, 8));
	/* idle: nothing to tell, the mode stays */
	cr_assert(cycle(&pc, &now, 0, 0));
	cr_assert_eq(pc.trials, 5);
	pollcheck_fini(&pc);
}

Test(pollcheck, trial_runs_the_other_mode)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS, t;
	unsigned int on = 0, off = 0;

	pollcheck_init(&pc);
	/*
	 * Polling pays (130 replies a ms against 100): over the first period,
	 * exactly one window runs without it, and the first check decides
	 * after three windows, not a period on.
	 */
	for (t = 0; t < POLLCHECK_PERIOD_NS; t += MS, now += MS) {
		bool allowed = pollcheck_allowed(&pc, now);

		if (allowed)
			on++;
		else
			off++;
		pollcheck_count(&pc, allowed ? 130 : 100);
		if (t == 3 * POLLCHECK_WINDOW_NS + MS)
			cr_assert_eq(pc.trials, 1, "the first check came late");
	}
	cr_assert_eq(off, POLLCHECK_WINDOW_NS / MS, "the trial window: %u ms off", off);
	cr_assert_eq(on + off, POLLCHECK_PERIOD_NS / MS);
	cr_assert_eq(pc.trials_poll, pc.trials, "polling kept");
	pollcheck_fini(&pc);
}
