/* SPDX-License-Identifier: MIT */
/*
 * What an operator changes while dionbd serves, whoever asks (the control
 * socket's methods in control-rpc.c, SIGHUP in reload.c): exports added and
 * removed, and the TLS credentials. The export table and the TLS context
 * have their own locks; reactors are told what concerns them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server.h"

/* Connections now open on export e (all reactors). */
unsigned int
manage_export_conns(struct control *ctl, const struct export *e)
{
	unsigned int n = 0;

	pthread_mutex_lock(&ctl->srv->conns_lock);
	for (const struct conn *c = ctl->srv->conns; c; c = c->all_next)
		n += c->exp == e;
	pthread_mutex_unlock(&ctl->srv->conns_lock);
	return n;
}

int
manage_add_export(struct control *ctl, const struct export *spec, char *err, size_t errlen)
{
	struct export *e;
	int ret;

	ret = exports_add(&ctl->srv->exports, spec, ctl->srv->cfg, err, errlen);
	if (ret < 0)
		return ret;
	/* The reactors' buffers are aligned for the block sizes they started with. */
	e = exports_find(&ctl->srv->exports, spec->name, strlen(spec->name));
	if (e && e->vol->lbs > ctl->buf_align) {
		snprintf(err, errlen, "%s: block size %u is larger than the buffers' alignment "
			 "(%zu): restart dionbd to serve it", spec->path, e->vol->lbs,
			 ctl->buf_align);
		export_put(e);
		manage_remove_export(ctl, spec->name, 0);
		return -EINVAL;
	}
	export_put(e);
	log_info("export '%s' added", spec->name);
	return 0;
}

unsigned int
manage_remove_export(struct control *ctl, const char *name, unsigned int timeout)
{
	struct export *e = exports_unlink(&ctl->srv->exports, name);
	unsigned int n;

	if (!e)
		return 0;
	e->drop_at = stats_now_ns() + (uint64_t)timeout * 1000000000u;
	n = manage_export_conns(ctl, e);
	/* removed (set by exports_unlink) and drop_at are read after the wake-up's lock */
	for (unsigned int i = 0; i < ctl->nreactors; i++)
		reactor_sweep(&ctl->reactors[i]);
	log_info("export '%s' removed; %u connection(s) finish within %u s", name, n, timeout);
	export_put(e);
	return n;
}

int
manage_reload_tls(struct control *ctl, char *err, size_t errlen)
{
	struct tls_ctx *t;

	if (ctl->srv->cfg->tls == TLS_OFF) {
		snprintf(err, errlen, "TLS is off: there is nothing to reload");
		return -1;
	}
	if (tls_ctx_new(ctl->srv->cfg, &t) < 0) {
		snprintf(err, errlen, "the credentials could not be loaded (the log says why); "
			 "the old ones stay in use");
		return -1;
	}
	tls_ctx_swap(ctl->srv, t);
	log_info("TLS credentials reloaded");
	return 0;
}

