#!/usr/bin/env bash
# nbdkit dio: nbdcopy a random image in and out (sparse, several connections),
# checksums equal.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires nbdcopy sha256sum

src=$TMP/src
mkfile "$src" 48M
dd if=/dev/urandom of="$src" bs=1M count=7 seek=1 conv=notrunc status=none
dd if=/dev/urandom of="$src" bs=4K count=9 seek=5000 conv=notrunc status=none
dd if=/dev/urandom of="$src" bs=1M count=5 seek=43 conv=notrunc status=none
want=$(sha256sum < "$src")
for engine in $(test_engines); do
	disk=$TMP/disk-$engine
	mkfile "$disk" 48M
	dio_nbdkit "$PLUGIN" file="$disk" engine=$engine \
		--run "nbdcopy --connections=4 '$src' \"\$uri\" && nbdcopy \"\$uri\" '$TMP/out'" ||
		fail "engine=$engine: nbdcopy"
	[ "$(sha256sum < "$TMP/out")" = "$want" ] || fail "engine=$engine: copied out differs"
	[ "$(sha256sum < "$disk")" = "$want" ] || fail "engine=$engine: file differs"
	rm -f "$TMP/out"
	echo "$NAME: engine=$engine ok"
done
