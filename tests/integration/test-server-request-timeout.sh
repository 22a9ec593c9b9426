#!/usr/bin/env bash
# --request-timeout: a client that stalls inside a WRITE payload or a
# request header is dropped after the deadline, with a warning in the log;
# idle connections and slow but timely requests are not; others are
# served throughout and the stalled WRITE leaves nothing in the file.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-liveness

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail --request-timeout 3 "$f"
run server-liveness stall "$SOCK" 3 || fail "request deadline"
grep -F "request not received in full within 3 s" "$SRV_LOG" >/dev/null ||
	fail "no warning in the log for the dropped clients"
finish
