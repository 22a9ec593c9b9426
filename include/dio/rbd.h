/* SPDX-License-Identifier: MIT */
/*
 * The 'rbd' volume backend: a Ceph RBD image (or one of its snapshots)
 * read and written through librbd's asynchronous calls, not through the
 * engine (vol_ops->submit, see lib/dio-vol.c and lib/rbd.c).
 */
#ifndef DIO_RBD_H
#define DIO_RBD_H

#include <stdbool.h>
#include <stddef.h>

#include "dio/volume.h"

/* librbd's writeback cache (rbd_cache): off by default, see lib/rbd.c */
#define DIO_RBD_TIMEOUT_DEFAULT 30	/* seconds, monitor and OSD operations */

struct dio_rbd_opts {
	const char *conf;	/* ceph.conf; NULL: librados' own search */
	const char *id;		/* client id, without "client."; NULL: "admin" */
	const char *keyring;	/* NULL: what conf says */
	bool readonly;		/* open read-only even if writable (a snapshot always is) */
	bool cache;		/* librbd's writeback cache */
	bool takeover;		/* break another client's exclusive lock (fencing it off) */
	unsigned int timeout;	/* s for monitor and OSD operations: then EIO; 0: default */
	char *errbuf;		/* optional: a message naming the image and the reason */
	size_t errlen;
};

/* Whether this build has the rbd backend (librbd was there at build time). */
bool dio_rbd_supported(void);

/*
 * Open "POOL/IMAGE" or "POOL/IMAGE@SNAP" of the cluster opts describe.
 * Connecting may take up to opts->timeout seconds when the monitors do
 * not answer. One volume per image (and conf and id) in the process: an
 * image open already gives the same volume with one more reference, so
 * all of its exports and connections share one librbd handle, whose
 * flush covers every write. Asking for writing when it is open read-only
 * fails with -EBUSY. Read-write, the image's exclusive lock is taken and
 * kept (never handed over on request): when another client holds it, the
 * open fails with -EBUSY naming that client, unless opts->takeover, which
 * breaks its lock and blocklists it (fencing it off the image) first. A
 * handle fenced off the image later by another's takeover fails every
 * request with -ESHUTDOWN. 0 or -errno (the reason also in opts->errbuf):
 * -ENOTSUP when built without librbd.
 */
int dio_rbd_open(const char *spec, const struct dio_rbd_opts *opts, struct dio_volume **out);

#endif /* DIO_RBD_H */
