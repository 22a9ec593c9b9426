#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/pool-snap-bench on a small pool, so a broken snapshot row of
# run-pool.sh shows in ctest: the lines run-pool.sh reads, every snapshot
# deleted again, and a clear failure for an origin that is not there.
# DIO_BUILD names the build directory; DIO_BENCH_DIR the scratch (O_DIRECT).
set -euo pipefail
build=${DIO_BUILD:?set DIO_BUILD to the build directory}
snapbench=$build/bench/pool-snap-bench
pooltool=$build/tools/dionbd-pool
fail() { echo "pool-snap-smoke: FAIL: $*" >&2; exit 1; }
[ -x "$snapbench" ] && [ -x "$pooltool" ] || fail "build pool-snap-bench and dionbd-pool first"
mkdir -p "${DIO_BENCH_DIR:-$build/tmp}"
dir=$(mktemp -d "${DIO_BENCH_DIR:-$build/tmp}/snap-smoke.XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! dd if=/dev/zero of="$dir/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	echo "pool-snap-smoke: SKIP: $dir does not take O_DIRECT" >&2
	exit 77
fi
pool=$dir/pool.img
truncate -s 128M "$pool"
"$pooltool" create --chunk-size 4K "$pool" >/dev/null
"$pooltool" volume create "$pool" v 4M >/dev/null

out=$("$snapbench" "$pool" v 3) || fail "pool-snap-bench exited $?"
[ "$(grep -cE '^snap_us [0-9]+[.][0-9]$' <<<"$out")" -eq 3 ] || fail "want 3 snap_us lines, got: $out"
[ "$(grep -cE '^delsnap_us [0-9]+[.][0-9]$' <<<"$out")" -eq 3 ] || fail "want 3 delsnap_us lines, got: $out"
grep -qE '^open_ms [0-9]+[.][0-9]+$' <<<"$out" || fail "no open_ms line: $out"
# -f -w: the origin written whole, then a writer on it during the calls
out=$("$snapbench" -f -w "$pool" v 2) || fail "pool-snap-bench -f -w exited $?"
[ "$(grep -cE '^pause_us [0-9]+[.][0-9]$' <<<"$out")" -eq 2 ] ||
	fail "want 2 pause_us lines, got: $out"
for k in fill_s writes snap_write_p99_us snap_write_max_us quiet_p50_us quiet_max_us; do
	grep -qE "^$k [0-9]+([.][0-9]+)?$" <<<"$out" || fail "no $k line: $out"
done
[ "$(sed -n 's/^writes //p' <<<"$out")" -gt 0 ] || fail "the writer wrote nothing: $out"
names=$("$pooltool" volume list --json "$pool" | python3 -c 'import json, sys; print(" ".join(v["name"] for v in json.load(sys.stdin)))')
[ "$names" = v ] || fail "the snapshots were not all deleted: volumes '$names'"

if "$snapbench" "$pool" nosuch 1 >/dev/null 2>"$dir/err"; then
	fail "a snapshot of a missing origin succeeded"
fi
grep -q "nosuch" "$dir/err" || fail "the error does not name the origin: $(cat "$dir/err")"
"$pooltool" check "$pool" >/dev/null || fail "the pool does not check clean"
echo "pool-snap-smoke: ok"
