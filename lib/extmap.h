/* SPDX-License-Identifier: MIT */
/*
 * extmap: an in-memory map of the byte ranges of a volume to extent types
 * (DIO_EXT_HOLE, DIO_EXT_UNWRITTEN, DIO_EXT_MAPPED). Internal to libdio.
 *
 * Only the ranges that are not data are stored: a sorted array of disjoint
 * runs, where two touching runs never have the same type. Every byte not
 * covered by a run is DIO_EXT_MAPPED, so a fully written volume costs
 * nothing, and a lookup is a binary search under a read lock, no system call.
 *
 * Complexity, with n runs stored:
 *   extmap_lookup   O(log n), shared lock: lookups run in parallel
 *   extmap_set      O(log n) to find the range, plus O(n) worst case to
 *                   move the tail of the array when the number of runs
 *                   changes (a memmove: cheap for the maps of real files)
 *   extmap_append   O(1) amortised, for building a map in ascending order
 *
 * Thread-safe: one pthread_rwlock guards the whole map; no other lock is
 * taken while it is held.
 */
#ifndef DIO_EXTMAP_H
#define DIO_EXTMAP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct extmap_run {
	uint64_t start;
	uint64_t end;		/* exclusive; > start */
	uint32_t type;		/* DIO_EXT_HOLE or DIO_EXT_UNWRITTEN */
};

struct extmap {
	pthread_rwlock_t lock;	/* guards runs, nr, cap */
	struct extmap_run *runs;
	size_t nr;
	size_t cap;
};

/* An empty map (all data). 0 or -errno. */
int extmap_init(struct extmap *m);
/* Free the runs; the map must not be in use. */
void extmap_destroy(struct extmap *m);

/*
 * Type of the byte at pos into *type; returns the length of the run of
 * that type starting at pos, clipped to maxlen (0 only when maxlen is 0).
 */
uint64_t extmap_lookup(struct extmap *m, uint64_t pos, uint64_t maxlen, unsigned int *type);

/*
 * Make [pos, pos + len) of the given type, splitting and merging runs.
 * 0, -EINVAL (bad type or range wraps) or -ENOMEM (map unchanged).
 * Making a range DIO_EXT_MAPPED never fails for want of memory: the runs
 * it would split become data as a whole. That is only right for a volume
 * that maps to itself (the file volume: reading what the filesystem holds
 * as a hole returns zeros anyway), where calling too much data costs a
 * read and calling too little would lose written data.
 */
int extmap_set(struct extmap *m, uint64_t pos, uint64_t len, unsigned int type);

/*
 * Build helper: add [start, end) of type after everything stored so far.
 * The part below the end of the last run is dropped (what was appended
 * first wins). Not for maps in use by other threads. 0 or -ENOMEM.
 */
int extmap_append(struct extmap *m, uint64_t start, uint64_t end, unsigned int type);

/* Number of runs stored (for tests and debug logs). */
size_t extmap_count(struct extmap *m);

/* Check the invariants (sorted, disjoint, merged, no data runs): 0 or -EUCLEAN. */
int extmap_validate(struct extmap *m);

#endif /* DIO_EXTMAP_H */
