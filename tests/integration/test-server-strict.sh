#!/usr/bin/env bash
# libnbd with strict mode off: the daemon itself refuses out-of-range,
# unaligned, oversized requests and unknown flags with the right errno.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-strict

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-strict errors "$URI" || fail "errors"
finish
