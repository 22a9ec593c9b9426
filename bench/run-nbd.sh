#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The whole server beside its peers: fio's nbd engine (libnbd, one
# connection, Unix socket) against dionbd, `nbdkit file`, `nbdkit dio` and
# qemu-nbd, and fio's own io_uring engine on the file itself as the ceiling,
# all on the same fully written file in the same run, N alternating
# repetitions, then a table of medians and the ratio of dionbd to its best peer.
# The sequential read row reads the file once (see row_params); the others
# run for --runtime. The page cache is dropped before every cell.
#
#   bench/run-nbd.sh [--build DIR] [--size 4G] [--runtime 5] [--ramp 0.5]
#                    [--reps 3] [--rows LIST] [--servers LIST] [--out DIR]
#                    [--threads N] [--nbdkit-threads 16] [--limit 570]
#                    [--plugin-args "KEY=VALUE ..."] [--strict]
#
# Env (the flags win): DIO_BUILD (build dir, default ./build-bench2 then
# ./build), DIO_BENCH_DIR (scratch, default BUILD/tmp; must take O_DIRECT),
# DIO_BENCH_SIZE, DIO_BENCH_RUNTIME, DIO_BENCH_RAMP, DIO_BENCH_REPS,
# DIO_BENCH_ROWS, DIO_BENCH_SERVERS, DIO_BENCH_THREADS (dionbd -t; default
# its own: one per core), DIO_BENCH_NBDKIT_THREADS (nbdkit -t, both nbdkit
# servers), DIO_BENCH_LIMIT (seconds; no repetition starts that would end
# past it, default 570 so the whole run with filling stays under 10 min),
# DIO_BENCH_PLUGIN_ARGS (more nbdkit-dio parameters, e.g. engine=psync).
# Rows: qd1-randread qd32-randread qd32-randwrite qd8-read-1m qd8-write-1m
#       qd8-read-1m-sparse
# Servers: dionbd nbdkit-file nbdkit-dio qemu-nbd fio-uring
# Exit: 0 done (with --strict: dionbd ahead of every peer on every row and
# each ratio target met), 1 failure, 77 when the machine lacks fio or python3.
set -euo pipefail

all_rows="qd1-randread qd32-randread qd32-randwrite qd8-read-1m qd8-write-1m qd8-read-1m-sparse"
all_servers="dionbd nbdkit-file nbdkit-dio qemu-nbd fio-uring"
top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-}
size=${DIO_BENCH_SIZE:-4G}
runtime=${DIO_BENCH_RUNTIME:-5}
ramp=${DIO_BENCH_RAMP:-0.5}
reps=${DIO_BENCH_REPS:-3}
rows=${DIO_BENCH_ROWS:-$all_rows}
servers=${DIO_BENCH_SERVERS:-$all_servers}
threads=${DIO_BENCH_THREADS:-}
nbdkit_threads=${DIO_BENCH_NBDKIT_THREADS:-16}
limit=${DIO_BENCH_LIMIT:-570}
plugin_args=${DIO_BENCH_PLUGIN_ARGS:-}
out=
strict=0

bench_name=run-nbd
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--ramp) ramp=$2; shift ;;
	--reps) reps=$2; shift ;;
	--rows) rows=$2; shift ;;
	--servers) servers=$2; shift ;;
	--threads) threads=$2; shift ;;
	--nbdkit-threads) nbdkit_threads=$2; shift ;;
	--limit) limit=$2; shift ;;
	--plugin-args) plugin_args=$2; shift ;;
	--out) out=$2; shift ;;
	--strict) strict=1 ;;
	-h|--help) sed -n '4,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

num='^[0-9]+([.][0-9]+)?$'
[[ $runtime =~ $num && $ramp =~ $num ]] || die "--runtime and --ramp take seconds"
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps takes a count >= 1"
[[ $limit =~ ^[1-9][0-9]*$ ]] || die "--limit takes whole seconds"
[[ $nbdkit_threads =~ ^[1-9][0-9]*$ ]] || die "--nbdkit-threads takes a count >= 1"
[ -z "$threads" ] || [[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads takes a count >= 1"

# rw bs qd file-kind length of a row. Length "once": one pass over the
# file instead of --runtime, because a timed sequential read wraps around
# and a buffered server (nbdkit file, even with cache=none) then serves the
# second pass from the page cache it filled in the first: that measures RAM.
row_params() {
	case $1 in
	qd1-randread) echo "randread 4k 1 data timed" ;;
	qd32-randread) echo "randread 4k 32 data timed" ;;
	qd32-randwrite) echo "randwrite 4k 32 data timed" ;;
	qd8-read-1m) echo "read 1m 8 data once" ;;
	qd8-write-1m) echo "write 1m 8 data timed" ;;
	qd8-read-1m-sparse) echo "read 1m 8 sparse timed" ;;
	*) die "unknown row: $1 (rows: $all_rows)" ;;
	esac
}
for r in $rows; do row_params "$r" >/dev/null; done
for s in $servers; do
	case " $all_servers " in *" $s "*) ;; *) die "unknown server: $s (servers: $all_servers)" ;; esac
done

# ---------------------------------------------------------------- tools
command -v fio >/dev/null || skip "fio is not installed"
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"
python=/usr/bin/python3
[ -x $python ] || python=python3
command -v $python >/dev/null || skip "python3 is not installed"
$python -c 'import nbd' 2>/dev/null ||
	die "python3-libnbd is missing (the serving check reads through it)"

if [ -z "$build" ]; then
	for b in ./build-bench2 ./build "$top/build-bench2" "$top/build"; do
		if [ -x "$b/server/dionbd" ]; then build=$b; break; fi
	done
fi
[ -n "$build" ] || die "no build dir with server/dionbd; build one and pass --build DIR (or DIO_BUILD)"
build=$(cd "$build" && pwd)
dionbd=$build/server/dionbd
plugin=$build/plugins/dio/nbdkit-dio-plugin.so
for s in $servers; do
	case $s in
	dionbd) [ -x "$dionbd" ] || die "$dionbd is missing: cmake --build $build --target dionbd" ;;
	nbdkit-file) command -v nbdkit >/dev/null || die "nbdkit is not installed (apt-get install nbdkit, or drop nbdkit-file from --servers)" ;;
	nbdkit-dio)
		command -v nbdkit >/dev/null || die "nbdkit is not installed (apt-get install nbdkit, or drop nbdkit-dio from --servers)"
		[ -f "$plugin" ] || die "$plugin is missing: cmake --build $build --target nbdkit-dio-plugin" ;;
	qemu-nbd) command -v qemu-nbd >/dev/null || die "qemu-nbd is not installed (apt-get install qemu-utils, or drop qemu-nbd from --servers)" ;;
	esac
done

# ---------------------------------------------------------------- files
dir=${DIO_BENCH_DIR:-$build/tmp}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
probe=$dir/.odirect-probe.$$
if ! dd if=/dev/zero of="$probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	rm -f "$probe"
	skip "$dir does not take O_DIRECT; set DIO_BENCH_DIR to an ext4/xfs directory"
fi
rm -f "$probe"

bytes=$(to_bytes "$size")
[ "$bytes" -ge $(( 64 << 20 )) ] || die "--size must be at least 64M"
data=$dir/nbd-bench-$size.img
sparse=$dir/nbd-bench-$size-sparse.img
out=${out:-$dir/nbd-results-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
work=$(mktemp -d "$dir/nbd-run.XXXXXX")
sock=$work/sock
uri="nbd+unix:///?socket=$sock"



# The sparse row's volume: the same size, no block allocated. Remade each
# run so nothing written to it by accident lingers.
make_sparse() {
	rm -f "$sparse"
	truncate -s "$bytes" "$sparse"
	[ "$(stat -c %b "$sparse")" -eq 0 ] || die "$sparse is not sparse (filesystem fills holes?)"
}

need_data=0 need_sparse=0
for r in $rows; do
	case $(row_params "$r") in
	*" sparse "*) need_sparse=1 ;;
	*) need_data=1 ;;
	esac
done
[ $need_data = 0 ] || make_full "$data" "$bytes"
[ $need_sparse = 0 ] || make_sparse


# ---------------------------------------------------------------- servers
server_cmd() {
	local s=$1 f=$2
	case $s in
	dionbd) echo "$dionbd -f -U $sock ${threads:+-t $threads }$f" ;;
	nbdkit-file) echo "nbdkit -f --exit-with-parent -U $sock -t $nbdkit_threads file file=$f cache=none" ;;
	nbdkit-dio) echo "nbdkit -f --exit-with-parent -U $sock -t $nbdkit_threads $plugin file=$f${plugin_args:+ $plugin_args}" ;;
	qemu-nbd) echo "qemu-nbd -k $sock -f raw --cache=none --aio=io_uring --shared=8 --persistent $f" ;;
	esac
}

# Start server $1 on file $2, wait for its socket, then check it serves
# that file: its size, and one 4 KiB block compared with the file itself.
start_server() {
	local s=$1 f=$2 log=$out/server-$1.log _
	rm -f "$sock"
	echo "== $(date +%T) $(server_cmd "$s" "$f")" >>"$log"
	local argv
	# the paths have no spaces (checked before the first cell)
	read -ra argv <<<"$(server_cmd "$s" "$f")"
	"${argv[@]}" >>"$log" 2>&1 &
	srv_pid=$!
	for _ in $(seq 1 100); do
		[ -S "$sock" ] && break
		if ! kill -0 "$srv_pid" 2>/dev/null; then
			local rc=0
			wait "$srv_pid" || rc=$?
			srv_pid=
			tail -n 5 "$log" >&2
			die "$s exited (status $rc) before listening on $sock; log: $log"
		fi
		sleep 0.1
	done
	[ -S "$sock" ] || die "$s: no socket $sock after 10 s; see $log"
	timeout 20 $python - "$uri" "$f" "$bytes" <<'EOF' >>"$log" 2>&1 || die "$s is not serving $f correctly; see $log"
import nbd, os, sys
uri, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
if h.get_size() != size:
    sys.exit("size %d, want %d" % (h.get_size(), size))
off = (size // 2) & ~4095
with open(path, "rb") as f:
    f.seek(off)
    want = f.read(4096)
if h.pread(4096, off) != want:
    sys.exit("the block at %d differs from the file" % off)
h.shutdown()
EOF
}



# ---------------------------------------------------------------- cells
case $data$sparse$work$build in *[[:space:]]*) die "paths must not contain spaces: $dir, $build" ;; esac
cell_limit=$(( ${runtime%.*} + ${ramp%.*} + 60 ))
: >"$out/commands.txt"

# run_cell SERVER ROW REP: one fio run, JSON to $out/ROW.SERVER.REP.json and
# the server's CPU seconds and the cell's wall time to .cpu
run_cell() {
	local s=$1 row=$2 rep=$3 rw bs qd kind len f t0 t1 c0 c1
	read -r rw bs qd kind len < <(row_params "$row")
	f=$data
	[ "$kind" = sparse ] && f=$sparse
	local cmd=(fio --name="$row" --rw="$rw" --bs="$bs" --iodepth="$qd"
		--size="$bytes" --ramp_time="$(ms "$ramp")ms" --norandommap --randrepeat=0)
	if [ "$len" = once ]; then
		cmd+=(--runtime="$(( cell_limit - 5 ))s")
	else
		cmd+=(--time_based --runtime="$(ms "$runtime")ms")
	fi
	cmd+=(
		--lat_percentiles=1 --output-format=json
		--output="$out/$row.$s.$rep.json")
	if [ "$s" = fio-uring ]; then
		cmd+=(--filename="$f" --ioengine=io_uring --direct=1 --fixedbufs
		      --registerfiles --sqthread_poll=0 --hipri=0)
	else
		cmd+=(--ioengine=nbd --uri="$uri")
	fi
	if [ "$rep" -eq 1 ]; then
		{ [ "$s" = fio-uring ] || echo "  server: $(server_cmd "$s" "$f")"
		  echo "  $row/$s: ${cmd[*]}"; } >>"$out/commands.txt"
	fi
	settle "$f"
	t0=$(date +%s.%N) c0=$(cpu_ticks)
	timeout "$cell_limit" "${cmd[@]}" >"$out/$row.$s.$rep.fio.log" 2>&1 ||
		die "$row on $s failed; see $out/$row.$s.$rep.fio.log and $out/server-$s.log"
	t1=$(date +%s.%N) c1=$(cpu_ticks)
	echo "$(( c1 - c0 )) $(getconf CLK_TCK) $t0 $t1" >"$out/$row.$s.$rep.cpu"
	[ "$kind" = sparse ] || settle "$f"
}

# Every row of one repetition on server $1: the data-file rows on one
# server process, the sparse row on a second one started on the sparse file.
run_server() {
	local s=$1 rep=$2 kind row
	for kind in data sparse; do
		local todo=()
		for row in $rows; do
			[ "$(row_params "$row" | cut -d' ' -f4)" = $kind ] && todo+=("$row")
		done
		[ ${#todo[@]} -gt 0 ] || continue
		local f=$data
		[ $kind = sparse ] && f=$sparse
		[ "$s" = fio-uring ] || start_server "$s" "$f"
		for row in "${todo[@]}"; do
			run_cell "$s" "$row" "$rep"
		done
		stop_server "$sock"
	done
}

nrows=$(wc -w <<<"$rows")
nsrv=$(wc -w <<<"$servers")
# per cell: ramp + runtime + about 0.4 s of fio start-up, settling, connect;
# per server start and check: about 0.5 s
rep_est=$(awk -v r="$runtime" -v p="$ramp" -v c=$(( nrows * nsrv )) -v s=$(( nsrv * (1 + need_sparse) )) \
	'BEGIN { printf "%d", c * (r + p + 0.4) + s * 0.5 + 0.5 }')
say "$nrows rows x $nsrv servers x $reps reps, ${runtime}s + ${ramp}s ramp per cell: about $(( rep_est * reps ))s (limit ${limit}s)"
[ "$rep_est" -le "$limit" ] ||
	die "one repetition takes about ${rep_est}s, over the ${limit}s limit: lower --runtime or raise --limit"

load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
done_reps=0
for rep in $(seq 1 "$reps"); do
	if [ "$rep" -gt 1 ] && [ $(( SECONDS - start + rep_est )) -gt "$limit" ]; then
		say "stopping after $done_reps repetitions: another would pass the ${limit}s limit"
		break
	fi
	order=$servers
	# alternate the order, so drift of the device (host writeback under a
	# VM disk, an SSD's cache) does not always favour the same server
	[ $(( rep % 2 )) -eq 0 ] && order=$(tr ' ' '\n' <<<"$servers" | tac | tr '\n' ' ')
	for s in $order; do
		run_server "$s" "$rep"
		say "rep $rep/$reps $s done ($(( SECONDS - start ))s)"
	done
	done_reps=$rep
done

# a busy machine (someone compiling) moves every number: say how busy it was
echo "Load average (1/5/15 min) at start: $load0, at end: $(cut -d' ' -f1-3 /proc/loadavg);" \
	"$(nproc) CPUs; $(( SECONDS - start ))s of measuring"
echo "Commands (rep 1):"
cat "$out/commands.txt"
echo
$python "$top/bench/nbd-table.py" "$out" "$done_reps" "$strict" "$servers" $rows | tee "$out/table.txt"
exit "${PIPESTATUS[0]}"
