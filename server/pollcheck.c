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
 * The server starts without polling, the cheaper mode, and the first
 * check tries polling 200 ms after the first load. Each trial costs the
 * chosen mode 250 ms and a settle on the way back, so while checks keep
 * choosing the same mode the period doubles, from 3 s up to 12 s.
 *
 * Requests per second are the measure because the clients that polling
 * helps are the ones that wait for each reply (a fixed queue depth): for
 * them more replies per second is lower latency. A client that sends at a
 * fixed rate gets the same count either way, and then the cheaper mode
 * wins.
 *
 * A spin can also win replies by taking cores from other work on the
 * machine: the scheduler shares a core between a spinning reactor and a
 * busy thread. So each window also counts the CPU time the rest of the
 * machine got (all CPUs' busy time, /proc/stat, less this process's), and
 * polling is kept only if that fell by at most POLLCHECK_HARM_PCT of a
 * CPU. Our own clients do not trip it: they get more CPU when they are
 * answered faster. This replaces poll-yield's count of runnable threads
 * (cpuload.c), which took such clients for a crowd.
 */
#include <time.h>

#include "cpuload.h"
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
	*pc = (struct pollcheck){ .allowed = false, .poll_chosen = false,
				  .period_ns = POLLCHECK_PERIOD_NS, .cpu_ns = pollcheck_cpu_ns,
				  .busy_ns = cpuload_busy_ns };
	pthread_mutex_init(&pc->lock, NULL);
}

void
pollcheck_fini(struct pollcheck *pc)
{
	pthread_mutex_destroy(&pc->lock);
}

/* CPUs' worth of time the rest of the machine had in a window. */
static double
pollcheck_others(const struct pollcheck_window *w)
{
	return w->ns ? (double)w->others / (double)w->ns : 0;
}

bool
pollcheck_decide(const struct pollcheck_window *with, const struct pollcheck_window *without,
		 bool current)
{
	if ((with->replies < POLLCHECK_MIN_REPLIES && without->replies < POLLCHECK_MIN_REPLIES) ||
	    !with->ns || !without->ns)
		return current;
	/* with / with_ns > without / without_ns * (1 + gain) */
	if ((double)with->replies * (double)without->ns * 100.0 <=
	    (double)without->replies * (double)with->ns * (100.0 + POLLCHECK_GAIN_PCT))
		return false;
	return (pollcheck_others(without) - pollcheck_others(with)) * 100.0 <= POLLCHECK_HARM_PCT;
}

/*
 * Move past the boundary: a window ends at now, with the process at cpu ns
 * and all CPUs at busy ns. Under pc->lock.
 */
static void
pollcheck_advance(struct pollcheck *pc, uint64_t now, uint64_t cpu, uint64_t busy)
{
	uint64_t replies = __atomic_load_n(&pc->replies, __ATOMIC_RELAXED);
	struct pollcheck_window w = {
		.replies = replies - pc->mark,
		.ns = now - pc->mark_ns,
		.cpu = cpu - pc->mark_cpu,
		.others = (int64_t)(busy - pc->mark_busy) - (int64_t)(cpu - pc->mark_cpu),
	};
	uint64_t next = now + POLLCHECK_WINDOW_NS;

	switch (pc->phase) {
	case POLLCHECK_RUN:
		pc->phase = POLLCHECK_MEASURE;
		break;
	case POLLCHECK_MEASURE:
		pc->phase = POLLCHECK_SETTLE;
		pc->measured = w;
		next = now + POLLCHECK_SETTLE_NS;
		break;
	case POLLCHECK_SETTLE:
		pc->phase = POLLCHECK_TRIAL;
		break;
	case POLLCHECK_TRIAL:
	default: {
		const struct pollcheck_window *with = pc->poll_chosen ? &pc->measured : &w;
		const struct pollcheck_window *without = pc->poll_chosen ? &w : &pc->measured;
		bool was = pc->poll_chosen;
		bool told = with->replies >= POLLCHECK_MIN_REPLIES ||
			    without->replies >= POLLCHECK_MIN_REPLIES;

		pc->poll_chosen = pollcheck_decide(with, without, pc->poll_chosen);
		if (pc->poll_chosen != was)
			pc->period_ns = POLLCHECK_PERIOD_NS;
		else if (told && (pc->period_ns *= 2) > POLLCHECK_PERIOD_MAX_NS)
			pc->period_ns = POLLCHECK_PERIOD_MAX_NS;
		if (told) {
			pc->trials++;
			pc->trials_poll += pc->poll_chosen;
			pc->last_poll = *with;
			pc->last_nopoll = *without;
			log_debug("polling check: %.0f replies/s polling, %.0f without "
				  "(%.1f / %.1f us of CPU per reply; the rest of the machine "
				  "%.2f / %.2f CPUs): %s",
				  pollcheck_rate(with->replies, with->ns),
				  pollcheck_rate(without->replies, without->ns),
				  with->replies ? (double)with->cpu / 1e3 / (double)with->replies : 0,
				  without->replies ? (double)without->cpu / 1e3 /
							     (double)without->replies
						   : 0,
				  pollcheck_others(with), pollcheck_others(without),
				  pc->poll_chosen ? "poll" : "do not poll");
		}
		pc->phase = POLLCHECK_RUN;
		next = now + pc->period_ns - 2 * POLLCHECK_WINDOW_NS - POLLCHECK_SETTLE_NS;
		break;
	}
	}
	pc->mark = replies;
	pc->mark_ns = now;
	pc->mark_cpu = cpu;
	pc->mark_busy = busy;
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
			 * The first ask (the first load): one window without
			 * polling, then check at once rather than a period on.
			 */
			pc->mark_ns = now;
			pc->mark_cpu = pc->cpu_ns();
			pc->mark_busy = pc->busy_ns();
			__atomic_store_n(&pc->next_ns, now + POLLCHECK_WINDOW_NS, __ATOMIC_RELEASE);
		} else if (now >= next) {
			uint64_t cpu = pc->cpu_ns();

			pollcheck_advance(pc, now, cpu, pc->busy_ns());
		}
		pthread_mutex_unlock(&pc->lock);
	}
	return __atomic_load_n(&pc->allowed, __ATOMIC_RELAXED);
}
