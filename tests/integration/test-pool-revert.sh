#!/usr/bin/env bash
# Revert and diff (issue 11). Through the control socket of a daemon that
# serves the pool (another volume stays served): pool-revert of a served
# volume is refused, of one no export serves it reverts, and the volume
# then reads what its snapshot held when it was taken; a snapshot of
# another volume, a clone and a snapshot as the target are refused by
# name. With dionbd-pool once the daemon let go: diff lists exactly the
# chunks written since the revert (table and --json), revert (the
# top-level command) gives the space they held back, delete of everything
# gives every chunk back, check is clean after each step.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io jq
requires_pool_ctl
new_pool 256M first 16M vm 16M
free_chunks()
{
	"$POOLTOOL" info "$P" | sed -n 's/^chunks: .*(\([0-9]*\) free)$/\1/p'
}
free0=$(free_chunks)
[ -n "$free0" ] || fail "no free chunk count in info"
check_pool()
{
	"$POOLTOOL" check "$P" > "$TMP/check.out" 2>&1 || fail "$1: check: $(cat "$TMP/check.out")"
	grep -q '^0 problems, 0 leaked' "$TMP/check.out" || fail "$1: check: $(cat "$TMP/check.out")"
}
qio()
{
	local uri=$1
	shift
	timeout 60 qemu-io -f raw "$@" "$uri" > "$TMP/qio.out" 2>&1 || fail "qemu-io $*: $(cat "$TMP/qio.out")"
	! grep -E -q 'error|failed|Pattern verification' "$TMP/qio.out" ||
		fail "qemu-io $*: $(cat "$TMP/qio.out")"
}

C=$TMP/control.sock
start_server_or_fail -v --control "$C" -e first="pool:$P/first" -e vm="pool:$P/vm"
wait_ctl
qio "$(uri_of first)" -c "write -P 0x55 0 1M" -c flush
qio "$(uri_of vm)" -c "write -P 0x11 0 4M" -c "write -P 0x12 6M 8k" -c flush
expect_ctl 0 'name +snap' pool-snapshot "$P" vm snap
# After the snapshot: overwrite, a new chunk, a discard, a write past what the snapshot had.
qio "$(uri_of vm)" -c "write -P 0x22 1M 1M" -c "write -f -P 0x23 8M 64k" -c "discard 0 64k" \
	-c "write -P 0x24 6M 4k" -c flush
expect_ctl 0 'name +other' pool-create-volume "$P" other 16M
expect_ctl 0 'name +osnap' pool-snapshot "$P" other osnap
expect_ctl 0 'name +vclone' pool-clone "$P" vm vclone

# Refusals: named, exit 1, the daemon still serving.
expect_ctl 1 "reverting volume 'vm': it is open \(served\)" pool-revert "$P" vm snap
expect_ctl 0 'removed +vm' remove-export vm
expect_ctl 1 "'osnap' is not a snapshot of it" pool-revert "$P" vm osnap
expect_ctl 1 "'vclone' is not a snapshot of it" pool-revert "$P" vm vclone
expect_ctl 1 "reverting volume 'snap': it is a snapshot" pool-revert "$P" snap snap
expect_ctl 1 "reverting volume 'vm' to 'ghost': no such volume" pool-revert "$P" vm ghost
check_served first

# The revert: vm reads what the snapshot held.
expect_ctl 0 'reverted +vm' pool-revert "$P" vm snap
expect_ctl 0 '^vm +pool:' add-export vm "pool:$P/vm"
qio "$(uri_of vm)" -c "read -P 0x11 0 4M" -c "read -P 0 4M 2M" -c "read -P 0x12 6M 8k" \
	-c "read -P 0 8M 8M"
qio "$(uri_of first)" -c "read -P 0x55 0 1M"
# Written after the revert: one chunk the diff must name, the snapshot untouched.
qio "$(uri_of vm)" -c "write -P 0x44 2M 4k" -c flush
expect_ctl 0 'removed +vm' remove-export vm
stop_server
check_pool "after the daemon"

# diff: exactly the chunk written since the revert.
"$POOLTOOL" diff "$P" snap vm > "$TMP/diff.out" 2> "$TMP/diff.err" || fail "diff: $(cat "$TMP/diff.err")"
[ "$(tail -n +2 "$TMP/diff.out" | awk '{print $1, $2}')" = "2097152 65536" ] ||
	fail "diff: $(cat "$TMP/diff.out")"
grep -q '^65536 bytes changed in 1 extents' "$TMP/diff.err" || fail "diff summary: $(cat "$TMP/diff.err")"
json=$("$POOLTOOL" diff --json "$P" snap vm) || fail "diff --json"
[ "$json" = '[{"offset":2097152,"length":65536}]' ] || fail "diff --json: $json"
# A volume against itself, the snapshot against vm's other snapshot: nothing, and errors named.
[ "$("$POOLTOOL" diff --json "$P" vm vm)" = '[]' ] || fail "diff of a volume with itself"
if "$POOLTOOL" diff "$P" snap ghost > "$TMP/diff.out" 2> "$TMP/diff.err"; then fail "diff of no volume"; fi
grep -q "no such volume" "$TMP/diff.err" || fail "diff of no volume: $(cat "$TMP/diff.err")"
[ ! -s "$TMP/diff.out" ] || fail "diff of no volume printed a table: $(cat "$TMP/diff.out")"
[ "$("$POOLTOOL" diff "$P" vm vm 2> /dev/null)" = "$(printf '%16s %16s' OFFSET LENGTH)" ] ||
	fail "diff of a volume with itself, as a table: $("$POOLTOOL" diff "$P" vm vm)"

# The tool's revert: the chunk written since comes back, and diff is empty.
before=$(free_chunks)
"$POOLTOOL" revert "$P" vm snap || fail "dionbd-pool revert"
[ "$(free_chunks)" -eq $((before + 1)) ] || fail "revert: free chunks $before -> $(free_chunks)"
[ "$("$POOLTOOL" diff --json "$P" snap vm)" = '[]' ] || fail "diff after revert"
if "$POOLTOOL" revert "$P" vm osnap 2> "$TMP/rev.err"; then fail "revert to another volume's snapshot"; fi
grep -q "osnap is not a snapshot of vm" "$TMP/rev.err" || fail "revert error: $(cat "$TMP/rev.err")"
# The old spellings still work (aliases).
"$POOLTOOL" volume snapshot "$P" vm snap2 || fail "volume snapshot"
"$POOLTOOL" volume revert "$P" vm snap2 || fail "volume revert"
"$POOLTOOL" clone "$P" snap2 c2 || fail "clone"
"$POOLTOOL" volume list "$P" | grep -q '^c2 .* clone  *snap2$' || fail "list: $("$POOLTOOL" volume list "$P")"
check_pool "after the tool's revert"

# Delete everything but first: every chunk of the rest comes back.
for v in c2 snap2 vclone snap vm osnap other; do
	"$POOLTOOL" volume delete "$P" $v || fail "delete $v"
done
used_first=16	# first: 1 MiB written, 16 chunks of 64 KiB
[ "$(free_chunks)" -eq $((free0 - used_first)) ] || fail "space not back: $(free_chunks) of $free0"
check_pool "after the deletes"
