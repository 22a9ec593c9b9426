#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The block cache (cache=, --cache-size) against direct I/O and against the
# peers' caches, in one run on one fully written file, one server process
# per cell, all through bench/nbd-load:
#   boot-storm      8 connections (-c 8 -T 2 -q 8, --bs, 4 KiB) each reading the
#                   whole file once in its own random order (nbd-load -p):
#                   a cold pass (the page cache dropped, the cache empty) and
#                   a warm pass on the same server;
#   randwrite-512   512-byte random writes, one connection at QD 16;
#   randwrite-flush 4 KiB random writes, one connection at QD 32, a FLUSH
#                   after every 64 writes (nbd-load -F 64);
# on the servers
#   none      dionbd, no cache (direct I/O)
#   cache     dionbd cache=read (boot-storm) or cache=writeback (the write
#             rows), --cache-size above SIZE
#   cache-b   the same with the dionbd of --vs-build DIR (an A/B of two
#             builds, alternating with cache cell by cell)
#   qemu-wb   qemu-nbd --cache=writeback (the host page cache)
#   nbdkit-cache  nbdkit file with the cache filter (cache-on-read=true for
#             boot-storm; the filter's default cache=writeback)
# REPS alternating repetitions; the table holds medians of IOPS and p99
# latency, the ratio cache/none and cache/(best peer), and the server's CPU
# time (user+system, /proc/PID/stat) per I/O: exact I/O counts for
# boot-storm (8 x SIZE / BS), IOPS x the pass's wall time for the others.
#
# With --old-build DIR, then "cache=none costs nothing": bench/compare-builds.sh
# on this build against DIR (dionbd from before the cache) over the rows of
# run-nbd.sh named by --old-rows (default qd1-randread qd32-randread
# qd32-randwrite), REPS alternating runs, --old-size file.
#
#   bench/run-cache.sh [--build DIR] [--size 128M] [--runtime 3] [--reps 3]
#                      [--rows "boot-storm randwrite-512 randwrite-flush"]
#                      [--servers "none cache qemu-wb nbdkit-cache"] [--bs 4096]
#                      [--vs-build DIR (adds cache-b to --servers)]
#                      [--old-build DIR] [--old-size 1G] [--old-rows LIST]
#
# Env: DIO_BUILD, DIO_BENCH_DIR (scratch; must take O_DIRECT: not tmpfs).
# Exit 0, 1 failure, 77 when fio or bench/nbd-load is missing.
set -euo pipefail

all_rows="boot-storm randwrite-512 randwrite-flush"
all_servers="none cache cache-b qemu-wb nbdkit-cache"
top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-$top/build}
size=128M
runtime=3
reps=3
rows=$all_rows
servers="none cache qemu-wb nbdkit-cache"
bs=4096
vs_build=
old_build=
old_size=1G
old_rows="qd1-randread qd32-randread qd32-randwrite"

bench_name=run-cache
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--reps) reps=$2; shift ;;
	--rows) rows=$2; shift ;;
	--servers) servers=$2; shift ;;
	--old-build) old_build=$2; shift ;;
	--bs) bs=$2; shift ;;
	--vs-build) vs_build=$2; shift ;;
	--old-size) old_size=$2; shift ;;
	--old-rows) old_rows=$2; shift ;;
	-h|--help) sed -n '4,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
for r in $rows; do
	case " $all_rows " in *" $r "*) ;; *) die "unknown row: $r (rows: $all_rows)" ;; esac
done
for s in $servers; do
	case " $all_servers " in *" $s "*) ;; *) die "unknown server: $s (servers: $all_servers)" ;; esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps takes a count >= 1"
[[ $bs =~ ^[1-9][0-9]*$ ]] || die "--bs takes a byte count"
if [ -n "$vs_build" ]; then
	vs_build=$(cd "$vs_build" && pwd)
	[ -x "$vs_build/server/dionbd" ] || die "$vs_build/server/dionbd is not built"
	case " $servers " in *" cache-b "*) ;; *) servers="$servers cache-b" ;; esac
fi
case " $servers " in *" cache-b "*) [ -n "$vs_build" ] || die "cache-b needs --vs-build DIR" ;; esac

build=$(cd "$build" && pwd)
load=$build/bench/nbd-load
dionbd=$build/server/dionbd
[ -x "$load" ] || skip "$load is not built (needs libnbd-dev)"
[ -x "$dionbd" ] || die "$dionbd is not built"
command -v fio >/dev/null || skip "fio is needed to write the test file"
command -v python3 >/dev/null || skip "python3 is needed for the table"
case " $servers " in *" qemu-wb "*)
	command -v qemu-nbd >/dev/null || die "qemu-nbd is missing (drop qemu-wb from --servers)" ;;
esac
case " $servers " in *" nbdkit-cache "*)
	command -v nbdkit >/dev/null || die "nbdkit is missing (drop nbdkit-cache from --servers)" ;;
esac
bytes=$(to_bytes "$size")
cache_mb=$(( bytes / 1048576 + 64 ))

work=$(mktemp -d "${DIO_BENCH_DIR:-$build}/run-cache.XXXXXX")
file=$work/vol.img
sock=$work/sock
make_full "$file" "$bytes"

# server_cmd SERVER ROW: the command line of one cell's server
server_cmd() {
	local read=0
	[ "$2" = boot-storm ] && read=1
	case $1 in
	none) echo "$dionbd -f -U $sock -e v=$file,cache=none" ;;
	cache|cache-b) echo "$([ "$1" = cache ] && echo "$dionbd" || echo "$vs_build/server/dionbd"
		) -f -U $sock --cache-size $cache_mb -e v=$file,cache=$(
		[ $read = 1 ] && echo read || echo writeback)" ;;
	qemu-wb) echo "qemu-nbd -k $sock -f raw -x v --cache=writeback --shared=8 --persistent $file" ;;
	nbdkit-cache) echo "nbdkit -f --exit-with-parent -U $sock -t 16 --filter=cache file file=$file$(
		[ $read = 1 ] && echo " cache-on-read=true")" ;;
	esac
}

# load_args ROW: nbd-load's options for the row
load_args() {
	case $1 in
	boot-storm) echo "-c 8 -T 2 -q 8 -b $bs -p -t 120" ;;
	randwrite-512) echo "-c 1 -q 16 -b 512 -w 100 -t $runtime" ;;
	randwrite-flush) echo "-c 1 -q 32 -b 4096 -w 100 -F 64 -t $runtime" ;;
	esac
}

# cpu_ticks PID: the process's user + system time so far, in clock ticks
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# cell SERVER ROW REP: one server on $file; appends "ROW PASS SERVER REP
# IOPS P99_US CPU_US_PER_IO" to $work/results for each pass (boot-storm: cold, warm).
cell() {
	local s=$1 row=$2 rep=$3 argv passes=1 p out c0 c1 t0 t1 ios
	[ "$row" = boot-storm ] && passes=2
	settle "$file"
	rm -f "$sock"
	read -ra argv <<<"$(server_cmd "$s" "$row")"
	"${argv[@]}" >>"$work/server-$s.log" 2>&1 &
	srv_pid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || die "$s did not start: $(tail -n 3 "$work/server-$s.log")"
	for p in $(seq 1 "$passes"); do
		read -ra argv <<<"$(load_args "$row")"
		c0=$(cpu_ticks "$srv_pid")
		t0=$(date +%s.%N)
		out=$(timeout 150 "$load" "${argv[@]}" "nbd+unix:///v?socket=$sock") ||
			die "nbd-load failed ($s $row): $out"
		t1=$(date +%s.%N)
		c1=$(cpu_ticks "$srv_pid")
		if [ "$row" = boot-storm ]; then
			ios=$(( 8 * bytes / bs ))
		else
			ios=$(echo "$out" | sed -n 's/.*iops=\([0-9.]*\).*/\1/p' |
				awk -v t0="$t0" -v t1="$t1" '{ printf "%d", $1 * (t1 - t0) + 1 }')
		fi
		echo "$out" | sed -n "s/.*iops=\([0-9.]*\).*lat_p99_us=\([0-9.]*\).*/$row $p $s $rep \1 \2/p" |
			awk -v c="$(( c1 - c0 ))" -v hz="$(getconf CLK_TCK)" -v ios="$ios" \
				'{ printf "%s %.2f\n", $0, c * 1e6 / hz / ios }' >>"$work/results"
	done
	stop_server "$sock"
}

case $file in *[[:space:]]*) die "the scratch path must not contain spaces: $file" ;; esac
{
	for row in $rows; do
		for s in $servers; do echo "  $row/$s: $(server_cmd "$s" "$row")"; done
		echo "  $row: $load $(load_args "$row") nbd+unix:///v?socket=SOCK"
	done
} >"$work/commands"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
: >"$work/results"
for rep in $(seq 1 "$reps"); do
	order=$servers
	# alternate the order, so drift of the device does not favour one server
	[ $(( rep % 2 )) -eq 0 ] && order=$(tr ' ' '\n' <<<"$servers" | tac | tr '\n' ' ')
	for row in $rows; do
		for s in $order; do
			cell "$s" "$row" "$rep"
		done
	done
	say "repetition $rep of $reps done ($(( SECONDS - start ))s)"
done

echo "Load average (1/5/15 min) at start: $load0, at end: $(cut -d' ' -f1-3 /proc/loadavg);" \
	"$(nproc) CPUs; $(( SECONDS - start ))s; file $size ($bytes bytes), $reps repetitions"
echo "Commands:"
cat "$work/commands"
echo
python3 - "$work/results" "$servers" <<'PY'
import collections, statistics, sys
res, servers = sys.argv[1], sys.argv[2].split()
cells = collections.defaultdict(list)
order = []
for line in open(res):
    row, p, s, rep, iops, p99, cpu = line.split()
    key = (row, "-" if row != "boot-storm" else ("cold" if p == "1" else "warm"))
    if key not in order:
        order.append(key)
    cells[key + (s,)].append((float(iops), float(p99), float(cpu)))
peers = [s for s in servers if s in ("qemu-wb", "nbdkit-cache")]
print("| row | pass | " + " | ".join("%s IOPS (p99 µs) [CPU µs/IO]" % s for s in servers) +
      " | cache/none | cache/best peer | cache/cache-b |")
print("|---|---|" + "---|" * len(servers) + "---|---|---|")
for key in order:
    med = {}
    for s in servers:
        v = cells.get(key + (s,))
        if v:
            med[s] = tuple(statistics.median(x[i] for x in v) for i in range(3))
    cols = ["%.0f (%.0f) [%.1f]" % med[s] if s in med else "-" for s in servers]
    r1 = "%.2f" % (med["cache"][0] / med["none"][0]) if "cache" in med and "none" in med else "-"
    best = max((med[s][0] for s in peers if s in med), default=0)
    r2 = "%.2f" % (med["cache"][0] / best) if "cache" in med and best else "-"
    r3 = "%.2f" % (med["cache"][0] / med["cache-b"][0]) if "cache" in med and "cache-b" in med else "-"
    print("| %s | %s | %s | %s | %s | %s |" % (key[0], key[1], " | ".join(cols), r1, r2, r3))
PY

[ -n "$old_build" ] || exit 0
# "cache=none costs nothing": the run-nbd rows on this build and on one from
# before the cache, alternating (compare-builds.sh), on one shared file.
old_build=$(cd "$old_build" && pwd)
[ -x "$old_build/server/dionbd" ] || die "$old_build/server/dionbd is not built"
say "cache=none against $old_build: $old_rows"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
t1=$SECONDS
DIO_BENCH_DIR=$work DIO_BENCH_SIZE=$old_size DIO_BENCH_RUNTIME=$runtime DIO_BENCH_OUT=$work/compare \
	"$top/bench/compare-builds.sh" "$build" "$old_build" "$reps" "$old_rows" >"$work/compare.txt" ||
	die "compare-builds.sh failed"
echo
echo "cache=none costs nothing: A = $build, B = $old_build; file $old_size, ${runtime}s cells;" \
	"load average at start $load1, at end $(cut -d' ' -f1-3 /proc/loadavg); $(( SECONDS - t1 ))s"
cat "$work/compare.txt"
