/* SPDX-License-Identifier: MIT */
/* server/cpuload.c: the /proc parsers, and a crowded machine seen as one. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cpuload.h"

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

Test(cpuload, parse_runnable)
{
	unsigned int n = 0;

	cr_assert(cpuload_parse_runnable("0.52 0.58 0.59 3/467 12345\n", &n));
	cr_assert_eq(n, 3);
	cr_assert(cpuload_parse_runnable("12.00 8.10 4.33 17/1024 99", &n));
	cr_assert_eq(n, 17);
	cr_assert_not(cpuload_parse_runnable("", &n));
	cr_assert_not(cpuload_parse_runnable("0.5 0.5", &n));
}

Test(cpuload, parse_steal)
{
	uint64_t steal = 0;

	cr_assert(cpuload_parse_steal("cpu  4705 356 584 3699 23 23 0 77 0 0\ncpu0 1 2 3 4 5 6 7 8\n",
				      &steal));
	cr_assert_eq(steal, 77);
	/* kernels before steal accounting print fewer fields: no reading */
	cr_assert_not(cpuload_parse_steal("cpu  4705 356 584 3699 23 23 0\n", &steal));
	cr_assert_not(cpuload_parse_steal("intr 1 2 3", &steal));
}

static atomic_bool spin_stop;

static void *
spin(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
		;
	return NULL;
}

/* Twice as many spinning threads as CPUs, plus us: more runnable than cores. */
Test(cpuload, spinning_threads_crowd_the_machine, .timeout = 30)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int n = (unsigned int)(ncpu > 0 ? ncpu : 1) * 2 + 1, seen = 0;
	pthread_t t[130];
	uint64_t end;

	if (n > 130)
		n = 130;
	for (unsigned int i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, spin, NULL), 0);
	/* readings are 20 ms apart: give it a few seconds of them */
	end = now_ns() + 5ull * 1000 * 1000 * 1000;
	while (now_ns() < end && seen < 3) {
		if (cpuload_crowded(now_ns(), true))
			seen++;
		usleep(25 * 1000);
	}
	atomic_store(&spin_stop, true);
	for (unsigned int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	cr_assert_geq(seen, 3, "%u spinning threads on %ld CPUs were not seen as crowded", n, ncpu);
}
