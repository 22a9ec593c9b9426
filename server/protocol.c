/* SPDX-License-Identifier: MIT */
/*
 * The NBD transmission phase: parse requests from the connection's input,
 * check them, turn them into dio_req for libdio, and build the replies
 * (simple, or structured chunks) as iovecs that point at the request's
 * header space and straight at the pinned data buffer.
 *
 * A request the protocol lets us answer is answered (with an error if need
 * be) and the stream stays in sync, including the payload of a refused
 * WRITE. Only a bad magic or a WRITE payload over CONN_MAX_PAYLOAD, which
 * we cannot skip safely, drops the client.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "readahead.h"
#include "server.h"

uint32_t
proto_errno_to_nbd(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBDP_EPERM;
	case EIO:
		return NBDP_EIO;
	case ENOMEM:
		return NBDP_ENOMEM;
	case EINVAL:
		return NBDP_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBDP_ENOSPC;
	case EOVERFLOW:
		return NBDP_EOVERFLOW;
	case EOPNOTSUPP:	/* == ENOTSUP on Linux */
		return NBDP_ENOTSUP;
	case ESHUTDOWN:
		return NBDP_ESHUTDOWN;
	default:
		/* What else reaches us comes from the device or the kernel under it. */
		return NBDP_EIO;
	}
}

/* A short message for an NBD error, sent in error chunks. */
static const char *
proto_errstr(uint32_t err)
{
	switch (err) {
	case NBDP_EPERM:
		return "read-only export";
	case NBDP_EIO:
		return "I/O error";
	case NBDP_ENOMEM:
		return "out of memory";
	case NBDP_EINVAL:
		return "invalid request";
	case NBDP_ENOSPC:
		return "past the end of the export";
	case NBDP_EOVERFLOW:
		return "value too large";
	case NBDP_ENOTSUP:
		return "not supported";
	case NBDP_ESHUTDOWN:
		return "server shutting down";
	default:
		return "error";
	}
}

/* A command's name for logs. */
static const char *
proto_cmd_name(uint16_t cmd)
{
	static const char *const names[] = {
		"READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS",
	};

	return cmd < sizeof(names) / sizeof(names[0]) ? names[cmd] : "unknown";
}

uint16_t
proto_eflags(const struct conn *c, const struct export *exp)
{
	uint16_t f = NBDP_FLAG_HAS_FLAGS | NBDP_FLAG_SEND_CACHE;

	/*
	 * One shared volume, whose caches are shared too: readahead, which no
	 * write on any connection of any export of it gets past (readahead.c),
	 * and the block cache, one per volume, whose FLUSH writes back every
	 * connection's dirty blocks: FLUSH on one covers all.
	 */
	f |= NBDP_FLAG_CAN_MULTI_CONN;
	if (__atomic_load_n(&exp->readonly, __ATOMIC_RELAXED)) {
		f |= NBDP_FLAG_READ_ONLY;
	} else {
		f |= NBDP_FLAG_SEND_FLUSH | NBDP_FLAG_SEND_FUA | NBDP_FLAG_SEND_WRITE_ZEROES |
		     NBDP_FLAG_SEND_FAST_ZERO;
		if (exp->vol->can_trim)
			f |= NBDP_FLAG_SEND_TRIM;
	}
	if (exp->vol->rotational)
		f |= NBDP_FLAG_ROTATIONAL;
	/* The spec: DF must stay clear unless structured replies were negotiated. */
	if (c->sr)
		f |= NBDP_FLAG_SEND_DF;
	return f;
}

/* ---- replies ---- */

/* Write a structured reply chunk header at p; returns the byte after it. */
static uint8_t *
proto_chunk(uint8_t *p, const struct conn_req *req, uint16_t flags, uint16_t type,
	    uint32_t length)
{
	struct wire_structured_reply h = {
		.magic = htobe32(NBDP_STRUCTURED_REPLY_MAGIC),
		.flags = htobe16(flags),
		.type = htobe16(type),
		.cookie = req->cookie,	/* echoed as received: no byte swap */
		.length = htobe32(length),
	};

	memcpy(p, &h, sizeof(h));
	return p + sizeof(h);
}

/* Append one iovec to req's reply. */
static void
proto_iov(struct conn_req *req, void *base, size_t len)
{
	req->iov[req->niov].iov_base = base;
	req->iov[req->niov].iov_len = len;
	req->niov++;
}

/* A simple reply (with the READ data when data is true). */
static void
proto_build_simple(struct conn_req *req, uint32_t err, bool data)
{
	struct wire_simple_reply h = {
		.magic = htobe32(NBDP_SIMPLE_REPLY_MAGIC),
		.error = htobe32(err),
		.cookie = req->cookie,
	};

	memcpy(req->hdr, &h, sizeof(h));
	req->niov = 0;
	proto_iov(req, req->hdr, sizeof(h));
	if (data)
		proto_iov(req, req->dreq.buf, req->count);
}

/* An error reply: an error chunk where a structured reply is required. */
static void
proto_build_error(struct conn_req *req, uint32_t err)
{
	const char *msg = proto_errstr(err);
	struct wire_error we = { .error = htobe32(err), .len = htobe16((uint16_t)strlen(msg)) };
	uint8_t *p;

	req->err = (int)err;
	if (!req->sr || (req->cmd != NBDP_CMD_READ && req->cmd != NBDP_CMD_BLOCK_STATUS)) {
		proto_build_simple(req, err, false);
		return;
	}
	p = proto_chunk(req->hdr, req, NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_ERROR,
			(uint32_t)(sizeof(we) + strlen(msg)));
	memcpy(p, &we, sizeof(we));
	p += sizeof(we);
	memcpy(p, msg, strlen(msg));
	p += strlen(msg);
	req->niov = 0;
	proto_iov(req, req->hdr, (size_t)(p - req->hdr));
}

/* Answer req with an NBD error now (it never reached libdio). */
static void
proto_reply_error(struct conn *c, struct conn_req *req, uint32_t err)
{
	log_debug("%s: %s offset %llu count %u: %s", c->peer, proto_cmd_name(req->cmd),
		  (unsigned long long)req->offset, req->count, proto_errstr(err));
	proto_build_error(req, err);
	req_queue(c, req);
}

/* A structured READ reply: one chunk per data or hole segment. 0 or -EIO. */
static int
proto_build_read_chunks(struct conn_req *req)
{
	const struct dio_req *d = &req->dreq;
	uint64_t pos = req->offset, end = req->offset + req->count;
	uint8_t *p = req->hdr;

	if (!d->nsegs || d->nsegs > CONN_READ_SEGS)
		return -EIO;
	req->niov = 0;
	for (uint32_t i = 0; i < d->nsegs; i++) {
		const struct dio_seg *s = &d->segs[i];
		uint16_t fl = i + 1 == d->nsegs ? NBDP_REPLY_FLAG_DONE : 0;
		uint8_t *start = p;

		/* libdio promises exact coverage; a gap would corrupt the client's data. */
		if (s->pos != pos || !s->len || s->len > end - pos)
			return -EIO;
		if (s->type == DIO_SEG_DATA) {
			struct wire_offset_data od = { .offset = htobe64(s->pos) };

			p = proto_chunk(p, req, fl, NBDP_REPLY_TYPE_OFFSET_DATA,
					(uint32_t)(sizeof(od) + s->len));
			memcpy(p, &od, sizeof(od));
			p += sizeof(od);
			proto_iov(req, start, (size_t)(p - start));
			proto_iov(req, (uint8_t *)req->dreq.buf + (s->pos - req->offset),
				  (size_t)s->len);
		} else {
			struct wire_offset_hole oh = {
				.offset = htobe64(s->pos),
				.length = htobe32((uint32_t)s->len),
			};

			p = proto_chunk(p, req, fl, NBDP_REPLY_TYPE_OFFSET_HOLE, sizeof(oh));
			memcpy(p, &oh, sizeof(oh));
			p += sizeof(oh);
			proto_iov(req, start, (size_t)(p - start));
		}
		pos += s->len;
	}
	return pos == end ? 0 : -EIO;
}

/* The reply to a successful READ. */
static void
proto_build_read(struct conn_req *req)
{
	struct wire_offset_data od = { .offset = htobe64(req->offset) };
	uint8_t *p;

	if (!req->sr) {
		proto_build_simple(req, 0, true);
		return;
	}
	if (req->dreq.flags & DIO_REQ_REPORT_HOLES) {
		if (proto_build_read_chunks(req) < 0) {
			log_err("%s: READ offset %llu count %u: libdio returned a bad segment map",
				req->conn->peer, (unsigned long long)req->offset, req->count);
			proto_build_error(req, NBDP_EIO);
		}
		return;
	}
	/* DF: the whole range in one chunk; libdio zero-filled the holes. */
	p = proto_chunk(req->hdr, req, NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_OFFSET_DATA,
			(uint32_t)sizeof(od) + req->count);
	memcpy(p, &od, sizeof(od));
	p += sizeof(od);
	req->niov = 0;
	proto_iov(req, req->hdr, (size_t)(p - req->hdr));
	proto_iov(req, req->dreq.buf, req->count);
}

/* The dirty bitmap's extents, gathered from pool-diff.c's runs. */
struct proto_dirty {
	struct wire_block_descriptor *bd;
	uint32_t n, max;
};

static int
proto_dirty_run(void *priv, uint64_t off, uint64_t len, bool changed)
{
	struct proto_dirty *pd = priv;

	(void)off;
	pd->bd[pd->n].length = htobe32((uint32_t)len);
	pd->bd[pd->n].status_flags = htobe32(changed ? NBDP_STATE_DIRTY : 0);
	return ++pd->n == pd->max;	/* full: stop */
}

/*
 * The qemu:dirty-bitmap chunk of a BLOCK_STATUS reply at p (flags: DONE
 * when it is the last): what changed in the export's volume since the
 * snapshot selected. Computed here from the pool's maps in memory, under
 * the pool's lock: no device I/O. NULL when it cannot be (reply with err).
 */
static uint8_t *
proto_dirty_chunk(struct conn_req *req, uint8_t *p, uint16_t flags, uint32_t *err)
{
	struct conn *c = req->conn;
	/* the descriptors go in place, after the chunk header and context id */
	uint8_t *d = p + sizeof(struct wire_structured_reply) + 4;
	struct proto_dirty pd = { .bd = (struct wire_block_descriptor *)d,
				  .max = (req->flags & NBDP_CMD_FLAG_REQ_ONE) ? 1 : CONN_BS_SEGS };
	uint32_t id = htobe32(2);
	int ret;

	ret = dio_tpool_dvol_diff(c->exp->vol, c->dirty_base, req->offset, req->count,
				  proto_dirty_run, &pd);
	if (ret < 0 || !pd.n) {
		log_warn("%s: BLOCK_STATUS qemu:dirty-bitmap:%s: %s", c->peer, c->dirty_base,
			 ret == -ENOENT ? "the snapshot is gone" : strerror(ret < 0 ? -ret : EIO));
		*err = ret == -ENOENT ? NBDP_EINVAL : NBDP_EIO;
		return NULL;
	}
	p = proto_chunk(p, req, flags, NBDP_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * pd.n);
	memcpy(p, &id, 4);
	return d + 8 * pd.n;
}

/*
 * A BLOCK_STATUS reply: the base:allocation chunk (libdio's extents) when
 * selected, then the dirty bitmap's when selected; the last one DONE.
 */
static void
proto_build_block_status(struct conn_req *req)
{
	const struct dio_req *d = &req->dreq;
	bool dirty = req->conn->meta_dirty;
	uint32_t n = d->nsegs, id = htobe32(1), err;
	uint8_t *p = req->hdr;

	if (!req->conn->meta_alloc)
		goto dirty;
	if (!n || n > d->max_segs) {
		log_err("%s: BLOCK_STATUS: libdio returned %u extents", req->conn->peer, n);
		proto_build_error(req, NBDP_EIO);
		return;
	}
	p = proto_chunk(p, req, dirty ? 0 : NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_BLOCK_STATUS,
			4 + 8 * n);
	memcpy(p, &id, 4);
	p += 4;
	for (uint32_t i = 0; i < n; i++) {
		const struct dio_seg *s = &d->segs[i];
		uint64_t len = s->len;
		struct wire_block_descriptor bd;
		uint32_t st = 0;

		if (s->type == DIO_SEG_HOLE)
			st = NBDP_STATE_HOLE | NBDP_STATE_ZERO;
		else if (s->type == DIO_SEG_ZERO)
			st = NBDP_STATE_ZERO;
		else if (s->type == DIO_SEG_UNRESERVED)
			st = NBDP_STATE_HOLE;	/* data, but no space held for its copy */
		if (len > req->count)
			len = req->count;
		bd.length = htobe32((uint32_t)len);
		bd.status_flags = htobe32(st);
		memcpy(p, &bd, sizeof(bd));
		p += sizeof(bd);
	}
dirty:
	if (dirty && !(p = proto_dirty_chunk(req, p, NBDP_REPLY_FLAG_DONE, &err))) {
		proto_build_error(req, err);
		return;
	}
	req->niov = 0;
	proto_iov(req, req->hdr, (size_t)(p - req->hdr));
}

/* libdio finished a request: build its reply and queue it. */
static void
proto_done(struct dio_req *d, int ret)
{
	struct conn_req *req = d->priv;
	struct conn *c = req->conn;

	/*
	 * Readahead may have answered a READ from another buffer of the pool,
	 * the block cache with a unit of its own (DIO_REQ_LEND): the reply
	 * sends from d->buf, which lies in d->dbuf, and req_put puts that.
	 */
	req->dbuf = d->dbuf;
	if (ret < 0) {
		uint32_t err = proto_errno_to_nbd(ret);

		/* FAST_ZERO refused by libdio is the client's cue to write zeros itself. */
		log_debug("%s: %s offset %llu count %u: %s (%s)", c->peer,
			  proto_cmd_name(req->cmd), (unsigned long long)req->offset, req->count,
			  strerror(-ret), proto_errstr(err));
		proto_build_error(req, err);
	} else {
		log_trace("%s: %s cookie %#llx done", c->peer, proto_cmd_name(req->cmd),
			  (unsigned long long)be64toh(req->cookie));
		switch (req->cmd) {
		case NBDP_CMD_READ:
			proto_build_read(req);
			break;
		case NBDP_CMD_BLOCK_STATUS:
			proto_build_block_status(req);
			break;
		default:
			proto_build_simple(req, 0, false);
			break;
		}
	}
	req_queue(c, req);
}

/* ---- requests ---- */

/* The NBD error for a request that must be refused, or 0. */
static uint32_t
proto_validate(const struct conn *c, const struct conn_req *req)
{
	const struct dio_volume *vol = c->exp->vol;
	uint16_t allowed;
	bool ranged = true, writes = false;

	switch (req->cmd) {
	case NBDP_CMD_READ:
		allowed = NBDP_CMD_FLAG_DF;
		break;
	case NBDP_CMD_WRITE:
		allowed = NBDP_CMD_FLAG_FUA;
		writes = true;
		break;
	case NBDP_CMD_FLUSH:
		allowed = 0;
		ranged = false;
		break;
	case NBDP_CMD_TRIM:
		allowed = NBDP_CMD_FLAG_FUA;
		writes = true;
		break;
	case NBDP_CMD_CACHE:
		allowed = 0;
		break;
	case NBDP_CMD_WRITE_ZEROES:
		allowed = NBDP_CMD_FLAG_FUA | NBDP_CMD_FLAG_NO_HOLE | NBDP_CMD_FLAG_FAST_ZERO;
		writes = true;
		break;
	case NBDP_CMD_BLOCK_STATUS:
		allowed = NBDP_CMD_FLAG_REQ_ONE;
		break;
	default:
		return NBDP_EINVAL;
	}
	if (req->flags & ~allowed)
		return NBDP_EINVAL;
	if ((req->flags & NBDP_CMD_FLAG_DF) && !c->sr)
		return NBDP_EINVAL;
	if (req->cmd == NBDP_CMD_BLOCK_STATUS && (!c->sr || (!c->meta_alloc && !c->meta_dirty)))
		return NBDP_EINVAL;
	if (writes && __atomic_load_n(&c->exp->readonly, __ATOMIC_RELAXED))
		return NBDP_EPERM;
	if (!ranged)
		return 0;
	if (!req->count)
		return NBDP_EINVAL;
	if (req->offset > vol->size || req->count > vol->size - req->offset)
		return req->cmd == NBDP_CMD_WRITE || req->cmd == NBDP_CMD_WRITE_ZEROES ?
			       NBDP_ENOSPC : NBDP_EINVAL;
	if (req->count > CONN_MAX_PAYLOAD &&
	    (req->cmd == NBDP_CMD_READ || req->cmd == NBDP_CMD_CACHE))
		return NBDP_EINVAL;
	/*
	 * Alignment is enforced only on clients that agreed to our block sizes
	 * (GO with NBD_INFO_BLOCK_SIZE); the others get the spec's default
	 * sizing, which libdio serves by read-modify-write.
	 */
	if (c->block_size_agreed && vol->lbs > 1) {
		if (req->offset % vol->lbs)
			return NBDP_EINVAL;
		if (req->count % vol->lbs && req->offset + req->count != vol->size)
			return NBDP_EINVAL;
	}
	return 0;
}

/* READ: into a new pool buffer, through readahead when the connection has it. */
static void
proto_read(struct conn *c, struct conn_req *req)
{
	struct dio_req *d = &req->dreq;
	int ret;

	req->acct = req->count;
	c->inflight_bytes += req->count;
	d->op = DIO_REQ_READ;
	/* Readahead gives the buffer (a chunk's, when one answers): no copy, no spare. */
	if (!c->ra) {
		req->dbuf = dio_buf_get(dio_ctx_pool(c->r->ctx), req->count);
		if (!req->dbuf) {
			proto_reply_error(c, req, NBDP_ENOMEM);
			return;
		}
		d->buf = req->dbuf->data;
		d->dbuf = req->dbuf;
		/* a block cache may answer with its own memory (proto_done) */
		d->flags |= DIO_REQ_LEND;
	}
	if (req->sr && !(req->flags & NBDP_CMD_FLAG_DF)) {
		d->flags |= DIO_REQ_REPORT_HOLES;
		d->segs = req->segs;
		d->max_segs = CONN_READ_SEGS;
	}
	ret = c->ra ? ra_read(c->ra, d) : dio_submit(c->r->ctx, c->exp->vol, d);
	if (ret == 1) {
		proto_done(d, 0);	/* answered at once from a chunk read ahead */
	} else if (ret < 0) {
		req->dbuf = d->dbuf;	/* whoever gave it, it is ours to put */
		proto_reply_error(c, req, proto_errno_to_nbd(ret));
	}
}

/* Hand a checked request to libdio. */
static void
proto_submit(struct conn *c, struct conn_req *req)
{
	struct dio_req *d = &req->dreq;
	int ret;

	d->pos = req->offset;
	d->len = req->count;
	d->done = proto_done;
	d->priv = req;
	d->flags = c->cache_flags;
	d->writer = &c->cache_writer;
	stats_req_submit(req);
	switch (req->cmd) {
	case NBDP_CMD_READ:
		proto_read(c, req);
		return;
	case NBDP_CMD_WRITE:
		d->op = DIO_REQ_WRITE;
		d->buf = req->dbuf->data;
		d->dbuf = req->dbuf;
		break;
	case NBDP_CMD_FLUSH:
		d->op = DIO_REQ_FLUSH;
		d->pos = 0;
		d->len = 0;
		break;
	case NBDP_CMD_TRIM:
		d->op = DIO_REQ_TRIM;
		break;
	case NBDP_CMD_CACHE:
		/*
		 * Into the block cache when the export reads through it (answered
		 * once the range is read); else a hint the volume may ignore.
		 */
		if (c->cache_flags & DIO_REQ_NOCACHE) {
			proto_done(d, 0);
			return;
		}
		d->op = DIO_REQ_CACHE;
		d->flags = 0;
		break;
	case NBDP_CMD_WRITE_ZEROES:
		d->op = DIO_REQ_ZERO;
		if (req->flags & NBDP_CMD_FLAG_NO_HOLE)
			d->flags |= DIO_REQ_NO_HOLE;
		if (req->flags & NBDP_CMD_FLAG_FAST_ZERO)
			d->flags |= DIO_REQ_FAST_ZERO;
		break;
	case NBDP_CMD_BLOCK_STATUS:
		if (!c->meta_alloc) {
			proto_done(d, 0);	/* the dirty bitmap alone: from memory */
			return;
		}
		d->op = DIO_REQ_EXTENTS;
		d->segs = req->segs;
		d->max_segs = (req->flags & NBDP_CMD_FLAG_REQ_ONE) ? 1 : CONN_BS_SEGS;
		break;
	}
	if (req->flags & NBDP_CMD_FLAG_FUA)
		d->flags |= DIO_REQ_FUA;
	ret = dio_submit(c->r->ctx, c->exp->vol, d);
	if (ret < 0)
		proto_reply_error(c, req, proto_errno_to_nbd(ret));
}

/* A request header was read. 1 = go on, 0 = stop parsing, -1 = drop the client. */
static int
proto_request(struct conn *c, const struct wire_request *h)
{
	struct conn_req *req;
	uint32_t err;

	req = req_get(c);
	if (!req) {
		log_err("%s: out of memory for a request", c->peer);
		return -1;
	}
	req->cookie = h->cookie;
	req->offset = be64toh(h->offset);
	req->count = be32toh(h->count);
	req->cmd = be16toh(h->type);
	req->flags = be16toh(h->flags);
	req->sr = c->sr;
	c->nrequests_total++;
	log_trace("%s: %s offset %llu count %u flags %#x cookie %#llx", c->peer,
		  proto_cmd_name(req->cmd), (unsigned long long)req->offset, req->count,
		  req->flags, (unsigned long long)be64toh(req->cookie));

	if (req->cmd == NBDP_CMD_DISC) {
		req_put(c, req);
		log_debug("%s: disconnect requested", c->peer);
		c->stop_parse = true;
		return 0;
	}
	stats_req_start(c->exp, req);
	/* Stopping, or the export was removed: the client should disconnect. */
	err = c->closing || __atomic_load_n(&c->exp->removed, __ATOMIC_ACQUIRE) ?
		      NBDP_ESHUTDOWN : proto_validate(c, req);
	if (req->cmd == NBDP_CMD_WRITE) {
		if (req->count > CONN_MAX_PAYLOAD) {
			/* Skipping that much input would let a client keep us busy for nothing. */
			log_info("%s: WRITE of %u bytes: over the %u byte limit", c->peer,
				 req->count, CONN_MAX_PAYLOAD);
			req_put(c, req);
			return -1;
		}
		if (!err) {
			req->dbuf = dio_buf_get(dio_ctx_pool(c->r->ctx), req->count);
			if (!req->dbuf)
				err = NBDP_ENOMEM;
		}
		c->cur = req;
		if (err) {
			req->err = (int)err;
			c->discard_left = req->count;
			c->state = CONN_TX_DISCARD;
			return 1;
		}
		req->acct = req->count;
		c->inflight_bytes += req->count;
		c->payload_got = 0;
		c->state = CONN_TX_PAYLOAD;
		return 1;
	}
	if (err)
		proto_reply_error(c, req, err);
	else
		proto_submit(c, req);
	return 1;
}

void *
proto_payload_dest(struct conn *c, size_t *left)
{
	*left = c->cur->count - c->payload_got;
	return (uint8_t *)c->cur->dbuf->data + c->payload_got;
}

/* The whole WRITE payload is in: submit it. */
static void
proto_payload_done(struct conn *c)
{
	struct conn_req *req = c->cur;

	c->cur = NULL;
	c->state = CONN_TX_HDR;
	proto_submit(c, req);
}

void
proto_payload_read(struct conn *c, size_t n)
{
	c->payload_got += n;
	if (c->payload_got == c->cur->count)
		proto_payload_done(c);
}

int
proto_process(struct conn *c)
{
	size_t avail = conn_in_avail(c), k;
	struct wire_request h;

	switch (c->state) {
	case CONN_TX_HDR:
		if (avail < sizeof(h))
			return 0;
		memcpy(&h, c->in + c->in_start, sizeof(h));
		c->in_start += sizeof(h);
		c->reqs_parsed++;
		if (be32toh(h.magic) != NBDP_REQUEST_MAGIC) {
			log_info("%s: bad request magic %#x", c->peer, be32toh(h.magic));
			return -1;
		}
		return proto_request(c, &h);

	case CONN_TX_PAYLOAD:
		k = c->cur->count - c->payload_got;
		if (k > avail)
			k = avail;
		if (!k)
			return 0;
		memcpy((uint8_t *)c->cur->dbuf->data + c->payload_got, c->in + c->in_start, k);
		c->in_start += k;
		proto_payload_read(c, k);
		return 1;

	case CONN_TX_DISCARD:
		k = c->discard_left < avail ? (size_t)c->discard_left : avail;
		c->in_start += k;
		c->discard_left -= k;
		if (c->discard_left)
			return 0;
		{
			struct conn_req *req = c->cur;

			c->cur = NULL;
			c->state = CONN_TX_HDR;
			proto_reply_error(c, req, (uint32_t)req->err);
		}
		return 1;

	default:
		return -1;
	}
}
