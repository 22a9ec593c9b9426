#!/usr/bin/env bash
# The block cache's metrics (dionbd_cache_*, --metrics) move by what real
# clients did through a cache=writeback export with a 2 MiB cache:
# - nothing at first: no hit, no miss, nothing held or dirty;
# - 256 4 KiB READs of distinct blocks of written data, in random order: 256
#   misses and 1 MiB held; the same blocks again: 256 hits, no new miss;
# - 256 KiB of WRITEs: dirty (or written back by age), then a FLUSH: no
#   dirty byte left, at least 256 KiB written back;
# - a flood of 8 MiB of random writes from 4 connections, the page read
#   every few ms meanwhile: held and dirty bytes never over the bound (the
#   dirty limit is half of it), writes throttled, at least 4 MiB written
#   back; the peak the log gives at stop (no metric has it) is within the
#   bound and no lower than any sample.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
PY=/usr/bin/python3
"$PY" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed for $PY"
"$PY" -c 'import prometheus_client.parser' 2>/dev/null ||
	skip "no prometheus_client for $PY (python3-prometheus-client)"

f=$TMP/vol.img
head -c 16M /dev/urandom >"$f"
start_metrics -v --readahead off --cache-size 2 -e "c=$f,cache=writeback"

"$PY" - "$MURL" "$(uri_of c)" >"$TMP/out" 2>&1 <<'PY' || fail "cache metrics: $(cat "$TMP/out")"
import random, sys, threading, time, urllib.request
import nbd
from prometheus_client.parser import text_string_to_metric_families

url, uri = sys.argv[1:3]
K, M = 1024, 1 << 20
SIZE = 2 * M
problems = []

def page():
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    vals = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("dionbd_cache_") and s.labels.get("export") == "c":
                vals[s.name] = s.value
    return vals

def eq(what, got, want):
    if got != want:
        problems.append("%s: %s, expected %s" % (what, got, want))

def le(what, got, bound):
    if got > bound:
        problems.append("%s: %s, over %s" % (what, got, bound))

names = ["size_bytes", "used_bytes", "peak_bytes", "lent_bytes", "zero_copy_hits_total",
         "stable_copies_total", "dirty_bytes", "hits_total", "misses_total",
         "writeback_bytes_total", "writeback_errors_total", "throttled_total"]
m = page()
for n in names:
    if "dionbd_cache_" + n not in m:
        sys.exit("no dionbd_cache_%s for export c: %s" % (n, m))
g = lambda m, n: m["dionbd_cache_" + n]
eq("bound", g(m, "size_bytes"), SIZE)
for n in names[1:]:
    eq("idle " + n, g(m, n), 0)

h = nbd.NBD()
h.connect_uri(uri)
blocks = list(range(256))
def read_blocks(what, hits, misses):
    random.shuffle(blocks)
    for b in blocks:
        h.pread(4 * K, b * 4 * K)
    m = page()
    eq("hits after " + what, g(m, "hits_total"), hits)
    eq("misses after " + what, g(m, "misses_total"), misses)
    return m
m = read_blocks("256 cold READs", 0, 256)
eq("held after 1 MiB read", g(m, "used_bytes"), 1 * M)
m = read_blocks("the same READs", 256, 256)
eq("hits answered without a copy", g(m, "zero_copy_hits_total"), 256)
eq("bytes lent once the replies are sent", g(m, "lent_bytes"), 0)

t0 = time.monotonic()
for i in range(64):
    h.pwrite(b"\x5c" * (4 * K), 4 * M + i * 4 * K)
m = page()
if time.monotonic() - t0 < 1.5:  # before any writeback by age (2 s)
    eq("dirty after 256 KiB written", g(m, "dirty_bytes"), 256 * K)
    eq("written back before the FLUSH", g(m, "writeback_bytes_total"), 0)
le("dirty after 256 KiB written", g(m, "dirty_bytes"), 256 * K)
le("held", g(m, "used_bytes"), SIZE)
h.flush()
m = page()
eq("dirty after FLUSH", g(m, "dirty_bytes"), 0)
if g(m, "writeback_bytes_total") < 256 * K:
    problems.append("written back after FLUSH: %s" % g(m, "writeback_bytes_total"))
eq("writeback errors", g(m, "writeback_errors_total"), 0)
h.shutdown()

# the flood, and the page read meanwhile
wb0 = g(m, "writeback_bytes_total")
done = threading.Event()
samples = []
def sampler():
    while not done.is_set():
        samples.append(page())
        time.sleep(0.005)
th = threading.Thread(target=sampler)
th.start()
def writer(seed):
    r = random.Random(seed)
    c = nbd.NBD()
    c.connect_uri(uri)
    buf = bytes([seed]) * (4 * K)
    for i in range(512):
        while c.aio_in_flight() >= 16:
            c.poll(-1)
        c.aio_pwrite(buf, r.randrange(16 * M // (4 * K)) * 4 * K)
    while c.aio_in_flight():
        c.poll(-1)
    c.flush()
    c.shutdown()
ws = [threading.Thread(target=writer, args=(s,)) for s in (1, 2, 3, 4)]
for w in ws:
    w.start()
for w in ws:
    w.join()
done.set()
th.join()
samples.append(page())
if len(samples) < 5:
    problems.append("only %d samples of the page during the flood" % len(samples))
for s in samples:
    le("held during the flood", g(s, "used_bytes"), SIZE)
    le("the peak gauge during the flood", g(s, "peak_bytes"), SIZE)
    le("held above the peak gauge of the same page", g(s, "used_bytes"), g(s, "peak_bytes"))
    le("dirty during the flood", g(s, "dirty_bytes"), SIZE // 2)
end = samples[-1]
eq("dirty after the flood's FLUSHes", g(end, "dirty_bytes"), 0)
if g(end, "throttled_total") < 1:
    problems.append("8 MiB through a 1 MiB dirty limit: no write throttled")
# 2048 writes over 4096 blocks: about 1600 distinct ones, some rewritten while dirty
if g(end, "writeback_bytes_total") - wb0 < 4 * M:
    problems.append("the flood wrote back %s bytes" % (g(end, "writeback_bytes_total") - wb0))
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("max_used", int(max(g(s, "used_bytes") for s in samples)))
print("samples", len(samples), "throttled", int(g(end, "throttled_total")))
PY
cat "$TMP/out"
max_used=$(awk '$1 == "max_used" { print $2 }' "$TMP/out")
finish c
peak=$(sed -n 's/.*cache: \([0-9]*\) of 2097152 bytes at most were used.*/\1/p' "$SRV_LOG")
[ -n "$peak" ] || fail "no cache summary in the log: $(tail -n 5 "$SRV_LOG")"
[ "$peak" -le 2097152 ] && [ "$peak" -ge "$max_used" ] ||
	fail "the log's peak $peak: over the 2 MiB bound or below a sample ($max_used)"
echo "$NAME: ok (peak $peak bytes)"
