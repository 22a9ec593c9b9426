/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator with every device op failing from the Nth on. See crash.h.
 */

#include <string.h>

#include "crash.h"
#include "helper.h"

/* ---- fail every device op from the Nth on ---- */

/*
 * Run wl with every device op from the Nth after step wl->fail_step starts
 * failing, N = 1, 2, ... until that step succeeds; check every crash state
 * of each run. The N that first succeeded, or 0.
 */
uint64_t
fail_from_nth(struct workload *wl, const char *name)
{
	for (uint64_t n = 1; n < 200; n++) {
		wl->fail_from = n;
		run_workload(wl);
		if (crash_states(name))
			return 0;
		if (rq.r[wl->fail_step].ret == 0)
			return n;
	}
	return 0;
}

/*
 * Pool create with every device op from the Nth on failing, over garbage:
 * a failed create leaves nothing that opens as a pool; a crash state that
 * opens is an empty pool that checks clean.
 */
uint64_t
fail_create_nth(void)
{
	struct dio_tpool_create_opts co = { .chunk_size = CHUNK, .journal_blocks = 8,
					    .max_volumes = 4, .size = img_size };
	struct dio_tpool_opts o = { .no_direct = true, .io = &rec_io_hooks, .errbuf = errbuf,
				    .errlen = sizeof(errbuf) };
	struct dio_tpool_opts so = { .no_direct = true, .errbuf = errbuf, .errlen = sizeof(errbuf) };
	uint8_t *junk = malloc(img_size);
	uint64_t done = 0;

	need(junk, "out of memory");
	garbage(junk, 0, img_size);
	for (uint64_t n = 1; n < 200 && !done; n++) {
		struct dio_tpool *p;
		int ret, vol[MAXW];

		file_put(junk);
		dlog_reset(&dl);
		memset(&rec, 0, sizeof(rec));
		rec.on = true;
		rec.fail_from = n;
		ret = dio_tpool_create(path, &co, &o);
		rec.on = false;
		rec.fail_from = 0;
		if (ret == 0) {
			done = n;
			if (dio_tpool_open(path, &so, &p) < 0) {
				run.failures++;
				snprintf(run.first, sizeof(run.first),
					 "create succeeded (ops failing from %llu) but the pool does "
					 "not open: %s", (unsigned long long)n, errbuf);
				break;
			}
			dio_tpool_close(p);
		} else if (dio_tpool_open(path, &so, &p) == 0) {
			dio_tpool_close(p);
			run.failures++;
			snprintf(run.first, sizeof(run.first),
				 "create failing from op %llu left a pool that opens",
				 (unsigned long long)n);
			break;
		}
		/* Every crash state of this run: not a pool, or an empty clean one. */
		for (int k = 0; k <= dl.ev; k++) {
			int nv = volatile_set(&dl, k, vol);

			for (int m = 0; m < 2 + 2 * nv; m++) {
				int sel[MAXW], ns = 0;
				struct memdev md = { .img = img, .size = img_size };
				struct dio_tpool_io h = { .pread = md_pread, .pwrite = md_pwrite,
							  .flush = md_flush, .priv = &md };
				struct dio_tpool_opts ro = { .readonly = true, .no_direct = true,
							     .io = &h };
				struct dio_tpool_check_result res;
				struct dio_tpool_vol_info *vi;
				size_t nvi = 0;

				for (int j = 0; j < nv; j++)
					if (m < 2 ? m == 1 : ((m - 2) / 2 == j) == (m % 2 == 0))
						sel[ns++] = vol[j];
				build(img, junk, img_size, &dl, k, sel, ns, -1, 0, 0);
				states++;
				if (dio_tpool_open(path, &ro, &p) < 0)
					continue;
				ret = dio_tpool_volume_list(p, &vi, &nvi);
				free(ret == 0 ? vi : NULL);
				dio_tpool_close(p);
				if (ret == 0 && nvi == 0 && dio_tpool_check(path, &ro, NULL, NULL, &res) == 0 &&
				    !res.problems && !md.writes)
					continue;
				if (!run.failures++)
					snprintf(run.first, sizeof(run.first),
						 "create failing from op %llu, crash at %d: a pool that "
						 "is not empty and clean", (unsigned long long)n, k);
			}
		}
	}
	free(junk);
	return run.failures ? 0 : done;
}
