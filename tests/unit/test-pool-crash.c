/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's tests (POOL.md "Crash simulation"): the workloads
 * by hand and by seed checked in every crash state, under Criterion; and,
 * outside it, the long mode and the replay of saved cases. The simulator
 * itself is in tests/unit/crash/ (crash.h says how it works).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crash/crash.h"
#include "helper.h"

/* ---- Criterion tests ---- */

static void
setup(void)
{
	static char dir[512];

	memset(&run, 0, sizeof(run));
	/* Failing states are kept even when nobody asked: a flaky one is gone otherwise. */
	snprintf(dir, sizeof(dir), "%s/pool-crash-failures", test_dir());
	run.save_dir = getenv("DIO_CRASH_SAVE") ? getenv("DIO_CRASH_SAVE") : dir;
	run.rng = 1;
	make_base();
}

static void
teardown(void)
{
	fprintf(stderr, "crash simulator: %llu states checked\n", (unsigned long long)states);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	memset(&rq, 0, sizeof(rq));
	free_base();
}

#define W(v, s, n, f) { OP_WRITE, v, s, n, f, false }
#define WP(v, s, n, f) { OP_WRITE, v, s, n, f, true }
#define FL { OP_FLUSH, 0, 0, 0, false, false }
#define FLP { OP_FLUSH, 0, 0, 0, false, true }
#define TR(v, s, n, f) { OP_TRIM, v, s, n, f, false }
#define TRP(v, s, n, f) { OP_TRIM, v, s, n, f, true }
#define ZE(v, s, n, f) { OP_ZERO, v, s, n, f, false }
#define VC(chunks) { OP_VCREATE, 0, 0, chunks, false, false }
#define VD { OP_VDELETE, 0, 0, 0, false, false }
#define VR(chunks) { OP_VRESIZE, 0, 0, chunks, false, false }
#define SN(o, t) { OP_SNAP, o, 0, t, false, false }
#define SNP(o, t) { OP_SNAP, o, 0, t, false, true }
#define SNL(o, t) { OP_SNAP, o, 0, t, true, true }
#define CL(o, t) { OP_CLONE, o, 0, t, false, false }
#define CLP(o, t) { OP_CLONE, o, 0, t, false, true }
#define DL(v) { OP_DEL, v, 0, 0, false, false }
#define DLP(v) { OP_DEL, v, 0, 0, false, true }
#define DLU(v) { OP_DEL, v, 0, 0, true, true }	/* beside writers: run_workload */
#define RV(v, snap) { OP_REVERT, v, 0, snap, false, false }
#define RVP(v, snap) { OP_REVERT, v, 0, snap, false, true }
#define RVU(v, snap) { OP_REVERT, v, 0, snap, true, true }	/* beside writers */
#define VS(v, chunks) { OP_VSIZE, v, 0, chunks, false, false }
#define VSU(v, chunks) { OP_VSIZE, v, 0, chunks, true, true }	/* beside writers */

/*
 * Fewer under the sanitizers, which check memory, not more states: a
 * fifth of the workloads (at least one) of each random test and of each
 * completion-order loop, and crashes in recovery from every sixth state.
 * Release: about 38,000 states an engine, ASan about 9,000.
 */
#ifdef __SANITIZE_ADDRESS__
#define SEEDS(n) ((n) / 5 ? (n) / 5 : 1)
#define RECOV_EVERY 6
#else
#define SEEDS(n) (n)
#define RECOV_EVERY 1
#endif

/* A hand-written workload: its steps, in submission order unless order. */
static void
hand(struct workload *wl, const struct step *s, int n, uint64_t order)
{
	memset(wl, 0, sizeof(*wl));
	memcpy(wl->s, s, (size_t)n * sizeof(*s));
	wl->n = n;
	wl->order = order;
	wl->fail_step = -1;
}

static void
check_hand(const struct step *s, int n, const char *name)
{
	static struct workload wl;

	hand(&wl, s, n, 0);
	run_workload(&wl);
	cr_assert_eq(crash_states(name), 0, "%s", run.first);
}

/* dm-thin's bug: a FUA write fully over a freshly allocated chunk, acked before its mapping. */
Test(pool_crash, fua_overwrite_of_fresh_chunk, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 0, 8, true), W(0, 8, 1, false) };

	check_hand(s, 3, "fua-overwrite-fresh");
}

/* Data written, crash before the commit: the chunk's previous contents never show. */
Test(pool_crash, data_before_commit_never_old_contents, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), TR(0, 0, 8, false), FL,
					 W(1, 2, 3, false), W(1, 9, 2, false), FL };

	check_hand(s, 6, "data-before-commit");
}

/* A chunk freed and reallocated in one transaction window never shows old data. */
Test(pool_crash, freed_and_reallocated_in_one_window, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL,
					 TR(0, 0, 16, false), W(1, 0, 8, false), W(1, 8, 4, false),
					 W(1, 16, 8, false), W(1, 24, 2, true), FL };

	check_hand(s, 9, "free-realloc");
}

Test(pool_crash, partial_straddling_fua_zero, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 3, 7, false), W(1, 6, 4, true), ZE(0, 4, 2, false),
					 W(0, 7, 3, true), FL, ZE(1, 0, 8, true), W(1, 1, 1, false),
					 TR(0, 0, 8, true), W(0, 0, 1, false) };

	check_hand(s, 9, "mixed");
}

/* Volume operations among writes: all or nothing, durable once replied. */
Test(pool_crash, volume_operations, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), VC(2), W(1, 3, 2, false), VR(4),
					 TR(0, 0, 8, false), VD, VC(1), W(0, 1, 1, true) };

	check_hand(s, 8, "volume-ops");
}

/*
 * A snapshot holds its origin as it was: copies of the shared chunks
 * (partial writes, the copied sub-blocks around them), FUA and not,
 * on the origin after the snapshot.
 */
Test(pool_crash, snapshot_reads_origin_as_it_was, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 3, false), SN(0, 3),
					 W(0, 0, 4, false), W(0, 9, 1, true), FL,
					 W(0, 2, 1, false), TR(0, 4, 4, false), FL };

	check_hand(s, 9, "snapshot-cow");
}

/* A clone of a snapshot, written on both sides; the snapshot between them deleted. */
Test(pool_crash, clone_of_snapshot_written_both_sides, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, true), SN(0, 3),
					 CL(3, 4), W(4, 2, 3, false), W(0, 4, 2, false), FL,
					 W(4, 10, 2, true), DL(3), W(0, 12, 1, false), FL };

	check_hand(s, 11, "clone-of-snapshot");
}

/*
 * Deletes of shared volumes: the origin of a clone, then a clone that a
 * snapshot shares; new writes reuse what was freed, never what is shared.
 */
Test(pool_crash, delete_while_shared, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), W(0, 8, 4, false), CL(0, 3), DL(0),
					 W(3, 0, 2, false), FL, SN(3, 4), DL(3), W(1, 0, 8, false),
					 W(1, 8, 8, false), FL };

	check_hand(s, 11, "delete-shared");
}

/*
 * Snapshots, clones and deletes with requests in flight on other volumes,
 * and copy-on-write writes in flight with a FLUSH whose completion does
 * not cover the copy (R1: the COW record waits for the next flush). Every
 * completion order of the batches.
 */
Test(pool_crash, snapshot_with_requests_in_flight, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 2, false), W(1, 0, 8, false),
					 WP(1, 8, 4, false), SNP(0, 3), WP(1, 1, 2, true), FL,
					 FLP, WP(0, 2, 2, false), WP(1, 9, 1, false), CLP(3, 4),
					 WP(0, 8, 1, true), FL, W(4, 0, 1, false), FLP,
					 DLP(0), WP(4, 9, 3, false), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(3); order++) {
		hand(&wl, s, 18, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-in-flight"), 0, "%s", run.first);
	}
}

/*
 * A snapshot is a FLUSH of its origin, and takes its device flush without
 * the pool lock: a write in place (no record to wait on a flush) that
 * completes while that flush is under way is not covered by it, yet the
 * snapshot holds it. Its record must wait for a later flush (R1), or a
 * crash keeps the snapshot and loses the write. Writes over committed
 * chunks (in place) and into unwritten sub-blocks and a hole (records),
 * in flight together; in submission order and in random ones.
 */
Test(pool_crash, snapshot_flush_races_write_in_place, .init = setup, .fini = teardown)
{
	/* only writes in place race it: no record of theirs asks for a flush */
	static const struct step s1[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL,
					  W(0, 0, 4, false), WP(0, 9, 2, false), SNL(0, 3),
					  WP(1, 0, 2, false), W(0, 1, 1, false), FL };
	/* with them, writes into unwritten sub-blocks and a hole */
	static const struct step s2[] = { W(0, 0, 4, false), W(0, 8, 8, false), FL,
					  W(0, 0, 8, false), WP(0, 9, 2, false),
					  WP(0, 16, 2, false), SNL(0, 3), WP(1, 0, 2, false),
					  W(0, 1, 1, false), FL };
	static struct workload wl;

	for (uint64_t order = 0; order <= SEEDS(3); order++) {
		hand(&wl, s1, 9, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-flush-race"), 0, "%s", run.first);
		hand(&wl, s2, 10, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("snapshot-flush-race-records"), 0, "%s", run.first);
	}
}

/*
 * Revert to a snapshot, twice, with writes before and after; the second
 * with writes in flight on another volume; the snapshot deleted after.
 */
Test(pool_crash, revert_to_snapshot, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 4, true), SN(0, 3),
					 W(0, 2, 3, false), W(0, 12, 2, false), FL, RV(0, 3),
					 W(0, 4, 1, false), W(1, 0, 8, false), WP(1, 8, 2, false),
					 RVP(0, 3), WP(1, 3, 1, true), W(0, 9, 2, false), DL(3), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(3); order++) {
		hand(&wl, s, 15, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("revert"), 0, "%s", run.first);
	}
}

/*
 * A shrink over mapped chunks: v2 wide (two map leaves), written in both,
 * shrunk to one chunk (UNMAPs in its first leaf, the second leaf dropped
 * by the RESIZE record's TP_RZ_DROP), writes to v1 that may take the
 * freed chunks, v2 grown back (the dropped range reads zeros) and written.
 * All or nothing: before or after the shrink; what it kept intact; in no
 * state a chunk leaked (run.no_leaks): what it dropped is free again.
 */
Test(pool_crash, shrink_over_mapped_chunks, .init = setup, .fini = teardown)
{
	static const struct step s[] = { VC(WIDE), W(2, 0, 8, false), W(2, 8, 4, false),
					 W(2, 16, 8, false), W(2, 26, 4, true), FL, VS(2, 1),
					 W(1, 0, 8, false), W(1, 8, 8, false), W(2, 2, 2, false),
					 VS(2, WIDE), W(2, 20, 2, false), FL };

	run.no_leaks = true;
	check_hand(s, 13, "shrink-over-mapped");
	for (int i = 0; i < rq.nr; i++)
		cr_assert_eq(rq.r[i].ret, 0, "request %d: %d", i, rq.r[i].ret);
}

/*
 * A revert of a wide volume to its snapshot: the old map, two leaves,
 * goes to a ghost and is dropped; the volume reads exactly its snapshot
 * or exactly what it read before. Then a shrink of the reverted volume.
 */
Test(pool_crash, revert_wide_volume, .init = setup, .fini = teardown)
{
	static const struct step s[] = { VC(WIDE), W(2, 0, 8, false), W(2, 16, 8, true),
					 SN(2, 3), W(2, 2, 2, false), W(2, 18, 4, false),
					 W(2, 28, 2, true), FL, RV(2, 3), W(2, 17, 1, false),
					 VS(2, 2), FL };

	run.no_leaks = true;
	check_hand(s, 12, "revert-wide");
	for (int i = 0; i < rq.nr; i++)
		cr_assert_eq(rq.r[i].ret, 0, "request %d: %d", i, rq.r[i].ret);
}

typedef void (*gen_fn)(uint64_t seed, int n, bool conc, struct workload *wl);

static void
random_runs_of(gen_fn gen, uint64_t first, int count, int n, bool conc)
{
	struct timespec t0, t1;
	static struct workload wl;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t seed = first; seed < first + (uint64_t)count; seed++) {
		char name[48];

		gen(seed, n, conc, &wl);
		snprintf(name, sizeof(name), "random seed %llu%s", (unsigned long long)seed,
			 conc ? " concurrent" : "");
		cr_assert(run_twice(&wl, name), "%s run twice differs: %s", name, failmsg);
		cr_assert_eq(crash_states(name), 0, "%s", run.first);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: %llu states of %llu workloads in %.1f s\n",
		(unsigned long long)states, (unsigned long long)workloads,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void
random_runs(uint64_t first, int count, int n, bool conc)
{
	random_runs_of(gen_workload, first, count, n, conc);
}

/*
 * The 8-block journal wraps (a commit per FUA write, a checkpoint when it
 * is full): crash states with stale blocks of the previous lap after the
 * head, some of the new lap's blocks volatile.
 */
Test(pool_crash, journal_wrap_with_stale_blocks, .init = setup, .fini = teardown)
{
	static struct step s[20];
	bool rewritten = false;

	/* Within 3 chunks a volume: no ENOSPC in the 6 chunks of the pool. */
	for (int i = 0; i < 20; i++)
		s[i] = (struct step)W(i % 2, (uint32_t)(i * 5 % 24), 1, i % 5 != 4);
	check_hand(s, 20, "journal-wrap");
	for (int i = 0; i < rq.nr; i++)
		cr_assert_eq(rq.r[i].ret, 0, "request %d: %d", i, rq.r[i].ret);
	/* A journal block written twice: the ring wrapped within the workload. */
	for (int i = 0; i < dl.nw && !rewritten; i++)
		for (int j = i + 1; j < dl.nw && !rewritten; j++)
			rewritten = dl.w[i].fua && dl.w[j].fua && dl.w[i].len == TP_BLOCK &&
				    dl.w[i].off >= 2 * TP_BLOCK &&
				    dl.w[j].off == dl.w[i].off && dl.w[j].len == TP_BLOCK;
	cr_assert(rewritten, "the journal did not wrap");
}

/* Short random sequences, seeded, one request at a time. */
Test(pool_crash, random_short_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs(1, SEEDS(14), 8, false);
}

/* Snapshots, clones, deletes among writes, in batches completing out of order. */
Test(pool_crash, random_snapshot_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs_of(gen_snap_workload, 2001, SEEDS(8), 10, true);
}

/* Shrinks, grows and reverts over mapped chunks among writes, in batches out of order. */
Test(pool_crash, random_resize_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	run.no_leaks = true;
	random_runs_of(gen_resize_workload, 3005, SEEDS(4), 12, true);
}

/* Short random sequences in batches whose completions come back out of order. */
Test(pool_crash, random_concurrent_sequences, .init = setup, .fini = teardown, .timeout = 240)
{
	random_runs(1001, SEEDS(10), 8, true);
}

/*
 * A write in flight while a FLUSH is submitted, completing before the
 * flush does: the flush does not cover it, so its MAP record must wait for
 * the next flush (R1). Every completion order of the batch.
 */
Test(pool_crash, concurrent_write_and_flush, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(1, 0, 8, false), FL, TR(1, 0, 8, false), FL,
					 W(0, 0, 8, false), FLP, WP(0, 8, 2, false),
					 W(0, 16, 1, true), FL };
	static struct workload wl;

	for (uint64_t order = 1; order <= SEEDS(12); order++) {
		hand(&wl, s, 9, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("concurrent-write-flush"), 0, "%s", run.first);
	}
}

/*
 * Crashes during recovery (R7): every write of each recovery, for every
 * crash state (every sixth one under ASan).
 */
Test(pool_crash, crash_during_recovery, .init = setup, .fini = teardown, .timeout = 240)
{
	static const struct step s[] = { W(0, 0, 8, false), W(1, 3, 2, true), VC(2), FL,
					 TR(0, 0, 8, false), W(0, 9, 4, true), VR(3) };
	static struct workload wl;

	run.recov_every = RECOV_EVERY;
	hand(&wl, s, 7, 0);
	run_workload(&wl);
	cr_assert_eq(crash_states("crash-in-recovery"), 0, "%s", run.first);
	cr_assert_gt(rl.nw, 0, "no recovery wrote anything: nothing was tested");
}

/*
 * Threaded workloads: three writers and a thread of volume operations at
 * once, the committer and the reclaim thread running (run_threaded).
 * Some 16 crash points each at random, and every one just after a
 * metadata write (where R1 shows) or a snapshot; their states as anywhere
 * else. Release: some 15,000 states an engine, ASan some 3,000.
 */
static void
threaded_runs(uint64_t first, int count, int n, int points)
{
	struct timespec t0, t1;
	static struct workload wl;
	uint64_t s0 = states;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	run.points = points;
	for (uint64_t seed = first; seed < first + (uint64_t)count; seed++) {
		char name[48];

		memset(&wl, 0, sizeof(wl));
		wl.seed = seed;
		wl.fail_step = -1;
		gen_threaded(seed, n);
		snprintf(name, sizeof(name), "threaded seed %llu", (unsigned long long)seed);
		run_threaded(&wl);
		crash_states(name);
	}
	run.points = 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: threaded: %llu states of %d workloads (%llu requests, "
		"%llu failed or refused; %llu background commits, %llu chunks reclaimed in "
		"the background) in %.1f s\n", (unsigned long long)(states - s0), count,
		(unsigned long long)tws.reqs, (unsigned long long)tws.failed,
		(unsigned long long)tws.bg_commits, (unsigned long long)tws.reclaimed,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* Seven seeds, and three more with resizes and reverts (threaded_shrinks_and_reverts). */
Test(pool_crash, threaded_writers_and_volume_ops, .init = setup, .fini = teardown,
     .timeout = 240)
{
	threaded_runs(1, SEEDS(7), 12, 16);
	cr_assert_eq(run.failures, 0, "%s", run.first);
}

/*
 * FNV-1a over len bytes, from h. Not a crc: a payload sector ends with the
 * crc32c of the rest, and a crc over a message and its own crc is the same
 * whatever the message.
 */
static uint64_t
fnv(uint64_t h, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

/* Everything of the loaded log a replay reads, as one hash. */
static uint64_t
log_hash(void)
{
	uint64_t c = fnv(0xcbf29ce484222325ull, base, (size_t)img_size);

	c = fnv(c, &dl.ev, sizeof(dl.ev));
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];
		int64_t h[5] = { (int64_t)w->off, (int64_t)w->len, w->fua, w->sub, w->done };

		c = fnv(c, h, sizeof(h));
		c = fnv(c, w->data, (size_t)w->len);
	}
	c = fnv(c, dl.f, (size_t)dl.nf * sizeof(*dl.f));
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];
		int64_t h[10] = { r->s.op, r->s.vol, r->s.sec, r->s.nsec, r->s.fua,
				  (int64_t)r->seq, r->sub, r->done, r->ret, r->on };

		c = fnv(c, h, sizeof(h));
	}
	return c;
}

/* A threaded workload's trace, saved and loaded back, is the same log and replays. */
Test(pool_crash, threaded_trace_round_trip, .init = setup, .fini = teardown)
{
	static struct workload wl, back;
	static struct cstate cs, cs2;
	char *file;
	uint64_t hash;
	FILE *f;

	gen_threaded(7, 12);
	wl.seed = 7;
	run_threaded(&wl);
	hash = log_hash();
	cs = (struct cstate){ .k = dl.ev / 2, .tw = -1, .rk = -1, .rtw = -1 };
	cr_assert(asprintf(&file, "%s/trace-round-trip.case", test_dir()) > 0);
	f = fopen(file, "w");
	cr_assert(f);
	write_case(f, &wl, &cs);
	fclose(f);
	cr_assert(load_case(file, &back, &cs2), "%s does not load", file);
	cr_assert(back.trace && cs2.k == cs.k);
	cr_assert_eq(log_hash(), hash, "the log loaded from %s is not the one saved", file);
	cr_assert(replay_case(file), "%s: %s", file, run.first);
	unlink(file);
	free(file);
}

/* ... with snapshots and clones of the writers' volumes too. */
Test(pool_crash, threaded_snapshots_of_written_volumes, .init = setup, .fini = teardown,
     .timeout = 240)
{
	tw_origins = true;
	threaded_runs(1, SEEDS(10), 12, 16);
	tw_origins = false;
	cr_assert_eq(run.failures, 0, "%s", run.first);
}

/* ... with reverts, shrinks and grows of v2 among them (tw_resizes). */
Test(pool_crash, threaded_shrinks_and_reverts, .init = setup, .fini = teardown, .timeout = 240)
{
	tw_resizes = true;
	run.no_leaks = true;
	threaded_runs(101, SEEDS(3), 12, 16);
	tw_resizes = false;
	cr_assert_eq(run.failures, 0, "%s", run.first);
}

/*
 * Found by the threaded workloads (a clone of a writer's volume, written
 * by the volume operations' thread), and single-threaded as well: after a
 * clone of v0, a write to v0 copies its chunk away (v0's reference to the
 * shared chunk dropped, in memory), then a write to the clone finds the
 * chunk exclusive and writes it in place. A crash before the COW record
 * is durable leaves v0's map on the old chunk: v0 reads the clone's bytes
 * (here v0 sector 2 reads request 5's). The clone's write must go to a
 * copy until that record is durable (tp_unsharing).
 */
Test(pool_crash, cow_then_clone_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), W(0, 8, 8, false), FL, CL(0, 3),
					 W(0, 1, 1, false), W(3, 2, 1, false), FL };

	check_hand(s, 7, "cow-then-clone-in-place");
}

/*
 * The same with a TRIM: the clone trims the chunk it shares with v0 (its
 * reference gone, in memory), then v0 writes it; a crash before the
 * UNMAP is durable brings the clone's map of the chunk back, and with it
 * v0's write unless that went to a copy.
 */
Test(pool_crash, trim_then_origin_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, false), FL, CL(0, 3), TR(3, 0, 8, false),
					 W(0, 1, 1, false), FL };

	check_hand(s, 6, "trim-then-origin-in-place");
}

/*
 * Found by threaded_snapshots_of_written_volumes (seed 9): a snapshot of
 * v1 shares v1's map leaves. Its delete drops its reference to them in
 * memory, then commits; a write to v1 made meanwhile found the leaf and
 * the chunk v1's alone and wrote it in place. A crash before the delete
 * is durable brings the snapshot back, reading that write (here v3
 * sector 17 reads request 5's bytes). Until then the chunks of a leaf
 * that lost a reference are unsharing, as a chunk's are (leaf_put).
 */
Test(pool_crash, delete_then_origin_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(1, 8, 10, true), SN(1, 3), W(0, 0, 2, false),
					 W(0, 3, 2, true), DLU(3), WP(1, 17, 1, false), FL };

	check_hand(s, 7, "delete-then-origin-in-place");
}

/*
 * The same with a revert: v0's leaf after its snapshot v3 (chunk 3 its
 * alone) is shared with its clone v4; reverting v0 to v3 drops v0's
 * reference to it, and v4's write made meanwhile must go to a copy, or
 * a crash before the revert is durable shows it in v0.
 */
Test(pool_crash, revert_then_clone_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 8, 10, true), SN(0, 3), W(0, 24, 2, true), CL(0, 4),
					 W(1, 0, 2, false), W(1, 3, 2, true), RVU(0, 3),
					 WP(4, 25, 1, false), FL };

	check_hand(s, 9, "revert-then-clone-in-place");
}

/*
 * The same with a shrink: wide v2's second map leaf, shared with its
 * clone v4, is dropped by shrinking v2 to one chunk; v4's write made
 * meanwhile to a chunk of that leaf must go to a copy, or a crash before
 * the shrink is durable shows it in v2 (sector 16).
 */
Test(pool_crash, shrink_then_clone_writes_in_place, .init = setup, .fini = teardown)
{
	static const struct step s[] = { VC(WIDE), W(2, 16, 8, true), CL(2, 4), W(1, 0, 2, false),
					 W(1, 3, 2, true), VSU(2, 1), WP(4, 16, 1, false), FL };

	check_hand(s, 8, "shrink-then-clone-in-place");
}

/*
 * Found by the full suite once (a threaded workload, seed 2): a write to
 * v0's chunk shared with clone v3 goes to a copy; before it completes, a
 * TRIM of that chunk's every written sub-block appends an UNMAP but keeps
 * the entry, since the chunk has a write in flight (inflight). The COW
 * record then re-points the entry. Replay unmapped the emptied entry at
 * the UNMAP and refused the COW after it ("copy-on-write of no chunk"):
 * a pool that would not open after that crash. Completion orders that
 * end the TRIM first (the order seeds) make that record order.
 */
Test(pool_crash, trim_empties_a_chunk_under_its_copy, .init = setup, .fini = teardown)
{
	static const struct step s[] = { W(0, 0, 8, true), CL(0, 3), W(0, 0, 2, false),
					 TRP(0, 0, 8, false), FL };
	static struct workload wl;

	for (uint64_t order = 0; order <= 8; order++) {
		hand(&wl, s, 5, order * 7919);
		run_workload(&wl);
		cr_assert_eq(crash_states("trim-under-copy"), 0, "order %llu: %s",
			     (unsigned long long)order, run.first);
	}
}

/* Fail every device op from the Nth on, in pool create. */
Test(pool_crash, fail_from_nth_create, .init = setup, .fini = teardown)
{
	uint64_t n = fail_create_nth();

	cr_assert_gt(n, 1, "create: %s", run.first);
	fprintf(stderr, "crash simulator: create succeeds from op %llu\n", (unsigned long long)n);
}

static void
check_fail_nth(const struct step *s, int n, int step, const char *name)
{
	static struct workload wl;
	uint64_t ok;

	hand(&wl, s, n, 0);
	wl.fail_step = step;
	ok = fail_from_nth(&wl, name);
	cr_assert_gt(ok, 1, "%s: %s", name, run.first);
	fprintf(stderr, "crash simulator: %s succeeds when ops fail from the %llu-th\n", name,
		(unsigned long long)ok);
}

/* ... in volume create, delete, grow, shrink, and in a commit (FLUSH, FUA). */
Test(pool_crash, fail_from_nth_volume_ops, .init = setup, .fini = teardown, .timeout = 240)
{
	static const struct step c[] = { W(0, 0, 8, false), VC(2), W(0, 8, 1, false) };
	static const struct step d[] = { VC(2), W(1, 0, 8, false), VD };
	static const struct step g[] = { VC(1), W(0, 0, 4, false), VR(4) };
	static const struct step sh[] = { VC(4), W(0, 0, 4, true), VR(1) };
	static const struct step fl[] = { W(0, 0, 8, false), W(1, 3, 2, false), FL };
	static const struct step fua[] = { W(0, 0, 8, false), W(1, 3, 2, true) };

	check_fail_nth(c, 3, 1, "volume create");
	check_fail_nth(d, 3, 2, "volume delete");
	check_fail_nth(g, 3, 2, "volume grow");
	check_fail_nth(sh, 3, 2, "volume shrink");
	check_fail_nth(fl, 3, 2, "commit by FLUSH");
	check_fail_nth(fua, 2, 1, "commit by FUA");
}

/* The saved failing states in tests/unit/pool-crash-cases, replayed. */
Test(pool_crash, saved_cases, .init = setup, .fini = teardown, .timeout = 240)
{
	int bad = replay_path(DIO_TEST_SRCDIR "/unit/pool-crash-cases");

	cr_assert_eq(bad, 0, "%d saved cases fail; the first: %s", bad, run.first);
}

/* ---- standalone: the long mode and replay ---- */

static int
usage(void)
{
	fprintf(stderr, "usage: test-pool-crash [--states N] [--seed S] [--save DIR]\n"
			"       test-pool-crash --replay FILE|DIR\n"
			"       test-pool-crash [criterion options]  (the CI tests)\n"
			"Failing states are saved to --save DIR or $DIO_CRASH_SAVE.\n");
	return 2;
}

static int
standalone(int argc, char **argv)
{
	uint64_t want = 100000, seed = (uint64_t)time(NULL);
	const char *replay = NULL;
	struct timespec t0, t1;
	static struct workload wl;
	int bad = 0;

	memset(&run, 0, sizeof(run));
	run.save_dir = getenv("DIO_CRASH_SAVE");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return usage();
		if (!strcmp(a, "--states"))
			want = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--save"))
			run.save_dir = v;
		else if (!strcmp(a, "--replay"))
			replay = v;
		else
			return usage();
		i++;
	}
	make_base();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (replay) {
		bad = replay_path(replay);
		fprintf(stderr, "crash simulator: %d cases fail\n", bad);
	} else {
		run.lng = true;
		run.rng = seed | 1;
		run.recov_every = 64;
		fprintf(stderr, "crash simulator: seed %llu, %llu states, saving to %s\n",
			(unsigned long long)seed, (unsigned long long)want,
			run.save_dir ? run.save_dir : "(nowhere: --save DIR)");
		for (uint64_t s = seed; states < want; s++) {
			char name[48];

			/*
			 * Every third one with snapshots, clones and deletes,
			 * every fifth of the others with resizes and reverts
			 * over mapped chunks; every eighth threaded (not run
			 * twice: its order is the threads'), every other one of
			 * those with resizes and reverts too.
			 */
			if (s % 8 == 7) {
				snprintf(name, sizeof(name), "threaded seed %llu",
					 (unsigned long long)s);
				memset(&wl, 0, sizeof(wl));
				wl.seed = s;
				tw_resizes = s % 16 == 15;
				gen_threaded(s, 6 + (int)(s % 20));
				tw_resizes = false;
				run_threaded(&wl);
				if (crash_states(name))
					fprintf(stderr, "crash simulator: %s fails: %s\n", name,
						failmsg);
				continue;
			}
			if (s % 3 == 2)
				gen_snap_workload(s, 6 + (int)(s % 9), s % 2, &wl);
			else if (s % 5 == 4)
				gen_resize_workload(s, 6 + (int)(s % 9), s % 2, &wl);
			else
				gen_workload(s, 4 + (int)(s % 13), s % 2, &wl);
			snprintf(name, sizeof(name), "seed %llu", (unsigned long long)s);
			if (!run_twice(&wl, name)) {
				run.failures++;
				snprintf(run.first, sizeof(run.first), "%s run twice differs: %s",
					 name, failmsg);
				break;	/* nothing it finds can be trusted now */
			}
			if (crash_states(name))
				fprintf(stderr, "crash simulator: seed %llu fails: %s\n",
					(unsigned long long)s, failmsg);
		}
		bad = run.failures > 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "crash simulator: %llu states of %llu workloads in %.1f s, %llu failing%s%s\n",
		(unsigned long long)states, (unsigned long long)workloads,
		(double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
		(unsigned long long)run.failures, run.failures ? "; the first: " : "", run.first);
	for (int i = 0; i < rq.nr; i++)
		free(rq.r[i].buf);
	free_base();
	return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct criterion_test_set *tests;
	int ret = 0;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--states") || !strcmp(argv[i], "--seed") ||
		    !strcmp(argv[i], "--save") || !strcmp(argv[i], "--replay"))
			return standalone(argc, argv);
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		ret = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return ret;
}

