#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Serving a Ceph RBD image over NBD: dionbd's rbd export with librbd's cache
# off and on, qemu-nbd serving the same image (cache=none: librbd's cache
# off; cache=writeback: on), and fio's own rbd engine (librbd in the client,
# cache off: the ceiling). One one-node cluster (tests/ceph/ceph-cluster.sh,
# one bluestore OSD on a sparse file) under the scratch directory, stopped
# by its PIDs at the end; one image of --size, written in full first (reads
# of never-written objects cost no OSD I/O). The NBD servers are driven by
# fio's nbd engine over one Unix-socket connection, so every peer has the
# same client. Each cell reports IOPS (and MiB/s), p50/p99 completion
# latency and the server's CPU time per request (utime+stime of its
# process, /proc/PID/stat; fio-rbd has no server: "-"). N repetitions,
# peers alternating within each; the table holds medians.
#
#   bench/run-rbd.sh [--build DIR] [--size 1G] [--runtime 3] [--reps 3]
#                    [--depth 32] [--rows LIST] [--servers LIST]
#
# Rows: randread randwrite (4 KiB random, QD --depth), qd1-randread
#       qd1-randwrite (QD 1), seqwrite (1 MiB sequential write, QD 8)
# Servers: dionbd dionbd-cache qemu-nbd qemu-nbd-wb fio-rbd
# Env: DIO_BUILD, DIO_BENCH_DIR (scratch: the OSD's 8 GiB sparse file).
# Exit 0, 1 failure, 77 when fio (with its nbd and rbd engines), qemu-nbd
# (with its rbd module), Ceph or dionbd's rbd support is missing.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-$top/build}
size=1G
runtime=3
reps=3
depth=32
rows="randread randwrite qd1-randread qd1-randwrite seqwrite"
servers="dionbd dionbd-cache qemu-nbd qemu-nbd-wb fio-rbd"

bench_name=run-rbd
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--reps) reps=$2; shift ;;
	--depth) depth=$2; shift ;;
	--rows) rows=$2; shift ;;
	--servers) servers=$2; shift ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done

dionbd=$build/server/dionbd
[ -x "$dionbd" ] || die "no $dionbd: build first"
command -v fio >/dev/null || skip "fio is not installed"
for e in nbd rbd; do
	fio --enghelp | grep -qw "$e" || skip "fio has no $e engine"
done
command -v qemu-nbd >/dev/null || skip "qemu-nbd is not installed (qemu-utils)"
for m in /usr/lib/*/qemu/block-rbd.so /usr/lib/qemu/block-rbd.so; do
	[ -f "$m" ] && break
done
[ -f "$m" ] || skip "qemu-nbd has no rbd support (qemu-block-extra; scripts/deps.sh)"

scratch=${DIO_BENCH_DIR:-$build/tmp}
mkdir -p "$scratch"
work=$(mktemp -d "$scratch/run-rbd.XXXXXX")
results=$work/results
cdir=$work/ceph

# The cluster goes with the scratch directory, whatever ends the run.
rbd_bench_cleanup() {
	local rc=$?
	if [ -n "$srv_pid" ]; then
		kill "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=
	fi
	bash "$top/tests/ceph/ceph-cluster.sh" stop "$cdir" || true
	bench_cleanup
	exit "$rc"
}
trap rbd_bench_cleanup EXIT

say "starting a one-node Ceph cluster in $cdir"
rc=0
timeout 240 bash "$top/tests/ceph/ceph-cluster.sh" start "$cdir" 1 2>"$work/ceph.log" || rc=$?
[ "$rc" != 77 ] || skip "cannot run Ceph here: $(tail -n 1 "$work/ceph.log")"
[ "$rc" = 0 ] || die "the cluster did not start: $(tail -n 5 "$work/ceph.log")"
conf=$cdir/ceph.conf
keyring=$cdir/keyring
# The same cluster with librbd's cache off, for fio's rbd engine (which
# reads its configuration from CEPH_CONF).
nocache_conf=$work/nocache.conf
{ cat "$conf"; printf '[client]\nrbd_cache = false\n'; } >"$nocache_conf"
ceph_c() { timeout 120 ceph -c "$conf" "$@"; }
ceph_c osd pool create bench 32 >/dev/null 2>&1 || die "pool create bench"
timeout 120 rbd -c "$conf" pool init bench || die "rbd pool init bench"
timeout 120 rbd -c "$conf" create --size "$size" bench/img || die "rbd create bench/img"

# Every 1 MiB written once, so reads are of objects that exist.
say "writing bench/img ($size) in full"
CEPH_CONF=$nocache_conf timeout 900 fio --name=fill --ioengine=rbd --clientname=admin \
	--pool=bench --rbdname=img --rw=write --bs=1M --iodepth=16 \
	--output="$work/fill.out" || die "filling the image: $(cat "$work/fill.out")"

rbd_spec="rbd:bench/img,rbd-conf=$conf,rbd-keyring=$keyring"
qemu_spec="rbd:bench/img:conf=$conf:keyring=$keyring"

# start_server NAME: serve bench/img on $work/s.sock as export v, set srv_pid.
start_server() {
	rm -f "$work/s.sock"
	case $1 in
	dionbd) "$dionbd" -f -U "$work/s.sock" -e "v=$rbd_spec,rbd-cache=off" \
			>"$work/srv.log" 2>&1 & ;;
	dionbd-cache) "$dionbd" -f -U "$work/s.sock" -e "v=$rbd_spec,rbd-cache=on" \
			>"$work/srv.log" 2>&1 & ;;
	qemu-nbd) qemu-nbd -f raw --cache=none --persistent --shared=4 -k "$work/s.sock" -x v "$qemu_spec" \
			>"$work/srv.log" 2>&1 & ;;
	qemu-nbd-wb) qemu-nbd -f raw --cache=writeback --persistent --shared=4 -k "$work/s.sock" -x v "$qemu_spec" \
			>"$work/srv.log" 2>&1 & ;;
	*) die "unknown server $1" ;;
	esac
	srv_pid=$!
	for _ in $(seq 300); do
		[ -S "$work/s.sock" ] && return 0
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	die "$1 did not start: $(cat "$work/srv.log")"
}

# cell SERVER ROW REP: one measurement, appended to $results.
cell() {
	local server=$1 row=$2 rep=$3 rw bs=4k q=$depth eng out cpu0 cpu1 cpu=-
	case $row in
	randread) rw=randread ;;
	randwrite) rw=randwrite ;;
	qd1-randread) rw=randread q=1 ;;
	qd1-randwrite) rw=randwrite q=1 ;;
	seqwrite) rw=write bs=1M q=8 ;;
	*) die "unknown row $row" ;;
	esac
	if [ "$server" = fio-rbd ]; then
		eng=(--ioengine=rbd --clientname=admin --pool=bench --rbdname=img)
	else
		start_server "$server"
		eng=(--ioengine=nbd "--uri=nbd+unix:///v?socket=$work/s.sock")
		cpu0=$(cpu_ticks)
	fi
	CEPH_CONF=$nocache_conf timeout $((runtime + 120)) fio --name=c "${eng[@]}" --rw=$rw \
		--bs=$bs --iodepth=$q --norandommap --randrepeat=0 --time_based \
		--runtime="$runtime" --output-format=json >"$work/fio.json" 2>"$work/fio.err" ||
		die "fio failed on $server ($row): $(cat "$work/fio.err")"
	if [ "$server" != fio-rbd ]; then
		cpu1=$(cpu_ticks)
		stop_server "$work/s.sock"
	fi
	# (the nbd engine says "fio: connected to NBD server" before the JSON)
	out=$(python3 -c 'import json,sys
t=open(sys.argv[1]).read(); j=json.loads(t[t.index("{"):])["jobs"][0]; d=j["read"] if j["read"]["io_bytes"] else j["write"]
p=d["clat_ns"]["percentile"]
print("iops=%.0f mibs=%.1f p50_us=%.1f p99_us=%.1f" % (d["iops"], d["bw_bytes"] / 1048576,
      p["50.000000"] / 1e3, p["99.000000"] / 1e3))' "$work/fio.json")
	if [ "$server" != fio-rbd ]; then
		cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v o="$out" -v t="$runtime" \
			-v hz="$(getconf CLK_TCK)" 'BEGIN {
			match(o, /iops=[0-9]+/); n = substr(o, RSTART + 5, RLENGTH - 5)
			printf "%.1f", (n > 0 ? (b - a) * 1000000 / hz / (n * t) : 0) }')
	fi
	echo "$row $server $rep $out cpu_us_per_io=$cpu" >>"$results"
}

: >"$results"
for rep in $(seq "$reps"); do
	for row in $rows; do
		# peers alternate within each repetition, so drift hits them alike
		for server in $servers; do
			say "rep $rep: $row, $server"
			cell "$server" "$row" "$rep"
		done
	done
done

cp "$results" "${DIO_BENCH_KEEP:-/dev/null}" 2>/dev/null || true
python3 - "$results" "$servers" "$rows" "$depth" <<'EOF'
import statistics, sys
path, servers, rows, depth = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
cells = {}
for line in open(path):
    f = line.split()
    cells.setdefault((f[0], f[1]), []).append(dict(x.split("=", 1) for x in f[3:]))

def med(kvs, key):
    vals = [float(k[key]) for k in kvs if k.get(key, "-") != "-"]
    return statistics.median(vals) if vals else None

print(f"# medians of {len(next(iter(cells.values())))} reps; randread/randwrite 4 KiB at QD {depth}, "
      "qd1-* 4 KiB at QD 1, seqwrite 1 MiB at QD 8")
print(f"{'row':14} {'server':13} {'IOPS':>8} {'MiB/s':>8} {'p50 us':>9} {'p99 us':>9} "
      f"{'srv CPU us/IO':>13} {'vs fio-rbd':>10} {'vs qemu-nbd':>11}")
for row in rows:
    for server in servers:
        kvs = cells.get((row, server))
        if not kvs:
            continue
        iops = med(kvs, "iops")
        def ratio(peer):
            p = cells.get((row, peer))
            return f"{iops / med(p, 'iops'):.2f}" if p and med(p, "iops") else "-"
        cpu = med(kvs, "cpu_us_per_io")
        print(f"{row:14} {server:13} {iops:>8.0f} {med(kvs, 'mibs'):>8.1f} {med(kvs, 'p50_us'):>9.1f} "
              f"{med(kvs, 'p99_us'):>9.1f} {('-' if cpu is None else f'{cpu:.1f}'):>13} "
              f"{ratio('fio-rbd'):>10} {ratio('qemu-nbd'):>11}")
EOF
