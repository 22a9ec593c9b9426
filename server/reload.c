/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP: read the config file again and apply it as the control socket
 * would: exports that appeared are added, exports that went are removed
 * (their connections finish within stop-timeout), exports whose path
 * changed are removed and added, exports whose description, allow-list or
 * read-only flag changed are replaced without disturbing their clients,
 * and TLS credentials are loaded again. A file that does not parse, or
 * names a volume that cannot be opened, is refused whole: nothing changes.
 * [server] settings are not changed while serving; a changed one is
 * logged as taking effect at the next start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Whether two optional strings differ. */
static bool
reload_str_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

/* Whether the allow-lists or descriptions of a and b differ. */
static bool
reload_export_changed(const struct export *a, const struct export *b)
{
	if (reload_str_differ(a->description, b->description) || a->nallow != b->nallow ||
	    a->readonly != b->readonly || a->cache != b->cache)
		return true;
	for (size_t i = 0; i < a->nallow; i++)
		if (strcmp(a->allow[i], b->allow[i]))
			return true;
	return false;
}

/* Log the [server] settings that differ: they take effect at the next start. */
static void
reload_warn_settings(const struct server_cfg *old, const struct server_cfg *new)
{
	const struct {
		const char *key;
		bool differ;
	} checks[] = {
		{ "unix", reload_str_differ(old->unix_path, new->unix_path) },
		{ "port", reload_str_differ(old->port, new->port) },
		{ "threads", old->threads != new->threads },
		{ "engine", old->engine != new->engine },
		{ "readonly", old->readonly != new->readonly },
		{ "tls", old->tls != new->tls },
		{ "tls-creds", reload_str_differ(old->tls_creds, new->tls_creds) },
		{ "tls-psk-file", reload_str_differ(old->tls_psk_file, new->tls_psk_file) },
		{ "readahead", old->readahead != new->readahead },
		{ "poll-us", old->poll_us != new->poll_us },
		{ "poll-yield", old->poll_yield != new->poll_yield },
		{ "poll-check", old->poll_check != new->poll_check },
		{ "submit-batch", old->submit_batch != new->submit_batch },
		{ "pool-discard", old->pool_discard != new->pool_discard },
		{ "max-inflight", old->max_inflight != new->max_inflight },
		{ "image-locking", old->image_locking != new->image_locking },
		{ "control", reload_str_differ(old->control_path, new->control_path) },
	};

	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		if (checks[i].differ)
			log_warn("SIGHUP: setting '%s' changed: it takes effect at the next start",
				 checks[i].key);
}

/*
 * Open the volume of every export of new that is new or has a new path,
 * to be sure the whole file can be applied; the references are kept in
 * vols[] (same order as new->exports) so the files stay open and locked
 * until the adds below share them. 0 or -1 (logged).
 */
static int
reload_probe(struct control *ctl, const struct server_cfg *new, struct dio_volume **vols)
{
	const struct server_cfg *cfg = ctl->srv->cfg;
	char why[512];

	for (size_t i = 0; i < new->nexports; i++) {
		const struct export *spec = &new->exports[i];
		struct export *cur = exports_find(&ctl->srv->exports, spec->name,
						  strlen(spec->name));
		bool same = cur && !strcmp(cur->path, spec->path);

		export_put(cur);
		if (same)
			continue;
		if (exports_open_volume(spec, spec->readonly || cfg->readonly, cfg, why, sizeof(why),
					&vols[i]) < 0) {
			log_err("SIGHUP: %s: export '%s': %s; nothing was changed", cfg->config_path,
				spec->name, why);
			return -1;
		}
	}
	return 0;
}

int
reload_config(struct control *ctl)
{
	const struct server_cfg *cfg = ctl->srv->cfg;
	struct dio_volume **vols = NULL;
	unsigned int added = 0, removed = 0, changed = 0;
	struct server_cfg new;
	struct export **cur;
	char err[768];
	size_t ncur;
	int ret = -1;

	if (!cfg->config_path) {
		log_warn("SIGHUP: there is no config file (-c) to read again");
		return -1;
	}
	log_info("SIGHUP: reading %s again", cfg->config_path);
	config_init(&new);
	if (config_load_file(&new, cfg->config_path) < 0 || config_check_tls(&new) < 0) {
		log_err("SIGHUP: %s refused; nothing was changed", cfg->config_path);
		goto out;
	}
	if (!new.nexports) {
		log_err("SIGHUP: %s has no export; nothing was changed", cfg->config_path);
		goto out;
	}
	vols = calloc(new.nexports, sizeof(*vols));
	if (!vols || reload_probe(ctl, &new, vols) < 0)
		goto out;
	reload_warn_settings(cfg, &new);

	/* Gone, or moved to another path: removed (a moved one is added back below). */
	ncur = exports_snapshot(&ctl->srv->exports, &cur);
	for (size_t i = 0; i < ncur; i++) {
		const struct export *spec = config_find_export(&new, cur[i]->name,
							       strlen(cur[i]->name));

		if (cur[i]->cli) {
			if (spec)
				log_warn("SIGHUP: export '%s' is given on the command line: the "
					 "file's is ignored", spec->name);
			continue;
		}
		if (!spec || strcmp(spec->path, cur[i]->path)) {
			manage_remove_export(ctl, cur[i]->name, cfg->stop_timeout);
			removed += !spec;
		} else if (reload_export_changed(cur[i], spec)) {
			if (exports_replace(&ctl->srv->exports, spec, cfg, err, sizeof(err)) < 0)
				log_err("SIGHUP: export '%s' not changed: %s", spec->name, err);
			else
				changed++;
		}
	}
	exports_snapshot_free(cur, ncur);
	for (size_t i = 0; i < new.nexports; i++) {
		const struct export *spec = &new.exports[i];

		if (exports_has(&ctl->srv->exports, spec->name))
			continue;
		if (manage_add_export(ctl, spec, err, sizeof(err)) < 0)
			log_err("SIGHUP: export '%s' not added: %s", spec->name, err);
		else
			added++;
	}
	if (cfg->tls != TLS_OFF && manage_reload_tls(ctl, err, sizeof(err)) < 0)
		log_err("SIGHUP: %s", err);
	log_info("SIGHUP: %s applied: %u export(s) added, %u removed, %u changed",
		 cfg->config_path, added, removed, changed);
	ret = 0;
out:
	for (size_t i = 0; vols && i < new.nexports; i++)
		dio_volume_put(vols[i]);
	free(vols);
	config_free(&new);
	return ret;
}
