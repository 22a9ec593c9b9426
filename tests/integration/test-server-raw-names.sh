#!/usr/bin/env bash
# Export names at the protocol's limit: 4096 bytes are served (GO, INFO,
# EXPORT_NAME), 4097 are refused (TOO_BIG or INVALID) with the stream in sync.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

f=$TMP/vol.img
g=$TMP/long.img
mkvol "$f" 1M
mkvol "$g" 2M
long=$(head -c 4096 /dev/zero | tr '\0' a)
start_server_or_fail -e "$long=$g" "$f"
run server-raw names "$SOCK" || fail "long names"
finish "$long"
