#!/usr/bin/env bash
# Long test (DIO_LONG=1; it skips otherwise): the kill -9 of one OSD of
# three (pools of size 3, min_size 2) under a fio write load with crc32c
# verify through an rbd export: the I/O waits while the cluster notices and
# goes on degraded, and every block verifies (zero errors). About a minute
# on two cores, on top of a three-OSD cluster's start.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
[ "${DIO_LONG:-0}" = 1 ] || skip "a long test (three OSDs): DIO_LONG=1 runs it"
requires fio qemu-io
CEPH_OSDS=3
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
ceph_c osd pool get "$POOL" size | grep -q 'size: 3' || fail "the pool is not of size 3"
ceph_c osd pool get "$POOL" min_size | grep -q 'min_size: 2' || fail "the pool's min_size is not 2"
rbd_c create --size 128M $POOL/img || fail "rbd create $POOL/img"

# rbd-timeout above the time the cluster takes to go on without the OSD.
start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS,rbd-timeout=90"
U=$(uri_of img)
qio_at "$U" -c "write -P 0x4b 100M 1M"

# Writes, then reads every block back checking its crc32c.
timeout 400 fio --name=verify --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k \
	--size=48M --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	--randrepeat=0 --output="$TMP/fio.out" 2> "$TMP/fio.err" &
LOAD_PID=$!
RBD_PIDS=("$LOAD_PID")
sleep 5
kill -0 "$LOAD_PID" 2>/dev/null || fail "fio ended before the kill: $(cat "$TMP/fio.out" "$TMP/fio.err")"
victim=$(cat "$CEPH_DIR/run/osd.1.pid")
kill -KILL "$victim"
echo "killed osd.1 (pid $victim) at $SECONDS s"
rc=0
wait "$LOAD_PID" || rc=$?
RBD_PIDS=()
echo "fio ended at $SECONDS s"
[ "$rc" = 0 ] || fail "fio failed ($rc): $(cat "$TMP/fio.out" "$TMP/fio.err")"
grep -q 'err= 0' "$TMP/fio.out" || fail "fio reported errors: $(cat "$TMP/fio.out")"
grep -E -q 'write: IOPS=' "$TMP/fio.out" || fail "fio wrote nothing: $(cat "$TMP/fio.out")"
ceph_c osd dump | grep -q '^osd\.1 down' || fail "osd.1 is not down after its kill"
# What was written before the kill reads back from the degraded image.
qio_at "$U" -r -c "read -P 0x4b 100M 1M"
finish img
