#!/usr/bin/env bash
# An rbd export of a Ceph RBD image on a real (one-node) cluster: its size
# and block sizes, patterns written and read back by qemu-io (unaligned
# ones too), zeroes and trims, base:allocation from the object map (never
# written objects are holes), a copy in and out with nbdcopy compared by
# qemu-img, fio verifying its own writes with crc32c, and a snapshot
# served read-only.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io qemu-img nbdinfo nbdcopy fio
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
rbd_c create --size 256M $POOL/img || fail "rbd create $POOL/img"
rbd_c create --size 64M $POOL/copy || fail "rbd create $POOL/copy"
start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS" -e "copy=rbd:$POOL/copy,$RBD_OPTS"
U=$(uri_of img)

[ "$(nbdinfo --size "$U")" = 268435456 ] || fail "the size: $(nbdinfo --size "$U")"
nbdinfo "$U" > "$TMP/info"
grep -q 'block_size_minimum: 1$' "$TMP/info" || fail "minimum block size: $(cat "$TMP/info")"
grep -q 'block_size_preferred: 4096$' "$TMP/info" || fail "preferred block size: $(cat "$TMP/info")"
grep -q 'can_multi_conn: true' "$TMP/info" || fail "multi-conn not advertised"

qio_at "$U" -c "write -P 0x11 0 64k" -c "write -P 0x22 8M 1M" -c "write -P 0x33 100001 777" \
	-c "aio_write -P 0x44 20M 64k" -c "aio_write -P 0x45 21M 64k" -c "aio_flush" \
	-c "write -P 0x55 40M 12M" -c "write -z 44M 4M" -c "discard 48M 4M" -c "flush"
qio_at "$U" -c "read -P 0x11 0 64k" -c "read -P 0x22 8M 1M" -c "read -P 0x33 100001 777" \
	-c "read -P 0 100778 1k" -c "read -P 0x44 20M 64k" -c "read -P 0x45 21M 64k" \
	-c "read -P 0x55 40M 4M" -c "read -P 0 44M 8M" -c "read -P 0 100M 1M"

# The object map: objects (4 MiB) never written are holes; written ones data.
nbdinfo --map "$U" > "$TMP/map" || fail "nbdinfo --map"
grep -E -q '^ +0 +4194304 +0 +data' "$TMP/map" || fail "object 0 is not data: $(cat "$TMP/map")"
grep -E -q '^ +4194304 +4194304 +3 +hole,zero' "$TMP/map" ||
	fail "the never-written object at 4M is not a hole: $(cat "$TMP/map")"
grep -E -q '^ +50331648 +[0-9]+ +3 +hole,zero' "$TMP/map" ||
	fail "the discarded object at 48M and what follows are not a hole: $(cat "$TMP/map")"
# An unaligned start inside a data object (librbd would misplace it unrounded).
nbdinfo --map=base:allocation "$U" > /dev/null || fail "nbdinfo --map again"
timeout 60 qemu-img map -f raw --output=json --start-offset=8401945 --max-length=12M "$U" \
	> "$TMP/qmap" || fail "qemu-img map from inside an object"
grep -q '"start": 8401945, "length": 4180967, .*"data": true' "$TMP/qmap" ||
	fail "[8M+12345, 12M) of object 2 is not data: $(cat "$TMP/qmap")"
grep -q '"start": 12582912, "length": 8388608, .*"data": false' "$TMP/qmap" ||
	fail "[12M, 20M) is not a hole: $(cat "$TMP/qmap")"

# nbdcopy in, compare, and out again.
head -c 64M /dev/urandom > "$TMP/src"
timeout 120 nbdcopy "$TMP/src" "$(uri_of copy)" || fail "nbdcopy to the image"
timeout 120 qemu-img compare -f raw -F raw "$TMP/src" "$(uri_of copy)" ||
	fail "qemu-img compare after nbdcopy"
timeout 120 nbdcopy "$(uri_of copy)" "$TMP/back" || fail "nbdcopy from the image"
cmp "$TMP/src" "$TMP/back" || fail "what nbdcopy read back differs"

# fio writes random 4k blocks and verifies each with crc32c (bounded).
timeout 180 fio --name=verify --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k \
	--offset=128M --size=8M --iodepth=16 --verify=crc32c --verify_fatal=1 \
	--randrepeat=0 --output="$TMP/fio.out" || fail "fio: $(cat "$TMP/fio.out")"
grep -q 'err= 0' "$TMP/fio.out" || fail "fio reported errors: $(cat "$TMP/fio.out")"
finish img

# A snapshot is served read-only with the data of its time.
rbd_c snap create $POOL/img@s1 || fail "snap create"
start_server_or_fail -e "snap=rbd:$POOL/img@s1,$RBD_OPTS" -e "img=rbd:$POOL/img,$RBD_OPTS"
qio_at "$(uri_of img)" -c "write -P 0x66 0 64k"
qio_at "$(uri_of snap)" -r -c "read -P 0x11 0 64k" -c "read -P 0x22 8M 1M"
nbdinfo "$(uri_of snap)" | grep -q 'is_read_only: true' || fail "the snapshot is writable"
if timeout 60 qemu-io -f raw -c "write -P 0x77 0 4k" "$(uri_of snap)" > "$TMP/w" 2>&1 &&
	! grep -q -i "denied\|read-only\|not permitted" "$TMP/w"; then
	fail "a write to the snapshot succeeded: $(cat "$TMP/w")"
fi
finish snap
