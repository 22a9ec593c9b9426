#!/usr/bin/env bash
# nbdkit dio: qemu-img convert/compare and qemu-io patterns through the plugin.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires qemu-img qemu-io

src=$TMP/src.raw
mkfile "$src" 32M
dd if=/dev/urandom of="$src" bs=1M count=3 seek=2 conv=notrunc status=none
dd if=/dev/urandom of="$src" bs=64K count=5 seek=300 conv=notrunc status=none
for engine in $(test_engines); do
	disk=$TMP/disk-$engine
	mkfile "$disk" 32M
	# $uri is nbd+unix:///?socket=...; qemu takes the same form.
	dio_nbdkit "$PLUGIN" file="$disk" engine=$engine --run "
		set -e
		qemu-img convert -n -f raw -O raw '$src' \"\$uri\"
		qemu-img compare -f raw -F raw '$src' \"\$uri\"
		qemu-io -f raw -c 'write -P 0xa5 1M 64k' -c 'write -P 0x5a 1114112 4k' \
			-c 'write -z 3M 512k' -c 'discard 20M 1M' -c flush \"\$uri\"
		qemu-io -f raw -c 'read -P 0xa5 1M 64k' -c 'read -P 0x5a 1114112 4k' \
			-c 'read -P 0 3M 512k' -c 'read -P 0 20M 1M' -c 'read -P 0 30M 1M' \"\$uri\"
		qemu-io -f raw -c 'write -P 0x11 4097 100' -c 'read -P 0x11 4097 100' \"\$uri\"
	" > "$TMP/log" 2>&1 || { cat "$TMP/log"; fail "engine=$engine: qemu-img/qemu-io"; }
	if grep -q "Pattern verification failed" "$TMP/log"; then
		cat "$TMP/log"
		fail "engine=$engine: qemu-io pattern mismatch"
	fi
	echo "$NAME: engine=$engine ok"
done
