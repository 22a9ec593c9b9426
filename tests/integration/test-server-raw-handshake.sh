#!/usr/bin/env bash
# A raw-socket client abuses the handshake: plain newstyle, unknown client
# flags and options, LIST/INFO, option length 0xffffffff, commands before GO,
# too many options, and the handshake cut after every byte (half-closed,
# reset, or left hanging while other clients are served).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
run server-raw handshake "$SOCK" || fail "handshake abuse"
check_served
run server-raw truncate "$SOCK" || fail "truncated handshakes"
finish
# Commands before GO must not have touched the volume.
[ "$(sha "$f")" = "$(sha <(head -c 64M /dev/zero))" ] || fail "the volume changed"
