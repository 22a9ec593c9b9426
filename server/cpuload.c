/* SPDX-License-Identifier: MIT */
/*
 * Whether the machine is short of CPU, for adaptive polling (reactor.c).
 * A reactor that spins while another thread waits for a core takes that
 * thread's time, and the thread is often the client whose next request
 * the spin is waiting for; two spinning reactors on two cores starve a
 * client on the same machine outright.
 *
 * Two signs, read from /proc by whichever reactor asks first once the
 * last reading is CPULOAD_PERIOD_NS old (one reader at a time, no lock):
 * - more runnable tasks than online CPUs: the fourth field of
 *   /proc/loadavg counts them at this instant, the reader included;
 * - steal time above CPULOAD_STEAL_PCT of the CPUs' time since the last
 *   look (/proc/stat): the hypervisor runs someone else on our cores.
 * A crowded reading holds for a while (doubling while readings stay
 * crowded), so that polling does not flip on again the moment its own
 * spinning stops showing up as runnable tasks.
 *
 * The runnable count is a guess: it cannot tell a thread that waits for a
 * core from a client thread the scheduler runs at once, and it counts the
 * spinning reactors themselves. With two connections on two cores it held
 * polling off where polling answered 30-50% more requests. So the server
 * leaves it out when the polling check (pollcheck.c) measures instead,
 * and asks only for steal time, which no measurement of ours can see.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpuload.h"

#define CPULOAD_PERIOD_NS	(20u * 1000 * 1000)
#define CPULOAD_STEAL_PERIOD_NS	(250u * 1000 * 1000)
#define CPULOAD_STEAL_PCT	5
#define CPULOAD_HOLD_MIN_NS	(200ull * 1000 * 1000)
#define CPULOAD_HOLD_MAX_NS	(2000ull * 1000 * 1000)

static uint64_t cpuload_checked_ns;	/* atomic: the last reading, or 0 */
static uint64_t cpuload_until_ns;	/* atomic: crowded until then */
/* the current reader's alone (the compare-and-swap on checked_ns elects it) */
static uint64_t cpuload_hold_ns = CPULOAD_HOLD_MIN_NS;
static uint64_t cpuload_steal_ns, cpuload_steal_ticks;
static long cpuload_ncpu, cpuload_hz;

/* Read a small /proc file whole into buf. Bytes read, or -1. */
static ssize_t
cpuload_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

bool
cpuload_parse_runnable(const char *loadavg, unsigned int *runnable)
{
	double a, b, c;

	return sscanf(loadavg, "%lf %lf %lf %u/", &a, &b, &c, runnable) == 4;
}

/* /proc/stat's first line, in ticks: user nice system idle iowait irq softirq steal. */
static bool
cpuload_parse_cpu(const char *stat, unsigned long long v[8])
{
	return sscanf(stat, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		      &v[3], &v[4], &v[5], &v[6], &v[7]) == 8;
}

bool
cpuload_parse_steal(const char *stat, uint64_t *steal)
{
	unsigned long long v[8];

	if (!cpuload_parse_cpu(stat, v))
		return false;
	*steal = v[7];
	return true;
}

uint64_t
cpuload_busy_ns(void)
{
	unsigned long long v[8];
	char buf[512];
	long hz = sysconf(_SC_CLK_TCK);

	if (hz < 1 || cpuload_read("/proc/stat", buf, sizeof(buf)) <= 0 || !cpuload_parse_cpu(buf, v))
		return 0;
	/* user nice system, irq softirq: not idle, iowait or steal */
	return (uint64_t)(v[0] + v[1] + v[2] + v[5] + v[6]) * (1000000000ull / (uint64_t)hz);
}

/* A fresh reading: whether it says crowded. */
static bool
cpuload_sample(uint64_t now, bool count_runnable)
{
	char buf[512];
	unsigned int runnable;
	uint64_t steal;

	if (!cpuload_ncpu) {
		cpuload_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cpuload_hz = sysconf(_SC_CLK_TCK);
		if (cpuload_ncpu < 1)
			cpuload_ncpu = 1;
		if (cpuload_hz < 1)
			cpuload_hz = 100;
	}
	if (count_runnable && cpuload_read("/proc/loadavg", buf, sizeof(buf)) > 0 &&
	    cpuload_parse_runnable(buf, &runnable) && runnable > (unsigned long)cpuload_ncpu)
		return true;
	if (now - cpuload_steal_ns < CPULOAD_STEAL_PERIOD_NS)
		return false;
	if (cpuload_read("/proc/stat", buf, sizeof(buf)) > 0 && cpuload_parse_steal(buf, &steal)) {
		bool stolen = false;

		if (cpuload_steal_ns) {
			/* ticks stolen against the ticks all CPUs had in the interval */
			double avail = (double)(now - cpuload_steal_ns) / 1e9 * (double)cpuload_hz *
				       (double)cpuload_ncpu;

			stolen = (double)(steal - cpuload_steal_ticks) * 100.0 >
				 avail * CPULOAD_STEAL_PCT;
		}
		cpuload_steal_ns = now;
		cpuload_steal_ticks = steal;
		return stolen;
	}
	return false;
}

bool
cpuload_crowded(uint64_t now, bool runnable)
{
	uint64_t last = __atomic_load_n(&cpuload_checked_ns, __ATOMIC_ACQUIRE);

	if (now - last >= CPULOAD_PERIOD_NS &&
	    __atomic_compare_exchange_n(&cpuload_checked_ns, &last, now, false, __ATOMIC_ACQ_REL,
					__ATOMIC_RELAXED)) {
		if (cpuload_sample(now, runnable)) {
			__atomic_store_n(&cpuload_until_ns, now + cpuload_hold_ns, __ATOMIC_RELEASE);
			if ((cpuload_hold_ns *= 2) > CPULOAD_HOLD_MAX_NS)
				cpuload_hold_ns = CPULOAD_HOLD_MAX_NS;
		} else if (now >= __atomic_load_n(&cpuload_until_ns, __ATOMIC_ACQUIRE)) {
			cpuload_hold_ns = CPULOAD_HOLD_MIN_NS;
		}
	}
	return now < __atomic_load_n(&cpuload_until_ns, __ATOMIC_ACQUIRE);
}
