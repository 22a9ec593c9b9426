/* SPDX-License-Identifier: MIT */
/*
 * nbdkit-dio-plugin: `nbdkit dio file=PATH` serves a file or block device
 * through libdio, so that nbdkit's filters and TLS sit in front of our
 * direct-I/O engine; `nbdkit dio thin-pool=PATH volume=NAME` serves a
 * volume of a thin pool (dio/tpool.h) the same way, and `nbdkit dio
 * rbd:POOL/IMAGE[@SNAP]` (file=rbd:...) a Ceph RBD image (dio/rbd.h).
 *
 * nbdkit owns the wire and the threads. All connections share one volume,
 * opened before nbdkit forks. Each nbdkit worker thread owns one dio_ctx
 * (engine + pinned buffer pool), created on its first request in that
 * thread: an io_uring ring must be created by the process that uses it,
 * after nbdkit has forked into the background, and belongs to one thread.
 * The ctx is freed by the thread-key destructor when nbdkit ends the
 * thread. Every request is submitted and waited for with dio_submit_sync.
 *
 * An rbd image is served from .after_fork on, not .get_ready: librados
 * starts threads, which a fork (nbdkit going into the background, or its
 * --run) does not carry over into the child. .get_ready opens and closes
 * it once, so that a wrong image or a held lock fails nbdkit at startup.
 *
 * cache=read|writeback puts the volume behind libdio's block cache
 * (dio/cache.h), made in .after_fork (after the rbd image) because its
 * writeback thread must live in the process that serves; each connection
 * then has a handle with its writeback-error cursor.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "dio/cache.h"
#include "dio/dio.h"
#include "dio/rbd.h"
#include "dio/tpool.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#ifndef DIO_VERSION
#define DIO_VERSION "unknown"
#endif

#define KiB (1024u)
#define MiB (1024u * 1024u)

/* The largest request we advertise; nbdkit itself caps requests at 64 MiB. */
#define DIO_PLUGIN_MAX_REQ (32u * MiB)
/* Per-thread pinned arena: nbdkit runs 16 threads per connection by default. */
#define DIO_PLUGIN_POOL_DEFAULT (4u * MiB)
/* psync workers per nbdkit thread: the nbdkit thread itself waits, so few suffice. */
#define DIO_PLUGIN_PSYNC_THREADS 2
/* Segments asked of libdio per round of .extents. */
#define DIO_PLUGIN_SEGS 64

/* Configuration, set before any connection and read-only afterwards. */
static char *cfg_file;			/* absolute path (nbdkit changes directory) */
static char *cfg_tpool;			/* thin-pool=: absolute path, or NULL */
static char *cfg_volume;		/* volume=: a volume of cfg_tpool */
static char *cfg_rbd;			/* file=rbd:SPEC: SPEC (POOL/IMAGE[@SNAP]), or NULL */
static struct dio_rbd_opts cfg_rbd_opts;	/* rbd-conf= etc.; strings are ours */
static bool cfg_readonly;
static bool cfg_locking = true;		/* QEMU's image locks (libdio's file-lock) */
static bool cfg_tpool_discard = true;		/* thin-pool-discard=: freed chunks to the device */
static enum dio_engine_kind cfg_engine = DIO_ENGINE_AUTO;
static unsigned int cfg_depth;		/* 0: libdio's default */
static uint64_t cfg_pool_size = DIO_PLUGIN_POOL_DEFAULT;
static enum { CACHE_NONE = 0, CACHE_READ, CACHE_WRITEBACK } cfg_cache;
static uint64_t cfg_cache_size = 256 * MiB;
static unsigned int cfg_cache_dirty_limit = 50;		/* % of the cache */
static unsigned int cfg_cache_writeback_age = 2000;	/* ms */

/* A connection's handle when the volume is cached (else none is needed). */
struct dio_plugin_conn {
	struct dio_cache_writer writer;
};

/* The volume, opened in .get_ready, closed in .unload; shared by all threads. */
static struct dio_volume *vol;

/* Each worker thread's struct dio_ctx; the destructor frees it. */
static pthread_key_t ctx_key;
static bool ctx_key_made;

static const char *
dio_plugin_engine_str(enum dio_engine_kind kind)
{
	switch (kind) {
	case DIO_ENGINE_URING:
		return "uring";
	case DIO_ENGINE_PSYNC:
		return "psync";
	case DIO_ENGINE_AUTO:
		break;
	}
	return "auto";
}

/* libdio's log hook: errors and warnings to nbdkit's log, the rest to -v. */
static void
dio_plugin_log(int level, const char *msg)
{
	switch (level) {
	case DIO_LOG_ERR:
		nbdkit_error("%s", msg);
		break;
	case DIO_LOG_WARN:
		nbdkit_error("warning: %s", msg);
		break;
	default:
		nbdkit_debug("%s", msg);
		break;
	}
}

/* pthread key destructor: runs when nbdkit ends a worker thread. */
static void
dio_plugin_ctx_free(void *p)
{
	dio_ctx_destroy(p);
}

/* .load: set up what every later callback relies on. */
static void
dio_plugin_load(void)
{
	dio_set_log(dio_plugin_log);
	/* Without the key every request fails in dio_plugin_ctx with ENOMEM. */
	ctx_key_made = pthread_key_create(&ctx_key, dio_plugin_ctx_free) == 0;
}

/* .unload: every connection is gone; free what is left. */
static void
dio_plugin_unload(void)
{
	if (ctx_key_made) {
		/* A thread that served requests and is still alive: nbdkit -s. */
		dio_ctx_destroy(pthread_getspecific(ctx_key));
		pthread_setspecific(ctx_key, NULL);
		/* Worker threads have been joined; no destructor may run after dlclose. */
		pthread_key_delete(ctx_key);
		ctx_key_made = false;
	}
	if (vol)
		dio_volume_put(vol);
	vol = NULL;
	free(cfg_file);
	cfg_file = NULL;
	free(cfg_tpool);
	cfg_tpool = NULL;
	free(cfg_volume);
	cfg_volume = NULL;
	free(cfg_rbd);
	cfg_rbd = NULL;
	free((char *)cfg_rbd_opts.conf);
	free((char *)cfg_rbd_opts.id);
	free((char *)cfg_rbd_opts.keyring);
	memset(&cfg_rbd_opts, 0, sizeof(cfg_rbd_opts));
}

/* What is served, for messages: the file, the pool's volume or the rbd image. */
static const char *
dio_plugin_what(void)
{
	return cfg_file ? cfg_file : cfg_rbd ? cfg_rbd : cfg_volume;
}

/* rbd-conf=, rbd-id=, rbd-keyring=: keep a copy in *dst. 0 or -1 (reported). */
static int
dio_plugin_rbd_str(const char *key, const char *value, const char **dst)
{
	char *copy;

	if (!value[0]) {
		nbdkit_error("%s=: empty value", key);
		return -1;
	}
	copy = strdup(value);
	if (!copy) {
		nbdkit_error("strdup: %m");
		return -1;
	}
	free((char *)*dst);
	*dst = copy;
	return 0;
}

/* An rbd-KEY=VALUE parameter: 1 done, 0 not one of them, -1 bad (reported). */
static int
dio_plugin_rbd_config(const char *key, const char *value)
{
	unsigned int t;
	int r;

	if (strcmp(key, "rbd-conf") == 0)
		return dio_plugin_rbd_str(key, value, &cfg_rbd_opts.conf) ? -1 : 1;
	if (strcmp(key, "rbd-id") == 0)
		return dio_plugin_rbd_str(key, value, &cfg_rbd_opts.id) ? -1 : 1;
	if (strcmp(key, "rbd-keyring") == 0)
		return dio_plugin_rbd_str(key, value, &cfg_rbd_opts.keyring) ? -1 : 1;
	if (strcmp(key, "rbd-cache") == 0 || strcmp(key, "rbd-takeover") == 0) {
		r = nbdkit_parse_bool(value);
		if (r == -1) {
			nbdkit_error("%s=%s: expected on or off", key, value);
			return -1;
		}
		if (key[4] == 'c')
			cfg_rbd_opts.cache = r;
		else
			cfg_rbd_opts.takeover = r;
		return 1;
	}
	if (strcmp(key, "rbd-timeout") == 0) {
		if (nbdkit_parse_unsigned("rbd-timeout", value, &t) == -1)
			return -1;
		if (t < 1 || t > 3600) {
			nbdkit_error("rbd-timeout=%s: must be between 1 and 3600 seconds", value);
			return -1;
		}
		cfg_rbd_opts.timeout = t;
		return 1;
	}
	return 0;
}

/* Parse engine=; 0 or -1 with an nbdkit_error. */
static int
dio_plugin_parse_engine(const char *value, enum dio_engine_kind *kind)
{
	if (strcmp(value, "uring") == 0 || strcmp(value, "io_uring") == 0) {
		*kind = DIO_ENGINE_URING;
	} else if (strcmp(value, "psync") == 0) {
		*kind = DIO_ENGINE_PSYNC;
	} else if (strcmp(value, "auto") == 0) {
		*kind = DIO_ENGINE_AUTO;
	} else {
		nbdkit_error("engine=%s: unknown engine; use engine=uring, engine=psync "
			     "or engine=auto", value);
		return -1;
	}
	return 0;
}

/* .config: one key=value from the command line. */
static int
dio_plugin_config(const char *key, const char *value)
{
	int64_t size;
	int r;

	if (strcmp(key, "file") == 0 && strncmp(value, "rbd:", 4) == 0) {
		free(cfg_rbd);
		cfg_rbd = strdup(value + 4);
		if (!cfg_rbd) {
			nbdkit_error("strdup: %m");
			return -1;
		}
	} else if (strcmp(key, "file") == 0) {
		free(cfg_file);
		cfg_file = nbdkit_absolute_path(value);
		if (!cfg_file)
			return -1;
	} else if (strncmp(key, "rbd-", 4) == 0 && (r = dio_plugin_rbd_config(key, value)) != 0) {
		return r < 0 ? -1 : 0;
	} else if (strcmp(key, "thin-pool") == 0) {
		free(cfg_tpool);
		cfg_tpool = nbdkit_absolute_path(value);
		if (!cfg_tpool)
			return -1;
	} else if (strcmp(key, "volume") == 0) {
		if (!value[0] || strlen(value) > DIO_TPOOL_NAME_MAX) {
			nbdkit_error("volume=%s: a volume name has 1 to %d bytes", value,
				     DIO_TPOOL_NAME_MAX);
			return -1;
		}
		free(cfg_volume);
		cfg_volume = strdup(value);
		if (!cfg_volume) {
			nbdkit_error("strdup: %m");
			return -1;
		}
	} else if (strcmp(key, "readonly") == 0) {
		r = nbdkit_parse_bool(value);
		if (r == -1) {
			nbdkit_error("readonly=%s: expected true or false", value);
			return -1;
		}
		cfg_readonly = r;
	} else if (strcmp(key, "locking") == 0) {
		r = nbdkit_parse_bool(value);
		if (r == -1) {
			nbdkit_error("locking=%s: expected on or off", value);
			return -1;
		}
		cfg_locking = r;
	} else if (strcmp(key, "thin-pool-discard") == 0) {
		r = nbdkit_parse_bool(value);
		if (r == -1) {
			nbdkit_error("thin-pool-discard=%s: expected on or off", value);
			return -1;
		}
		cfg_tpool_discard = r;
	} else if (strcmp(key, "engine") == 0) {
		return dio_plugin_parse_engine(value, &cfg_engine);
	} else if (strcmp(key, "queue-depth") == 0) {
		if (nbdkit_parse_unsigned("queue-depth", value, &cfg_depth) == -1)
			return -1;
		if (cfg_depth < 1 || cfg_depth > 4096) {
			nbdkit_error("queue-depth=%s: must be between 1 and 4096", value);
			return -1;
		}
	} else if (strcmp(key, "cache") == 0) {
		if (!strcmp(value, "none"))
			cfg_cache = CACHE_NONE;
		else if (!strcmp(value, "read"))
			cfg_cache = CACHE_READ;
		else if (!strcmp(value, "writeback"))
			cfg_cache = CACHE_WRITEBACK;
		else {
			nbdkit_error("cache=%s: must be none, read or writeback", value);
			return -1;
		}
	} else if (strcmp(key, "cache-size") == 0) {
		size = nbdkit_parse_size(value);
		if (size == -1)
			return -1;
		if (size < (int64_t)MiB) {
			nbdkit_error("cache-size=%s: must be 1M or more", value);
			return -1;
		}
		cfg_cache_size = (uint64_t)size;
	} else if (strcmp(key, "cache-dirty-limit") == 0) {
		if (nbdkit_parse_unsigned(key, value, &cfg_cache_dirty_limit) == -1)
			return -1;
		if (cfg_cache_dirty_limit < 1 || cfg_cache_dirty_limit > 100) {
			nbdkit_error("cache-dirty-limit=%s: must be between 1 and 100 (%%)", value);
			return -1;
		}
	} else if (strcmp(key, "cache-writeback-age") == 0) {
		if (nbdkit_parse_unsigned(key, value, &cfg_cache_writeback_age) == -1)
			return -1;
		if (cfg_cache_writeback_age < 10 || cfg_cache_writeback_age > 3600000) {
			nbdkit_error("cache-writeback-age=%s: must be between 10 and 3600000 (ms)",
				     value);
			return -1;
		}
	} else if (strcmp(key, "pool-size") == 0) {
		size = nbdkit_parse_size(value);
		if (size == -1)
			return -1;
		if (size < 64 * KiB || size > 1024 * (int64_t)MiB) {
			nbdkit_error("pool-size=%s: must be between 64K and 1G", value);
			return -1;
		}
		cfg_pool_size = size;
	} else {
		nbdkit_error("unknown parameter '%s' (see nbdkit dio --help)", key);
		return -1;
	}
	return 0;
}

/* .config_complete: file= given, and names something we can serve. */
static int
dio_plugin_config_complete(void)
{
	struct stat st;

	if (cfg_rbd) {
		if (cfg_file || cfg_tpool || cfg_volume) {
			nbdkit_error("rbd: excludes file= and thin-pool=: serve one of them");
			return -1;
		}
		if (!dio_rbd_supported()) {
			nbdkit_error("rbd:%s: this build has no Ceph RBD support (librbd-dev was "
				     "missing when it was built)", cfg_rbd);
			return -1;
		}
		return 0;	/* checked when it is opened, in .after_fork */
	}
	if (cfg_rbd_opts.conf || cfg_rbd_opts.id || cfg_rbd_opts.keyring ||
	    cfg_rbd_opts.timeout) {
		nbdkit_error("rbd-conf=, rbd-id=, rbd-keyring= and rbd-timeout= go with "
			     "rbd:POOL/IMAGE");
		return -1;
	}
	if (cfg_tpool || cfg_volume) {
		if (cfg_file) {
			nbdkit_error("file= and thin-pool= exclude each other: serve one or the other");
			return -1;
		}
		if (!cfg_tpool || !cfg_volume) {
			nbdkit_error("thin-pool= and volume= go together: the pool and the name of "
				     "its volume to serve");
			return -1;
		}
		return 0;	/* the pool itself is checked when it is opened, in .get_ready */
	}
	if (!cfg_file) {
		nbdkit_error("you must supply the file=<FILENAME> parameter "
			     "(a regular file or a block device) after the plugin name, "
			     "or thin-pool=<POOL> volume=<NAME>");
		return -1;
	}
	if (stat(cfg_file, &st) == -1) {
		nbdkit_error("file=%s: %s", cfg_file, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		nbdkit_error("file=%s: is a directory; dio serves a regular file or a "
			     "block device", cfg_file);
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		nbdkit_error("file=%s: is neither a regular file nor a block device",
			     cfg_file);
		return -1;
	}
	return 0;
}

#define dio_plugin_config_help \
	"file=<FILENAME>      The regular file or block device to serve.\n" \
	"thin-pool=<POOL> volume=<NAME>\n" \
	"                     Or: the volume NAME of the thin pool POOL\n" \
	"                     (made with dionbd-pool).\n" \
	"thin-pool-discard=on|off\n" \
	"                     Hand freed chunks back to the device (default on).\n" \
	"rbd:POOL/IMAGE[@SNAP] Or: a Ceph RBD image (a snapshot read-only), with\n" \
	"                     rbd-conf=FILE, rbd-id=ID, rbd-keyring=FILE,\n" \
	"                     rbd-cache=on|off, rbd-timeout=SECONDS and\n" \
	"                     rbd-takeover=on|off as dionbd's exports take them.\n" \
	"readonly=true|false  Open it read-only and refuse writes (default false).\n" \
	"locking=on|off       Lock it as QEMU locks images (default on).\n" \
	"engine=uring|psync|auto\n" \
	"                     I/O engine of each nbdkit thread (default auto:\n" \
	"                     io_uring, psync when io_uring is unavailable).\n" \
	"queue-depth=N        io_uring entries / psync queue per thread.\n" \
	"pool-size=SIZE       Pinned buffer memory per nbdkit thread (default 4M).\n" \
	"cache=none|read|writeback\n" \
	"                     A block cache in front of the volume (default none).\n" \
	"cache-size=SIZE      Its bound (default 256M).\n" \
	"cache-dirty-limit=PCT\n" \
	"                     % of it that may be dirty (default 50).\n" \
	"cache-writeback-age=MS\n" \
	"                     Write back data dirty this long (default 2000)."

/* The options a ctx of this plugin is made with. */
static void
dio_plugin_ctx_opts(enum dio_engine_kind kind, struct dio_ctx_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->engine.kind = kind;
	opts->engine.depth = cfg_depth;
	opts->engine.threads = DIO_PLUGIN_PSYNC_THREADS;
	opts->pool.arena_size = cfg_pool_size;
	opts->pool.align = vol && vol->lbs > 4096 ? vol->lbs : 4096;
}

/*
 * Create a ctx of the given kind and throw it away, before nbdkit forks:
 * engine=uring fails here, at startup, when io_uring is unavailable, and
 * engine=auto is resolved once instead of being retried (and logged) by
 * every thread. 0 or -errno.
 */
static int
dio_plugin_probe_engine(enum dio_engine_kind kind, enum dio_engine_kind *got)
{
	struct dio_ctx_opts opts;
	struct dio_ctx *ctx;
	const char *name;
	int ret;

	dio_plugin_ctx_opts(kind, &opts);
	ret = dio_ctx_create(&opts, &ctx);
	if (ret < 0)
		return ret;
	name = dio_engine_name(dio_ctx_engine(ctx));
	*got = strcmp(name, "uring") == 0 ? DIO_ENGINE_URING : DIO_ENGINE_PSYNC;
	dio_ctx_destroy(ctx);
	return 0;
}

/*
 * Open volume= of thin-pool= into vol. The volume holds the pool open and
 * checkpoints it when the last reference goes (.unload). 0 or -errno, with
 * the reason in errbuf.
 */
static int
dio_plugin_open_tpool_volume(bool readonly, char *errbuf, size_t errlen)
{
	/* commit_ms: unflushed writes into new space are committed within a second */
	struct dio_tpool_opts opts = { .readonly = readonly, .errbuf = errbuf, .errlen = errlen,
				       .commit_ms = 1000, .no_discard = !cfg_tpool_discard };
	struct dio_tpool *pool;
	int ret;

	ret = dio_tpool_open(cfg_tpool, &opts, &pool);
	if (ret < 0) {
		if (ret == -EAGAIN)
			snprintf(errbuf, errlen, "thin-pool=%s: in use by another process", cfg_tpool);
		else if (!errbuf[0])
			snprintf(errbuf, errlen, "thin-pool=%s: %s", cfg_tpool, strerror(-ret));
		return ret;
	}
	ret = dio_tpool_volume_open(pool, cfg_volume, &vol);
	if (ret < 0)
		snprintf(errbuf, errlen, "thin-pool=%s: volume=%s: %s", cfg_tpool, cfg_volume,
			 ret == -ENOENT ? "no such volume" : strerror(-ret));
	dio_tpool_close(pool);	/* the opener's reference: the volume keeps its own */
	return ret;
}

/* Open the rbd image, now that librados' threads will stay ours (.after_fork). */
static int
dio_plugin_open_rbd(void)
{
	char errbuf[512] = "";
	struct dio_rbd_opts opts = cfg_rbd_opts;
	int ret;

	if (!cfg_rbd)
		return 0;
	opts.readonly = cfg_readonly;
	opts.errbuf = errbuf;
	opts.errlen = sizeof(errbuf);
	ret = dio_rbd_open(cfg_rbd, &opts, &vol);
	if (ret < 0) {
		nbdkit_error("%s", errbuf[0] ? errbuf : strerror(-ret));
		return -1;
	}
	nbdkit_debug("serving rbd:%s: %" PRIu64 " bytes%s", cfg_rbd, vol->size,
		     vol->readonly ? ", read-only" : "");
	return 0;
}

/* .get_ready: open the volume and check the engine; clear errors, at startup. */
static int
dio_plugin_get_ready(void)
{
	char errbuf[256] = "";
	struct dio_file_opts opts = {
		.readonly = cfg_readonly,
		.no_lock = !cfg_locking,
		.errbuf = errbuf,
		.errlen = sizeof(errbuf),
	};
	enum dio_engine_kind kind;
	int ret;

	if (!ctx_key_made) {
		nbdkit_error("cannot create the thread key for per-thread engines");
		return -1;
	}
	if (cfg_rbd) {
		/*
		 * Open it once now only to check it (cluster, image, key, lock),
		 * so that nbdkit fails at startup with the reason; then close it
		 * and let .after_fork open it for good.
		 */
		ret = dio_plugin_open_rbd();
		if (ret < 0)
			return -1;
		dio_volume_put(vol);
		vol = NULL;
		goto engine;
	}
	if (cfg_tpool)
		ret = dio_plugin_open_tpool_volume(cfg_readonly, errbuf, sizeof(errbuf));
	else
		ret = dio_file_open(cfg_file, &opts, &vol);
	if (ret < 0) {
		if (errbuf[0])
			nbdkit_error("%s", errbuf);
		else
			nbdkit_error("file=%s: %s", cfg_file, strerror(-ret));
		return -1;
	}
engine:
	ret = dio_plugin_probe_engine(cfg_engine, &kind);
	if (ret < 0) {
		nbdkit_error("engine=%s: cannot create the I/O engine: %s%s",
			     dio_plugin_engine_str(cfg_engine), strerror(-ret),
			     cfg_engine == DIO_ENGINE_URING ?
			     " (io_uring disabled or unavailable here? try engine=psync)" : "");
		return -1;
	}
	cfg_engine = kind;
	if (vol)
		nbdkit_debug("serving %s: %" PRIu64 " bytes, logical block %" PRIu32
			     ", physical block %" PRIu32 "%s%s, engine %s",
			     dio_plugin_what(), vol->size, vol->lbs, vol->pbs,
			     vol->blockdev ? ", block device" : "",
			     vol->readonly ? ", read-only" : "", dio_plugin_engine_str(kind));
	return 0;
}


/* .dump_plugin: what `nbdkit dio --dump-plugin` adds to nbdkit's keys. */
static void
dio_plugin_dump_plugin(void)
{
	struct dio_engine_opts eopts = { .kind = DIO_ENGINE_URING, .depth = 8 };
	struct dio_engine *e;
	bool uring = false;

	if (dio_engine_create(&eopts, &e) == 0) {
		uring = true;
		dio_engine_destroy(e);
	}
	printf("dio_version=%s\n", DIO_VERSION);
	printf("dio_engines=uring,psync\n");
	printf("dio_uring=%s\n", uring ? "yes" : "no");
	printf("dio_engine=%s\n", uring ? "uring" : "psync");
	printf("dio_o_direct=yes\n");
	printf("dio_pool_size=%" PRIu64 "\n", cfg_pool_size);
	printf("dio_max_request=%u\n", DIO_PLUGIN_MAX_REQ);
	printf("dio_rbd=%s\n", dio_rbd_supported() ? "yes" : "no");
}

/*
 * .after_fork: what must live in the process that serves: the rbd image
 * (librados' threads), then the block cache (its writeback thread).
 */
static int
dio_plugin_after_fork(void)
{
	struct dio_cache_opts o = { .size = cfg_cache_size, .dirty_pct = cfg_cache_dirty_limit,
				    .expire_ms = cfg_cache_writeback_age };
	struct dio_volume *cv;
	int ret;

	if (cfg_rbd && dio_plugin_open_rbd() < 0)
		return -1;
	if (cfg_cache == CACHE_NONE)
		return 0;
	dio_plugin_ctx_opts(cfg_engine, &o.ctx);
	ret = dio_cache_create(vol, &o, &cv);
	if (ret < 0) {
		nbdkit_error("cache=: cannot make the block cache: %s", strerror(-ret));
		return -1;
	}
	dio_volume_put(vol);
	vol = cv;
	nbdkit_debug("block cache of %" PRIu64 " bytes", cfg_cache_size);
	return 0;
}

/*
 * .open: connections share the volume; with a cache each has its own
 * writeback-error cursor.
 */
static void *
dio_plugin_open(int readonly)
{
	struct dio_plugin_conn *pc;

	if (cfg_cache == CACHE_NONE)
		return NBDKIT_HANDLE_NOT_NEEDED;
	pc = calloc(1, sizeof(*pc));
	if (!pc) {
		nbdkit_error("out of memory for a connection");
		nbdkit_set_error(ENOMEM);
	}
	return pc;
}

static void
dio_plugin_close(void *handle)
{
	if (cfg_cache != CACHE_NONE)
		free(handle);
}

/* The writer a request of handle's connection counts as, or NULL (no cache). */
static struct dio_cache_writer *
dio_plugin_writer(void *handle)
{
	return cfg_cache == CACHE_NONE ? NULL : &((struct dio_plugin_conn *)handle)->writer;
}

/*
 * This thread's ctx, created on first use. NULL after nbdkit_error and
 * nbdkit_set_error.
 */
static struct dio_ctx *
dio_plugin_ctx(void)
{
	struct dio_ctx_opts opts;
	struct dio_ctx *ctx;
	int ret;

	if (!ctx_key_made) {
		nbdkit_error("no per-thread engine key");
		nbdkit_set_error(ENOMEM);
		return NULL;
	}
	ctx = pthread_getspecific(ctx_key);
	if (ctx)
		return ctx;
	dio_plugin_ctx_opts(cfg_engine, &opts);
	ret = dio_ctx_create(&opts, &ctx);
	if (ret < 0)
		goto err;
	ret = -pthread_setspecific(ctx_key, ctx);
	if (ret < 0)
		goto err_destroy;
	return ctx;

err_destroy:
	dio_ctx_destroy(ctx);
err:
	nbdkit_error("cannot create the %s engine for this thread: %s",
		     dio_plugin_engine_str(cfg_engine), strerror(-ret));
	nbdkit_set_error(-ret);
	return NULL;
}

/* Report a failed request to nbdkit and return -1. */
static int
dio_plugin_fail(const char *what, uint64_t offset, uint64_t count, int ret)
{
	nbdkit_error("%s%s: %s of %" PRIu64 " bytes at offset %" PRIu64 ": %s",
		     cfg_file ? "" : cfg_rbd ? "rbd:" : "volume ", dio_plugin_what(), what, count,
		     offset, strerror(-ret));
	nbdkit_set_error(-ret);
	return -1;
}

/* Submit req on this thread's ctx and wait. 0 or -errno (-ENOMEM: no ctx). */
static int
dio_plugin_submit(struct dio_req *req)
{
	struct dio_ctx *ctx = dio_plugin_ctx();

	if (!ctx)
		return -ENOMEM;
	return dio_submit_sync(ctx, vol, req);
}

static int64_t
dio_plugin_get_size(void *handle)
{
	return vol->size;
}

/* .block_size: the true minimum (libdio does RMW below it, slowly). */
static int
dio_plugin_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
	uint32_t pref = 4096;

	if (vol->pbs > pref)
		pref = vol->pbs;
	if (vol->lbs > pref)
		pref = vol->lbs;
	if (pref > DIO_PLUGIN_MAX_REQ)
		pref = DIO_PLUGIN_MAX_REQ;
	*minimum = vol->lbs;
	*preferred = pref;
	*maximum = DIO_PLUGIN_MAX_REQ;
	return 0;
}

static int
dio_plugin_can_write(void *handle)
{
	return !cfg_readonly && !vol->readonly;
}

/* Flush is fdatasync, meaningful or harmless on every volume. */
static int
dio_plugin_can_flush(void *handle)
{
	return 1;
}

static int
dio_plugin_can_fua(void *handle)
{
	return NBDKIT_FUA_NATIVE;
}

static int
dio_plugin_can_trim(void *handle)
{
	return vol->can_trim;
}

/* libdio zeroes every volume: fast when it can, by writing zeros when not. */
static int
dio_plugin_can_zero(void *handle)
{
	return 1;
}

/* libdio fails DIO_REQ_FAST_ZERO up front when no fast method is left. */
static int
dio_plugin_can_fast_zero(void *handle)
{
	return 1;
}

static int
dio_plugin_can_extents(void *handle)
{
	return 1;
}

static int
dio_plugin_can_cache(void *handle)
{
	return NBDKIT_CACHE_NATIVE;
}

/*
 * Every connection writes the same O_DIRECT fd, or the one block cache in
 * front of it, and a flush writes back and fdatasyncs every write
 * completed on it; an rbd image is one librbd handle in the process, whose
 * flush covers every write too.
 */
static int
dio_plugin_can_multi_conn(void *handle)
{
	return 1;
}

static int
dio_plugin_is_rotational(void *handle)
{
	return vol->rotational;
}

static int
dio_plugin_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct dio_req req = { .op = DIO_REQ_READ, .pos = offset, .len = count, .buf = buf };
	int ret;

	/*
	 * nbdkit's buffers come from malloc and are rarely block-aligned:
	 * libdio then reads into a registered buffer of this thread's pool
	 * and copies, which is what the plugin would do itself.
	 */
	ret = dio_plugin_submit(&req);
	if (ret < 0)
		return dio_plugin_fail("read", offset, count, ret);
	return 0;
}

static int
dio_plugin_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
		  uint32_t flags)
{
	/* libdio only reads a WRITE buffer. */
	struct dio_req req = {
		.op = DIO_REQ_WRITE, .pos = offset, .len = count, .buf = (void *)buf,
		.writer = dio_plugin_writer(handle),
	};
	int ret;

	if (flags & NBDKIT_FLAG_FUA)
		req.flags |= DIO_REQ_FUA;
	if (cfg_cache == CACHE_READ)
		req.flags |= DIO_REQ_WRITETHROUGH;
	ret = dio_plugin_submit(&req);
	if (ret < 0)
		return dio_plugin_fail("write", offset, count, ret);
	return 0;
}

static int
dio_plugin_flush(void *handle, uint32_t flags)
{
	struct dio_req req = { .op = DIO_REQ_FLUSH, .writer = dio_plugin_writer(handle) };
	int ret;

	ret = dio_plugin_submit(&req);
	if (ret < 0)
		return dio_plugin_fail("flush", 0, vol->size, ret);
	return 0;
}

static int
dio_plugin_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct dio_req req = { .op = DIO_REQ_TRIM, .pos = offset, .len = count };
	int ret;

	if (flags & NBDKIT_FLAG_FUA)
		req.flags |= DIO_REQ_FUA;
	ret = dio_plugin_submit(&req);
	if (ret < 0)
		return dio_plugin_fail("trim", offset, count, ret);
	return 0;
}

static int
dio_plugin_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct dio_req req = { .op = DIO_REQ_ZERO, .pos = offset, .len = count };
	int ret;

	if (flags & NBDKIT_FLAG_FUA)
		req.flags |= DIO_REQ_FUA;
	if (!(flags & NBDKIT_FLAG_MAY_TRIM))
		req.flags |= DIO_REQ_NO_HOLE;
	if (flags & NBDKIT_FLAG_FAST_ZERO)
		req.flags |= DIO_REQ_FAST_ZERO;
	ret = dio_plugin_submit(&req);
	if (ret == -EOPNOTSUPP) {
		/*
		 * Not an error the operator must see: a fast zero that would
		 * be slow, which the client then writes itself, or nbdkit's
		 * fallback to .pwrite.
		 */
		nbdkit_debug("%s of %" PRIu32 " bytes at offset %" PRIu64 ": not supported",
			     flags & NBDKIT_FLAG_FAST_ZERO ? "fast zero" : "zero", count, offset);
		nbdkit_set_error(ENOTSUP);
		return -1;
	}
	if (ret < 0)
		return dio_plugin_fail("zero", offset, count, ret);
	return 0;
}

static uint32_t
dio_plugin_extent_type(uint32_t seg_type)
{
	switch (seg_type) {
	case DIO_SEG_HOLE:
		return NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
	case DIO_SEG_ZERO:
		return NBDKIT_EXTENT_ZERO;
	case DIO_SEG_UNRESERVED:
		return NBDKIT_EXTENT_HOLE;	/* data, but no space held for its copy */
	default:
		return 0;
	}
}

/* .extents: the volume's real map of [offset, offset + count), in rounds. */
static int
dio_plugin_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
		   struct nbdkit_extents *extents)
{
	struct dio_seg segs[DIO_PLUGIN_SEGS];
	uint64_t pos = offset, end = offset + count, next;
	struct dio_req req;
	uint32_t i;
	int ret;

	while (pos < end) {
		memset(&req, 0, sizeof(req));
		req.op = DIO_REQ_EXTENTS;
		req.pos = pos;
		req.len = end - pos;
		req.segs = segs;
		req.max_segs = DIO_PLUGIN_SEGS;
		ret = dio_plugin_submit(&req);
		if (ret < 0)
			return dio_plugin_fail("extents", pos, end - pos, ret);
		next = pos;
		for (i = 0; i < req.nsegs && i < DIO_PLUGIN_SEGS; i++) {
			if (nbdkit_add_extent(extents, segs[i].pos, segs[i].len,
					      dio_plugin_extent_type(segs[i].type)) == -1)
				return -1;
			next = segs[i].pos + segs[i].len;
		}
		/* libdio promises at least one segment; never loop without progress. */
		if (next <= pos)
			return dio_plugin_fail("extents (no progress)", pos, end - pos, -EIO);
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
		pos = next;
	}
	return 0;
}

static int
dio_plugin_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct dio_req req = { .op = DIO_REQ_CACHE, .pos = offset, .len = count };
	int ret;

	/* nbdkit-plugin(3): fail flags we do not know, they may demand semantics. */
	if (flags) {
		nbdkit_error("cache: unknown flags 0x%" PRIx32, flags);
		nbdkit_set_error(EINVAL);
		return -1;
	}
	ret = dio_plugin_submit(&req);
	if (ret < 0)
		return dio_plugin_fail("cache", offset, count, ret);
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "dio",
	.longname = "nbdkit dio plugin (dionbd direct-I/O engine)",
	.version = DIO_VERSION,
	.description = "Serve a file or block device with O_DIRECT through io_uring (libdio).",
	.load = dio_plugin_load,
	.unload = dio_plugin_unload,
	.config = dio_plugin_config,
	.config_complete = dio_plugin_config_complete,
	.config_help = dio_plugin_config_help,
	.magic_config_key = "file",
	.get_ready = dio_plugin_get_ready,
	.after_fork = dio_plugin_after_fork,
	.dump_plugin = dio_plugin_dump_plugin,
	.open = dio_plugin_open,
	.close = dio_plugin_close,
	.get_size = dio_plugin_get_size,
	.block_size = dio_plugin_block_size,
	.can_write = dio_plugin_can_write,
	.can_flush = dio_plugin_can_flush,
	.can_fua = dio_plugin_can_fua,
	.can_trim = dio_plugin_can_trim,
	.can_zero = dio_plugin_can_zero,
	.can_fast_zero = dio_plugin_can_fast_zero,
	.can_extents = dio_plugin_can_extents,
	.can_cache = dio_plugin_can_cache,
	.can_multi_conn = dio_plugin_can_multi_conn,
	.is_rotational = dio_plugin_is_rotational,
	.pread = dio_plugin_pread,
	.pwrite = dio_plugin_pwrite,
	.flush = dio_plugin_flush,
	.trim = dio_plugin_trim,
	.zero = dio_plugin_zero,
	.extents = dio_plugin_extents,
	.cache = dio_plugin_cache,
	/* Every failure path calls nbdkit_set_error. */
	.errno_is_preserved = 0,
};

/* Defined by NBDKIT_REGISTER_PLUGIN; the one symbol nbdkit looks up. */
NBDKIT_DLL_PUBLIC struct nbdkit_plugin *plugin_init(void);

NBDKIT_REGISTER_PLUGIN(plugin)
