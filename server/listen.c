/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets: TCP (IPv4 and IPv6), a Unix socket, or the sockets
 * systemd passes in (socket activation, through libsystemd's
 * sd_listen_fds(), which also checks LISTEN_PID and sets FD_CLOEXEC).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "server.h"

#define LISTEN_BACKLOG	1024

/* Append a listening fd (closed on failure). 0 or -1. */
static int
listen_push(struct listener **l, size_t *n, int fd, bool is_unix)
{
	struct listener *nl = realloc(*l, (*n + 1) * sizeof(**l));

	if (!nl) {
		close(fd);
		return -1;
	}
	nl[*n] = (struct listener){ .fd = fd, .is_unix = is_unix };
	*l = nl;
	(*n)++;
	return 0;
}

/* fds passed by systemd (or libnbd's socket activation): number taken, or -1. */
static int
listen_activated(struct listener **l, size_t *n)
{
	/* 1: unset LISTEN_* so children (none today) do not take the sockets */
	int nfds = sd_listen_fds(1);

	if (nfds < 0) {
		log_err("socket activation: %s", strerror(-nfds));
		return -1;
	}
	if (nfds == 0)
		return 0;
	if (nfds > 64) {
		log_err("socket activation: %d sockets is not a sane number", nfds);
		return -1;
	}
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + nfds; fd++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fl;

		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			log_err("socket activation: fd %d: %s", fd, strerror(errno));
			return -1;
		}
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			log_err("socket activation: fd %d: %s", fd, strerror(errno));
			return -1;
		}
		if (listen_push(l, n, fd, ss.ss_family == AF_UNIX) < 0)
			return -1;
	}
	log_info("socket activation: %d socket(s)", nfds);
	return nfds;
}

/* Bind and listen on a Unix socket. 0 or -1 (logged). */
static int
listen_unix(const char *path, struct listener **l, size_t *n)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_err("unix socket path too long (max %zu bytes): %s",
			sizeof(sun.sun_path) - 1, path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	/* A stale socket from an earlier run would make bind fail; other files are kept. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto err;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		goto err_close;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto err_close;
	log_info("listening on unix socket %s", path);
	return listen_push(l, n, fd, true);

err_close:
	close(fd);
err:
	log_err("unix socket %s: %s", path, strerror(errno));
	return -1;
}

/* Every address host (NULL: all) resolves to. Number bound, or -1. */
static int
listen_tcp(const char *host, const char *port, struct listener **l, size_t *n)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
	}, *res, *ai;
	int bound = 0, ret, one = 1, last_errno = 0;

	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		log_err("%s port %s: %s", host ? host : "*", port, gai_strerror(ret));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char name[NI_MAXHOST];
		int fd;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Separate v4 and v6 sockets: a v6 socket must not claim the v4 port too. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, LISTEN_BACKLOG) < 0) {
			last_errno = errno;
			close(fd);
			continue;
		}
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, name, sizeof(name), NULL, 0,
				NI_NUMERICHOST))
			strcpy(name, "?");
		log_info("listening on %s port %s", name, port);
		if (listen_push(l, n, fd, false) < 0)
			break;
		bound++;
	}
	freeaddrinfo(res);
	if (!bound) {
		log_err("cannot listen on %s port %s: %s", host ? host : "*", port,
			strerror(last_errno ? last_errno : EADDRNOTAVAIL));
		return -1;
	}
	return bound;
}

int
listen_open(const struct server_cfg *cfg, struct listener **out, size_t *n, bool *activated)
{
	struct listener *l = NULL;
	const char *port = cfg->port ? cfg->port : NBDP_DEFAULT_PORT;
	int ret;

	*n = 0;
	*activated = false;
	ret = listen_activated(&l, n);
	if (ret < 0)
		goto err;
	if (ret > 0) {
		*activated = true;
		*out = l;
		return 0;
	}
	if (cfg->unix_path && listen_unix(cfg->unix_path, &l, n) < 0)
		goto err;
	if (cfg->tcp) {
		if (!cfg->nbinds) {
			if (listen_tcp(NULL, port, &l, n) < 0)
				goto err;
		}
		for (size_t i = 0; i < cfg->nbinds; i++)
			if (listen_tcp(cfg->binds[i], port, &l, n) < 0)
				goto err;
	}
	if (!*n) {
		log_err("nothing to listen on");
		goto err;
	}
	*out = l;
	return 0;

err:
	listen_close(cfg, l, *n, false);
	*n = 0;
	return -1;
}

void
listen_close(const struct server_cfg *cfg, struct listener *l, size_t n, bool activated)
{
	bool ours = false;

	for (size_t i = 0; i < n; i++) {
		if (l[i].fd >= 0)
			close(l[i].fd);
		ours |= l[i].is_unix && !activated;
	}
	if (ours && cfg->unix_path)
		unlink(cfg->unix_path);
	free(l);
}
