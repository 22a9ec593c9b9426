#!/usr/bin/env bash
# dionbd-pool volume resize with the daemon: a shrink frees the chunks past
# the new end (free count back, check clean) and keeps the data before it;
# the daemon serves a grown volume at its new size (nbdinfo --size), with
# zeros where the shrink cut off; while the daemon has the pool open,
# resize and repair are refused (the pool's lock) and say why.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io nbdinfo jq
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"

P=$TMP/pool.img
truncate -s 128M "$P"
"$POOLTOOL" create --chunk-size 64K "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" vm1 16M >/dev/null || fail "volume create vm1"
free_chunks() { "$POOLTOOL" dump --json "$P" | jq '.space.free'; }
free0=$(free_chunks)

start_server_or_fail -e vm1="pool:$P/vm1"
[ "$(nbdinfo --size "$(uri_of vm1)")" = 16777216 ] || fail "vm1's size"
qio_at "$(uri_of vm1)" -c "write -P 0x5a 0 8M" -c "flush"
# The pool is the daemon's: the tool is refused, and says so.
if "$POOLTOOL" volume resize "$P" vm1 32M 2> "$TMP/err"; then
	fail "resize while the daemon has the pool"
fi
grep -q "open in another process" "$TMP/err" || fail "resize refusal: $(cat "$TMP/err")"
rc=0
"$POOLTOOL" repair "$P" > "$TMP/out" 2>&1 || rc=$?
[ $rc = 1 ] || fail "repair while the daemon has the pool: exit $rc: $(cat "$TMP/out")"
grep -q "repair refused: .*open in another process" "$TMP/out" ||
	fail "repair refusal: $(cat "$TMP/out")"
finish vm1

[ "$(free_chunks)" = $((free0 - 128)) ] || fail "8M written: $(free_chunks) chunks free of $free0"
# Shrink to 2M: 96 of the 128 chunks come back.
"$POOLTOOL" volume resize "$P" vm1 2M || fail "shrink"
[ "$(free_chunks)" = $((free0 - 32)) ] || fail "after shrink: $(free_chunks) free, want $((free0 - 32))"
"$POOLTOOL" check "$P" > "$TMP/check.out" || fail "check after shrink: $(cat "$TMP/check.out")"
grep -q '^0 problems, 0 leaked chunks' "$TMP/check.out" || fail "check: $(cat "$TMP/check.out")"
"$POOLTOOL" dump --json "$P" | jq -e '[.volumes[0].extents[] | .lchunk + .chunks] | max == 32' >/dev/null ||
	fail "dump: extents past the new end"

start_server_or_fail -e vm1="pool:$P/vm1"
[ "$(nbdinfo --size "$(uri_of vm1)")" = 2097152 ] || fail "shrunk vm1 served at $(nbdinfo --size "$(uri_of vm1)")"
qio_at "$(uri_of vm1)" -c "read -P 0x5a 0 2M"
finish vm1

# Grow to 32M: served at 32M, zeros from 2M on, writable to the end.
"$POOLTOOL" volume resize "$P" vm1 32M || fail "grow"
start_server_or_fail -e vm1="pool:$P/vm1"
[ "$(nbdinfo --size "$(uri_of vm1)")" = 33554432 ] || fail "grown vm1 served at $(nbdinfo --size "$(uri_of vm1)")"
qio_at "$(uri_of vm1)" -c "read -P 0x5a 0 2M" -c "read -P 0 2M 14M" \
	-c "write -P 0x6b 31M 1M" -c "read -P 0x6b 31M 1M" -c "flush"
finish vm1
"$POOLTOOL" check "$P" > "$TMP/check.out" || fail "check after grow: $(cat "$TMP/check.out")"
grep -q '^0 problems, 0 leaked chunks' "$TMP/check.out" || fail "check: $(cat "$TMP/check.out")"
[ "$(free_chunks)" = $((free0 - 48)) ] || fail "after grow and 1M written: $(free_chunks) free"
