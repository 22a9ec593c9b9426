/* SPDX-License-Identifier: MIT */
/*
 * The NBD handshake: fixed newstyle (and plain newstyle, EXPORT_NAME only),
 * option haggling until EXPORT_NAME or GO picks an export. Nothing here
 * touches a volume beyond reading its size and block sizes.
 *
 * Limits against hostile clients: options are parsed only once whole in
 * the input buffer (at most HS_OPT_MAX bytes of data); bigger ones up to
 * HS_DISCARD_MAX are read and dropped with an error reply to keep the
 * stream in sync; anything bigger, or more than max_options options, drops
 * the client. The handshake deadline is conn.c's timer.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define HS_OPT_MAX	(32 * 1024)
#define HS_DISCARD_MAX	(1024 * 1024)

static uint32_t
hs_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint16_t
hs_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return be16toh(v);
}

/* An option's name for logs. */
static const char *
hs_opt_name(uint32_t opt)
{
	switch (opt) {
	case NBDP_OPT_EXPORT_NAME:
		return "EXPORT_NAME";
	case NBDP_OPT_ABORT:
		return "ABORT";
	case NBDP_OPT_LIST:
		return "LIST";
	case NBDP_OPT_STARTTLS:
		return "STARTTLS";
	case NBDP_OPT_INFO:
		return "INFO";
	case NBDP_OPT_GO:
		return "GO";
	case NBDP_OPT_STRUCTURED_REPLY:
		return "STRUCTURED_REPLY";
	case NBDP_OPT_LIST_META_CONTEXT:
		return "LIST_META_CONTEXT";
	case NBDP_OPT_SET_META_CONTEXT:
		return "SET_META_CONTEXT";
	default:
		return "unknown";
	}
}

/* Queue an option reply with data[0..len) (data may be split in two parts). */
static int
hs_reply2(struct conn *c, uint32_t opt, uint32_t type, const void *a, size_t alen,
	  const void *b, size_t blen)
{
	struct wire_fixed_new_option_reply h = {
		.magic = htobe64(NBDP_REP_MAGIC),
		.option = htobe32(opt),
		.reply = htobe32(type),
		.len = htobe32((uint32_t)(alen + blen)),
	};

	if (conn_out_append(c, &h, sizeof(h)) < 0 || conn_out_append(c, a, alen) < 0 ||
	    conn_out_append(c, b, blen) < 0)
		return -1;
	return 1;
}

/* Queue an option reply with data[0..len). */
static int
hs_reply(struct conn *c, uint32_t opt, uint32_t type, const void *data, size_t len)
{
	return hs_reply2(c, opt, type, data, len, NULL, 0);
}

/* An error reply with a message for humans (the spec allows one). */
static int
hs_reply_err(struct conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	log_debug("%s: option %s: %s", c->peer, hs_opt_name(opt), msg);
	return hs_reply(c, opt, type, msg, strlen(msg));
}

struct hs_err {
	uint32_t type;
	const char *msg;
};

/*
 * INFO/GO and the META_CONTEXT options start with a 32-bit name length and
 * the name, followed by at least 'tail' bytes. True when that fits in len;
 * else *err says which error reply to give.
 */
static bool
hs_parse_name(const uint8_t *data, uint32_t len, uint32_t tail, uint32_t *namelen,
	      struct hs_err *err)
{
	if (len < 4 + tail) {
		*err = (struct hs_err){ NBDP_REP_ERR_INVALID, "option data too short" };
		return false;
	}
	*namelen = hs_get32(data);
	if (*namelen > len - 4 - tail) {
		*err = (struct hs_err){ NBDP_REP_ERR_INVALID, "name length past the data" };
		return false;
	}
	if (*namelen > NBDP_MAX_STRING) {
		*err = (struct hs_err){ NBDP_REP_ERR_TOO_BIG, "export name too long" };
		return false;
	}
	return true;
}

int
hs_start(struct conn *c)
{
	struct wire_new_handshake h = {
		.nbdmagic = htobe64(NBDP_MAGIC),
		.version = htobe64(NBDP_IHAVEOPT),
		.gflags = htobe16(NBDP_FLAG_FIXED_NEWSTYLE | NBDP_FLAG_NO_ZEROES),
	};

	c->state = CONN_HS_FLAGS;
	return conn_out_append(c, &h, sizeof(h));
}

/*
 * The export name[0..len) as this client may see it, with a reference for
 * the caller: NULL when there is none or when its allow-list does not name
 * the client (the two must look the same to the client). *tls_reqd: it
 * exists, but only over TLS.
 */
static struct export *
hs_find_export(struct conn *c, const char *name, uint32_t len, bool *tls_reqd)
{
	struct export *exp = exports_find(&c->r->srv->exports, name, len);

	*tls_reqd = false;
	if (!exp || tls_export_allowed(c, exp))
		return exp;
	if (!tls_active(c) && c->r->srv->tls)
		*tls_reqd = true;
	else
		log_info("%s: export '%s': the client is not on its allow-list", c->peer,
			 exp->name);
	export_put(exp);
	return NULL;
}

/* NBD_OPT_EXPORT_NAME: send size and flags, enter transmission. */
static int
hs_export_name(struct conn *c, const uint8_t *data, uint32_t len)
{
	static const uint8_t zeroes[124];
	struct wire_export_name_reply r;
	struct export *exp;
	bool tls_reqd;

	/* No error reply exists for EXPORT_NAME: the spec says disconnect. */
	if (len > NBDP_MAX_STRING) {
		log_info("%s: EXPORT_NAME: name of %u bytes is too long", c->peer, len);
		return -1;
	}
	exp = hs_find_export(c, (const char *)data, len, &tls_reqd);
	if (!exp) {
		log_info("%s: EXPORT_NAME: no export '%.*s'%s", c->peer,
			 len > 256 ? 256 : (int)len, (const char *)data,
			 tls_reqd ? " without TLS" : "");
		return -1;
	}
	r.exportsize = htobe64(exp->vol->size);
	r.eflags = htobe16(proto_eflags(c, exp));
	if (conn_out_append(c, &r, sizeof(r)) < 0 ||
	    (!c->no_zeroes && conn_out_append(c, zeroes, sizeof(zeroes)) < 0)) {
		export_put(exp);
		return -1;
	}
	c->block_size_agreed = false;
	conn_enter_transmission(c, exp);
	return 1;
}

/* NBD_OPT_LIST: one NBD_REP_SERVER per export, then ACK. */
static int
hs_list(struct conn *c, uint32_t len)
{
	struct export **v;
	size_t nv;
	int ret = 0;

	if (len)
		return hs_reply_err(c, NBDP_OPT_LIST, NBDP_REP_ERR_INVALID, "LIST takes no data");
	nv = exports_snapshot(&c->r->srv->exports, &v);
	for (size_t i = 0; i < nv && ret >= 0; i++) {
		const struct export *e = v[i];
		uint32_t nlen = htobe32((uint32_t)strlen(e->name));
		uint8_t buf[4 + NBDP_MAX_STRING];
		size_t n = strlen(e->name);

		/* Exports the client may not open are not its business. */
		if (!tls_export_allowed(c, e))
			continue;

		memcpy(buf, &nlen, 4);
		memcpy(buf + 4, e->name, n);
		/* After the name, the spec lets us add a description for humans. */
		ret = hs_reply2(c, NBDP_OPT_LIST, NBDP_REP_SERVER, buf, 4 + n, e->description,
				e->description ? strlen(e->description) : 0);
	}
	exports_snapshot_free(v, nv);
	if (ret < 0)
		return -1;
	return hs_reply(c, NBDP_OPT_LIST, NBDP_REP_ACK, NULL, 0);
}

/* The block sizes we tell clients: see "Block size constraints" in the spec. */
static void
hs_block_sizes(const struct export *exp, uint32_t *min, uint32_t *pref, uint32_t *max)
{
	uint32_t lbs = exp->vol->lbs ? exp->vol->lbs : 512;
	uint32_t pbs = exp->vol->pbs;

	*min = lbs;
	*pref = 4096;
	if (pbs > *pref && !(pbs & (pbs - 1)))
		*pref = pbs;
	if (*pref < lbs)
		*pref = lbs;
	*max = CONN_MAX_PAYLOAD;
}

/* The INFO replies and ACK of NBD_OPT_INFO/GO for exp. 1, or -1 (drop the client). */
static int
hs_info_reply(struct conn *c, uint32_t opt, const struct export *exp, bool want_name,
	      bool want_desc)
{
	uint32_t min, pref, max;
	struct wire_info_export ie = {
		.info = htobe16(NBDP_INFO_EXPORT),
		.exportsize = htobe64(exp->vol->size),
		.eflags = htobe16(proto_eflags(c, exp)),
	};

	if (hs_reply(c, opt, NBDP_REP_INFO, &ie, sizeof(ie)) < 0)
		return -1;
	if (want_name) {
		uint16_t t = htobe16(NBDP_INFO_NAME);

		if (hs_reply2(c, opt, NBDP_REP_INFO, &t, 2, exp->name, strlen(exp->name)) < 0)
			return -1;
	}
	if (want_desc && exp->description) {
		uint16_t t = htobe16(NBDP_INFO_DESCRIPTION);

		if (hs_reply2(c, opt, NBDP_REP_INFO, &t, 2, exp->description,
			      strlen(exp->description)) < 0)
			return -1;
	}
	/* Sent even unasked: clients that ignore it still get default sizing (see protocol.c). */
	hs_block_sizes(exp, &min, &pref, &max);
	struct wire_info_block_size bs = {
		.info = htobe16(NBDP_INFO_BLOCK_SIZE),
		.minimum = htobe32(min),
		.preferred = htobe32(pref),
		.maximum = htobe32(max),
	};
	if (hs_reply(c, opt, NBDP_REP_INFO, &bs, sizeof(bs)) < 0)
		return -1;
	if (hs_reply(c, opt, NBDP_REP_ACK, NULL, 0) < 0)
		return -1;
	return 1;
}

/* NBD_OPT_INFO and NBD_OPT_GO (GO also enters transmission). */
static int
hs_info(struct conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	bool want_name = false, want_desc = false, want_bs = false, tls_reqd;
	struct export *exp;
	uint32_t namelen;
	struct hs_err err;
	uint16_t nreq;
	int ret;

	if (!hs_parse_name(data, len, 2, &namelen, &err))
		return hs_reply_err(c, opt, err.type, err.msg);
	nreq = hs_get16(data + 4 + namelen);
	if (len != 4 + namelen + 2 + 2u * nreq)
		return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID, "option length does not match");
	for (uint32_t i = 0; i < nreq; i++) {
		switch (hs_get16(data + 4 + namelen + 2 + 2 * i)) {
		case NBDP_INFO_NAME:
			want_name = true;
			break;
		case NBDP_INFO_DESCRIPTION:
			want_desc = true;
			break;
		case NBDP_INFO_BLOCK_SIZE:
			want_bs = true;
			break;
		default:
			break;	/* unknown requests are ignored, as the spec says */
		}
	}
	exp = hs_find_export(c, (const char *)data + 4, namelen, &tls_reqd);
	if (tls_reqd)
		return hs_reply_err(c, opt, NBDP_REP_ERR_TLS_REQD, "this export needs TLS");
	if (!exp) {
		log_info("%s: %s: no export '%.*s'", c->peer, hs_opt_name(opt),
			 namelen > 256 ? 256 : (int)namelen, (const char *)data + 4);
		return hs_reply(c, opt, NBDP_REP_ERR_UNKNOWN, "no such export", 14);
	}
	ret = hs_info_reply(c, opt, exp, want_name, want_desc);
	if (ret > 0 && opt == NBDP_OPT_GO) {
		c->block_size_agreed = want_bs;
		conn_enter_transmission(c, exp);	/* the reference goes with it */
	} else {
		export_put(exp);
	}
	return ret;
}

/* Context ids once selected: LIST replies carry 0. */
#define HS_META_ID_ALLOC 1
#define HS_META_ID_DIRTY 2

/* One META_CONTEXT reply: id and "prefix" + "name". As hs_reply2: < 0 on error. */
static int
hs_meta_reply(struct conn *c, uint32_t opt, uint32_t id, const char *prefix, const char *name)
{
	char ctx[sizeof(NBDP_META_DIRTY_BITMAP) + DIO_TPOOL_NAME_MAX + 1];
	uint32_t be = htobe32(opt == NBDP_OPT_SET_META_CONTEXT ? id : 0);
	int n = snprintf(ctx, sizeof(ctx), "%s%s", prefix, name);

	return hs_reply2(c, opt, NBDP_REP_META_CONTEXT, &be, 4, ctx, (size_t)n);
}

/*
 * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: base:allocation
 * on every export, and on a pool volume qemu:dirty-bitmap:SNAP for each
 * snapshot SNAP taken of it (what changed since, as QEMU's bitmaps tell
 * backup tools). SET selects at most one dirty bitmap, the first asked.
 */
static int
hs_meta_context(struct conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	static const char alloc[] = NBDP_META_BASE_ALLOCATION;
	static const char dirty[] = NBDP_META_DIRTY_BITMAP;
	const size_t dlen = sizeof(dirty) - 1;
	char(*snaps)[DIO_TPOOL_NAME_MAX + 1] = NULL;
	size_t nsnaps = 0;
	bool list = opt == NBDP_OPT_LIST_META_CONTEXT;
	bool want_alloc = false, all_dirty = false, tls_reqd;
	const char *sel = NULL;	/* SET: the dirty bitmap selected */
	uint32_t namelen, nq, pos, qpos;
	struct export *exp;
	struct hs_err err;
	int ret = 0;

	if (opt == NBDP_OPT_SET_META_CONTEXT && !c->sr)
		return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID,
				    "structured replies must be negotiated first");
	if (!hs_parse_name(data, len, 4, &namelen, &err))
		return hs_reply_err(c, opt, err.type, err.msg);
	nq = hs_get32(data + 4 + namelen);
	qpos = pos = 8 + namelen;
	/* Validate every query before answering, so an error leaves no partial reply. */
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t qlen;

		if (len - pos < 4)
			return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID, "query past the data");
		qlen = hs_get32(data + pos);
		pos += 4;
		if (qlen > len - pos)
			return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID, "query past the data");
		if (qlen > NBDP_MAX_STRING)
			return hs_reply_err(c, opt, NBDP_REP_ERR_TOO_BIG, "query too long");
		pos += qlen;
	}
	if (pos != len)
		return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID, "option length does not match");
	exp = hs_find_export(c, (const char *)data + 4, namelen, &tls_reqd);
	if (tls_reqd)
		return hs_reply_err(c, opt, NBDP_REP_ERR_TLS_REQD, "this export needs TLS");
	if (!exp)
		return hs_reply(c, opt, NBDP_REP_ERR_UNKNOWN, "no such export", 14);
	/* Not a pool volume (or out of memory): no dirty bitmaps to offer. */
	if (dio_tpool_dvol_snapshots(exp->vol, &snaps, &nsnaps) < 0)
		nsnaps = 0;
	export_put(exp);	/* its snapshots are all a meta context query needs */

	if (list && nq == 0)
		want_alloc = all_dirty = true;
	for (uint32_t i = 0, p = qpos; i < nq; i++) {
		uint32_t qlen = hs_get32(data + p);
		const char *q = (const char *)data + p + 4;

		p += 4 + qlen;
		log_debug("%s: %s query '%.*s'", c->peer, list ? "LIST_META_CONTEXT" : "SET_META_CONTEXT",
			  (int)qlen, q);
		if (qlen == sizeof(alloc) - 1 && !memcmp(q, alloc, qlen))
			want_alloc = true;
		else if (list && qlen == 5 && !memcmp(q, "base:", 5))
			want_alloc = true;
		else if (list && ((qlen == 5 && !memcmp(q, "qemu:", 5)) ||
				  (qlen == dlen && !memcmp(q, dirty, dlen))))
			all_dirty = true;
		else if (qlen > dlen && !memcmp(q, dirty, dlen))
			for (size_t k = 0; k < nsnaps; k++)
				if (strlen(snaps[k]) == qlen - dlen &&
				    !memcmp(snaps[k], q + dlen, qlen - dlen)) {
					if (list && ret >= 0)
						ret = hs_meta_reply(c, opt, 0, dirty, snaps[k]);
					else if (!sel)
						sel = snaps[k];
				}
	}
	if (!list) {
		c->meta_alloc = want_alloc;
		c->meta_dirty = sel != NULL;
		snprintf(c->dirty_base, sizeof(c->dirty_base), "%s", sel ? sel : "");
	}
	if (ret >= 0 && want_alloc)
		ret = hs_meta_reply(c, opt, HS_META_ID_ALLOC, alloc, "");
	if (ret >= 0 && sel)
		ret = hs_meta_reply(c, opt, HS_META_ID_DIRTY, dirty, sel);
	for (size_t k = 0; ret >= 0 && all_dirty && k < nsnaps; k++)
		ret = hs_meta_reply(c, opt, 0, dirty, snaps[k]);
	free(snaps);
	if (ret < 0)
		return -1;
	return hs_reply(c, opt, NBDP_REP_ACK, NULL, 0);
}

/*
 * NBD_OPT_STARTTLS: ACK in plaintext, then TLS. Bytes the client sent
 * behind the option were written before it could have seen the ACK: they
 * must never be taken for TLS records or options, so the client is dropped.
 */
static int
hs_starttls(struct conn *c, uint32_t len)
{
	if (len)
		return hs_reply_err(c, NBDP_OPT_STARTTLS, NBDP_REP_ERR_INVALID,
				    "STARTTLS takes no data");
	if (!c->r->srv->tls)
		return hs_reply_err(c, NBDP_OPT_STARTTLS, NBDP_REP_ERR_POLICY,
				    "TLS is not configured");
	if (tls_active(c))
		return hs_reply_err(c, NBDP_OPT_STARTTLS, NBDP_REP_ERR_INVALID,
				    "TLS is already on");
	if (conn_in_avail(c)) {
		log_info("%s: %zu bytes pipelined behind STARTTLS", c->peer, conn_in_avail(c));
		return -1;
	}
	if (hs_reply(c, NBDP_OPT_STARTTLS, NBDP_REP_ACK, NULL, 0) < 0 || tls_start(c) < 0)
		return -1;
	/* The spec: nothing negotiated in plaintext survives the upgrade. */
	c->sr = false;
	c->meta_alloc = false;
	c->meta_dirty = false;
	c->block_size_agreed = false;
	return 0;
}

/* Whether opt must be refused because TLS is required and not on yet. */
static bool
hs_needs_tls(const struct conn *c, uint32_t opt)
{
	return c->r->srv->cfg->tls == TLS_REQUIRE && !tls_active(c) &&
	       opt != NBDP_OPT_STARTTLS && opt != NBDP_OPT_ABORT;
}

/* One whole option. 1 = go on, 0 = stop parsing, -1 = drop the client. */
static int
hs_option(struct conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	log_trace("%s: option %s (%u), %u bytes", c->peer, hs_opt_name(opt), opt, len);
	if (!c->fixed_newstyle && opt != NBDP_OPT_EXPORT_NAME) {
		/* Plain newstyle has no way to refuse an option. */
		log_info("%s: option %u from a plain newstyle client", c->peer, opt);
		return -1;
	}
	if (hs_needs_tls(c, opt)) {
		/* EXPORT_NAME has no error reply: the spec says disconnect. */
		if (opt == NBDP_OPT_EXPORT_NAME) {
			log_info("%s: EXPORT_NAME without TLS", c->peer);
			return -1;
		}
		return hs_reply_err(c, opt, NBDP_REP_ERR_TLS_REQD, "TLS is required");
	}
	switch (opt) {
	case NBDP_OPT_EXPORT_NAME:
		return hs_export_name(c, data, len);
	case NBDP_OPT_ABORT:
		hs_reply(c, opt, NBDP_REP_ACK, NULL, 0);
		c->stop_parse = true;
		return 0;
	case NBDP_OPT_LIST:
		return hs_list(c, len);
	case NBDP_OPT_STARTTLS:
		return hs_starttls(c, len);
	case NBDP_OPT_INFO:
	case NBDP_OPT_GO:
		return hs_info(c, opt, data, len);
	case NBDP_OPT_STRUCTURED_REPLY:
		if (len)
			return hs_reply_err(c, opt, NBDP_REP_ERR_INVALID,
					    "STRUCTURED_REPLY takes no data");
		c->sr = true;
		return hs_reply(c, opt, NBDP_REP_ACK, NULL, 0);
	case NBDP_OPT_LIST_META_CONTEXT:
	case NBDP_OPT_SET_META_CONTEXT:
		return hs_meta_context(c, opt, data, len);
	default:
		return hs_reply_err(c, opt, NBDP_REP_ERR_UNSUP, "unsupported option");
	}
}

int
hs_process(struct conn *c)
{
	const uint8_t *p = c->in + c->in_start;
	size_t avail = conn_in_avail(c);
	struct wire_option h;
	uint32_t opt, len, flags;

	switch (c->state) {
	case CONN_HS_FLAGS:
		if (avail < 4)
			return 0;
		flags = hs_get32(p);
		c->in_start += 4;
		if (flags & ~(uint32_t)(NBDP_FLAG_C_FIXED_NEWSTYLE | NBDP_FLAG_C_NO_ZEROES)) {
			log_info("%s: unknown client flags 0x%x", c->peer, flags);
			return -1;
		}
		c->fixed_newstyle = flags & NBDP_FLAG_C_FIXED_NEWSTYLE;
		c->no_zeroes = flags & NBDP_FLAG_C_NO_ZEROES;
		c->state = CONN_HS_OPT;
		return 1;

	case CONN_HS_OPT:
		if (avail < sizeof(h))
			return 0;
		memcpy(&h, p, sizeof(h));
		if (be64toh(h.version) != NBDP_IHAVEOPT) {
			log_info("%s: bad option magic", c->peer);
			return -1;
		}
		opt = be32toh(h.option);
		len = be32toh(h.len);
		if (len > HS_OPT_MAX) {
			if (!c->fixed_newstyle || opt == NBDP_OPT_EXPORT_NAME ||
			    len > HS_DISCARD_MAX) {
				log_info("%s: option %u with %u bytes of data", c->peer, opt, len);
				return -1;
			}
			if (++c->nopts > c->r->srv->cfg->max_options)
				goto too_many;
			c->in_start += sizeof(h);
			c->opt = opt;
			c->discard_left = len;
			c->state = CONN_HS_DISCARD;
			return 1;
		}
		if (avail < sizeof(h) + len)
			return 0;
		if (++c->nopts > c->r->srv->cfg->max_options)
			goto too_many;
		c->in_start += sizeof(h) + len;
		return hs_option(c, opt, p + sizeof(h), len);

	case CONN_HS_DISCARD:
		len = avail < c->discard_left ? (uint32_t)avail : (uint32_t)c->discard_left;
		c->in_start += len;
		c->discard_left -= len;
		if (c->discard_left)
			return 0;
		c->state = CONN_HS_OPT;
		if (hs_needs_tls(c, c->opt))
			return hs_reply_err(c, c->opt, NBDP_REP_ERR_TLS_REQD, "TLS is required");
		return hs_reply_err(c, c->opt, NBDP_REP_ERR_TOO_BIG, "option data too large");

	default:
		return -1;
	}

too_many:
	log_info("%s: more than %u options", c->peer, c->r->srv->cfg->max_options);
	return -1;
}
