/* SPDX-License-Identifier: MIT */
/*
 * Whether adaptive polling pays for itself (pollcheck.c): every few seconds
 * the server switches to the other mode, lets it settle, counts a window of
 * it against a window of the chosen mode, and keeps whichever answered
 * more requests per second (polling must win clearly).
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
 * is counted only once it has settled.
 */
#define POLLCHECK_PERIOD_NS	(3000ull * 1000 * 1000)
#define POLLCHECK_WINDOW_NS	(100ull * 1000 * 1000)
#define POLLCHECK_SETTLE_NS	(150ull * 1000 * 1000)
/* Polling must answer this many percent more requests than not polling. */
#define POLLCHECK_GAIN_PCT	5
/* Fewer replies than this in a window decide nothing: too idle to matter. */
#define POLLCHECK_MIN_REPLIES	50

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
	uint64_t mark, mark_ns;		/* replies and time at the start of the phase */
	uint64_t mark_cpu;		/* the process's CPU time (ns) at the start of the phase */
	uint64_t measured, measured_ns;	/* replies in the MEASURE window, its length */
	uint64_t measured_cpu;		/* CPU time the process used in the MEASURE window */
	/* statistics, under lock */
	uint64_t trials;		/* cycles that decided */
	uint64_t trials_poll;		/* of those, that kept (or chose) polling */
	uint64_t last_poll, last_nopoll;	/* replies in the last decided windows */
	uint64_t last_poll_ns, last_nopoll_ns;	/* their lengths */
	uint64_t last_poll_cpu, last_nopoll_cpu;	/* the process's CPU time in them */
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
 * The decision of one cycle: `with` replies in with_ns of polling against
 * `without` in without_ns of not polling; current when too few to tell.
 * (A window ends when a reactor next asks, so lengths may differ.)
 */
bool pollcheck_decide(uint64_t with, uint64_t with_ns, uint64_t without, uint64_t without_ns,
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
