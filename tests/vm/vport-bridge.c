/* SPDX-License-Identifier: MIT */
/*
 * vport-bridge LISTEN_PATH PORT...: inside the test guest, give
 * `nbd-client -unix LISTEN_PATH` a Unix socket whose far end is a
 * virtio-serial port (/dev/vportNpM). The guest has no network card: on the
 * host, each port is a QEMU socket chardev connected to the NBD server's
 * Unix socket, so one port is one byte stream is one NBD connection.
 *
 * Each accepted connection is relayed, by child processes, to the first
 * PORT not already in use; when every PORT is busy the next accept waits for
 * one to be freed. A child exits when either side reaches EOF or an error
 * (the kernel's NBD client closing its socket, or the host side of the port
 * going away: virtio_console's read() gives 0 once the host disconnected),
 * so a client that reconnects gets the port again.
 *
 * Built static (glibc) so it runs in the guest's initramfs unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PORTS 16

static void
die(const char *what)
{
	fprintf(stderr, "vport-bridge: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Copy @in to @out until EOF or an error on either. */
static void
copy(int in, int out)
{
	static char buf[256 * 1024];
	ssize_t n, off, w;

	for (;;) {
		n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		for (off = 0; off < n; off += w) {
			w = write(out, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				w = 0;
			else if (w < 0)
				return;
		}
	}
}

/*
 * Relay @conn and the port @path both ways until one side ends; never
 * returns. One process a direction, with blocking I/O: a single loop that
 * blocks writing requests to the port while the server waits for its
 * replies to be read (it stops reading a client that has too many in
 * flight) would deadlock.
 */
static void
relay(int conn, const char *path)
{
	int port = open(path, O_RDWR | O_CLOEXEC);
	pid_t pid;

	if (port < 0)
		die(path);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		copy(port, conn);
		/* The host went away: the client's read() gives EOF too. */
		shutdown(conn, SHUT_RDWR);
		exit(0);
	}
	copy(conn, port);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	fprintf(stderr, "vport-bridge: %s: connection ended\n", path);
	exit(0);
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	pid_t owner[MAX_PORTS] = {0};
	int nports = argc - 2;
	int lfd, i;

	if (argc < 3 || nports > MAX_PORTS || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: vport-bridge LISTEN_PATH PORT... (at most %d)\n",
			MAX_PORTS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, MAX_PORTS) < 0)
		die(argv[1]);
	for (;;) {
		int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pid_t pid;

		if (conn < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		for (;;) {
			/* Free the ports of children that ended. */
			while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
				for (i = 0; i < nports; i++)
					if (owner[i] == pid)
						owner[i] = 0;
			for (i = 0; i < nports && owner[i]; i++)
				;
			if (i < nports)
				break;
			pid = waitpid(-1, NULL, 0);
			for (i = 0; i < nports; i++)
				if (owner[i] == pid)
					owner[i] = 0;
		}
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			close(lfd);
			relay(conn, argv[2 + i]);
		}
		owner[i] = pid;
		close(conn);
	}
}
