/* SPDX-License-Identifier: MIT */
/*
 * server-liveness MODE SOCKET [ARGS]: raw NBD clients that stall, vanish
 * or never read (see server-raw.c for the protocol abuse), and checks that
 * dionbd drops or outlasts each of them, loses no data to them and serves
 * a well-behaved client meanwhile.
 *
 *   mid-payload SOCK     a client that disconnects inside a WRITE payload
 *   stall SOCK SECS      stalled requests against --request-timeout SECS
 *   no-read SOCK [PID]   a client that never reads its replies
 *   stuck SOCK N         N clients stuck in the handshake
 */
#include <signal.h>
#include <sys/resource.h>

#include "raw-socket.h"

/* ---- modes ---- */

/* Clients that vanish inside a WRITE payload write nothing. */
static int
mode_mid_payload(void)
{
	struct export_info ei;
	uint32_t cuts[] = { 0, 1, 511, 512, 4096, 65535, 65536, 500000, 1048575 };

	memset(iobuf, 0xee, MiB);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		int fd;

		step("disconnect inside a WRITE payload");
		fd = open_export("", i % 2, true, &ei);
		send_req(fd, CF_FUA, CMD_WRITE, 1, 8 * MiB, MiB);
		send_all(fd, iobuf, cuts[i]);
		if (i % 3 == 0) {
			shutdown(fd, SHUT_WR);
			expect_eof(fd, 10, NULL);
		}
		close(fd);
	}
	step("the range is untouched");
	{
		int fd = open_export("", true, true, &ei);

		expect(request(fd, &ei, 0, CMD_READ, 8 * MiB, MiB, iobuf) == 0, "READ");
		expect(all_zero(iobuf, MiB), "a partial WRITE landed");
		disconnect_raw(fd);
	}
	printf("server-liveness: mid-payload ok\n");
	return 0;
}

/* fd, stalled mid-request, is closed by the server after about secs (not before). */
static void
expect_dropped(int fd, int secs, bool probe_meanwhile)
{
	double t0 = now_s(), t;

	if (probe_meanwhile)
		mode_probe("");		/* others are served meanwhile */
	expect_eof(fd, secs + 10, NULL);
	t = now_s() - t0;
	expect(t > secs - 1.5, "dropped after %.1f s, before the %d s deadline", t, secs);
	close(fd);
}

/*
 * The request deadline (dionbd --request-timeout secs): a stalled WRITE
 * payload or half a header gets the client dropped after about secs; an
 * idle connection, and a request that arrives slowly but in time, do not.
 */
static int
mode_stall(int secs)
{
	struct export_info ei;
	int fd, idle;
	uint8_t hdr[28];

	memset(iobuf, 0x5a, MiB);
	idle = open_export("", true, true, &ei);

	step("a WRITE whose payload stops half way");
	fd = open_export("", true, true, &ei);
	send_req(fd, 0, CMD_WRITE, 1, 8 * MiB, MiB);
	xsend(fd, iobuf, MiB / 2);
	expect_dropped(fd, secs, true);

	step("half a request header");
	fd = open_export("", false, true, &ei);
	req_hdr(hdr, 0, CMD_READ, 2, 0, 4096);
	xsend(fd, hdr, 10);
	expect_dropped(fd, secs, false);

	step("a WRITE that arrives slowly but within the deadline");
	fd = open_export("", true, true, &ei);
	send_req(fd, 0, CMD_WRITE, 3, 16 * MiB, 4096);
	for (int i = 0; i < 4; i++) {
		usleep((useconds_t)(secs * 1000000 / 8));
		xsend(fd, iobuf + i * 1024, 1024);
	}
	expect(read_reply(fd, &ei, 3, 16 * MiB, iobuf, 4096, false) == 0, "slow WRITE");
	in_sync(fd, &ei, "after the slow WRITE");
	disconnect_raw(fd);

	step("a connection idle for longer than the deadline");
	expect(request(idle, &ei, 0, CMD_READ, 16 * MiB, 4096, iobuf + MiB) == 0,
	       "READ on the idle connection");
	expect(!memcmp(iobuf + MiB, iobuf, 4096), "the slow WRITE's data");
	step("the stalled WRITE left nothing");
	expect(request(idle, &ei, 0, CMD_READ, 8 * MiB, MiB, iobuf) == 0, "READ");
	expect(all_zero(iobuf, MiB), "part of the stalled WRITE landed");
	disconnect_raw(idle);
	printf("server-liveness: stall ok\n");
	return 0;
}

static long
rss_kib(long pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* A client that sends READs and never reads the replies cannot hog the server. */
static int
mode_no_read(long pid)
{
	struct export_info ei;
	uint8_t req[28 * 64];
	long rss0 = pid > 0 ? rss_kib(pid) : -1, rss1;
	uint64_t sent = 0, total = 100000;
	double stall = 0;
	int fd;

	step("flood READs, read nothing");
	fd = open_export("", true, true, &ei);
	for (int i = 0; i < 64; i++)
		req_hdr(req + 28 * i, 0, CMD_READ, (uint64_t)i + 1, (uint64_t)i * MiB, MiB);
	/* Send until the server stops taking requests for 2 s (or all went). */
	while (sent < total) {
		ssize_t n = send(fd, req, sizeof(req), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			/* Keep whole requests on the wire: finish a cut one. */
			if (n % 28) {
				xsend(fd, req + n, 28 - (size_t)(n % 28));
				n += 28 - n % 28;
			}
			sent += (uint64_t)n / 28;
			stall = 0;
			continue;
		}
		if (n < 0 && errno != EAGAIN)
			die("send: %s", strerror(errno));
		if (stall == 0)
			stall = now_s();
		else if (now_s() - stall > 2)
			break;
		usleep(10000);
	}
	expect(sent < total, "the server took all %" PRIu64 " READs (%" PRIu64 " GiB of replies)"
	       " from a client that reads nothing", total, total >> 10);
	fprintf(stderr, "server-liveness: the server stopped reading after %" PRIu64 " READs\n",
		sent);
	mode_probe("");
	step("memory");
	rss1 = pid > 0 ? rss_kib(pid) : -1;
	if (rss0 > 0 && rss1 > 0)
		expect(rss1 - rss0 < 512 * 1024, "the daemon grew by %ld MiB", (rss1 - rss0) >> 10);
	close(fd);
	mode_probe("");
	printf("server-liveness: no-read ok\n");
	return 0;
}

/* n clients stuck in the handshake do not lock out a real one. */
static int
mode_stuck(int n)
{
	int *fds = xmalloc(sizeof(int) * (size_t)n);
	struct rlimit rl;
	uint8_t b[16];
	double t;

	/* n sockets and then some. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	step("clients stuck in the handshake");
	for (int i = 0; i < n; i++) {
		fds[i] = sock_open();
		if (i % 3 == 1) {
			put32(b, FLAG_FIXED | FLAG_NOZEROES);
			xsend(fds[i], b, 4);
		} else if (i % 3 == 2) {
			put32(b, FLAG_FIXED | FLAG_NOZEROES);
			xsend(fds[i], b, 4);
			opt_hdr(b, OPT_GO, 100);
			xsend(fds[i], b, 12);
		}
	}
	t = now_s();
	mode_probe("");
	t = now_s() - t;
	expect(t < 5, "a real client waited %.1f s", t);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	mode_probe("");
	printf("server-liveness: %d stuck clients, a real one served in %.3f s\n", n, t);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode;

	test_name = "server-liveness";
	if (argc < 3) {
		fprintf(stderr, "usage: %s MODE SOCKET [ARGS]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mode = argv[1];
	sock_path = argv[2];
	iobuf = xmalloc(MAXPAY + 65536);
	if (!strcmp(mode, "mid-payload"))
		return mode_mid_payload();
	if (!strcmp(mode, "no-read"))
		return mode_no_read(argc > 3 ? atol(argv[3]) : 0);
	if (!strcmp(mode, "stuck"))
		return mode_stuck(argc > 3 ? atoi(argv[3]) : 300);
	if (!strcmp(mode, "stall"))
		return mode_stall(argc > 3 ? atoi(argv[3]) : 2);
	fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
	return 2;
}
