/* SPDX-License-Identifier: MIT */
/* Engine selection: io_uring when the kernel lets us, psync otherwise. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "dio/dio.h"

int
dio_engine_create(const struct dio_engine_opts *opts, struct dio_engine **out)
{
	struct dio_engine_opts def = { 0 };
	int ret;

	if (!opts)
		opts = &def;
	switch (opts->kind) {
	case DIO_ENGINE_URING:
		return dio_engine_uring_create(opts, out);
	case DIO_ENGINE_PSYNC:
		return dio_engine_psync_create(opts, out);
	case DIO_ENGINE_AUTO:
		ret = dio_engine_uring_create(opts, out);
		if (ret == 0)
			return 0;
		/* ENOSYS: no io_uring; EPERM: io_uring_disabled or seccomp */
		dio_log(DIO_LOG_WARN, "io_uring unavailable (%s), using the psync engine",
			strerror(-ret));
		return dio_engine_psync_create(opts, out);
	}
	return -EINVAL;
}

void
dio_engine_destroy(struct dio_engine *e)
{
	if (e)
		e->ops->destroy(e);
}

const char *
dio_engine_name(const struct dio_engine *e)
{
	return e->ops->name;
}
