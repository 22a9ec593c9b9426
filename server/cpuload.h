/* SPDX-License-Identifier: MIT */
/* Whether the machine is short of CPU, so that polling should yield (cpuload.c). */
#ifndef DIONBD_CPULOAD_H
#define DIONBD_CPULOAD_H

#include <stdbool.h>
#include <stdint.h>

/*
 * At monotonic time now (ns): whether runnable tasks outnumber the CPUs,
 * or steal time is high, by a reading at most 20 ms old. Any thread.
 */
bool cpuload_crowded(uint64_t now);

/* The parsers, for unit tests: /proc/loadavg's runnable count, /proc/stat's steal. */
bool cpuload_parse_runnable(const char *loadavg, unsigned int *runnable);
bool cpuload_parse_steal(const char *stat, uint64_t *steal);

#endif /* DIONBD_CPULOAD_H */
