/* SPDX-License-Identifier: MIT */
/*
 * Background commit (POOL.md: "about every second"): a pool thread that
 * commits what writes have appended within commit_ms of the first record
 * waiting, so that data written without FLUSH or FUA is not left exposed
 * to a crash for as long as the client happens not to flush. A commit is
 * always legal (it flushes the device before the journal write, R1), so
 * it may come at any point between requests.
 *
 * Writers kick it when they leave records waiting (pool-vol.c); it
 * starts with the first such kick, not at open: nbdkit
 * opens the pool before it forks, and a thread does not survive a fork.
 * It takes the pool lock to choose and pack the records, and drops it for
 * the device flush and the journal write (tp_commit_unlocked), so that
 * writes, allocating ones included, are not held up by the device.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "dio/dio.h"
#include "pool.h"

static void *
tp_committer(void *arg)
{
	struct dio_tpool *p = arg;
	int last_err = 0;

	pthread_mutex_lock(&p->lock);
	while (!p->commit_stop) {
		struct timespec ts;
		int ret;

		if (!p->npend && p->ndq) {
			tp_discard_some(p);	/* freed chunks, a batch at a time */
			continue;
		}
		if (!p->npend) {
			p->committer_idle = true;
			pthread_cond_wait(&p->commit_cond, &p->lock);
			p->committer_idle = false;
			continue;
		}
		/* commit_ms after the first record waits (or its wake-up) */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += p->commit_ms / 1000;
		ts.tv_nsec += (long)(p->commit_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!p->commit_stop &&
		       pthread_cond_timedwait(&p->commit_cond, &p->lock, &ts) != ETIMEDOUT)
			;
		if (p->commit_stop || !p->npend)
			continue;
		ret = tp_commit_unlocked(p, true);	/* writes go on meanwhile */
		if (ret < 0 && ret != last_err)
			dio_log(DIO_LOG_ERR, "pool %s: background commit: %s", p->path, strerror(-ret));
		last_err = ret < 0 ? ret : 0;
		p->bg_commits++;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void
tp_committer_kick(struct dio_tpool *p)
{
	pthread_condattr_t ca;

	if (!p->commit_ms || p->readonly || p->commit_stop)
		return;
	if (!p->committer_on) {
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->commit_cond, &ca);
		pthread_condattr_destroy(&ca);
		if (pthread_create(&p->committer, NULL, tp_committer, p) != 0) {
			dio_log(DIO_LOG_WARN, "pool %s: no background commit thread: data waits "
				"for FLUSH or FUA", p->path);
			pthread_cond_destroy(&p->commit_cond);
			p->commit_ms = 0;
			return;
		}
		p->committer_on = true;
	}
	/* Asleep with nothing waiting: records now do, start its clock. */
	if (p->committer_idle)
		pthread_cond_signal(&p->commit_cond);
}

void
tp_committer_stop(struct dio_tpool *p)
{
	if (!p->committer_on)
		return;
	pthread_mutex_lock(&p->lock);
	p->commit_stop = true;
	pthread_cond_signal(&p->commit_cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->committer, NULL);
	pthread_cond_destroy(&p->commit_cond);
	p->committer_on = false;
}
