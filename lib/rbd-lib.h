/* SPDX-License-Identifier: MIT */
/*
 * librbd and librados, loaded with dlopen when the first rbd volume opens.
 * Linked in, Ceph's libraries ran their C++ static constructors in every
 * process that links libdio (the daemon, the plugin, dionbd-pool, every
 * test), serving rbd or not: about 0.1 s of CPU at each start, 0.8 s under
 * LeakSanitizer, and some tens of MiB mapped. Loaded on demand, only a
 * process that opens an rbd: volume pays, as with QEMU's block-rbd module.
 * The headers are still needed at build time (librbd-dev): the table's
 * types come from them.
 */
#ifndef DIO_RBD_LIB_H
#define DIO_RBD_LIB_H

#include <stddef.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

/* Every librados/librbd call lib/rbd.c makes. */
#define RBD_LIB_FUNCS(X)                                                       \
	X(rados_create) X(rados_conf_read_file) X(rados_conf_set)              \
	X(rados_connect) X(rados_shutdown) X(rados_ioctx_create)               \
	X(rados_ioctx_destroy)                                                 \
	X(rbd_open) X(rbd_open_read_only) X(rbd_close) X(rbd_stat)             \
	X(rbd_get_features) X(rbd_get_flags) X(rbd_diff_iterate2)              \
	X(rbd_set_image_notification) X(rbd_poll_io_events)                    \
	X(rbd_aio_create_completion) X(rbd_aio_release) X(rbd_aio_get_arg)     \
	X(rbd_aio_get_return_value) X(rbd_aio_read) X(rbd_aio_write)           \
	X(rbd_aio_write_zeroes) X(rbd_aio_discard) X(rbd_aio_flush)            \
	X(rbd_lock_acquire) X(rbd_lock_break) X(rbd_lock_get_owners)           \
	X(rbd_lock_get_owners_cleanup)

struct rbd_lib {
#define RBD_LIB_MEMBER(fn) __typeof__(fn) *fn;
	RBD_LIB_FUNCS(RBD_LIB_MEMBER)
#undef RBD_LIB_MEMBER
};

/* The table: valid once rbd_lib_load succeeded (every rbd volume's open calls it). */
extern struct rbd_lib rbd_lib;

/*
 * Load the libraries at the first call (once per process; never unloaded).
 * 0, or -ENOTSUP when they or one of the calls cannot be found, with why in
 * err (the same message at every later call).
 */
int rbd_lib_load(char *err, size_t errlen);

#endif
