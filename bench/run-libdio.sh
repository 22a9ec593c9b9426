#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# libdio beside fio: the same workloads on the same file in the same run,
# fio with its io_uring engine (O_DIRECT, fixed buffers, registered files,
# no SQPOLL) and dio-bench driving libdio, in alternating order, N times,
# then a table of medians and the ratio libdio/fio.
#
#   bench/run-libdio.sh [--file F] [--size 2G] [--runtime 5] [--ramp 1]
#                       [--reps 3] [--engine uring|psync] [--rows LIST]
#                       [--dio-bench PATH] [--out DIR] [--strict] [--memdisk]
#                       [--cpu N|none] [--dio-args "ARGS"]
#   bench/run-libdio.sh --smoke uring|psync     (a few seconds, for ctest)
#
# Scratch files go in $DIO_BENCH_DIR (default ./build-bench/tmp), which must
# be on a filesystem that takes O_DIRECT (ext4, xfs; not tmpfs).
# Both tools run pinned to one CPU (default: the last one; --cpu none to
# let them float): on a small or shared machine, where the scheduler puts
# the submitter relative to the completing CPU changes QD1 results by 2x.
# --memdisk (root) puts the file on ext4 on a loop device backed by /dev/shm
# instead: a "device" that is all CPU, to measure the software's own cost.
# Rows: qd1-randread qd32-randread qd1-randwrite qd32-randwrite
#       qd32-read-1m qd32-write-1m
# Exit: 0 done (with --strict: every row met its target), 1 failure or
# (with --strict) a row below target, 77 when the machine lacks something.
set -euo pipefail

all_rows="qd1-randread qd32-randread qd1-randwrite qd32-randwrite qd32-read-1m qd32-write-1m"
dir=${DIO_BENCH_DIR:-./build-bench/tmp}
file=
size=2G
runtime=5
ramp=1
reps=3
engine=uring
rows=$all_rows
bench=
out=
strict=0
smoke=
memdisk=0
cpu=auto
dio_args=

die() { echo "run-libdio: $*" >&2; exit 1; }
skip() { echo "run-libdio: SKIP: $*" >&2; exit 77; }

# Bytes of a size with an optional k/m/g suffix (powers of 1024).
to_bytes() {
	local v=${1%[bB]}
	v=${v%[iI]}
	case $v in
	*[kK]) echo $(( ${v%?} << 10 )) ;;
	*[mM]) echo $(( ${v%?} << 20 )) ;;
	*[gG]) echo $(( ${v%?} << 30 )) ;;
	*[tT]) echo $(( ${v%?} << 40 )) ;;
	*) echo $(( v )) ;;
	esac
}

while [ $# -gt 0 ]; do
	case $1 in
	--file) file=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--ramp) ramp=$2; shift ;;
	--reps) reps=$2; shift ;;
	--engine) engine=$2; shift ;;
	--rows) rows=$2; shift ;;
	--dio-bench) bench=$2; shift ;;
	--out) out=$2; shift ;;
	--strict) strict=1 ;;
	--memdisk) memdisk=1 ;;
	--cpu) cpu=$2; shift ;;
	--dio-args) dio_args=$2; shift ;;
	--smoke) smoke=$2; shift ;;
	-h|--help) sed -n '4,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

num='^[0-9]+([.][0-9]+)?$'
[[ $runtime =~ $num && $ramp =~ $num ]] || die "--runtime and --ramp take seconds"
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps takes a count >= 1"
case $engine in uring|psync|auto) ;; *) die "--engine: uring, psync or auto" ;; esac

pin=()
if [ "$cpu" = auto ]; then
	cpu=$(( $(nproc) - 1 ))
	command -v taskset >/dev/null || cpu=none
fi
if [ "$cpu" != none ]; then
	[[ $cpu =~ ^[0-9]+$ ]] || die "--cpu takes a CPU number or none"
	command -v taskset >/dev/null || skip "taskset is not installed (or use --cpu none)"
	pin=(taskset -c "$cpu")
fi

python=/usr/bin/python3
[ -x $python ] || python=python3
command -v $python >/dev/null || skip "python3 is not installed"

if [ -z "$bench" ]; then
	for b in "${DIO_BUILD:-}/bench/dio-bench" ./build-bench/bench/dio-bench \
		 "$(dirname "$0")/../build-bench/bench/dio-bench"; do
		if [ -x "$b" ]; then bench=$b; break; fi
	done
fi
[ -n "$bench" ] && [ -x "$bench" ] ||
	skip "dio-bench is not built (set DIO_BUILD or --dio-bench)"

mkdir -p "$dir"
base_dir=$dir	# results stay here, outside a memdisk

md_img= md_loop= md_mnt=
memdisk_cleanup() {
	if [ -n "$md_mnt" ]; then umount "$md_mnt" 2>/dev/null; rmdir "$md_mnt" 2>/dev/null; fi
	if [ -n "$md_loop" ]; then losetup -d "$md_loop" 2>/dev/null; fi
	if [ -n "$md_img" ]; then rm -f "$md_img"; fi
	return 0
}
if [ "$memdisk" = 1 ] && [ -z "$smoke" ]; then
	[ "$(id -u)" = 0 ] || skip "--memdisk needs root (losetup, mount)"
	command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null ||
		skip "--memdisk needs losetup and mkfs.ext4"
	trap memdisk_cleanup EXIT
	md_img=/dev/shm/dio-bench-memdisk.$$.img
	md_bytes=$(( $(to_bytes "$size") + (256 << 20) ))
	[ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt "$md_bytes" ] ||
		skip "/dev/shm has no room for a $size memdisk"
	truncate -s "$md_bytes" "$md_img"
	md_loop=$(losetup -f --show "$md_img") || skip "no free loop device"
	mkfs.ext4 -q -F "$md_loop" || die "mkfs.ext4 $md_loop failed"
	md_mnt=$(realpath "$dir")/memdisk.$$
	mkdir -p "$md_mnt"
	mount "$md_loop" "$md_mnt" || skip "cannot mount $md_loop (no mount privilege?)"
	dir=$md_mnt
	echo "run-libdio: memdisk: ext4 on $md_loop (backed by $md_img) at $md_mnt" >&2
fi

# O_DIRECT is what both tools measure; tmpfs and some overlays refuse it.
probe=$dir/.odirect-probe.$$
if ! dd if=/dev/zero of="$probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	rm -f "$probe"
	skip "$dir does not take O_DIRECT; set DIO_BENCH_DIR to an ext4/xfs directory"
fi
rm -f "$probe"

# Make sure $1 is a file of $2 bytes with every block written: reads of
# holes or unwritten extents cost no I/O and would flatter whoever meets them.
make_file() {
	local f=$1 bytes=$2 have blocks
	if [ -f "$f" ]; then
		read -r have blocks < <(stat -c '%s %b' "$f")
		if [ "$have" -eq "$bytes" ] && [ $(( blocks * 512 )) -ge "$bytes" ] &&
		   ! filefrag -v "$f" 2>/dev/null | grep -q unwritten; then
			echo "run-libdio: reusing $f ($bytes bytes, fully written)" >&2
			return 0
		fi
		rm -f "$f"
	fi
	echo "run-libdio: writing $f ($bytes bytes of random data)" >&2
	if command -v fio >/dev/null; then
		fio --name=fill --filename="$f" --size="$bytes" --rw=write --bs=1m \
		    --iodepth=16 --ioengine=io_uring --direct=1 --end_fsync=1 \
		    --output=/dev/null ||
			die "could not write $f"
	else
		dd if=/dev/urandom of="$f" bs=1M count=$(( bytes >> 20 )) \
		   oflag=direct conv=fsync status=none || die "could not write $f"
	fi
	read -r have blocks < <(stat -c '%s %b' "$f")
	[ "$have" -eq "$bytes" ] && [ $(( blocks * 512 )) -ge "$bytes" ] ||
		die "$f came out sparse or short ($have bytes, $blocks blocks)"
}

# rw bs qd of a row name
row_params() {
	case $1 in
	qd1-randread) echo "randread 4k 1" ;;
	qd32-randread) echo "randread 4k 32" ;;
	qd1-randwrite) echo "randwrite 4k 1" ;;
	qd32-randwrite) echo "randwrite 4k 32" ;;
	qd32-read-1m) echo "read 1m 32" ;;
	qd32-write-1m) echo "write 1m 32" ;;
	*) die "unknown row: $1 (rows: $all_rows)" ;;
	esac
}

# ---------------------------------------------------------------- smoke
# Every row once on a small file for a fraction of a second: the numbers
# mean nothing, but each run must finish, count I/O and print valid JSON.
if [ -n "$smoke" ]; then
	# one file per engine: ctest runs both at once, and a volume locks its file
	f=$dir/dio-bench-smoke-$smoke.img
	make_file "$f" $(( 64 << 20 ))
	for row in $all_rows; do
		read -r rw bs qd < <(row_params "$row")
		json=$(timeout 60 "$bench" --file "$f" --rw "$rw" --bs "$bs" --qd "$qd" \
			--runtime 0.3 --ramp 0.1 --engine "$smoke" --json) ||
			die "$row: dio-bench failed"
		$python - "$row" "$smoke" "$json" <<'EOF' || exit 1
import json, sys
row, engine, text = sys.argv[1:4]
r = json.loads(text)
ok = (r["ios"] > 0 and r["iops"] > 0 and r["engine"].startswith(engine)
      and 0 < r["lat_min_us"] <= r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_max_us"])
print("run-libdio: smoke %-15s %-6s %8.0f IOPS p50 %.1f us p99 %.1f us  %s"
      % (row, r["engine"], r["iops"], r["lat_p50_us"], r["lat_p99_us"],
         "ok" if ok else "BAD"))
sys.exit(0 if ok else 1)
EOF
	done
	exit 0
fi

# ---------------------------------------------------------------- full run
command -v fio >/dev/null || skip "fio is not installed"
bytes=$(to_bytes "$size")
[ "$bytes" -ge $(( 64 << 20 )) ] || die "--size must be at least 64M"
file=${file:-$dir/bench-$size.img}
out=${out:-$base_dir/bench-results-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
for row in $rows; do row_params "$row" >/dev/null; done

nrows=$(wc -w <<<"$rows")
est=$(( nrows * reps * 2 * (${runtime%.*} + ${ramp%.*} + 1) ))
echo "run-libdio: $nrows rows x $reps reps x 2 tools, ${runtime}s + ${ramp}s ramp each: about ${est}s" >&2
make_file "$file" "$bytes"

limit=$(( ${runtime%.*} + ${ramp%.*} + 60 ))
# fio reads a bare time as whole seconds: "0.5" would be 0
ms() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000 + 0.5 }'; }
run_fio() {
	local row=$1 rw=$2 bs=$3 qd=$4 rep=$5
	local cmd=(fio --name="$row" --filename="$file" --size="$bytes" --rw="$rw"
		--bs="$bs" --iodepth="$qd" --ioengine=io_uring --direct=1
		--fixedbufs --registerfiles --sqthread_poll=0 --hipri=0
		--time_based --runtime="$(ms "$runtime")ms" --ramp_time="$(ms "$ramp")ms"
		--norandommap --randrepeat=0 --lat_percentiles=1
		--output-format=json --output="$out/$row.fio.$rep.json")
	[ "$rep" -eq 1 ] && echo "  ${cmd[*]}" >>"$out/commands.txt"
	timeout "$limit" "${pin[@]}" "${cmd[@]}" >/dev/null || die "$row: fio failed"
}
run_dio() {
	local row=$1 rw=$2 bs=$3 qd=$4 rep=$5
	local cmd=("$bench" --file "$file" --size "$bytes" --rw "$rw" --bs "$bs"
		--qd "$qd" --runtime "$runtime" --ramp "$ramp" --engine "$engine"
		--seed $(( 1000 + rep )) --json $dio_args)
	[ "$rep" -eq 1 ] && echo "  ${cmd[*]}" >>"$out/commands.txt"
	timeout "$limit" "${pin[@]}" "${cmd[@]}" >"$out/$row.dio.$rep.json" ||
		die "$row: dio-bench failed"
}

: >"$out/commands.txt"
start=$SECONDS
for rep in $(seq 1 "$reps"); do
	for row in $rows; do
		read -r rw bs qd < <(row_params "$row")
		# alternate who goes first, so drift in the device (SLC cache,
		# host writeback under a VM disk) does not always favour one side
		if [ $(( rep % 2 )) -eq 1 ]; then
			run_fio "$row" "$rw" "$bs" "$qd" "$rep"
			run_dio "$row" "$rw" "$bs" "$qd" "$rep"
		else
			run_dio "$row" "$rw" "$bs" "$qd" "$rep"
			run_fio "$row" "$rw" "$bs" "$qd" "$rep"
		fi
		echo "run-libdio: rep $rep/$reps $row done ($(( SECONDS - start ))s)" >&2
	done
done

echo "Commands (rep 1)${pin[*]:+, each run under: ${pin[*]}}:"
cat "$out/commands.txt"
echo
$python - "$out" "$reps" "$strict" $rows <<'EOF'
import json, statistics, sys

out, reps, strict, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]

def fio_result(path):
    with open(path) as f:
        job = json.load(f)["jobs"][0]
    side = job["write"] if job["write"]["total_ios"] > job["read"]["total_ios"] else job["read"]
    # fio's CPU figures are percent of one CPU over the job
    cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100.0
    return (side["iops"], side["bw_bytes"] / 1048576.0,
            side["lat_ns"]["percentile"]["99.000000"] / 1e3,
            cpu * 1e6 / side["iops"] if side["iops"] else 0.0)

def dio_result(path):
    with open(path) as f:
        r = json.load(f)
    return (r["iops"], r["mib_s"], r["lat_p99_us"], r["cpu_us_per_io"])

def medians(results):
    return [statistics.median(col) for col in zip(*results)]

hdr = ("row", "fio IOPS", "libdio IOPS", "ratio", "fio MiB/s", "libdio MiB/s",
       "fio p99us", "libdio p99us", "fio cpu/IO", "libdio cpu/IO", "target", "")
fmt = "%-15s %9s %11s %6s %9s %12s %9s %12s %10s %13s %6s  %s"
print(fmt % hdr)
short = 0
for row in rows:
    f = medians([fio_result("%s/%s.fio.%d.json" % (out, row, i)) for i in range(1, reps + 1)])
    d = medians([dio_result("%s/%s.dio.%d.json" % (out, row, i)) for i in range(1, reps + 1)])
    ratio = d[0] / f[0] if f[0] else 0.0
    target = 0.90 if row.startswith("qd1-") else 0.95
    ok = ratio >= target
    short += not ok
    print(fmt % (row, "%.0f" % f[0], "%.0f" % d[0], "%.3f" % ratio, "%.1f" % f[1],
                 "%.1f" % d[1], "%.0f" % f[2], "%.0f" % d[2], "%.2fus" % f[3],
                 "%.2fus" % d[3], "%.2f" % target,
                 "ok" if ok else "SHORT"))
print("\nmedians of %d runs each; ratio = libdio IOPS / fio IOPS; cpu/IO = CPU time"
      " (user + system, all threads) per I/O; raw JSON in %s" % (reps, out))
sys.exit(1 if strict and short else 0)
EOF
