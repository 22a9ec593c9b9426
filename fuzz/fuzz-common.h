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
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

/* Seconds a connection may go without closing before we call it a hang
 * (below the -timeout=20 of scripts/fuzz.sh, so that our report comes first). */
#define FUZZ_HANG_SECS 15

/* Fires every second so that a blocking poll returns to the watchdog. */
static void
fuzz_tick(evutil_socket_t fd, short what, void *arg)
{
}

/*
 * The server has not closed the connection in FUZZ_HANG_SECS: print what
 * each connection and libdio are waiting for, then abort (libFuzzer keeps
 * the input). A bare "timeout" with a stack in epoll_wait says nothing.
 */
static void
fuzz_report_hang(void)
{
	fprintf(stderr, "fuzz: HANG: the server kept the connection %d s; nconns %u, libdio in flight %u\n",
		FUZZ_HANG_SECS, fuzz_r.nconns, dio_ctx_inflight(fuzz_r.ctx));
	for (struct conn *c = fuzz_r.conns; c; c = c->next)
		fprintf(stderr,
			"fuzz: conn %s: state %d dead %d eof_in %d stop_parse %d closing %d busy %u "
			"nreqs %u cur %p in %zu out %zu sendq %p rev_on %d wev_on %d want_write %d "
			"ra %p inflight_bytes %llu\n",
			c->peer, (int)c->state, c->dead, c->eof_in, c->stop_parse, c->closing,
			c->busy, c->nreqs, (void *)c->cur, conn_in_avail(c),
			c->out.len - c->out.off, (void *)c->sendq, c->rev_on, c->wev_on,
			c->want_write, (void *)c->ra, (unsigned long long)c->inflight_bytes);
	abort();
}

/*
 * Serve one connection whose client sends pre[0..npre) then data[0..n),
 * then half-closes; read everything the server sends; return once the
 * server closed the connection and freed it. A server that never closes
 * is a hang: fuzz_report_hang() says where it stands.
 */
static void
fuzz_serve(const uint8_t *pre, size_t npre, const uint8_t *data, size_t n)
{
	static struct event *tick;
	struct timeval sec = { .tv_sec = 1 };
	uint8_t sink[65536];
	size_t off = 0, total = npre + n;
	bool wr_open = true, closed = false;
	time_t start = time(NULL);
	int sv[2];

	if (!tick) {
		tick = event_new(fuzz_r.base, -1, EV_PERSIST, fuzz_tick, NULL);
		if (!tick || event_add(tick, &sec) < 0)
			abort();
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (reactor_serve_fd(&fuzz_r, sv[0]) < 0)
		abort();
	for (;;) {
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
		for (;;) {
			ssize_t got = recv(sv[1], sink, sizeof(sink), 0);

			if (got > 0)
				continue;
			/*
			 * 0 is the server's close; so is ECONNRESET, which a Unix
			 * socket reports once when the server closed with input
			 * it never read (a protocol error mid-stream).
			 */
			if (got == 0 || (errno != EAGAIN && errno != EINTR))
				closed = true;
			break;
		}
		/* Closed and freed: nothing of this connection is left to wait for. */
		if (closed && !fuzz_r.nconns)
			break;
		if (time(NULL) - start > FUZZ_HANG_SECS)
			fuzz_report_hang();
		reactor_poll(&fuzz_r, true);
	}
	close(sv[1]);
}

#endif /* DIONBD_FUZZ_COMMON_H */
