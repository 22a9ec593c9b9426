/* SPDX-License-Identifier: MIT */
/*
 * The crash simulator's case files: failing states saved, traces of threaded
 * workloads, cases loaded and replayed. See crash.h.
 */

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crash.h"
#include "helper.h"

/*
 * A threaded workload's case is its trace: the order its threads made
 * does not come again, so the case holds the log itself. In place of the
 * step lines of a workload's case:
 *   trace SIZE EVENTS
 *   base OFF SECTOR	the base's sectors that are not free-space garbage
 *   req OP VOL SEC NSEC FUA SEQ SUB DONE RET ON	every request, in order
 *   write OFF LEN FUA SUB DONE	every device write, then a "d SECTOR" line
 *			for each of its sectors
 *   flush SUB DONE	every device flush
 * A SECTOR is "z" (zeros), "p VOL SEC SEQ" (that payload) or its 1024 hex
 * digits. Replay loads the log into dl and rq and the base, and checks
 * the states as after a run: no thread, nothing run.
 */
static void
put_sector(FILE *f, const uint8_t *s)
{
	uint8_t p[SEC];
	uint32_t o;
	uint64_t seq;
	int v;

	memcpy(&v, s + 4, 4);
	memcpy(&o, s + 8, 4);
	memcpy(&seq, s + 16, 8);
	if (test_all_zero(s, SEC)) {
		fputs("z\n", f);
		return;
	}
	if (!memcmp(s, "PAYL", 4) && v >= 0 && v < NSLOT) {
		payload(p, v, o, seq);
		if (!memcmp(p, s, SEC)) {
			fprintf(f, "p %d %u %llu\n", v, o, (unsigned long long)seq);
			return;
		}
	}
	for (int i = 0; i < (int)SEC; i++)
		fprintf(f, "%02x", s[i]);
	fputc('\n', f);
}

/* The sector of text t (put_sector's) into s; false if it is none. */
static bool
get_sector(const char *t, uint8_t *s)
{
	unsigned long long seq;
	unsigned int o, b;
	int v;

	if (t[0] == 'z' && (t[1] == '\n' || !t[1])) {
		memset(s, 0, SEC);
		return true;
	}
	if (sscanf(t, "p %d %u %llu", &v, &o, &seq) == 3) {
		if (v < 0 || v >= NSLOT)
			return false;
		payload(s, v, o, seq);
		return true;
	}
	for (int i = 0; i < (int)SEC; i++) {
		if (sscanf(t + 2 * i, "%2x", &b) != 1)
			return false;
		s[i] = (uint8_t)b;
	}
	return true;
}

static uint64_t tfill[MAXW];	/* bytes of each write loaded so far */

static void
write_trace(FILE *f)
{
	uint8_t g[SEC];

	fprintf(f, "trace %llu %d\n", (unsigned long long)img_size, dl.ev);
	for (uint64_t o = 0; o < img_size; o += SEC) {
		memset(g, 0xa5 ^ (int)(o / SEC), SEC);	/* garbage()'s */
		memcpy(g, "GARBAGE", 7);
		if (memcmp(base + o, g, SEC)) {
			fprintf(f, "base %llu ", (unsigned long long)o);
			put_sector(f, base + o);
		}
	}
	for (int i = 0; i < rq.nr; i++) {
		const struct rreq *r = &rq.r[i];

		fprintf(f, "req %c %d %u %u %d %llu %d %d %d %d\n", opchar[r->s.op], r->s.vol,
			r->s.sec, r->s.nsec, r->s.fua, (unsigned long long)r->seq, r->sub, r->done,
			r->ret, r->on);
	}
	for (int i = 0; i < dl.nw; i++) {
		const struct wrec *w = &dl.w[i];

		fprintf(f, "write %llu %llu %d %d %d\n", (unsigned long long)w->off,
			(unsigned long long)w->len, w->fua, w->sub, w->done);
		for (uint64_t o = 0; o < w->len; o += SEC) {
			fputs("d ", f);
			put_sector(f, w->data + o);
		}
	}
	for (int i = 0; i < dl.nf; i++)
		fprintf(f, "flush %d %d\n", dl.f[i].sub, dl.f[i].done);
}

/* One line of a trace into dl, rq and base: 1 taken, 0 not a trace line, -1 bad. */
static int
trace_line(const char *line, struct workload *wl)
{
	unsigned long long a, b;
	unsigned int sec, nsec;
	int v, fua, sub, done, ret, on, n = 0;
	char c;

	if (sscanf(line, "trace %llu %d", &a, &v) == 2) {
		if (a != img_size)
			return -1;
		wl->trace = true;
		garbage(base, 0, img_size);
		dlog_reset(&dl);
		for (int i = 0; i < rq.nr; i++)
			free(rq.r[i].buf);
		memset(&rq, 0, sizeof(rq));
		dl.ev = v;
		return 1;
	}
	if (!wl->trace)
		return 0;
	if (sscanf(line, "base %llu %n", &a, &n) == 1 && n)
		return a % SEC == 0 && a < img_size && get_sector(line + n, base + a) ? 1 : -1;
	if (sscanf(line, "req %c %d %u %u %d %llu %d %d %d %d", &c, &v, &sec, &nsec, &fua, &a,
		   &sub, &done, &ret, &on) == 10) {
		const char *o = memchr(opchar, c, OP_NR);

		if (!o || rq.nr >= MAXR || v < 0 || v >= NSLOT)
			return -1;
		rq.r[rq.nr++] = (struct rreq){ .s = { (int)(o - opchar), v, sec, nsec, fua != 0 },
					       .seq = a, .sub = sub, .done = done, .ret = ret,
					       .on = on };
		return 1;
	}
	if (sscanf(line, "write %llu %llu %d %d %d", &a, &b, &fua, &sub, &done) == 5) {
		if (dl.nw >= MAXW || b % SEC || !b || a + b > img_size)
			return -1;
		dl.w[dl.nw] = (struct wrec){ .off = a, .len = b, .data = malloc(b),
					     .fua = fua != 0, .sub = sub, .done = done };
		need(dl.w[dl.nw].data, "out of memory");
		tfill[dl.nw++] = 0;
		return 1;
	}
	if (line[0] == 'd' && line[1] == ' ') {
		struct wrec *w = &dl.w[dl.nw - 1];

		if (!dl.nw || tfill[dl.nw - 1] >= w->len ||
		    !get_sector(line + 2, w->data + tfill[dl.nw - 1]))
			return -1;
		tfill[dl.nw - 1] += SEC;
		return 1;
	}
	if (sscanf(line, "flush %d %d", &sub, &done) == 2) {
		if (dl.nf >= MAXW)
			return -1;
		dl.f[dl.nf++] = (struct frec){ .sub = sub, .done = done };
		return 1;
	}
	return 0;
}

/* Whether the trace loaded is whole: every write's sectors there. */
static bool
trace_whole(void)
{
	for (int i = 0; i < dl.nw; i++)
		if (tfill[i] != dl.w[i].len)
			return false;
	return true;
}

/* A case file of workload wl's crash state cs (see load_case) to f. */
void
write_case(FILE *f, const struct workload *wl, const struct cstate *cs)
{
	fprintf(f, "# dionbd pool crash case: %s\n", failmsg);
	fprintf(f, "# replay: test-pool-crash --replay FILE\n");
	fprintf(f, "seed %llu\norder %llu\nfail %d %llu\n", (unsigned long long)wl->seed,
		(unsigned long long)wl->order, wl->fail_step, (unsigned long long)wl->fail_from);
	if (wl->trace)
		write_trace(f);
	for (int i = 0; i < wl->n; i++)
		fprintf(f, "step %c %d %u %u %d %d\n", opchar[wl->s[i].op], wl->s[i].vol,
			wl->s[i].sec, wl->s[i].nsec, wl->s[i].fua, wl->s[i].par);
	fprintf(f, "state %d %d %u %u %d\nrtorn %d %u %u\nsel", cs->k, cs->tw, cs->ta, cs->tb,
		cs->rk, cs->rtw, cs->rta, cs->rtb);
	for (int i = 0; i < cs->nsel; i++)
		fprintf(f, " %d", cs->sel[i]);
	fprintf(f, "\nrsel");
	for (int i = 0; i < cs->nrsel; i++)
		fprintf(f, " %d", cs->rsel[i]);
	fprintf(f, "\n");
	print_log(f);
}

void
save_case(const struct workload *wl, const struct cstate *cs)
{
	char name[600];
	FILE *f;

	if (!run.save_dir || run.saved >= MAXSAVE)
		return;
	run.saved++;
	mkdir(run.save_dir, 0755);
	snprintf(name, sizeof(name), "%s/crash-%d-w%llu-%llu-%llu-k%d-%d.case", run.save_dir,
		 (int)getpid(), (unsigned long long)workloads, (unsigned long long)wl->seed,
		 (unsigned long long)wl->order, cs->k, run.saved);
	f = fopen(name, "w");
	if (!f) {
		fprintf(stderr, "crash simulator: cannot save %s: %s\n", name, strerror(errno));
		return;
	}
	write_case(f, wl, cs);
	fclose(f);
	fprintf(stderr, "crash simulator: saved %s\n", name);
}

/* ---- saved cases ---- */

bool
load_case(const char *file, struct workload *wl, struct cstate *cs)
{
	FILE *f = fopen(file, "r");
	char line[2 * SEC + 64];

	if (!f) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return false;
	}
	memset(wl, 0, sizeof(*wl));
	memset(cs, 0, sizeof(*cs));
	wl->fail_step = -1;
	cs->k = -1;
	cs->rtw = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		char c;
		int v, fua, par, n;
		unsigned int sec, nsec;
		int t = trace_line(line, wl);

		if (t < 0)
			goto bad;
		if (t > 0)
			continue;
		if (sscanf(line, "seed %llu", &a) == 1)
			wl->seed = a;
		else if (sscanf(line, "order %llu", &a) == 1)
			wl->order = a;
		else if (sscanf(line, "fail %d %llu", &v, &b) == 2) {
			wl->fail_step = v;
			wl->fail_from = b;
		} else if (sscanf(line, "step %c %d %u %u %d %d", &c, &v, &sec, &nsec, &fua,
				  &par) == 6 && wl->n < MAXR) {
			const char *o = memchr(opchar, c, OP_NR);
			int op = o ? (int)(o - opchar) : -1;

			/* nsec: sectors, a volume, or a size in chunks (C, R, H) */
			if (op < 0 || v < 0 || v >= NSLOT ||
			    (op < OP_VCREATE && sec + nsec > VSECS) ||
			    (names_two(op) && nsec >= NSLOT) || (op >= OP_VCREATE && nsec > WIDE))
				goto bad;
			wl->s[wl->n++] = (struct step){ op, v, sec, nsec, fua != 0, par != 0 };
		} else if (sscanf(line, "rtorn %d %u %u", &cs->rtw, &cs->rta, &cs->rtb) == 3) {
			continue;
		} else if (sscanf(line, "state %d %d %u %u %d", &cs->k, &cs->tw, &cs->ta, &cs->tb,
				  &cs->rk) == 5) {
			continue;
		} else if (!strncmp(line, "sel", 3) || !strncmp(line, "rsel", 4)) {
			bool r = line[0] == 'r';
			char *p = line + (r ? 4 : 3);
			int *arr = r ? cs->rsel : cs->sel, *cnt = r ? &cs->nrsel : &cs->nsel;

			while (sscanf(p, "%d%n", &v, &n) == 1 && *cnt < MAXW) {
				arr[(*cnt)++] = v;
				p += n;
			}
		}
	}
	fclose(f);
	if ((wl->n || (wl->trace && trace_whole())) && cs->k >= 0)
		return true;
	fprintf(stderr, "%s: not a crash case\n", file);
	return false;
bad:
	fclose(f);
	fprintf(stderr, "%s: not a crash case: %s", file, line);
	return false;
}

/* Replay one case: its own state, then every state at its crash point. */
bool
replay_case(const char *file)
{
	static struct workload wl;
	static struct cstate cs;
	uint64_t f0 = run.failures;
	bool ok;

	if (!load_case(file, &wl, &cs))
		return false;
	if (wl.trace) {
		cur = &wl;	/* its log is loaded: as a workload just run */
		compute_frozen();
	} else {
		run_workload(&wl);
	}
	if (cs.k > dl.ev)
		cs.k = dl.ev;	/* the code changed since: its log is shorter */
	ok = check_state(&cs);
	if (!ok) {
		fprintf(stderr, "%s: the saved state fails: %s\n", file, failmsg);
		snprintf(run.first, sizeof(run.first), "%s: %s", file, failmsg);
	}
	if (crash_point(&cs, file) > 0) {
		fprintf(stderr, "%s: %llu states at its crash point fail, the first: %s\n", file,
			(unsigned long long)(run.failures - f0), run.first);
		ok = false;
	}
	return ok;
}

/* Replay a case file, or every *.case in a directory: the number that fail. */
int
replay_path(const char *p)
{
	struct stat st;
	struct dirent **ents;
	int n, bad = 0;

	if (stat(p, &st) < 0) {
		fprintf(stderr, "%s: %s\n", p, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode))
		return !replay_case(p);
	n = scandir(p, &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(ents[i]->d_name);

		if (l > 5 && !strcmp(ents[i]->d_name + l - 5, ".case")) {
			char *f;

			need(asprintf(&f, "%s/%s", p, ents[i]->d_name) > 0, "asprintf");
			bad += !replay_case(f);
			fprintf(stderr, "crash simulator: replayed %s\n", f);
			free(f);
		}
		free(ents[i]);
	}
	free(ents);
	return bad;
}
