#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The thin pool measured (issue 10): dionbd serving a pool volume beside
# the raw file on the same filesystem (fio io_uring, O_DIRECT: the ceiling)
# and qemu-nbd serving qcow2 (plain, and with extended_l2=on), through the
# same client for every server (Unix socket), N repetitions with the peers
# alternating within each row, then a table of medians with the ratios to
# raw and to qcow2, and the pool's metadata size and open time.
#
# The client: the 4 KiB QD32 write rows (ow, fw) go through
# bench/nbd-load -R, which costs a server's neighbour 1-2 us of CPU a
# request where fio's nbd engine (libnbd) costs 9-20 us on the same two
# cores; with fio the client, not the server, set those rows (session 11).
# --client fio puts them back on fio's nbd engine (and its --ramp); the
# other rows always use fio. raw is fio io_uring on the file either way.
#
#   bench/run-pool.sh [--build DIR] [--size 1G] [--runtime 5] [--ramp 0.5]
#                     [--reps 3] [--rows LIST] [--peers LIST] [--fua-ios 400]
#                     [--meta-size 256M] [--limit 900] [--out DIR] [--strict]
#                     [--pool-discard on|off] [--cow-size 4G] [--cow-min-ios 50000]
#                     [--rd-size 256M] [--snaps 9] [--snap-chunks "1000 100000 1000000"]
#                     [--client raw|fio]
# (lists: words apart by spaces or commas, --rows cow-4k-qd32 --peers dionbd,raw,qcow2)
#
# Env (the flags win): DIO_BUILD (build dir, default ./build-rel, then
# ./build-bench2, ./build), DIO_BENCH_DIR (scratch, default BUILD/tmp; must
# take O_DIRECT), DIO_BENCH_SIZE (volume, image and raw file size),
# DIO_BENCH_RUNTIME, DIO_BENCH_RAMP, DIO_BENCH_REPS, DIO_BENCH_ROWS,
# DIO_BENCH_PEERS, DIO_BENCH_FUA_IOS (FUA writes per cell),
# DIO_BENCH_META_SIZE (the volume filled with random 4 KiB writes for the
# metadata figure), DIO_BENCH_LIMIT (seconds; no repetition starts that
# would end past it), DIO_BENCH_CHUNK (the pool's chunk size, default 64K),
# DIO_BENCH_POOL_DISCARD (dionbd --pool-discard, and dionbd-pool --no-discard
# when off: off keeps the preallocated pool file allocated after volumes of
# earlier rows are deleted),
# DIO_BENCH_COW_SIZE (the volume cloned for cow-4k-qd32: one write per
# 64 KiB slot of it at most, so its slots bound a cell's writes),
# DIO_BENCH_COW_MIN_IOS (a cow-4k-qd32 cell that ends before --runtime must
# have written this many; the table flags one that wrote fewer in less
# than 2 s), DIO_BENCH_RD_SIZE
# (the volumes and images the rd rows read), DIO_BENCH_SNAPS
# (snapshots per size in snap-create), DIO_BENCH_SNAP_CHUNKS (mapped 4 KiB
# chunks of the volumes snap-create snapshots and vol-delete deletes),
# DIO_BENCH_CLIENT (raw or fio, as --client).
# Rows: ow-4k-qd32 fw-4k-qd32 seq-1m-qd8 fua-4k-qd1 cow-4k-qd32
#       rd-d1-4k-qd32 rd-d8-4k-qd32 (per peer, each repetition)
#       snap-create vol-delete (dionbd only, once, on a second pool of
#       4 KiB chunks on a sparse file; need dionbdctl and pool-snap-bench)
# Peers: dionbd dionbd-raw raw qcow2 qcow2-xl2 nbd-null raw-copy raw-pool (dionbd-raw: dionbd serving
# the raw file, so what the pool costs shows apart from what NBD costs;
# nbd-null: nbdkit's null plugin, a server that does no I/O at all, so the
# NBD path's own ceiling on this machine, client and socket, shows beside raw;
# raw-copy, cow-4k-qd32 only: per slot one read and one write of a whole
# pool chunk on the raw file, the device's cost of copying one, no server;
# raw-pool, ow fw seq only: raw's fio on the pool file itself, over the
# blocks the pool's writes land on: for ow the chunks volume ow maps, for
# fw and seq the chunks the last fresh fw or seq volume took. This VM's
# disk writes 65-110K random 4 KiB a second depending on where a file
# lies (2026-12-02), so a raw file elsewhere is not the pool's ceiling;
# with raw-pool measured, the targets are judged against it)
# Exit: 0 done (with --strict: every target met), 1 failure, 77 when the
# machine lacks fio, its nbd engine, python3-libnbd, qemu-img or nbdinfo.
set -euo pipefail

all_rows="ow-4k-qd32 fw-4k-qd32 seq-1m-qd8 fua-4k-qd1 cow-4k-qd32 rd-d1-4k-qd32 rd-d8-4k-qd32 snap-create vol-delete"
# rows measured once, on dionbd alone, not per peer and repetition
once_rows="snap-create vol-delete"
all_peers="dionbd dionbd-raw raw qcow2 qcow2-xl2 nbd-null raw-copy raw-pool"
top=$(cd "$(dirname "$0")/.." && pwd)
build=${DIO_BUILD:-}
size=${DIO_BENCH_SIZE:-1G}
runtime=${DIO_BENCH_RUNTIME:-5}
ramp=${DIO_BENCH_RAMP:-0.5}
reps=${DIO_BENCH_REPS:-3}
rows=${DIO_BENCH_ROWS:-$all_rows}
peers=${DIO_BENCH_PEERS:-$all_peers}
fua_ios=${DIO_BENCH_FUA_IOS:-400}
pool_discard=${DIO_BENCH_POOL_DISCARD:-on}
meta_size=${DIO_BENCH_META_SIZE:-256M}
limit=${DIO_BENCH_LIMIT:-900}
chunk=${DIO_BENCH_CHUNK:-64K}
cow_size=${DIO_BENCH_COW_SIZE:-4G}
cow_min_ios=${DIO_BENCH_COW_MIN_IOS:-50000}
rd_size=${DIO_BENCH_RD_SIZE:-256M}
snaps=${DIO_BENCH_SNAPS:-9}
snap_chunks=${DIO_BENCH_SNAP_CHUNKS:-1000 100000 1000000}
client=${DIO_BENCH_CLIENT:-raw}
out=
strict=0

# shellcheck disable=SC2034 # read by lib-bench.sh
bench_name=run-pool
source "$top/bench/lib-bench.sh"

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--size) size=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--ramp) ramp=$2; shift ;;
	--reps) reps=$2; shift ;;
	--rows) rows=$2; shift ;;
	--peers) peers=$2; shift ;;
	--fua-ios) fua_ios=$2; shift ;;
	--meta-size) meta_size=$2; shift ;;
	--pool-discard) pool_discard=$2; shift ;;
	--cow-size) cow_size=$2; shift ;;
	--cow-min-ios) cow_min_ios=$2; shift ;;
	--rd-size) rd_size=$2; shift ;;
	--snaps) snaps=$2; shift ;;
	--snap-chunks) snap_chunks=$2; shift ;;
	--limit) limit=$2; shift ;;
	--client) client=$2; shift ;;
	--out) out=$2; shift ;;
	--strict) strict=1 ;;
	-h|--help) sed -n '4,62p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

# lists take spaces or commas
rows=${rows//,/ } peers=${peers//,/ } snap_chunks=${snap_chunks//,/ }
num='^[0-9]+([.][0-9]+)?$'
[[ $runtime =~ $num && $ramp =~ $num ]] || die "--runtime and --ramp take seconds"
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps takes a count >= 1"
[[ $limit =~ ^[1-9][0-9]*$ ]] || die "--limit takes whole seconds"
[[ $fua_ios =~ ^[1-9][0-9]*$ ]] || die "--fua-ios takes a count >= 1"
[[ $cow_min_ios =~ ^[1-9][0-9]*$ ]] || die "--cow-min-ios takes a count >= 1"
[[ $snaps =~ ^[1-9][0-9]*$ ]] || die "--snaps takes a count >= 1"
case $client in raw|fio) ;; *) die "--client takes raw or fio" ;; esac
for n in $snap_chunks; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "--snap-chunks takes counts >= 1"; done
for r in $rows; do
	case " $all_rows " in *" $r "*) ;; *) die "unknown row: $r (rows: $all_rows)" ;; esac
done
has_row() { case " $rows " in *" $1 "*) true ;; *) false ;; esac; }
# the rows run per peer and repetition
fio_rows=
for r in $rows; do case " $once_rows " in *" $r "*) ;; *) fio_rows+="${fio_rows:+ }$r" ;; esac; done
for p in $peers; do
	case " $all_peers " in *" $p "*) ;; *) die "unknown peer: $p (peers: $all_peers)" ;; esac
done

# ---------------------------------------------------------------- tools
command -v fio >/dev/null || skip "fio is not installed"
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"
command -v nbdinfo >/dev/null || skip "nbdinfo is not installed (apt-get install libnbd-bin)"
python=/usr/bin/python3
[ -x $python ] || python=python3
command -v $python >/dev/null || skip "python3 is not installed"
$python -c 'import nbd' 2>/dev/null || skip "python3-libnbd is missing (the FUA row drives it)"
case " $peers " in
*" qcow2"*) command -v qemu-nbd >/dev/null && command -v qemu-img >/dev/null ||
	skip "qemu-nbd or qemu-img is not installed (apt-get install qemu-utils, or drop the qcow2 peers)" ;;
esac
case " $peers " in
*" nbd-null "*) command -v nbdkit >/dev/null || skip "nbdkit is not installed (or drop the nbd-null peer)" ;;
esac

if [ -z "$build" ]; then
	for b in ./build-rel ./build-bench2 ./build "$top/build-rel" "$top/build-bench2" "$top/build"; do
		if [ -x "$b/server/dionbd" ] && [ -x "$b/tools/dionbd-pool" ]; then build=$b; break; fi
	done
fi
[ -n "$build" ] || die "no build dir with server/dionbd and tools/dionbd-pool; pass --build DIR (or DIO_BUILD)"
build=$(cd "$build" && pwd)
dionbd=$build/server/dionbd
pooltool=$build/tools/dionbd-pool
[ -x "$dionbd" ] || die "$dionbd is missing: cmake --build $build --target dionbd"
[ -x "$pooltool" ] || die "$pooltool is missing: cmake --build $build --target dionbd-pool"
# The tool frees chunks too (the volumes of earlier rows deleted): with
# --pool-discard off it must not punch them out of the preallocated pool
# file either, or the next row's first writes pay the filesystem's allocation.
ptool() {
	if [ "$pool_discard" = off ]; then
		"$pooltool" --no-discard "$@"
	else
		"$pooltool" "$@"
	fi
}
snapbench=$build/bench/pool-snap-bench
load=$build/bench/nbd-load
if [ "$client" = raw ] && { has_row ow-4k-qd32 || has_row fw-4k-qd32; }; then
	[ -x "$load" ] || die "$load is missing: cmake --build $build --target nbd-load (or --client fio)"
fi
ctltool=$build/server/dionbdctl
if has_row snap-create || has_row vol-delete; then
	[ -x "$snapbench" ] || die "$snapbench is missing: cmake --build $build --target pool-snap-bench"
	[ -x "$ctltool" ] || die "$ctltool is missing: cmake --build $build --target dionbdctl"
fi

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
meta_bytes=$(to_bytes "$meta_size")
chunk_bytes=$(to_bytes "$chunk")
[ "$bytes" -ge $(( 64 << 20 )) ] || die "--size must be at least 64M"
[ $(( bytes % (1 << 20) )) -eq 0 ] && [ $(( meta_bytes % (1 << 20) )) -eq 0 ] ||
	die "--size and --meta-size must be whole MiB"
# FUA writes go one per stride, so each lands in a chunk (and a qcow2
# cluster, 64 KiB) nothing was written to yet.
stride=$(( chunk_bytes > 65536 ? chunk_bytes : 65536 ))
[ $(( fua_ios * stride )) -le "$bytes" ] || die "--fua-ios $fua_ios x $stride bytes does not fit in --size"
cow_bytes=$(to_bytes "$cow_size")
[ $(( cow_bytes % stride )) -eq 0 ] || die "--cow-size must be a multiple of $stride"
rd_bytes=$(to_bytes "$rd_size")
[ $(( rd_bytes % (8 * stride) )) -eq 0 ] || die "--rd-size must be a multiple of 8 x $stride"
{ ! has_row rd-d1-4k-qd32 && ! has_row rd-d8-4k-qd32; } || [ "$rd_bytes" -le "$bytes" ] || die "--rd-size must not exceed --size (raw reads that much of the raw file)"
# cow-4k-qd32: one 4 KiB write at the start of each stride-aligned slot
# (a chunk, a qcow2 cluster), every slot once, in a random order: fio
# replays a list of them (cow_log), since its random map is off with
# --blockalign and its lfsr generator then issues nothing. The cell ends
# after the last slot or --runtime: either >= cow_min_ios writes each
# into a chunk still shared, or the whole --runtime of them. (raw,
# dionbd-raw and nbd-null share nothing: they go over the slots
# cow_passes times, see run_fio.)
cow_slots=$(( cow_bytes / stride ))
cow_passes=3
if has_row cow-4k-qd32 && [ "$cow_slots" -lt "$cow_min_ios" ]; then
	say "warning: --cow-size $cow_size holds $cow_slots slots of $stride bytes, under --cow-min-ios $cow_min_ios:" \
		"a fast peer may run out of shared chunks before --runtime (raise --cow-size)"
fi
# each cell's clone is deleted after it: with discard on, its copies are
# punched out of the pool file, and the next repetition's clone allocates
# in those holes and pays ext4's allocation (io_uring hands such writes to
# a worker thread): 51-66 % of the first repetition's IOPS, measured
if has_row cow-4k-qd32 && [ "$pool_discard" = on ] && [ "$reps" -gt 1 ]; then
	say "warning: cow-4k-qd32 with --pool-discard on: repetitions after the first copy into chunks" \
		"punched out of the pool file; --pool-discard off measures the copy alone"
fi
raw=$dir/pool-bench-raw-$size.img
rawcow=$dir/pool-bench-raw-$cow_size.img
# Three volumes of --size (overwrite, first write, sequential) and the
# metadata one, plus room for the pool's own blocks; the volume cow-4k-qd32
# clones and what one clone copies (at most every chunk of it); the
# depth-1 and depth-8 volumes of the read rows.
pool_bytes=$(( 3 * bytes + meta_bytes + (64 << 20) ))
if has_row cow-4k-qd32; then pool_bytes=$(( pool_bytes + 2 * cow_bytes )); fi
# Snapshots and clones are bounded by the metadata reserve, not by data:
# the maps' references, each volume's counted apart (a clone's once its
# writes have copied its leaves), stay under the pool's chunks with a
# record more per chunk of three references (tp_meta_fits; sized here
# for the older bound, 3/4 of them). First-write volumes are deleted
# after their cell, so at most: ow, cowbase, one cell's volume, rd1 and
# the 8 levels of rd8.
peak=$(( bytes + bytes ))
if has_row cow-4k-qd32; then peak=$(( peak + cow_bytes + (cow_bytes > bytes ? cow_bytes - bytes : 0) )); fi
if has_row rd-d1-4k-qd32; then peak=$(( peak + rd_bytes )); fi
if has_row rd-d8-4k-qd32; then peak=$(( peak + 8 * rd_bytes )); fi
need=$(( peak / 3 * 4 + peak / 16 + (64 << 20) ))
[ "$need" -le "$pool_bytes" ] || pool_bytes=$(( need >> 20 << 20 ))
pool=$dir/pool-bench-pool-$pool_bytes.img
out=${out:-$dir/pool-results-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
work=$(mktemp -d "$dir/pool-run.XXXXXX")
# what pool-table.py checks each cow-4k-qd32 cell against
printf 'slots %d\nstride %d\npasses %d\nmin_ios %d\nmin_ms 2000\n' "$cow_slots" "$stride" "$cow_passes" "$cow_min_ios" >"$out/cow.txt"
sock=$work/sock
case $raw$pool$work$build$out in *[[:space:]]*) die "paths must not contain spaces: $dir, $build, $out" ;; esac




# ---------------------------------------------------------------- servers
# uri of the export a cell's server is serving
# Peers fio runs on a file itself, no server.
is_file_peer() { case $1 in raw|raw-copy|raw-pool) true ;; *) false ;; esac; }

uri_of() {
	case $1 in
	dionbd) echo "nbd+unix:///$2?socket=$sock" ;;
	dionbd-raw) echo "nbd+unix:///raw?socket=$sock" ;;
	*) echo "nbd+unix:///?socket=$sock" ;;
	esac
}

# Start peer $1 on $2 (dionbd: a volume name; qcow2: an image) and wait
# until nbdinfo reads its size ($3 bytes); the seconds that took go to
# open_s, the command to srv_cmd (not printed: this must not run in a
# subshell, or srv_pid is lost). dionbd serves a volume of $srv_pool
# (default the pool), with $srv_extra's words after its arguments.
srv_cmd="" open_s="" srv_pool="" srv_extra=""
start_server() {
	local p=$1 what=$2 want=$3 log=$out/server-$1.log cmd t0 got=
	rm -f "$sock"
	# shellcheck disable=SC2206 # $srv_extra: words, split on purpose
	case $p in
	dionbd) cmd=("$dionbd" -f -U "$sock" --pool-discard "$pool_discard"
		     -e "$what=pool:${srv_pool:-$pool}/$what" $srv_extra) ;;
	dionbd-raw) cmd=("$dionbd" -f -U "$sock" -e "raw=$what") ;;
	qcow2*) cmd=(qemu-nbd -k "$sock" -f qcow2 --cache=none --aio=io_uring --shared=8
		     --persistent "$what") ;;
	nbd-null) cmd=(nbdkit -f -U "$sock" null "size=$want") ;;
	esac
	srv_cmd=${cmd[*]}
	echo "== $(date +%T) $srv_cmd" >>"$log"
	t0=$(date +%s.%N)
	"${cmd[@]}" >>"$log" 2>&1 &
	srv_pid=$!
	for _ in $(seq 1 200); do
		if [ -S "$sock" ]; then
			got=$(timeout 10 nbdinfo --size "$(uri_of "$p" "$what")" 2>>"$log") && break
		fi
		if ! kill -0 "$srv_pid" 2>/dev/null; then
			local rc=0
			wait "$srv_pid" || rc=$?
			srv_pid=
			tail -n 5 "$log" >&2
			die "$p exited (status $rc) before serving $what; log: $log"
		fi
		sleep 0.05
	done
	[ "$got" = "$want" ] || die "$p: serving $what with size '$got', want $want; see $log"
	open_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
}



# Bytes the server (all its threads, io_uring's io-wq workers included)
# sent to the block layer: /proc/PID/io write_bytes counts each O_DIRECT
# write at submission to the block layer, its own and no other process's
# (a shared machine's /sys/block stats count everyone's). Not in it: what
# the filesystem's journal thread writes for it.
dev_wbytes() {
	awk '/^write_bytes:/ { print $2 }' "/proc/$srv_pid/io" 2>/dev/null || echo 0
}

nbd_flush() {
	timeout 60 $python -c 'import nbd, sys; h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.flush(); h.shutdown()' "$1"
}

pool_new_volume() {
	ptool volume delete "$pool" "$1" 2>/dev/null || true
	ptool volume create "$pool" "$1" "$2" >/dev/null || die "volume create $1"
}

# qcow2_new PEER IMAGE SIZE: an empty image
qcow2_new() {
	local p=$1 img=$2 n=$3 o=
	rm -f "$img"
	[ "$p" = qcow2-xl2 ] && o="-o extended_l2=on"
	# shellcheck disable=SC2086
	qemu-img create -q -f qcow2 $o "$img" "$n" || die "qemu-img create $img"
}

# qcow2_full PEER IMAGE [RAWFILE]: an image of the raw file, every cluster data
qcow2_full() {
	local p=$1 img=$2 src=${3:-$raw} o=
	rm -f "$img"
	[ "$p" = qcow2-xl2 ] && o="-o extended_l2=on"
	# shellcheck disable=SC2086
	timeout 600 qemu-img convert -f raw -O qcow2 $o -W "$src" "$img" || die "qemu-img convert to $img"
}

# qcow2_over PEER IMAGE BACKING: an empty image over a backing image
qcow2_over() {
	local p=$1 img=$2 base=$3 o=
	rm -f "$img"
	[ "$p" = qcow2-xl2 ] && o="-o extended_l2=on"
	# shellcheck disable=SC2086
	qemu-img create -q -f qcow2 $o -b "$base" -F qcow2 "$img" ||
		die "qemu-img create $img over $base"
}

# ---------------------------------------------------------------- FUA probe
# QD1 4 KiB writes, one per stride in a shuffled order, each with FUA
# (NBD: NBD_CMD_FLAG_FUA through libnbd; fio's nbd engine sends no FUA) or
# through O_DIRECT|O_DSYNC (raw: ext4 overwrites an allocated block with a
# FUA write). Latency from the call to its return, in one Python loop for
# every peer so the client's cost is the same.
fua_probe() {
	timeout $(( 60 + fua_ios / 5 )) $python - "$@" <<'EOF'
import json, mmap, os, random, statistics, sys, time
kind, target, n, stride, seed, outp = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
slots = list(range(n))
random.Random(seed).shuffle(slots)
buf = mmap.mmap(-1, 4096)
buf.write(os.urandom(4096))
lat = []
if kind == "nbd":
    import nbd
    h = nbd.NBD()
    h.connect_uri(target)
    if not h.can_fua():
        sys.exit("the server does not offer FUA")
    data = bytes(buf)
    for s in slots:
        t0 = time.perf_counter_ns()
        h.pwrite(data, s * stride, nbd.CMD_FLAG_FUA)
        lat.append(time.perf_counter_ns() - t0)
    h.shutdown()
else:
    fd = os.open(target, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    for s in slots:
        t0 = time.perf_counter_ns()
        if os.pwrite(fd, buf, s * stride) != 4096:
            sys.exit("short write")
        lat.append(time.perf_counter_ns() - t0)
    os.close(fd)
lat.sort()
us = [x / 1e3 for x in lat]
with open(outp, "w") as f:
    json.dump({"ios": n, "p50_us": us[len(us) // 2], "p99_us": us[min(len(us) - 1, len(us) * 99 // 100)],
               "mean_us": statistics.mean(us), "iops": 1e6 / statistics.mean(us)}, f)
EOF
}

# ---------------------------------------------------------------- cells
cell_limit=$(( ${runtime%.*} + ${ramp%.*} + 60 ))
: >"$out/commands.txt"

# rw bs qd length ramp(yes/no) randommap(yes/no) of a fio row. The first
# write row keeps fio's random map: each 4 KiB block is written once (while
# the run lasts less than a full pass), so every write is a first write.
# The sequential row ends after one pass of --size or --runtime, whichever
# comes first: it never wraps onto chunks it has written.
row_params() {
	case $1 in
	ow-4k-qd32) echo "randwrite 4k 32 timed yes no" ;;
	fw-4k-qd32) echo "randwrite 4k 32 timed no yes" ;;
	seq-1m-qd8) echo "write 1m 8 once no no" ;;
	cow-4k-qd32) echo "randwrite 4k 32 cow no no" ;;	# the list of cow_log
	rd-d*) echo "randread 4k 32 timed yes no" ;;
	esac
}

# cow_log FILE REP LOG PASSES [copy]: a fio replay list (iolog version 2)
# of one 4 KiB write at the start of every slot of --cow-size, in an order
# shuffled by REP (the same for every peer of a repetition), PASSES times
# over (each pass shuffled anew); FILE is the name fio opens (the raw
# file; for the nbd engine any name, its uri is the target). With "copy"
# (raw-copy): per slot a read of a whole pool chunk and a write of it
# back, what a copy-on-write of a fully written chunk moves (the pool
# reads the sub-blocks the write does not cover, 60 KiB of 64, and writes
# the chunk whole).
cow_log() {
	$python - "$1" "$2" "$3" "$cow_slots" "$stride" "$chunk_bytes" "$4" "${5:-}" <<'EOF'
import random, sys
name, rep, outp, n, stride = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
chunk, passes, copy = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8] == "copy"
rnd = random.Random(rep)
with open(outp, "w") as f:
    f.write("fio version 2 iolog\n%s add\n%s open\n" % (name, name))
    for _ in range(passes):
        slots = list(range(n))
        rnd.shuffle(slots)
        if copy:
            f.writelines("%s read %d %d\n%s write %d %d\n"
                         % (name, s * stride, chunk, name, s * stride, chunk) for s in slots)
        else:
            f.writelines("%s write %d 4096\n" % (name, s * stride) for s in slots)
    f.write("%s close\n" % name)
EOF
}

# run_load PEER ROW REP TARGET: an ow or fw cell through nbd-load -R
# (--client raw): random 4 KiB writes at QD32 for --runtime, fw in one
# pass (each block once, as fio's random map; it ends early if the pass
# does). No ramp. Its line goes to ROW.PEER.REP.fio.log, the figures to
# ROW.PEER.REP.json in the FUA probe's form, which pool-table.py reads.
run_load() {
	local p=$1 row=$2 rep=$3 target=$4 log=$out/$2.$1.$3.fio.log
	local cmd=("$load" -R -q 32 -b 4096 -w 100 -t "$runtime")
	[ "$row" = fw-4k-qd32 ] && cmd+=(-p)
	cmd+=("$target")
	[ "$rep" -gt 1 ] || echo "  $row/$p: ${cmd[*]}" >>"$out/commands.txt"
	timeout "$cell_limit" "${cmd[@]}" >"$log" 2>&1 ||
		die "$row on $p failed; see $log and $out/server-$p.log"
	$python - "$(tail -n 1 "$log")" >"$out/$row.$p.$rep.json" <<'EOF' ||
import json, sys
kv = dict(w.split("=", 1) for w in sys.argv[1].split())
print(json.dumps({"iops": float(kv["iops"]), "p50_us": float(kv["lat_p50_us"]),
                  "p99_us": float(kv["lat_p99_us"]), "ios": int(kv["ios"]),
                  "client_cpu_us": float(kv["cpu_us_per_io"])}))
EOF
		die "nbd-load printed no figures for $row on $p; see $log"
}

# run_fio PEER ROW REP TARGET: one fio run, JSON to $out/ROW.PEER.REP.json
# (ow and fw on a server: run_load, unless --client fio)
run_fio() {
	local p=$1 row=$2 rep=$3 target=$4 rw bs qd len rmp rmap
	if [ "$client" = raw ] && ! is_file_peer "$p"; then
		case $row in ow-4k-qd32|fw-4k-qd32) run_load "$@"; return ;; esac
	fi
	read -r rw bs qd len rmp rmap < <(row_params "$row")
	local n=$bytes
	case $row in cow-*) n=$cow_bytes ;; rd-*) n=$rd_bytes ;; esac
	local cmd=(fio --name="$row" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$n"
		   --randrepeat=0 --lat_percentiles=1 --output-format=json
		   --output="$out/$row.$p.$rep.json")
	[ "$rmp" = yes ] && cmd+=(--ramp_time="$(ms "$ramp")ms")
	[ "$rmap" = yes ] || cmd+=(--norandommap)
	if [ "$len" = once ]; then
		cmd+=(--runtime="$(ms "$runtime")ms")
	elif [ "$len" = cow ]; then
		# one write per slot (see cow_slots) in the rep's order, ends
		# after the last or --runtime. Peers with nothing to share
		# (raw, dionbd-raw, nbd-null: a second write to a slot costs
		# what the first did) go over the slots cow_passes times, so
		# that their cells last seconds too, not 1 s at 65,000 IOPS.
		local log=$work/cow.$rep.$p.iolog name=nbd mode='' passes=1
		case $p in raw|dionbd-raw|nbd-null) passes=$cow_passes ;; esac
		case $p in raw) name=$target ;; raw-copy) name=$target mode=copy ;; esac
		cow_log "$name" "$rep" "$log" "$passes" $mode
		cmd+=(--read_iolog="$log" --runtime="$(ms "$runtime")ms")
	else
		cmd+=(--time_based --runtime="$(ms "$runtime")ms")
	fi
	if is_file_peer "$p" && [ "$len" = cow ]; then
		# the list names the file; fio registers no files it opens from
		# a list ("registered files require nr_files to be identical to
		# open_files")
		cmd+=(--ioengine=io_uring --direct=1 --fixedbufs --sqthread_poll=0 --hipri=0)
	elif is_file_peer "$p"; then
		cmd+=(--filename="$target" --ioengine=io_uring --direct=1 --fixedbufs
		      --registerfiles --sqthread_poll=0 --hipri=0)
		[ "$p" = raw ] || cmd+=(--offset="$(rawpool_offset "$row")")
	else
		cmd+=(--ioengine=nbd --uri="$target")
	fi
	[ "$rep" -gt 1 ] || echo "  $row/$p: ${cmd[*]}" >>"$out/commands.txt"
	timeout "$cell_limit" "${cmd[@]}" >"$out/$row.$p.$rep.fio.log" 2>&1 ||
		die "$row on $p failed; see $out/$row.$p.$rep.fio.log and $out/server-$p.log"
}

# run_cell PEER ROW REP: start the peer on what the row needs (fresh for
# first writes), run it, record the server's CPU ticks, device bytes
# written (after a FLUSH, so the journal commit is in) and wall time in
# $out/ROW.PEER.REP.srv, stop the peer.
run_cell() {
	local p=$1 row=$2 rep=$3 what target c0 c1 w0=0 w1=0 t0 t1 n=$bytes
	# the size served (raw, dionbd-raw: the whole file; fio reads rd_bytes of it)
	case $p/$row in */cow-*) n=$cow_bytes ;; raw/rd-*|dionbd-raw/rd-*) ;; */rd-*) n=$rd_bytes ;; esac
	case $p/$row in
	nbd-null/*) what=null ;;	# nothing is read or kept
	raw/cow-*|dionbd-raw/cow-*|raw-copy/cow-*) what=$rawcow ;;
	raw/*|dionbd-raw/*) what=$raw ;;
	raw-pool/*) what=$pool ;;
	dionbd/ow-*) what=ow ;;
	dionbd/cow-*) what=cow
		ptool volume delete "$pool" cow 2>/dev/null || true
		ptool volume clone "$pool" cowbase cow >/dev/null || die "volume clone cowbase cow" ;;
	dionbd/rd-d1-*) what=rd1 ;;
	dionbd/rd-d8-*) what=rd8-7 ;;
	qcow2*/cow-*) what=$work/$p-cow.qcow2; qcow2_over "$p" "$what" "$work/$p-cowbase.qcow2" ;;
	qcow2*/rd-d1-*) what=$work/$p-rd1.qcow2 ;;
	qcow2*/rd-d8-*) what=$work/$p-rd8-7.qcow2 ;;
	dionbd/fw-*) what=fw; pool_new_volume fw "$bytes" ;;
	dionbd/seq-*) what=seq; pool_new_volume seq "$bytes" ;;
	dionbd/fua-*) what=fua; pool_new_volume fua "$bytes" ;;
	qcow2*/ow-*) what=$work/$p-ow.qcow2 ;;
	qcow2*/*) what=$work/$p-new.qcow2; qcow2_new "$p" "$what" "$bytes" ;;
	esac
	case $p in raw|dionbd-raw|raw-copy|raw-pool) settle "$what" ;; esac
	if is_file_peer "$p"; then
		target=$what
	else
		start_server "$p" "$what" "$n"
		target=$(uri_of "$p" "$what")
		if [ "$rep" -eq 1 ]; then echo "  server: $srv_cmd" >>"$out/commands.txt"; fi
	fi
	t0=$(date +%s.%N) c0=$(cpu_ticks) w0=$(dev_wbytes)
	if [ "$row" = fua-4k-qd1 ]; then
		local kind=nbd
		[ "$p" = raw ] && kind="file"
		[ "$rep" -gt 1 ] || echo "  $row/$p: fua_probe $kind $target $fua_ios $stride" >>"$out/commands.txt"
		fua_probe "$kind" "$target" "$fua_ios" "$stride" "$rep" "$out/$row.$p.$rep.json" \
			>"$out/$row.$p.$rep.fio.log" 2>&1 ||
			die "$row on $p failed; see $out/$row.$p.$rep.fio.log and $out/server-$p.log"
	else
		run_fio "$p" "$row" "$rep" "$target"
	fi
	is_file_peer "$p" || nbd_flush "$target" || die "FLUSH on $p failed"
	t1=$(date +%s.%N) c1=$(cpu_ticks) w1=$(dev_wbytes)
	echo "$(( c1 - c0 )) $(getconf CLK_TCK) $t0 $t1 $(( w1 - w0 ))" >"$out/$row.$p.$rep.srv"
	stop_server "$sock"
	# A first-write volume goes now: the pool's metadata reserve is sized
	# for one at a time (see pool_bytes).
	case $p/$row in dionbd/fw-*|dionbd/seq-*) rawpool_learn "$what" ;; esac
	case $p/$row in dionbd/fw-*|dionbd/seq-*|dionbd/fua-*|dionbd/cow-*)
		ptool volume delete "$pool" "$what" >/dev/null || die "volume delete $what" ;;
	esac
	# Removed after the repetition, not here: unlinking a qcow2 image
	# that grew by random clusters took 39 s on this machine, between
	# two peers' cells.
	case $p/$row in qcow2*/ow-*|qcow2*/rd-*) ;; qcow2*/*) mv "$what" "$work/used.$p.$row.qcow2" ;; esac
}

# ---------------------------------------------------------------- setup
# raw and dionbd-raw serve it; the qcow2 images to overwrite are made of it
raw_peers=0
case " $peers " in *" raw"*|*" dionbd-raw "*|*" qcow2"*) raw_peers=1 ;; esac
[ $raw_peers -eq 0 ] || [ -z "$fio_rows" ] || [ "$fio_rows" = cow-4k-qd32 ] || make_full "$raw" "$bytes"
# cow-4k-qd32's raw file, and what its qcow2 base images are made of
if [ $raw_peers -eq 1 ] && has_row cow-4k-qd32; then make_full "$rawcow" "$cow_bytes"; fi
make_full "$pool" "$pool_bytes"
settle "$pool"
t0=$(date +%s.%N)
ptool create --chunk-size "$chunk" "$pool" >"$out/pool-create.log" 2>&1 ||
	die "dionbd-pool create failed; see $out/pool-create.log"
say "pool created in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s: $pool"
ptool info "$pool" >"$out/info-empty.txt"

# Volumes and images the overwrite row overwrites, written in full once:
# the pool volume with 1 MiB sequential writes through dionbd; the qcow2
# images by qemu-img convert of the raw file (every cluster allocated
# with data, in half the time qemu-nbd takes to fill a growing image;
# preallocation=full would leave the clusters flagged zero, so the
# first write to each would still update its L2 entry).
# fill_through PEER WHAT [SIZE [FIO ARGS...]]: 1 MiB sequential writes
# over all of it (or what the fio arguments, which win, say)
fill_through() {
	local p=$1 what=$2 n=${3:-$bytes}
	shift $(( $# < 3 ? $# : 3 ))
	start_server "$p" "$what" "$n"
	timeout 600 fio --name=fill --rw=write --bs=1m --iodepth=8 --size="$n" \
		--ioengine=nbd --uri="$(uri_of "$p" "$what")" "$@" --output=/dev/null >/dev/null ||
		die "filling $what through $p failed"
	stop_server "$sock"
}
# fill_slice PEER WHAT LEVEL: the read rows' depth-8 data, level LEVEL's
# eighth: one stride (a chunk, a qcow2 cluster) in every eight, at LEVEL
fill_slice() {
	local off=$(( $3 * stride ))
	fill_through "$1" "$2" "$rd_bytes" --rw=write:$(( 7 * stride )) --bs="$stride" \
		--offset="$off" --size=$(( rd_bytes - off )) --io_size=$(( rd_bytes / 8 ))
}
if has_row ow-4k-qd32; then
	for p in $peers; do
		case $p in
		dionbd) pool_new_volume ow "$bytes"; say "filling volume ow"; fill_through dionbd ow ;;
		qcow2*) say "writing $p-ow.qcow2"; qcow2_full "$p" "$work/$p-ow.qcow2" ;;
		esac
	done
fi
# raw-pool writes where ow's chunks lie when they are one run (a fresh
# volume filled in order, unless its cursor wrapped past the pool's end;
# dionbd-pool dump --json names the address), else over the first --size
# bytes of the pool's data area: the pool file's blocks either way, and
# no metadata (what it overwrites is data nothing checks)
rawpool_off=
if case " $peers " in *" raw-pool "*) true ;; *) false ;; esac; then
	if ! ptool volume list "$pool" | grep -q '^ow '; then
		pool_new_volume ow "$bytes"; say "filling volume ow (for raw-pool)"; fill_through dionbd ow
	fi
	read -r rawpool_off rawpool_what < <(ptool dump --json "$pool" | $python -c '
import json, sys
d = json.load(sys.stdin)
e = [v for v in d["volumes"] if v["name"] == "ow"][0]["extents"]
if len(e) == 1 and e[0]["chunks"] * int(sys.argv[1]) == int(sys.argv[2]):
    print(e[0]["addr"], "volume_ow_chunks")
else:
    print(d["superblock"]["data_start"], "the_data_area_start_(ow:_%d_runs)" % len(e))' \
		"$chunk_bytes" "$bytes") || die "raw-pool: dionbd-pool dump --json failed"
	[ -n "$rawpool_off" ] || die "raw-pool: no offset from dionbd-pool dump --json"
	say "raw-pool: fio on $pool from $rawpool_off (${rawpool_what//_/ })"
fi
# A fresh volume's chunks come from its own cursor, elsewhere in the pool
# than ow's: raw-pool's fw and seq cells write where the last fresh fw or
# seq volume's chunks lay (rawpool_learn, before that volume is deleted),
# or, until one has been measured, where ow's lie.
rawpool_new_off=
# rawpool_learn VOL: the lowest address of VOL's chunks, when they span no
# more than --size from there (else nothing is learnt).
rawpool_learn() {
	local off
	off=$(ptool dump --json "$pool" | $python -c '
import json, sys
d = json.load(sys.stdin)
e = [x for v in d["volumes"] if v["name"] == sys.argv[1] for x in v["extents"]]
if e:
    lo = min(x["addr"] for x in e)
    hi = max(x["addr"] + x["chunks"] * int(sys.argv[2]) for x in e)
    if hi - lo <= int(sys.argv[3]):
        print(lo)' "$1" "$chunk_bytes" "$bytes") || die "raw-pool: dionbd-pool dump --json failed"
	if [ -n "$off" ] && [ "$off" != "$rawpool_new_off" ]; then
		rawpool_new_off=$off
		echo "  raw-pool: fw and seq from $off (volume $1's chunks)" >>"$out/commands.txt"
	fi
}
# rawpool_offset ROW: where raw-pool's fio starts for ROW.
rawpool_offset() {
	case $1 in
	fw-*|seq-*) echo "${rawpool_new_off:-$rawpool_off}" ;;
	*) echo "$rawpool_off" ;;
	esac
}
# cow-4k-qd32 clones cowbase (each cell a fresh clone); qcow2 writes into
# a fresh image over a fully written backing image
if has_row cow-4k-qd32; then
	for p in $peers; do
		case $p in
		dionbd) pool_new_volume cowbase "$cow_bytes"; say "filling volume cowbase"
			fill_through dionbd cowbase "$cow_bytes" ;;
		qcow2*) say "writing $p-cowbase.qcow2"; qcow2_full "$p" "$work/$p-cowbase.qcow2" "$rawcow" ;;
		esac
	done
fi
# rd-d1-4k-qd32 reads a volume written in full; rd-d8-4k-qd32 the top of a
# chain of 8, each level written with its eighth of the chunks: pool
# volume rd8-I is a clone of rd8-sI, a snapshot of rd8-(I-1); qcow2 image
# rd8-I has rd8-(I-1) as its backing file.
if has_row rd-d1-4k-qd32; then
	for p in $peers; do
		case $p in
		dionbd) pool_new_volume rd1 "$rd_bytes"; say "filling volume rd1"
			fill_through dionbd rd1 "$rd_bytes" ;;
		qcow2*) say "writing $p-rd1.qcow2"; qcow2_new "$p" "$work/$p-rd1.qcow2" "$rd_bytes"
			fill_through "$p" "$work/$p-rd1.qcow2" "$rd_bytes" ;;
		esac
	done
fi
if has_row rd-d8-4k-qd32; then
	for p in $peers; do
		case $p in dionbd|qcow2*) say "writing the depth-8 chain of $p" ;; *) continue ;; esac
		for lv in 0 1 2 3 4 5 6 7; do
			case $p in
			dionbd)
				if [ $lv -eq 0 ]; then
					pool_new_volume rd8-0 "$rd_bytes"
				else
					for v in rd8-$lv rd8-s$lv; do
						ptool volume delete "$pool" "$v" 2>/dev/null || true
					done
					ptool volume snapshot "$pool" rd8-$(( lv - 1 )) rd8-s$lv >/dev/null &&
					ptool volume clone "$pool" rd8-s$lv rd8-$lv >/dev/null ||
						die "snapshot and clone of rd8-$(( lv - 1 ))"
				fi
				fill_slice dionbd rd8-$lv $lv ;;
			qcow2*)
				if [ $lv -eq 0 ]; then
					qcow2_new "$p" "$work/$p-rd8-0.qcow2" "$rd_bytes"
				else
					qcow2_over "$p" "$work/$p-rd8-$lv.qcow2" "$work/$p-rd8-$(( lv - 1 )).qcow2"
				fi
				fill_slice "$p" "$work/$p-rd8-$lv.qcow2" $lv ;;
			esac
		done
	done
fi

nrows=$(wc -w <<<"$fio_rows")
npeers=$(wc -w <<<"$peers")
# per cell: ramp + runtime (the FUA row: <= 5 ms a write) + about 1 s to
# start, check, flush and stop
rep_est=$(awk -v r="$runtime" -v p="$ramp" -v n="$npeers" -v rows="$fio_rows" -v b="$bytes" -v f="$fua_ios" '
	BEGIN { t = 0; k = split(rows, a, " ")
		if (k == 0) { print 0; exit }
		for (i = 1; i <= k; i++) {
			if (a[i] ~ /^fua/) t += f * 0.005
			else t += r + p
			t += 1 }
		printf "%d", t * n + 1 }')
say "$nrows rows x $npeers peers x $reps reps: about $(( rep_est * reps ))s (limit ${limit}s)"
[ "$rep_est" -le "$limit" ] ||
	die "one repetition takes about ${rep_est}s, over the ${limit}s limit: lower --runtime or raise --limit"

# ---------------------------------------------------------------- reps
load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
done_reps=0
for rep in $(seq 1 "$reps"); do
	if [ "$rep" -gt 1 ] && [ $(( SECONDS - start + rep_est )) -gt "$limit" ]; then
		say "stopping after $done_reps repetitions: another would pass the ${limit}s limit"
		break
	fi
	# peers alternate within each row, in reverse order in even
	# repetitions, so drift of the device does not always favour one
	order=$peers
	[ $(( rep % 2 )) -eq 0 ] && order=$(tr ' ' '\n' <<<"$peers" | tac | tr '\n' ' ')
	for row in $fio_rows; do
		for p in $order; do
			# raw-copy has the copy-on-write row's copy only
			case $p/$row in raw-copy/cow-*) ;; raw-copy/*) continue ;; esac
			# raw-pool has the rows whose volumes lie beside ow
			case $p/$row in raw-pool/ow-*|raw-pool/fw-*|raw-pool/seq-*) ;; raw-pool/*) continue ;; esac
			run_cell "$p" "$row" "$rep"
		done
	done
	done_reps=$rep
	say "rep $rep/$reps done ($(( SECONDS - start ))s)"
	rm -f "$work"/used.*
done
measured=$(( SECONDS - start ))

# ---------------------------------------------------------------- metadata
# The pool's checkpoint in blocks, from dionbd-pool info (daemon stopped:
# closing checkpointed it and moved the journal tail).
ckpt_blocks() { ptool info "$pool" | awk '/^checkpoint:/ { print $2 }'; }
journal_blocks() { ptool info "$pool" | awk '/^journal:/ { print $2 }'; }
mapped_of() {
	ptool volume list --json "$pool" |
		$python -c 'import json, sys; print(sum(v["mapped"] for v in json.load(sys.stdin) if v["name"] == sys.argv[1]))' "$1"
}
meta=$out/meta.txt
: >"$meta"
issue10_rows=0
for r in ow-4k-qd32 fw-4k-qd32 seq-1m-qd8 fua-4k-qd1; do if has_row $r; then issue10_rows=1; fi; done
if [ $issue10_rows -eq 1 ] && case " $peers " in *" dionbd "*) true ;; *) false ;; esac; then
	say "metadata: the pool with fw, seq, fua deleted, then a volume filled by random 4 KiB writes"
	for v in fw seq fua rnd cow cowbase rd1 rd8-0 rd8-{1..7} rd8-s{1..7}; do
		ptool volume delete "$pool" "$v" 2>/dev/null || true
	done
	echo "empty_ckpt_blocks $(awk '/^checkpoint:/ { print $2 }' "$out/info-empty.txt")" >>"$meta"
	if ptool volume list "$pool" | grep -q '^ow '; then
		echo "seq_ckpt_blocks $(ckpt_blocks)" >>"$meta"
		echo "seq_mapped $(mapped_of ow)" >>"$meta"
	fi
	c1=$(ckpt_blocks)
	pool_new_volume rnd "$meta_bytes"
	start_server dionbd rnd "$meta_bytes"
	# every 4 KiB block once, in random order (fio's random map)
	timeout 900 fio --name=rndfill --rw=randwrite --bs=4k --iodepth=32 --size="$meta_bytes" \
		--randrepeat=0 --ioengine=nbd --uri="$(uri_of dionbd rnd)" --output=/dev/null >/dev/null ||
		die "the random fill failed"
	stop_server "$sock"
	echo "rnd_ckpt_delta $(( $(ckpt_blocks) - c1 ))" >>"$meta"
	echo "rnd_mapped $(mapped_of rnd)" >>"$meta"
	echo "journal_blocks_clean $(journal_blocks)" >>"$meta"
	ptool info "$pool" >"$out/info-end.txt"
	# open time of the clean pool, 5 times: the tool (load the checkpoint,
	# replay an empty journal), and the daemon until nbdinfo has its size
	for _ in 1 2 3 4 5; do
		t0=$(date +%s.%N)
		ptool info "$pool" >/dev/null
		echo "open_tool $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.4f", b - a }')" >>"$meta"
		start_server dionbd rnd "$meta_bytes"
		echo "open_dionbd $open_s" >>"$meta"
		stop_server "$sock"
	done
	ptool check "$pool" >"$out/check-end.txt" 2>&1 || die "the pool does not check clean; see $out/check-end.txt"
fi
# qcow2 beside it: allocated bytes of the filled image less its data
peers_meta=$peers
[ $issue10_rows -eq 1 ] || peers_meta=
for p in $peers_meta; do
	img=$work/$p-ow.qcow2
	case $p in qcow2*) [ -f "$img" ] || continue ;; *) continue ;; esac
	data=$(qemu-img map --output=json "$img" | $python -c 'import json, sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
	echo "${p}_meta_bytes $(( $(stat -c %b "$img") * 512 - data )) $data" >>"$meta"
	for _ in 1 2 3; do
		start_server "$p" "$img" "$bytes"
		echo "${p}_open $open_s" >>"$meta"
		stop_server "$sock"
	done
done

# ---------------------------------------------------------------- snapshots
# snap_probe CTL POOL ORIGIN URI N VOLBYTES OUT: N snapshots of ORIGIN
# through the control socket (JSON-RPC by bench/pool_rpc.py, connect
# excluded from the time),
# each deleted again, while another process writes 4 KiB at QD 1 at random
# offsets of ORIGIN through NBD; per snapshot: the call's reply time, the
# delete's, and the longest latency of a write in flight at any time
# during the call (its "pause"); and the writes' p50 / max outside them.
snap_probe() {
	timeout 900 $python - "$@" <<'EOF'
import array, os, statistics, subprocess, sys, time
ctl, pool, origin, uri, n, vbytes, outp, benchdir = sys.argv[1:9]
n, vbytes = int(n), int(vbytes)
sys.dont_write_bytecode = True
sys.path.insert(0, benchdir)
import pool_rpc
WRITER = r"""
import array, nbd, os, random, sys, time
uri, vbytes, stop, ts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
h = nbd.NBD()
h.connect_uri(uri)
buf = os.urandom(4096)
rnd = random.Random(7)
t = array.array("q")
open(ts + ".ready", "w").close()
while not os.path.exists(stop):
    off = rnd.randrange(vbytes // 4096) * 4096
    t0 = time.monotonic_ns()
    h.pwrite(buf, off)
    t.append(t0)
    t.append(time.monotonic_ns())
h.shutdown()
with open(ts, "wb") as f:
    t.tofile(f)
"""


def rpc(method, **params):
    params["pool"] = pool
    return pool_rpc.call(ctl, method, params)


stop, ts = outp + ".stop", outp + ".ts"
for f in (stop, ts, ts + ".ready"):
    if os.path.exists(f):
        os.unlink(f)
w = subprocess.Popen([sys.executable, "-c", WRITER, uri, str(vbytes), stop, ts])
while not os.path.exists(ts + ".ready"):
    if w.poll() is not None:
        sys.exit("the writer failed")
    time.sleep(0.01)
time.sleep(0.3)
wins, dels = [], []
for i in range(n):
    wins.append(rpc("pool.volume.snapshot", origin=origin, name="bench-snap"))
    time.sleep(0.1)
    dels.append(rpc("pool.volume.delete", name="bench-snap"))
    time.sleep(0.1)
open(stop, "w").close()
if w.wait() != 0:
    sys.exit("the writer failed")
t = array.array("q")
with open(ts, "rb") as f:
    t.frombytes(f.read())
ws = list(zip(t[0::2], t[1::2]))
busy = wins + dels
with open(outp, "w") as f:
    for (a, b), (c, d) in zip(wins, dels):
        inflight = [e - s for s, e in ws if s < b and e > a]
        f.write("ctl_snap_us %.1f\nctl_delsnap_us %.1f\npause_us %.1f\n"
                % ((b - a) / 1e3, (d - c) / 1e3, max(inflight) / 1e3 if inflight else 0))
    quiet = [e - s for s, e in ws if all(e <= a or s >= b for a, b in busy)]
    f.write("writes %d\nquiet_p50_us %.1f\nquiet_max_us %.1f\n"
            % (len(ws), statistics.median(quiet) / 1e3, max(quiet) / 1e3))
for f in (stop, ts, ts + ".ready"):
    os.unlink(f)
EOF
}

# A second pool, of 4 KiB chunks on a sparse file (10^6 chunks of 64 KiB
# would be 64 GiB to write), one volume per --snap-chunks count, each
# written in full through dionbd (sequential writes of up to 1 MiB, 256
# chunks a request). snap-create: the snapshots above through the daemon serving
# them all, then the library call alone (pool-snap-bench, no daemon).
# vol-delete: each volume deleted through the daemon (serving a small
# volume of the pool only), its reply time; and whatever the pool reports
# of a reclaim under way (pool.info keys naming it), when it does.
snapfile=$out/snap.txt
if has_row snap-create || has_row vol-delete; then
	: >"$snapfile"
	spool=$work/snap-pool.img
	ctl=$work/ctl.sock
	sp_mib=1024
	for c in $snap_chunks; do sp_mib=$(( sp_mib + c * 4096 * 2 / 1048576 + 64 )); done
	truncate -s $(( sp_mib << 20 )) "$spool"
	ptool create --chunk-size 4K "$spool" >"$out/snap-pool-create.log" 2>&1 ||
		die "dionbd-pool create (4 KiB chunks) failed; see $out/snap-pool-create.log"
	ptool volume create "$spool" keep 1M >/dev/null || die "volume create keep"
	exp=()
	for c in $snap_chunks; do
		ptool volume create "$spool" "c$c" $(( c * 4096 )) >/dev/null || die "volume create c$c"
		exp+=(-e "c$c=pool:$spool/c$c")
	done
	srv_pool=$spool srv_extra="--control $ctl ${exp[*]}"
	start_server dionbd keep 1048576
	for c in $snap_chunks; do
		say "snap-create: writing c$c ($c chunks of 4 KiB)"
		# fio writes whole blocks only: the largest block of at most
		# 256 chunks that divides the volume (10^k: 250 chunks)
		d=256
		while [ $(( c % d )) -ne 0 ]; do d=$(( d - 1 )); done
		timeout 900 fio --name=fill --rw=write --bs=$(( d * 4096 )) --iodepth=8 --size=$(( c * 4096 )) \
			--ioengine=nbd --uri="$(uri_of dionbd "c$c")" --output=/dev/null >/dev/null ||
			die "filling c$c failed"
		# pool.volume.list gives bytes mapped
		echo "$c mapped_bytes $(timeout 60 "$ctltool" -s "$ctl" --json pool-volumes "$spool" |
			$python -c 'import json, sys; print(sum(v["mapped"] for v in json.load(sys.stdin) if v["name"] == sys.argv[1]))' "c$c")" >>"$snapfile"
		if has_row snap-create; then
			say "snap-create: $snaps snapshots of c$c through the control socket"
			snap_probe "$ctl" "$spool" "c$c" "$(uri_of dionbd "c$c")" "$snaps" $(( c * 4096 )) \
				"$out/snap-c$c.txt" "$top/bench" || die "the snapshot probe on c$c failed; see $out/server-dionbd.log"
			sed "s/^/$c /" "$out/snap-c$c.txt" >>"$snapfile"
		fi
	done
	stop_server "$sock"
	srv_pool="" srv_extra=""
	if has_row snap-create; then
		for c in $snap_chunks; do
			say "snap-create: $snaps snapshots of c$c through the library"
			timeout 900 "$snapbench" "$spool" "c$c" "$snaps" >"$out/snap-lib-c$c.txt" ||
				die "pool-snap-bench on c$c failed"
			sed "s/^/$c lib_/" "$out/snap-lib-c$c.txt" >>"$snapfile"
		done
	fi
	if has_row vol-delete; then
		srv_pool=$spool srv_extra="--control $ctl"
		start_server dionbd keep 1048576
		for c in $snap_chunks; do
			say "vol-delete: c$c"
			us=$(timeout 900 $python "$top/bench/pool_rpc.py" "$ctl" pool.volume.delete "{\"pool\": \"$spool\", \"name\": \"c$c\"}") ||
				die "deleting c$c failed"
			echo "$c del_us $us" >>"$snapfile"
			# a background reclaim, where the pool reports one
			timeout 60 "$ctltool" -s "$ctl" --json pool-info "$spool" >"$out/snap-info-c$c.json" || true
			$python -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k, v in sorted(d.items()):
    if "reclaim" in k and isinstance(v, (int, float)) and not isinstance(v, bool):
        print(sys.argv[2], "reclaim_" + k, v)' "$out/snap-info-c$c.json" "$c" >>"$snapfile" 2>/dev/null || true
		done
		stop_server "$sock"
		srv_pool="" srv_extra=""
	fi
	ptool check "$spool" >"$out/snap-check.txt" 2>&1 ||
		die "the 4 KiB-chunk pool does not check clean; see $out/snap-check.txt"
	rm -f "$spool"
fi

echo "Load average (1/5/15 min) at start: $load0, at end: $(cut -d' ' -f1-3 /proc/loadavg);" \
	"$(nproc) CPUs; ${measured}s of measuring; --size $size, pool chunk $chunk"
echo "Commands (rep 1):"
cat "$out/commands.txt"
echo
$python "$top/bench/pool-table.py" "$out" "$done_reps" "$strict" "$peers" $rows | tee "$out/table.txt"
exit "${PIPESTATUS[0]}"
