/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus metrics page: GET /metrics over HTTP (libevent's evhttp)
 * on the main thread's loop, in the text exposition format 0.0.4. The
 * page is made from the counters of stats.h and a few gauges read from
 * the reactors, with relaxed atomic loads only: serving it never blocks or
 * slows a reactor. The socket is loopback by default: the page tells who
 * exports what, and HTTP here has no authentication.
 *
 * Names follow Prometheus's conventions: the dionbd_ prefix, base units
 * (_seconds, _bytes), _total on counters; labels export=, cmd=, error=,
 * cause=, reactor=. docs/dionbd.md has the table.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

#define METRICS_TIMEOUT		10	/* seconds an HTTP client may take */
#define METRICS_MAX_HEADERS	8192	/* bytes of request headers */
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	int fd;				/* listening, until handed to evhttp (then -1) */
	char where[SETTINGS_ADDR_MAX + 16];	/* "ADDR:PORT" for logs */
	struct evhttp *http;
	struct server *srv;
	const struct reactor *reactors;
	unsigned int nreactors;
};

/* One export as the page shows it: a copy taken under the export table's lock. */
struct metrics_export {
	char *name;
	struct export_stats st;
	bool cached;			/* its volume has a block cache: cst holds its counters */
	struct dio_cache_stats cst;
};

/* ---- the listening socket ---- */

int
metrics_open(const struct server_cfg *cfg, struct metrics **out)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char addr[SETTINGS_ADDR_MAX], port[8];
	unsigned int portnum;
	struct metrics *m;
	int fd = -1, one = 1, ret, err = 0;

	*out = NULL;
	if (!cfg->metrics)
		return 0;
	if (settings_parse_endpoint(cfg->metrics, addr, sizeof(addr), &portnum) < 0) {
		log_err("metrics: '%s' is not [ADDR:]PORT", cfg->metrics);
		return -1;
	}
	if (!addr[0])
		strcpy(addr, "127.0.0.1");
	snprintf(port, sizeof(port), "%u", portnum);
	ret = getaddrinfo(addr, port, &hints, &res);
	if (ret) {
		log_err("metrics: %s: %s", addr, gai_strerror(ret));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_err("metrics: cannot listen on %s port %s: %s", addr, port, strerror(err));
		return -1;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		log_err("metrics: out of memory");
		return -1;
	}
	m->fd = fd;
	snprintf(m->where, sizeof(m->where), strchr(addr, ':') ? "[%s]:%s" : "%s:%s", addr,
		 port);
	*out = m;
	return 0;
}

void
metrics_close(struct metrics *m)
{
	if (!m)
		return;
	if (m->http)
		evhttp_free(m->http);	/* closes the socket it was given */
	if (m->fd >= 0)
		close(m->fd);
	free(m);
}

/* ---- the page ---- */

/* Append s as a label value: backslash, double quote and newline escaped. */
static void
metrics_label(struct evbuffer *b, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;

		if (!esc)
			continue;
		evbuffer_add(b, run, (size_t)(s - run));
		evbuffer_add(b, esc, 2);
		run = s + 1;
	}
	evbuffer_add(b, run, (size_t)(s - run));
}

/* The HELP and TYPE lines of a family. */
static void
metrics_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{export="E"[,label="value"]} v */
static void
metrics_export_sample(struct evbuffer *b, const char *name, const char *exp, const char *label,
		      const char *value, uint64_t v)
{
	evbuffer_add_printf(b, "%s{export=\"", name);
	metrics_label(b, exp);
	if (label)
		evbuffer_add_printf(b, "\",%s=\"%s", label, value);
	evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)v);
}

/* Copy every live export's name and counters (a snapshot of the export table). */
static struct metrics_export *
metrics_snapshot(struct server *srv, size_t *n)
{
	struct metrics_export *snap;
	struct export **v;
	size_t nv, i;

	nv = exports_snapshot(&srv->exports, &v);
	*n = nv;
	snap = calloc(nv ? nv : 1, sizeof(*snap));
	for (i = 0; snap && i < nv; i++) {
		const struct export *e = v[i];
		const uint64_t *src = (const uint64_t *)&e->stats;
		uint64_t *dst = (uint64_t *)&snap[i].st;

		snap[i].name = strdup(e->name);
		if (!snap[i].name)
			break;
		/* struct export_stats is nothing but uint64_t counters */
		for (size_t k = 0; k < sizeof(e->stats) / sizeof(uint64_t); k++)
			dst[k] = stats_load(&src[k]);
		snap[i].cached = dio_volume_is_cache(e->vol);
		if (snap[i].cached)
			dio_cache_stats(e->vol, &snap[i].cst);
	}
	exports_snapshot_free(v, nv);
	if (snap && i < nv) {
		while (i--)
			free(snap[i].name);
		free(snap);
		return NULL;
	}
	return snap;
}

_Static_assert(sizeof(struct export_stats) % sizeof(uint64_t) == 0,
	       "struct export_stats must hold uint64_t counters only");

/* The requests answered by command: the histogram's count. */
static uint64_t
metrics_hist_count(const struct stats_hist *h)
{
	uint64_t n = 0;

	for (unsigned int b = 0; b <= STATS_NBUCKETS; b++)
		n += h->bucket[b];
	return n;
}

/* The per-export families. */
static void
metrics_exports(struct evbuffer *b, const struct metrics_export *ex, size_t n)
{
	size_t i;

	metrics_family(b, "dionbd_requests_total", "counter",
		       "NBD requests answered, by export and command.");
	for (i = 0; i < n; i++)
		for (unsigned int c = 0; c < STATS_NCMDS; c++)
			metrics_export_sample(b, "dionbd_requests_total", ex[i].name, "cmd",
					      stats_cmd_names[c],
					      metrics_hist_count(&ex[i].st.latency[c]));
	metrics_family(b, "dionbd_request_errors_total", "counter",
		       "NBD requests answered with an error, by export and NBD error.");
	for (i = 0; i < n; i++)
		for (unsigned int e = 0; e < STATS_NERRS; e++)
			metrics_export_sample(b, "dionbd_request_errors_total", ex[i].name, "error",
					      stats_err_names[e], ex[i].st.errors[e]);
	metrics_family(b, "dionbd_read_bytes_total", "counter",
		       "Bytes of READ data sent to clients, by export.");
	for (i = 0; i < n; i++)
		metrics_export_sample(b, "dionbd_read_bytes_total", ex[i].name, NULL, NULL,
				      ex[i].st.read_bytes);
	metrics_family(b, "dionbd_written_bytes_total", "counter",
		       "Bytes of WRITE data acknowledged to clients, by export.");
	for (i = 0; i < n; i++)
		metrics_export_sample(b, "dionbd_written_bytes_total", ex[i].name, NULL, NULL,
				      ex[i].st.written_bytes);
	metrics_family(b, "dionbd_requests_in_flight", "gauge",
		       "NBD requests received and not yet answered, by export.");
	for (i = 0; i < n; i++)
		metrics_export_sample(b, "dionbd_requests_in_flight", ex[i].name, NULL, NULL,
				      ex[i].st.inflight);
	metrics_family(b, "dionbd_request_stage_seconds_total", "counter",
		       "Time requests spent in each stage, by export: receive (header to "
		       "libdio, a WRITE's payload included), libdio (to its completion), reply "
		       "(to the last byte written); over dionbd_requests_staged_total requests.");
	for (i = 0; i < n; i++)
		for (unsigned int s = 0; s < STATS_NSTAGES; s++) {
			evbuffer_add_printf(b, "dionbd_request_stage_seconds_total{export=\"");
			metrics_label(b, ex[i].name);
			evbuffer_add_printf(b, "\",stage=\"%s\"} %.9f\n", stats_stage_names[s],
					    (double)ex[i].st.stage_ns[s] / 1e9);
		}
	metrics_family(b, "dionbd_requests_staged_total", "counter",
		       "Requests answered through libdio whose reply was written whole, by "
		       "export: the count behind dionbd_request_stage_seconds_total.");
	for (i = 0; i < n; i++)
		metrics_export_sample(b, "dionbd_requests_staged_total", ex[i].name, NULL, NULL,
				      ex[i].st.staged);
	metrics_family(b, "dionbd_request_duration_seconds", "histogram",
		       "Time from an NBD request's header to its reply queued, by export and "
		       "command.");
	for (i = 0; i < n; i++) {
		for (unsigned int c = 0; c < STATS_NCMDS; c++) {
			const struct stats_hist *h = &ex[i].st.latency[c];
			uint64_t cum = 0;

			for (unsigned int k = 0; k <= STATS_NBUCKETS; k++) {
				cum += h->bucket[k];
				evbuffer_add_printf(b, "dionbd_request_duration_seconds_bucket{export=\"");
				metrics_label(b, ex[i].name);
				if (k < STATS_NBUCKETS)
					evbuffer_add_printf(b, "\",cmd=\"%s\",le=\"%g\"} %llu\n",
							    stats_cmd_names[c],
							    (double)stats_bucket_ns[k] / 1e9,
							    (unsigned long long)cum);
				else
					evbuffer_add_printf(b, "\",cmd=\"%s\",le=\"+Inf\"} %llu\n",
							    stats_cmd_names[c],
							    (unsigned long long)cum);
			}
			evbuffer_add_printf(b, "dionbd_request_duration_seconds_sum{export=\"");
			metrics_label(b, ex[i].name);
			evbuffer_add_printf(b, "\",cmd=\"%s\"} %.9f\n", stats_cmd_names[c],
					    (double)h->sum_ns / 1e9);
			metrics_export_sample(b, "dionbd_request_duration_seconds_count", ex[i].name,
					      "cmd", stats_cmd_names[c], cum);
		}
	}
}

/* The block cache of each export's volume (shared by the exports of one volume). */
static void
metrics_caches(struct evbuffer *b, const struct metrics_export *ex, size_t n)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} fam[] = {
		{ "dionbd_cache_size_bytes", "gauge", "The block cache's bound (--cache-size), by "
		  "export; one cache serves all exports of a volume.",
		  offsetof(struct dio_cache_stats, size) },
		{ "dionbd_cache_used_bytes", "gauge", "Bytes the block cache holds, by export.",
		  offsetof(struct dio_cache_stats, used) },
		{ "dionbd_cache_peak_bytes", "gauge", "The most bytes the block cache has held "
		  "since it was made, by export.", offsetof(struct dio_cache_stats, peak) },
		{ "dionbd_cache_lent_bytes", "gauge", "Bytes of the block cache that only READ "
		  "replies still hold (evicted or copied units), by export.",
		  offsetof(struct dio_cache_stats, lent) },
		{ "dionbd_cache_zero_copy_hits_total", "counter", "READs answered with the cache's "
		  "own memory, no copy, by export.", offsetof(struct dio_cache_stats, zc_hits) },
		{ "dionbd_cache_stable_copies_total", "counter", "Units copied because a write "
		  "came while a READ reply held them, by export.",
		  offsetof(struct dio_cache_stats, stable_copies) },
		{ "dionbd_cache_dirty_bytes", "gauge", "Bytes of the block cache not yet written "
		  "back, by export.", offsetof(struct dio_cache_stats, dirty) },
		{ "dionbd_cache_hits_total", "counter", "READs answered by the block cache alone, by "
		  "export.", offsetof(struct dio_cache_stats, hits) },
		{ "dionbd_cache_misses_total", "counter", "READs that read the volume, by export.",
		  offsetof(struct dio_cache_stats, misses) },
		{ "dionbd_cache_writeback_bytes_total", "counter", "Bytes written back, by export.",
		  offsetof(struct dio_cache_stats, wb_bytes) },
		{ "dionbd_cache_writeback_errors_total", "counter", "Writeback writes that failed "
		  "(the data stays dirty), by export.", offsetof(struct dio_cache_stats, wb_errors) },
		{ "dionbd_cache_throttled_total", "counter", "Writes that waited for writeback "
		  "(dirty limit), by export.", offsetof(struct dio_cache_stats, throttled) },
		{ "dionbd_cache_readahead_bytes_total", "counter", "Bytes the block cache read "
		  "ahead of sequential READ streams, by export.",
		  offsetof(struct dio_cache_stats, ra_bytes) },
		{ "dionbd_cache_readahead_hits_total", "counter", "READs that used data the block "
		  "cache read ahead, by export.", offsetof(struct dio_cache_stats, ra_hits) },
		{ "dionbd_cache_readahead_misses_total", "counter", "READs of a stream being read "
		  "ahead that still read the volume, by export.",
		  offsetof(struct dio_cache_stats, ra_misses) },
		{ "dionbd_cache_readahead_wasted_bytes_total", "counter", "Bytes read ahead and "
		  "dropped before any READ used them, by export.",
		  offsetof(struct dio_cache_stats, ra_wasted) },
		{ "dionbd_cache_prefetch_bytes_total", "counter", "Bytes read into the block cache "
		  "for NBD_CMD_CACHE, by export.", offsetof(struct dio_cache_stats, prefetch_bytes) },
	};
	size_t i, k;

	for (i = 0; i < n && !ex[i].cached; i++)
		;
	if (i == n)
		return;
	for (k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		metrics_family(b, fam[k].name, fam[k].type, fam[k].help);
		for (i = 0; i < n; i++)
			if (ex[i].cached)
				metrics_export_sample(b, fam[k].name, ex[i].name, NULL, NULL,
						      *(const uint64_t *)((const char *)&ex[i].cst +
									  fam[k].off));
	}
}

/* A counter family with one label over names[0..n). */
static void
metrics_by_cause(struct evbuffer *b, const char *name, const char *help, const char *label,
		 const char *const *names, const uint64_t *v, unsigned int n)
{
	metrics_family(b, name, "counter", help);
	for (unsigned int i = 0; i < n; i++)
		evbuffer_add_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, names[i],
				    (unsigned long long)stats_load(&v[i]));
}

/* The server's families: connections, TLS, reactors and their buffer pools. */
/* What the polling check decided (pollcheck.c), when polling and the check are on. */
static void
metrics_pollcheck(struct evbuffer *b, struct pollcheck *pc, const struct server_cfg *cfg)
{
	struct pollcheck_window p, n;
	uint64_t trials, trials_poll, with, without, with_ns, without_ns;

	if (!cfg || !cfg->poll_us || !cfg->poll_check)
		return;
	pthread_mutex_lock(&pc->lock);
	trials = pc->trials;
	trials_poll = pc->trials_poll;
	p = pc->last_poll;
	n = pc->last_nopoll;
	pthread_mutex_unlock(&pc->lock);
	with = p.replies;
	without = n.replies;
	with_ns = p.ns;
	without_ns = n.ns;
	metrics_family(b, "dionbd_polling_allowed", "gauge",
		       "1 while reactors may poll after work (poll-check), 0 while not.");
	evbuffer_add_printf(b, "dionbd_polling_allowed %d\n",
			    (int)__atomic_load_n(&pc->allowed, __ATOMIC_RELAXED));
	metrics_family(b, "dionbd_poll_checks_total", "counter",
		       "Polling checks that decided, by the mode they chose.");
	evbuffer_add_printf(b, "dionbd_poll_checks_total{chose=\"poll\"} %llu\n",
			    (unsigned long long)trials_poll);
	evbuffer_add_printf(b, "dionbd_poll_checks_total{chose=\"nopoll\"} %llu\n",
			    (unsigned long long)(trials - trials_poll));
	metrics_family(b, "dionbd_poll_check_replies", "gauge",
		       "Replies in the last decided check's window, with and without polling.");
	evbuffer_add_printf(b, "dionbd_poll_check_replies{mode=\"poll\"} %llu\n",
			    (unsigned long long)with);
	evbuffer_add_printf(b, "dionbd_poll_check_replies{mode=\"nopoll\"} %llu\n",
			    (unsigned long long)without);
	metrics_family(b, "dionbd_poll_check_replies_per_second", "gauge",
		       "Replies per second in the last decided check's windows, by mode.");
	evbuffer_add_printf(b, "dionbd_poll_check_replies_per_second{mode=\"poll\"} %.1f\n",
			    with_ns ? (double)with * 1e9 / (double)with_ns : 0.0);
	evbuffer_add_printf(b, "dionbd_poll_check_replies_per_second{mode=\"nopoll\"} %.1f\n",
			    without_ns ? (double)without * 1e9 / (double)without_ns : 0.0);
	metrics_family(b, "dionbd_poll_check_cpu_seconds_per_reply", "gauge",
		       "The server's CPU time per reply in the last decided check's windows, by mode.");
	evbuffer_add_printf(b, "dionbd_poll_check_cpu_seconds_per_reply{mode=\"poll\"} %.9f\n",
			    with ? (double)p.cpu / 1e9 / (double)with : 0.0);
	evbuffer_add_printf(b, "dionbd_poll_check_cpu_seconds_per_reply{mode=\"nopoll\"} %.9f\n",
			    without ? (double)n.cpu / 1e9 / (double)without : 0.0);
	metrics_family(b, "dionbd_poll_check_others_cpus", "gauge",
		       "CPUs' worth of busy time the rest of the machine had in the last decided "
		       "check's windows, by mode.");
	evbuffer_add_printf(b, "dionbd_poll_check_others_cpus{mode=\"poll\"} %.3f\n",
			    with_ns ? (double)p.others / (double)with_ns : 0.0);
	evbuffer_add_printf(b, "dionbd_poll_check_others_cpus{mode=\"nopoll\"} %.3f\n",
			    without_ns ? (double)n.others / (double)without_ns : 0.0);
}

/* Each reactor's adaptive polling (reactor.c), when poll-us is above 0. */
static void
metrics_reactor_polling(struct evbuffer *b, const struct metrics *m)
{
	unsigned int i;

	if (!m->srv->cfg || !m->srv->cfg->poll_us)
		return;
	metrics_family(b, "dionbd_reactor_polling", "gauge",
		       "1 while the reactor opens polling windows after work, 0 while it sleeps "
		       "at once (idle, poll-yield or poll-check holding it off).");
	for (i = 0; i < m->nreactors; i++)
		evbuffer_add_printf(b, "dionbd_reactor_polling{reactor=\"%u\"} %d\n", i,
				    (int)__atomic_load_n(&m->reactors[i].polling, __ATOMIC_RELAXED));
	metrics_family(b, "dionbd_reactor_poll_windows_total", "counter",
		       "Polling windows, by outcome: hit (work came) or empty (the reactor slept).");
	for (i = 0; i < m->nreactors; i++) {
		evbuffer_add_printf(b,
				    "dionbd_reactor_poll_windows_total{reactor=\"%u\",outcome=\"hit\"} "
				    "%llu\n",
				    i, (unsigned long long)stats_load(&m->reactors[i].poll_hits));
		evbuffer_add_printf(b,
				    "dionbd_reactor_poll_windows_total{reactor=\"%u\",outcome=\"empty\"} "
				    "%llu\n",
				    i, (unsigned long long)stats_load(&m->reactors[i].poll_empty));
	}
	metrics_family(b, "dionbd_reactor_poll_empty_seconds_total", "counter",
		       "Time each reactor spun in polling windows that ended empty.");
	for (i = 0; i < m->nreactors; i++)
		evbuffer_add_printf(b, "dionbd_reactor_poll_empty_seconds_total{reactor=\"%u\"} %.9f\n",
				    i, (double)stats_load(&m->reactors[i].poll_empty_ns) / 1e9);
}

/*
 * What each reactor handles at once: completions per reap pass and replies
 * per socket write. A closed-loop client at depth N whose requests travel
 * together shows about N of each (bench/README.md, "One connection's
 * requests travel together").
 */
static void
metrics_reactor_batching(struct evbuffer *b, const struct metrics *m)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fam[] = {
		{ "dionbd_reactor_reaps_total",
		  "Passes of each reactor over its I/O completions that found some.",
		  offsetof(struct reactor, reaps) },
		{ "dionbd_reactor_completions_total",
		  "I/O completions each reactor ran (libdio end_io calls).",
		  offsetof(struct reactor, completions) },
		{ "dionbd_reactor_reply_writes_total",
		  "Socket writes of each reactor that finished at least one reply.",
		  offsetof(struct reactor, reply_writes) },
		{ "dionbd_reactor_replies_total",
		  "Replies those writes finished.",
		  offsetof(struct reactor, replies) },
	};

	for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		metrics_family(b, fam[k].name, "counter", fam[k].help);
		for (unsigned int i = 0; i < m->nreactors; i++) {
			uint64_t *p = (uint64_t *)((char *)&m->reactors[i] + fam[k].off);

			evbuffer_add_printf(b, "%s{reactor=\"%u\"} %llu\n", fam[k].name, i,
					    (unsigned long long)stats_load(p));
		}
	}
}

static void
metrics_server(struct evbuffer *b, const struct metrics *m)
{
	const struct server_stats *st = &m->srv->stats;
	unsigned int i;

	metrics_family(b, "dionbd_build_info", "gauge", "Always 1: the version serving.");
	evbuffer_add_printf(b, "dionbd_build_info{version=\"%s\"} 1\n", DIONBD_VERSION);
	metrics_family(b, "dionbd_connections_open", "gauge",
		       "Client connections open (counted against max-connections).");
	evbuffer_add_printf(b, "dionbd_connections_open %u\n", atomic_load(&m->srv->nconns));
	metrics_family(b, "dionbd_connections_accepted_total", "counter",
		       "Client connections accepted under the connection cap.");
	evbuffer_add_printf(b, "dionbd_connections_accepted_total %llu\n",
			    (unsigned long long)stats_load(&st->accepted));
	metrics_by_cause(b, "dionbd_connections_refused_total",
			 "Connections closed at once, before the NBD greeting, by cause.", "cause",
			 stats_refuse_names, st->refused, STATS_NREFUSE);
	metrics_by_cause(b, "dionbd_connections_dropped_total",
			 "Connections the server closed, by cause.", "cause", stats_drop_names,
			 st->dropped, STATS_NDROP);
	metrics_by_cause(b, "dionbd_tls_handshake_failures_total",
			 "TLS handshakes that failed, by cause.", "cause", stats_tls_names,
			 st->tls_failures, STATS_NTLS);

	metrics_pollcheck(b, &m->srv->pollcheck, m->srv->cfg);
	metrics_reactor_polling(b, m);
	metrics_family(b, "dionbd_reactor_busy_seconds_total", "counter",
		       "Time each reactor thread spent running callbacks.");
	for (i = 0; i < m->nreactors; i++)
		evbuffer_add_printf(b, "dionbd_reactor_busy_seconds_total{reactor=\"%u\"} %.9f\n",
				    i, (double)stats_load(&m->reactors[i].busy_ns) / 1e9);
	metrics_reactor_batching(b, m);
	metrics_family(b, "dionbd_buffer_pool_used_bytes", "gauge",
		       "Bytes of each reactor's pinned buffer arena in use.");
	for (i = 0; i < m->nreactors; i++) {
		size_t used, size;

		dio_pool_usage(dio_ctx_pool(m->reactors[i].ctx), &used, &size);
		evbuffer_add_printf(b, "dionbd_buffer_pool_used_bytes{reactor=\"%u\"} %zu\n", i,
				    used);
	}
	metrics_family(b, "dionbd_buffer_pool_size_bytes", "gauge",
		       "Size of each reactor's pinned buffer arena.");
	for (i = 0; i < m->nreactors; i++) {
		size_t used, size;

		dio_pool_usage(dio_ctx_pool(m->reactors[i].ctx), &used, &size);
		evbuffer_add_printf(b, "dionbd_buffer_pool_size_bytes{reactor=\"%u\"} %zu\n", i,
				    size);
	}
}

/* Any request: /metrics gets the page, anything else 404. */
static void
metrics_on_request(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct metrics_export *ex;
	struct evbuffer *b;
	size_t n;

	if (!path || strcmp(path, "/metrics")) {
		evhttp_send_error(req, HTTP_NOTFOUND, "dionbd serves /metrics only");
		return;
	}
	b = evbuffer_new();
	ex = b ? metrics_snapshot(m->srv, &n) : NULL;
	if (!ex) {
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	metrics_exports(b, ex, n);
	metrics_caches(b, ex, n);
	metrics_server(b, m);
	for (size_t i = 0; i < n; i++)
		free(ex[i].name);
	free(ex);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

int
metrics_serve(struct metrics *m, struct event_base *base, struct server *srv,
	      const struct reactor *reactors, unsigned int n)
{
	if (!m)
		return 0;
	m->srv = srv;
	m->reactors = reactors;
	m->nreactors = n;
	m->http = evhttp_new(base);
	if (!m->http) {
		log_err("metrics: out of memory");
		return -1;
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_gencb(m->http, metrics_on_request, m);
	if (!evhttp_accept_socket_with_handle(m->http, m->fd)) {
		log_err("metrics: cannot serve on %s", m->where);
		return -1;	/* metrics_close closes the socket */
	}
	m->fd = -1;
	log_info("metrics at http://%s/metrics", m->where);
	return 0;
}
