/* SPDX-License-Identifier: MIT */
/*
 * dionbdctl: the command-line client of dionbd's control socket (control.c).
 * One JSON-RPC 2.0 request per command; the answer as a table for people,
 * or as the JSON result with --json for scripts.
 * Exit status: 0 done, 1 the server refused or cannot be reached, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_DEFAULT_SOCKET "/run/dionbd/control.sock"

static void
usage(FILE *f)
{
	fprintf(f,
		"Usage: dionbdctl [-s|--socket PATH] [--json] COMMAND [ARGS...]\n"
		"Manage a running dionbd through its control socket (default %s).\n\n"
		"Commands:\n"
		"  info                              version, pid, uptime, settings\n"
		"  exports                           the exports and their counters\n"
		"  connections                       the clients connected now\n"
		"  add-export NAME PATH [--readonly] [--description TEXT] [--allow ID]...\n"
		"  remove-export NAME [--timeout SEC]\n"
		"  set-readonly NAME on|off\n"
		"  resize NAME SIZE                  SIZE in bytes, or with K, M, G, T\n"
		"  log-level err|warn|info|debug|trace\n"
		"  reload-tls                        load the TLS credentials again\n"
		"  pool-info POOL                    a thin pool the daemon holds (by path)\n"
		"  pool-volumes POOL                 its volumes: size, space mapped\n"
		"  pool-create-volume POOL NAME SIZE\n"
		"  pool-resize-volume POOL NAME SIZE\n"
		"  pool-delete-volume POOL NAME      (not while an export serves it)\n"
		"  pool-snapshot POOL ORIGIN NAME    a read-only snapshot, O(1)\n"
		"  pool-clone POOL ORIGIN NAME       a writable clone, O(1)\n"
		"  pool-revert POOL NAME SNAPSHOT    NAME reads what its snapshot does (not while served)\n\n"
		"  --json   print the server's JSON result instead of a table\n"
		"Exit status: 0 done, 1 refused or unreachable, 2 usage.\n",
		CTL_DEFAULT_SOCKET);
}

/* Send one request on a new connection; the response object, or NULL (reported). */
static json_t *
ctl_call(const char *path, const char *method, json_t *params)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *req = json_pack("{s:s, s:s, s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
	json_error_t jerr;
	json_t *resp = NULL;
	char *line = NULL;
	FILE *f = NULL;
	size_t cap = 0;
	int fd = -1;

	if (!req)
		goto out;
	if (params)
		json_object_set_new(req, "params", params);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "dionbdctl: %s: path too long\n", path);
		goto out;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "dionbdctl: cannot reach dionbd at %s: %s\n", path,
			strerror(errno));
		goto out;
	}
	f = fdopen(fd, "r+");
	if (!f)
		goto out;
	fd = -1;
	if (json_dumpf(req, f, JSON_COMPACT) < 0 || fputc('\n', f) == EOF || fflush(f) == EOF) {
		fprintf(stderr, "dionbdctl: %s: cannot send: %s\n", path, strerror(errno));
		goto out;
	}
	if (getline(&line, &cap, f) < 0) {
		fprintf(stderr, "dionbdctl: %s: no answer\n", path);
		goto out;
	}
	resp = json_loads(line, 0, &jerr);
	if (!resp || !json_is_object(resp)) {
		fprintf(stderr, "dionbdctl: %s: not a JSON-RPC answer: %s\n", path, jerr.text);
		json_decref(resp);
		resp = NULL;
	}
out:
	free(line);
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	json_decref(req);
	return resp;
}

/* A field of an object (or of its "counters") as text for a table cell. */
static void
ctl_cell(const json_t *o, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(o, key);

	if (!v && json_object_get(o, "counters"))
		v = json_object_get(json_object_get(o, "counters"), key);
	if (json_is_string(v) && json_string_length(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
	else
		snprintf(buf, len, "-");
}

/* Print the array of objects rows as a table of the given columns. */
static void
ctl_table(const json_t *rows, const char *const *keys, const char *const *heads, size_t ncol)
{
	size_t width[16] = { 0 };
	char cell[256];
	size_t i;
	json_t *row;

	for (size_t c = 0; c < ncol; c++)
		width[c] = strlen(heads[c]);
	json_array_foreach(rows, i, row)
		for (size_t c = 0; c < ncol; c++) {
			ctl_cell(row, keys[c], cell, sizeof(cell));
			if (strlen(cell) > width[c])
				width[c] = strlen(cell);
		}
	for (size_t c = 0; c < ncol; c++)
		printf("%-*s%s", (int)width[c], heads[c], c + 1 < ncol ? "  " : "\n");
	json_array_foreach(rows, i, row)
		for (size_t c = 0; c < ncol; c++) {
			ctl_cell(row, keys[c], cell, sizeof(cell));
			printf("%-*s%s", (int)width[c], cell, c + 1 < ncol ? "  " : "\n");
		}
}

/* Print a result for people. */
static void
ctl_print(const char *cmd, const json_t *res)
{
	static const char *const exp_keys[] = { "name", "path", "size", "readonly", "connections",
						 "reads", "writes", "bytes_read", "bytes_written",
						 "errors" };
	static const char *const exp_heads[] = { "NAME", "PATH", "SIZE", "RO", "CONNS", "READS",
						  "WRITES", "READ-BYTES", "WRITTEN-BYTES", "ERRORS" };
	static const char *const conn_keys[] = { "id", "peer", "tls_identity", "export",
						  "in_flight", "age_seconds" };
	static const char *const conn_heads[] = { "ID", "PEER", "TLS", "EXPORT", "IN-FLIGHT",
						   "AGE(s)" };
	const char *key;
	json_t *v;

	static const char *const vol_keys[] = { "name", "id", "size", "mapped", "parent",
						 "readonly" };
	static const char *const vol_heads[] = { "NAME", "ID", "SIZE", "MAPPED", "PARENT", "RO" };

	if (json_is_array(res) && !strcmp(cmd, "connections")) {
		ctl_table(res, conn_keys, conn_heads, 6);
	} else if (json_is_array(res) && !strcmp(cmd, "pool-volumes")) {
		ctl_table(res, vol_keys, vol_heads, 6);
	} else if (json_is_array(res)) {
		ctl_table(res, exp_keys, exp_heads, 10);
	} else if (json_is_object(res) && json_object_get(res, "volume")) {
		json_t *one = json_pack("[O]", res);

		ctl_table(one, exp_keys, exp_heads, 10);
		json_decref(one);
	} else if (json_is_object(res)) {
		json_object_foreach((json_t *)res, key, v) {
			char cell[512];

			ctl_cell(res, key, cell, sizeof(cell));
			printf("%-16s %s\n", key, cell);
		}
	}
}

/* SIZE with an optional K/M/G/T suffix (powers of 1024). 0 or -1. */
static int
ctl_size(const char *s, json_int_t *out)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end || n > (unsigned long long)INT64_MAX >> shift)
		return -1;
	*out = (json_int_t)(n << shift);
	return 0;
}

/* POOL as an absolute path (the daemon runs in /), into abs. 0 or -1 (reported). */
static int
ctl_abs(const char *path, char *abs)
{
	if (!realpath(path, abs)) {
		fprintf(stderr, "dionbdctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The pool-* commands. 0, 1 (not one of them), or -1 (usage error, reported). */
static int
ctl_pool_command(int argc, char **argv, const char **method, json_t **params)
{
	const char *cmd = argv[0];
	char abs[PATH_MAX];
	json_int_t n = 0;
	bool sized = !strcmp(cmd, "pool-create-volume") || !strcmp(cmd, "pool-resize-volume");
	bool share = !strcmp(cmd, "pool-snapshot") || !strcmp(cmd, "pool-clone");
	bool revert = !strcmp(cmd, "pool-revert");

	if (strncmp(cmd, "pool-", 5))
		return 1;
	if (!((!strcmp(cmd, "pool-info") || !strcmp(cmd, "pool-volumes")) && argc == 2) &&
	    !(sized && argc == 4) && !(!strcmp(cmd, "pool-delete-volume") && argc == 3) &&
	    !((share || revert) && argc == 4))
		return 1;
	if (ctl_abs(argv[1], abs) < 0)
		return -1;
	if (sized && ctl_size(argv[3], &n) < 0) {
		fprintf(stderr, "dionbdctl: %s: '%s' is not a size\n", cmd, argv[3]);
		return -1;
	}
	*params = json_pack("{s:s}", "pool", abs);
	if (revert) {
		json_object_set_new(*params, "name", json_string(argv[2]));
		json_object_set_new(*params, "snapshot", json_string(argv[3]));
		*method = "pool.volume.revert";
		return 0;
	}
	if (share) {
		json_object_set_new(*params, "origin", json_string(argv[2]));
		json_object_set_new(*params, "name", json_string(argv[3]));
		*method = !strcmp(cmd, "pool-snapshot") ? "pool.volume.snapshot"
							: "pool.volume.clone";
		return 0;
	}
	if (argc >= 3)
		json_object_set_new(*params, "name", json_string(argv[2]));
	if (sized)
		json_object_set_new(*params, "size", json_integer(n));
	*method = !strcmp(cmd, "pool-info")	       ? "pool.info"
		  : !strcmp(cmd, "pool-volumes")       ? "pool.volume.list"
		  : !strcmp(cmd, "pool-create-volume") ? "pool.volume.create"
		  : !strcmp(cmd, "pool-resize-volume") ? "pool.volume.resize"
						       : "pool.volume.delete";
	return 0;
}

/* Build the method and params of a command. 0, or -1 (usage error, reported). */
static int
ctl_command(int argc, char **argv, const char **method, json_t **params)
{
	const char *cmd = argv[0];
	json_int_t n;
	int ret;

	*params = NULL;
	ret = ctl_pool_command(argc, argv, method, params);
	if (ret <= 0)
		return ret;
	if (!strcmp(cmd, "info") && argc == 1) {
		*method = "server.info";
	} else if (!strcmp(cmd, "exports") && argc == 1) {
		*method = "export.list";
	} else if (!strcmp(cmd, "connections") && argc == 1) {
		*method = "connection.list";
	} else if (!strcmp(cmd, "reload-tls") && argc == 1) {
		*method = "tls.reload";
	} else if (!strcmp(cmd, "log-level") && argc == 2) {
		*method = "log.set_level";
		*params = json_pack("{s:s}", "level", argv[1]);
	} else if (!strcmp(cmd, "set-readonly") && argc == 3 &&
		   (!strcmp(argv[2], "on") || !strcmp(argv[2], "off"))) {
		*method = "export.set_readonly";
		*params = json_pack("{s:s, s:b}", "name", argv[1], "readonly",
				    !strcmp(argv[2], "on"));
	} else if (!strcmp(cmd, "resize") && argc == 3) {
		if (ctl_size(argv[2], &n) < 0) {
			fprintf(stderr, "dionbdctl: resize: '%s' is not a size\n", argv[2]);
			return -1;
		}
		*method = "export.resize";
		*params = json_pack("{s:s, s:I}", "name", argv[1], "size", n);
	} else if (!strcmp(cmd, "remove-export") && (argc == 2 || argc == 4)) {
		*method = "export.remove";
		*params = json_pack("{s:s}", "name", argv[1]);
		if (argc == 4) {
			char *end;
			long t = strtol(argv[3], &end, 10);

			if (strcmp(argv[2], "--timeout") || *end || end == argv[3] || t < 0 ||
			    t > 3600) {
				fprintf(stderr, "dionbdctl: remove-export NAME [--timeout SEC]\n");
				return -1;
			}
			json_object_set_new(*params, "timeout", json_integer(t));
		}
	} else if (!strcmp(cmd, "add-export") && argc >= 3) {
		char abs[PATH_MAX];
		json_t *allow = json_array();

		/* The daemon runs in /: a relative path is ours to resolve. */
		if (!strncmp(argv[2], "rbd:", 4)) {
			snprintf(abs, sizeof(abs), "%s", argv[2]);
		} else if (!strncmp(argv[2], "pool:", 5) && strrchr(argv[2], '/')) {
			/* pool:POOL/VOLUME: the pool's path resolved, the volume kept */
			const char *slash = strrchr(argv[2], '/');
			char pp[PATH_MAX];

			snprintf(pp, sizeof(pp), "%.*s", (int)(slash - argv[2] - 5), argv[2] + 5);
			if (ctl_abs(pp, abs) < 0) {
				json_decref(allow);
				return -1;
			}
			if (strlen(abs) + strlen(slash) + 6 > sizeof(abs)) {
				fprintf(stderr, "dionbdctl: %s: path too long\n", argv[2]);
				json_decref(allow);
				return -1;
			}
			memmove(abs + 5, abs, strlen(abs) + 1);
			memcpy(abs, "pool:", 5);
			strcat(abs, slash);
		} else if (ctl_abs(argv[2], abs) < 0) {
			json_decref(allow);
			return -1;
		}
		*method = "export.add";
		*params = json_pack("{s:s, s:s}", "name", argv[1], "path", abs);
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--readonly")) {
				json_object_set_new(*params, "readonly", json_true());
			} else if (!strcmp(argv[i], "--description") && i + 1 < argc) {
				json_object_set_new(*params, "description", json_string(argv[++i]));
			} else if (!strcmp(argv[i], "--allow") && i + 1 < argc) {
				json_array_append_new(allow, json_string(argv[++i]));
			} else {
				fprintf(stderr, "dionbdctl: add-export: unknown argument '%s'\n",
					argv[i]);
				json_decref(allow);
				return -1;
			}
		}
		if (json_array_size(allow))
			json_object_set_new(*params, "allow", allow);
		else
			json_decref(allow);
	} else {
		fprintf(stderr, "dionbdctl: unknown command or wrong arguments: %s "
			"(see dionbdctl --help)\n", cmd);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CTL_DEFAULT_SOCKET, *method;
	bool as_json = false;
	json_t *params, *resp, *err;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "+s:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (ctl_command(argc - optind, argv + optind, &method, &params) < 0)
		return 2;
	resp = ctl_call(path, method, params);
	if (!resp)
		return 1;
	err = json_object_get(resp, "error");
	if (err) {
		fprintf(stderr, "dionbdctl: %s: %s\n", argv[optind],
			json_string_value(json_object_get(err, "message")) ?: "error");
		if (as_json) {
			json_dumpf(err, stdout, JSON_INDENT(2));
			putchar('\n');
		}
	} else {
		json_t *res = json_object_get(resp, "result");

		if (as_json) {
			json_dumpf(res, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
			putchar('\n');
		} else {
			ctl_print(argv[optind], res);
		}
		rc = 0;
	}
	json_decref(resp);
	return rc;
}
