#!/usr/bin/env bash
# Read-only exports (-r, and ",readonly" on -e): READ_ONLY advertised, every
# write-type command EPERM with the stream in sync, reads still served, the
# file unchanged.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

f=$TMP/vol.img
head -c 4M /dev/urandom > "$f"
want=$(sha "$f")
start_server_or_fail -r "$f"
run server-raw readonly "$SOCK" || fail "-r: write commands on a read-only export"
finish
mkvol "$TMP/other.img" 1M
start_server_or_fail -e "ro=$f,readonly" -e "rw=$TMP/other.img"
if command -v nbdinfo >/dev/null; then
	nbdinfo --json "$(uri_of ro)" | grep '"is_read_only": true' >/dev/null ||
		fail "export ro is not read-only"
	nbdinfo --json "$(uri_of rw)" | grep '"is_read_only": false' >/dev/null ||
		fail "export rw is read-only"
fi
finish ro
[ "$(sha "$f")" = "$want" ] || fail "the read-only file changed"
