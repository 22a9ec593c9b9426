/* SPDX-License-Identifier: MIT */
/*
 * dionbd-pool: administer a thin pool (POOL.md "Tools").
 *
 *   dionbd-pool create [--chunk-size N] [--size N] [--journal-blocks N] POOL
 *   dionbd-pool info POOL
 *   dionbd-pool check POOL              exit 0 clean, 1 problems, 2 usage
 *   dionbd-pool volume create POOL NAME SIZE
 *   dionbd-pool volume list [--json] POOL
 *   dionbd-pool volume delete POOL NAME
 *
 * Sizes take K, M, G, T suffixes (powers of 1024).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dio/dio.h"
#include "dio/tpool.h"

#define EXIT_USAGE 2

static void
usage(void)
{
	fprintf(stderr,
		"usage: dionbd-pool create [--chunk-size N] [--size N] [--journal-blocks N] POOL\n"
		"       dionbd-pool info POOL\n"
		"       dionbd-pool check POOL\n"
		"       dionbd-pool volume create POOL NAME SIZE\n"
		"       dionbd-pool volume list [--json] POOL\n"
		"       dionbd-pool volume delete POOL NAME\n");
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

static void
log_stderr(int level, const char *msg)
{
	if (level <= DIO_LOG_WARN)
		fprintf(stderr, "dionbd-pool: %s\n", msg);
}

static char errbuf[512];

static struct dio_tpool *
open_or_die(const char *path, bool readonly)
{
	struct dio_tpool_opts o = { .readonly = readonly, .errbuf = errbuf,
				    .errlen = sizeof(errbuf) };
	struct dio_tpool *p;

	if (dio_tpool_open(path, &o, &p) < 0)
		exit(1);	/* the reason went to the log */
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
	struct dio_tpool_opts o = { .errbuf = errbuf, .errlen = sizeof(errbuf) };
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

static int
cmd_info(const char *path)
{
	struct dio_tpool *p = open_or_die(path, true);
	struct dio_tpool_info i;
	char uuid[40];

	dio_tpool_get_info(p, &i);
	for (int k = 0; k < 16; k++)
		sprintf(uuid + 2 * k, "%02x", i.uuid[k]);
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

	printf("%s: %s\n", tag[sev], msg);
}

static int
cmd_check(const char *path)
{
	struct dio_tpool_check_result res;
	int ret = dio_tpool_check(path, NULL, check_report, NULL, &res);

	if (ret < 0) {
		fprintf(stderr, "dionbd-pool: %s: %s\n", path, strerror(-ret));
		return 1;
	}
	printf("%u problems, %u leaked chunks\n", res.problems, res.leaks);
	return res.problems ? 1 : 0;	/* leaks are reported, not fatal */
}

/* name as a JSON string. */
static void
json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
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
			printf("[");
			for (size_t i = 0; i < n; i++) {
				printf("%s{\"name\":", i ? "," : "");
				json_str(vi[i].name);
				printf(",\"id\":%u,\"size\":%" PRIu64 ",\"mapped\":%" PRIu64 "}",
				       vi[i].id, vi[i].size, vi[i].mapped * info.chunk_size);
			}
			printf("]\n");
		} else if (ret == 0) {
			printf("%-24s %6s %16s %16s\n", "NAME", "ID", "SIZE", "MAPPED");
			for (size_t i = 0; i < n; i++)
				printf("%-24s %6u %16" PRIu64 " %16" PRIu64 "\n", vi[i].name, vi[i].id,
				       vi[i].size, vi[i].mapped * info.chunk_size);
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

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	dio_set_log(log_stderr);
	if (strcmp(cmd, "create") == 0)
		return cmd_create(argc - 1, argv + 1);
	if (strcmp(cmd, "info") == 0 && argc == 3)
		return cmd_info(argv[2]);
	if (strcmp(cmd, "check") == 0 && argc == 3)
		return cmd_check(argv[2]);
	if (strcmp(cmd, "volume") == 0)
		return cmd_volume(argc - 1, argv + 1);
	usage();
	return EXIT_USAGE;
}
