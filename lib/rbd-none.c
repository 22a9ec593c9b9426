/* SPDX-License-Identifier: MIT */
/* The rbd backend when librbd was not there at build time: refuse clearly. */
#include <errno.h>
#include <stdio.h>

#include "dio/dio.h"
#include "dio/rbd.h"

bool
dio_rbd_supported(void)
{
	return false;
}

int
dio_rbd_open(const char *spec, const struct dio_rbd_opts *opts, struct dio_volume **out)
{
	(void)out;
	if (opts && opts->errbuf && opts->errlen)
		snprintf(opts->errbuf, opts->errlen,
			 "rbd:%s: this build has no Ceph RBD support (librbd-dev was missing "
			 "when it was built)", spec);
	return -ENOTSUP;
}
