/* SPDX-License-Identifier: MIT */
/* Whether the machine is short of CPU, so that polling should yield (cpuload.c). */
#ifndef DIONBD_CPULOAD_H
#define DIONBD_CPULOAD_H

#include <stdbool.h>
#include <stdint.h>

/*
 * At monotonic time now (ns): whether steal time is high or, when
 * runnable, runnable tasks outnumber the CPUs, by a reading at most 20 ms
 * old. Any thread; every caller passes the same runnable.
 */
bool cpuload_crowded(uint64_t now, bool runnable);

/* The CPU time (ns) all CPUs spent busy so far, from /proc/stat; 0 if unreadable. */
uint64_t cpuload_busy_ns(void);

/* The parsers, for unit tests: /proc/loadavg's runnable count, /proc/stat's steal. */
bool cpuload_parse_runnable(const char *loadavg, unsigned int *runnable);
bool cpuload_parse_steal(const char *stat, uint64_t *steal);

#endif /* DIONBD_CPULOAD_H */
