#!/usr/bin/env bash
# The block cache's readahead and NBD_CMD_CACHE (lib/cache-ra.c): on an
# export with cache=read, a sequential reader is read ahead by the cache
# (its READs find the data there; every byte checked against the file, also
# after another connection wrote into the stream), the connection's own
# readahead is not used; a random reader is never read ahead; CACHE fills
# the cache, so the READs of that range that follow all hit. The cache's
# summary at stop gives the counters. On both engines.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
nbdsh_check

f=$TMP/vol.img
# ra_counters LOG: "BYTES HITS MISSES WASTED PREFETCH" from the cache's summary.
ra_counters()
{
	sed -n 's/.*cache: readahead read \([0-9]*\) bytes, used by \([0-9]*\) READs, missed by \([0-9]*\), \([0-9]*\) bytes wasted; \([0-9]*\) bytes read for CACHE requests.*/\1 \2 \3 \4 \5/p' "$1"
}

for engine in $(test_engines); do
	rm -f "$f"
	head -c 24M /dev/urandom >"$f"
	start_server_or_fail -v --engine "$engine" --cache-size 32 -e "rd=$f,cache=read"
	VOL=$f nbdsh -u "$(uri_of rd)" -c '
import os

K, M = 1 << 10, 1 << 20
path = os.environ["VOL"]

def check(off, n):
    got = h.pread(n, off)
    with open(path, "rb") as fh:
        fh.seek(off)
        assert got == fh.read(n), "READ at %d differs from the file" % off

# a stream of 128 KiB READs over 16 MiB; another connection writes into it
b = nbd.NBD()
b.connect_uri(h.get_uri())
for i in range(128):
    check(i * 128 * K, 128 * K)
    if i == 40:
        b.pwrite(os.urandom(256 * K), 48 * 128 * K)
b.shutdown()
# CACHE on a range never read, then READs of it
h.cache(2 * M, 20 * M)
for i in range(8):
    check(20 * M + i * 256 * K, 256 * K)
'
	[ $? = 0 ] || fail "engine=$engine: a sequential reader through the cache"
	stop_server
	read -r bytes hits misses wasted prefetch < <(ra_counters "$SRV_LOG")
	[ -n "$bytes" ] || fail "engine=$engine: no readahead summary: $(grep 'cache:' "$SRV_LOG")"
	echo "$NAME: engine=$engine: sequential: read ahead $bytes bytes, $hits hits, $misses misses, $wasted wasted; CACHE $prefetch bytes"
	[ "$hits" -ge 64 ] || fail "engine=$engine: only $hits of 128 READs used readahead"
	[ "$bytes" -ge $((8 << 20)) ] || fail "engine=$engine: only $bytes bytes read ahead"
	[ "$prefetch" = $((2 << 20)) ] || fail "engine=$engine: CACHE read $prefetch bytes, not 2 MiB"
	grep -q "chunks answered a READ" "$SRV_LOG" &&
		fail "engine=$engine: the connection's readahead ran on a cached export"
	hit_line=$(grep -c "block cache" "$SRV_LOG")
	[ "$hit_line" -ge 1 ] || fail "engine=$engine: no block cache"
done

# A random reader: nothing read ahead.
start_server_or_fail -v --cache-size 32 -e "rd=$f,cache=read"
VOL=$f nbdsh -u "$(uri_of rd)" -c '
import os, random

K = 1 << 10
path = os.environ["VOL"]
rng = random.Random(7)
with open(path, "rb") as fh:
    for _ in range(200):
        off = rng.randrange(0, (24 << 20) // (4 * K)) * 4 * K
        fh.seek(off)
        assert h.pread(64 * K, off) == fh.read(64 * K), "READ at %d differs" % off
' || fail "a random reader through the cache"
stop_server
read -r bytes hits misses wasted prefetch < <(ra_counters "$SRV_LOG")
[ "$bytes" = 0 ] || fail "a random reader was read ahead: $bytes bytes"
echo "$NAME: random: read ahead $bytes bytes"
