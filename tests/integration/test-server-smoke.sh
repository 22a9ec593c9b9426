#!/usr/bin/env bash
# Smoke test of the dionbd daemon: start it on a Unix socket, nbdinfo,
# write and read back with nbdsh and nbdcopy, stop it with SIGTERM.
set -euo pipefail

: "${DIO_BUILD:?}" "${DIO_TEST_DIR:?}"
DIONBD=$DIO_BUILD/server/dionbd
requires() {
	command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed"; exit 77; }
}
requires nbdinfo
requires nbdsh
requires nbdcopy
[ -x "$DIONBD" ] || { echo "SKIP: $DIONBD not built"; exit 77; }
# nbdsh runs "python3": use the system one, which has libnbd's bindings.
if ! python3 -c 'import nbd' 2>/dev/null; then
	if /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
		export PATH=/usr/bin:$PATH
	else
		echo "SKIP: python3 nbd bindings missing"; exit 77
	fi
fi

mkdir -p "$DIO_TEST_DIR"
dir=$(mktemp -d "$DIO_TEST_DIR/server-smoke.XXXXXX")
sock=$dir/nbd.sock
pid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

disk=$dir/disk.img
truncate -s 64M "$disk"
"$DIONBD" -f -v -t 2 -U "$sock" -e "ro=$disk,readonly,description=read-only view" \
	"$disk" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	sleep 0.05
done
[ -S "$sock" ] || { cat "$dir/log"; echo "FAIL: no socket"; exit 1; }
uri="nbd+unix:///?socket=$sock"

# Capabilities.
nbdinfo "$uri" >"$dir/info"
grep -q 'export-size: 67108864' "$dir/info"
grep -q 'can_multi_conn: true' "$dir/info"
grep -q 'block_size_maximum: 33554432' "$dir/info"
grep -q 'base:allocation' "$dir/info"
nbdinfo --list "$uri" | grep 'read-only view' >/dev/null
nbdinfo "nbd+unix:///ro?socket=$sock" | grep 'is_read_only: true' >/dev/null

# Write, read back, zero, trim, errors that keep the connection usable.
nbdsh -u "$uri" -c '
import errno, os
buf = os.urandom(1 << 20)
h.pwrite(buf, 12288)
assert h.pread(1 << 20, 12288) == buf
h.pwrite(buf, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(1 << 20, 4096) == buf
h.flush()
h.zero(65536, 0)
assert h.pread(65536, 0) == bytes(65536)
h.set_strict_mode(0)    # let the server, not libnbd, refuse bad requests
try:
    h.pread(4096, 64 << 20)
    raise SystemExit("read past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
try:
    h.pwrite(bytes(4096), (64 << 20) - 512)
    raise SystemExit("write past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
assert h.pread(4096, 65536) == buf[65536 - 4096:65536]
'
nbdsh -u "nbd+unix:///ro?socket=$sock" -c '
import errno
try:
    h.set_strict_mode(0)
    h.pwrite(bytes(512), 0)
    raise SystemExit("write to a read-only export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'

# nbdcopy round trip with checksum.
dd if=/dev/urandom of="$dir/src" bs=1M count=64 status=none
nbdcopy "$dir/src" "$uri"
nbdcopy "$uri" "$dir/dst"
[ "$(md5sum <"$dir/src")" = "$(md5sum <"$dir/dst")" ] || { echo "FAIL: nbdcopy data differs"; exit 1; }

# Graceful stop.
kill -TERM "$pid"
for _ in $(seq 100); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if kill -0 "$pid" 2>/dev/null; then
	echo "FAIL: dionbd still running 5 s after SIGTERM"; exit 1
fi
wait "$pid" || { cat "$dir/log"; echo "FAIL: dionbd exit status $?"; exit 1; }
pid=
[ ! -e "$sock" ] || { echo "FAIL: socket left behind"; exit 1; }
echo "PASS"
