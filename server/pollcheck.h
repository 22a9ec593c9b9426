/* SPDX-License-Identifier: MIT */
/*
 * Whether adaptive polling pays for itself (pollcheck.c): every few seconds
 * the server switches to the other mode, lets it settle, counts a window of
 * it against a window of the chosen mode, and keeps whichever answered
 * more requests per second (polling must win clearly, and without taking
 * CPU from the machine's other work).
 */
#ifndef DIONBD_POLLCHECK_H
#define DIONBD_POLLCHECK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * One cycle: PERIOD long, ending with a WINDOW of the chosen mode counted,
 * SETTLE of the other mode not counted, then a WINDOW of it counted. A
 * switch takes tens of ms to show its steady rate (pollcheck.c): the trial
 * is counted only once it has settled. While decisions agree the period
 * doubles, up to PERIOD_MAX; a change of mode brings it back to PERIOD.
 */
#define POLLCHECK_PERIOD_NS	(3000ull * 1000 * 1000)
#define POLLCHECK_PERIOD_MAX_NS	(12000ull * 1000 * 1000)
#define POLLCHECK_WINDOW_NS	(100ull * 1000 * 1000)
#define POLLCHECK_SETTLE_NS	(150ull * 1000 * 1000)
/* Polling must answer this many percent more requests than not polling. */
#define POLLCHECK_GAIN_PCT	5
/*
 * ...and leave the rest of the machine (every CPU's busy time but this
 * process's) at most this many percent of one CPU less than it had
 * without polling. The machine's busy time comes in ticks of 10 ms (two
 * windows of 100 ms on two CPUs: about 10% of a CPU each way), so less
 * would be noise.
 */
#define POLLCHECK_HARM_PCT	30
/* Fewer replies than this in a window decide nothing: too idle to matter. */
#define POLLCHECK_MIN_REPLIES	50

/* One counted window of a mode. */
struct pollcheck_window {
	uint64_t replies;	/* replies all reactors sent in it */
	uint64_t ns;		/* its length */
	uint64_t cpu;		/* CPU time (ns) this process used in it */
	int64_t others;		/* CPU time (ns) the rest of the machine used in it */
};

enum pollcheck_phase {
	POLLCHECK_RUN,		/* the chosen mode, unmeasured */
	POLLCHECK_MEASURE,	/* the chosen mode, counting replies */
	POLLCHECK_SETTLE,	/* the other mode, not counted yet */
	POLLCHECK_TRIAL,	/* the other mode, counting replies */
};

/*
 * Server-wide: every reactor counts the replies it sends into it and asks
 * it before opening a polling window. The state machine advances from
 * whichever reactor asks first after a boundary (a try-lock elects it).
 */
struct pollcheck {
	uint64_t replies;		/* atomic (relaxed): replies sent, all reactors */
	bool allowed;			/* atomic: polling allowed now */
	uint64_t next_ns;		/* atomic: the next boundary, 0 = not started */
	pthread_mutex_t lock;		/* guards the fields below */
	enum pollcheck_phase phase;
	bool poll_chosen;		/* the mode of RUN and MEASURE */
	uint64_t period_ns;		/* the current cycle's length */
	uint64_t mark, mark_ns;		/* replies and time at the start of the phase */
	uint64_t mark_cpu, mark_busy;	/* the process's and all CPUs' busy time (ns) then */
	struct pollcheck_window measured;	/* the MEASURE window */
	/* the clocks: the process's CPU time, all CPUs' busy time (ns); tests replace them */
	uint64_t (*cpu_ns)(void);
	uint64_t (*busy_ns)(void);
	/* statistics, under lock */
	uint64_t trials;		/* cycles that decided */
	uint64_t trials_poll;		/* of those, that kept (or chose) polling */
	struct pollcheck_window last_poll, last_nopoll;	/* the last decided windows */
};

void pollcheck_init(struct pollcheck *pc);
void pollcheck_fini(struct pollcheck *pc);

/* n replies were sent (any reactor). */
static inline void
pollcheck_count(struct pollcheck *pc, unsigned int n)
{
	__atomic_fetch_add(&pc->replies, n, __ATOMIC_RELAXED);
}

/* At monotonic time now (ns): whether a reactor may open a polling window. */
bool pollcheck_allowed(struct pollcheck *pc, uint64_t now);

/*
 * The decision of one cycle, from a window with polling and one without;
 * current when too few replies to tell. (A window ends when a reactor next
 * asks, so lengths may differ: rates are compared.)
 */
bool pollcheck_decide(const struct pollcheck_window *with, const struct pollcheck_window *without,
		      bool current);

/* The smallest polling window worth a clock read: below it, just sleep. */
#define POLL_WINDOW_MIN_NS	4000u

/*
 * A reactor's next polling window (reactor.c), from the last one: win ns
 * were spun (0: none opened) and then slept ns in epoll before the next
 * event. The event came gap = win + slept after the last work. A gap within
 * the cap max_ns would have been caught by a full window: open one. A longer
 * gap no window within the cap catches, so halve it, down to none: a
 * reactor whose windows keep ending empty stops polling rather than spin
 * the whole cap before every sleep.
 */
static inline uint64_t
poll_window_next(uint64_t win, uint64_t max_ns, uint64_t spun, uint64_t slept)
{
	if (spun + slept <= max_ns)
		return max_ns;
	win /= 2;
	return win < POLL_WINDOW_MIN_NS ? 0 : win;
}

#endif /* DIONBD_POLLCHECK_H */
