#!/usr/bin/env bash
# Multi-conn: four connections to one export; FLUSH on one makes the
# others' completed writes visible to it and present in the file.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-strict

f=$TMP/vol.img
mkvol "$f" 16M
start_server_or_fail "$f"
run server-strict multiconn "$URI" "$f" || fail "multi-conn"
finish
