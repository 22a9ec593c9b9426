/* SPDX-License-Identifier: MIT */
/*
 * The live export table: what clients can open now. The configuration
 * (config.c) describes exports; here each becomes a heap object with its
 * own copy of the description, a reference to its volume (one volume per
 * file, shared by every export of it: dio_file_open), and a reference
 * count: the table holds one, and every connection that opened it one.
 *
 * Exports are added and removed while serving (control socket, SIGHUP).
 * A removed export leaves the table at once, so no new client finds it;
 * connections that have it keep it until they close, and are told to
 * finish (conn_shutdown) by their reactors.
 *
 * Lock order: the table's rwlock is taken alone; nothing is called under
 * it that takes another lock, except dio_file_open when adding.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dio/rbd.h"
#include "dio/tpool.h"
#include "server.h"

/*
 * Thin pools that pool volumes are served from ("pool:POOL/VOLUME"), one
 * each, opened on first use and kept until the table is torn down (the
 * volumes of a pool need it open). Main thread only: exports are added
 * there (start, control socket, SIGHUP).
 */
/* Unflushed writes into new space are committed within this long. */
#define EXPORT_POOL_COMMIT_MS 1000

struct export_pool {
	char *path;
	struct dio_tpool *pool;
	struct export_pool *next;
};
static struct export_pool *export_pools;

/*
 * Block caches (dio/cache.h): one per volume that an export with cache=read
 * or writeback serves, shared by every export of that volume (cache=none
 * ones too: they bypass it but keep it exact), and the volumes served
 * without one. Main thread only, like export_pools.
 */
struct export_cached {
	uint64_t vol_id;		/* the volume under the cache */
	struct dio_volume *cache;	/* a reference; NULL: served without a cache */
	struct export_cached *next;
};
static struct export_cached *export_caches;

static const char *
export_cache_name(enum export_cache m)
{
	return m == EXPORT_CACHE_READ ? "read" : m == EXPORT_CACHE_WRITEBACK ? "writeback" : "none";
}

/*
 * Put e on its volume's cache if the volume has one or e asks for one.
 * 0, or -errno with the reason in err.
 */
static int
export_attach_cache(struct export *e, const struct server_cfg *cfg, char *err, size_t errlen)
{
	uint64_t id = dio_volume_id(e->vol);
	struct dio_cache_opts o = { .size = cfg->cache_size, .dirty_pct = cfg->cache_dirty_limit,
				    .expire_ms = cfg->cache_writeback_age,
				    .no_readahead = !cfg->readahead,
				    .ctx.engine.kind = cfg->engine,
				    .ctx.engine.submit_batch = config_submit_batch(cfg) };
	struct export_cached *p;
	struct dio_volume *cv;
	int ret;

	for (p = export_caches; p && p->vol_id != id; p = p->next)
		;
	if (!p && !(p = calloc(1, sizeof(*p)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!p->vol_id) {
		p->vol_id = id;
		p->next = export_caches;
		export_caches = p;
	} else if (!p->cache && e->cache != EXPORT_CACHE_NONE) {
		snprintf(err, errlen, "cache=%s, but %s is served without a cache by another export "
			 "already: one cache serves every export of a volume, so give them all "
			 "their cache= setting at once", export_cache_name(e->cache), e->path);
		return -EBUSY;
	}
	if (!p->cache && e->cache == EXPORT_CACHE_NONE)
		return 0;
	if (!p->cache) {
		ret = dio_cache_create(e->vol, &o, &p->cache);
		if (ret < 0) {
			snprintf(err, errlen, "block cache: %s", strerror(-ret));
			return ret;
		}
		log_info("block cache of %llu MiB for %s (dirty limit %u%%, writeback after %u ms)",
			 (unsigned long long)(cfg->cache_size >> 20), e->path,
			 cfg->cache_dirty_limit, cfg->cache_writeback_age);
	}
	cv = dio_volume_get(p->cache);
	dio_volume_put(e->vol);
	e->vol = cv;
	return 0;
}

int
exports_sync_caches(char *why, size_t whylen)
{
	struct export_cached *p;
	int ret;

	for (p = export_caches; p; p = p->next) {
		if (!p->cache || (ret = dio_cache_sync(p->cache)) == 0)
			continue;
		snprintf(why, whylen, "writing back the block cache of volume %llu: %s",
			 (unsigned long long)p->vol_id, strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * Write back what the caches hold and drop them. A connection that did not
 * finish by the stop deadline may keep a reference to one: its data is
 * written here all the same.
 */
static void
export_close_caches(void)
{
	struct export_cached *p;
	int ret;

	while ((p = export_caches)) {
		export_caches = p->next;
		if (p->cache && (ret = dio_cache_sync(p->cache)) < 0)
			log_err("block cache of volume %llu: writing back at stop: %s",
				(unsigned long long)p->vol_id, strerror(-ret));
		dio_volume_put(p->cache);
		free(p);
	}
}

int
exports_pool(const struct server_cfg *cfg, const char *pool_path, bool readonly, char *why,
	     size_t whylen, struct dio_tpool **out)
{
	struct dio_tpool_opts opts = { .readonly = readonly, .errbuf = why, .errlen = whylen,
				       .commit_ms = EXPORT_POOL_COMMIT_MS,
				       .no_discard = !cfg->pool_discard };
	struct export_pool *p;
	int ret;

	for (p = export_pools; p; p = p->next)
		if (!strcmp(p->path, pool_path))
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p || !(p->path = strdup(pool_path))) {
			free(p);
			return -ENOMEM;
		}
		ret = dio_tpool_open(pool_path, &opts, &p->pool);
		if (ret < 0) {
			if (!why[0])
				snprintf(why, whylen, "pool %.300s: %s", pool_path, strerror(-ret));
			free(p->path);
			free(p);
			return ret;
		}
		p->next = export_pools;
		export_pools = p;
	}
	*out = p->pool;
	return 0;
}

/*
 * Open volume name of the thin pool at pool_path (the pool opened once).
 * 0 or -errno, with the reason in why.
 */
static int
export_open_pool_volume(const struct server_cfg *cfg, const char *pool_path, const char *name,
			bool readonly, char *why, size_t whylen, struct dio_volume **out)
{
	struct dio_tpool *pool;
	int ret = exports_pool(cfg, pool_path, readonly, why, whylen, &pool);

	if (ret < 0)
		return ret;
	ret = dio_tpool_volume_open(pool, name, out);
	if (ret < 0)
		snprintf(why, whylen, "pool %.300s: volume '%.64s': %s", pool_path, name,
			 ret == -ENOENT ? "no such volume" : strerror(-ret));
	return ret;
}

/* Close the pools once no export uses their volumes any more. */
static void
export_close_pools(void)
{
	struct export_pool *p;

	while ((p = export_pools)) {
		export_pools = p->next;
		dio_tpool_close(p->pool);
		free(p->path);
		free(p);
	}
}

int
exports_init(struct export_table *t)
{
	memset(t, 0, sizeof(*t));
	return -pthread_rwlock_init(&t->lock, NULL);
}

static void
export_free(struct export *e)
{
	dio_volume_put(e->vol);
	config_export_clear(e);
	free(e);
}

void
export_put(struct export *e)
{
	if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
		export_free(e);
}

struct export *
export_get(struct export *e)
{
	__atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
	return e;
}

/* A copy of spec's strings and allow-list, with one reference; NULL on ENOMEM. */
static struct export *
export_copy(const struct export *spec)
{
	struct export *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->refs = 1;
	e->readonly = spec->readonly;
	e->cli = spec->cli;
	e->cache = spec->cache;
	e->name = strdup(spec->name);
	e->path = strdup(spec->path);
	e->description = spec->description ? strdup(spec->description) : NULL;
	e->rbd = (struct export_rbd){ .cache = spec->rbd.cache, .takeover = spec->rbd.takeover,
				     .timeout = spec->rbd.timeout };
	if ((spec->rbd.conf && !(e->rbd.conf = strdup(spec->rbd.conf))) ||
	    (spec->rbd.id && !(e->rbd.id = strdup(spec->rbd.id))) ||
	    (spec->rbd.keyring && !(e->rbd.keyring = strdup(spec->rbd.keyring))))
		goto err;
	e->allow = spec->nallow ? calloc(spec->nallow, sizeof(*e->allow)) : NULL;
	if (!e->name || !e->path || (spec->description && !e->description) ||
	    (spec->nallow && !e->allow))
		goto err;
	for (; e->nallow < spec->nallow; e->nallow++)
		if (!(e->allow[e->nallow] = strdup(spec->allow[e->nallow])))
			goto err;
	return e;
err:
	export_free(e);
	return NULL;
}

int
exports_open_volume(const struct export *spec, bool readonly, const struct server_cfg *cfg,
		    char *why, size_t whylen, struct dio_volume **out)
{
	int ret;

	why[0] = '\0';
	if (!strncmp(spec->path, EXPORT_POOL_PREFIX, strlen(EXPORT_POOL_PREFIX))) {
		/* pool:POOL/VOLUME: the volume is the last component */
		const char *pp = spec->path + strlen(EXPORT_POOL_PREFIX);
		const char *slash = strrchr(pp, '/');
		char pool_path[4096];

		if (!slash || slash == pp || !slash[1] || (size_t)(slash - pp) >= sizeof(pool_path)) {
			snprintf(why, whylen, "'%s': expected pool:POOL/VOLUME", spec->path);
			return -EINVAL;
		}
		memcpy(pool_path, pp, (size_t)(slash - pp));
		pool_path[slash - pp] = '\0';
		return export_open_pool_volume(cfg, pool_path, slash + 1, readonly, why, whylen,
					       out);
	}
	if (!strncmp(spec->path, EXPORT_RBD_PREFIX, strlen(EXPORT_RBD_PREFIX))) {
		struct dio_rbd_opts ro = {
			.conf = spec->rbd.conf,
			.id = spec->rbd.id,
			.keyring = spec->rbd.keyring,
			.readonly = readonly,
			.cache = spec->rbd.cache,
			.takeover = spec->rbd.takeover,
			.timeout = spec->rbd.timeout,
			.errbuf = why,
			.errlen = whylen,
		};

		ret = dio_rbd_open(spec->path + strlen(EXPORT_RBD_PREFIX), &ro, out);
		if (ret < 0 && !why[0])
			snprintf(why, whylen, "%s: %s", spec->path, strerror(-ret));
		return ret;
	}
	struct dio_file_opts opts = {
		.readonly = readonly,
		.no_lock = !cfg->image_locking,
		.errbuf = why,
		.errlen = whylen,
	};
	ret = dio_file_open(spec->path, &opts, out);
	if (ret == -EAGAIN && !opts.no_lock) {
		size_t n = strlen(why);

		snprintf(why + n, whylen - n, ": the file is in use (--image-locking off serves "
			 "it anyway)");
	}
	return ret;
}

/*
 * A live export of spec with its volume open (cfg gives read-only and image
 * locking), not yet in any table. 0, or -errno with the reason in err.
 */
static int
export_open(const struct export *spec, const struct server_cfg *cfg, char *err, size_t errlen,
	    struct export **out)
{
	bool readonly = spec->readonly || cfg->readonly;
	char why[768];
	struct export *e = export_copy(spec);
	int ret;

	if (!e) {
		snprintf(err, errlen, "out of memory for export '%s'", spec->name);
		return -ENOMEM;
	}
	ret = exports_open_volume(spec, readonly, cfg, why, sizeof(why), &e->vol);
	if (ret == 0)
		ret = export_attach_cache(e, cfg, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s", why[0] ? why : strerror(-ret));
		export_free(e);
		return ret;
	}
	e->readonly = readonly || e->vol->readonly;
	*out = e;
	return 0;
}

/* The index of name[0..len) in t, or -1. Under t->lock. */
static long
exports_index(const struct export_table *t, const char *name, size_t len)
{
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->v[i]->name) == len && !memcmp(t->v[i]->name, name, len))
			return (long)i;
	return -1;
}

struct export *
exports_find(struct export_table *t, const char *name, size_t len)
{
	struct export *e = NULL;
	long i;

	pthread_rwlock_rdlock(&t->lock);
	i = exports_index(t, name, len);
	if (i >= 0)
		e = export_get(t->v[i]);
	pthread_rwlock_unlock(&t->lock);
	return e;
}

int
exports_add(struct export_table *t, const struct export *spec, const struct server_cfg *cfg,
	    char *err, size_t errlen)
{
	struct export *e, **v;
	int ret;

	if (exports_has(t, spec->name)) {
		snprintf(err, errlen, "export '%s' exists already", spec->name);
		return -EEXIST;
	}
	ret = export_open(spec, cfg, err, errlen, &e);
	if (ret < 0)
		return ret;

	pthread_rwlock_wrlock(&t->lock);
	if (exports_index(t, e->name, strlen(e->name)) >= 0) {
		pthread_rwlock_unlock(&t->lock);
		snprintf(err, errlen, "export '%s' exists already", spec->name);
		export_free(e);
		return -EEXIST;
	}
	v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (!v) {
		pthread_rwlock_unlock(&t->lock);
		snprintf(err, errlen, "out of memory adding export '%s'", spec->name);
		export_free(e);
		return -ENOMEM;
	}
	t->v = v;
	t->v[t->n++] = e;
	pthread_rwlock_unlock(&t->lock);
	log_info("export '%s': %s, %llu bytes, block %u/%u%s%s%s%s", e->name, e->path,
		 (unsigned long long)e->vol->size, e->vol->lbs, e->vol->pbs,
		 e->readonly ? ", read-only" : "", e->vol->can_trim ? ", trim" : "",
		 dio_volume_is_cache(e->vol) ? ", cache=" : "",
		 dio_volume_is_cache(e->vol) ? export_cache_name(e->cache) : "");
	return 0;
}

bool
exports_has(struct export_table *t, const char *name)
{
	bool has;

	pthread_rwlock_rdlock(&t->lock);
	has = exports_index(t, name, strlen(name)) >= 0;
	pthread_rwlock_unlock(&t->lock);
	return has;
}

struct export *
exports_unlink(struct export_table *t, const char *name)
{
	struct export *e = NULL;
	long i;

	pthread_rwlock_wrlock(&t->lock);
	i = exports_index(t, name, strlen(name));
	if (i >= 0) {
		e = t->v[i];	/* the table's reference goes to the caller */
		memmove(&t->v[i], &t->v[i + 1], (t->n - (size_t)i - 1) * sizeof(t->v[0]));
		t->n--;
		__atomic_store_n(&e->removed, true, __ATOMIC_RELEASE);
	}
	pthread_rwlock_unlock(&t->lock);
	return e;
}

size_t
exports_snapshot(struct export_table *t, struct export ***out)
{
	size_t n;

	pthread_rwlock_rdlock(&t->lock);
	*out = t->n ? malloc(t->n * sizeof(**out)) : NULL;
	n = *out ? t->n : 0;
	for (size_t i = 0; i < n; i++)
		(*out)[i] = export_get(t->v[i]);
	pthread_rwlock_unlock(&t->lock);
	return n;
}

void
exports_snapshot_free(struct export **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		export_put(v[i]);
	free(v);
}

int
exports_open(struct export_table *t, const struct server_cfg *cfg)
{
	char err[768];

	/*
	 * Exports of one file share one volume: open the writable ones first,
	 * so that a read-only export of the same file does not open it
	 * read-only for all of them; and within each, those with a cache
	 * first, so that the volume has its cache before any export of it.
	 */
	for (size_t n = 0; n < 4 * cfg->nexports; n++) {
		const struct export *spec = &cfg->exports[n % cfg->nexports];
		bool ro = spec->readonly || cfg->readonly;
		size_t round = n / cfg->nexports;

		if (ro != (round >= 2) || (spec->cache == EXPORT_CACHE_NONE) != (round % 2 == 1))
			continue;	/* rounds: writable cached, writable, read-only cached, read-only */
		if (exports_add(t, spec, cfg, err, sizeof(err)) < 0) {
			log_err("export '%s' could not be opened: %s", spec->name, err);
			return -1;
		}
	}
	return 0;
}

void
exports_fini(struct export_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		export_put(t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
	pthread_rwlock_destroy(&t->lock);
	/* Connections are gone by now (reactors joined): no volume of a pool is left. */
	export_close_caches();
	export_close_pools();
}

int
exports_replace(struct export_table *t, const struct export *spec, const struct server_cfg *cfg,
		char *err, size_t errlen)
{
	struct export *e, *old = NULL;
	long i;
	int ret;

	ret = export_open(spec, cfg, err, errlen, &e);
	if (ret < 0)
		return ret;
	pthread_rwlock_wrlock(&t->lock);
	i = exports_index(t, e->name, strlen(e->name));
	if (i >= 0) {
		old = t->v[i];
		t->v[i] = e;
	}
	pthread_rwlock_unlock(&t->lock);
	if (!old) {
		snprintf(err, errlen, "no export '%s' to change", spec->name);
		export_free(e);
		return -ENOENT;
	}
	export_put(old);	/* its connections keep it until they close */
	return 0;
}
