/* SPDX-License-Identifier: MIT */
/*
 * Exports (-e specs, [export NAME] sections) and the INI config file
 * (libinih); its [server] keys are settings.c's.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "server.h"

void
config_init(struct server_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->engine = DIO_ENGINE_AUTO;
	/* Hundreds of clients stuck in the handshake must not lock out one more. */
	cfg->max_conns = 4096;
	cfg->handshake_timeout = 10;
	cfg->max_options = 1024;
	cfg->max_inflight = 64;
	cfg->max_inflight_bytes = 64u << 20;
	cfg->stop_timeout = 5;
	cfg->poll_us = CONFIG_POLL_US_DEFAULT;
	cfg->poll_yield = true;
	cfg->poll_check = true;
	cfg->submit_batch = DIO_SUBMIT_BATCH_DEFAULT;
	cfg->pool_discard = true;
	cfg->request_timeout = 120;
	cfg->readahead = true;
	cfg->cache_size = 256u << 20;
	cfg->cache_dirty_limit = 50;
	cfg->cache_writeback_age = 2000;
	cfg->image_locking = true;
}

const struct export *
config_find_export(const struct server_cfg *cfg, const char *name, size_t len)
{
	for (size_t i = 0; i < cfg->nexports; i++) {
		const struct export *e = &cfg->exports[i];

		if (strlen(e->name) == len && !memcmp(e->name, name, len))
			return e;
	}
	return NULL;
}

/* Export names travel as NBD strings: at most 4096 bytes, no NUL. */
static int
config_check_name(const char *name)
{
	if (strlen(name) > NBDP_MAX_STRING) {
		log_err("export name longer than %d bytes", NBDP_MAX_STRING);
		return -1;
	}
	return 0;
}

int
config_add_export(struct server_cfg *cfg, const char *name, const char *path,
		  const char *description, bool readonly)
{
	struct export *exps, *e;

	if (config_check_name(name) < 0)
		return -1;
	if (description && strlen(description) > NBDP_MAX_STRING) {
		log_err("export '%s': description longer than %d bytes", name, NBDP_MAX_STRING);
		return -1;
	}
	if (config_find_export(cfg, name, strlen(name))) {
		log_err("export '%s' defined twice", name);
		return -1;
	}
	exps = realloc(cfg->exports, (cfg->nexports + 1) * sizeof(*exps));
	if (!exps)
		goto err_nomem;
	cfg->exports = exps;
	e = &exps[cfg->nexports];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	e->path = path ? strdup(path) : NULL;
	e->description = description ? strdup(description) : NULL;
	e->readonly = readonly;
	if (!e->name || (path && !e->path) || (description && !e->description)) {
		free(e->name);
		free(e->path);
		free(e->description);
		goto err_nomem;
	}
	cfg->nexports++;
	return 0;

err_nomem:
	log_err("out of memory adding export '%s'", name);
	return -1;
}

int
config_export_allow(struct export *e, const char *id)
{
	char **allow;

	if (!*id || strlen(id) > NBDP_MAX_STRING) {
		log_err("export '%s': allow-list entry empty or too long", e->name);
		return -1;
	}
	allow = realloc(e->allow, (e->nallow + 1) * sizeof(*allow));
	if (!allow)
		goto err_nomem;
	e->allow = allow;
	allow[e->nallow] = strdup(id);
	if (!allow[e->nallow])
		goto err_nomem;
	e->nallow++;
	return 0;

err_nomem:
	log_err("out of memory");
	return -1;
}

int
config_check_tls(struct server_cfg *cfg)
{
	bool creds = cfg->tls_creds || cfg->tls_psk_file;
	bool any_allow = false;

	/* Like qemu-nbd: credentials without --tls mean TLS is required. */
	if (!cfg->tls_set && creds)
		cfg->tls = TLS_REQUIRE;
	for (size_t i = 0; i < cfg->nexports; i++)
		any_allow |= cfg->exports[i].nallow > 0;
	if (cfg->tls == TLS_OFF) {
		if (creds)
			log_warn("--tls off: TLS credentials are not used");
		if (any_allow) {
			log_err("allow-lists name TLS identities: they need --tls on or require");
			return -1;
		}
		if (cfg->tls_verify_peer) {
			log_err("--tls-verify-peer needs --tls on or require");
			return -1;
		}
		return 0;
	}
	if (!creds) {
		log_err("--tls %s needs --tls-creds DIR or --tls-psk-file FILE",
			cfg->tls == TLS_ON ? "on" : "require");
		return -1;
	}
	if (cfg->tls_verify_peer && !cfg->tls_creds) {
		log_err("--tls-verify-peer needs --tls-creds DIR (with ca-cert.pem)");
		return -1;
	}
	return 0;
}

int
config_add_export_spec(struct server_cfg *cfg, const char *spec)
{
	char *copy, *eq, *path, *opt, *next, *desc = NULL, *allow = NULL;
	char *rbd_opts[8], *cache = NULL;
	unsigned int nrbd_opts = 0;
	bool readonly = false;
	int ret = -1;

	copy = strdup(spec);
	if (!copy)
		return -1;
	eq = strchr(copy, '=');
	if (!eq) {
		log_err("--export '%s': expected NAME=PATH[,readonly][,allow=ID:ID...][,rbd-KEY=VALUE...]"
			"[,description=TEXT]", spec);
		goto out_free;
	}
	*eq = '\0';
	path = eq + 1;
	opt = strchr(path, ',');
	if (opt)
		*opt++ = '\0';
	while (opt && *opt) {
		/* description= takes the rest of the string, commas included */
		if (!strncmp(opt, "description=", 12)) {
			desc = opt + 12;
			break;
		}
		next = strchr(opt, ',');
		if (next)
			*next++ = '\0';
		if (!strcmp(opt, "readonly") || !strcmp(opt, "ro")) {
			readonly = true;
		} else if (!strncmp(opt, "allow=", 6)) {
			allow = opt + 6;
		} else if (!strncmp(opt, "cache=", 6)) {
			cache = opt;
		} else if (!strncmp(opt, "rbd-", 4) && strchr(opt, '=') && nrbd_opts < 8) {
			/* kept for after the export exists */
			rbd_opts[nrbd_opts++] = opt;
		} else {
			log_err("--export '%s': unknown option '%s'", spec, opt);
			goto out_free;
		}
		opt = next;
	}
	if (!*path) {
		log_err("--export '%s': empty path", spec);
		goto out_free;
	}
	ret = config_add_export(cfg, copy, path, desc, readonly);
	/* allow=ID1:ID2: identities (CNs, PSK identities, DNs in /A=b/C=d form) */
	while (!ret && allow) {
		char *colon = strchr(allow, ':');

		if (colon)
			*colon++ = '\0';
		ret = config_export_allow(&cfg->exports[cfg->nexports - 1], allow);
		allow = colon;
	}
	if (!ret && cache) {
		char why[256] = "";

		ret = config_export_cache_key(&cfg->exports[cfg->nexports - 1], "cache", cache + 6,
					      why, sizeof(why));
		if (ret < 0)
			log_err("--export '%s': %s", spec, why);
		else
			ret = 0;
	}
	/* rbd-conf=FILE, rbd-id=ID, rbd-keyring=FILE, rbd-cache= and rbd-takeover=on|off, rbd-timeout=S */
	for (unsigned int i = 0; !ret && i < nrbd_opts; i++) {
		char *v = strchr(rbd_opts[i], '='), why[256] = "";
		int r;

		*v++ = '\0';
		r = config_export_rbd_key(&cfg->exports[cfg->nexports - 1], rbd_opts[i], v, why,
					  sizeof(why));
		if (r <= 0) {
			log_err("--export '%s': %s%s", spec, r < 0 ? why : "unknown option ",
				r < 0 ? "" : rbd_opts[i]);
			ret = -1;
		}
	}
out_free:
	free(copy);
	return ret;
}

/* ---- config file ---- */

struct config_parse {
	struct server_cfg *cfg;
	int line;		/* the line libinih is on */
	int lines_done;		/* newlines read so far */
	int err_line;		/* the line of err[], 0 = no error yet */
	char err[512];
};

/* Record what is wrong with the current line, unless an earlier line failed. */
static void __attribute__((format(printf, 2, 3)))
config_error(struct config_parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err_line)
		return;
	p->err_line = p->line;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

/* Replace *dst with a copy of v. 0 or -1 (out of memory). */
static int
config_set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

int
config_export_rbd_key(struct export *e, const char *key, const char *v, char *err, size_t errlen)
{
	char **str = !strcmp(key, "rbd-conf") ? &e->rbd.conf :
		     !strcmp(key, "rbd-id") ? &e->rbd.id :
		     !strcmp(key, "rbd-keyring") ? &e->rbd.keyring : NULL;
	char *end;
	unsigned long n;

	if (str) {
		if (!*v) {
			snprintf(err, errlen, "empty value for '%s'", key);
			return -1;
		}
		if (config_set_str(str, v) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 1;
	}
	if (!strcmp(key, "rbd-cache") || !strcmp(key, "rbd-takeover")) {
		if (settings_parse_bool(v, key[4] == 'c' ? &e->rbd.cache : &e->rbd.takeover) < 0) {
			snprintf(err, errlen, "bad value '%.64s' for '%s' (on or off)", v, key);
			return -1;
		}
		return 1;
	}
	if (!strcmp(key, "rbd-timeout")) {
		errno = 0;
		n = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)*v) || errno || *end || n < 1 || n > 3600) {
			snprintf(err, errlen, "bad value '%.64s' for 'rbd-timeout' (1 to 3600 "
				 "seconds)", v);
			return -1;
		}
		e->rbd.timeout = (unsigned int)n;
		return 1;
	}
	return 0;
}

int
config_export_cache_key(struct export *e, const char *key, const char *v, char *err,
			size_t errlen)
{
	static const char *const words[] = { "none", "read", "writeback" };

	if (strcmp(key, "cache"))
		return 0;
	for (unsigned int i = 0; i < 3; i++) {
		if (!strcmp(v, words[i])) {
			e->cache = (enum export_cache)i;
			return 1;
		}
	}
	snprintf(err, errlen, "bad value '%.64s' for 'cache' (none, read or writeback)", v);
	return -1;
}

/* One key of [server], a setting (settings.c). 0, or -1 with p->err set. */
static int
config_server_key(struct config_parse *p, const char *key, const char *v)
{
	const struct setting *s = settings_find(key);
	char accepts[128];
	int ret;

	if (!s) {
		config_error(p, "unknown key '%.200s' in [server]", key);
		return -1;
	}
	ret = settings_set(p->cfg, s, v);
	if (ret == -EINVAL)
		config_error(p, "bad value '%.200s' for '%.64s' (%s)", v, key,
			     settings_accepts(s, accepts, sizeof(accepts)));
	else if (ret < 0)
		config_error(p, "out of memory");
	return ret < 0 ? -1 : 0;
}

/* The export a section "export NAME" (or "export") is about, created on first use. */
static struct export *
config_section_export(struct config_parse *p, const char *section)
{
	char name[NBDP_MAX_STRING + 1];
	const char *s = section + 6;
	size_t len;
	struct export *e;

	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
		s++;
		len -= 2;
	}
	if (len > NBDP_MAX_STRING) {
		config_error(p, "export name longer than %d bytes",
			 NBDP_MAX_STRING);
		return NULL;
	}
	memcpy(name, s, len);
	name[len] = '\0';
	e = (struct export *)config_find_export(p->cfg, name, len);
	if (e)
		return e;
	if (config_add_export(p->cfg, name, NULL, NULL, false) < 0) {
		config_error(p, "cannot add export '%.200s'", name);
		return NULL;
	}
	return &p->cfg->exports[p->cfg->nexports - 1];
}

struct config_reader {
	FILE *f;
	struct config_parse *p;
};

/*
 * libinih's line source (fgets), counting lines so that an error is
 * reported for the line it was found on. A line longer than libinih's
 * buffer is an error of its own; the rest of it is skipped, so that
 * libinih, which counts a line per call, keeps our line numbers.
 */
static char *
config_read_line(char *buf, int size, void *stream)
{
	struct config_reader *rd = stream;
	struct config_parse *p = rd->p;
	char *s;

	p->line = p->lines_done + 1;
	s = fgets(buf, size, rd->f);
	if (!s)
		return NULL;
	if (strchr(s, '\n')) {
		p->lines_done++;
	} else if (!feof(rd->f)) {
		int ch;

		config_error(p, "line longer than %d bytes", size - 2);
		while ((ch = fgetc(rd->f)) != EOF && ch != '\n')
			;
		p->lines_done++;
	}
	return s;
}

/* inih handler: nonzero to go on, 0 marks this line as bad (the first one is reported). */
static int
config_ini_handler(void *user, const char *section, const char *key, const char *v)
{
	struct config_parse *p = user;
	struct export *e;

	if (!strcmp(section, "server"))
		return config_server_key(p, key, v) == 0;
	if (!strncmp(section, "export", 6) && (section[6] == '\0' || section[6] == ' ')) {
		e = config_section_export(p, section);
		if (!e)
			return 0;
		if (!strcmp(key, "path")) {
			if (!*v) {
				config_error(p, "empty path for export '%.200s'", e->name);
				return 0;
			}
			if (e->path) {
				config_error(p, "export '%.200s' has a second path", e->name);
				return 0;
			}
			if (config_set_str(&e->path, v) < 0)
				return 0;
		} else if (!strcmp(key, "readonly")) {
			if (settings_parse_bool(v, &e->readonly) < 0) {
				config_error(p, "bad value '%.200s' for 'readonly' (on or off)", v);
				return 0;
			}
		} else if (!strcmp(key, "description")) {
			if (strlen(v) > NBDP_MAX_STRING) {
				config_error(p, "description longer than %d bytes",
					 NBDP_MAX_STRING);
				return 0;
			}
			if (config_set_str(&e->description, v) < 0)
				return 0;
		} else if (!strcmp(key, "allow")) {
			/* One identity per line: DNs hold commas. */
			if (config_export_allow(e, v) < 0) {
				config_error(p, "bad allow entry");
				return 0;
			}
		} else {
			char why[256] = "";
			int r = config_export_rbd_key(e, key, v, why, sizeof(why));

			if (r == 0)
				r = config_export_cache_key(e, key, v, why, sizeof(why));

			if (r < 0) {
				config_error(p, "%s", why);
				return 0;
			}
			if (r == 0) {
				config_error(p, "unknown key '%.64s' in [%.200s]", key, section);
				return 0;
			}
		}
		return 1;
	}
	config_error(p, "unknown section [%.200s]", section);
	return 0;
}

int
config_load_file(struct server_cfg *cfg, const char *path)
{
	struct config_parse p = { .cfg = cfg };
	struct config_reader rd = { .p = &p };
	int line;

	rd.f = fopen(path, "re");
	if (!rd.f) {
		log_err("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	line = ini_parse_stream(config_read_line, &rd, config_ini_handler, &p);
	fclose(rd.f);
	if (line == -2) {
		log_err("%s: out of memory", path);
		return -1;
	}
	/*
	 * libinih returns the first line it or our handler refused; an error of
	 * ours (the handler's, or an over-long line the reader saw) on that line
	 * or before it comes first. Any other refused line was a syntax error.
	 */
	if (p.err_line && (line == 0 || p.err_line <= line)) {
		log_err("%s:%d: %s", path, p.err_line, p.err);
		return -1;
	}
	if (line > 0) {
		log_err("%s:%d: syntax error: expected [section], key = value or a comment",
			path, line);
		return -1;
	}
	for (size_t i = 0; i < cfg->nexports; i++) {
		if (!cfg->exports[i].path) {
			log_err("%s: export '%s' has no path", path, cfg->exports[i].name);
			return -1;
		}
	}
	return 0;
}

void
config_export_clear(struct export *e)
{
	free(e->name);
	free(e->path);
	free(e->description);
	for (size_t j = 0; j < e->nallow; j++)
		free(e->allow[j]);
	free(e->allow);
	free(e->rbd.conf);
	free(e->rbd.id);
	free(e->rbd.keyring);
	memset(&e->rbd, 0, sizeof(e->rbd));
	e->name = e->path = e->description = NULL;
	e->allow = NULL;
	e->nallow = 0;
}

void
config_free(struct server_cfg *cfg)
{
	for (size_t i = 0; i < cfg->nexports; i++)
		config_export_clear(&cfg->exports[i]);
	free(cfg->exports);
	for (size_t i = 0; i < cfg->nbinds; i++)
		free(cfg->binds[i]);
	free(cfg->binds);
	free(cfg->port);
	free(cfg->unix_path);
	free(cfg->pidfile);
	free(cfg->control_path);
	free(cfg->config_path);
	free(cfg->tls_creds);
	free(cfg->tls_psk_file);
	free(cfg->metrics);
	memset(cfg, 0, sizeof(*cfg));
}
