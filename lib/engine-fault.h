/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection engine, for tests only (not part of the public API):
 * a wrapper engine that forwards to 'inner' (and owns it) but can fail,
 * shorten, delay and reorder operations.
 */
#ifndef DIO_ENGINE_FAULT_H
#define DIO_ENGINE_FAULT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dio/engine.h"

/*
 * Operations are numbered from 1 in queue order, counting only those whose
 * op matches op_mask (bit 1 << DIO_IO_*; 0 = every op).
 */
/*
 * A gate another thread holds completions at: while closed, none is
 * delivered, and a reap that would wait counts itself in waiting (and
 * broadcasts cond) and sleeps until it opens. Set open and broadcast
 * cond under m to let them through.
 */
struct dio_fault_gate {
	pthread_mutex_t m;
	pthread_cond_t cond;
	bool open;
	unsigned int waiting;
};

struct dio_fault_opts {
	unsigned int op_mask;
	uint64_t fail_nth;	/* fail op number N (0 = never) ... */
	uint64_t fail_count;	/* ... and the fail_count - 1 after it (0 = 1) */
	int fail_errno;		/* with -fail_errno (e.g. EIO) */
	uint64_t short_nth;	/* cut op number N ... */
	uint32_t short_len;	/* ... to this many bytes (aligned) */
	unsigned int delay_reaps; /* hold each completion for this many reaps */
	bool reorder;		/* deliver each batch of completions in reverse */
	struct dio_fault_gate *gate;	/* completions wait for it to open (NULL: none) */
};

/* Counters kept by the fault wrapper. */
struct dio_fault_stats {
	uint64_t ops[DIO_IO_NR_OPS];	/* queued, by op */
	uint64_t bytes[DIO_IO_NR_OPS];
	uint64_t failed;
	uint64_t shortened;
	uint64_t dsync_writes;		/* WRITEs queued with RWF_DSYNC */
};

int dio_engine_fault_create(struct dio_engine *inner, const struct dio_fault_opts *opts,
			    struct dio_engine **out);
/* Change the fault plan; counting restarts from 0. */
void dio_engine_fault_set(struct dio_engine *e, const struct dio_fault_opts *opts);
/* Read the counters of a fault wrapper. */
void dio_engine_fault_stats(struct dio_engine *e, struct dio_fault_stats *st);

#endif /* DIO_ENGINE_FAULT_H */
