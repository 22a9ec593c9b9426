#!/usr/bin/env bash
# nbdkit dio beside nbdkit file: fio's nbd engine against each, one nbdkit
# each, same file, same nbdkit thread count. Prints IOPS per row and the ratio.
#   plugins/dio/bench-plugin.sh [--size 1G] [--runtime 10] [--threads 16] [--rows "..."]
# Env: DIO_BUILD (build dir with plugins/dio/nbdkit-dio-plugin.so), DIO_BENCH_DIR.
set -euo pipefail

DIO_SRC=$(cd "$(dirname "$0")/../.." && pwd)
: "${DIO_BUILD:=$DIO_SRC/build}"
: "${DIO_BENCH_DIR:=$DIO_BUILD/tmp}"
PLUGIN=$DIO_BUILD/plugins/dio/nbdkit-dio-plugin.so
size=1G runtime=10 threads=16 extra= extra_opts=
rows="qd32-randread qd1-randread qd32-randwrite qd32-read-1m"
while [ $# -gt 0 ]; do
	case $1 in
	--size) size=$2; shift 2 ;;
	--runtime) runtime=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--rows) rows=$2; shift 2 ;;
	--dio-args) extra=$2; shift 2 ;;	# plugin parameters, e.g. "engine=psync"
	--dio-nbdkit-args) extra_opts=$2; shift 2 ;;	# nbdkit options, e.g. "-v"
	*) echo "usage: $0 [--size S] [--runtime S] [--threads N] [--rows R] [--dio-args A]" >&2
	   exit 2 ;;
	esac
done
for c in nbdkit fio; do
	command -v $c >/dev/null || { echo "$0: $c is not installed" >&2; exit 77; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "$0: fio lacks the nbd engine" >&2; exit 77; }
[ -f "$PLUGIN" ] || { echo "$0: $PLUGIN not built" >&2; exit 77; }

mkdir -p "$DIO_BENCH_DIR"
file=$DIO_BENCH_DIR/bench-plugin-$size.img
bytes=$(numfmt --from=iec "$size")
# Fully written: holes read as zeros without I/O and would flatter dio.
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$bytes" ]; then
	echo "writing $file"
	dd if=/dev/urandom of="$file" bs=1M count=$((bytes >> 20)) oflag=direct status=none
fi

row_args()
{
	case $1 in
	qd1-randread)   echo "--rw=randread --bs=4k --iodepth=1" ;;
	qd32-randread)  echo "--rw=randread --bs=4k --iodepth=32" ;;
	qd32-randwrite) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	qd32-read-1m)   echo "--rw=read --bs=1m --iodepth=32" ;;
	*) echo "unknown row $1" >&2; exit 2 ;;
	esac
}

# iops PLUGIN-ARGS... -- FIO-ARGS...: IOPS of fio's nbd engine against nbdkit.
iops()
{
	local nb=() json=$DIO_BENCH_DIR/bench-plugin.json
	while [ "$1" != -- ]; do nb+=("$1"); shift; done
	shift
	rm -f "$json"
	sync
	echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
	timeout $((runtime * 3 + 60)) nbdkit -U - -t "$threads" "${nb[@]}" --run "
		fio --name=bench --ioengine=nbd --uri=\"\$uri\" --size=$bytes --runtime=$runtime \
		    --time_based --norandommap --output-format=json --output='$json' $* >/dev/null"
	python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(int(j["read"]["iops"] + j["write"]["iops"]))' "$json"
}

printf "%-16s %12s %12s %7s\n" row "file IOPS" "dio IOPS" ratio
for row in $rows; do
	a=$(row_args "$row")
	# shellcheck disable=SC2086
	f=$(iops file file="$file" cache=none -- $a)
	# shellcheck disable=SC2086
	d=$(iops $extra_opts "$PLUGIN" file="$file" $extra -- $a)
	printf "%-16s %12s %12s %7.2f\n" "$row" "$f" "$d" "$(echo "$d / $f" | bc -l)"
done
