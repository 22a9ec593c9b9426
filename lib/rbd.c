/* SPDX-License-Identifier: MIT */
/*
 * The rbd volume: a Ceph RBD image through librbd. RADOS places, replicates
 * and recovers the data; here is only the mapping of requests onto librbd.
 *
 * How its I/O is done. There is no fd and no device address: librbd reads
 * and writes objects over the network. So the volume sets vol_ops->submit
 * and gets whole requests (dio-vol.c), each one librbd aio call:
 *   READ → rbd_aio_read, WRITE → rbd_aio_write, ZERO → rbd_aio_write_zeroes,
 *   TRIM → rbd_aio_discard, FLUSH → rbd_aio_flush,
 *   FUA (WRITE, ZERO, TRIM) → the call, then rbd_aio_flush (stage 1).
 * Completions: the image's notification is an eventfd of ours
 * (rbd_set_image_notification, EVENT_TYPE_EVENTFD); librbd queues each
 * completion in the image and writes the eventfd. The fd is a source of
 * every ctx with requests in flight here, and poll() (on that ctx's thread)
 * takes them with rbd_poll_io_events. No callback, no thread of ours.
 * Block status still goes through the extent iterator: map_begin asks the
 * object map (rbd_diff_iterate2, whole objects) when fast-diff is valid.
 *
 * One librbd handle per image in the process, shared by every export and
 * connection (and every reactor): its flush covers every write made
 * through it, which is what lets the server advertise multi-conn. Two
 * handles would also fight over the image's exclusive lock.
 *
 * Fencing. A read-write open takes the image's exclusive lock with
 * rbd_lock_acquire, which also switches librbd to the policy that never
 * hands the lock over when another client asks for it: so a second gateway
 * cannot write the image behind this one's back. That second gateway
 * either refuses to start (naming the lock's owner) or, told to take over,
 * breaks the lock with rbd_lock_break, which has the monitors blocklist
 * the old owner before the lock is freed: from then on the OSDs refuse
 * every request of the old gateway (EBLOCKLISTED, which is ESHUTDOWN), so
 * there are never two writers. The old gateway sees that on its next
 * completion, says once in its log that it was fenced, and fails every
 * request from then on with ESHUTDOWN without asking the cluster.
 * Read-only opens (snapshots too) take no lock.
 *
 * librbd's cache (rbd_cache) is off unless asked for: with it, librbd
 * acknowledges writes that are only in this process's memory. FLUSH and
 * FUA still make them durable, so it is correct, but a client that never
 * flushes then loses more on a gateway crash, the client has a page cache
 * of its own already, and a gateway fenced off the image (a later stage)
 * would hold dirty data it can no longer write. Off: every acknowledged
 * write is on the OSDs' journals.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "dio/rbd.h"
#include "rbd-lib.h"
#include "volume-priv.h"

/* Completions taken per rbd_poll_io_events call. */
#define RBD_POLL_BATCH 32
/* The most objects one map_begin looks at: past them, the answer is a prefix. */
#define RBD_MAP_MAX_OBJECTS 4096

struct rbd_vol {
	struct dio_volume vol;
	char *key;		/* spec NUL conf NUL id: what makes two opens the same */
	size_t keylen;
	rados_t cluster;
	rados_ioctx_t ioctx;
	rbd_image_t image;
	int efd;		/* the image's notification */
	uint64_t obj_size;
	bool fast_diff;		/* the image has the feature (validity is checked per call) */
	bool fenced;		/* another client broke our lock (atomic): all fails */
	unsigned int timeout;	/* s: rados_osd_op_timeout, for messages */
	int64_t timeout_logged;	/* s (monotonic) of the last timeout message (atomic) */
	struct rbd_vol *next;	/* under rbd_open_lock */
};

static pthread_mutex_t rbd_open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_vol *rbd_open_vols;

bool
dio_rbd_supported(void)
{
	return true;
}

/* Report why an open failed (errbuf and log); returns -err. */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static int
rbd_open_error(const struct dio_rbd_opts *opts, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (opts->errbuf && opts->errlen)
		snprintf(opts->errbuf, opts->errlen, "%s", msg);
	dio_log(DIO_LOG_ERR, "%s", msg);
	return -err;
}

static struct rbd_vol *
to_rbd(struct dio_volume *vol)
{
	return (struct rbd_vol *)vol;
}

/* The POOL/IMAGE[@SNAP] the volume was opened with: the key's first part. */
static const char *
rbd_spec(const struct rbd_vol *rv)
{
	return rv->key;
}

/*
 * A request came back with r: when it says that this client was fenced off
 * the image (blocklisted after another gateway broke our lock, or the lock
 * lost to another owner), remember it and say it once. Any thread.
 */
static void
rbd_check_fenced(struct rbd_vol *rv, const struct dio_req *req, ssize_t r)
{
	bool was = false;

	if (r != -ESHUTDOWN && !(r == -EROFS && req->op != DIO_REQ_READ))
		return;
	if (!__atomic_compare_exchange_n(&rv->fenced, &was, true, false, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED))
		return;
	dio_log(DIO_LOG_ERR, "rbd:%s: fenced: another client took the image's exclusive lock "
		"over (this gateway is blocklisted: %s); every request now fails with ESHUTDOWN",
		rbd_spec(rv), strerror((int)-r));
}

/* ---- requests ---------------------------------------------------------- */

/* A request timed out (the cluster did not answer): say so, once a second at most. */
static void
rbd_log_timeout(struct rbd_vol *rv, const struct dio_req *req)
{
	static const char *const names[] = { "read", "write", "write-zeroes", "trim", "flush" };
	struct timespec ts;
	int64_t last;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	last = __atomic_load_n(&rv->timeout_logged, __ATOMIC_RELAXED);
	if (ts.tv_sec == last || !__atomic_compare_exchange_n(&rv->timeout_logged, &last,
							      (int64_t)ts.tv_sec, false,
							      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	dio_log(DIO_LOG_WARN, "rbd:%s: a %s at %" PRIu64 " timed out after rbd-timeout=%u s: "
		"the cluster does not answer; the client gets EIO", rbd_spec(rv),
		req->op < sizeof(names) / sizeof(names[0]) ? names[req->op] : "request", req->pos,
		rv->timeout);
}

static int
rbd_start(struct rbd_vol *rv, struct dio_vol_io *vio)
{
	const struct dio_req *req = vio->req;
	rbd_completion_t c;
	int ret;

	if (__atomic_load_n(&rv->fenced, __ATOMIC_RELAXED))
		return -ESHUTDOWN;	/* the image has another writer now: not even reads */
	ret = rbd_lib.rbd_aio_create_completion(vio, NULL, &c);
	if (ret < 0)
		return ret;
	if (vio->stage == 1) {
		ret = rbd_lib.rbd_aio_flush(rv->image, c);	/* the flush after a FUA write */
	} else {
		switch (req->op) {
		case DIO_REQ_READ:
			ret = rbd_lib.rbd_aio_read(rv->image, req->pos, req->len, req->buf, c);
			break;
		case DIO_REQ_WRITE:
			ret = rbd_lib.rbd_aio_write(rv->image, req->pos, req->len, req->buf, c);
			break;
		case DIO_REQ_ZERO:
			/* NO_HOLE: keep it allocated, which means writing the zeros: not fast */
			if ((req->flags & (DIO_REQ_NO_HOLE | DIO_REQ_FAST_ZERO)) ==
			    (DIO_REQ_NO_HOLE | DIO_REQ_FAST_ZERO)) {
				ret = -EOPNOTSUPP;
				break;
			}
			ret = rbd_lib.rbd_aio_write_zeroes(rv->image, req->pos, req->len, c,
						   (req->flags & DIO_REQ_NO_HOLE) ?
						   RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
			break;
		case DIO_REQ_TRIM:
			ret = rbd_lib.rbd_aio_discard(rv->image, req->pos, req->len, c);
			break;
		case DIO_REQ_FLUSH:
			ret = rbd_lib.rbd_aio_flush(rv->image, c);
			break;
		default:
			ret = -EINVAL;
			break;
		}
	}
	if (ret < 0)
		rbd_lib.rbd_aio_release(c);
	return ret;
}

static int
rbd_submit(struct dio_volume *vol, struct dio_vol_io *vio)
{
	return rbd_start(to_rbd(vol), vio);
}

static int
rbd_event_fd(struct dio_volume *vol)
{
	return to_rbd(vol)->efd;
}

/* One librbd completion for vio came back with r: go on or finish. */
static void
rbd_complete(struct rbd_vol *rv, struct dio_ctx *ctx, struct dio_vol_io *vio, ssize_t r)
{
	const struct dio_req *req = vio->req;
	int ret;

	if (r >= 0 && vio->stage == 0 && req->op == DIO_REQ_READ && (uint64_t)r != req->len)
		r = -EIO;	/* inside the image a read is whole; never pass a short one */
	if (r == -ETIMEDOUT)
		rbd_log_timeout(rv, req);
	if (r < 0) {
		rbd_check_fenced(rv, req, r);
		if (__atomic_load_n(&rv->fenced, __ATOMIC_RELAXED))
			r = -ESHUTDOWN;
	}
	if (r >= 0 && vio->stage == 0 && (req->flags & DIO_REQ_FUA) &&
	    req->op != DIO_REQ_READ && req->op != DIO_REQ_FLUSH) {
		vio->stage = 1;
		ret = rbd_start(rv, vio);
		if (ret == 0)
			return;
		r = ret;
	}
	dio_vol_io_done(ctx, vio, r < 0 ? (int)r : 0);
}

static void
rbd_poll(struct dio_volume *vol, struct dio_ctx *ctx)
{
	struct rbd_vol *rv = to_rbd(vol);
	rbd_completion_t comps[RBD_POLL_BATCH];
	eventfd_t v;
	int n;

	/*
	 * Read the eventfd first: a completion queued after the poll below
	 * writes it again, so none is left behind with the fd quiet.
	 */
	(void)eventfd_read(rv->efd, &v);
	do {
		n = rbd_lib.rbd_poll_io_events(rv->image, comps, RBD_POLL_BATCH);
		for (int i = 0; i < n; i++) {
			struct dio_vol_io *vio = rbd_lib.rbd_aio_get_arg(comps[i]);
			ssize_t r = rbd_lib.rbd_aio_get_return_value(comps[i]);

			rbd_lib.rbd_aio_release(comps[i]);
			rbd_complete(rv, ctx, vio, r);
		}
	} while (n == RBD_POLL_BATCH);
}

static int
rbd_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	      uint64_t len, struct dio_io *io)
{
	return -EOPNOTSUPP;	/* never asked: every request goes to rbd_submit */
}

/* ---- block status ------------------------------------------------------ */

struct rbd_map_walk {
	uint64_t pos, end;	/* what is asked */
	uint64_t data_start, data_end;	/* the first run of data that reaches into it */
	bool found;
};

/* rbd_diff_iterate2's callback: [off, off+len) exists (has data) or not. */
static int
rbd_map_cb(uint64_t off, size_t len, int exists, void *arg)
{
	struct rbd_map_walk *w = arg;
	uint64_t end = off + len;

	if (!exists || end <= w->pos)
		return 0;
	if (w->found) {
		if (off > w->data_end)
			return -ECANCELED;	/* the run ended: we know enough */
		if (end > w->data_end)
			w->data_end = end;
		return 0;
	}
	w->found = true;
	w->data_start = off;
	w->data_end = end;
	return 0;
}

/*
 * Block status only (the server sends READ and the rest to rbd_submit): a
 * run of objects that have data is MAPPED, the rest a HOLE. librbd 16
 * reports wrong offsets when the walk starts inside an object, so it
 * starts at the object's first byte, as QEMU's block/rbd.c does.
 */
static int
rbd_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
	      struct dio_extent *ext)
{
	struct rbd_vol *rv = to_rbd(vol);
	struct rbd_map_walk w = { .pos = pos };
	uint64_t iflags = 0, start, max;
	int ret;

	memset(ext, 0, sizeof(*ext));
	ext->pos = pos;
	ext->addr = pos;
	ext->length = len;
	ext->type = DIO_EXT_MAPPED;
	if (!rv->fast_diff || rbd_lib.rbd_get_flags(rv->image, &iflags) < 0 ||
	    (iflags & RBD_FLAG_FAST_DIFF_INVALID))
		return 0;	/* no trustworthy object map: all of it is data */

	start = pos - pos % rv->obj_size;
	max = (uint64_t)RBD_MAP_MAX_OBJECTS * rv->obj_size;
	if (pos + len - start > max)
		len = start + max - pos;
	w.end = pos + len;
	ret = rbd_lib.rbd_diff_iterate2(rv->image, NULL, start, w.end - start, 1, 1, rbd_map_cb, &w);
	if (ret < 0 && ret != -ECANCELED)
		return ret;
	if (w.found && w.data_start <= pos) {
		ext->length = (w.data_end < w.end ? w.data_end : w.end) - pos;
	} else {
		ext->type = DIO_EXT_HOLE;
		ext->length = (w.found && w.data_start < w.end ? w.data_start : w.end) - pos;
	}
	return 0;
}

/* ---- open and release -------------------------------------------------- */

static void
rbd_release(struct dio_volume *vol)
{
	struct rbd_vol *rv = to_rbd(vol), **pp;

	pthread_mutex_lock(&rbd_open_lock);
	for (pp = &rbd_open_vols; *pp; pp = &(*pp)->next)
		if (*pp == rv) {
			*pp = rv->next;
			break;
		}
	pthread_mutex_unlock(&rbd_open_lock);
	/* Writes done were flushed by the clients that cared; this waits for librbd's. */
	rbd_lib.rbd_close(rv->image);
	rbd_lib.rados_ioctx_destroy(rv->ioctx);
	rbd_lib.rados_shutdown(rv->cluster);
	close(rv->efd);
	dio_volume_fini(vol);
	free(rv->key);
	free(rv);
}

static const struct dio_map_ops rbd_map_ops = {
	.map_begin = rbd_map_begin,
};

static const struct dio_vol_ops rbd_vol_ops = {
	.prep_meta = rbd_prep_meta,
	.release = rbd_release,
	.submit = rbd_submit,
	.event_fd = rbd_event_fd,
	.poll = rbd_poll,
};

/* Set a librados option; the name in the message if it is refused. */
static int
rbd_conf_set(rados_t cluster, const struct dio_rbd_opts *opts, const char *spec,
	     const char *name, const char *value)
{
	int ret = rbd_lib.rados_conf_set(cluster, name, value);

	if (ret < 0)
		return rbd_open_error(opts, -ret, "rbd:%s: cannot set %s=%s: %s", spec, name, value,
				      strerror(-ret));
	return 0;
}

/* Connect to the cluster opts describe. 0 or -errno (reported). */
static int
rbd_connect(struct rbd_vol *rv, const char *spec, const struct dio_rbd_opts *opts)
{
	const char *id = opts->id && *opts->id ? opts->id : "admin";
	unsigned int t = opts->timeout ? opts->timeout : DIO_RBD_TIMEOUT_DEFAULT;
	char tbuf[16];
	int ret;

	ret = rbd_lib.rados_create(&rv->cluster, id);
	if (ret < 0)
		return rbd_open_error(opts, -ret, "rbd:%s: cannot create a cluster handle for "
				      "client.%s: %s", spec, id, strerror(-ret));
	ret = rbd_lib.rados_conf_read_file(rv->cluster, opts->conf);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: cannot read the Ceph configuration %s: %s",
			       spec, opts->conf ? opts->conf : "(default search path)",
			       strerror(-ret));
		goto err_shutdown;
	}
	rv->timeout = t;
	snprintf(tbuf, sizeof(tbuf), "%u", t);
	/* A dead cluster must turn into EIO, not a hang: bound every wait. */
	if ((ret = rbd_conf_set(rv->cluster, opts, spec, "client_mount_timeout", tbuf)) < 0 ||
	    (ret = rbd_conf_set(rv->cluster, opts, spec, "rados_mon_op_timeout", tbuf)) < 0 ||
	    (ret = rbd_conf_set(rv->cluster, opts, spec, "rados_osd_op_timeout", tbuf)) < 0 ||
	    (ret = rbd_conf_set(rv->cluster, opts, spec, "rbd_cache",
				opts->cache ? "true" : "false")) < 0)
		goto err_shutdown;
	if (opts->keyring &&
	    (ret = rbd_conf_set(rv->cluster, opts, spec, "keyring", opts->keyring)) < 0)
		goto err_shutdown;
	ret = rbd_lib.rados_connect(rv->cluster);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: cannot connect to the Ceph cluster as client.%s "
			       "(%s): %s%s", spec, id, opts->conf ? opts->conf : "default conf",
			       strerror(-ret),
			       ret == -ETIMEDOUT ? " (are the monitors up and reachable?)" :
			       ret == -EACCES || ret == -EPERM || ret == -EIO ?
			       " (check the id and keyring)" :
			       ret == -ENOENT ? " (no keyring found for this id?)" : "");
		goto err_shutdown;
	}
	return 0;

err_shutdown:
	rbd_lib.rados_shutdown(rv->cluster);
	return ret;
}

/*
 * Take the image's exclusive lock for good (see the top of the file). When
 * another client holds it: refuse, naming it, or with opts->takeover break
 * its lock (blocklisting it) and take the lock. 0 or -errno (reported).
 */
static int
rbd_take_lock(struct rbd_vol *rv, const char *spec, const struct dio_rbd_opts *opts)
{
	char *owners[8];
	size_t nowners = 8;
	rbd_lock_mode_t mode;
	int ret, ret2;

	ret = rbd_lib.rbd_lock_acquire(rv->image, RBD_LOCK_MODE_EXCLUSIVE);
	if (ret == 0)
		return 0;
	if (ret == -EINVAL)
		return rbd_open_error(opts, EINVAL, "rbd:%s: the image has no exclusive-lock feature, "
				      "which a read-write export needs to fence other gateways off "
				      "(rbd feature enable %s exclusive-lock), or export it readonly",
				      spec, spec);
	ret2 = rbd_lib.rbd_lock_get_owners(rv->image, &mode, owners, &nowners);
	if (ret2 < 0 || nowners == 0)
		return rbd_open_error(opts, -ret, "rbd:%s: cannot take the image's exclusive lock: "
				      "%s", spec, strerror(-ret));
	if (!opts->takeover) {
		rbd_open_error(opts, EBUSY, "rbd:%s: the image's exclusive lock is held by %s "
			       "(another gateway or client is writing it): not serving it; "
			       "rbd-takeover=on breaks that lock and fences the holder off "
			       "(it is blocklisted)", spec, owners[0]);
		rbd_lib.rbd_lock_get_owners_cleanup(owners, nowners);
		return -EBUSY;
	}
	for (size_t i = 0; i < nowners; i++) {
		dio_log(DIO_LOG_WARN, "rbd:%s: taking over: breaking the exclusive lock of %s "
			"and blocklisting it", spec, owners[i]);
		ret = rbd_lib.rbd_lock_break(rv->image, mode, owners[i]);
		if (ret < 0 && ret != -ENOENT) {
			rbd_open_error(opts, -ret, "rbd:%s: cannot break the exclusive lock of %s: %s",
				       spec, owners[i], strerror(-ret));
			rbd_lib.rbd_lock_get_owners_cleanup(owners, nowners);
			return ret;
		}
	}
	rbd_lib.rbd_lock_get_owners_cleanup(owners, nowners);
	ret = rbd_lib.rbd_lock_acquire(rv->image, RBD_LOCK_MODE_EXCLUSIVE);
	if (ret < 0)
		return rbd_open_error(opts, -ret, "rbd:%s: broke the exclusive lock but cannot take "
				      "it: %s", spec, strerror(-ret));
	dio_log(DIO_LOG_WARN, "rbd:%s: took the image over: the old holder is fenced off", spec);
	return 0;
}

/* The image open already under key (with a new reference), or NULL. Under rbd_open_lock. */
static struct rbd_vol *
rbd_find(const char *key, size_t keylen)
{
	for (struct rbd_vol *rv = rbd_open_vols; rv; rv = rv->next)
		if (rv->keylen == keylen && !memcmp(rv->key, key, keylen) &&
		    dio_volume_tryget(&rv->vol))
			return rv;
	return NULL;
}

int
dio_rbd_open(const char *spec, const struct dio_rbd_opts *opts, struct dio_volume **out)
{
	struct dio_rbd_opts def = { 0 };
	char pool[256], image[256], *snap = NULL, why[512];
	const char *slash, *conf, *id;
	rbd_image_info_t info;
	struct rbd_vol *rv, *old;
	uint64_t features = 0;
	size_t keylen;
	char *key;
	int ret;

	if (!opts)
		opts = &def;
	conf = opts->conf ? opts->conf : "";
	id = opts->id ? opts->id : "";
	slash = strchr(spec, '/');
	if (!slash || slash == spec || !slash[1] || (size_t)(slash - spec) >= sizeof(pool) ||
	    strlen(slash + 1) >= sizeof(image))
		return rbd_open_error(opts, EINVAL, "rbd:%s: expected rbd:POOL/IMAGE[@SNAP]", spec);
	memcpy(pool, spec, (size_t)(slash - spec));
	pool[slash - spec] = '\0';
	strcpy(image, slash + 1);
	snap = strchr(image, '@');
	if (snap) {
		*snap++ = '\0';
		if (!*snap || !*image)
			return rbd_open_error(opts, EINVAL, "rbd:%s: expected rbd:POOL/IMAGE[@SNAP]",
					      spec);
	}

	ret = rbd_lib_load(why, sizeof(why));
	if (ret < 0)
		return rbd_open_error(opts, -ret, "rbd:%s: %s", spec, why);

	keylen = strlen(spec) + strlen(conf) + strlen(id) + 3;
	key = malloc(keylen);
	if (!key)
		return -ENOMEM;
	snprintf(key, keylen, "%s%c%s%c%s", spec, 0, conf, 0, id);
	pthread_mutex_lock(&rbd_open_lock);
	old = rbd_find(key, keylen);
	pthread_mutex_unlock(&rbd_open_lock);
	if (old) {
		free(key);
		if (old->vol.readonly && !opts->readonly && !snap) {
			dio_volume_put(&old->vol);
			return rbd_open_error(opts, EBUSY, "rbd:%s: open read-only already", spec);
		}
		*out = &old->vol;
		return 0;
	}

	rv = calloc(1, sizeof(*rv));
	if (!rv) {
		free(key);
		return -ENOMEM;
	}
	rv->key = key;
	rv->keylen = keylen;
	rv->efd = -1;
	ret = rbd_connect(rv, spec, opts);
	if (ret < 0)
		goto err_free;
	ret = rbd_lib.rados_ioctx_create(rv->cluster, pool, &rv->ioctx);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: pool '%s': %s", spec, pool,
			       ret == -ENOENT ? "no such pool" : strerror(-ret));
		goto err_shutdown;
	}
	if (opts->readonly || snap)
		ret = rbd_lib.rbd_open_read_only(rv->ioctx, image, &rv->image, snap);
	else
		ret = rbd_lib.rbd_open(rv->ioctx, image, &rv->image, NULL);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: image '%s'%s%s in pool '%s': %s", spec, image,
			       snap ? " snapshot " : "", snap ? snap : "", pool,
			       ret == -ENOENT ? "no such image or snapshot" : strerror(-ret));
		goto err_ioctx;
	}
	ret = rbd_lib.rbd_stat(rv->image, &info, sizeof(info));
	if (ret == 0)
		ret = rbd_lib.rbd_get_features(rv->image, &features);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: cannot stat the image: %s", spec, strerror(-ret));
		goto err_image;
	}
	if (!opts->readonly && !snap) {
		ret = rbd_take_lock(rv, spec, opts);
		if (ret < 0)
			goto err_image;
	}
	rv->obj_size = info.obj_size ? info.obj_size : (1u << 22);
	rv->fast_diff = (features & RBD_FEATURE_FAST_DIFF) != 0;
	rv->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rv->efd < 0) {
		ret = -errno;
		goto err_image;
	}
	ret = rbd_lib.rbd_set_image_notification(rv->image, rv->efd, EVENT_TYPE_EVENTFD);
	if (ret < 0) {
		rbd_open_error(opts, -ret, "rbd:%s: cannot set the image's notification: %s", spec,
			       strerror(-ret));
		goto err_efd;
	}

	rv->vol.map_ops = &rbd_map_ops;
	rv->vol.vol_ops = &rbd_vol_ops;
	rv->vol.fd = -1;
	rv->vol.size = info.size;
	rv->vol.lbs = 1;		/* librbd takes any offset and length */
	rv->vol.pbs = 4096;
	rv->vol.blksize = 1;
	rv->vol.readonly = opts->readonly || snap;
	rv->vol.wcache = true;		/* OSDs and (if on) librbd's cache: flush means something */
	rv->vol.can_trim = true;
	rv->vol.can_zero = true;
	rv->vol.priv = rv;
	ret = dio_volume_init(&rv->vol);
	if (ret < 0)
		goto err_efd;

	pthread_mutex_lock(&rbd_open_lock);
	/* Another thread may have opened it meanwhile: keep theirs. */
	old = rbd_find(key, keylen);
	if (!old) {
		rv->next = rbd_open_vols;
		rbd_open_vols = rv;
	}
	pthread_mutex_unlock(&rbd_open_lock);
	if (old) {
		dio_volume_fini(&rv->vol);
		ret = 0;
		*out = &old->vol;
		goto err_efd;
	}
	dio_log(DIO_LOG_INFO, "rbd:%s: %" PRIu64 " bytes, objects of %" PRIu64 " bytes, %s%s",
		spec, info.size, rv->obj_size, rv->fast_diff ? "fast-diff" : "no fast-diff",
		opts->cache ? ", librbd cache on" : "");
	*out = &rv->vol;
	return 0;

err_efd:
	close(rv->efd);
err_image:
	rbd_lib.rbd_close(rv->image);
err_ioctx:
	rbd_lib.rados_ioctx_destroy(rv->ioctx);
err_shutdown:
	rbd_lib.rados_shutdown(rv->cluster);
err_free:
	free(rv->key);
	free(rv);
	return ret;
}
