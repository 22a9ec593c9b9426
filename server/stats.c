/* SPDX-License-Identifier: MIT */
/*
 * The counters' updates (stats.h): what the one-line hooks in protocol.c,
 * req.c, conn.c, tls.c, reactor.c and main.c call. On the request path
 * they cost two clock reads and a handful of relaxed atomic adds.
 */
#include "server.h"

const uint64_t stats_bucket_ns[STATS_NBUCKETS] = {
	10000,	   25000,     50000,     100000,	 250000,     500000,	 1000000,
	2500000,   5000000,   10000000,  25000000,	 50000000,   100000000,	 250000000,
	500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

const char *const stats_cmd_names[STATS_NCMDS] = {
	"READ", "WRITE", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS", "OTHER",
};

const char *const stats_stage_names[STATS_NSTAGES] = {
	"receive", "libdio", "reply",
};

const char *const stats_err_names[STATS_NERRS] = {
	"EPERM", "EIO", "ENOMEM", "EINVAL", "ENOSPC", "EOVERFLOW", "ENOTSUP", "ESHUTDOWN",
};

const char *const stats_refuse_names[STATS_NREFUSE] = {
	"connection_cap", "server_stopping", "out_of_memory",
};

const char *const stats_drop_names[STATS_NDROP] = {
	"handshake_deadline", "request_deadline", "protocol_error",
	"write_error",	      "tls_failure",	  "server_stopping",
};

const char *const stats_tls_names[STATS_NTLS] = {
	"peer_closed", "certificate", "unknown_psk", "protocol", "early_data",
};

/* The counters of e: atomics written through a const export (stats.h). */
static struct export_stats *
stats_of(const struct export *e)
{
	return (struct export_stats *)&e->stats;
}

static enum stats_cmd
stats_cmd(uint16_t cmd)
{
	switch (cmd) {
	case NBDP_CMD_READ:
		return STATS_CMD_READ;
	case NBDP_CMD_WRITE:
		return STATS_CMD_WRITE;
	case NBDP_CMD_FLUSH:
		return STATS_CMD_FLUSH;
	case NBDP_CMD_TRIM:
		return STATS_CMD_TRIM;
	case NBDP_CMD_CACHE:
		return STATS_CMD_CACHE;
	case NBDP_CMD_WRITE_ZEROES:
		return STATS_CMD_WRITE_ZEROES;
	case NBDP_CMD_BLOCK_STATUS:
		return STATS_CMD_BLOCK_STATUS;
	default:
		return STATS_CMD_OTHER;
	}
}

static enum stats_err
stats_err(int nbd_err)
{
	switch (nbd_err) {
	case NBDP_EPERM:
		return STATS_ERR_EPERM;
	case NBDP_ENOMEM:
		return STATS_ERR_ENOMEM;
	case NBDP_EINVAL:
		return STATS_ERR_EINVAL;
	case NBDP_ENOSPC:
		return STATS_ERR_ENOSPC;
	case NBDP_EOVERFLOW:
		return STATS_ERR_EOVERFLOW;
	case NBDP_ENOTSUP:
		return STATS_ERR_ENOTSUP;
	case NBDP_ESHUTDOWN:
		return STATS_ERR_ESHUTDOWN;
	default:
		return STATS_ERR_EIO;	/* as proto_errno_to_nbd maps the unknown */
	}
}

void
stats_req_start(const struct export *e, struct conn_req *req)
{
	req->start_ns = stats_now_ns();
	stats_add(&stats_of(e)->inflight, 1);
}

void
stats_req_done(const struct export *e, struct conn_req *req)
{
	struct export_stats *st = stats_of(e);
	struct stats_hist *h;
	uint64_t ns;
	unsigned int b = 0;

	if (!req->start_ns)
		return;
	req->done_ns = stats_now_ns();
	ns = req->done_ns - req->start_ns;
	if (req->submit_ns) {
		stats_add(&st->stage_ns[STATS_STAGE_RECEIVE], req->submit_ns - req->start_ns);
		stats_add(&st->stage_ns[STATS_STAGE_LIBDIO], req->done_ns - req->submit_ns);
	} else {
		req->done_ns = 0;	/* answered without libdio: no stages to count */
	}
	req->start_ns = 0;
	h = &st->latency[stats_cmd(req->cmd)];
	while (b < STATS_NBUCKETS && ns > stats_bucket_ns[b])
		b++;
	stats_add(&h->bucket[b], 1);
	stats_add(&h->sum_ns, ns);
	stats_add(&st->inflight, (uint64_t)-1);
	if (req->err)
		stats_add(&st->errors[stats_err(req->err)], 1);
	else if (req->cmd == NBDP_CMD_READ)
		stats_add(&st->read_bytes, req->count);
	else if (req->cmd == NBDP_CMD_WRITE)
		stats_add(&st->written_bytes, req->count);
}

void
stats_req_submit(struct conn_req *req)
{
	req->submit_ns = stats_now_ns();
}

void
stats_req_sent(const struct export *e, struct conn_req *req, uint64_t *now)
{
	struct export_stats *st = stats_of(e);

	if (!req->done_ns)
		return;
	if (!*now)
		*now = stats_now_ns();
	stats_add(&st->stage_ns[STATS_STAGE_REPLY], *now - req->done_ns);
	stats_add(&st->staged, 1);
	req->done_ns = 0;
}

void
stats_req_abandon(const struct export *e, struct conn_req *req)
{
	req->start_ns = 0;
	stats_add(&stats_of(e)->inflight, (uint64_t)-1);
}

void
stats_conn_accepted(struct server *srv)
{
	stats_add(&srv->stats.accepted, 1);
}

void
stats_conn_refused(struct server *srv, enum stats_refuse why)
{
	stats_add(&srv->stats.refused[why], 1);
}

void
stats_conn_dropped(struct server *srv, enum stats_drop why)
{
	stats_add(&srv->stats.dropped[why], 1);
}

void
stats_tls_failed(struct server *srv, enum stats_tls why)
{
	stats_add(&srv->stats.tls_failures[why], 1);
	if (why != STATS_TLS_PEER_CLOSED)
		stats_conn_dropped(srv, STATS_DROP_TLS_FAILURE);
}
