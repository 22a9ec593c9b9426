/* SPDX-License-Identifier: MIT */
/* server/pollcheck.c: the decision, and the cycle of phases driven by a clock of our own. */
#include <criterion/criterion.h>

#include "pollcheck.h"

#define MS (1000ull * 1000)

/*
 * The clocks pollcheck reads, faked: the process's CPU time and all CPUs'
 * busy time, moved by the tests as their own clock moves.
 */
static uint64_t fake_cpu, fake_busy;

static uint64_t
fake_cpu_ns(void)
{
	return fake_cpu;
}

static uint64_t
fake_busy_ns(void)
{
	return fake_busy;
}

static void
init_faked(struct pollcheck *pc)
{
	pollcheck_init(pc);
	fake_cpu = fake_busy = 0;
	pc->cpu_ns = fake_cpu_ns;
	pc->busy_ns = fake_busy_ns;
}

/* pollcheck_decide on two windows in which the rest of the machine had
 * others_with and others_without CPUs. */
static bool
decide_others(uint64_t with, uint64_t with_ns, double others_with, uint64_t without,
	      uint64_t without_ns, double others_without, bool current)
{
	struct pollcheck_window a = { .replies = with, .ns = with_ns,
				      .others = (int64_t)(others_with * (double)with_ns) };
	struct pollcheck_window b = { .replies = without, .ns = without_ns,
				      .others = (int64_t)(others_without * (double)without_ns) };

	return pollcheck_decide(&a, &b, current);
}

static bool
decide(uint64_t with, uint64_t with_ns, uint64_t without, uint64_t without_ns, bool current)
{
	return decide_others(with, with_ns, 0, without, without_ns, 0, current);
}

Test(pollcheck, decide)
{
	uint64_t w = POLLCHECK_WINDOW_NS;

	/* polling must gain at least POLLCHECK_GAIN_PCT */
	cr_assert(decide(1000, w, 900, w, false));
	cr_assert_not(decide(1000, w, 1000, w, true), "a tie goes to not polling");
	cr_assert_not(decide(1040, w, 1000, w, true), "4%% is not enough");
	cr_assert(decide(1060, w, 1000, w, false));
	cr_assert_not(decide(597, w, 853, w, true), "QD1 on shared cores: polling loses");
	/* rates, not counts: a window that ran long counts for its length */
	cr_assert_not(decide(2000, 2 * w, 1000, w, true));
	cr_assert(decide(2000, 2 * w, 800, w, false));
	/* too few replies to tell: keep what we have */
	cr_assert(decide(10, w, 0, w, true));
	cr_assert_not(decide(0, w, 10, w, false));
	cr_assert(decide(POLLCHECK_MIN_REPLIES, w, 0, w, false));
	cr_assert(decide(100, 0, 100, w, true), "an empty window decides nothing");
}

Test(pollcheck, decide_weighs_the_rest_of_the_machine)
{
	uint64_t w = POLLCHECK_WINDOW_NS;

	/* a client answered faster uses more CPU itself: polling kept */
	cr_assert(decide_others(1300, w, 0.4, 1000, w, 0.3, false));
	/* a busy job that lost half a CPU to the spin: not polling, gain or no gain */
	cr_assert_not(decide_others(1300, w, 1.0, 1000, w, 1.5, true));
	/* within POLLCHECK_HARM_PCT of a CPU (tick noise): kept */
	cr_assert(decide_others(1300, w, 1.3, 1000, w, 1.5, false));
	cr_assert_not(decide_others(1300, w, 1.5 - (POLLCHECK_HARM_PCT + 5) / 100.0, 1000, w, 1.5,
				    true));
	/* the harm alone never makes polling win */
	cr_assert_not(decide_others(1000, w, 2.0, 1000, w, 0.0, true));
}

/*
 * Run until the check's next decision, and return whether polling is
 * allowed after it: replies arrive at with_rate per ms while polling is
 * allowed and at without_rate while not, and the rest of the machine gets
 * others_with or others_without CPUs. *took is set to how long it ran.
 */
static bool
cycle_took(struct pollcheck *pc, uint64_t *now, unsigned int with_rate,
	   unsigned int without_rate, double others_with, double others_without, uint64_t *took)
{
	uint64_t start = *now;
	bool trial = false;

	for (;;) {
		bool allowed = pollcheck_allowed(pc, *now);

		if (pc->phase == POLLCHECK_TRIAL)
			trial = true;
		else if (trial)
			break;	/* decided: the next RUN has begun */
		cr_assert_lt(*now - start, 2 * POLLCHECK_PERIOD_MAX_NS, "no decision");
		pollcheck_count(pc, allowed ? with_rate : without_rate);
		/* the process spins a whole CPU while polling, a third of one not */
		fake_cpu += allowed ? MS : MS / 3;
		fake_busy += (allowed ? MS : MS / 3) +
			     (uint64_t)((allowed ? others_with : others_without) * (double)MS);
		*now += MS;
	}
	if (took)
		*took = *now - start;
	return pollcheck_allowed(pc, *now);
}

static bool
cycle_others(struct pollcheck *pc, uint64_t *now, unsigned int with_rate,
	     unsigned int without_rate, double others_with, double others_without)
{
	return cycle_took(pc, now, with_rate, without_rate, others_with, others_without, NULL);
}

static bool
cycle(struct pollcheck *pc, uint64_t *now, unsigned int with_rate, unsigned int without_rate)
{
	return cycle_others(pc, now, with_rate, without_rate, 0.2, 0.2);
}

Test(pollcheck, cycle_keeps_the_better_mode)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS;

	init_faked(&pc);
	cr_assert_not(pollcheck_allowed(&pc, now), "starts without polling, the cheaper mode");
	/* polling gains 30%: kept */
	cr_assert(cycle(&pc, &now, 13, 10));
	cr_assert(cycle(&pc, &now, 13, 10));
	cr_assert_eq(pc.trials, 2);
	cr_assert_eq(pc.trials_poll, 2);
	/* the machine changed: now polling loses, and is dropped at the next check */
	cr_assert_not(cycle(&pc, &now, 6, 8));
	cr_assert_eq(pc.trials_poll, 2);
	cr_assert_eq(pc.last_poll.replies, 600);
	cr_assert_eq(pc.last_nopoll.replies, 800);
	cr_assert_eq(pc.last_poll.cpu, 100 * MS, "%llu ns", (unsigned long long)pc.last_poll.cpu);
	cr_assert_eq(pc.last_nopoll.others, 20 * MS, "%lld ns", (long long)pc.last_nopoll.others);
	/* no polling while it loses, but still tried each cycle: it comes back */
	cr_assert_not(cycle(&pc, &now, 6, 8));
	cr_assert(cycle(&pc, &now, 20, 8));
	/* idle: nothing to tell, the mode stays */
	cr_assert(cycle(&pc, &now, 0, 0));
	cr_assert_eq(pc.trials, 5);
	pollcheck_fini(&pc);
}

Test(pollcheck, polling_that_takes_cpu_from_other_work_stops)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS;

	init_faked(&pc);
	/* 30% more replies, and the machine's other work keeps its 1.5 CPUs: kept */
	cr_assert(cycle_others(&pc, &now, 13, 10, 1.5, 1.5));
	cr_assert_eq(pc.trials_poll, 1);
	/* a busy job gets 0.8 CPU while we spin, 1.5 while we do not: dropped */
	cr_assert_not(cycle_others(&pc, &now, 13, 10, 0.8, 1.5));
	cr_assert_eq(pc.trials_poll, 1);
	cr_assert_eq(pc.last_poll.others, 80 * MS, "%lld ns", (long long)pc.last_poll.others);
	/* it stays off while the job runs, and comes back once it ends */
	cr_assert_not(cycle_others(&pc, &now, 13, 10, 0.8, 1.5));
	cr_assert(cycle_others(&pc, &now, 13, 10, 0.1, 0.1));
	pollcheck_fini(&pc);
}

Test(pollcheck, trial_runs_the_other_mode)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS, t;
	unsigned int on = 0, off = 0;

	init_faked(&pc);
	/*
	 * Polling pays (130 replies a ms against 100). The server starts
	 * without it: two windows (run, measure) without, then the settle and
	 * the trial with, and the first check decides then, not a period on.
	 * Polling is kept from there to the end of the first period.
	 */
	for (t = 0; t < POLLCHECK_PERIOD_NS; t += MS, now += MS) {
		bool allowed = pollcheck_allowed(&pc, now);

		if (allowed)
			on++;
		else
			off++;
		pollcheck_count(&pc, allowed ? 130 : 100);
		if (t == 3 * POLLCHECK_WINDOW_NS + POLLCHECK_SETTLE_NS + MS)
			cr_assert_eq(pc.trials, 1, "the first check came late");
	}
	cr_assert_eq(off, 2 * POLLCHECK_WINDOW_NS / MS, "%u ms without polling", off);
	cr_assert_eq(on + off, POLLCHECK_PERIOD_NS / MS);
	cr_assert_eq(pc.trials_poll, pc.trials, "polling chosen");
	/* the next trial, 3 s after the first, runs without polling for settle and window */
	for (t = 0, off = 0; t < POLLCHECK_PERIOD_NS; t += MS, now += MS) {
		bool allowed = pollcheck_allowed(&pc, now);

		off += !allowed;
		pollcheck_count(&pc, allowed ? 130 : 100);
	}
	cr_assert_eq(off, (POLLCHECK_SETTLE_NS + POLLCHECK_WINDOW_NS) / MS,
		     "settle and trial: %u ms off", off);
	pollcheck_fini(&pc);
}

Test(pollcheck, the_period_backs_off_while_decisions_agree)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS, took;

	init_faked(&pc);
	cr_assert(cycle_took(&pc, &now, 13, 10, 0.2, 0.2, &took));	/* the first: a switch */
	cr_assert_eq(pc.period_ns, POLLCHECK_PERIOD_NS);
	cr_assert(cycle_took(&pc, &now, 13, 10, 0.2, 0.2, &took));
	cr_assert_eq(took, POLLCHECK_PERIOD_NS, "%llu ms", (unsigned long long)(took / MS));
	cr_assert(cycle_took(&pc, &now, 13, 10, 0.2, 0.2, &took));
	cr_assert_eq(took, 2 * POLLCHECK_PERIOD_NS, "%llu ms", (unsigned long long)(took / MS));
	cr_assert(cycle_took(&pc, &now, 13, 10, 0.2, 0.2, &took));
	cr_assert_eq(took, 4 * POLLCHECK_PERIOD_NS, "%llu ms", (unsigned long long)(took / MS));
	cr_assert(cycle_took(&pc, &now, 13, 10, 0.2, 0.2, &took));
	cr_assert_eq(took, POLLCHECK_PERIOD_MAX_NS, "capped: %llu ms",
		     (unsigned long long)(took / MS));
	/* a change of mode: the next check comes a short period on */
	cr_assert_not(cycle_took(&pc, &now, 6, 8, 0.2, 0.2, &took));
	cr_assert_not(cycle_took(&pc, &now, 6, 8, 0.2, 0.2, &took));
	cr_assert_eq(took, POLLCHECK_PERIOD_NS, "%llu ms", (unsigned long long)(took / MS));
	pollcheck_fini(&pc);
}

Test(pollcheck, window_next)
{
	uint64_t max = 500 * 1000, win;

	/* an event within the cap of the last work re-opens the full window */
	cr_assert_eq(poll_window_next(0, max, 0, 100 * 1000), max);
	cr_assert_eq(poll_window_next(max / 4, max, max / 4, 200 * 1000), max,
		     "a short window that just missed grows to the cap");
	/* the window and the sleep together count: spinning the whole cap and
	 * then sleeping a little means no window within the cap would catch it */
	cr_assert_eq(poll_window_next(max, max, max, 100 * 1000), max / 2);
	/* events that keep coming 800 us after the work: every window ends
	 * empty, so they shrink to none, and stay off */
	win = max;
	for (int i = 0; i < 20 && win; i++)
		win = poll_window_next(win, max, win, 800 * 1000 - win);
	cr_assert_eq(win, 0, "empty windows did not stop polling: %llu ns",
		     (unsigned long long)win);
	cr_assert_eq(poll_window_next(0, max, 0, 2 * max), 0, "an idle reactor sleeps");
	/* until events come within the cap again */
	cr_assert_eq(poll_window_next(0, max, 0, 50 * 1000), max);
	/* below the smallest window worth a clock read: none */
	cr_assert_eq(poll_window_next(POLL_WINDOW_MIN_NS, max, POLL_WINDOW_MIN_NS, 2 * max), 0);
}

/*
 * What a 2-vCPU guest showed with a QD1 client: right after polling stops,
 * replies come at half the steady rate for 80 ms, then faster than with
 * polling. Runs until the next decision, with lag when lag, else with no
 * slow start; returns whether polling is allowed after it.
 */
static bool
decide_with_lag(struct pollcheck *pc, uint64_t *now, unsigned int poll_rate,
		unsigned int nopoll_rate, bool lag)
{
	uint64_t since = *now;
	bool was = pollcheck_allowed(pc, *now), trial = false;

	for (;;) {
		bool allowed = pollcheck_allowed(pc, *now);

		if (pc->phase == POLLCHECK_TRIAL)
			trial = true;
		else if (trial)
			break;
		if (allowed != was) {
			was = allowed;
			since = *now;
		}
		if (allowed)
			pollcheck_count(pc, poll_rate);
		else
			pollcheck_count(pc, lag && *now - since < 80 * MS ? nopoll_rate / 2
									 : nopoll_rate);
		*now += MS;
	}
	return pollcheck_allowed(pc, *now);
}

Test(pollcheck, the_trial_counts_after_it_settles)
{
	struct pollcheck pc;
	uint64_t now = 1000 * MS;

	cr_assert_lt(80 * MS, POLLCHECK_SETTLE_NS);
	init_faked(&pc);
	/* polling paid at first (a deeper queue, say): chosen */
	cr_assert(decide_with_lag(&pc, &now, 100, 50, false));
	/*
	 * Now the client waits for each reply, and polling loses: 75 replies a
	 * ms against 90, but without polling the first 80 ms run at 45. The
	 * trial (without polling) must be counted after that.
	 */
	cr_assert_not(decide_with_lag(&pc, &now, 75, 90, true),
		      "polling kept at 75 replies a ms against 90");
	cr_assert_eq(pc.last_nopoll.replies, 9000, "the trial counted %llu replies",
		     (unsigned long long)pc.last_nopoll.replies);
	cr_assert_eq(pc.last_poll.replies, 7500);
	/* and it stays: polling, tried after its own settle, loses each time */
	cr_assert_not(decide_with_lag(&pc, &now, 75, 90, true));
	cr_assert_not(decide_with_lag(&pc, &now, 75, 90, true));
	cr_assert_eq(pc.trials_poll, 1);
	pollcheck_fini(&pc);
}
