#!/usr/bin/env bash
# nbdcopy round trip: a file with data and holes copied into the export and
# back out; checksums of source, backing file and copy agree.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires nbdcopy

src=$TMP/src.img
mkvol "$src" 96M
for mib in 0 7 33 50 95; do
	dd if=/dev/urandom of="$src" bs=1M count=1 seek=$mib conv=notrunc status=none
done
f=$TMP/vol.img
mkvol "$f" 96M
start_server_or_fail "$f"
timeout 120 nbdcopy --flush "$src" "$URI" || fail "nbdcopy into the export"
timeout 120 nbdcopy "$URI" "$TMP/out.img" || fail "nbdcopy out of the export"
want=$(sha "$src")
[ "$(sha "$TMP/out.img")" = "$want" ] || fail "the copy out differs"
[ "$(sha "$f")" = "$want" ] || fail "the backing file differs"
# And with several connections and requests in flight.
timeout 120 nbdcopy --connections=4 --requests=32 "$URI" - | sha256sum | grep -q "^$want" ||
	fail "nbdcopy --connections=4 differs"
finish
