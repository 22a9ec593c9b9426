#!/usr/bin/env bash
# Serving thin pool volumes (pool:POOL/VOLUME): data written through the
# daemon reads back after a restart, never-written ranges are holes in
# base:allocation, two volumes of one pool keep apart, the pool checks
# clean after the daemon stops, a second daemon on the same pool is
# refused, and a full pool answers ENOSPC to writes that need space while
# everything else keeps working.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io nbdinfo
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"

P=$TMP/pool.img
truncate -s 128M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" vm1 64M >/dev/null || fail "volume create vm1"
"$POOLTOOL" volume create "$P" vm2 64M >/dev/null || fail "volume create vm2"


for engine in $(test_engines); do
	start_server_or_fail -v --engine "$engine" -e vm1="pool:$P/vm1" -e vm2="pool:$P/vm2"
	[ "$(nbdinfo --size "$(uri_of vm1)")" = 67108864 ] || fail "$engine: vm1's size"
	qio_at "$(uri_of vm1)" -c "write -P 0x1$((RANDOM % 9)) 0 4k" -c "write -P 0xab 1M 1M" \
		-c "write -P 0xcd 5M 4k" -c "aio_write -P 0x77 8M 64k" -c "aio_flush" \
		-c "write -P 0xee 30M 4k" -c "discard 30M 64k"
	qio_at "$(uri_of vm2)" -c "write -P 0x22 1M 1M" -c "flush"
	# Unaligned to the pool's sub-blocks: zero-padded, never stale.
	qio_at "$(uri_of vm1)" -c "write -P 0x33 40M 512" -c "read -P 0x33 40M 512" \
		-c "read -P 0 41942528 512" -c "read -P 0 41943552 3584" -c "read -P 0 41M 4k"
	nbdinfo --map "$(uri_of vm1)" > "$TMP/map" || fail "nbdinfo --map"
	grep -E -q '^ +2097152 +[0-9]+ +3 +hole,zero' "$TMP/map" ||
		fail "$engine: the never-written range after 2M is not a hole: $(cat "$TMP/map")"
	# A second daemon on the same pool is refused: the pool is locked.
	if timeout 20 "$DIONBD" -f -U "$TMP/other.sock" -e x="pool:$P/vm1" > "$TMP/other.log" 2>&1; then
		fail "a second daemon opened the same pool"
	fi
	grep -q -i "pool" "$TMP/other.log" || fail "the refusal does not name the pool: $(cat "$TMP/other.log")"
	# So is a check: what the daemon writes meanwhile would read as damage.
	if "$POOLTOOL" check "$P" > "$TMP/live-check.out" 2>&1; then
		fail "$engine: check ran on a pool the daemon serves: $(cat "$TMP/live-check.out")"
	fi
	grep -q "check refused: .*open in another process" "$TMP/live-check.out" ||
		fail "$engine: check of a served pool: $(cat "$TMP/live-check.out")"
	finish vm1
	"$POOLTOOL" check "$P" > "$TMP/check.out" 2>&1 || fail "$engine: check after stop: $(cat "$TMP/check.out")"

	# After a restart: what was written (and flushed at stop) is there, the rest reads as zeros.
	start_server_or_fail --engine "$engine" -e vm1="pool:$P/vm1" -e vm2="pool:$P/vm2"
	qio_at "$(uri_of vm1)" -c "read -P 0xab 1M 1M" -c "read -P 0xcd 5M 4k" -c "read -P 0x77 8M 64k" \
		-c "read -P 0 30M 64k" -c "read -P 0 2M 3M" -c "read -P 0x33 40M 512"
	qio_at "$(uri_of vm2)" -c "read -P 0x22 1M 1M" -c "read -P 0 0 1M" -c "read -P 0 5M 1M"
	finish vm2
done
"$POOLTOOL" volume list "$P" | grep -q '^vm1 ' || fail "volume list after serving"

# A pool smaller than its volume: writes that need a chunk get ENOSPC once it
# is full; overwrites of written chunks, reads and new clients keep working.
S=$TMP/small.img
truncate -s 8M "$S"
"$POOLTOOL" create "$S" >/dev/null || fail "create the small pool"
"$POOLTOOL" volume create "$S" big 64M >/dev/null || fail "volume create big"
start_server_or_fail -e big="pool:$S/big"
timeout 120 qemu-io -f raw -c "write -P 0x44 0 32M" "$(uri_of big)" > "$TMP/full.out" 2>&1 || true
grep -q -i "no space left" "$TMP/full.out" || fail "a full pool did not answer ENOSPC: $(cat "$TMP/full.out")"
qio_at "$(uri_of big)" -c "write -P 0x55 0 64k" -c "read -P 0x55 0 64k"
grep -q "pool .*small.img is full" "$SRV_LOG" || fail "the log does not name the full pool"
finish big
"$POOLTOOL" check "$S" > "$TMP/check.out" 2>&1 || fail "check of the full pool: $(cat "$TMP/check.out")"
