/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share: one reactor (psync engine: sanitizers
 * cannot see what the kernel writes into io_uring buffers) serving two
 * exports of a small sparse volume, and fuzz_serve(), which feeds bytes to a
 * fresh connection over a socketpair and runs the loop until the server has
 * closed it.
 */
#ifndef DIONBD_FUZZ_COMMON_H
#define DIONBD_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

static struct server_cfg fuzz_cfg;
static struct server fuzz_srv;
static struct reactor fuzz_r;

/*
 * Set up once: the volume lives in $DIO_FUZZ_DIR (default: the current
 * directory; it must support O_DIRECT, so not tmpfs).
 */
static void
fuzz_setup(void)
{
	static char path[4096];
	const char *dir = getenv("DIO_FUZZ_DIR");
	int fd;

	if (fuzz_srv.cfg)
		return;
	log_level = -1;		/* every input is a protocol error: keep quiet */
	snprintf(path, sizeof(path), "%s/fuzz-vol-%d.img", dir ? dir : ".", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		abort();
	}
	close(fd);
	config_init(&fuzz_cfg);
	fuzz_cfg.engine = DIO_ENGINE_PSYNC;
	fuzz_cfg.handshake_timeout = 1;
	if (config_add_export(&fuzz_cfg, "", path, "fuzz volume", false) < 0 ||
	    config_add_export(&fuzz_cfg, "ro", path, NULL, true) < 0 ||
	    exports_init(&fuzz_srv.exports) < 0 || exports_open(&fuzz_srv.exports, &fuzz_cfg) < 0) {
		fprintf(stderr, "fuzz: cannot open %s\n", path);
		abort();
	}
	/* The file stays open in libdio; its name is no longer needed. */
	unlink(path);
	fuzz_srv.cfg = &fuzz_cfg;
	if (reactor_init(&fuzz_r, &fuzz_srv, 0) < 0) {
		fprintf(stderr, "fuzz: reactor_init failed\n");
		abort();
	}
}

/*
 * Serve one connection whose client sends pre[0..npre) then data[0..n),
 * then half-closes; read everything the server sends; return once the
 * server closed the connection. A server that never closes is a hang the
 * fuzzer's -timeout reports.
 */
static void
fuzz_serve(const uint8_t *pre, size_t npre, const uint8_t *data, size_t n)
{
	uint8_t sink[65536];
	size_t off = 0, total = npre + n;
	bool wr_open = true;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (reactor_serve_fd(&fuzz_r, sv[0]) < 0)
		abort();
	for (;;) {
		ssize_t got;

		while (wr_open && off < total) {
			const uint8_t *p = off < npre ? pre + off : data + (off - npre);
			size_t len = off < npre ? npre - off : total - off;
			ssize_t w = send(sv[1], p, len, MSG_NOSIGNAL);

			if (w <= 0) {
				if (w < 0 && errno != EAGAIN)
					wr_open = false;	/* the server closed */
				break;
			}
			off += (size_t)w;
		}
		if (wr_open && off == total) {
			shutdown(sv[1], SHUT_WR);
			wr_open = false;
		}
		while ((got = recv(sv[1], sink, sizeof(sink), 0)) > 0)
			;
		if (got == 0 && !fuzz_r.nconns)
			break;
		if (!reactor_poll(&fuzz_r, true) && got == 0)
			break;
	}
	/* Let completions owed to the closed connection arrive. */
	while (fuzz_r.nconns)
		reactor_poll(&fuzz_r, true);
	close(sv[1]);
}

#endif /* DIONBD_FUZZ_COMMON_H */
