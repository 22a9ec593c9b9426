/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a Unix socket on the main thread's event loop,
 * beside the accepting. Each line a client sends is one JSON-RPC request
 * (control-rpc.c), answered with one line. Only a peer with the daemon's
 * uid, or root, may talk to it (SO_PEERCRED); the socket itself is created
 * mode 0600.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* A request line longer than this is refused (and the client dropped). */
#define CTL_MAX_LINE (64 * 1024)

/* ---- the socket ---- */

/* A connected dionbdctl (or script), until it closes. */
struct ctl_client {
	struct control *ctl;
	struct bufferevent *bev;
	struct ctl_client *prev, *next;
};

static void
ctl_client_free(struct ctl_client *cl)
{
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		cl->ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Lines from a client: answer each. */
static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cl = arg;
	struct control *ctl = cl->ctl;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		char *out = control_handle(ctl, line, len);

		free(line);
		if (!out) {
			ctl_client_free(cl);
			return;
		}
		bufferevent_write(bev, out, strlen(out));
		bufferevent_write(bev, "\n", 1);
		free(out);
	}
	if (evbuffer_get_length(in) > CTL_MAX_LINE) {
		static const char msg[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":"
					  "\"request line longer than 65536 bytes\"},\"id\":null}\n";

		log_warn("control: a request line over %d bytes: dropping the client",
			 CTL_MAX_LINE);
		evbuffer_drain(in, evbuffer_get_length(in));
		bufferevent_write(bev, msg, sizeof(msg) - 1);
		bufferevent_disable(bev, EV_READ);
	}
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		ctl_client_free(arg);
}

/* Whether the peer on fd is us (same uid) or root. */
static bool
ctl_peer_ok(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	return cr.uid == 0 || cr.uid == geteuid();
}

static void
ctl_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct control *ctl = arg;
	struct ctl_client *cl;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0)
		return;
	if (!ctl_peer_ok(cfd)) {
		log_warn("control: refused a peer whose uid is neither ours nor root");
		close(cfd);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (cl)
		cl->bev = bufferevent_socket_new(ctl->base, cfd, BEV_OPT_CLOSE_ON_FREE);
	if (!cl || !cl->bev) {
		free(cl);
		close(cfd);
		return;
	}
	cl->ctl = ctl;
	cl->next = ctl->clients;
	if (cl->next)
		cl->next->prev = cl;
	ctl->clients = cl;
	bufferevent_setcb(cl->bev, ctl_on_read, NULL, ctl_on_event, cl);
	bufferevent_enable(cl->bev, EV_READ);
}

int
control_open(struct control *ctl, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd;

	ctl->fd = -1;
	ctl->started = control_now_s();
	if (!path)
		return 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("control socket %s: path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_err("control socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	old = umask(0177);	/* mode 0600 from the start: no window for others */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		umask(old);
		log_err("control socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	ctl->ev = event_new(ctl->base, fd, EV_READ | EV_PERSIST, ctl_on_accept, ctl);
	if (!ctl->ev) {
		close(fd);
		unlink(path);
		return -1;
	}
	event_add(ctl->ev, NULL);
	ctl->fd = fd;
	ctl->path = path;
	log_info("control socket %s", path);
	return 0;
}

void
control_close(struct control *ctl)
{
	while (ctl->clients)
		ctl_client_free(ctl->clients);
	if (ctl->fd < 0)
		return;
	event_free(ctl->ev);
	close(ctl->fd);
	unlink(ctl->path);
	ctl->fd = -1;
}
