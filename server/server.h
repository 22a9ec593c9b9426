/* SPDX-License-Identifier: MIT */
/*
 * dionbd internals: what the files of server/ share. One concern per file:
 *   main.c      command line, signals, daemon, start and stop
 *   config.c    exports as configured, and the config file
 *   exports.c   the live export table
 *   control.c   the control socket: a Unix socket, one JSON-RPC request a line
 *   control-rpc.c  its JSON-RPC methods (jansson)
 *   manage.c    what an operator changes while serving: exports, TLS credentials
 *   reload.c    SIGHUP: the config file again, applied as the control socket would
 *   settings.c  the table of [server] settings (config file and command line)
 *   listen.c    TCP, Unix and systemd-activated listening sockets
 *   reactor.c   one thread per core: event_base + dio_ctx, connection hand-off
 *   conn.c      one client: buffers, socket I/O (conn_io), budget, lifetime
 *   req.c       a connection's request pool and send queue
 *   handshake.c the NBD handshake (options)
 *   protocol.c  the NBD transmission phase (commands and replies)
 *   readahead.c read ahead of sequential READ streams (readahead.h)
 *   tls.c       STARTTLS sessions: the TLS conn_io_ops, peer identity (tls.h)
 *   tls-creds.c TLS credentials: the OpenSSL context, certificates, CRL, PSK keys
 *   stats.c     counters: per export and per server (stats.h)
 *   metrics.c   the Prometheus metrics page over HTTP (evhttp, main thread)
 *   log.c       stderr or syslog
 */
#ifndef DIONBD_SERVER_H
#define DIONBD_SERVER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "dio/cache.h"
#include "dio/dio.h"
#include "dio/tpool.h"
#include "nbd-protocol.h"
#include "pollcheck.h"
#include "stats.h"

struct event;
struct event_base;

/* ---- log.c ---- */
enum { LOGL_ERR = 0, LOGL_WARN, LOGL_INFO, LOGL_DEBUG, LOGL_TRACE };
extern int log_level;
/* Messages above log_level are dropped; 'verbosity' is the number of -v. */
void log_init(int verbosity);
/* From now on log to syslog (after the daemon detached from its terminal). */
void log_use_syslog(void);
__attribute__((format(printf, 2, 0))) void log_vmsg(int level, const char *fmt, va_list ap);
__attribute__((format(printf, 2, 3))) void log_msg(int level, const char *fmt, ...);
#define log_err(...)	log_msg(LOGL_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOGL_INFO, __VA_ARGS__)
/* Tested before the arguments are evaluated: free on the request path when off. */
#define log_debug(...)							\
	do {								\
		if (log_level >= LOGL_DEBUG)				\
			log_msg(LOGL_DEBUG, __VA_ARGS__);		\
	} while (0)
#define log_trace(...)							\
	do {								\
		if (log_level >= LOGL_TRACE)				\
			log_msg(LOGL_TRACE, __VA_ARGS__);		\
	} while (0)

/* ---- config.c ---- */
/*
 * An export: as configured (config.c, in server_cfg.exports: vol NULL), or
 * live (exports.c: a heap object with references, in the export table).
 */
struct export {
	char *name;		/* "" is the default export */
	char *path;
	char *description;	/* may be NULL */
	bool readonly;		/* live: read with __atomic_load_n, set by the control socket */
	bool removed;		/* live: off the table; new requests get ESHUTDOWN (atomic) */
	bool cli;		/* given on the command line: SIGHUP leaves it alone */
	uint64_t drop_at;	/* live, removed: close its connections by then (CLOCK_MONOTONIC ns) */
	unsigned int refs;	/* live: the table's and each connection's (atomic) */
	struct dio_volume *vol;	/* live: a reference; one volume per file, shared by its exports */
	/*
	 * Identities that may open this export: a client certificate's
	 * subject (CN, or the whole DN) or a PSK identity. NULL = anyone.
	 */
	char **allow;
	size_t nallow;
	/* rbd: exports only (EXPORT_RBD_PREFIX): how to reach the cluster */
	struct export_rbd {
		char *conf;		/* ceph.conf; NULL: librados' search path */
		char *id;		/* client id; NULL: admin */
		char *keyring;		/* NULL: as conf says */
		bool cache;		/* librbd's writeback cache (rbd-cache) */
		bool takeover;		/* break another holder's lock (rbd-takeover) */
		unsigned int timeout;	/* s; 0: DIO_RBD_TIMEOUT_DEFAULT */
	} rbd;
	struct export_stats stats;	/* written by reactors while serving (stats.h) */
	/* the block cache (libdio's cache.h): how this export uses its volume's */
	enum export_cache {
		EXPORT_CACHE_NONE = 0,	/* direct I/O (kept coherent if another export caches) */
		EXPORT_CACHE_READ,	/* reads kept, writes through */
		EXPORT_CACHE_WRITEBACK,	/* reads kept, writes dirty until written back */
	} cache;
};

enum tls_mode {
	TLS_OFF = 0,	/* STARTTLS refused */
	TLS_ON,		/* clients may upgrade; exports with allow-lists need TLS */
	TLS_REQUIRE,	/* nothing but STARTTLS and ABORT before TLS */
};

struct server_cfg {
	struct export *exports;
	size_t nexports;
	char **binds;		/* TCP addresses; none = every address */
	size_t nbinds;
	char *port;		/* TCP port; NULL = NBDP_DEFAULT_PORT */
	char *unix_path;	/* Unix socket, or NULL */
	bool tcp;		/* listen on TCP: -p/-b given, or no Unix socket */
	unsigned int threads;	/* reactors; 0 = one per core */
	enum dio_engine_kind engine;
	bool foreground;
	char *pidfile;
	char *control_path;	/* the control socket (control.c), or NULL */
	char *config_path;	/* the config file, absolute, for SIGHUP; or NULL */
	bool readonly;		/* every export read-only */
	unsigned int verbose;		/* 0..4: -v each adds one */
	unsigned int max_conns;		/* connection cap over all reactors */
	unsigned int handshake_timeout;	/* seconds */
	unsigned int max_options;	/* options per connection */
	unsigned int max_inflight;	/* requests per connection */
	uint64_t max_inflight_bytes;	/* READ/WRITE payload bytes per connection */
	unsigned int stop_timeout;	/* seconds to finish in-flight work on SIGTERM */
	unsigned int poll_us;		/* adaptive polling cap per reactor; 0 = never poll */
	bool poll_yield;		/* no polling while the machine is short of CPU */
	bool poll_check;		/* poll only while polling is measured to pay (pollcheck.c) */
	unsigned int submit_batch;	/* io_uring SQEs that go in at once; 0 = at the loop turn's end */
	bool pool_discard;		/* thin pools pass freed chunks down to the device */
	unsigned int request_timeout;	/* seconds a started request may take to arrive; 0 = none */
	bool readahead;			/* read ahead of sequential READ streams */
	uint64_t cache_size;		/* bytes per cached volume (exports with cache=) */
	unsigned int cache_dirty_limit;	/* % of cache_size that may be dirty (writeback) */
	unsigned int cache_writeback_age;	/* ms data may stay dirty before it is written back */
	bool image_locking;		/* lock files as QEMU does (libdio's file-lock) */
	enum tls_mode tls;
	bool tls_set;			/* --tls or tls= given (else implied by credentials) */
	char *tls_creds;		/* directory: ca-cert.pem server-cert.pem ... */
	char *tls_psk_file;		/* psktool format */
	bool tls_verify_peer;		/* require a client certificate */
	char *metrics;			/* [ADDR:]PORT of the metrics page, or NULL (off) */
};

/* Adaptive polling cap (poll-us): default and largest accepted, in µs. */
#define CONFIG_POLL_US_DEFAULT 500u
#define CONFIG_POLL_US_MAX 100000u

/* submit-batch: largest accepted (an io_uring of a reactor has 128 entries). */
#define CONFIG_SUBMIT_BATCH_MAX 128u

/* The engine options a reactor's (or a block cache's) io_uring gets from cfg. */
static inline unsigned int
config_submit_batch(const struct server_cfg *cfg)
{
	return cfg->submit_batch ? cfg->submit_batch : DIO_SUBMIT_AT_TURN;
}

/* Defaults for everything but exports. */
void config_init(struct server_cfg *cfg);
/* Add "-e NAME=PATH[,readonly][,allow=ID1:ID2...][,description=TEXT]". 0 or -1 (logged). */
int config_add_export_spec(struct server_cfg *cfg, const char *spec);
/* Add an export; strings are copied. 0 or -1 (logged). */
int config_add_export(struct server_cfg *cfg, const char *name, const char *path,
		      const char *description, bool readonly);
/* Append id to e's allow-list. 0 or -1 (logged). */
int config_export_allow(struct export *e, const char *id);
/*
 * An rbd export setting (rbd-conf, rbd-id, rbd-keyring, rbd-cache,
 * rbd-takeover, rbd-timeout) for e: 1 when key is one and v is good, 0 when key is not
 * one, -1 when v is bad (the reason in err).
 */
int config_export_rbd_key(struct export *e, const char *key, const char *v, char *err,
			  size_t errlen);
/* The export setting cache=none|read|writeback: as config_export_rbd_key. */
int config_export_cache_key(struct export *e, const char *key, const char *v, char *err,
			    size_t errlen);
/* Settle the TLS settings after all sources were read. 0 or -1 (logged). */
int config_check_tls(struct server_cfg *cfg);
/* Read a config file ([server] and [export NAME] sections). 0 or -1 (logged). */
int config_load_file(struct server_cfg *cfg, const char *path);
/* Free everything. */
void config_free(struct server_cfg *cfg);
/* Free an export's strings and allow-list (not the struct, not its volume). */
void config_export_clear(struct export *e);
/* The export called name[0..len), or NULL. */
const struct export *config_find_export(const struct server_cfg *cfg, const char *name,
					size_t len);

/* ---- settings.c ---- */
/*
 * One [server] setting: its name (config key and long option alike), the
 * values it takes and its field in struct server_cfg. A value NULL below is
 * the option given without one (-r, -v).
 */
struct setting;
struct option;

/* The setting called name (a config key; a long option without "--"), or NULL. */
const struct setting *settings_find(const char *name);
/* The setting behind getopt_long's return value opt, or NULL. */
const struct setting *settings_from_opt(int opt);
/* Its name: the config key, and the long option after "--". */
const char *settings_name(const struct setting *s);
/* What s accepts, for messages ("on or off", "a number in [1, 1024]"): buf. */
const char *settings_accepts(const struct setting *s, char *buf, size_t len);
/* Whether v is a value s accepts. 0 or -EINVAL. */
int settings_check(const struct setting *s, const char *v);
/* Parse v and store it into cfg. 0, -EINVAL (v is not a value of s) or -ENOMEM. */
int settings_set(struct server_cfg *cfg, const struct setting *s, const char *v);
/* The longest ADDR of an [ADDR:]PORT setting, with its '\0'. */
#define SETTINGS_ADDR_MAX 256
/*
 * Split "[ADDR:]PORT" ("9100", "127.0.0.1:9100", "[::1]:9100", "host:9100"):
 * ADDR into addr ("" if not given, brackets removed), PORT in [1, 65535]
 * into *port. 0 or -EINVAL.
 */
int settings_parse_endpoint(const char *v, char *addr, size_t addr_len, unsigned int *port);
/* A boolean, as every setting takes it: on/off, yes/no, true/false, 1/0. 0 or -EINVAL. */
int settings_parse_bool(const char *v, bool *out);
/*
 * getopt_long's tables: extra[] (up to its zero entry) and extra_short,
 * then every setting's options. Both malloc'd, the caller frees. 0 or -ENOMEM.
 */
int settings_getopt(const struct option *extra, const char *extra_short,
		    struct option **longopts, char **shortopts);
/* The --help lines of every setting. */
void settings_usage(FILE *f);
/* Log every setting's value as "setting NAME = VALUE" (debug level). */
void settings_log(const struct server_cfg *cfg);

/* ---- listen.c ---- */
struct listener {
	int fd;
	bool is_unix;
	struct event *ev;
};

/*
 * Open the listening sockets the configuration asks for, or take those
 * systemd passed (LISTEN_PID/LISTEN_FDS). *activated tells which. 0 or -1.
 */
int listen_open(const struct server_cfg *cfg, struct listener **out, size_t *n, bool *activated);
/* Close them (and remove our Unix socket). */
void listen_close(const struct server_cfg *cfg, struct listener *l, size_t n, bool activated);

/* ---- reactor.c ---- */
struct conn;

/* State every reactor sees. The export table is read-only once serving. */
struct tls_ctx;

/* ---- exports.c ---- */
/*
 * The thin pool at pool_path as the exports share it: opened (read-only if
 * readonly, discard as cfg says) on first use, kept until the export table is torn down. Main
 * thread only. 0 or -errno, with the reason in why.
 */
struct dio_tpool;
int exports_pool(const struct server_cfg *cfg, const char *pool_path, bool readonly, char *why,
		 size_t whylen, struct dio_tpool **out);
/*
 * Write back every block cache and flush what is under it (main thread;
 * waits): before a pool snapshot, so that it holds what clients were told
 * is written. 0, or -errno with the reason in why.
 */
int exports_sync_caches(char *why, size_t whylen);

/* An export path "pool:POOL/VOLUME" serves VOLUME of the thin pool at POOL (dionbd-pool). */
#define EXPORT_POOL_PREFIX "pool:"
/* An export path "rbd:POOL/IMAGE[@SNAP]" serves a Ceph RBD image (its settings: struct export_rbd). */
#define EXPORT_RBD_PREFIX "rbd:"
/* The exports clients can open now; lock guards v and n. */
struct export_table {
	pthread_rwlock_t lock;
	struct export **v;	/* each holds a reference of the table's */
	size_t n;
};

/* An empty table. 0 or -errno. */
int exports_init(struct export_table *t);
/* Open and add every configured export (writable ones first). 0 or -1 (logged). */
int exports_open(struct export_table *t, const struct server_cfg *cfg);
/*
 * Open spec's volume and add a live copy of it; cfg gives read-only and
 * image locking. 0, or -errno with the reason (naming the path) in err.
 */
int exports_add(struct export_table *t, const struct export *spec, const struct server_cfg *cfg,
		char *err, size_t errlen);
/*
 * Put a new live copy of spec in place of the export of its name (same
 * path: the volume is shared). Connections to the old one go on with it;
 * new ones get the new. 0 or -errno with err set.
 */
int exports_replace(struct export_table *t, const struct export *spec,
		    const struct server_cfg *cfg, char *err, size_t errlen);
/* Whether an export called name is in the table. */
bool exports_has(struct export_table *t, const char *name);
/* The export called name[0..len), with a reference for the caller, or NULL. */
struct export *exports_find(struct export_table *t, const char *name, size_t len);
/* Take name off the table and mark it removed; the table's reference goes to the caller. */
struct export *exports_unlink(struct export_table *t, const char *name);
/* Every export now, each with a reference; free with exports_snapshot_free. */
size_t exports_snapshot(struct export_table *t, struct export ***out);
void exports_snapshot_free(struct export **v, size_t n);
/*
 * Open the volume spec names (a file, pool:POOL/VOLUME or rbd:POOL/IMAGE),
 * read-only when asked; cfg gives image locking. 0 or -errno with the
 * reason, naming the path, in why.
 */
int exports_open_volume(const struct export *spec, bool readonly, const struct server_cfg *cfg,
			char *why, size_t whylen, struct dio_volume **out);
/* Drop the table's references. */
void exports_fini(struct export_table *t);
/* Another reference / drop one (the last frees it and puts its volume). */
struct export *export_get(struct export *e);
void export_put(struct export *e);

/*
 * Lock order: exports.lock, conns_lock and tls_lock are each taken alone.
 */
struct server {
	const struct server_cfg *cfg;
	struct tls_ctx *tls;	/* NULL when TLS is off; under tls_lock (swapped on reload) */
	pthread_mutex_t tls_lock;
	atomic_uint nconns;	/* connections alive, all reactors */
	struct export_table exports;
	pthread_mutex_t conns_lock;	/* guards conns and each one's listed fields */
	struct conn *conns;	/* every connection of every reactor (conn.c), for listing */
	uint64_t next_conn_id;	/* under conns_lock */
	struct server_stats stats;	/* stats.h */
	struct pollcheck pollcheck;	/* whether polling pays, server-wide */
};

/*
 * One event loop with its own dio_ctx (engine + pinned pool). Connections
 * live on one reactor for life, so nothing on the request path takes a lock.
 */
struct reactor {
	struct server *srv;
	unsigned int id;
	struct event_base *base;
	struct dio_ctx *ctx;
	struct event *dio_ev;		/* the ctx's event fd: reap */
	size_t buf_align;		/* the pool's buffer alignment */
	struct event *wake_ev;		/* wake_fd: hand-offs and stop */
	struct event *stop_timer;	/* hard deadline once stopping */
	int wake_fd;			/* eventfd */
	/* lock guards pending[], npending and stop_req: written by other threads */
	pthread_mutex_t lock;
	int *pending;
	size_t npending, cap;
	bool stop_req;
	bool stop_sent;		/* atomic: reactor_stop ran once (the thread may be gone) */
	/* reactor thread only */
	bool stopping;
	bool sweep_req;			/* under lock: an export was removed (reactor_sweep) */
	struct event *sweep_timer;	/* the next deadline of a removed export's connections */
	struct conn *conns;		/* every live connection (doubly linked; conn.c) */
	unsigned int nconns;
	uint64_t work;			/* callbacks run: what adaptive polling watches */
	uint64_t busy_since;		/* ns: the first callback of this loop turn, or 0 */
	uint64_t busy_ns;		/* atomic (relaxed): time in callbacks, for metrics.c */
	/* adaptive polling, atomic (relaxed), for metrics.c */
	bool polling;			/* the last turn opened a polling window */
	uint64_t poll_hits, poll_empty;	/* windows that found work, that ended empty */
	uint64_t poll_empty_ns;		/* time spun in windows that ended empty */
	/*
	 * How much each turn handles at once, atomic (relaxed), for metrics.c:
	 * reap passes that found completions and the completions they ran;
	 * socket writes that carried replies and the replies they finished.
	 */
	uint64_t reaps, completions;
	uint64_t reply_writes, replies;
	pthread_t thread;
	sem_t started;
	int start_ret;
};

/*
 * Set up a zeroed reactor in the calling thread (event_base, dio_ctx, events).
 * Used as is by a fuzzer or test that serves fds on its own loop. 0 or -errno.
 */
int reactor_init(struct reactor *r, struct server *srv, unsigned int id);
/* Free it; no connection may be left (reactor_drain first). */
void reactor_fini(struct reactor *r);
/* reactor_init in a new thread and run its loop there. 0 or -errno. */
int reactor_start(struct reactor *r, struct server *srv, unsigned int id);
/* Give an accepted socket to a reactor (any thread). 0 or -errno (fd closed). */
int reactor_hand_off(struct reactor *r, int fd);
/* Ask a reactor to stop gracefully (any thread). */
void reactor_stop(struct reactor *r);
/*
 * Exports were removed (any thread): the reactor closes its connections to
 * them that are still open at their export's drop_at.
 */
void reactor_sweep(struct reactor *r);
/* Wait for a started reactor's thread and free it. */
void reactor_join(struct reactor *r);
/* Serve an already-accepted fd on this reactor, from its own thread. 0 or -errno. */
int reactor_serve_fd(struct reactor *r, int fd);
/* A callback of r does work: counted for adaptive polling, timed as busy. */
static inline void
reactor_work(struct reactor *r)
{
	r->work++;
	if (!r->busy_since)
		r->busy_since = stats_now_ns();
}
/*
 * One turn of a non-threaded reactor's loop (block: wait for an event).
 * Returns the number of connections still alive.
 */
unsigned int reactor_poll(struct reactor *r, bool block);

/* ---- conn.c ---- */

/*
 * Socket I/O of one connection. Plain sockets use conn_io_plain; TLS slots
 * in by pointing conn->io at its own ops after STARTTLS.
 */
struct conn_io_ops {
	/* Read up to len bytes: > 0 bytes, 0 at end of stream, -EAGAIN, -errno. */
	ssize_t (*read)(struct conn *c, void *buf, size_t len);
	/* Write iov[0..n): bytes written (may be short), -EAGAIN, -errno. */
	ssize_t (*writev)(struct conn *c, const struct iovec *iov, int n);
	/*
	 * Optional - may be NULL. Whether bytes are buffered inside the layer
	 * (decrypted TLS records) that a read would return although the socket
	 * itself is not readable.
	 */
	bool (*pending)(struct conn *c);
	/* Optional - may be NULL. Free the layer's state before the fd closes. */
	void (*close)(struct conn *c);
};
extern const struct conn_io_ops conn_io_plain;

enum conn_state {
	CONN_HS_FLAGS = 0,	/* waiting for the client flags */
	CONN_HS_OPT,		/* waiting for an option */
	CONN_HS_DISCARD,	/* dropping an oversized option, then error reply */
	CONN_TX_HDR,		/* waiting for a request header */
	CONN_TX_PAYLOAD,	/* reading a WRITE payload into c->cur */
	CONN_TX_DISCARD,	/* dropping the payload of a refused WRITE */
};

#define CONN_INBUF		(64 * 1024)
#define CONN_OUT_HIGH		(256 * 1024)	/* stop reading while more is unsent */
#define CONN_READ_SEGS		16		/* hole/data chunks per READ reply */
#define CONN_BS_SEGS		64		/* extents per BLOCK_STATUS reply */
/* two BLOCK_STATUS chunks (base:allocation, a dirty bitmap) or an error */
#define CONN_HDR_SPACE		(2 * (CONN_BS_SEGS * 8 + 64))
#define CONN_MAX_IOV		(2 * CONN_READ_SEGS + 2)
#define CONN_MAX_PAYLOAD	(32u * 1024 * 1024)

/*
 * One NBD request from header to sent reply. Owned by its connection: on
 * c->free_reqs when idle; c->cur while its payload arrives; owned by libdio
 * between dio_submit and done(); on c->sendq until its reply is written.
 */
struct conn_req {
	struct dio_req dreq;		/* dreq.priv = this */
	struct conn *conn;
	struct conn_req *next;		/* free list or send queue */
	uint64_t cookie;
	uint64_t offset;
	uint32_t count;
	uint16_t cmd;
	uint16_t flags;
	int err;			/* NBDP_E* to reply, 0 = success */
	uint32_t acct;			/* bytes counted in conn->inflight_bytes */
	uint64_t start_ns;		/* header parsed (CLOCK_MONOTONIC); 0 = not counted */
	uint64_t submit_ns;		/* handed to libdio; 0 = not (yet) */
	uint64_t done_ns;		/* libdio done, reply queued; 0 = no stages to count */
	bool sr;			/* reply in structured form */
	struct dio_buf *dbuf;		/* READ/WRITE data: one reference, put at recycle */
	unsigned int iov_idx;		/* first iov not yet fully written */
	unsigned int niov;
	struct iovec iov[CONN_MAX_IOV];
	struct dio_seg segs[CONN_BS_SEGS];
	uint8_t hdr[CONN_HDR_SPACE] __attribute__((aligned(8)));
};

/* Bytes to send during the handshake (grown as needed, bounded by backpressure). */
struct conn_obuf {
	uint8_t *data;
	size_t len, off, cap;
};

struct conn {
	struct reactor *r;
	int fd;
	const struct conn_io_ops *io;
	void *io_priv;			/* the I/O layer's (TLS session) */
	char peer[64];
	struct event *rev, *wev, *timer;
	struct event *wake;		/* made active by req_queue: replies to send */
	bool rev_on, wev_on;
	bool want_write;		/* the socket refused output: wait for EV_WRITE */
	struct conn *prev, *next;	/* reactor's list */
	/* the server's list, for the control socket: under srv->conns_lock */
	struct conn *all_prev, *all_next;
	uint64_t id;
	int64_t started;		/* CLOCK_REALTIME seconds */
	char ident[160];		/* TLS peer identity, "" without TLS */
	unsigned int busy;		/* callbacks on the stack: do not free */

	enum conn_state state;
	bool eof_in;			/* the client closed its side or errored */
	bool closing;			/* conn_shutdown: ESHUTDOWN to new requests, close when done */
	bool stop_parse;		/* DISC or ABORT: ignore further input */
	bool dead;			/* socket closed; waiting for libdio to finish */

	uint8_t *in;			/* CONN_INBUF bytes; [in_start, in_end) unparsed */
	size_t in_start, in_end;
	uint64_t discard_left;

	/* handshake */
	bool fixed_newstyle;
	bool no_zeroes;
	bool sr;			/* structured replies negotiated */
	bool meta_alloc;		/* base:allocation selected (context id 1) */
	/*
	 * qemu:dirty-bitmap:<dirty_base> selected (context id 2): on a pool
	 * volume, what changed since its snapshot dirty_base (pool-diff.c).
	 */
	bool meta_dirty;
	char dirty_base[DIO_TPOOL_NAME_MAX + 1];
	bool block_size_agreed;		/* GO asked for NBD_INFO_BLOCK_SIZE */
	unsigned int nopts;
	uint32_t opt, opt_len;		/* option being discarded */
	struct conn_obuf out;

	/* transmission */
	struct export *exp;		/* a reference, put when c is freed */
	uint16_t eflags;
	struct conn_req *cur;		/* request whose payload is arriving */
	uint64_t reqs_parsed;		/* request headers taken so far */
	struct ra_stream *ra;		/* readahead of READ streams, or NULL (off) */
	uint32_t cache_flags;		/* DIO_REQ_* cache hints for the export's cache, or 0 */
	struct dio_cache_writer cache_writer;	/* its writeback errors seen (cache.h) */
	uint64_t req_timer_seq;		/* the request the timer is armed for */
	bool req_timer_on;		/* c->timer is the request deadline */
	uint64_t payload_got;
	struct conn_req *sendq, *sendq_tail;
	struct conn_req *free_reqs;
	unsigned int nfree;
	unsigned int nreqs;		/* requests allocated (not on free_reqs) */
	uint64_t inflight_bytes;
	uint64_t nrequests_total;
};

/* Start serving an accepted socket on reactor r (its thread). 0 or -errno. */
int conn_create(struct reactor *r, int fd);
/* Process input, write replies, update events; may free c. */
void conn_run(struct conn *c);
/* Close the socket now; c is freed once libdio is done with its requests. */
void conn_abort(struct conn *c, const char *why);
/* Graceful stop: no more requests, finish those in flight, then close. */
void conn_shutdown(struct conn *c);
/* The handshake chose exp: switch to the transmission phase (c takes over the reference). */
void conn_enter_transmission(struct conn *c, struct export *exp);
/* Append bytes to the handshake output. 0 or -ENOMEM. */
int conn_out_append(struct conn *c, const void *data, size_t len);
/* Bytes of unparsed input. */
static inline size_t
conn_in_avail(const struct conn *c)
{
	return c->in_end - c->in_start;
}

/* ---- req.c ---- */
/* A request from c's pool (or malloc), counted in c->nreqs. NULL on out of memory. */
struct conn_req *req_get(struct conn *c);
/* Recycle a request: drops its buffer and its share of the budget. */
void req_put(struct conn *c, struct conn_req *req);
/* A finished request's reply is ready in req->iov: queue it and wake c. */
void req_queue(struct conn *c, struct conn_req *req);
/*
 * Add the unsent reply bytes to iov[0..max) (adding to *total), reply by
 * reply, starting no new reply once *total reaches limit; iovecs used.
 */
int req_gather(const struct conn *c, struct iovec *iov, int max, size_t *total, size_t limit);
/* n reply bytes were written: advance the send queue; requests recycled. */
int req_consume(struct conn *c, size_t n);
/* Recycle every queued reply unsent (the socket is closed). */
void req_drop_queued(struct conn *c);
/* Free the pool's idle requests. */
void req_free_pool(struct conn *c);

/* ---- control.c, control-rpc.c, manage.c ---- */
struct ctl_client;

/* The control socket and what it acts on; the main thread's. */
struct control {
	struct server *srv;
	struct event_base *base;	/* the main thread's loop */
	struct reactor *reactors;
	unsigned int nreactors;
	size_t buf_align;		/* the reactors' buffer alignment: an export's lbs limit */
	int64_t started;		/* CLOCK_MONOTONIC seconds */
	int fd;				/* listening, or -1 */
	const char *path;
	struct event *ev;
	struct ctl_client *clients;
};

/* Listen on path (NULL: no control socket) after filling srv..buf_align. 0 or -1 (logged). */
int control_open(struct control *ctl, const char *path);
/* Close it and every client. */
void control_close(struct control *ctl);
/*
 * Answer one JSON-RPC request line: the response (one line, no newline),
 * malloc'd, or NULL on out of memory. The parser the fuzzer drives.
 */
char *control_handle(struct control *ctl, const char *line, size_t len);
/* CLOCK_MONOTONIC seconds (uptime). */
int64_t control_now_s(void);
/* Add an export while serving. 0 or -errno (-EEXIST: the name is taken) with err set. */
int manage_add_export(struct control *ctl, const struct export *spec, char *err, size_t errlen);
/*
 * Remove an export while serving: no new client finds it, its connections
 * get ESHUTDOWN for new requests and are closed after timeout seconds.
 * Returns how many connections it had (0 if there was no such export).
 */
unsigned int manage_remove_export(struct control *ctl, const char *name, unsigned int timeout);
/* Connections now open on export e, all reactors. */
unsigned int manage_export_conns(struct control *ctl, const struct export *e);
/* New TLS credentials for new sessions. 0, or -1 with err set (the old ones stay). */
int manage_reload_tls(struct control *ctl, char *err, size_t errlen);

/* ---- reload.c ---- */
/* SIGHUP: read cfg->config_path again and apply what changed. 0 or -1 (logged; nothing changed). */
int reload_config(struct control *ctl);

/* ---- handshake.c ---- */
/* Queue the server's greeting. 0 or -errno. */
int hs_start(struct conn *c);
/* Consume handshake input. 1 = progress, 0 = need more input, -1 = drop the client. */
int hs_process(struct conn *c);

/* ---- tls-creds.c ---- */
/* Load credentials and keys as cfg says into a new context. 0 or -1 (logged). */
int tls_ctx_new(const struct server_cfg *cfg, struct tls_ctx **out);
/* Drop the caller's reference to a context; sessions hold their own. */
void tls_ctx_free(struct tls_ctx *t);
/* Make t (a new reference) the context new sessions use; drops the old one's. */
void tls_ctx_swap(struct server *srv, struct tls_ctx *t);

/* ---- tls.c ---- */
/*
 * STARTTLS was acknowledged: everything in c->out is the last plaintext to
 * send; after it c speaks TLS (c->io and c->io_priv are swapped). 0 or -errno.
 */
int tls_start(struct conn *c);
/* Whether c has switched to TLS (the handshake may still be under way). */
bool tls_active(const struct conn *c);
/* Whether c's peer identity is on exp's allow-list (true if it has none). */
bool tls_export_allowed(const struct conn *c, const struct export *exp);

/* ---- protocol.c ---- */
/* Transmission flags for an export given what was negotiated. */
uint16_t proto_eflags(const struct conn *c, const struct export *exp);
/* Consume transmission input. 1 = progress, 0 = need more/stop, -1 = drop the client. */
int proto_process(struct conn *c);
/* n bytes of c->cur's payload were read straight into its buffer. */
void proto_payload_read(struct conn *c, size_t n);
/* Where the rest of c->cur's payload goes, and how much is left. */
void *proto_payload_dest(struct conn *c, size_t *left);
/* The NBD error for a -errno or errno value. */
uint32_t proto_errno_to_nbd(int err);

/* ---- metrics.c ---- */
struct metrics;

/*
 * Bind the metrics page's socket as cfg->metrics says ([ADDR:]PORT, ADDR
 * default 127.0.0.1): before daemonizing, so that a bad address is an
 * error on the terminal. *out stays NULL when metrics are off. 0 or -1 (logged).
 */
int metrics_open(const struct server_cfg *cfg, struct metrics **out);
/*
 * Serve GET /metrics on base (the main thread's loop), reporting srv, its
 * exports and reactors[0..n). Reads counters only. 0 or -1 (logged).
 */
int metrics_serve(struct metrics *m, struct event_base *base, struct server *srv,
		  const struct reactor *reactors, unsigned int n);
/* Stop serving and close the socket (NULL: nothing). */
void metrics_close(struct metrics *m);

#endif /* DIONBD_SERVER_H */
