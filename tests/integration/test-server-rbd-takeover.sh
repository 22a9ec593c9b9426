#!/usr/bin/env bash
# Fencing on takeover between two gateways of one rbd image. Gateway A
# serves the image read-write (it holds the image's exclusive lock) under a
# fio write load. Gateway B with rbd-takeover=off refuses to start, naming
# A's lock. B with rbd-takeover=on breaks A's lock (A is blocklisted) and
# serves: from then on every write through A fails (ESHUTDOWN), A says in
# its log that it was fenced and keeps running, nothing A is asked to
# write lands, and what is written through B verifies. Never two writers.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires fio qemu-io
nbdsh_check
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
rbd_c create --size 128M $POOL/img || fail "rbd create $POOL/img"

# Gateway A; its pid, socket and log are kept apart from B's.
start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS"
A_PID=$SRV_PID A_LOG=$SRV_LOG A_URI=$(uri_of img)
SRV_PID=
RBD_PIDS=("$A_PID")
qio_at "$A_URI" -c "write -P 0xa1 0 1M"

# A write load on A (4k random writes, bounded): fenced off, it must fail.
timeout 120 fio --name=load --ioengine=nbd --uri="$A_URI" --rw=randwrite --bs=4k \
	--size=32M --iodepth=8 --time_based --runtime=60 --verify_state_save=0 \
	--output="$TMP/load.out" 2> "$TMP/load.err" &
LOAD_PID=$!
RBD_PIDS=("$LOAD_PID" "$A_PID")
sleep 3
kill -0 "$LOAD_PID" 2>/dev/null || fail "the load on A ended early: $(cat "$TMP/load.out")"

# B without takeover: refused, naming the holder of the lock; A unharmed.
"$DIONBD" -f -U "$TMP/b0.sock" -e "img=rbd:$POOL/img,$RBD_OPTS" > "$TMP/b0.log" 2>&1 &
B0_PID=$!
for ((i = 0; i < 600; i++)); do
	[ ! -S "$TMP/b0.sock" ] && kill -0 "$B0_PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$B0_PID" 2>/dev/null; then
	kill -KILL "$B0_PID"
	wait "$B0_PID" 2>/dev/null || true
	fail "a second gateway served the image (or hung) while A holds its lock"
fi
rc=0
wait "$B0_PID" || rc=$?
[ "$rc" != 0 ] || fail "the second gateway exited 0"
grep -E -q "exclusive lock is held by [0-9.]+:[0-9]+/[0-9]+ .*rbd-takeover=on" "$TMP/b0.log" ||
	fail "unclear refusal: $(cat "$TMP/b0.log")"
kill -0 "$LOAD_PID" 2>/dev/null || fail "the load on A stopped when B was refused: $(cat "$TMP/load.out")"

# B takes over while A is loaded.
start=$SECONDS
start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS,rbd-takeover=on"
B_URI=$(uri_of img)
grep -E -q "taking over: breaking the exclusive lock of [0-9.]+:[0-9]+/[0-9]+" "$SRV_LOG" ||
	fail "B did not say whose lock it broke: $(cat "$SRV_LOG")"
echo "takeover took $((SECONDS - start)) s"

# A's load fails: fio stops with an error.
rc=0
wait "$LOAD_PID" || rc=$?
RBD_PIDS=("$A_PID")
[ "$rc" != 0 ] || fail "the write load on A went on after the takeover: $(cat "$TMP/load.out")"
[ "$rc" != 124 ] || fail "the write load on A hung after the takeover"
grep -q "Cannot send after transport endpoint shutdown" "$TMP/load.err" ||
	fail "the load on A failed otherwise than with ESHUTDOWN: $(cat "$TMP/load.err")"

# Every write through A fails with ESHUTDOWN; A is alive and says why.
timeout 60 nbdsh -u "$A_URI" -c - > "$TMP/a.out" 2>&1 <<PY || fail "A after the takeover: $(cat "$TMP/a.out")"
import errno
for off, flags in ((0, 0), (2 << 20, nbd.CMD_FLAG_FUA), (100 << 20, 0)):
    try:
        h.pwrite(bytearray([0xee]) * 4096, off, flags)
    except nbd.Error as e:
        assert e.errnum == errno.ESHUTDOWN, "write error %s, not ESHUTDOWN" % e
    else:
        raise AssertionError("a write through the fenced gateway succeeded")
for what in (lambda: h.zero(4096, 8192), lambda: h.trim(4096, 16384), lambda: h.flush()):
    try:
        what()
    except nbd.Error as e:
        assert e.errnum == errno.ESHUTDOWN, "error %s, not ESHUTDOWN" % e
    else:
        raise AssertionError("a request to the fenced gateway succeeded")
PY
kill -0 "$A_PID" 2>/dev/null || fail "A died when fenced"
grep -q "rbd:$POOL/img: fenced: another client took the image's exclusive lock over" "$A_LOG" ||
	fail "A did not log that it was fenced: $(cat "$A_LOG")"

# B serves: its writes verify, and none of A's late writes landed.
qio_at "$B_URI" -c "write -P 0xb1 4M 1M" -c "read -P 0xb1 4M 1M"
timeout 180 fio --name=verify --ioengine=nbd --uri="$B_URI" --rw=randwrite --bs=4k \
	--offset=64M --size=16M --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	--randrepeat=0 --output="$TMP/fio.out" || fail "fio on B: $(cat "$TMP/fio.out")"
grep -q 'err= 0' "$TMP/fio.out" || fail "fio on B reported errors: $(cat "$TMP/fio.out")"
timeout 60 nbdsh -u "$B_URI" -c - > "$TMP/b.out" 2>&1 <<PY || fail "A's late writes: $(cat "$TMP/b.out")"
for off in (0, 2 << 20):
    assert h.pread(4096, off) != bytearray([0xee]) * 4096, "a fenced write of A landed at %d" % off
assert h.pread(4096, 100 << 20) == bytearray(4096), "a fenced write of A landed at 100M"
PY

# A still stops cleanly (its handle is blocklisted), by PID.
SRV_PID_B=$SRV_PID SRV_LOG_B=$SRV_LOG SOCK_B=$SOCK
SRV_PID=$A_PID SRV_LOG=$A_LOG SOCK=${A_URI#*socket=}
RBD_PIDS=()
stop_server 60
SRV_PID=$SRV_PID_B SRV_LOG=$SRV_LOG_B SOCK=$SOCK_B
finish img
