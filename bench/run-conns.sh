#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Several connections against one: bench/nbd-load (libnbd aio) at the same
# total queue depth spread over 1, 2 and 4 connections, against dionbd with
# polling as configured (poll-check and poll-yield on, the defaults), with
# poll-check off (polling whenever the CPUs have room), with poll-yield off
# (dionbd-checkonly: the check alone decides, whatever the load), with both
# off (dionbd-noyield: always polling) and with polling off (--poll-us 0); nbdkit's
# null plugin shows the client's own ceiling, and fio's io_uring on the
# file the device's. Each cell reports IOPS, p50/p99 latency and the
# server's CPU time per request (utime+stime of its process, /proc/PID/stat),
# the client's (nbd-load's own, fio's usr+sys for fio-uring) and the whole
# machine's busy time per request (/proc/stat: interrupts and kernel threads
# too; the CPU budget a request costs, honest only on a quiet machine);
# dionbd's cells also the average time per request stage from its metrics
# page (receive / libdio / reply, see docs/dionbd.md), and how many I/O
# completions each reap pass ran and how many replies each socket write
# carried (cqe/reap, rep/wr: requests that travel in one group show the
# depth in both). With --syscalls,
# the server's system calls per request too (perf stat on the
# raw_syscalls:sys_enter tracepoint over the run; needs perf and root).
# With --hogs N, N busy loops run beside each cell's load (a host with
# other work: what polling must not take from it), and the table gives the
# CPUs' worth of time they got (their utime+stime over the load).
# N alternating repetitions; the table holds medians.
#
#   bench/run-conns.sh [--build DIR] [--base DIR] [--size 1G] [--runtime 4] [--reps 3]
#                      [--depth 32] [--conns "1 2 4"] [--client-threads N] [--raw-client] [--rows LIST]
#                      [--servers LIST] [--taskset-server CPUS --taskset-client CPUS]
#                      [--syscalls] [--hogs N]
#
# The client runs one thread per connection (nbd-load -T), or N threads for
# all of them with --client-threads N: on two cores, a thread per connection
# on each side is more threads than cores. --raw-client runs nbd-load -R:
# libnbd only connects, and the requests go on the socket in batches, at a
# fraction of libnbd's CPU per request (bench/README.md).
# Rows: randread randwrite qd1-randread (qd1 runs one connection at depth 1)
# Servers: dionbd dionbd-nocheck dionbd-checkonly dionbd-noyield dionbd-nopoll nbdkit-null
#          fio-uring, fio-uring-convoy (fio's io_uring on the file, but
#          submitting and reaping its whole depth at once, as requests that
#          travel together in one NBD connection reach the device: what the
#          device gives a client that resubmits in one group), and dionbd-base: the dionbd of another build (--base, say
#          one of main) with the default settings, for before/after tables
#          (dionbd-base-nopoll: the same with --poll-us 0)
#          dionbd-t1: one reactor (-t 1), every connection on it: what
#          spreading connections over reactors costs when the client shares
#          the cores
#          dionbd-turn: --submit-batch 0, each reactor's io_uring entered
#          once at the end of its loop turn (before 2026-12-02)
# Env: DIO_BUILD, DIO_BENCH_DIR (scratch; must take O_DIRECT: not tmpfs).
# Exit 0, 1 failure, 77 when fio, nbdkit or bench/nbd-load is missing.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-$top/build}
size=1G
runtime=4
reps=3
depth=32
conns_list="1 2 4"
client_threads=
raw_client=()
rows="randread randwrite qd1-randread"
servers="dionbd dionbd-nocheck dionbd-nopoll nbdkit-null fio-uring"
ts_server=
ts_client=
base=
syscalls=false
hogs=0

bench_name=run-conns
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--base) base=$2; shift ;;
	--syscalls) syscalls=true ;;
	--hogs) hogs=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--reps) reps=$2; shift ;;
	--depth) depth=$2; shift ;;
	--conns) conns_list=$2; shift ;;
	--client-threads) client_threads=$2; shift ;;
	--raw-client) raw_client=(-R) ;;
	--rows) rows=$2; shift ;;
	--servers) servers=$2; shift ;;
	--taskset-server) ts_server=$2; shift ;;
	--taskset-client) ts_client=$2; shift ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done

load=$build/bench/nbd-load
dionbd=$build/server/dionbd
[ -x "$load" ] || skip "no $load (libnbd-dev missing at build time?)"
[ -x "$dionbd" ] || die "no $dionbd: build first"
case " $servers " in
*" dionbd-base "* | *" dionbd-base-nopoll "*) [ -x "$base/server/dionbd" ] || die "dionbd-base needs --base DIR with server/dionbd" ;;
esac
command -v fio >/dev/null || skip "fio is not installed"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"

scratch=${DIO_BENCH_DIR:-$build/tmp}
mkdir -p "$scratch"
work=$(mktemp -d "$scratch/run-conns.XXXXXX")
img=$work/vol.img
results=$work/results
mport=$((20000 + RANDOM % 20000))

make_full "$img" "$(to_bytes "$size")"	# fully written: reads hit the device
ts_srv=()
ts_cli=()
[ -n "$ts_server" ] && ts_srv=(taskset -c "$ts_server")
[ -n "$ts_client" ] && ts_cli=(taskset -c "$ts_client")

# start_server NAME: run it on $work/s.sock, set srv_pid and uri.
start_server() {
	rm -f "$work/s.sock"
	case $1 in
	dionbd | dionbd-nocheck | dionbd-checkonly | dionbd-noyield | dionbd-nopoll | dionbd-t1 | dionbd-turn | dionbd-base*)
		local extra=() bin=$dionbd
		case $1 in dionbd-base*) bin=$base/server/dionbd ;; esac
		[ "$1" = dionbd-nocheck ] && extra=(--poll-check off)
		[ "$1" = dionbd-checkonly ] && extra=(--poll-yield off)
		[ "$1" = dionbd-noyield ] && extra=(--poll-check off --poll-yield off)
		[ "$1" = dionbd-nopoll ] || [ "$1" = dionbd-base-nopoll ] && extra=(--poll-us 0)
		[ "$1" = dionbd-t1 ] && extra=(-t 1)
		[ "$1" = dionbd-turn ] && extra=(--submit-batch 0)
		"${ts_srv[@]}" "$bin" -f -U "$work/s.sock" --metrics "127.0.0.1:$mport" \
			"${extra[@]}" -e "v=$img" >"$work/srv.log" 2>&1 & ;;
	nbdkit-null)
		"${ts_srv[@]}" nbdkit -f -U "$work/s.sock" -e v null size="$size" \
			>"$work/srv.log" 2>&1 & ;;
	esac
	srv_pid=$!
	for _ in $(seq 100); do
		[ -S "$work/s.sock" ] && return 0
		sleep 0.05
	done
	die "$1 did not start: $(cat "$work/srv.log")"
}

# dionbd's stage averages in microseconds, completions per reap pass and
# replies per socket write (all reactors), how its polling checks chose
# (poll-check) and the last check's replies per second with and without
# polling, as key=value pairs (metrics page).
stages() {
	curl -s "http://127.0.0.1:$mport/metrics" | awk '
		/^dionbd_request_stage_seconds_total\{export="v"/ {
			match($0, /stage="[a-z]+"/); st = substr($0, RSTART + 7, RLENGTH - 8); t[st] = $NF }
		/^dionbd_requests_staged_total\{export="v"/ { n = $NF }
		/^dionbd_poll_checks_total\{chose="poll"/ { cp = $NF }
		/^dionbd_poll_checks_total\{chose="nopoll"/ { cn = $NF }
		/^dionbd_poll_check_replies_per_second\{mode="poll"/ { rp = $NF }
		/^dionbd_poll_check_replies_per_second\{mode="nopoll"/ { rn = $NF }
		/^dionbd_reactor_reaps_total/ { reaps += $NF }
		/^dionbd_reactor_completions_total/ { cqes += $NF }
		/^dionbd_reactor_reply_writes_total/ { writes += $NF }
		/^dionbd_reactor_replies_total/ { replies += $NF }
		END { for (s in t) printf " st_%s_us=%.1f", s, (n > 0 ? t[s] * 1e6 / n : 0)
		      if (reaps > 0) printf " cqe_per_reap=%.1f", cqes / reaps
		      if (writes > 0) printf " rep_per_write=%.1f", replies / writes
		      if (cp != "") printf " checks=%d/%d", cp, cn
		      if (rp != "") printf " lastcheck=%.0f/%.0f", rp, rn }'
}

# The server's CPU time so far, in microseconds.
srv_cpu_us() {
	local hz
	hz=$(getconf CLK_TCK)
	awk -v hz="$hz" '{ sub(/^.*\) /, ""); print ($12 + $13) * 1000000 / hz }' "/proc/$srv_pid/stat"
}

# Busy time of the whole machine so far (every CPU, interrupts and kernel
# threads included: the completions the device raises land there), in us.
machine_busy_us() {
	local hz
	hz=$(getconf CLK_TCK)
	awk -v hz="$hz" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) * 1000000 / hz }' /proc/stat
}

# machine_cpu_us BUSY0 CELLOUT: machine_us_per_io=..., the machine's busy
# time since BUSY0 per request of the cell (its iops over $runtime). Only
# honest on a quiet machine: whatever else runs is counted too.
machine_cpu_us() {
	local n
	n=$(sed -n 's/.*iops=\([0-9]*\).*/\1/p' <<<"$2")
	awk -v a="$1" -v b="$(machine_busy_us)" -v n="${n:-0}" -v t="$runtime" \
		'BEGIN { printf "machine_us_per_io=%.1f", (n > 0 ? (b - a) / (n * t) : 0) }'
}

# The busy loops of --hogs, started for a cell's load and stopped after it.
hog_pids=()
hogs_start() {
	local i
	hog_pids=()
	for ((i = 0; i < hogs; i++)); do
		sh -c 'while :; do :; done' &
		hog_pids+=($!)
	done
}
hogs_stop() {
	[ ${#hog_pids[@]} -gt 0 ] || return 0
	kill "${hog_pids[@]}" 2>/dev/null || true
	wait "${hog_pids[@]}" 2>/dev/null || true
	hog_pids=()
}
# Their CPU time so far, in microseconds.
hogs_cpu_us() {
	local hz p t=0
	hz=$(getconf CLK_TCK)
	for p in "${hog_pids[@]}"; do
		t=$(awk -v hz="$hz" -v t="$t" '{ sub(/^.*\) /, ""); print t + ($12 + $13) * 1000000 / hz }' \
			"/proc/$p/stat")
	done
	echo "$t"
}
# hogs_cpus H0 T0: hog_cpus=..., the CPUs' worth they got since they had
# H0 us at time T0 (date +%s.%N).
hogs_cpus() {
	[ "$hogs" -gt 0 ] || return 0
	awk -v a="$1" -v b="$(hogs_cpu_us)" -v t0="$2" -v t1="$(date +%s.%N)" \
		'BEGIN { printf " hog_cpus=%.2f", (b - a) / ((t1 - t0) * 1e6) }'
}
trap 'hogs_stop; bench_cleanup' EXIT

# cell SERVER ROW CONNS REP: one measurement, appended to $results.
cell() {
	local server=$1 row=$2 conns=$3 rep=$4 q w=0 out iops cpu0 cpu1 cpu m0
	q=$((depth / conns))
	[ "$q" -ge 1 ] || q=1
	case $row in
	randwrite) w=100 ;;
	qd1-randread) q=1 ;;
	esac
	m0=$(machine_busy_us)
	if [ "$server" = fio-uring ] || [ "$server" = fio-uring-convoy ]; then
		local rw=randread h0 t0 batch=()
		hogs_start
		h0=$(hogs_cpu_us) t0=$(date +%s.%N)
		[ "$w" = 100 ] && rw=randwrite
		[ "$server" = fio-uring-convoy ] &&
			batch=(--iodepth_batch_submit=$((q * conns)) --iodepth_batch_complete_min=$((q * conns)))
		out=$("${ts_cli[@]}" fio --name=c --filename="$img" --rw=$rw --bs=4k --direct=1 \
			--ioengine=io_uring --iodepth=$((q * conns)) "${batch[@]}" --time_based \
			--runtime="$runtime" --output-format=json 2>/dev/null |
			python3 -c 'import json,sys
j=json.load(sys.stdin)["jobs"][0]; d=j["read"] if j["read"]["io_bytes"] else j["write"]
p=d["clat_ns"]["percentile"]
print("iops=%.0f lat_p50_us=%.1f lat_p99_us=%.1f cpu_us_per_io=%.1f" % (d["iops"], p["50.000000"]/1e3,
      p["99.000000"]/1e3, (j["usr_cpu"] + j["sys_cpu"]) * 1e4 / d["iops"] if d["iops"] else 0))')
		out+="$(hogs_cpus "$h0" "$t0")"
		hogs_stop
		out+=" $(machine_cpu_us "$m0" "$out")"
		echo "$row $server $conns $rep $out srv_cpu_us_per_io=-" >>"$results"
		return
	fi
	start_server "$server"
	local perf_pid="" sys=-
	if $syscalls; then
		perf stat -x, -e raw_syscalls:sys_enter -p "$srv_pid" -o "$work/perf.out" &
		perf_pid=$!
		sleep 0.5	# attached before the load starts
	fi
	hogs_start
	local h0 t0
	h0=$(hogs_cpu_us) t0=$(date +%s.%N)
	cpu0=$(srv_cpu_us)
	m0=$(machine_busy_us)
	out=$("${ts_cli[@]}" "$load" "${raw_client[@]}" -c "$conns" -T "${client_threads:-$conns}" -q "$q" -w "$w" -t "$runtime" \
		"nbd+unix:///v?socket=$work/s.sock") || die "nbd-load failed on $server"
	cpu1=$(srv_cpu_us)
	out+="$(hogs_cpus "$h0" "$t0")"
	hogs_stop
	out+=" $(machine_cpu_us "$m0" "$out")"
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		sys=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$work/perf.out")
	fi
	case $server in dionbd*) out+=$(stages) ;; esac
	stop_server "$work/s.sock"
	iops=$(sed -n 's/.*iops=\([0-9]*\).*/\1/p' <<<"$out")
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$iops" -v t="$runtime" \
		'BEGIN { printf "%.1f", (n > 0 ? (b - a) / (n * t) : 0) }')
	[ "$sys" = - ] || [ -z "$sys" ] || sys=$(awk -v s="$sys" -v n="$iops" -v t="$runtime" \
		'BEGIN { printf "%.2f", (n > 0 ? s / (n * t) : 0) }')
	echo "$row $server $conns $rep $out srv_cpu_us_per_io=$cpu srv_syscalls_per_io=${sys:--}" >>"$results"
}

: >"$results"
for rep in $(seq "$reps"); do
	for row in $rows; do
		cl=$conns_list
		[ "$row" = qd1-randread ] && cl=1
		for conns in $cl; do
			# peers alternate within each repetition, so drift hits them alike
			for server in $servers; do
				say "rep $rep: $row, $conns connection(s), $server"
				cell "$server" "$row" "$conns" "$rep"
			done
		done
	done
done

cp "$results" "${DIO_BENCH_KEEP:-/dev/null}" 2>/dev/null || true
python3 - "$results" "$servers" "$depth" <<'EOF'
import statistics, sys
path, servers, depth = sys.argv[1], sys.argv[2].split(), sys.argv[3]
cells = {}
for line in open(path):
    f = line.split()
    row, server, conns = f[0], f[1], int(f[2])
    kv = dict(x.split("=", 1) for x in f[4:])
    cells.setdefault((row, conns, server), []).append(kv)

def med(kvs, key):
    vals = [float(k[key]) for k in kvs if k.get(key, "-") != "-"]
    return statistics.median(vals) if vals else None

print(f"# medians; total depth {depth} spread over the connections (qd1: one connection, depth 1)")
hogs = any("hog_cpus" in kv for kvs in cells.values() for kv in kvs)
print(f"{'row':14} {'conns':>5} {'server':16} {'IOPS':>8} {'p50 us':>8} {'p99 us':>9} {'srv CPU us/IO':>13} {'cli':>5} {'machine':>7} {'sys/IO':>6} {'cqe/reap':>8} {'rep/wr':>6} {'vs 1 conn':>9}"
      + (f" {'hog CPUs':>8}" if hogs else "")
      + "  stages us (receive/libdio/reply)  poll checks poll/nopoll@last check's replies/s poll/nopoll")
for (row, conns, server) in sorted(cells, key=lambda k: (k[0], k[1], servers.index(k[2]))):
    kvs = cells[(row, conns, server)]
    iops = med(kvs, "iops")
    one = cells.get((row, 1, server))
    ratio = f"{iops / med(one, 'iops'):.2f}" if one and med(one, "iops") else "-"
    cpu = med(kvs, "srv_cpu_us_per_io")
    sysio = med(kvs, "srv_syscalls_per_io")
    cli, mach = med(kvs, "cpu_us_per_io"), med(kvs, "machine_us_per_io")
    cqe, rpw = med(kvs, "cqe_per_reap"), med(kvs, "rep_per_write")
    print(f"{row:14} {conns:>5} {server:16} {iops:>8.0f} {med(kvs, 'lat_p50_us'):>8.1f} "
          f"{med(kvs, 'lat_p99_us'):>9.1f} {('-' if cpu is None else f'{cpu:.1f}'):>13} "
          f"{('-' if cli is None else f'{cli:.1f}'):>5} {('-' if mach is None else f'{mach:.1f}'):>7} "
          f"{('-' if sysio is None else f'{sysio:.2f}'):>6} {('-' if cqe is None else f'{cqe:.1f}'):>8} "
          f"{('-' if rpw is None else f'{rpw:.1f}'):>6} {ratio:>9}"
          + (f" {med(kvs, 'hog_cpus'):>8.2f}" if hogs else "") + "  "
          + "/".join("-" if med(kvs, "st_%s_us" % st) is None else "%.0f" % med(kvs, "st_%s_us" % st)
                     for st in ("receive", "libdio", "reply"))
          + ("  " + " ".join(k["checks"] + ("@" + k["lastcheck"] if "lastcheck" in k else "")
                           for k in kvs) if "checks" in kvs[0] else ""))
EOF
