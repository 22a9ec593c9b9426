/* SPDX-License-Identifier: MIT */
/*
 * dionbd: the command line, the daemon (fork, pid file, syslog), signals,
 * the accepting loop on the main thread, and the reactors it feeds.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "server.h"

#ifndef DIONBD_VERSION
#define DIONBD_VERSION "0.1.0"
#endif

struct main_state {
	struct server_cfg cfg;
	struct server srv;
	struct event_base *base;
	struct listener *listeners;
	size_t nlisteners;
	bool activated;
	struct reactor *reactors;
	unsigned int nreactors, next;
	struct event *accept_pause;
	struct control ctl;
	struct metrics *metrics;	/* NULL: no metrics page */
	bool stopping;
};

/* The --help text: our own options, then settings.c's. */
static void
usage(FILE *f)
{
	fprintf(f,
		"Usage: dionbd [OPTIONS] [FILE]\n"
		"Serve files and block devices over NBD.\n\n"
		"  FILE                         serve FILE as the default export (\"\")\n"
		"  -e, --export NAME=PATH[,readonly][,allow=ID:ID...][,description=TEXT]\n"
		"                               a named export (repeatable); allow= lists the\n"
		"                               TLS identities (certificate CN or DN, PSK\n"
		"                               identity) that may open it; PATH rbd:POOL/IMAGE\n"
		"                               [@SNAP] serves a Ceph RBD image, with rbd-conf=,\n"
		"                               rbd-id=, rbd-keyring=, rbd-cache=, rbd-timeout=,\n"
		"                               rbd-takeover=; cache=none|read|writeback: the\n"
		"                               block cache (--cache-size) of its volume, shared\n"
		"                               by all exports of it (default none: direct I/O)\n"
		"  -c, --config FILE            exports and settings from a config file\n");
	settings_usage(f);
	fprintf(f,
		"      --version                print the version\n"
		"  -h, --help                   this help\n\n"
		"Every option from -U to -v is also a key of the config file's [server]\n"
		"section, with the same values: --poll-us 0 is poll-us = 0. Options\n"
		"without a value take =on or =off as well (--readonly=off).\n");
}

/*
 * systemd's service notification (Type=notify): one "VAR=value" line per
 * call, e.g. main_notify("READY=1"). Without NOTIFY_SOCKET sd_notify() does
 * nothing, so this costs nothing outside systemd.
 */
static void main_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
main_notify(const char *fmt, ...)
{
	va_list ap;
	char *state;
	int ret;

	va_start(ap, fmt);
	ret = vasprintf(&state, fmt, ap);
	va_end(ap);
	if (ret < 0)
		return;
	ret = sd_notify(0, state);
	if (ret < 0)
		log_debug("sd_notify %s: %s", state, strerror(-ret));
	free(state);
}

/*
 * Listeners up, reactors running: READY=1, and a STATUS= that says where,
 * e.g. "serving 2 exports on unix:/run/dionbd/dionbd.sock, [::]:10809 with
 * 4 reactors".
 */
static void
main_notify_ready(const struct main_state *m)
{
	char where[512];
	size_t len = 0;

	where[0] = 0;
	for (size_t i = 0; i < m->nlisteners && len < sizeof(where); i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char host[NI_MAXHOST], port[NI_MAXSERV];
		const char *sep = len ? ", " : "";
		int n;

		if (getsockname(m->listeners[i].fd, (struct sockaddr *)&ss, &sl) < 0)
			continue;
		if (ss.ss_family == AF_UNIX)
			n = snprintf(where + len, sizeof(where) - len, "%sunix:%s", sep,
				     ((struct sockaddr_un *)&ss)->sun_path);
		else if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
				     sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			n = snprintf(where + len, sizeof(where) - len,
				     ss.ss_family == AF_INET6 ? "%s[%s]:%s" : "%s%s:%s", sep,
				     host, port);
		else
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	main_notify("READY=1\nSTATUS=serving %zu export%s on %s with %u reactor%s",
		    m->cfg.nexports, m->cfg.nexports == 1 ? "" : "s", where, m->nreactors,
		    m->nreactors == 1 ? "" : "s");
}

/* Accepting and relaying: the main thread's whole job while serving. */
static void main_on_accept(evutil_socket_t fd, short what, void *arg);

/*
 * The CPUs this process may run on (taskset, a cpuset), else those
 * online: one reactor each by default. Two reactors confined to one core
 * take turns on it, and a second connection then ran at 0.79-0.84x of
 * one (bench/README.md, run-conns with --taskset-server 0).
 */
static unsigned int
main_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned int)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned int)n : 1;
}

/* Stop accepting for 100 ms (out of fds: let connections close first). */
static void
main_pause_accept(struct main_state *m)
{
	struct timeval tv = { .tv_usec = 100 * 1000 };

	for (size_t i = 0; i < m->nlisteners; i++)
		event_del(m->listeners[i].ev);
	evtimer_add(m->accept_pause, &tv);
}

/* The pause is over: accept again. */
static void
main_on_accept_pause(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;

	if (m->stopping)
		return;
	for (size_t i = 0; i < m->nlisteners; i++)
		event_add(m->listeners[i].ev, NULL);
}

/* Warn at most once a second: a flood of refused clients must not flood the log. */
static void
main_warn_limited(const char *msg)
{
	static time_t last;
	time_t now = time(NULL);

	if (now != last) {
		last = now;
		log_warn("%s", msg);
	}
}

/* Accept what is waiting and hand each client to the next reactor. */
static void
main_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;

	for (int i = 0; i < 64; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct reactor *r;

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Level-triggered: without a pause we would spin on the backlog. */
				main_warn_limited("accept: out of file descriptors or memory");
				main_pause_accept(m);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_warn("accept: %s", strerror(errno));
			}
			return;
		}
		if (atomic_load(&m->srv.nconns) >= m->cfg.max_conns) {
			stats_conn_refused(&m->srv, STATS_REFUSE_CAP);
			close(cfd);
			main_warn_limited("connection cap reached: refusing clients");
			continue;
		}
		atomic_fetch_add(&m->srv.nconns, 1);
		stats_conn_accepted(&m->srv);
		r = &m->reactors[m->next++ % m->nreactors];
		if (reactor_hand_off(r, cfd) < 0) {
			stats_conn_refused(&m->srv, STATS_REFUSE_NOMEM);
			atomic_fetch_sub(&m->srv.nconns, 1);
		}
	}
}

/* SIGTERM/SIGINT: stop accepting and stop the reactors gracefully. */
static void
main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;

	if (m->stopping) {
		log_warn("signal %d again while stopping", (int)sig);
		return;
	}
	log_info("signal %d: stopping", (int)sig);
	main_notify("STOPPING=1\nSTATUS=stopping (signal %d): finishing in-flight requests",
		    (int)sig);
	m->stopping = true;
	for (size_t i = 0; i < m->nlisteners; i++)
		event_del(m->listeners[i].ev);
	evtimer_del(m->accept_pause);
	for (unsigned int i = 0; i < m->nreactors; i++)
		reactor_stop(&m->reactors[i]);
	event_base_loopbreak(m->base);
}

/* SIGHUP: the config file again (reload.c). */
static void
main_on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;

	if (m->stopping)
		return;
	main_notify("RELOADING=1\nSTATUS=reloading %s", m->cfg.config_path ?
		    m->cfg.config_path : "(no config file)");
	reload_config(&m->ctl);
	main_notify_ready(m);
}

/* Raise the soft RLIMIT_NOFILE to the hard limit; cap connections to what fits. */
static void
main_raise_nofile(struct server_cfg *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Keep room for listeners, volumes, engines and eventfds. */
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_conns + 128) {
		unsigned int cap = rl.rlim_cur > 256 ? (unsigned int)rl.rlim_cur - 128 : 128;

		log_warn("RLIMIT_NOFILE is %llu: connection cap lowered to %u",
			 (unsigned long long)rl.rlim_cur, cap);
		cfg->max_conns = cap;
	}
}

/* An absolute copy of path: the daemon changes directory to /. */
static char *
main_abspath(const char *path)
{
	char cwd[4096], *s;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&s, "%s/%s", cwd, path) < 0)
		return NULL;
	return s;
}

/*
 * Fork into the background. The parent waits on a pipe until the child
 * says it serves (exit 0) or fails (exit 1), so scripts see the real outcome.
 * Returns the write end the child reports on.
 */
static int
main_daemonize(void)
{
	int pfd[2];
	pid_t pid;
	char c = 1;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		log_err("pipe: %s", strerror(errno));
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &c, 1) != 1)
			c = 1;
		_exit(c ? 1 : 0);
	}
	close(pfd[0]);
	setsid();
	if (chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
	umask(022);
	return pfd[1];
}

/* The child serves: release the parent and detach from the terminal. */
static void
main_detach(int ready_fd)
{
	char c = 0;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	log_use_syslog();
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (write(ready_fd, &c, 1) != 1)
		log_warn("cannot signal readiness to the parent");
	close(ready_fd);
}

/* Write our pid to path. 0 or -1 (logged). */
static int
main_write_pidfile(const char *path)
{
	FILE *f = fopen(path, "we");

	if (!f) {
		log_err("pid file %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0) {
		log_err("pid file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The options that are not settings; settings.c adds the others. */
enum { OPT_VERSION = 0x100 };

static const struct option main_options[] = {
	{ "export", required_argument, NULL, 'e' },
	{ "config", required_argument, NULL, 'c' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* A setting from the command line, applied after the config file. */
struct main_setting {
	const struct setting *s;
	const char *v;		/* optarg: NULL for -v, -r, ... */
};

/* Store one setting from the command line into cfg (NULL: only check v). 0 or -1 (logged). */
static int
main_set(struct server_cfg *cfg, const struct setting *s, const char *v)
{
	char accepts[128];
	int ret = cfg ? settings_set(cfg, s, v) : settings_check(s, v);

	if (ret == -EINVAL)
		log_err("--%s: '%s' is not %s", settings_name(s), v ? v : "",
			settings_accepts(s, accepts, sizeof(accepts)));
	else if (ret < 0)
		log_err("--%s: out of memory", settings_name(s));
	return ret < 0 ? -1 : 0;
}

/*
 * Build the configuration: the config file first, then the command line
 * on top of it (the command line wins). 0, 1 (exit 0: --help/--version), -1.
 */
static int
main_parse(struct server_cfg *cfg, int argc, char **argv)
{
	const char *config = NULL;
	const char **specs = NULL;
	struct main_setting *sets = NULL;
	struct option *longopts = NULL;
	char *shortopts = NULL;
	size_t nspecs = 0, nsets = 0, nfile;
	int opt, ret = -1;

	/* getopt prints its own messages before logging is set up: fine, they go to stderr. */
	log_init(0);
	if (settings_getopt(main_options, "e:c:h", &longopts, &shortopts) < 0) {
		log_err("out of memory");
		return -1;
	}
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const struct setting *s;

		switch (opt) {
		case 'e': {
			const char **p = realloc(specs, (nspecs + 1) * sizeof(*p));

			if (!p)
				goto out;
			p[nspecs++] = optarg;
			specs = p;
			break;
		}
		case 'c':
			config = optarg;
			break;
		case OPT_VERSION:
			printf("dionbd %s\n", DIONBD_VERSION);
			ret = 1;
			goto out;
		case 'h':
			usage(stdout);
			ret = 1;
			goto out;
		default: {
			struct main_setting *p;

			s = settings_from_opt(opt);
			if (!s) {
				usage(stderr);
				goto out;
			}
			/* a bad value is refused now, before the config file is read */
			if (main_set(NULL, s, optarg) < 0)
				goto out;
			p = realloc(sets, (nsets + 1) * sizeof(*p));
			if (!p)
				goto out;
			p[nsets++] = (struct main_setting){ s, optarg };
			sets = p;
			break;
		}
		}
	}
	if (argc - optind > 1) {
		log_err("one FILE at most (use -e NAME=PATH for more exports)");
		goto out;
	}
	if (config && config_load_file(cfg, config) < 0)
		goto out;
	/* SIGHUP reads it again, after the daemon changed directory to /. */
	if (config && !(cfg->config_path = main_abspath(config)))
		goto out;
	for (size_t i = 0; i < nsets; i++)
		if (main_set(cfg, sets[i].s, sets[i].v) < 0)
			goto out;
	/* Like qemu-nbd: a Unix socket alone means no TCP. */
	if (!cfg->unix_path)
		cfg->tcp = true;
	log_init((int)cfg->verbose);
	nfile = cfg->nexports;
	for (size_t i = 0; i < nspecs; i++)
		if (config_add_export_spec(cfg, specs[i]) < 0)
			goto out;
	if (optind < argc && config_add_export(cfg, "", argv[optind], NULL, false) < 0)
		goto out;
	for (size_t i = nfile; i < cfg->nexports; i++)
		cfg->exports[i].cli = true;
	if (!cfg->nexports) {
		log_err("nothing to serve: give a FILE, -e NAME=PATH or -c CONFIG (see --help)");
		goto out;
	}
	if (config_check_tls(cfg) < 0)
		goto out;
	settings_log(cfg);
	ret = 0;
out:
	free(specs);
	free(sets);
	free(longopts);
	free(shortopts);
	return ret;
}

int
main(int argc, char **argv)
{
	static struct main_state m;
	struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
	sigset_t block;
	int ready_fd = -1, exit_code = 1, ret;
	char *abs;

	config_init(&m.cfg);
	ret = main_parse(&m.cfg, argc, argv);
	if (ret)
		return ret > 0 ? 0 : 1;
	m.srv.cfg = &m.cfg;
	pthread_mutex_init(&m.srv.tls_lock, NULL);
	pthread_mutex_init(&m.srv.conns_lock, NULL);
	pollcheck_init(&m.srv.pollcheck);
	m.ctl.fd = -1;
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Hold SIGTERM/SIGINT pending from before the sockets exist until the
	 * loop's handlers are in place: a stop right after the socket appears
	 * is then a clean exit, not death by the default action. Reactor
	 * threads inherit the mask, so signals are only ever taken by main.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	main_raise_nofile(&m.cfg);

	for (size_t i = 0; i < 3; i++) {
		char **p = i == 2 ? &m.cfg.control_path : i ? &m.cfg.pidfile : &m.cfg.unix_path;

		if (!*p)
			continue;
		abs = main_abspath(*p);
		if (!abs)
			goto out_cfg;
		free(*p);
		*p = abs;
	}
	if (exports_init(&m.srv.exports) < 0)
		goto out_cfg;
	if (exports_open(&m.srv.exports, &m.cfg) < 0)
		goto out_exports;
	/* Before daemonizing: a bad key or certificate is an error on the terminal. */
	if (m.cfg.tls != TLS_OFF && tls_ctx_new(&m.cfg, &m.srv.tls) < 0)
		goto out_exports;
	if (listen_open(&m.cfg, &m.listeners, &m.nlisteners, &m.activated) < 0)
		goto out_exports;
	if (metrics_open(&m.cfg, &m.metrics) < 0)
		goto out_listen;
	/* Under socket activation our parent (systemd, libnbd) manages our lifetime. */
	if (m.activated)
		m.cfg.foreground = true;
	if (!m.cfg.foreground)
		ready_fd = main_daemonize();
	if (m.cfg.pidfile && main_write_pidfile(m.cfg.pidfile) < 0)
		goto out_listen;

	m.nreactors = m.cfg.threads ? m.cfg.threads : main_cpus();
	m.reactors = calloc(m.nreactors, sizeof(*m.reactors));
	if (!m.reactors)
		goto out_pid;
	for (unsigned int i = 0; i < m.nreactors; i++) {
		ret = reactor_start(&m.reactors[i], &m.srv, i);
		if (ret < 0) {
			log_err("cannot start reactor %u: %s", i, strerror(-ret));
			for (unsigned int j = 0; j < i; j++) {
				reactor_stop(&m.reactors[j]);
				reactor_join(&m.reactors[j]);
			}
			goto out_reactors;
		}
	}

	m.base = event_base_new();
	if (!m.base)
		goto out_stop;
	m.accept_pause = evtimer_new(m.base, main_on_accept_pause, &m);
	sig_term = evsignal_new(m.base, SIGTERM, main_on_signal, &m);
	sig_int = evsignal_new(m.base, SIGINT, main_on_signal, &m);
	sig_hup = evsignal_new(m.base, SIGHUP, main_on_hup, &m);
	if (!m.accept_pause || !sig_term || !sig_int || !sig_hup)
		goto out_stop;
	event_add(sig_term, NULL);
	event_add(sig_int, NULL);
	event_add(sig_hup, NULL);
	m.ctl.srv = &m.srv;
	m.ctl.base = m.base;
	m.ctl.reactors = m.reactors;
	m.ctl.nreactors = m.nreactors;
	m.ctl.buf_align = m.reactors[0].buf_align;
	if (control_open(&m.ctl, m.cfg.control_path) < 0)
		goto out_stop;
	for (size_t i = 0; i < m.nlisteners; i++) {
		m.listeners[i].ev = event_new(m.base, m.listeners[i].fd, EV_READ | EV_PERSIST,
					      main_on_accept, &m);
		if (!m.listeners[i].ev)
			goto out_stop;
		event_add(m.listeners[i].ev, NULL);
	}
	if (metrics_serve(m.metrics, m.base, &m.srv, m.reactors, m.nreactors) < 0)
		goto out_stop;
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	log_info("serving %zu export(s) with %u reactor(s)", m.cfg.nexports, m.nreactors);
	main_notify_ready(&m);	/* again after each SIGHUP (main_on_hup) */
	if (ready_fd >= 0) {
		main_detach(ready_fd);
		ready_fd = -1;
	}
	event_base_dispatch(m.base);
	exit_code = 0;

out_stop:
	control_close(&m.ctl);
	for (unsigned int i = 0; i < m.nreactors; i++)
		reactor_stop(&m.reactors[i]);
	for (unsigned int i = 0; i < m.nreactors; i++)
		reactor_join(&m.reactors[i]);
	log_info("stopped");
out_reactors:
	metrics_close(m.metrics);
	m.metrics = NULL;
	for (size_t i = 0; i < m.nlisteners; i++)
		if (m.listeners[i].ev)
			event_free(m.listeners[i].ev);
	if (sig_term)
		event_free(sig_term);
	if (sig_int)
		event_free(sig_int);
	if (sig_hup)
		event_free(sig_hup);
	if (m.accept_pause)
		event_free(m.accept_pause);
	if (m.base)
		event_base_free(m.base);
	free(m.reactors);
out_pid:
	if (m.cfg.pidfile)
		unlink(m.cfg.pidfile);
out_listen:
	metrics_close(m.metrics);
	listen_close(&m.cfg, m.listeners, m.nlisteners, m.activated);
out_exports:
	tls_ctx_free(m.srv.tls);
	exports_fini(&m.srv.exports);
	pollcheck_fini(&m.srv.pollcheck);
out_cfg:
	config_free(&m.cfg);
	if (ready_fd >= 0)
		close(ready_fd);
	return exit_code;
}
