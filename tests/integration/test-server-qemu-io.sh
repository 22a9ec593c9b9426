#!/usr/bin/env bash
# qemu-io over NBD: patterned writes read back with -P, zeroes and discards.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
qio() { qio_at "$URI" "$@"; }
qio -c "write -P 0x11 0 64k" -c "write -P 0x22 64k 1M" -c "write -P 0x33 33M 31M" \
    -c "aio_write -P 0x44 2M 512k" -c "aio_flush" -c "write -z 10M 1M" -c "discard 40M 1M"
qio -c "read -P 0x11 0 64k" -c "read -P 0x22 64k 1M" -c "read -P 0x33 33M 7M" \
    -c "read -P 0 40M 1M" -c "read -P 0x33 41M 23M" -c "read -P 0x44 2M 512k" \
    -c "read -P 0 10M 1M" -c "read -P 0 20M 4M"
# Unaligned to the preferred size: qemu does the read-modify-write if it must.
qio -c "write -P 0x55 4097 5000" -c "read -P 0x55 4097 5000" -c "read -P 0x11 0 4096"
finish
