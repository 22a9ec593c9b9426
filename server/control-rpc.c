/* SPDX-License-Identifier: MIT */
/*
 * The control socket's protocol: JSON-RPC 2.0 (the convention SPDK uses),
 * one request object per line, parsed and built with jansson. Each method
 * checks its parameters (unknown ones are refused, so a typo never passes
 * silently), acts through exports.c and manage.c, and answers with a result
 * or a JSON-RPC error whose message names the problem.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dio/tpool.h"
#include "server.h"

int64_t
control_now_s(void)
{
	return (int64_t)(stats_now_ns() / 1000000000u);
}

/* JSON-RPC 2.0 error codes: the standard ones, then ours (-32000..-32099). */
enum {
	CTL_PARSE_ERROR = -32700,
	CTL_INVALID_REQUEST = -32600,
	CTL_METHOD_NOT_FOUND = -32601,
	CTL_INVALID_PARAMS = -32602,
	CTL_INTERNAL = -32603,
	CTL_NO_EXPORT = -32001,		/* no export of that name */
	CTL_EXISTS = -32002,		/* an export of that name exists */
	CTL_FAILED = -32003,		/* the operation failed: the message says why */
};

/* The outcome of a method: a result, or an error code and message. */
struct ctl_reply {
	json_t *result;
	int code;
	char msg[512];
};

/*
 * Make s valid UTF-8, which JSON strings must be (jansson refuses to
 * encode anything else, and the reply would be lost): a byte that does not
 * start a complete, shortest-form sequence of a code point outside the
 * surrogates becomes '?'. Messages quote what the client sent (a parser
 * error about its bytes, a name cut at a byte count).
 */
static void
ctl_utf8_fix(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		unsigned int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 :
				 (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : 9;
		uint32_t cp = n == 1 ? *p & 0x1fu : n == 2 ? *p & 0x0fu : *p & 0x07u;
		unsigned int i;

		if (n == 0) {
			p++;
			continue;
		}
		for (i = 1; n != 9 && i <= n && (p[i] & 0xc0) == 0x80; i++)
			cp = cp << 6 | (p[i] & 0x3fu);
		if (n == 9 || i <= n || (n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		p += n + 1;
	}
}

#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static void
ctl_error(struct ctl_reply *r, int code, const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	ctl_utf8_fix(r->msg);
}

/* ---- parameters ---- */

/* params[key] as a string (required or not). 0, or -1 with the error set. */
static int
ctl_param_str(const json_t *params, const char *key, bool required, const char **out,
	      struct ctl_reply *r)
{
	const json_t *v = params ? json_object_get(params, key) : NULL;

	*out = NULL;
	if (!v) {
		if (!required)
			return 0;
		ctl_error(r, CTL_INVALID_PARAMS, "missing parameter '%s'", key);
		return -1;
	}
	if (!json_is_string(v)) {
		ctl_error(r, CTL_INVALID_PARAMS, "parameter '%s' must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* params[key] as a bool, or def. 0, or -1 with the error set. */
static int
ctl_param_bool(const json_t *params, const char *key, bool def, bool *out,
	       struct ctl_reply *r)
{
	const json_t *v = params ? json_object_get(params, key) : NULL;

	*out = def;
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		ctl_error(r, CTL_INVALID_PARAMS, "parameter '%s' must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* params[key] as an integer in [min, max], or def. 0, or -1 with the error set. */
static int
ctl_param_int(const json_t *params, const char *key, bool required, json_int_t def,
	      json_int_t min, json_int_t max, json_int_t *out, struct ctl_reply *r)
{
	const json_t *v = params ? json_object_get(params, key) : NULL;

	*out = def;
	if (!v) {
		if (!required)
			return 0;
		ctl_error(r, CTL_INVALID_PARAMS, "missing parameter '%s'", key);
		return -1;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		ctl_error(r, CTL_INVALID_PARAMS,
			  "parameter '%s' must be an integer in [%" JSON_INTEGER_FORMAT
			  ", %" JSON_INTEGER_FORMAT "]", key, min, max);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

/* Refuse parameters a method does not take: a typo must not pass silently. */
static int
ctl_params_only(const json_t *params, const char *const *keys, struct ctl_reply *r)
{
	const char *key;
	json_t *v;

	if (!params)
		return 0;
	json_object_foreach((json_t *)params, key, v) {
		bool known = false;

		for (size_t i = 0; keys[i]; i++)
			known |= !strcmp(key, keys[i]);
		if (!known) {
			ctl_error(r, CTL_INVALID_PARAMS, "unknown parameter '%.100s'", key);
			return -1;
		}
	}
	return 0;
}

/* The live export called name, with a reference, or NULL with the error set. */
static struct export *
ctl_export(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	const char *name;
	struct export *e;

	if (ctl_param_str(params, "name", true, &name, r) < 0)
		return NULL;
	e = exports_find(&ctl->srv->exports, name, strlen(name));
	if (!e)
		ctl_error(r, CTL_NO_EXPORT, "no export '%.200s'", name);
	return e;
}

/* ---- methods ---- */

static void
ctl_server_info(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { NULL };
	const struct server_cfg *cfg = ctl->srv->cfg;
	static const char *const tls_modes[] = { "off", "on", "require" };
	static const char *const levels[] = { "err", "warn", "info", "debug", "trace" };

	if (ctl_params_only(params, keys, r) < 0)
		return;
	r->result = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:s?, s:s?, s:b, s:I, s:b, s:b, s:b}",
			      "version", DIONBD_VERSION,
			      "pid", (json_int_t)getpid(),
			      "uptime_seconds", (json_int_t)(control_now_s() - ctl->started),
			      "reactors", (json_int_t)ctl->nreactors,
			      "exports", (json_int_t)ctl->srv->exports.n,
			      "connections", (json_int_t)atomic_load(&ctl->srv->nconns),
			      "tls", tls_modes[cfg->tls],
			      "log_level", levels[log_level < 0 ? 0 : log_level > 4 ? 4 : log_level],
			      "unix_socket", cfg->unix_path,
			      "config_file", cfg->config_path,
			      "readahead", cfg->readahead,
			      "poll_us", (json_int_t)cfg->poll_us,
			      "poll_yield", cfg->poll_yield, "poll_check", cfg->poll_check,
			      "submit_batch", (json_int_t)cfg->submit_batch,
			      "image_locking", cfg->image_locking);
	if (!r->result)
		ctl_error(r, CTL_INTERNAL, "out of memory");
}

/* Requests answered for cmd (its latency histogram's count). */
static json_int_t
ctl_requests(const struct export *e, enum stats_cmd cmd)
{
	uint64_t n = 0;

	for (size_t b = 0; b <= STATS_NBUCKETS; b++)
		n += stats_load(&e->stats.latency[cmd].bucket[b]);
	return (json_int_t)n;
}

/* The export's counters (stats.h), as export.list shows them. */
static json_t *
ctl_counters(const struct export *e)
{
	uint64_t errors = 0;

	for (size_t i = 0; i < STATS_NERRS; i++)
		errors += stats_load(&e->stats.errors[i]);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "reads", ctl_requests(e, STATS_CMD_READ),
			 "writes", ctl_requests(e, STATS_CMD_WRITE),
			 "flushes", ctl_requests(e, STATS_CMD_FLUSH),
			 "trims", ctl_requests(e, STATS_CMD_TRIM),
			 "zeroes", ctl_requests(e, STATS_CMD_WRITE_ZEROES),
			 "bytes_read", (json_int_t)stats_load(&e->stats.read_bytes),
			 "bytes_written", (json_int_t)stats_load(&e->stats.written_bytes),
			 "errors", (json_int_t)errors);
}

/* One export as export.list shows it. */
static json_t *
ctl_export_json(struct control *ctl, const struct export *e)
{
	json_t *allow = json_array(), *o;

	for (size_t i = 0; allow && i < e->nallow; i++)
		json_array_append_new(allow, json_string(e->allow[i]));
	o = json_pack("{s:s, s:s, s:s?, s:I, s:b, s:o, s:I, s:{s:I, s:I, s:I, s:b}, s:o}",
		      "name", e->name, "path", e->path, "description", e->description,
		      "size", (json_int_t)e->vol->size,
		      "readonly", __atomic_load_n(&e->readonly, __ATOMIC_RELAXED),
		      "allow", allow ? allow : json_null(),
		      "connections", (json_int_t)manage_export_conns(ctl, e),
		      "volume", "id", (json_int_t)dio_volume_id(e->vol),
		      "block_size", (json_int_t)e->vol->lbs,
		      "physical_block_size", (json_int_t)e->vol->pbs,
		      "block_device", e->vol->blockdev, "counters", ctl_counters(e));
	return o;
}

static void
ctl_export_list(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { NULL };
	struct export **v;
	size_t n;

	if (ctl_params_only(params, keys, r) < 0)
		return;
	n = exports_snapshot(&ctl->srv->exports, &v);
	r->result = json_array();
	for (size_t i = 0; r->result && i < n; i++)
		json_array_append_new(r->result, ctl_export_json(ctl, v[i]));
	exports_snapshot_free(v, n);
	if (!r->result)
		ctl_error(r, CTL_INTERNAL, "out of memory");
}

static void
ctl_connection_list(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { NULL };
	int64_t now = (int64_t)time(NULL);

	if (ctl_params_only(params, keys, r) < 0)
		return;
	r->result = json_array();
	if (!r->result) {
		ctl_error(r, CTL_INTERNAL, "out of memory");
		return;
	}
	pthread_mutex_lock(&ctl->srv->conns_lock);
	for (const struct conn *c = ctl->srv->conns; c; c = c->all_next)
		json_array_append_new(
			r->result,
			json_pack("{s:I, s:s, s:s, s:s?, s:I, s:I, s:I}", "id", (json_int_t)c->id,
				  "peer", c->peer, "tls_identity", c->ident,
				  "export", c->exp ? c->exp->name : NULL,
				  "in_flight",
				  (json_int_t)__atomic_load_n(&c->nreqs, __ATOMIC_RELAXED),
				  "age_seconds", (json_int_t)(now - c->started),
				  "reactor", (json_int_t)c->r->id));
	pthread_mutex_unlock(&ctl->srv->conns_lock);
}

static void
ctl_export_add(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "name", "path", "readonly", "description", "allow",
					    NULL };
	struct export spec = { 0 };
	const json_t *allow = params ? json_object_get(params, "allow") : NULL;
	const char *name, *path, *desc;
	char err[768];
	char *ids[64];
	int ret;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 ||
	    ctl_param_str(params, "path", true, &path, r) < 0 ||
	    ctl_param_str(params, "description", false, &desc, r) < 0 ||
	    ctl_param_bool(params, "readonly", false, &spec.readonly, r) < 0)
		return;
	if (strlen(name) > NBDP_MAX_STRING || (desc && strlen(desc) > NBDP_MAX_STRING)) {
		ctl_error(r, CTL_INVALID_PARAMS, "name or description longer than %d bytes",
			  NBDP_MAX_STRING);
		return;
	}
	/* a file, pool:/POOL/VOLUME or rbd:POOL/IMAGE; the daemon runs in / */
	if (path[0] != '/' && strncmp(path, EXPORT_RBD_PREFIX, strlen(EXPORT_RBD_PREFIX)) &&
	    (strncmp(path, EXPORT_POOL_PREFIX, strlen(EXPORT_POOL_PREFIX)) ||
	     path[strlen(EXPORT_POOL_PREFIX)] != '/')) {
		ctl_error(r, CTL_INVALID_PARAMS, "path '%.200s' is not absolute (a file, "
			  "pool:/POOL/VOLUME or rbd:POOL/IMAGE)", path);
		return;
	}
	if (allow && (!json_is_array(allow) || json_array_size(allow) > 64)) {
		ctl_error(r, CTL_INVALID_PARAMS, "'allow' must be an array of at most 64 strings");
		return;
	}
	for (size_t i = 0; allow && i < json_array_size(allow); i++) {
		const json_t *id = json_array_get(allow, i);

		if (!json_is_string(id) || !json_string_length(id) ||
		    json_string_length(id) > NBDP_MAX_STRING) {
			ctl_error(r, CTL_INVALID_PARAMS, "'allow' entry %zu is not a non-empty string",
				  i);
			return;
		}
		ids[spec.nallow++] = (char *)json_string_value(id);
	}
	if (spec.nallow && ctl->srv->cfg->tls == TLS_OFF) {
		ctl_error(r, CTL_INVALID_PARAMS, "allow-lists name TLS identities: TLS is off");
		return;
	}
	spec.name = (char *)name;
	spec.path = (char *)path;
	spec.description = (char *)desc;
	spec.allow = spec.nallow ? ids : NULL;
	ret = manage_add_export(ctl, &spec, err, sizeof(err));
	if (ret == -EEXIST) {
		ctl_error(r, CTL_EXISTS, "%s", err);
		return;
	}
	if (ret < 0) {
		ctl_error(r, CTL_FAILED, "%s", err);
		return;
	}
	ctl_export_list(ctl, NULL, r);	/* the table as it is now */
}

static void
ctl_export_remove(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "name", "timeout", NULL };
	json_int_t timeout;
	const char *name;
	unsigned int n;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 ||
	    ctl_param_int(params, "timeout", false, ctl->srv->cfg->stop_timeout, 0, 3600,
			  &timeout, r) < 0)
		return;
	if (!exports_has(&ctl->srv->exports, name)) {
		ctl_error(r, CTL_NO_EXPORT, "no export '%.200s'", name);
		return;
	}
	n = manage_remove_export(ctl, name, (unsigned int)timeout);
	r->result = json_pack("{s:s, s:I, s:I}", "removed", name, "connections", (json_int_t)n,
			      "timeout_seconds", timeout);
}

static void
ctl_export_set_readonly(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "name", "readonly", NULL };
	struct export *e;
	bool ro;

	if (ctl_params_only(params, keys, r) < 0)
		return;
	if (!params || !json_object_get(params, "readonly")) {
		ctl_error(r, CTL_INVALID_PARAMS, "missing parameter 'readonly'");
		return;
	}
	if (ctl_param_bool(params, "readonly", true, &ro, r) < 0 || !(e = ctl_export(ctl, params, r)))
		return;
	if (!ro && e->vol->readonly) {
		ctl_error(r, CTL_FAILED, "export '%.200s': its volume %s is open read-only; remove "
			  "the export and add it again writable", e->name, e->path);
	} else {
		__atomic_store_n(&e->readonly, ro, __ATOMIC_RELAXED);
		log_info("export '%s' is now %s", e->name, ro ? "read-only" : "writable");
		r->result = ctl_export_json(ctl, e);
	}
	export_put(e);
}

static void
ctl_export_resize(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "name", "size", NULL };
	char err[512] = "";
	json_int_t size;
	struct export *e;
	int ret;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_int(params, "size", true, 0, 1, INT64_MAX, &size, r) < 0 ||
	    !(e = ctl_export(ctl, params, r)))
		return;
	if ((uint64_t)size < e->vol->size && manage_export_conns(ctl, e)) {
		ctl_error(r, CTL_FAILED, "export '%.200s' has connections: shrinking it would cut "
			  "off data they can address; remove them first", e->name);
	} else if ((ret = dio_file_resize(e->vol, (uint64_t)size, err, sizeof(err))) < 0) {
		ctl_error(r, CTL_FAILED, "%s", err[0] ? err : strerror(-ret));
	} else {
		log_info("export '%s' resized to %" PRIu64 " bytes", e->name, e->vol->size);
		r->result = ctl_export_json(ctl, e);
	}
	export_put(e);
}

/*
 * ---- thin pools (dionbd-pool's volume commands, for a pool the daemon
 * holds open: its lock keeps dionbd-pool out while it serves) ----
 */

/* The pool named by params' "pool" (an absolute path), opened if need be; NULL: r says why. */
static struct dio_tpool *
ctl_pool(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	struct dio_tpool *pool;
	const char *path;
	char why[768] = "";
	int ret;

	if (ctl_param_str(params, "pool", true, &path, r) < 0)
		return NULL;
	if (path[0] != '/') {
		ctl_error(r, CTL_INVALID_PARAMS, "pool '%.200s' is not an absolute path", path);
		return NULL;
	}
	ret = exports_pool(ctl->srv->cfg, path, false, why, sizeof(why), &pool);
	if (ret < 0) {
		ctl_error(r, CTL_FAILED, "%s", why[0] ? why : strerror(-ret));
		return NULL;
	}
	return pool;
}

/* A volume operation failed: the reason, with what the caller can do. */
static void
ctl_pool_error(struct ctl_reply *r, const char *what, const char *name, int ret)
{
	const char *why = ret == -ENOENT   ? "no such volume"
			  : ret == -EEXIST ? "a volume of that name exists"
			  : ret == -EBUSY  ? "it is open (served): remove its exports first"
			  : ret == -EROFS  ? "the pool is open read-only"
			  : ret == -ENOSPC ? "no room in the pool's volume table or metadata"
			  : ret == -EINVAL ? "bad name or size (a multiple of 4096, within the "
					     "pool's limits)"
					   : strerror(-ret);

	ctl_error(r, ret == -EEXIST ? CTL_EXISTS : CTL_FAILED, "%s '%.64s': %s", what, name, why);
}

static void
ctl_pool_info(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "pool", NULL };
	struct dio_tpool_info in;
	struct dio_tpool *pool;

	if (ctl_params_only(params, keys, r) < 0 || !(pool = ctl_pool(ctl, params, r)))
		return;
	dio_tpool_get_info(pool, &in);
	/* reclaim_*: dropped maps (deletes, reverts, shrinks) whose chunks are still coming back */
	r->result = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
			      "size", (json_int_t)in.dev_size,
			      "chunk_size", (json_int_t)in.chunk_size,
			      "chunks", (json_int_t)in.nr_chunks,
			      "free_chunks", (json_int_t)in.free_chunks,
			      "reclaim_volumes", (json_int_t)in.reclaim_volumes,
			      "reclaim_chunks", (json_int_t)in.reclaim_chunks,
			      "volumes", (json_int_t)in.nr_volumes,
			      "max_volumes", (json_int_t)in.max_volumes,
			      "journal_blocks", (json_int_t)in.journal_blocks,
			      "journal_used", (json_int_t)in.journal_used,
			      "readonly", in.readonly);
}

static void
ctl_pool_volume_list(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "pool", NULL };
	struct dio_tpool_vol_info *v = NULL;
	struct dio_tpool_info in;
	struct dio_tpool *pool;
	size_t n = 0;
	json_t *a;
	int ret;

	if (ctl_params_only(params, keys, r) < 0 || !(pool = ctl_pool(ctl, params, r)))
		return;
	ret = dio_tpool_volume_list(pool, &v, &n);
	if (ret < 0) {
		ctl_error(r, CTL_FAILED, "listing volumes: %s", strerror(-ret));
		return;
	}
	dio_tpool_get_info(pool, &in);
	a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "name",
						   v[i].name, "id", (json_int_t)v[i].id,
						   "size", (json_int_t)v[i].size,
						   "mapped", (json_int_t)(v[i].mapped *
									  in.chunk_size),
						   "parent", (json_int_t)v[i].parent,
						   "readonly", v[i].readonly));
	free(v);
	r->result = a;
	if (!a)
		ctl_error(r, CTL_INTERNAL, "out of memory");
}

/* pool.volume.create and pool.volume.resize: {pool, name, size}. */
static void
ctl_pool_volume_sized(struct control *ctl, const json_t *params, struct ctl_reply *r,
		      bool create)
{
	static const char *const keys[] = { "pool", "name", "size", NULL };
	struct dio_tpool *pool;
	const char *name;
	json_int_t size;
	int ret;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 ||
	    ctl_param_int(params, "size", true, 0, 1, INT64_MAX, &size, r) < 0 ||
	    !(pool = ctl_pool(ctl, params, r)))
		return;
	ret = create ? dio_tpool_volume_create(pool, name, (uint64_t)size)
		     : dio_tpool_volume_resize(pool, name, (uint64_t)size);
	if (ret < 0) {
		ctl_pool_error(r, create ? "creating volume" : "resizing volume", name, ret);
		return;
	}
	log_info("pool %s: volume '%s' %s, %" PRId64 " bytes",
		 json_string_value(json_object_get(params, "pool")), name,
		 create ? "created" : "resized", (int64_t)size);
	r->result = json_pack("{s:s, s:I}", "name", name, "size", size);
}

static void
ctl_pool_volume_create(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	ctl_pool_volume_sized(ctl, params, r, true);
}

static void
ctl_pool_volume_resize(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	ctl_pool_volume_sized(ctl, params, r, false);
}

/* pool.volume.snapshot and pool.volume.clone: {pool, origin, name}. */
static void
ctl_pool_volume_share(struct control *ctl, const json_t *params, struct ctl_reply *r,
		      bool clone)
{
	static const char *const keys[] = { "pool", "origin", "name", NULL };
	const char *origin, *name, *what = clone ? "clone" : "snapshot";
	struct dio_tpool *pool;
	int ret;

	char why[512] = "";

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "origin", true, &origin, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 || !(pool = ctl_pool(ctl, params, r)))
		return;
	/* Writes a writeback cache acknowledged belong in the snapshot too. */
	if (exports_sync_caches(why, sizeof(why)) < 0) {
		ctl_error(r, CTL_FAILED, "%s of '%.64s': %s", what, origin, why);
		return;
	}
	ret = clone ? dio_tpool_volume_clone(pool, origin, name)
		    : dio_tpool_volume_snapshot(pool, origin, name);
	if (ret == -ENOENT) {
		ctl_error(r, CTL_FAILED, "%s of '%.64s': no such volume", what, origin);
		return;
	}
	if (ret == -EBUSY) {
		ctl_error(r, CTL_FAILED, "%s of '%.64s': writes in flight on it did not finish "
			  "within 2 s; try again", what, origin);
		return;
	}
	if (ret < 0) {
		ctl_pool_error(r, clone ? "creating clone" : "creating snapshot", name, ret);
		return;
	}
	log_info("pool %s: volume '%s' is a %s of '%s'",
		 json_string_value(json_object_get(params, "pool")), name, what, origin);
	r->result = json_pack("{s:s, s:s, s:b}", "name", name, "origin", origin, "readonly",
			      !clone);
}

static void
ctl_pool_volume_snapshot(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	ctl_pool_volume_share(ctl, params, r, false);
}

static void
ctl_pool_volume_clone(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	ctl_pool_volume_share(ctl, params, r, true);
}

static void
ctl_pool_volume_delete(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "pool", "name", NULL };
	struct dio_tpool *pool;
	const char *name;
	int ret;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 || !(pool = ctl_pool(ctl, params, r)))
		return;
	ret = dio_tpool_volume_delete(pool, name);
	if (ret < 0) {
		ctl_pool_error(r, "deleting volume", name, ret);
		return;
	}
	log_info("pool %s: volume '%s' deleted", json_string_value(json_object_get(params, "pool")),
		 name);
	r->result = json_pack("{s:s}", "deleted", name);
}

/* pool.volume.revert: {pool, name, snapshot}: the volume reads what its snapshot does. */
static void
ctl_pool_volume_revert(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "pool", "name", "snapshot", NULL };
	struct dio_tpool *pool;
	const char *name, *snap;
	int ret;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "name", true, &name, r) < 0 ||
	    ctl_param_str(params, "snapshot", true, &snap, r) < 0 ||
	    !(pool = ctl_pool(ctl, params, r)))
		return;
	ret = dio_tpool_volume_revert(pool, name, snap);
	if (ret == -EINVAL) {
		ctl_error(r, CTL_FAILED, "reverting volume '%.64s': '%.64s' is not a snapshot of it "
			  "(only a read-only snapshot taken of the volume itself)", name, snap);
		return;
	}
	if (ret == -EROFS) {
		ctl_error(r, CTL_FAILED, "reverting volume '%.64s': it is a snapshot (read-only), "
			  "or the pool is open read-only", name);
		return;
	}
	if (ret == -ENOENT) {
		ctl_error(r, CTL_FAILED, "reverting volume '%.64s' to '%.64s': no such volume", name,
			  snap);
		return;
	}
	if (ret < 0) {
		ctl_pool_error(r, "reverting volume", name, ret);
		return;
	}
	log_info("pool %s: volume '%s' reverted to its snapshot '%s'",
		 json_string_value(json_object_get(params, "pool")), name, snap);
	r->result = json_pack("{s:s, s:s}", "reverted", name, "snapshot", snap);
}

static void
ctl_log_set_level(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { "level", NULL };
	static const char *const levels[] = { "err", "warn", "info", "debug", "trace" };
	const char *level;

	if (ctl_params_only(params, keys, r) < 0 ||
	    ctl_param_str(params, "level", true, &level, r) < 0)
		return;
	for (int i = 0; i < 5; i++) {
		if (!strcmp(level, levels[i])) {
			__atomic_store_n(&log_level, i, __ATOMIC_RELAXED);
			r->result = json_pack("{s:s}", "log_level", levels[i]);
			return;
		}
	}
	ctl_error(r, CTL_INVALID_PARAMS, "level '%.40s' is not err, warn, info, debug or trace",
		  level);
}

static void
ctl_tls_reload(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { NULL };
	char err[256];

	if (ctl_params_only(params, keys, r) < 0)
		return;
	if (manage_reload_tls(ctl, err, sizeof(err)) < 0)
		ctl_error(r, CTL_FAILED, "%s", err);
	else
		r->result = json_pack("{s:b}", "reloaded", 1);
}

static const struct ctl_method {
	const char *name;
	void (*fn)(struct control *ctl, const json_t *params, struct ctl_reply *r);
} ctl_methods[] = {
	{ "server.info", ctl_server_info },
	{ "export.list", ctl_export_list },
	{ "connection.list", ctl_connection_list },
	{ "export.add", ctl_export_add },
	{ "export.remove", ctl_export_remove },
	{ "export.set_readonly", ctl_export_set_readonly },
	{ "export.resize", ctl_export_resize },
	{ "log.set_level", ctl_log_set_level },
	{ "tls.reload", ctl_tls_reload },
	{ "pool.info", ctl_pool_info },
	{ "pool.volume.list", ctl_pool_volume_list },
	{ "pool.volume.create", ctl_pool_volume_create },
	{ "pool.volume.resize", ctl_pool_volume_resize },
	{ "pool.volume.delete", ctl_pool_volume_delete },
	{ "pool.volume.snapshot", ctl_pool_volume_snapshot },
	{ "pool.volume.clone", ctl_pool_volume_clone },
	{ "pool.volume.revert", ctl_pool_volume_revert },
};

/* ---- requests ---- */

char *
control_handle(struct control *ctl, const char *line, size_t len)
{
	struct ctl_reply r = { 0 };
	json_error_t jerr;
	json_t *req, *id = NULL, *resp;
	const json_t *params;
	const char *method;
	char *out;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		ctl_error(&r, CTL_PARSE_ERROR, "not JSON: %s at column %d", jerr.text, jerr.column);
		goto reply;
	}
	id = json_object_get(req, "id");
	if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id))
		id = NULL;
	if (id)
		json_incref(id);
	if (!json_is_object(req) ||
	    !json_is_string(json_object_get(req, "jsonrpc")) ||
	    strcmp(json_string_value(json_object_get(req, "jsonrpc")), "2.0") ||
	    !json_is_string(json_object_get(req, "method"))) {
		ctl_error(&r, CTL_INVALID_REQUEST,
			  "a request is an object with \"jsonrpc\": \"2.0\" and a \"method\" string");
		goto reply;
	}
	method = json_string_value(json_object_get(req, "method"));
	params = json_object_get(req, "params");
	if (params && json_is_null(params))
		params = NULL;
	if (params && !json_is_object(params)) {
		ctl_error(&r, CTL_INVALID_PARAMS, "\"params\" must be an object");
		goto reply;
	}
	for (size_t i = 0; i < sizeof(ctl_methods) / sizeof(ctl_methods[0]); i++) {
		if (!strcmp(method, ctl_methods[i].name)) {
			log_debug("control: %s", method);
			ctl_methods[i].fn(ctl, params, &r);
			goto reply;
		}
	}
	ctl_error(&r, CTL_METHOD_NOT_FOUND, "no method '%.100s'", method);
reply:
	json_decref(req);
	if (r.code) {
		json_decref(r.result);
		resp = json_pack("{s:s, s:{s:i, s:s}, s:o}", "jsonrpc", "2.0", "error", "code", r.code,
				 "message", r.msg, "id", id ? id : json_null());
	} else {
		resp = json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "result",
				 r.result ? r.result : json_null(), "id", id ? id : json_null());
	}
	out = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	json_decref(resp);
	if (!out) {
		/* Never no answer: a client waits for one per request. */
		log_warn("control: a reply could not be encoded (%s)", r.code ? r.msg : "result");
		out = strdup("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,"
			     "\"message\":\"internal error: the reply could not be encoded\"},"
			     "\"id\":null}");
	}
	return out;
}

