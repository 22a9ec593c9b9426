/* SPDX-License-Identifier: MIT */
/* The logging hook: libdio never prints, the host decides where lines go. */
#include <stdarg.h>
#include <stdio.h>

#include "dio/dio.h"

static dio_log_fn dio_log_hook;

void
dio_set_log(dio_log_fn fn)
{
	dio_log_hook = fn;
}

void
dio_log(int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!dio_log_hook)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dio_log_hook(level, msg);
}
