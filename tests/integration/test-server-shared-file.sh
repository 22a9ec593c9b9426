#!/usr/bin/env bash
# Exports of one file share one volume: a write through one export reads back
# through another (its hole map must not go stale), whatever path names the
# file and in whatever order read-only and writable exports are listed.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io

f=$TMP/vol.img
mkvol "$f" 64M
ln "$f" "$TMP/hardlink.img"
ln -s "$f" "$TMP/symlink.img"


for engine in $(test_engines); do
	# The read-only export first: it must not make the volume read-only.
	start_server_or_fail -v --engine "$engine" -e ro="$f",readonly -e a="$f" \
		-e b="$TMP/hardlink.img" -e c="$TMP/symlink.img"
	# The issue's reproduction: written through a, a hole until then.
	qio_at "$(uri_of a)" -c "write -P 0xab 1M 64k"
	qio_at "$(uri_of b)" -c "read -P 0xab 1M 64k"
	qio_at "$(uri_of c)" -c "read -P 0xab 1M 64k"
	qio_at "$(uri_of ro)" -r -c "read -P 0xab 1M 64k"
	# And the other way round, with zeroes and trims in between.
	qio_at "$(uri_of c)" -c "write -P 0xcd 8M 1M" -c "write -z 8M 64k" -c "discard 9M 64k"
	qio_at "$(uri_of a)" -c "read -P 0 8M 64k" -c "read -P 0xcd 8320k 896k" -c "read -P 0 9M 64k"
	# Unaligned writes through two exports go through one RMW lock.
	qio_at "$(uri_of a)" -c "write -P 0x11 12M 4096"
	qio_at "$(uri_of b)" -c "write -P 0x22 12583937 100"
	qio_at "$(uri_of c)" -c "read -P 0x11 12M 1" -c "read -P 0x22 12583937 100" \
		-c "read -P 0x11 12582913 1024" -c "read -P 0x11 12584037 2971"
	# The read-only export stays read-only.
	if timeout 60 qemu-io -f raw -c "write -P 1 0 4096" "$(uri_of ro)" > "$TMP/ro.out" 2>&1 &&
	   ! grep -q -i 'error\|denied\|read-only\|failed' "$TMP/ro.out"; then
		fail "a write through the read-only export succeeded: $(cat "$TMP/ro.out")"
	fi
	grep -q "shares the open volume" "$SRV_LOG" || fail "the log does not say the volume is shared"
	finish ro
done
# Nothing but this daemon wrote: the file holds what the clients wrote.
cmp <(dd if="$f" bs=64k skip=16 count=1 status=none) <(head -c 65536 /dev/zero | tr '\0' '\253') ||
	fail "the file does not hold what was written"
