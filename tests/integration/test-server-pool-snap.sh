#!/usr/bin/env bash
# Pool snapshots and clones (dionbd-pool volume snapshot|clone) served by
# the daemon: a snapshot reads back byte for byte what its origin held when
# it was taken after the origin is overwritten through NBD (full, partial
# and unaligned writes, FUA, discard), is exported read-only (writes get
# EPERM); a clone is writable and what it writes stays out of the origin
# and the snapshot; volumes are listed with their parent; check passes
# after each step, deletes in any order keep the rest intact, and every
# chunk comes back once all are gone.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io qemu-img nbdcopy nbdinfo
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"

P=$TMP/pool.img
truncate -s 256M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" vm1 32M >/dev/null || fail "volume create vm1"
free_chunks()
{
	"$POOLTOOL" info "$P" | sed -n 's/^chunks: .*(\([0-9]*\) free)$/\1/p'
}
free0=$(free_chunks)
[ -n "$free0" ] || fail "no free chunk count in info: $("$POOLTOOL" info "$P")"

check_pool()
{
	"$POOLTOOL" check "$P" > "$TMP/check.out" 2>&1 || fail "$1: check: $(cat "$TMP/check.out")"
	grep -q '^0 problems, 0 leaked' "$TMP/check.out" || fail "$1: check: $(cat "$TMP/check.out")"
}

# The same writes on a raw file and on an export: the file is the model.
# Chunks fully written, partly, straddling, unaligned, FUA, a discard.
overwrite()
{
	local target=$1 fmt=$2 seed=$3
	timeout 120 qemu-io -f "$fmt" -c "write -P $((seed + 1)) 0 64k" \
		-c "write -P $((seed + 2)) 132k 4k" -c "write -P $((seed + 3)) 1020k 8k" \
		-c "write -P $((seed + 4)) 2097664 1536" -c "write -f -P $((seed + 5)) 3M 4k" \
		-c "write -P $((seed + 6)) 20M 64k" -c "aio_write -P $((seed + 7)) 5M 1M" \
		-c "aio_flush" -c "discard 6M 128k" -c "flush" "$target" > "$TMP/qio.out" 2>&1 ||
		fail "qemu-io $target: $(cat "$TMP/qio.out")"
	grep -E -q 'error|failed' "$TMP/qio.out" && fail "qemu-io $target: $(cat "$TMP/qio.out")"
	return 0
}

# vm1 before the snapshot: random data over most of it, holes between.
head -c 24M /dev/urandom > "$TMP/seed.bin"
truncate -s 32M "$TMP/seed.bin"
start_server_or_fail -e vm1="pool:$P/vm1"
nbdcopy "$TMP/seed.bin" "$(uri_of vm1)" || fail "nbdcopy into vm1"
qio_at "$(uri_of vm1)" -c "discard 8M 1M" -c "flush"
cp "$TMP/seed.bin" "$TMP/vm1.model"
qemu-io -f raw -c "write -z 8M 1M" "$TMP/vm1.model" > /dev/null || fail "model"
finish vm1
cp "$TMP/vm1.model" "$TMP/snap1.model"

"$POOLTOOL" volume snapshot "$P" vm1 snap1 || fail "volume snapshot"
"$POOLTOOL" volume clone "$P" snap1 cl1 || fail "volume clone"
if "$POOLTOOL" volume snapshot "$P" vm1 snap1 2>/dev/null; then fail "duplicate snapshot name"; fi
if "$POOLTOOL" volume snapshot "$P" nope x 2>/dev/null; then fail "snapshot of no volume"; fi
"$POOLTOOL" volume list "$P" | grep -E -q '^snap1 .* snapshot +vm1$' || fail "list: snap1: $("$POOLTOOL" volume list "$P")"
"$POOLTOOL" volume list "$P" | grep -E -q '^cl1 .* clone +snap1$' || fail "list: cl1"
json=$("$POOLTOOL" volume list --json "$P")
echo "$json" | grep -q '"name":"snap1","id":2,"size":33554432,"mapped":[0-9]*,"parent":"vm1","parent_id":1,"readonly":true' ||
	fail "list --json: $json"
check_pool "after snapshot and clone"
cp "$TMP/vm1.model" "$TMP/cl1.model"

for engine in $(test_engines); do
	start_server_or_fail --engine "$engine" -e vm1="pool:$P/vm1" -e snap1="pool:$P/snap1" \
		-e cl1="pool:$P/cl1"
	nbdinfo --json "$(uri_of snap1)" | grep -q '"is_read_only": true' ||
		fail "$engine: snap1 is not exported read-only"
	nbdinfo --json "$(uri_of cl1)" | grep -q '"is_read_only": false' ||
		fail "$engine: cl1 is not writable"
	if timeout 60 qemu-io -f raw -c "write -P 0x99 0 4k" "$(uri_of snap1)" > "$TMP/ro.out" 2>&1 &&
		! grep -q -i "permitted\|read-only\|denied" "$TMP/ro.out"; then
		fail "$engine: a write to the snapshot was taken: $(cat "$TMP/ro.out")"
	fi
	[ "$engine" = psync ] && seed=64 || seed=16
	overwrite "$(uri_of vm1)" raw "$seed"
	overwrite "$TMP/vm1.model" raw "$seed"
	overwrite "$(uri_of cl1)" raw $((seed + 100))
	overwrite "$TMP/cl1.model" raw $((seed + 100))
	for v in vm1 snap1 cl1; do
		nbdcopy "$(uri_of $v)" "$TMP/$v.out" || fail "$engine: nbdcopy out of $v"
		cmp "$TMP/$v.out" "$TMP/$v.model" || fail "$engine: $v differs from what was written"
	done
	qemu-img compare -q -f raw -F raw "$(uri_of snap1)" "$TMP/seed.bin" 2>/dev/null &&
		fail "$engine: the snapshot still equals the seed, the discard is lost?"
	qemu-img compare -f raw -F raw "$(uri_of snap1)" "$TMP/snap1.model" > "$TMP/cmp.out" ||
		fail "$engine: qemu-img compare snap1: $(cat "$TMP/cmp.out")"
	finish vm1
	check_pool "$engine: after writes to origin and clone"
done

# Deletes: the snapshot first (the clone of it stays right), then the origin.
"$POOLTOOL" volume delete "$P" snap1 || fail "delete snap1"
check_pool "after deleting the snapshot"
"$POOLTOOL" volume list "$P" | grep -E -q '^cl1 .* clone +\(deleted\)$' || fail "list: cl1's parent gone"
"$POOLTOOL" volume delete "$P" vm1 || fail "delete vm1"
check_pool "after deleting the origin"
start_server_or_fail -e cl1="pool:$P/cl1"
nbdcopy "$(uri_of cl1)" "$TMP/cl1.out" || fail "nbdcopy out of cl1"
cmp "$TMP/cl1.out" "$TMP/cl1.model" || fail "cl1 changed when its origins were deleted"
finish cl1
"$POOLTOOL" volume delete "$P" cl1 || fail "delete cl1"
check_pool "with every volume deleted"
free1=$(free_chunks)
[ "$free1" = "$free0" ] || fail "chunks free: $free1, $free0 before anything was written"
echo "test-server-pool-snap: ok"
