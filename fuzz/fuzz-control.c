/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the control socket's request parser and methods (control.c's
 * control_handle), one input = one request line, against a live export
 * table. The server is read-only here, so that a request the fuzzer finds
 * (export.add of some file, then export.resize) can never change a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct server_cfg cfg;
static struct server srv;
static struct control ctl;

static void
fuzz_control_setup(void)
{
	const char *dir = getenv("DIO_FUZZ_DIR");
	char path[4096];
	int fd;

	if (srv.cfg)
		return;
	log_level = -1;
	snprintf(path, sizeof(path), "%s/fuzz-ctl-%d.img", dir ? dir : ".", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		abort();
	}
	close(fd);
	config_init(&cfg);
	cfg.readonly = true;
	if (config_add_export(&cfg, "vol", path, "fuzz volume", false) < 0 ||
	    exports_init(&srv.exports) < 0 || exports_open(&srv.exports, &cfg) < 0) {
		fprintf(stderr, "fuzz: cannot open %s\n", path);
		abort();
	}
	unlink(path);
	pthread_mutex_init(&srv.tls_lock, NULL);
	pthread_mutex_init(&srv.conns_lock, NULL);
	srv.cfg = &cfg;
	ctl.srv = &srv;
	ctl.buf_align = 4096;
	ctl.fd = -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *out;

	fuzz_control_setup();
	out = control_handle(&ctl, (const char *)data, size);
	/* Every request gets an answer: out of memory is the only excuse. */
	if (!out)
		abort();
	free(out);
	/* Keep the table small and the original export in it. */
	{
		struct export **v;
		size_t n = exports_snapshot(&srv.exports, &v);

		for (size_t i = 0; i < n; i++)
			if (strcmp(v[i]->name, "vol"))
				manage_remove_export(&ctl, v[i]->name, 0);
		exports_snapshot_free(v, n);
	}
	return 0;
}
