#!/usr/bin/env bash
# SIGTERM with 8 x 64 requests in flight: the daemon finishes or fails them
# and exits 0 within seconds; so it does after a client that hung up right
# after a refused request.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-aio

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-aio "$URI" "$f" sigterm > "$TMP/aio.out" 2>&1 &
client=$!
# Past its initial read of the whole export (slow on a loaded machine): then
# a stop finds 8 x 64 requests in flight.
for ((i = 0; i < 600; i++)); do
	grep -q 'requests in flight' "$TMP/aio.out" 2>/dev/null && break
	kill -0 "$client" 2>/dev/null || break
	sleep 0.05
done
sleep 0.5
kill -0 "$client" 2>/dev/null || fail "the client ended early: $(cat "$TMP/aio.out")"
start=$(date +%s)
stop_server 10
echo "$NAME: the daemon stopped in $(($(date +%s) - start)) s with requests in flight"
wait "$client" || fail "the client: $(cat "$TMP/aio.out")"
grep -q 'went away' "$TMP/aio.out" || fail "the client: $(cat "$TMP/aio.out")"

# One reactor, so no other I/O on it can hide a connection left behind.
start_server_or_fail -t 1 "$f"
run server-raw bad-then-eof "$SOCK" || fail "a refused request, then EOF"
sleep 0.5
stop_server 10
