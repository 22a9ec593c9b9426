/* SPDX-License-Identifier: MIT */
#ifndef DIO_TEST_CRASH_H
#define DIO_TEST_CRASH_H
/*
 * The crash simulator (POOL.md "Crash simulation").
 *
 * A recording engine sits under the dio engine and wraps the engine under
 * test; the pool's metadata I/O goes through recording hooks. Both log
 * every device write (with its bytes and FUA), and every flush, with
 * submit and completion in one event order, beside the client requests'
 * submissions and replies. The recording engine holds completions and
 * hands them to libdio one per reap: in submission order, or (a workload's
 * order seed) in a random order, so writes and FLUSHes of one batch are in
 * flight together and complete out of order. Device model, a volatile
 * write cache: at crash point k a write is durable if it completed with
 * FUA, or completed before a flush was submitted that completed, all
 * before k; any other write submitted before k may be absent, present or
 * torn (sector granularity). A write that failed is one that never
 * completed.
 *
 * For each crash point: none / all / each alone / all but one of the
 * volatile writes (every subset when there are at most 8; random ones
 * beyond in the long mode), and torn variants. Each image is base +
 * overlay in memory; the free data chunks of the base hold garbage, as a
 * used device does. The pool is opened on the image read-only (recovery
 * must write nothing before it is done, R7), checked (no problems, R4),
 * and read through the volumes' map_begin against the oracle: what was
 * acknowledged with FUA, or before an acknowledged FLUSH, reads back (or a
 * later write's bytes); no sector ever holds bytes not written to that
 * volume at that offset; volume operations are all-or-nothing and present
 * once replied. Every sector payload names its volume, offset and
 * sequence, with a crc.
 *
 * Crashes during recovery (R7): recovery (open, close) runs on a crash
 * image with its writes logged, is crashed at each of them with the same
 * subsets, and must recover to what the first recovery read.
 *
 * Fail from the Nth: every device op from the Nth on fails with EIO, for
 * pool create, volume create/delete/resize and a commit; N grows until the
 * operation succeeds, and each failed run's crash states are checked.
 *
 * The program also runs standalone, outside Criterion:
 *   test-pool-crash --states N [--seed S] [--save DIR]   random workloads
 *   test-pool-crash --replay FILE|DIR                    saved cases
 * With $DIO_CRASH_TRACE set, each workload's device log and requests go
 * to stderr. The random workloads run twice each, and must log the same
 * device ops, data and completion order both times (run_twice).
 *
 * Snapshots, clones and deletes of shared volumes are volume operations
 * of the workloads; the oracle's rules for them are with struct vstate.
 * So are resizes over mapped chunks and reverts (H, V; a wide volume's
 * dropped leaf is a RESIZE with TP_RZ_DROP): a sector a resize cuts off
 * reads zeros once grown back (covers, in oracle.c), and with run.no_leaks
 * no crash state may leak a chunk of what they dropped.
 *
 * Threaded workloads (run_threaded): writers and volume operations in
 * threads of their own, with the pool's committer and reclaim thread; the
 * log is the order the threads made. Their failing states are saved as
 * traces, case files that hold the log itself (write_trace) and replay
 * with --replay alone, single-threaded.
 *
 * Every failing state is saved to DIR (--save or $DIO_CRASH_SAVE; under
 * Criterion $DIO_TEST_DIR/pool-crash-failures when neither is given) as a
 * case file: the workload, its completion order seed, the crash point, the
 * chosen volatile writes, the torn write and the recovery crash. It is
 * also reported on stderr as it is found, with the mismatch spelled out
 * (volume, offset, what it reads, what it could have read), and the first
 * of a workload as a whole case file between two marker lines: a CI log
 * alone is enough to replay it. The cases in tests/unit/pool-crash-cases/
 * are replayed by the Criterion test saved_cases.
 *
 * The simulator's modules (tests/unit/crash/), linked into test-pool-crash
 * alone:
 *   device.c	the device logs, the crash images built from them, the
 *		recording engine and the metadata hooks (a device in memory)
 *   run.c	payloads, the base pool image, running a workload (run_workload,
 *		run_twice)
 *   oracle.c	the oracle: an image recovered, read and judged
 *   enum.c	the crash states of a workload, enumerated and checked
 *   cases.c	case files and traces: saved, loaded, replayed
 *   gen.c	workloads by seed
 *   threaded.c	threaded workloads
 *   fail-nth.c	every device op failing from the Nth on
 * test-pool-crash.c holds the Criterion tests and the standalone long mode.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dio/dio.h"
#include "dio/tpool.h"
#include "pool.h"

#define SEC 512u
#define CHUNK 4096u
#define NCHUNKS 32
#define NSLOT 5		/* volumes v0..v4: v2 made empty; v3, v4 snapshots and clones */
#define VOLSZ (4 * CHUNK)
#define VSECS (VOLSZ / SEC)
#define MAXW 2048
#define MAXR 128
#define MAXSAVE 20	/* failing states saved per workload */
#define WIDE (TP_LEAF + 2)	/* chunks of a wide volume: its map has two leaves */

/* Stop the program: the simulator itself cannot go on (not a pool finding). */
#define need(c, ...)                                                                           \
	do {                                                                                   \
		if (!(c)) {                                                                    \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                       \
			fprintf(stderr, __VA_ARGS__);                                          \
			fputc('\n', stderr);                                                   \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* ---- device logs (device.c) ---- */

struct wrec {			/* one device write */
	uint64_t off, len;
	uint8_t *data;
	bool fua;
	int sub, done;		/* events; done -1 if it never completed */
};

struct frec {			/* one device flush */
	int sub, done;
};

struct dlog {
	int ev, nw, nf;
	struct wrec w[MAXW];
	struct frec f[MAXW];
};

extern struct dlog dl;		/* the workload's device */
extern struct dlog rl;		/* a recovery's device */
extern pthread_mutex_t evlock;	/* one event order for all threads (device.c) */

/*
 * A crash state: point k, the volatile writes present (sel), one torn
 * write tw keeping sectors [ta, tb) of it; then, when rk >= 0, a crash of
 * the recovery run on that image at rk with rsel present and rtw torn.
 */
struct cstate {
	int k, nsel, tw;
	uint32_t ta, tb;
	int rk, nrsel, rtw;
	uint32_t rta, rtb;
	int sel[MAXW], rsel[MAXW];
};

/* ---- client requests (run.c) ---- */

/*
 * Volume operations from OP_VCREATE on. C, D, R make, delete and resize
 * the empty v2; S (snapshot) and K (clone) make volume nsec of volume vol,
 * X deletes volume vol, shared or not, V reverts volume vol to its
 * snapshot nsec. H resizes volume vol to nsec chunks, closed first (an
 * open volume refuses a shrink): a shrink over mapped chunks drops them,
 * a RESIZE with TP_RZ_DROP when whole map leaves go. S, K, X, V and H may
 * be in flight with the data requests of their batch (on other volumes).
 */
enum { OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO, OP_VCREATE, OP_VDELETE, OP_VRESIZE, OP_SNAP,
       OP_CLONE, OP_DEL, OP_REVERT, OP_VSIZE, OP_NR };
extern const char opchar[OP_NR];

struct step {
	int op, vol;
	uint32_t sec, nsec;	/* data: sectors; VCREATE/VRESIZE/VSIZE: nsec = size in chunks;
				 * SNAP/CLONE: nsec = the new volume; REVERT: the snapshot */
	/*
	 * SNAP/CLONE: the origin's writes in flight are not waited for
	 * before it; they complete during its first device flush (under
	 * way, the pool lock dropped), so before its point: the operation
	 * counts as submitted after them.
	 */
	bool fua;		/* X, V, H: runs beside the data steps after it
				 * marked par, during a commit (late_derive, run.c) */
	bool par;		/* in flight together with the step before */
};

struct rreq {			/* one client request */
	struct step s;
	uint64_t seq;		/* WRITE payload sequence */
	int sub, done, ret;
	int on;			/* the volume it was submitted to (a FLUSH: any) */
	struct dio_req req;
	uint8_t *buf;
};

struct reqlog {
	struct rreq r[MAXR];
	int nr;
};
extern struct reqlog rq;

/* ---- the recording engine and the metadata hooks (device.c) ---- */

struct rec_state {
	bool on;		/* log device ops into dl */
	uint64_t fail_from;	/* fail every device op from this one on (0: never) */
	uint64_t nops;		/* device ops counted since fail_from was set */
};
extern struct rec_state rec;

/*
 * Work done during a volume operation's first device flush (under way,
 * the pool lock dropped): a snapshot's or clone's origin writes complete
 * (S or K with step.fua), or, when under is set, it runs instead: a
 * delete, revert or resize (X, V or H with step.fua) starts, then the
 * data steps after it in its batch are submitted.
 */
struct late_derive {
	bool on;
	struct dio_ctx *ctx;
	int vol, r;		/* the origin, the operation's request */
	void (*under)(void);
};
extern struct late_derive late;

extern const struct dio_tpool_io rec_io_hooks;

/* A device in memory: read-only (writes counted and refused) or logged into log. */
struct memdev {
	uint8_t *img;
	uint64_t size;
	struct dlog *log;
	unsigned int writes;
};

void dlog_reset(struct dlog *L);
void log_event(struct dlog *L, int *ev);
int volatile_set(const struct dlog *L, int k, int *vol);
void build(uint8_t *dst, const uint8_t *src, uint64_t size, const struct dlog *L, int k,
      const int *sel, int nsel, int tw, uint32_t ta, uint32_t tb);
uint64_t rng_next(uint64_t *s);
struct dio_ctx *rec_ctx(uint64_t order);
int md_pread(void *priv, int fd, void *buf, size_t len, uint64_t off);
int md_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua);
int md_flush(void *priv, int fd);

/* ---- the pool images and workloads (run.c) ---- */

extern char *path;
extern uint8_t *base, *img, *rimg, *rbase;
extern uint64_t img_size;
extern uint64_t data_start;	/* the pool's first data chunk: metadata below */
extern uint64_t states, workloads;
extern char errbuf[512];
extern char failmsg[600];

struct workload {
	uint64_t seed;		/* what generated it (0: written by hand) */
	uint64_t order;		/* completion order seed; 0: submission order */
	int fail_step;		/* device ops fail from the fail_from-th after this step starts */
	uint64_t fail_from;
	int n;
	struct step s[MAXR];
	bool trace;		/* threaded: the log in dl and rq is the case (write_trace) */
};

extern const struct workload *cur;	/* the one whose log is in dl and rq */

bool is_derive(int op);
bool names_two(int op);
uint64_t voff(uint64_t sz, uint32_t sec);
uint32_t vsecs(uint64_t sz);
void payload(uint8_t *s, int vol, uint32_t sec, uint64_t seq);
bool failf(const char *fmt, ...);
void file_put(const uint8_t *b);
void garbage(uint8_t *buf, uint64_t a, uint64_t b);
void make_base(void);
void free_base(void);
void req_done(struct dio_req *req, int ret);
const char *vname(int v);
void drain(struct dio_ctx *ctx, int v, bool flushes);
int vol_op(struct dio_tpool *p, struct dio_volume **vols, const struct step *s);
int req_volume(struct dio_tpool *p, struct dio_volume **vols, int v);
void print_log(FILE *f);
struct dio_tpool *open_logged(unsigned int commit_ms);
void run_workload(const struct workload *wl);
bool run_twice(const struct workload *wl, const char *name);

/* ---- the oracle (oracle.c) ---- */

/* What a recovered image holds: which volumes, their sizes and sectors. */
struct vstate {
	bool exists[NSLOT];
	uint64_t size[NSLOT];
	int64_t seq[NSLOT][VSECS];
	char bad[160];		/* what the first sector of seq -1 holds */
	unsigned int leaks;	/* chunks the pool's check finds leaked */
};

extern bool rl_current;	/* rl already holds the recovery of the state's image */

bool run_recovery(const uint8_t *src);
void compute_frozen(void);
bool check_state(const struct cstate *cs);

/* ---- enumeration (enum.c) ---- */

struct run_opts {
	bool lng;		/* long mode: more subsets, random ones */
	uint64_t rng;		/* for the random choices of the long mode */
	int recov_every;	/* crash recovery of every this-many-th state (0: never) */
	int points;		/* crash points a workload, about (0: every one) */
	const char *save_dir;
	uint64_t failures;	/* failing states, in total */
	int saved;		/* of the current workload */
	char first[700];	/* the first failure's message */
	uint64_t counter;
	int wfails;		/* failing states of the current workload */
	int reported, dumped;	/* failing states printed, and as whole cases */
	bool no_leaks;		/* a leaked chunk fails the state (resizes, reverts) */
};
extern struct run_opts run;

uint64_t crash_states(const char *name);
uint64_t crash_point(struct cstate *cs, const char *name);

/* ---- saved cases and traces (cases.c) ---- */

void write_case(FILE *f, const struct workload *wl, const struct cstate *cs);
void save_case(const struct workload *wl, const struct cstate *cs);
bool load_case(const char *file, struct workload *wl, struct cstate *cs);
bool replay_case(const char *file);
int replay_path(const char *p);

/* ---- workloads by seed (gen.c) ---- */

void gen_workload(uint64_t seed, int n, bool conc, struct workload *wl);
bool unpar_overlap(struct step *st, int i);
void gen_snap_workload(uint64_t seed, int n, bool conc, struct workload *wl);
void gen_resize_workload(uint64_t seed, int n, bool conc, struct workload *wl);

/* ---- threaded workloads (threaded.c) ---- */

extern bool tw_origins;
extern bool tw_resizes;

/* What the threaded runs exercised: the pool's threads, and how requests ended. */
struct tw_stats {
	uint64_t bg_commits, reclaimed, reqs, failed;
};
extern struct tw_stats tws;

void gen_threaded(uint64_t seed, int n);
void run_threaded(struct workload *wl);

/* ---- every device op failing from the Nth on (fail-nth.c) ---- */

uint64_t fail_from_nth(struct workload *wl, const char *name);
uint64_t fail_create_nth(void);

#endif
