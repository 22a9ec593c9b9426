#!/usr/bin/env bash
# Image locking against the real QEMU tools, both ways: while dionbd serves
# a file, qemu-io/qemu-img/qemu-nbd cannot write it; while qemu-nbd holds it
# for writing, dionbd refuses to serve it (unless --image-locking off).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io qemu-img qemu-nbd

f=$TMP/vol.img
mkvol "$f" 16M
QEMU_LOCK_MSG='Failed to get "write" lock'
WRITING='another process (QEMU image lock) holds it for writing'
NO_WRITERS='another process does not allow writers'

# qemu_refused WHAT CMD...: CMD fails with QEMU's lock error.
qemu_refused()
{
	local what=$1
	shift
	if timeout 20 "$@" >"$TMP/out" 2>&1; then
		fail "$what was allowed while dionbd serves the file: $(cat "$TMP/out")"
	fi
	grep -F -- "$QEMU_LOCK_MSG" "$TMP/out" >/dev/null ||
		fail "$what failed, but not on the image lock: $(cat "$TMP/out")"
}

# qemu_ok WHAT CMD...: CMD succeeds, and its output shows no error.
qemu_ok()
{
	local what=$1
	shift
	timeout 20 "$@" >"$TMP/out" 2>&1 || fail "$what: $(cat "$TMP/out")"
	if grep -E -q 'Pattern verification failed|error|[Ff]ailed' "$TMP/out"; then
		fail "$what: $(cat "$TMP/out")"
	fi
}

# dionbd_refused WHAT MSG ARGS...: a second daemon, "dionbd -f ARGS", exits
# non-zero at start and logs MSG and the hint to turn locking off.
dionbd_refused()
{
	local what=$1 msg=$2 rc=0
	shift 2
	timeout 20 "$DIONBD" -f -U "$TMP/refused.sock" "$@" >"$TMP/out" 2>&1 || rc=$?
	[ "$rc" != 124 ] || fail "$what: dionbd started and served the file"
	[ "$rc" != 0 ] || fail "$what: dionbd exited with status 0: $(cat "$TMP/out")"
	grep -F -- "$msg" "$TMP/out" >/dev/null ||
		fail "$what: the message does not say '$msg': $(cat "$TMP/out")"
	grep -F -- "--image-locking off" "$TMP/out" >/dev/null ||
		fail "$what: the message does not name --image-locking off: $(cat "$TMP/out")"
	[ ! -e "$TMP/refused.sock" ] || fail "$what: a socket was left behind"
}

mkvol "$TMP/src.img" 16M
qemu-io -f raw -c 'write -P 0x11 0 64k' "$f" >/dev/null

# 1. dionbd serving the file read-write: every QEMU writer is refused.
start_server_or_fail "$f"
qemu_refused "qemu-io write" qemu-io -f raw -c 'write -P 0x22 0 4k' "$f"
qemu_refused "qemu-img convert" qemu-img convert -n -f raw -O raw "$TMP/src.img" "$f"
qemu_refused "qemu-img resize" qemu-img resize -f raw "$f" 32M
qemu_refused "qemu-nbd" qemu-nbd -f raw -k "$TMP/qemu-refused.sock" "$f"
dionbd_refused "a second read-write dionbd" "$WRITING" "$f"
# Nothing got through: the data is what the NBD client sees.
qemu_ok "read over NBD" qemu-io -f raw -c 'read -P 0x11 0 64k' "$URI"
check_served
stop_server

# Once dionbd is gone, QEMU may write again.
qemu_ok "qemu-io write after dionbd stopped" qemu-io -f raw -c 'write -P 0x33 0 4k' "$f"

# 2. dionbd serving it read-only: readers are welcome, writers are not.
start_server_or_fail -r "$f"
qemu_ok "qemu-img info" qemu-img info -f raw "$f"
qemu_ok "qemu-io read-only" qemu-io -r -f raw -c 'read -P 0x33 0 4k' "$f"
qemu_refused "qemu-io write" qemu-io -f raw -c 'write -P 0x44 0 4k' "$f"
dionbd_refused "a read-write dionbd" "$NO_WRITERS" "$f"
check_served
stop_server
qemu_ok "qemu-io write after dionbd -r stopped" qemu-io -f raw -c 'write -P 0x55 0 4k' "$f"

# 3. qemu-nbd holding the file for writing: dionbd refuses it, read-write
# and read-only alike, unless locking is off.
qemu-nbd -f raw -k "$TMP/qemu.sock" "$f" 2>"$TMP/qemu-nbd.log" &
QPID=$!
stop_qemu()
{
	kill -TERM "$QPID" 2>/dev/null || true
	wait "$QPID" 2>/dev/null || true
}
trap 'rc=$?; stop_qemu; lib_server_cleanup "$rc"' EXIT
for ((i = 0; i < 200; i++)); do
	[ -S "$TMP/qemu.sock" ] && break
	kill -0 "$QPID" 2>/dev/null || fail "qemu-nbd exited: $(cat "$TMP/qemu-nbd.log")"
	sleep 0.05
done
[ -S "$TMP/qemu.sock" ] || fail "qemu-nbd did not listen"

dionbd_refused "dionbd while qemu-nbd writes" "$WRITING" "$f"
dionbd_refused "dionbd -r while qemu-nbd writes" "$WRITING" -r "$f"

start_server_or_fail --image-locking off "$f"
qemu_ok "read over NBD, locking off" qemu-io -f raw -c 'read -P 0x55 0 4k' "$URI"
check_served
stop_server

# The config file's key does the same.
printf '[server]\nimage-locking = no\n[export]\npath = %s\n' "$f" >"$TMP/off.conf"
start_server_or_fail -c "$TMP/off.conf"
check_served
stop_server

stop_qemu
trap lib_server_cleanup EXIT
echo "$NAME: ok"
