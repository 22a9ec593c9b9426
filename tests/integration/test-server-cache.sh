#!/usr/bin/env bash
# The block cache (cache=, --cache-size): exports of one file with
# cache=writeback, read and none share the volume's one cache, and random
# mixed traffic over all of them reads exactly what was written; FLUSH
# makes writeback data durable (it survives SIGKILL); sub-block writes stay
# exact; a write flood never takes the cache past a 1 MiB bound; an
# export without cache= stays as it was (the rest of the suite).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-aio server-cache

for engine in $(test_engines); do
	f=$TMP/vol-$engine.img
	mkvol "$f" 32M
	start_server_or_fail -v --engine "$engine" --cache-size 4 \
		-e "wb=$f,cache=writeback" -e "rd=$f,cache=read" -e "direct=$f"
	grep -q "block cache of 4 MiB for $f" "$SRV_LOG" || fail "no log line names the cache"
	run server-aio "$(uri_of wb) $(uri_of direct) $(uri_of rd)" "$f" 3000 ||
		fail "engine=$engine: mixed traffic over three exports of one file"
	run server-cache subblock "$(uri_of wb)" "$(uri_of direct)" ||
		fail "engine=$engine: sub-block writes"
	finish wb
	echo "$NAME: engine=$engine: shared cache ok"
done

# FLUSH durability: the daemon is killed right after the FLUSH reply.
f=$TMP/kill.img
mkvol "$f" 8M
start_server_or_fail -e "wb=$f,cache=writeback"
run server-cache flush "$(uri_of wb)" "$f" || fail "FLUSH through the cache"
kill -KILL "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=
run server-cache check "$f" || fail "flushed data lost to SIGKILL"

# A stop (SIGTERM) writes back what no FLUSH asked for.
f=$TMP/stop.img
mkvol "$f" 8M
start_server_or_fail -e "wb=$f,cache=writeback"
run server-cache noflush "$(uri_of wb)" "$f" || fail "WRITE through the cache"
stop_server
run server-cache check "$f" || fail "dirty data lost at a clean stop"

# The memory bound under a write flood: the cache's own account at stop.
f=$TMP/flood.img
mkvol "$f" 32M
start_server_or_fail -v --cache-size 1 -e "wb=$f,cache=writeback"
run server-aio "$(uri_of wb)" "$f" 3000 || fail "write flood through a 1 MiB cache"
finish wb
peak=$(sed -n 's/.*cache: \([0-9]*\) of 1048576 bytes at most were used.*/\1/p' "$SRV_LOG")
[ -n "$peak" ] || fail "no cache summary in the log: $(tail -n 5 "$SRV_LOG")"
[ "$peak" -le 1048576 ] || fail "the cache held $peak bytes, over its 1 MiB bound"
grep -q "writes throttled" "$SRV_LOG" || fail "no writeback summary"
echo "$NAME: a 1 MiB cache peaked at $peak bytes under the flood"

# Refused: a cache for a file another export already serves without one.
f=$TMP/refuse.img
mkvol "$f" 1M
if start_server -e "a=$f" -e "b=$f,cache=bogus" 2>/dev/null; then
	stop_server
	fail "cache=bogus was accepted"
fi
grep -q "bad value 'bogus' for 'cache'" "$SRV_LOG" || fail "no message for cache=bogus"
echo "$NAME: ok"
