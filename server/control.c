/* SPDX-License-Identifier: MIT */
/*
 * The control socket: JSON-RPC 2.0 (the convention SPDK uses) over a Unix
 * socket, one request object per line and one response line each, parsed
 * and built with jansson. It runs on the main thread's event loop, beside
 * the accepting, and changes only shared state that has its own lock (the
 * export table, the TLS context, the log level); reactors are told what
 * concerns them (reactor_sweep).
 *
 * Only a peer with the daemon's uid, or root, may talk to it (SO_PEERCRED);
 * the socket itself is created mode 0600.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* A request line longer than this is refused (and the client dropped). */
#define CTL_MAX_LINE (64 * 1024)

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
}

static int64_t
ctl_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
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

/* Connections now open on export e (all reactors). */
static unsigned int
ctl_export_conns(struct control *ctl, const struct export *e)
{
	unsigned int n = 0;

	pthread_mutex_lock(&ctl->srv->conns_lock);
	for (const struct conn *c = ctl->srv->conns; c; c = c->all_next)
		n += c->exp == e;
	pthread_mutex_unlock(&ctl->srv->conns_lock);
	return n;
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
	r->result = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:s?, s:s?, s:b, s:I, s:b}",
			      "version", DIONBD_VERSION,
			      "pid", (json_int_t)getpid(),
			      "uptime_seconds", (json_int_t)(ctl_mono_s() - ctl->started),
			      "reactors", (json_int_t)ctl->nreactors,
			      "exports", (json_int_t)ctl->srv->exports.n,
			      "connections", (json_int_t)atomic_load(&ctl->srv->nconns),
			      "tls", tls_modes[cfg->tls],
			      "log_level", levels[log_level < 0 ? 0 : log_level > 4 ? 4 : log_level],
			      "unix_socket", cfg->unix_path,
			      "config_file", cfg->config_path,
			      "readahead", cfg->readahead,
			      "poll_us", (json_int_t)cfg->poll_us,
			      "image_locking", cfg->image_locking);
	if (!r->result)
		ctl_error(r, CTL_INTERNAL, "out of memory");
}

/* One export as export.list shows it. */
static json_t *
ctl_export_json(struct control *ctl, const struct export *e)
{
	json_t *allow = json_array(), *o;

	for (size_t i = 0; allow && i < e->nallow; i++)
		json_array_append_new(allow, json_string(e->allow[i]));
	o = json_pack("{s:s, s:s, s:s?, s:I, s:b, s:o, s:I, s:{s:I, s:I, s:I, s:b}}",
		      "name", e->name, "path", e->path, "description", e->description,
		      "size", (json_int_t)e->vol->size,
		      "readonly", __atomic_load_n(&e->readonly, __ATOMIC_RELAXED),
		      "allow", allow ? allow : json_null(),
		      "connections", (json_int_t)ctl_export_conns(ctl, e),
		      "volume", "id", (json_int_t)dio_volume_id(e->vol),
		      "block_size", (json_int_t)e->vol->lbs,
		      "physical_block_size", (json_int_t)e->vol->pbs,
		      "block_device", e->vol->blockdev);
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

int
control_add_export(struct control *ctl, const struct export *spec, char *err, size_t errlen)
{
	struct export *e;
	int ret;

	ret = exports_add(&ctl->srv->exports, spec, ctl->srv->cfg, err, errlen);
	if (ret < 0)
		return ret;
	/* The reactors' buffers are aligned for the block sizes they started with. */
	e = exports_find(&ctl->srv->exports, spec->name, strlen(spec->name));
	if (e && e->vol->lbs > ctl->buf_align) {
		snprintf(err, errlen, "%s: block size %u is larger than the buffers' alignment "
			 "(%zu): restart dionbd to serve it", spec->path, e->vol->lbs,
			 ctl->buf_align);
		export_put(e);
		control_remove_export(ctl, spec->name, 0);
		return -EINVAL;
	}
	export_put(e);
	log_info("export '%s' added", spec->name);
	return 0;
}

unsigned int
control_remove_export(struct control *ctl, const char *name, unsigned int timeout)
{
	struct export *e = exports_unlink(&ctl->srv->exports, name);
	struct timespec ts;
	unsigned int n;

	if (!e)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	e->drop_at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
		     (uint64_t)timeout * 1000000000u;
	n = ctl_export_conns(ctl, e);
	/* removed (set by exports_unlink) and drop_at are read after the wake-up's lock */
	for (unsigned int i = 0; i < ctl->nreactors; i++)
		reactor_sweep(&ctl->reactors[i]);
	log_info("export '%s' removed; %u connection(s) finish within %u s", name, n, timeout);
	export_put(e);
	return n;
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
	if (path[0] != '/') {
		ctl_error(r, CTL_INVALID_PARAMS, "path '%.200s' is not absolute", path);
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
	ret = control_add_export(ctl, &spec, err, sizeof(err));
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
	n = control_remove_export(ctl, name, (unsigned int)timeout);
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
	if ((uint64_t)size < e->vol->size && ctl_export_conns(ctl, e)) {
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

int
control_reload_tls(struct control *ctl, char *err, size_t errlen)
{
	struct tls_ctx *t;

	if (ctl->srv->cfg->tls == TLS_OFF) {
		snprintf(err, errlen, "TLS is off: there is nothing to reload");
		return -1;
	}
	if (tls_ctx_new(ctl->srv->cfg, &t) < 0) {
		snprintf(err, errlen, "the credentials could not be loaded (the log says why); "
			 "the old ones stay in use");
		return -1;
	}
	tls_ctx_swap(ctl->srv, t);
	log_info("TLS credentials reloaded");
	return 0;
}

static void
ctl_tls_reload(struct control *ctl, const json_t *params, struct ctl_reply *r)
{
	static const char *const keys[] = { NULL };
	char err[256];

	if (ctl_params_only(params, keys, r) < 0)
		return;
	if (control_reload_tls(ctl, err, sizeof(err)) < 0)
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
	return out;
}

/* ---- the socket ---- */

/* A connected dionbdctl (or script), until it closes. */
struct ctl_client {
	struct control *ctl;
	struct bufferevent *bev;
	struct ctl_client *prev, *next;
};

static void
ctl_client_free(struct ctl_client *cl)
{
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		cl->ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Lines from a client: answer each. */
static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cl = arg;
	struct control *ctl = cl->ctl;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		char *out = control_handle(ctl, line, len);

		free(line);
		if (!out) {
			ctl_client_free(cl);
			return;
		}
		bufferevent_write(bev, out, strlen(out));
		bufferevent_write(bev, "\n", 1);
		free(out);
	}
	if (evbuffer_get_length(in) > CTL_MAX_LINE) {
		static const char msg[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":"
					  "\"request line longer than 65536 bytes\"},\"id\":null}\n";

		log_warn("control: a request line over %d bytes: dropping the client",
			 CTL_MAX_LINE);
		evbuffer_drain(in, evbuffer_get_length(in));
		bufferevent_write(bev, msg, sizeof(msg) - 1);
		bufferevent_disable(bev, EV_READ);
	}
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		ctl_client_free(arg);
}

/* Whether the peer on fd is us (same uid) or root. */
static bool
ctl_peer_ok(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	return cr.uid == 0 || cr.uid == geteuid();
}

static void
ctl_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;
	struct ctl_client *cl;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0)
		return;
	if (!ctl_peer_ok(cfd)) {
		log_warn("control: refused a peer whose uid is neither ours nor root");
		close(cfd);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (cl)
		cl->bev = bufferevent_socket_new(ctl->base, cfd, BEV_OPT_CLOSE_ON_FREE);
	if (!cl || !cl->bev) {
		free(cl);
		close(cfd);
		return;
	}
	cl->ctl = ctl;
	cl->next = ctl->clients;
	if (cl->next)
		cl->next->prev = cl;
	ctl->clients = cl;
	bufferevent_setcb(cl->bev, ctl_on_read, NULL, ctl_on_event, cl);
	bufferevent_enable(cl->bev, EV_READ);
}

int
control_open(struct control *ctl, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd;

	ctl->fd = -1;
	ctl->started = ctl_mono_s();
	if (!path)
		return 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("control socket %s: path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_err("control socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	old = umask(0177);	/* mode 0600 from the start: no window for others */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		umask(old);
		log_err("control socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	ctl->ev = event_new(ctl->base, fd, EV_READ | EV_PERSIST, ctl_on_accept, ctl);
	if (!ctl->ev) {
		close(fd);
		unlink(path);
		return -1;
	}
	event_add(ctl->ev, NULL);
	ctl->fd = fd;
	ctl->path = path;
	log_info("control socket %s", path);
	return 0;
}

void
control_close(struct control *ctl)
{
	while (ctl->clients)
		ctl_client_free(ctl->clients);
	if (ctl->fd < 0)
		return;
	event_free(ctl->ev);
	close(ctl->fd);
	unlink(ctl->path);
	ctl->fd = -1;
}
