/* SPDX-License-Identifier: MIT */
/* librbd and librados through dlopen: see rbd-lib.h. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rbd-lib.h"

/* The sonames of Debian 12's librbd1 and librados2. */
#define RBD_SONAME	"librbd.so.1"
#define RADOS_SONAME	"librados.so.2"

static pthread_once_t rbd_lib_once = PTHREAD_ONCE_INIT;
struct rbd_lib rbd_lib;
static bool rbd_lib_ok;
static char rbd_lib_err[512];

/* fn from the library its prefix names, or NULL with why in rbd_lib_err. */
static void *
rbd_lib_sym(void *rados, void *rbd, const char *fn)
{
	bool from_rados = strncmp(fn, "rados_", 6) == 0;
	void *p = dlsym(from_rados ? rados : rbd, fn);

	if (!p)
		snprintf(rbd_lib_err, sizeof(rbd_lib_err), "%s has no %s: %s",
			 from_rados ? RADOS_SONAME : RBD_SONAME, fn, dlerror());
	return p;
}

static void
rbd_lib_init(void)
{
	void *rados, *rbd;

	/* RTLD_NODELETE: Ceph's libraries do not expect to be unloaded. */
	rados = dlopen(RADOS_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	rbd = rados ? dlopen(RBD_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) : NULL;
	if (!rbd) {
		snprintf(rbd_lib_err, sizeof(rbd_lib_err),
			 "cannot load Ceph's client libraries (%s): install librbd1 and librados2",
			 dlerror());
		return;
	}
#define RBD_LIB_RESOLVE(fn)                                                        \
	if (!(rbd_lib.fn = (__typeof__(fn) *)rbd_lib_sym(rados, rbd, #fn)))           \
		return;
	RBD_LIB_FUNCS(RBD_LIB_RESOLVE)
#undef RBD_LIB_RESOLVE
	rbd_lib_ok = true;
}

int
rbd_lib_load(char *err, size_t errlen)
{
	pthread_once(&rbd_lib_once, rbd_lib_init);
	if (rbd_lib_ok)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "%s", rbd_lib_err);
	return -ENOTSUP;
}
