/* SPDX-License-Identifier: MIT */
/* Logging: one line per message to stderr, or to syslog once detached. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "server.h"

int log_level = LOGL_WARN;
static bool log_syslog;

static const char *const log_names[] = { "error", "warning", "info", "debug", "trace" };

/* Map our levels to syslog priorities. */
static int
log_prio(int level)
{
	switch (level) {
	case LOGL_ERR:
		return LOG_ERR;
	case LOGL_WARN:
		return LOG_WARNING;
	case LOGL_INFO:
		return LOG_INFO;
	default:
		return LOG_DEBUG;
	}
}

/* Emit one line at level, if log_level lets it through. */
void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (level > log_level)
		return;
	if (level < 0)
		level = 0;
	if (level > LOGL_TRACE)
		level = LOGL_TRACE;
	if (log_syslog) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(log_prio(level), "%s", line);
		return;
	}
	/* One write(2) per line so lines from reactor threads never interleave. */
	n = snprintf(line, sizeof(line), "dionbd: %s: ", log_names[level]);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

/* libdio's hook: its levels are ours shifted by nothing (ERR..DEBUG). */
static void
log_from_dio(int level, const char *msg)
{
	log_msg(level, "libdio: %s", msg);
}

void
log_init(int verbosity)
{
	log_level = LOGL_WARN + verbosity;
	if (log_level > LOGL_TRACE)
		log_level = LOGL_TRACE;
	dio_set_log(log_from_dio);
}

void
log_use_syslog(void)
{
	openlog("dionbd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog = true;
}
