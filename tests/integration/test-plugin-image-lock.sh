#!/usr/bin/env bash
# nbdkit dio locks its file as QEMU locks images: qemu-io cannot write a
# file it serves (read-only: qemu-io may still read it), nbdkit dio refuses
# a file qemu-nbd holds for writing, and locking=off turns both off.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires qemu-io qemu-nbd

f=$TMP/disk
mkfile "$f" 4M
qemu-io -f raw -c 'write -P 0x11 0 64k' "$f" >/dev/null
QEMU_LOCK_MSG='Failed to get "write" lock'
WRITING='another process (QEMU image lock) holds it for writing'

# under_nbdkit EXPECT ARGS... -- CMD: run CMD while nbdkit dio ARGS serves
# the file; EXPECT is ok (CMD succeeds) or locked (CMD fails on the lock).
under_nbdkit()
{
	local expect=$1 args=() rc=0
	shift
	while [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	shift
	dio_nbdkit "$PLUGIN" file="$f" "${args[@]}" --run "$*" >"$TMP/out" 2>&1 || rc=$?
	case $expect in
	ok)
		[ "$rc" = 0 ] || fail "${args[*]}: '$*' failed: $(cat "$TMP/out")" ;;
	locked)
		[ "$rc" != 0 ] || fail "${args[*]}: '$*' was allowed: $(cat "$TMP/out")"
		grep -F -- "$QEMU_LOCK_MSG" "$TMP/out" >/dev/null ||
			fail "${args[*]}: '$*' failed, but not on the lock: $(cat "$TMP/out")" ;;
	esac
}

under_nbdkit locked -- qemu-io -f raw -c "'write -P 0x22 0 4k'" "$f"
under_nbdkit locked locking=on -- qemu-img resize -f raw "$f" 8M
under_nbdkit ok readonly=true -- qemu-io -r -f raw -c "'read -P 0x11 0 64k'" "$f"
under_nbdkit locked readonly=true -- qemu-io -f raw -c "'write -P 0x22 0 4k'" "$f"
under_nbdkit ok locking=off -- qemu-io -f raw -c "'write -P 0x33 0 4k'" "$f"
# nbdkit gone, QEMU may write again.
qemu-io -f raw -c 'write -P 0x44 0 4k' "$f" >"$TMP/out" 2>&1 || fail "write after nbdkit: $(cat "$TMP/out")"

# qemu-nbd holds the file for writing: nbdkit dio will not serve it.
qemu-nbd -f raw -k "$TMP/qemu.sock" "$f" 2>"$TMP/qemu-nbd.log" &
QPID=$!
trap 'kill -TERM "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null; rm -rf "$TMP"' EXIT
for ((i = 0; i < 200; i++)); do
	[ -S "$TMP/qemu.sock" ] && break
	kill -0 "$QPID" 2>/dev/null || fail "qemu-nbd exited: $(cat "$TMP/qemu-nbd.log")"
	sleep 0.05
done
[ -S "$TMP/qemu.sock" ] || fail "qemu-nbd did not listen"
for ro in false true; do
	if dio_nbdkit "$PLUGIN" file="$f" readonly=$ro --run true >"$TMP/out" 2>&1; then
		fail "readonly=$ro: nbdkit dio served a file qemu-nbd writes"
	fi
	grep -F -- "$WRITING" "$TMP/out" >/dev/null ||
		fail "readonly=$ro: the error does not say '$WRITING': $(cat "$TMP/out")"
done
under_nbdkit ok locking=off -- nbdinfo --size '"$uri"'
echo "$NAME: ok"
