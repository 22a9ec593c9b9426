/* SPDX-License-Identifier: MIT */
/*
 * Counters for the metrics page (metrics.c) and whoever else reports on
 * the daemon: per export (requests, bytes, errors, latency, in flight)
 * and per server (connections accepted, refused, dropped; TLS failures).
 *
 * Concurrency: every counter is a uint64_t that reactors update with
 * relaxed atomic adds (no lock, no ordering: each counter is exact on its
 * own, and a reader sees each at most a moment old). Readers load them
 * with relaxed atomic loads from any thread; a page is not a consistent
 * snapshot across counters, only each counter is.
 */
#ifndef DIONBD_STATS_H
#define DIONBD_STATS_H

#include <stdint.h>
#include <time.h>

struct conn_req;
struct export;
struct server;

/* NBD commands, as counted: the label cmd= (DISC is not a request here). */
enum stats_cmd {
	STATS_CMD_READ = 0,
	STATS_CMD_WRITE,
	STATS_CMD_FLUSH,
	STATS_CMD_TRIM,
	STATS_CMD_CACHE,
	STATS_CMD_WRITE_ZEROES,
	STATS_CMD_BLOCK_STATUS,
	STATS_CMD_OTHER,	/* a command we do not know (answered EINVAL) */
	STATS_NCMDS
};

/* NBD errors replied: the label error=. */
enum stats_err {
	STATS_ERR_EPERM = 0,
	STATS_ERR_EIO,
	STATS_ERR_ENOMEM,
	STATS_ERR_EINVAL,
	STATS_ERR_ENOSPC,
	STATS_ERR_EOVERFLOW,
	STATS_ERR_ENOTSUP,
	STATS_ERR_ESHUTDOWN,
	STATS_NERRS
};

/* Why a connection was closed right after accept, before the greeting. */
enum stats_refuse {
	STATS_REFUSE_CAP = 0,		/* max-connections reached */
	STATS_REFUSE_STOPPING,		/* the reactor is stopping */
	STATS_REFUSE_NOMEM,		/* no memory for the connection */
	STATS_NREFUSE
};

/* Why the server closed a connection the client had not closed. */
enum stats_drop {
	STATS_DROP_HANDSHAKE_DEADLINE = 0,	/* handshake-timeout */
	STATS_DROP_REQUEST_DEADLINE,		/* request-timeout */
	STATS_DROP_PROTOCOL_ERROR,		/* bad magic, refused option, oversized WRITE... */
	STATS_DROP_WRITE_ERROR,			/* the socket refused our output */
	STATS_DROP_TLS_FAILURE,			/* TLS handshake failed (not: the peer left) */
	STATS_DROP_SERVER_STOPPING,		/* stop-timeout, or stopping mid-handshake */
	STATS_NDROP
};

/* Why a TLS handshake failed. */
enum stats_tls {
	STATS_TLS_PEER_CLOSED = 0,	/* the client went away mid-handshake */
	STATS_TLS_CERTIFICATE,		/* its certificate did not verify */
	STATS_TLS_UNKNOWN_PSK,		/* it offered a PSK identity we do not have */
	STATS_TLS_PROTOCOL,		/* anything else OpenSSL refused (versions, ciphers...) */
	STATS_TLS_EARLY_DATA,		/* it sent data before our STARTTLS reply */
	STATS_NTLS
};

/*
 * Where a request's time goes, summed over requests answered with their
 * reply fully written: the label stage=.
 */
enum stats_stage {
	STATS_STAGE_RECEIVE = 0,	/* header parsed -> handed to libdio (WRITE: its payload read) */
	STATS_STAGE_LIBDIO,		/* handed to libdio -> libdio done (queue, device, map) */
	STATS_STAGE_REPLY,		/* libdio done -> the reply's last byte written to the socket */
	STATS_NSTAGES
};

/* Latency buckets: upper bounds in ns, 10 µs to 10 s; one more for +Inf. */
#define STATS_NBUCKETS 19
extern const uint64_t stats_bucket_ns[STATS_NBUCKETS];

/* A histogram: counts per bucket (not cumulative; [STATS_NBUCKETS] is +Inf). */
struct stats_hist {
	uint64_t bucket[STATS_NBUCKETS + 1];
	uint64_t sum_ns;
};

/*
 * One export's counters, embedded in struct export. A request's count is
 * its histogram's: requests answered, by command, from header parsed to
 * reply queued. The export is shared read-only by every reactor; these are
 * its one part written while serving (atomically, see the top).
 */
struct export_stats {
	uint64_t inflight;		/* headers parsed, replies not yet queued */
	uint64_t read_bytes;		/* READ data replied */
	uint64_t written_bytes;		/* WRITE data acknowledged */
	uint64_t errors[STATS_NERRS];
	struct stats_hist latency[STATS_NCMDS];
	uint64_t stage_ns[STATS_NSTAGES];	/* see enum stats_stage */
	uint64_t staged;		/* requests counted in stage_ns */
};

/* The whole server's, in struct server. */
struct server_stats {
	uint64_t accepted;
	uint64_t refused[STATS_NREFUSE];
	uint64_t dropped[STATS_NDROP];
	uint64_t tls_failures[STATS_NTLS];
};

/* CLOCK_MONOTONIC in ns (vDSO: tens of ns). */
static inline uint64_t
stats_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Relaxed atomic add and load: the only ways to touch a counter. */
static inline void
stats_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static inline uint64_t
stats_load(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* A request header of export e was parsed: start req's clock, count it in flight. */
void stats_req_start(const struct export *e, struct conn_req *req);
/* req's reply (req->err: an NBD error or 0) is queued: latency, bytes, errors. */
void stats_req_done(const struct export *e, struct conn_req *req);
/* req was handed to libdio (the end of its receive stage). */
void stats_req_submit(struct conn_req *req);
/*
 * req's reply has been written whole: count its stages. *now is the time
 * it was written, read on first use (0: not yet), so that the replies one
 * sendmsg wrote share one clock read.
 */
void stats_req_sent(const struct export *e, struct conn_req *req, uint64_t *now);
/* req started but is recycled unanswered (its connection was dropped). */
void stats_req_abandon(const struct export *e, struct conn_req *req);

/* Connections: see the enums above. */
void stats_conn_accepted(struct server *srv);
void stats_conn_refused(struct server *srv, enum stats_refuse why);
void stats_conn_dropped(struct server *srv, enum stats_drop why);
/* A TLS handshake failed; counts the drop too, unless the peer left. */
void stats_tls_failed(struct server *srv, enum stats_tls why);

/* Label values, for the metrics page and logs. */
extern const char *const stats_cmd_names[STATS_NCMDS];
extern const char *const stats_err_names[STATS_NERRS];
extern const char *const stats_stage_names[STATS_NSTAGES];
extern const char *const stats_refuse_names[STATS_NREFUSE];
extern const char *const stats_drop_names[STATS_NDROP];
extern const char *const stats_tls_names[STATS_NTLS];

#endif /* DIONBD_STATS_H */
