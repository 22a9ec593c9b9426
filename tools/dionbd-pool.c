/* SPDX-License-Identifier: MIT */
/*
 * dionbd-pool: administer a thin pool (POOL.md "Tools").
 *
 *   dionbd-pool create [--chunk-size N] [--size N] [--journal-blocks N] POOL
 *   dionbd-pool info POOL
 *   dionbd-pool check POOL              exit 0 clean, 1 problems, 2 usage
 *   dionbd-pool repair POOL             exit 0 repaired or clean, 1 refused, 2 usage
 *   dionbd-pool dump [--json] POOL
 *   dionbd-pool volume create POOL NAME SIZE
 *   dionbd-pool volume list [--json] POOL
 *   dionbd-pool volume delete POOL NAME
 *   dionbd-pool volume resize POOL NAME SIZE
 *   dionbd-pool snapshot POOL ORIGIN NAME   (read-only; also 'volume snapshot')
 *   dionbd-pool clone POOL ORIGIN NAME      (writable; also 'volume clone')
 *   dionbd-pool revert POOL VOLUME SNAPSHOT (also 'volume revert')
 *   dionbd-pool diff [--json] POOL BASE TARGET   changed extents of TARGET since BASE
 *
 * Sizes take K, M, G, T suffixes (powers of 1024). check, repair and dump
 * draw a progress line on stderr when it is a terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dio/dio.h"
#include "dio/tpool.h"

#define EXIT_USAGE 2

static void
usage(void)
{
	fprintf(stderr,
		"usage: dionbd-pool [--no-discard] COMMAND ...\n"
		"       dionbd-pool create [--chunk-size N] [--size N] [--journal-blocks N] POOL\n"
		"       dionbd-pool info POOL\n"
		"       dionbd-pool check POOL\n"
		"       dionbd-pool repair POOL\n"
		"       dionbd-pool dump [--json] POOL\n"
		"       dionbd-pool volume create POOL NAME SIZE\n"
		"       dionbd-pool volume list [--json] POOL\n"
		"       dionbd-pool volume delete POOL NAME\n"
		"       dionbd-pool volume resize POOL NAME SIZE\n"
		"       dionbd-pool snapshot POOL ORIGIN NAME\n"
		"       dionbd-pool clone POOL ORIGIN NAME\n"
		"       dionbd-pool revert POOL VOLUME SNAPSHOT\n"
		"       dionbd-pool diff [--json] POOL BASE TARGET\n"
		"SIZE takes a K, M, G or T suffix. check: exit 0 clean, 1 problems;\n"
		"repair: exit 0 repaired or clean, 1 refused; 2: usage.\n"
		"--no-discard: chunks a command frees stay allocated on the device\n"
		"(as dionbd --pool-discard off).\n");
}

/* A size with an optional K/M/G/T suffix; false when it is not one. */
static bool
parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

/*
 * The progress line: on stderr when it is a terminal, drawn once the work
 * has taken half a second, redrawn at most ten times a second, erased
 * before anything else is written and at the end.
 */
static struct {
	bool tty;
	bool shown;		/* a line is on the screen */
	struct timespec start, last;
} prog;

static double
since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void
progress_clear(void)
{
	if (prog.shown)
		fputs("\r\033[K", stderr);
	prog.shown = false;
}

/* Start timing a long command (the line appears only if it lasts). */
static void
progress_start(void)
{
	prog.tty = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &prog.start);
	prog.last = prog.start;
}

/* dio_tpool_progress_fn, and the tool's own steps. */
static void
progress(void *priv, const char *what, uint64_t done, uint64_t total)
{
	struct timespec now;

	if (!prog.tty)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (since(&prog.start, &now) < 0.5 || (prog.shown && since(&prog.last, &now) < 0.1))
		return;
	prog.last = now;
	if (total)
		fprintf(stderr, "\r\033[K%s: %" PRIu64 " of %" PRIu64 " (%" PRIu64 "%%)", what, done,
			total, done * 100 / total);
	else
		fprintf(stderr, "\r\033[K%s: %" PRIu64, what, done);
	fflush(stderr);
	prog.shown = true;
}

static void
log_stderr(int level, const char *msg)
{
	if (level <= DIO_LOG_WARN) {
		progress_clear();
		fprintf(stderr, "dionbd-pool: %s\n", msg);
	}
}

static char errbuf[512];
/* --no-discard: freed chunks keep their blocks (dionbd --pool-discard off) */
static bool no_discard;

/* Options to open path with; progress on a terminal. */
static struct dio_tpool_opts
pool_opts(bool readonly)
{
	struct dio_tpool_opts o = { .readonly = readonly, .no_discard = no_discard,
				    .errbuf = errbuf, .errlen = sizeof(errbuf) };

	progress_start();
	if (prog.tty)
		o.progress = progress;
	return o;
}

static struct dio_tpool *
open_or_die(const char *path, bool readonly)
{
	struct dio_tpool_opts o = pool_opts(readonly);
	struct dio_tpool *p;

	if (dio_tpool_open(path, &o, &p) < 0)
		exit(1);	/* the reason went to the log */
	progress_clear();
	return p;
}

static int
cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "journal-blocks", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct dio_tpool_create_opts co = { 0 };
	struct dio_tpool_opts o = { .no_discard = no_discard, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "c:s:j:", lo, NULL)) != -1) {
		if (c == '?' || !parse_size(optarg, &v)) {
			usage();
			return EXIT_USAGE;
		}
		if (c == 'c')
			co.chunk_size = (uint32_t)v;
		else if (c == 's')
			co.size = v;
		else
			co.journal_blocks = (uint32_t)v;
	}
	if (optind + 1 != argc) {
		usage();
		return EXIT_USAGE;
	}
	if (dio_tpool_create(argv[optind], &co, &o) < 0)
		return 1;
	return 0;
}

/* 16 bytes as 32 hex digits and a NUL. */
static void
uuid_str(const uint8_t *u, char *out)
{
	for (int k = 0; k < 16; k++)
		sprintf(out + 2 * k, "%02x", u[k]);
}

static int
cmd_info(const char *path)
{
	struct dio_tpool *p = open_or_die(path, true);
	struct dio_tpool_info i;
	char uuid[40];

	dio_tpool_get_info(p, &i);
	uuid_str(i.uuid, uuid);
	printf("uuid:          %s\n", uuid);
	printf("size:          %" PRIu64 "\n", i.dev_size);
	printf("chunk size:    %u (written bit per %u bytes)\n", i.chunk_size, i.sub_size);
	printf("chunks:        %" PRIu64 " (%" PRIu64 " free)\n", i.nr_chunks, i.free_chunks);
	printf("volumes:       %u of %u\n", i.nr_volumes, i.max_volumes);
	printf("generation:    %" PRIu64 "\n", i.gen);
	printf("journal:       %" PRIu64 " of %" PRIu64 " blocks in use\n", i.journal_used,
	       i.journal_blocks);
	printf("metadata:      %" PRIu64 " blocks\n", i.meta_blocks);
	printf("checkpoint:    %" PRIu64 " blocks in use\n", i.ckpt_blocks);
	dio_tpool_close(p);
	return 0;
}

static void
check_report(void *priv, int sev, const char *msg)
{
	static const char *const tag[] = { "note", "leak", "PROBLEM" };

	progress_clear();
	printf("%s: %s\n", tag[sev], msg);
	fflush(stdout);
}

static int
cmd_check(const char *path)
{
	struct dio_tpool_opts o = pool_opts(true);
	struct dio_tpool_check_result res;
	int ret = dio_tpool_check(path, &o, check_report, NULL, &res);

	progress_clear();
	if (ret == -EAGAIN) {
		fprintf(stderr, "dionbd-pool: check refused: %s: %s; stop what has it open "
			"(the daemon?) first\n", path, errbuf);
		return 1;
	}
	if (ret < 0) {
		fprintf(stderr, "dionbd-pool: %s: %s\n", path, errbuf[0] ? errbuf : strerror(-ret));
		return 1;
	}
	printf("%u problems, %u leaked chunks\n", res.problems, res.leaks);
	return res.problems ? 1 : 0;	/* leaks are reported, not fatal */
}

/*
 * Repair: exit 0 when it took leaks back or had nothing to do, 1 when it
 * refused (the pool is open elsewhere, or has problems it cannot fix).
 */
static int
cmd_repair(const char *path)
{
	struct dio_tpool_opts o = pool_opts(false);
	struct dio_tpool_check_result res;
	int ret = dio_tpool_repair(path, &o, check_report, NULL, &res);

	progress_clear();
	if (ret == -EAGAIN) {
		fprintf(stderr, "dionbd-pool: repair refused: %s; stop what has it open "
			"(the daemon?) first\n", errbuf);
		return 1;
	}
	if (ret < 0) {
		fprintf(stderr, "dionbd-pool: repair: %s\n", errbuf[0] ? errbuf : strerror(-ret));
		return 1;
	}
	if (res.problems) {
		printf("repair refused: %u problems it cannot fix (above); nothing written\n",
		       res.problems);
		return 1;
	}
	if (res.leaks)
		printf("repaired: %u leaked chunks taken back\n", res.leaks);
	else
		printf("clean: nothing to repair\n");
	return 0;
}

/* Print j on stdout, compact, on one line, and drop it. -ENOMEM when it could not. */
static int
json_print(json_t *j)
{
	int ret = j && json_dumpf(j, stdout, JSON_COMPACT) == 0 ? 0 : -ENOMEM;

	json_decref(j);
	if (ret == 0)
		putchar('\n');
	return ret;
}

/* A volume's mappings, as runs of consecutive chunks with the same written bits. */
struct dump_map {
	json_t *runs;
	const char *name;
	uint64_t nl;		/* logical chunks, for progress */
	uint64_t chunk_size, data_start;
	uint64_t l, p, n;	/* the open run: n chunks from l to p */
	uint32_t bits;
};

static int
dump_run_end(struct dump_map *m)
{
	json_t *r;

	if (!m->n)
		return 0;
	r = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "lchunk", (json_int_t)m->l,
		      "pchunk", (json_int_t)m->p, "chunks", (json_int_t)m->n,
		      "offset", (json_int_t)(m->l * m->chunk_size),
		      "addr", (json_int_t)(m->data_start + m->p * m->chunk_size),
		      "written", (json_int_t)m->bits);
	m->n = 0;
	return r && json_array_append_new(m->runs, r) == 0 ? 0 : -ENOMEM;
}

static int
dump_entry(void *priv, uint64_t lchunk, uint64_t pchunk, uint32_t written)
{
	struct dump_map *m = priv;

	if (lchunk % 1024 == 0)
		progress(NULL, m->name, lchunk, m->nl);
	if (m->n && lchunk == m->l + m->n && pchunk == m->p + m->n && written == m->bits) {
		m->n++;
		return 0;
	}
	if (dump_run_end(m) < 0)
		return -ENOMEM;
	m->l = lchunk;
	m->p = pchunk;
	m->n = 1;
	m->bits = written;
	return 0;
}

/* The pool's metadata as a JSON tree; NULL when out of memory. */
static json_t *
dump_tree(struct dio_tpool *p, int *err)
{
	struct dio_tpool_vol_info *vi = NULL;
	struct dio_tpool_info i;
	struct dio_tpool_meta m;
	json_t *root, *vols;
	char uuid[40];
	size_t n = 0;

	dio_tpool_get_info(p, &i);
	*err = dio_tpool_get_meta(p, &m);
	if (*err == 0)
		*err = dio_tpool_volume_list(p, &vi, &n);
	if (*err < 0)
		return NULL;
	uuid_str(i.uuid, uuid);
	root = json_pack("{s:{s:s, s:i, s:I, s:I, s:i, s:i, s:i, s:i, s:{s:I, s:I, s:I},"
			 " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i},"
			 " s:{s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:[I, I, I, I]}}",
		"superblock", "uuid", uuid, "version", (int)m.version,
		"created", (json_int_t)m.created, "size", (json_int_t)i.dev_size,
		"block_size", (int)m.block_size, "chunk_size", (int)i.chunk_size,
		"sub_block_size", (int)i.sub_size, "logical_block_size", (int)i.lbs,
		"features", "compat", (json_int_t)m.feat_compat,
		"ro_compat", (json_int_t)m.feat_ro_compat, "incompat", (json_int_t)m.feat_incompat,
		"journal_start", (json_int_t)m.journal_start,
		"journal_blocks", (json_int_t)i.journal_blocks,
		"meta_start", (json_int_t)m.meta_start, "meta_blocks", (json_int_t)i.meta_blocks,
		"data_start", (json_int_t)m.data_start, "chunks", (json_int_t)i.nr_chunks,
		"next_volume_id", (json_int_t)m.next_vol_id, "max_volumes", (int)i.max_volumes,
		"checkpoint", "generation", (json_int_t)i.gen, "root", (json_int_t)m.ckpt_root,
		"blocks", (json_int_t)m.ckpt_blocks,
		"journal", "blocks", (json_int_t)i.journal_blocks,
		"head", (json_int_t)m.journal_head, "tail", (json_int_t)m.journal_tail,
		"used", (json_int_t)(m.journal_head - m.journal_tail),
		"pending_records", (json_int_t)m.pending_records,
		"first_block", (json_int_t)m.journal_start,
		"space", "chunks", (json_int_t)i.nr_chunks, "used", (json_int_t)m.chunks_used,
		"free", (json_int_t)m.chunks_free, "pending", (json_int_t)m.chunks_pending,
		"leaked", (json_int_t)m.leaked, "refcounts", (json_int_t)m.refcount[0],
		(json_int_t)m.refcount[1], (json_int_t)m.refcount[2], (json_int_t)m.refcount[3]);
	vols = json_array();
	if (!root || !vols || json_object_set_new(root, "volumes", vols) < 0) {
		*err = -ENOMEM;
		goto fail;
	}
	for (size_t k = 0; k < n; k++) {
		struct dump_map dm = { .name = vi[k].name, .chunk_size = i.chunk_size,
				       .data_start = m.data_start,
				       .nl = (vi[k].size + i.chunk_size - 1) / i.chunk_size };
		json_t *v;

		uuid_str(vi[k].uuid, uuid);
		dm.runs = json_array();
		v = json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:b, s:o}", "name", vi[k].name,
			      "id", (json_int_t)vi[k].id, "uuid", uuid, "size", (json_int_t)vi[k].size,
			      "mapped_chunks", (json_int_t)vi[k].mapped,
			      "parent_id", (json_int_t)vi[k].parent, "readonly", (int)vi[k].readonly,
			      "extents", dm.runs);
		if (!v || json_array_append_new(vols, v) < 0) {
			*err = -ENOMEM;
			goto fail;
		}
		*err = dio_tpool_volume_map(p, vi[k].name, dump_entry, &dm);
		if (*err == 0)
			*err = dump_run_end(&dm);
		if (*err < 0)
			goto fail;
	}
	free(vi);
	return root;
fail:
	json_decref(root);
	free(vi);
	return NULL;
}

/* A scalar or an array of scalars as text (strings unquoted); NULL otherwise. */
static char *
text_of(json_t *j)
{
	json_t *c;
	size_t idx;

	if (json_is_string(j))
		return strdup(json_string_value(j));
	if (json_is_object(j))
		return NULL;
	json_array_foreach(j, idx, c)
		if (json_is_object(c) || json_is_array(c))
			return NULL;
	return json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* j as indented "key: value" lines; an array of flat objects one line each. */
static void
dump_text(const char *key, json_t *j, int depth)
{
	char *s = text_of(j);
	const char *k;
	json_t *c;
	size_t idx;

	if (s) {
		printf("%*s%s: %s\n", 2 * depth, "", key, s);
		free(s);
	} else if (json_is_object(j)) {
		if (key)
			printf("%*s%s:\n", 2 * depth, "", key);
		json_object_foreach(j, k, c)
			dump_text(k, c, depth + (key != NULL));
	} else if (json_is_array(j)) {
		printf("%*s%s:\n", 2 * depth, "", key);
		json_array_foreach(j, idx, c) {
			bool flat = json_is_object(c);
			json_t *cc;

			json_object_foreach(c, k, cc)
				flat &= !json_is_object(cc) && !json_is_array(cc);
			if (!flat) {
				printf("%*s-\n", 2 * depth + 2, "");
				dump_text(NULL, c, depth + 2);
				continue;
			}
			printf("%*s-", 2 * depth + 2, "");
			json_object_foreach(c, k, cc) {
				s = text_of(cc);
				printf(" %s=%s", k, s ? s : "?");
				free(s);
			}
			putchar('\n');
		}
	}
}

static int
cmd_dump(int argc, char **argv)
{
	bool json = argc == 3 && strcmp(argv[1], "--json") == 0;
	struct dio_tpool *p;
	json_t *root;
	int ret;

	if (argc != 2 && !json) {
		usage();
		return EXIT_USAGE;
	}
	p = open_or_die(argv[argc - 1], true);
	root = dump_tree(p, &ret);
	dio_tpool_close(p);
	progress_clear();
	if (!root) {
		fprintf(stderr, "dionbd-pool: dump: %s\n", strerror(-ret));
		return 1;
	}
	if (json)
		return json_print(root) < 0 ? 1 : 0;
	dump_text(NULL, root, 0);
	json_decref(root);
	return 0;
}

/* The name of the volume with id 'id' among vi[0..n), or NULL (none, or deleted). */
static const char *
parent_name(const struct dio_tpool_vol_info *vi, size_t n, uint32_t id)
{
	for (size_t i = 0; id && i < n; i++)
		if (vi[i].id == id)
			return vi[i].name;
	return NULL;
}

static int
cmd_volume(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct dio_tpool *p;
	uint64_t size;
	int ret = 0;

	if (strcmp(sub, "create") == 0 && argc == 5) {
		if (!parse_size(argv[4], &size)) {
			usage();
			return EXIT_USAGE;
		}
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_create(p, argv[3], size);
	} else if (strcmp(sub, "resize") == 0 && argc == 5) {
		if (!parse_size(argv[4], &size)) {
			usage();
			return EXIT_USAGE;
		}
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_resize(p, argv[3], size);
	} else if (strcmp(sub, "snapshot") == 0 && argc == 5) {
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_snapshot(p, argv[3], argv[4]);
	} else if (strcmp(sub, "clone") == 0 && argc == 5) {
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_clone(p, argv[3], argv[4]);
	} else if (strcmp(sub, "revert") == 0 && argc == 5) {
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_revert(p, argv[3], argv[4]);
		if (ret == -EINVAL)
			fprintf(stderr, "dionbd-pool: revert: %s is not a snapshot of %s (only a "
				"read-only snapshot taken of the volume itself)\n", argv[4], argv[3]);
		else if (ret == -EBUSY)
			fprintf(stderr, "dionbd-pool: revert: %s is open (served)\n", argv[3]);
		else if (ret == -EROFS)
			fprintf(stderr, "dionbd-pool: revert: %s is a snapshot (read-only), or the "
				"pool is read-only\n", argv[3]);
	} else if (strcmp(sub, "delete") == 0 && argc == 4) {
		p = open_or_die(argv[2], false);
		ret = dio_tpool_volume_delete(p, argv[3]);
	} else if (strcmp(sub, "list") == 0 && (argc == 3 || argc == 4)) {
		bool json = argc == 4 && strcmp(argv[2], "--json") == 0;
		struct dio_tpool_vol_info *vi;
		struct dio_tpool_info info;
		size_t n;

		if (argc == 4 && !json) {
			usage();
			return EXIT_USAGE;
		}
		p = open_or_die(argv[argc - 1], true);
		dio_tpool_get_info(p, &info);
		ret = dio_tpool_volume_list(p, &vi, &n);
		if (ret == 0 && json) {
			json_t *a = json_array();

			for (size_t i = 0; a && i < n; i++) {
				const char *parent = parent_name(vi, n, vi[i].parent);

				json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:o, s:I, s:b}",
					"name", vi[i].name, "id", (json_int_t)vi[i].id,
					"size", (json_int_t)vi[i].size,
					"mapped", (json_int_t)(vi[i].mapped * info.chunk_size),
					"parent", parent ? json_string(parent) : json_null(),
					"parent_id", (json_int_t)vi[i].parent,
					"readonly", (int)vi[i].readonly));
			}
			ret = json_print(a);
		} else if (ret == 0) {
			printf("%-24s %6s %16s %16s  %-8s %s\n", "NAME", "ID", "SIZE", "MAPPED", "TYPE",
			       "PARENT");
			for (size_t i = 0; i < n; i++) {
				const char *parent = parent_name(vi, n, vi[i].parent);

				printf("%-24s %6u %16" PRIu64 " %16" PRIu64 "  %-8s %s\n", vi[i].name,
				       vi[i].id, vi[i].size, vi[i].mapped * info.chunk_size,
				       vi[i].readonly ? "snapshot" : vi[i].parent ? "clone" : "volume",
				       parent ? parent : vi[i].parent ? "(deleted)" : "-");
			}
		}
		if (ret == 0)
			free(vi);
	} else {
		usage();
		return EXIT_USAGE;
	}
	if (ret < 0)
		fprintf(stderr, "dionbd-pool: volume %s: %s\n", sub, strerror(-ret));
	dio_tpool_close(p);
	return ret < 0 ? 1 : 0;
}

/* diff: the changed runs, as a table or JSON array. */
struct diff_out {
	json_t *a;		/* --json, else NULL */
	uint64_t runs, bytes;
	bool header;		/* the table's header is out */
};

/* The table's header, once, before its first row (none before an error). */
static void
diff_header(struct diff_out *d)
{
	if (!d->header)
		printf("%16s %16s\n", "OFFSET", "LENGTH");
	d->header = true;
}

static int
diff_row(void *priv, uint64_t off, uint64_t len, bool changed)
{
	struct diff_out *d = priv;

	if (!changed)
		return 0;
	d->runs++;
	d->bytes += len;
	if (d->a)
		return json_array_append_new(d->a, json_pack("{s:I, s:I}", "offset", (json_int_t)off,
						     "length", (json_int_t)len)) < 0 ? -ENOMEM : 0;
	diff_header(d);
	printf("%16" PRIu64 " %16" PRIu64 "\n", off, len);
	return 0;
}

static int
cmd_diff(int argc, char **argv)
{
	bool json = argc == 5 && strcmp(argv[1], "--json") == 0;
	struct diff_out d = { 0 };
	struct dio_tpool *p;
	char **a = argv + 1 + json;
	int ret;

	if (argc != 4 && !json) {
		usage();
		return EXIT_USAGE;
	}
	p = open_or_die(a[0], true);
	if (json)
		d.a = json_array();
	ret = !json || d.a ? dio_tpool_volume_diff(p, a[1], a[2], 0, UINT64_MAX, diff_row, &d)
			  : -ENOMEM;
	dio_tpool_close(p);
	if (ret < 0) {
		json_decref(d.a);
		fprintf(stderr, "dionbd-pool: diff %s %s: %s\n", a[1], a[2],
			ret == -ENOENT ? "no such volume" : strerror(-ret));
		return 1;
	}
	if (json)
		return json_print(d.a) < 0 ? 1 : 0;
	diff_header(&d);
	fprintf(stderr, "%" PRIu64 " bytes changed in %" PRIu64 " extents\n", d.bytes, d.runs);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cmd;

	/*
	 * Before the command, as it holds for any command that frees chunks
	 * (delete, resize, revert, repair): a pool file the daemon serves with
	 * --pool-discard off stays allocated when the tool frees too.
	 */
	if (argc > 1 && strcmp(argv[1], "--no-discard") == 0) {
		no_discard = true;
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	cmd = argc > 1 ? argv[1] : "";
	dio_set_log(log_stderr);
	if (strcmp(cmd, "create") == 0)
		return cmd_create(argc - 1, argv + 1);
	if (strcmp(cmd, "info") == 0 && argc == 3)
		return cmd_info(argv[2]);
	if (strcmp(cmd, "check") == 0 && argc == 3)
		return cmd_check(argv[2]);
	if (strcmp(cmd, "repair") == 0 && argc == 3)
		return cmd_repair(argv[2]);
	if (strcmp(cmd, "dump") == 0)
		return cmd_dump(argc - 1, argv + 1);
	if (strcmp(cmd, "volume") == 0)
		return cmd_volume(argc - 1, argv + 1);
	/* the names: as 'volume snapshot|clone|revert' (argv[1] is the subcommand) */
	if (strcmp(cmd, "snapshot") == 0 || strcmp(cmd, "clone") == 0 || strcmp(cmd, "revert") == 0)
		return cmd_volume(argc, argv);
	if (strcmp(cmd, "diff") == 0)
		return cmd_diff(argc - 1, argv + 1);
	usage();
	return EXIT_USAGE;
}
