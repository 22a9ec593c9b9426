#!/usr/bin/env bash
# fio --ioengine=nbd writes with crc32c verification and reads them back
# (bounded size and time).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio was built without the nbd engine"

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
for bs in 4k 64k; do
	timeout 240 fio --name=verify --ioengine=nbd --uri="$URI" --rw=randwrite --bs=$bs \
		--size=32M --iodepth=16 --numjobs=1 --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --runtime=60 --output="$TMP/fio-$bs.out" ||
		fail "fio bs=$bs: $(tail -n 20 "$TMP/fio-$bs.out")"
	grep -q 'err= 0' "$TMP/fio-$bs.out" || fail "fio bs=$bs reported errors"
done
finish
