/* SPDX-License-Identifier: MIT */
/*
 * Polling that checks it pays (issue 16). Whether a spinning reactor
 * helps depends on who else needs the cores: with a client on the same
 * two cores, a QD1 stream measured 5977 IOPS polling against 8536 without,
 * although the machine never looked crowded (cpuload.c sees two runnable
 * tasks on two CPUs). So instead of guessing from the machine, measure
 * the outcome: every POLLCHECK_PERIOD_NS, count the replies the server
 * sends in one window of the chosen mode and in one window of the other,
 * and poll for the next cycle only if polling answered at least
 * POLLCHECK_GAIN_PCT more. Ties go to not polling, which costs less CPU.
 * Windows with too few replies (an idle or trickling server) decide
 * nothing: the adaptive window in reactor.c already closes when idle.
 *
 * The other mode's window starts POLLCHECK_SETTLE_NS after the switch.
 * A switch is not felt at once: on a 2-vCPU guest with a QD1 client,
 * the first 80 ms without polling ran at 4,500 replies/s and the rest at
 * 8,500-9,000, as much as a server that never polls (and polling, right
 * after a spell without, ran above its own steady rate for 30 ms). The
 * scheduler's view of the threads (load averages with a 32 ms half-life,
 * where a woken thread is placed) is the likely cause. Counted from the
 * switch, 100 ms windows chose polling at 7,400 replies/s over 9,000
 * without.
 *
 * Requests per second are the measure because the clients that polling
 * helps are the ones that wait for each reply (a fixed queue depth): for
 * them more replies per second is lower latency. A client that sends at a
 * fixed rate gets the same count either way, and then the cheaper mode
 * wins.
 */
#include <time.h>

#include "pollcheck.h"
#include "server.h"

/* The process's CPU time so far, in ns: what each window cost. */
static uint64_t
pollcheck_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Per second of a window, or 0 when it had no length. */
static double
pollcheck_rate(uint64_t n, uint64_t ns)
{
	return ns ? (double)n * 1e9 / (double)ns : 0;
}

void
pollcheck_init(struct pollcheck *pc)
{
	*pc = (struct pollcheck){ .allowed = true, .poll_chosen = true };
	pthread_mutex_init(&pc->lock, NULL);
}

void
pollcheck_fini(struct pollcheck *pc)
{
	pthread_mutex_destroy(&pc->lock);
}

bool
pollcheck_decide(uint64_t with, uint64_t with_ns, uint64_t without, uint64_t without_ns,
		 bool current)
{
	if ((with < POLLCHECK_MIN_REPLIES && without < POLLCHECK_MIN_REPLIES) || !with_ns ||
	    !without_ns)
		return current;
	/* with / with_ns > without / without_ns * (1 + gain) */
	return (double)with * (double)without_ns * 100.0 >
	       (double)without * (double)with_ns * (100.0 + POLLCHECK_GAIN_PCT);
}

/* Move past the boundary: a window ends at now, with the process at cpu ns. Under pc->lock. */
static void
pollcheck_advance(struct pollcheck *pc, uint64_t now, uint64_t cpu)
{
	uint64_t replies = __atomic_load_n(&pc->replies, __ATOMIC_RELAXED);
	uint64_t count = replies - pc->mark, len = now - pc->mark_ns, used = cpu - pc->mark_cpu;
	uint64_t next = now + POLLCHECK_WINDOW_NS;

	switch (pc->phase) {
	case POLLCHECK_RUN:
		pc->phase = POLLCHECK_MEASURE;
		break;
	case POLLCHECK_MEASURE:
		pc->phase = POLLCHECK_SETTLE;
		pc->measured = count;
		pc->measured_ns = len;
		pc->measured_cpu = used;
		next = now + POLLCHECK_SETTLE_NS;
		break;
	case POLLCHECK_SETTLE:
		pc->phase = POLLCHECK_TRIAL;
		break;
	case POLLCHECK_TRIAL:
	default: {
		uint64_t with = pc->poll_chosen ? pc->measured : count;
		uint64_t with_ns = pc->poll_chosen ? pc->measured_ns : len;
		uint64_t without = pc->poll_chosen ? count : pc->measured;
		uint64_t without_ns = pc->poll_chosen ? len : pc->measured_ns;
		uint64_t with_cpu = pc->poll_chosen ? pc->measured_cpu : used;
		uint64_t without_cpu = pc->poll_chosen ? used : pc->measured_cpu;

		pc->poll_chosen = pollcheck_decide(with, with_ns, without, without_ns,
						   pc->poll_chosen);
		if (with >= POLLCHECK_MIN_REPLIES || without >= POLLCHECK_MIN_REPLIES) {
			pc->trials++;
			pc->trials_poll += pc->poll_chosen;
			pc->last_poll = with;
			pc->last_nopoll = without;
			pc->last_poll_ns = with_ns;
			pc->last_nopoll_ns = without_ns;
			pc->last_poll_cpu = with_cpu;
			pc->last_nopoll_cpu = without_cpu;
			log_debug("polling check: %.0f replies/s polling, %.0f without "
				  "(%.1f / %.1f us of CPU per reply): %s",
				  pollcheck_rate(with, with_ns), pollcheck_rate(without, without_ns),
				  with ? (double)pc->last_poll_cpu / 1e3 / (double)with : 0,
				  without ? (double)pc->last_nopoll_cpu / 1e3 / (double)without : 0,
				  pc->poll_chosen ? "poll" : "do not poll");
		}
		pc->phase = POLLCHECK_RUN;
		next = now + POLLCHECK_PERIOD_NS - 2 * POLLCHECK_WINDOW_NS - POLLCHECK_SETTLE_NS;
		break;
	}
	}
	pc->mark = replies;
	pc->mark_ns = now;
	pc->mark_cpu = cpu;
	/* settle and trial run the other mode; RUN and MEASURE the chosen one */
	__atomic_store_n(&pc->allowed,
			 pc->phase == POLLCHECK_SETTLE || pc->phase == POLLCHECK_TRIAL
				 ? !pc->poll_chosen
				 : pc->poll_chosen,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&pc->next_ns, next, __ATOMIC_RELEASE);
}

bool
pollcheck_allowed(struct pollcheck *pc, uint64_t now)
{
	uint64_t next = __atomic_load_n(&pc->next_ns, __ATOMIC_ACQUIRE);

	if (now >= next && pthread_mutex_trylock(&pc->lock) == 0) {
		next = __atomic_load_n(&pc->next_ns, __ATOMIC_ACQUIRE);
		if (!next) {
			/*
			 * The first ask (the first load): poll as configured for
			 * one window, then check at once rather than a period on.
			 */
			pc->mark_ns = now;
			pc->mark_cpu = pollcheck_cpu_ns();
			__atomic_store_n(&pc->next_ns, now + POLLCHECK_WINDOW_NS, __ATOMIC_RELEASE);
		} else if (now >= next) {
			pollcheck_advance(pc, now, pollcheck_cpu_ns());
		}
		pthread_mutex_unlock(&pc->lock);
	}
	return __atomic_load_n(&pc->allowed, __ATOMIC_RELAXED);
}
