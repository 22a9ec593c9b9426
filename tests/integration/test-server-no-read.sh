#!/usr/bin/env bash
# A client that floods READs and never reads a reply: the daemon stops
# reading its socket (in-flight budget), stays small, and serves others.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-liveness

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-liveness no-read "$SOCK" "$SRV_PID" || fail "a client that never reads"
finish
