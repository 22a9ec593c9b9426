/* SPDX-License-Identifier: MIT */
/*
 * The [server] settings, in one table. Each setting has one name, which is
 * both its config file key and its long option, one kind of value with one
 * range or one list of words, and one field of struct server_cfg. The
 * config file (config.c) and the command line (main.c) both go through
 * settings_set(), so a value accepted in one place is accepted in the other.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

enum setting_kind {
	SET_BOOL,	/* bool: a word of settings_bool_words */
	SET_FLAG,	/* a SET_BOOL whose option alone means on ("--name=off" works too) */
	SET_UINT,	/* unsigned int in [min, max] */
	SET_COUNT,	/* unsigned int in [min, max]; the option (no value) adds one */
	SET_MIB,	/* uint64_t bytes, given in MiB in [min, max] */
	SET_PORT,	/* char *: a number in [min, max], kept as written */
	SET_ENDPOINT,	/* char *: [ADDR:]PORT, PORT in [min, max], kept as written */
	SET_STR,	/* char *: each value replaces the one before */
	SET_LIST,	/* char ** (count at count_off): each value is appended */
	SET_ENUM,	/* an enum (int-sized): one of words[] */
};

struct setting_word {
	const char *word;
	int value;
	bool alias;	/* accepted, but not offered in --help and messages */
};

struct setting {
	const char *name;	/* the config file key and the long option */
	const char *alias;	/* another name for both, or NULL */
	char short_opt;		/* 0: none */
	enum setting_kind kind;
	size_t off;		/* the field in struct server_cfg: SET_FIELD */
	size_t count_off;	/* SET_LIST: the size_t count of the list */
	unsigned long min, max;	/* SET_UINT, SET_COUNT, SET_MIB, SET_PORT, SET_ENDPOINT */
	const struct setting_word *words;	/* SET_ENUM: up to a NULL word */
	/* Optional - may be NULL. Runs after each value given was stored. */
	void (*given)(struct server_cfg *cfg);
	const char *arg;	/* the value's name in --help; NULL for words */
	const char *help;	/* --help text, '\n' between its lines */
};

/* The offset of cfg's field f, which must have type t (else no compile). */
#define SET_FIELD(f, t) _Generic(((struct server_cfg *)NULL)->f, t: offsetof(struct server_cfg, f))

/* SET_ENUM stores an int into the enum fields. */
_Static_assert(sizeof(enum dio_engine_kind) == sizeof(int), "engine is not int-sized");
_Static_assert(sizeof(enum tls_mode) == sizeof(int), "tls is not int-sized");

/* Words offered in --help and messages, and aliases accepted too. */
#define SET_WORD(w, v)	{ w, v, false }
#define SET_ALIAS(w, v)	{ w, v, true }

/* Every bool, in the config file and on the command line, any case. */
static const struct setting_word settings_bool_words[] = {
	SET_WORD("on", 1),	  SET_WORD("off", 0),	     SET_ALIAS("yes", 1),
	SET_ALIAS("no", 0),	  SET_ALIAS("true", 1),	     SET_ALIAS("false", 0),
	SET_ALIAS("1", 1),	  SET_ALIAS("0", 0),	     SET_WORD(NULL, 0),
};

static const struct setting_word settings_engine_words[] = {
	SET_WORD("uring", DIO_ENGINE_URING),	SET_ALIAS("io_uring", DIO_ENGINE_URING),
	SET_WORD("psync", DIO_ENGINE_PSYNC),	SET_WORD("auto", DIO_ENGINE_AUTO),
	SET_WORD(NULL, 0),
};

/* tls takes the bool words too: off is off, on is on */
static const struct setting_word settings_tls_words[] = {
	SET_WORD("off", TLS_OFF),	 SET_ALIAS("no", TLS_OFF),	SET_ALIAS("false", TLS_OFF),
	SET_ALIAS("0", TLS_OFF),	 SET_WORD("on", TLS_ON),	SET_ALIAS("yes", TLS_ON),
	SET_ALIAS("true", TLS_ON),	 SET_ALIAS("1", TLS_ON),	SET_WORD("require", TLS_REQUIRE),
	SET_ALIAS("required", TLS_REQUIRE), SET_WORD(NULL, 0),
};

/* A TCP port or address was given: listen on TCP even with a Unix socket. */
static void
settings_given_tcp(struct server_cfg *cfg)
{
	cfg->tcp = true;
}

/* tls was given: credentials no longer imply "require" (config_check_tls). */
static void
settings_given_tls(struct server_cfg *cfg)
{
	cfg->tls_set = true;
}

/* In --help order. The defaults are config_init's. */
static const struct setting settings[] = {
	{ .name = "unix", .short_opt = 'U', .kind = SET_STR,
	  .off = SET_FIELD(unix_path, char *), .arg = "PATH",
	  .help = "listen on a Unix socket (TCP: see --tcp)" },
	{ .name = "port", .short_opt = 'p', .kind = SET_PORT, .min = 1, .max = 65535,
	  .off = SET_FIELD(port, char *), .given = settings_given_tcp, .arg = "PORT",
	  .help = "TCP port (default 10809)" },
	{ .name = "bind", .alias = "listen", .short_opt = 'b', .kind = SET_LIST,
	  .off = SET_FIELD(binds, char **), .count_off = SET_FIELD(nbinds, size_t),
	  .given = settings_given_tcp, .arg = "ADDR",
	  .help = "TCP address (repeatable; default: all)" },
	{ .name = "tcp", .kind = SET_FLAG, .off = SET_FIELD(tcp, bool),
	  .help = "listen on TCP too (implied by -p, -b, or no -U)" },
	{ .name = "readonly", .alias = "read-only", .short_opt = 'r', .kind = SET_FLAG,
	  .off = SET_FIELD(readonly, bool), .help = "every export read-only" },
	{ .name = "threads", .short_opt = 't', .kind = SET_UINT, .min = 1, .max = 1024,
	  .off = SET_FIELD(threads, unsigned int), .arg = "N",
	  .help = "reactor threads (default: one per CPU\n"
		  "the daemon may run on: its affinity)" },
	{ .name = "engine", .kind = SET_ENUM, .words = settings_engine_words,
	  .off = SET_FIELD(engine, enum dio_engine_kind),
	  .help = "I/O engine (default auto: uring, else psync)" },
	{ .name = "max-connections", .kind = SET_UINT, .min = 1, .max = 1000000,
	  .off = SET_FIELD(max_conns, unsigned int), .arg = "N",
	  .help = "connection cap (default 4096)" },
	{ .name = "handshake-timeout", .kind = SET_UINT, .min = 1, .max = 3600,
	  .off = SET_FIELD(handshake_timeout, unsigned int), .arg = "SEC",
	  .help = "drop clients negotiating for SEC (default 10)" },
	{ .name = "max-options", .kind = SET_UINT, .min = 1, .max = 1000000,
	  .off = SET_FIELD(max_options, unsigned int), .arg = "N",
	  .help = "drop a client after N options (default 1024)" },
	{ .name = "max-inflight", .kind = SET_UINT, .min = 1, .max = 4096,
	  .off = SET_FIELD(max_inflight, unsigned int), .arg = "N",
	  .help = "requests in flight per connection (default 64)" },
	{ .name = "max-inflight-mb", .kind = SET_MIB, .min = 32, .max = 65536,
	  .off = SET_FIELD(max_inflight_bytes, uint64_t), .arg = "MB",
	  .help = "READ/WRITE MiB in flight per connection\n(default 64)" },
	{ .name = "request-timeout", .kind = SET_UINT, .min = 0, .max = 3600,
	  .off = SET_FIELD(request_timeout, unsigned int), .arg = "SEC",
	  .help = "drop a client whose started request (a WRITE\n"
		  "payload, say) is not all in after SEC\n"
		  "(default 120, 0 = no limit)" },
	{ .name = "stop-timeout", .kind = SET_UINT, .min = 1, .max = 3600,
	  .off = SET_FIELD(stop_timeout, unsigned int), .arg = "SEC",
	  .help = "on SIGTERM, give in-flight work SEC (default 5)" },
	{ .name = "readahead", .kind = SET_BOOL, .off = SET_FIELD(readahead, bool),
	  .help = "read ahead of sequential READ streams (default on)" },
	{ .name = "cache-size", .kind = SET_MIB, .min = 1, .max = 1048576,
	  .off = SET_FIELD(cache_size, uint64_t), .arg = "MB",
	  .help = "block cache MiB per volume served with\ncache=read|writeback (default 256)" },
	{ .name = "cache-dirty-limit", .kind = SET_UINT, .min = 1, .max = 100,
	  .off = SET_FIELD(cache_dirty_limit, unsigned int), .arg = "PCT",
	  .help = "% of a block cache that may be dirty; writers\n"
		  "wait beyond it, writeback starts at half\n(default 50)" },
	{ .name = "cache-writeback-age", .kind = SET_UINT, .min = 10, .max = 3600000,
	  .off = SET_FIELD(cache_writeback_age, unsigned int), .arg = "MS",
	  .help = "write back data dirty in a block cache for\nMS milliseconds (default 2000)" },
	{ .name = "image-locking", .kind = SET_BOOL, .off = SET_FIELD(image_locking, bool),
	  .help = "take QEMU-compatible image locks on served\nfiles (default on)" },
	{ .name = "poll-us", .kind = SET_UINT, .min = 0, .max = CONFIG_POLL_US_MAX,
	  .off = SET_FIELD(poll_us, unsigned int), .arg = "US",
	  .help = "after work, poll up to US microseconds before\n"
		  "sleeping (adaptive; default 500, 0 = off)" },
	{ .name = "poll-yield", .kind = SET_BOOL, .off = SET_FIELD(poll_yield, bool),
	  .help = "poll only while the CPUs have room: not while\n"
		  "steal time is high or, with --poll-check off,\n"
		  "runnable threads outnumber them (default on)" },
	{ .name = "poll-check", .kind = SET_BOOL, .off = SET_FIELD(poll_check, bool),
	  .help = "every 3-12 s, count a window of the other mode\n"
		  "once it has settled; poll only if polling\n"
		  "answered 5% more requests per second\n"
		  "(default on)" },
	{ .name = "submit-batch", .kind = SET_UINT, .min = 0, .max = CONFIG_SUBMIT_BATCH_MAX,
	  .off = SET_FIELD(submit_batch, unsigned int), .arg = "N",
	  .help = "io_uring: enter the kernel as soon as N\n"
		  "requests wait, not at the end of the loop\n"
		  "turn (default 2; 0 = at the end)" },
	{ .name = "pool-discard", .kind = SET_BOOL, .off = SET_FIELD(pool_discard, bool),
	  .help = "thin pools hand freed chunks back to the\n"
		  "device: holes in a pool file, discard on a\n"
		  "device (default on; off for preallocated files)" },
	{ .name = "tls", .kind = SET_ENUM, .words = settings_tls_words,
	  .off = SET_FIELD(tls, enum tls_mode), .given = settings_given_tls,
	  .help = "STARTTLS (default: require if credentials are\ngiven, else off)" },
	{ .name = "tls-creds", .kind = SET_STR, .off = SET_FIELD(tls_creds, char *), .arg = "DIR",
	  .help = "ca-cert.pem, server-cert.pem, server-key.pem\n[, ca-crl.pem]" },
	{ .name = "tls-verify-peer", .kind = SET_FLAG, .off = SET_FIELD(tls_verify_peer, bool),
	  .help = "require a client certificate signed by the CA" },
	{ .name = "tls-psk-file", .kind = SET_STR, .off = SET_FIELD(tls_psk_file, char *),
	  .arg = "FILE", .help = "PSK identities and keys (psktool format)" },
	{ .name = "metrics", .kind = SET_ENDPOINT, .min = 1, .max = 65535,
	  .off = SET_FIELD(metrics, char *), .arg = "[ADDR:]PORT",
	  .help = "serve Prometheus metrics over HTTP at\n"
		  "/metrics (ADDR default 127.0.0.1; [::1]:PORT\n"
		  "for IPv6; default: off)" },
	{ .name = "foreground", .short_opt = 'f', .kind = SET_FLAG,
	  .off = SET_FIELD(foreground, bool), .help = "stay in the foreground, log to stderr" },
	{ .name = "pid-file", .short_opt = 'P', .kind = SET_STR, .off = SET_FIELD(pidfile, char *),
	  .arg = "FILE", .help = "write the daemon's pid to FILE" },
	{ .name = "control", .kind = SET_STR, .off = SET_FIELD(control_path, char *),
	  .arg = "PATH", .help = "control socket for dionbdctl at PATH (mode 0600;\ndefault: none)" },
	{ .name = "verbose", .short_opt = 'v', .kind = SET_COUNT, .min = 0, .max = 4,
	  .off = SET_FIELD(verbose, unsigned int),
	  .help = "more logging (-v info, -vv debug, -vvv trace)" },
};

#define SETTINGS_N (sizeof(settings) / sizeof(settings[0]))
/* getopt_long's value for settings[i] without a short option. */
#define SETTINGS_OPT_BASE 0x200

const struct setting *
settings_find(const char *name)
{
	for (size_t i = 0; i < SETTINGS_N; i++) {
		const struct setting *s = &settings[i];

		if (!strcmp(name, s->name) || (s->alias && !strcmp(name, s->alias)))
			return s;
	}
	return NULL;
}

const struct setting *
settings_from_opt(int opt)
{
	if (opt >= SETTINGS_OPT_BASE && opt < SETTINGS_OPT_BASE + (int)SETTINGS_N)
		return &settings[opt - SETTINGS_OPT_BASE];
	for (size_t i = 0; i < SETTINGS_N; i++)
		if (settings[i].short_opt && settings[i].short_opt == opt)
			return &settings[i];
	return NULL;
}

const char *
settings_name(const struct setting *s)
{
	return s->name;
}

/* Print words (aliases left out) as "a, b or c" (sep NULL) or "a|b|c". */
static void
settings_words(const struct setting_word *words, const char *sep, char *buf, size_t len)
{
	const struct setting_word *w, *last = NULL;
	size_t n = 0;

	for (w = words; w->word; w++)
		if (!w->alias)
			last = w;
	buf[0] = '\0';
	for (w = words; w->word && n < len; w++) {
		if (w->alias)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%s",
				      n == 0 ? "" : sep ? sep : w == last ? " or " : ", ", w->word);
	}
}

const char *
settings_accepts(const struct setting *s, char *buf, size_t len)
{
	switch (s->kind) {
	case SET_BOOL:
	case SET_FLAG:
		settings_words(settings_bool_words, NULL, buf, len);
		break;
	case SET_ENUM:
		settings_words(s->words, NULL, buf, len);
		break;
	case SET_UINT:
	case SET_COUNT:
	case SET_MIB:
	case SET_PORT:
		snprintf(buf, len, "a number in [%lu, %lu]", s->min, s->max);
		break;
	case SET_ENDPOINT:
		snprintf(buf, len, "[ADDR:]PORT with PORT in [%lu, %lu]", s->min, s->max);
		break;
	case SET_STR:
	case SET_LIST:
		snprintf(buf, len, "a non-empty string");
		break;
	}
	return buf;
}

int
settings_parse_bool(const char *v, bool *out)
{
	for (const struct setting_word *w = settings_bool_words; w->word; w++) {
		if (!strcasecmp(v, w->word)) {
			*out = w->value;
			return 0;
		}
	}
	return -EINVAL;
}

/* A decimal in [min, max], digits only. 0 or -EINVAL. */
static int
settings_number(const char *v, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long n;

	/* strtoul would take " 5", "+5" and "-1" (as ULONG_MAX) */
	if (!isdigit((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

int
settings_parse_endpoint(const char *v, char *addr, size_t addr_len, unsigned int *port)
{
	const char *colon = strrchr(v, ':'), *a = v, *a_end = v, *port_s = v;
	unsigned long n;

	if (colon && *v == '[') {
		/* [IPv6]:PORT: the brackets go, what is inside must not be empty */
		if (colon - v < 3 || colon[-1] != ']')
			return -EINVAL;
		a = v + 1;
		a_end = colon - 1;
		port_s = colon + 1;
	} else if (colon) {
		/* ":PORT", or an IPv6 address without its brackets */
		if (colon == v || memchr(v, ':', (size_t)(colon - v)))
			return -EINVAL;
		a_end = colon;
		port_s = colon + 1;
	}
	if (settings_number(port_s, 1, 65535, &n) < 0 || (size_t)(a_end - a) >= addr_len)
		return -EINVAL;
	for (const char *p = a; p < a_end; p++)
		if (isspace((unsigned char)*p) || *p == '[' || *p == ']')
			return -EINVAL;
	memcpy(addr, a, (size_t)(a_end - a));
	addr[a_end - a] = '\0';
	*port = (unsigned int)n;
	return 0;
}

union setting_val {
	bool b;
	unsigned long n;
	int e;
};

/* Parse v (NULL: the option without a value) for s. 0 or -EINVAL. */
static int
settings_parse(const struct setting *s, const char *v, union setting_val *out)
{
	if (!v && s->kind == SET_FLAG) {
		out->b = true;
		return 0;
	}
	if (!v)
		return s->kind == SET_COUNT ? 0 : -EINVAL;
	switch (s->kind) {
	case SET_BOOL:
	case SET_FLAG:
		return settings_parse_bool(v, &out->b);
	case SET_UINT:
	case SET_COUNT:
	case SET_MIB:
	case SET_PORT:
		return settings_number(v, s->min, s->max, &out->n);
	case SET_ENUM:
		for (const struct setting_word *w = s->words; w->word; w++) {
			if (!strcasecmp(v, w->word)) {
				out->e = w->value;
				return 0;
			}
		}
		return -EINVAL;
	case SET_ENDPOINT: {
		char addr[SETTINGS_ADDR_MAX];
		unsigned int port;

		if (settings_parse_endpoint(v, addr, sizeof(addr), &port) < 0 || port < s->min ||
		    port > s->max)
			return -EINVAL;
		return 0;
	}
	case SET_STR:
	case SET_LIST:
		return *v ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int
settings_check(const struct setting *s, const char *v)
{
	union setting_val val;

	return settings_parse(s, v, &val);
}

/* Replace *dst with a copy of v. 0 or -ENOMEM. */
static int
settings_set_str(char **dst, const char *v)
{
	char *copy = strdup(v);

	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/* Append a copy of v to the list *arr of *n strings. 0 or -ENOMEM. */
static int
settings_append(char ***arr, size_t *n, const char *v)
{
	char **grown = realloc(*arr, (*n + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	*arr = grown;
	grown[*n] = strdup(v);
	if (!grown[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int
settings_set(struct server_cfg *cfg, const struct setting *s, const char *v)
{
	char *field = (char *)cfg + s->off;
	union setting_val val = { 0 };
	unsigned int *count;
	int ret;

	ret = settings_parse(s, v, &val);
	if (ret < 0)
		return ret;
	switch (s->kind) {
	case SET_BOOL:
	case SET_FLAG:
		*(bool *)field = val.b;
		break;
	case SET_UINT:
		*(unsigned int *)field = (unsigned int)val.n;
		break;
	case SET_COUNT:
		count = (unsigned int *)field;
		if (v)
			*count = (unsigned int)val.n;
		else if (*count < s->max)
			(*count)++;
		break;
	case SET_MIB:
		*(uint64_t *)field = (uint64_t)val.n << 20;
		break;
	case SET_ENUM:
		memcpy(field, &val.e, sizeof(val.e));
		break;
	case SET_PORT:
	case SET_ENDPOINT:
	case SET_STR:
		ret = settings_set_str((char **)field, v);
		break;
	case SET_LIST:
		ret = settings_append((char ***)field, (size_t *)((char *)cfg + s->count_off), v);
		break;
	}
	if (!ret && s->given)
		s->given(cfg);
	return ret;
}

int
settings_getopt(const struct option *extra, const char *extra_short, struct option **longopts,
		char **shortopts)
{
	size_t nextra = 0, n = 0, ns;
	struct option *lo;
	char *so;

	while (extra[nextra].name)
		nextra++;
	lo = calloc(nextra + 2 * SETTINGS_N + 1, sizeof(*lo));
	so = malloc(strlen(extra_short) + 2 * SETTINGS_N + 1);
	if (!lo || !so) {
		free(lo);
		free(so);
		return -ENOMEM;
	}
	memcpy(lo, extra, nextra * sizeof(*lo));
	n = nextra;
	strcpy(so, extra_short);
	ns = strlen(so);
	for (size_t i = 0; i < SETTINGS_N; i++) {
		const struct setting *s = &settings[i];
		int has_arg = s->kind == SET_COUNT ? no_argument
			      : s->kind == SET_FLAG ? optional_argument
						    : required_argument;
		int val = s->short_opt ? s->short_opt : SETTINGS_OPT_BASE + (int)i;

		lo[n++] = (struct option){ s->name, has_arg, NULL, val };
		if (s->alias)
			lo[n++] = (struct option){ s->alias, has_arg, NULL, val };
		if (!s->short_opt)
			continue;
		/* "-rf" is -r -f: a flag's short option never takes a value */
		so[ns++] = s->short_opt;
		if (has_arg == required_argument)
			so[ns++] = ':';
	}
	so[ns] = '\0';
	*longopts = lo;
	*shortopts = so;
	return 0;
}

void
settings_usage(FILE *f)
{
	char left[96], words[64];

	for (size_t i = 0; i < SETTINGS_N; i++) {
		const struct setting *s = &settings[i];
		const char *h = s->help, *nl;
		int n;

		if (s->kind == SET_ENUM)
			settings_words(s->words, "|", words, sizeof(words));
		n = snprintf(left, sizeof(left), "  %c%c%s--%s%s%s", s->short_opt ? '-' : ' ',
			     s->short_opt ? s->short_opt : ' ', s->short_opt ? ", " : "  ", s->name,
			     s->kind == SET_BOOL || s->kind == SET_ENUM || s->arg ? " " : "",
			     s->kind == SET_BOOL ? "on|off" : s->kind == SET_ENUM ? words
							     : s->arg ? s->arg : "");
		fprintf(f, "%-*s", n < 29 ? 29 : n, left);
		/* continuation lines start in the column of the first */
		for (bool first = true; h; first = false, h = nl ? nl + 1 : NULL) {
			nl = strchr(h, '\n');
			fprintf(f, "%*s%.*s\n", first ? 2 : 31, "",
				nl ? (int)(nl - h) : (int)strlen(h), h);
		}
	}
}

void
settings_log(const struct server_cfg *cfg)
{
	for (size_t i = 0; i < SETTINGS_N; i++) {
		const struct setting *s = &settings[i];
		const char *field = (const char *)cfg + s->off;
		const struct setting_word *w;
		int e;

		switch (s->kind) {
		case SET_BOOL:
		case SET_FLAG:
			log_debug("setting %s = %s", s->name, *(const bool *)field ? "on" : "off");
			break;
		case SET_UINT:
		case SET_COUNT:
			log_debug("setting %s = %u", s->name, *(const unsigned int *)field);
			break;
		case SET_MIB:
			log_debug("setting %s = %llu", s->name,
				  (unsigned long long)(*(const uint64_t *)field >> 20));
			break;
		case SET_ENUM:
			memcpy(&e, field, sizeof(e));
			for (w = s->words; w->word && (w->alias || w->value != e); w++)
				;
			log_debug("setting %s = %s", s->name, w->word ? w->word : "?");
			break;
		case SET_PORT:
		case SET_ENDPOINT:
		case SET_STR:
			log_debug("setting %s = %s", s->name,
				  *(char *const *)field ? *(char *const *)field : "(unset)");
			break;
		case SET_LIST: {
			char *const *list = *(char **const *)field;
			size_t n = *(const size_t *)((const char *)cfg + s->count_off);

			if (!n)
				log_debug("setting %s = (unset)", s->name);
			for (size_t j = 0; j < n; j++)
				log_debug("setting %s = %s", s->name, list[j]);
			break;
		}
		}
	}
}
