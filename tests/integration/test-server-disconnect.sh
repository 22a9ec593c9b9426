#!/usr/bin/env bash
# Clients that vanish inside a WRITE payload (closed or half-closed, at
# several cut points): nothing of the WRITE lands, the daemon serves on.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-liveness

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-liveness mid-payload "$SOCK" || fail "disconnect mid-payload"
finish
[ "$(sha "$f")" = "$(sha <(head -c 64M /dev/zero))" ] || fail "a partial WRITE reached the file"
