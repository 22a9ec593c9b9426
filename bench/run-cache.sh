#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The block cache (cache=, --cache-size) against direct I/O, one dionbd per
# cell on its own fully written file:
#   boot-storm  8 connections each reading the same SIZE bytes in random
#               order (bench/nbd-load -c 8, 4 KiB, QD 8 each): cold (the
#               first pass fills the cache) and warm (a second pass);
#   randwrite   4 KiB random writes, 8 connections x QD 8 (cache=writeback
#               absorbs them, FLUSH-free);
# with cache=read (writeback for randwrite) and --cache-size above SIZE,
# and without a cache. N alternating repetitions; the table holds medians
# of IOPS and p99 latency.
#
#   bench/run-cache.sh [--build DIR] [--size 256M] [--runtime 3] [--reps 3]
#                      [--rows "boot-storm randwrite"]
#
# Env: DIO_BUILD, DIO_BENCH_DIR (scratch; must take O_DIRECT: not tmpfs).
# Exit 0, 1 failure, 77 when fio or bench/nbd-load is missing.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-$top/build}
size=256M
runtime=3
reps=3
rows="boot-storm randwrite"

bench_name=run-cache
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--reps) reps=$2; shift ;;
	--rows) rows=$2; shift ;;
	*) die "unknown option $1" ;;
	esac
	shift
done

load=$build/bench/nbd-load
dionbd=$build/server/dionbd
[ -x "$load" ] || skip "$load is not built (needs libnbd-dev)"
[ -x "$dionbd" ] || die "$dionbd is not built"
command -v fio >/dev/null || skip "fio is needed to write the test file"
bytes=$(to_bytes "$size")
cache_mb=$(( bytes / 1048576 + 64 ))

work=$(mktemp -d "${DIO_BENCH_DIR:-$top/build}/run-cache.XXXXXX")
file=$work/vol.img
make_full "$file" "$bytes"

# cell MODE ROW: one dionbd serving $file with cache=MODE (none: no cache);
# prints "IOPS P99_US" for each pass the row has (boot-storm: cold, warm).
cell() {
	local mode=$1 row=$2 sock=$work/sock args=() passes=1 w=0 out
	[ "$mode" = none ] || args=(--cache-size "$cache_mb")
	[ "$row" = boot-storm ] && passes=2
	[ "$row" = randwrite ] && w=100
	settle "$file"
	"$dionbd" -f -U "$sock" "${args[@]}" -e "v=$file,cache=$mode" 2>"$work/log" &
	srv_pid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || die "dionbd did not start: $(tail -n 3 "$work/log")"
	for _ in $(seq 1 "$passes"); do
		out=$(timeout 120 "$load" -c 8 -T 2 -q 8 -b 4096 -w "$w" -t "$runtime" \
			"nbd+unix:///v?socket=$sock") || die "nbd-load failed ($mode $row)"
		echo "$out" | sed -n 's/.*iops=\([0-9.]*\).*lat_p99_us=\([0-9.]*\).*/\1 \2/p'
	done
	stop_server "$sock"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }

declare -A iops p99
for row in $rows; do
	for rep in $(seq 1 "$reps"); do
		for mode in none cached; do
			m=$mode
			[ "$mode" = cached ] && { [ "$row" = randwrite ] && m=writeback || m=read; }
			pass=0
			while read -r i l; do
				pass=$((pass + 1))
				key="$row/$mode/$pass"
				iops[$key]+="$i "
				p99[$key]+="$l "
			done < <(cell "$m" "$row")
		done
		say "$row: repetition $rep done"
	done
done

printf '| row | server | pass | IOPS (median) | p99 µs (median) |\n|---|---|---|---|---|\n'
for row in $rows; do
	for mode in none cached; do
		for pass in 1 2; do
			key="$row/$mode/$pass"
			[ -n "${iops[$key]:-}" ] || continue
			name=$([ "$row" = boot-storm ] && { [ $pass = 1 ] && echo cold || echo warm; } || echo -)
			srv=$([ "$mode" = none ] && echo "cache=none" ||
			      { [ "$row" = randwrite ] && echo "cache=writeback" || echo "cache=read"; })
			printf '| %s | %s | %s | %s | %s |\n' "$row" "$srv" "$name" \
				"$(tr ' ' '\n' <<< "${iops[$key]}" | grep . | median)" \
				"$(tr ' ' '\n' <<< "${p99[$key]}" | grep . | median)"
		done
	done
done
