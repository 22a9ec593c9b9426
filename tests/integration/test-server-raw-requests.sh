#!/usr/bin/env bash
# A raw-socket client sends bad requests after GO, with simple and with
# structured replies: past the end (EINVAL, ENOSPC for writes), unaligned
# (EINVAL once block sizes were agreed, served by read-modify-write
# otherwise), 32 MiB (served) and 32 MiB + 1 (refused), unknown commands and
# flags: each with its NBD error and the stream in sync. Then a client that
# keeps 32 READs of 64 KiB in flight, sending new ones while a batch of
# replies is still coming: each reply whole, once, with its data; and the
# same burst ending in a bad magic.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-raw requests "$SOCK" || fail "bad requests"
run server-raw pipeline "$SOCK" || fail "READs pipelined 32 deep"
finish
