/* SPDX-License-Identifier: MIT */
/* The monotonic clock in nanoseconds, for libdio's own timing (cache ages, pool phases). */
#ifndef DIO_NOW_H
#define DIO_NOW_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
dio_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
