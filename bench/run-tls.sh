#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/run-tls.sh [BUILD_DIR]: what TLS costs the fast path. fio
# --ioengine=nbd (libnbd) against dionbd on a Unix socket, on the same file
# filled with random data (so READs carry data, not holes), three ways:
# plaintext, TLS with X.509 certificates, TLS with a PSK. Two jobs each:
# 4 KiB random read at queue depth 32 and 1 MiB sequential read at queue
# depth 8. Prints a table with the ratio of each TLS row to plaintext.
#
# fio's nbd engine refuses URIs that name local files (tls-certificates=,
# tls-psk-file=), so its libnbd finds the X.509 credentials in its default
# place, $HOME/.pki/libnbd, with HOME pointed at the scratch directory. No
# such default exists for a PSK file: the PSK row is measured with nbdcopy
# (whole-export sequential read to null:), as are the other two for comparison.
#
# Env: DIO_BENCH_TIME  seconds per job (default 10)
#      DIO_BENCH_SIZE  file size (default 512M)
#      DIO_BENCH_DIR   scratch directory, O_DIRECT-capable (default BUILD_DIR/tmp)
# Bounded: 3 modes x 2 jobs x (TIME + a few) seconds, plus filling the file.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
secs=${DIO_BENCH_TIME:-10}
size=${DIO_BENCH_SIZE:-512M}
dionbd=$build/server/dionbd

for c in fio openssl python3; do
	command -v $c >/dev/null || { echo "run-tls.sh: SKIP: $c is not installed" >&2; exit 77; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "run-tls.sh: SKIP: fio has no nbd engine" >&2; exit 77; }
[ -x "$dionbd" ] || { echo "run-tls.sh: build the daemon first ($dionbd)" >&2; exit 1; }

base=${DIO_BENCH_DIR:-$build/tmp}
mkdir -p "$base"
dir=$(mktemp -d "$base/bench-tls.XXXXXX")
pid=
cleanup()
{
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

"$top/deploy/make-certs.sh" "$dir/certs" >/dev/null
vol=$dir/vol.img
echo "run-tls.sh: filling a $size file with random data..." >&2
bytes=$(numfmt --from=iec "$size")
head -c "$bytes" /dev/urandom >"$vol"
sync "$vol"
sock=$dir/sock

# start ARGS...: the daemon on $sock serving $vol.
start()
{
	rm -f "$sock"
	"$dionbd" -f -U "$sock" "$@" "$vol" 2>"$dir/server.log" &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		[ -S "$sock" ] && return 0
		sleep 0.05
	done
	echo "run-tls.sh: the daemon did not start: $(tail -5 "$dir/server.log")" >&2
	exit 1
}

stop()
{
	kill "$pid"
	wait "$pid" || true
	pid=
}

mkdir -p "$dir/home/.pki"
cp -r "$dir/certs/client" "$dir/home/.pki/libnbd"

# job URI NAME RW BS QD: IOPS and MiB/s of one fio job, "iops mibs".
job()
{
	HOME=$dir/home timeout $((secs + 60)) fio --name="$2" --ioengine=nbd --uri="$1" --rw="$3" --bs="$4" \
		--iodepth="$5" --size="$bytes" --runtime="$secs" --time_based --ramp_time=1 \
		--output-format=json --output="$dir/$2.json" >"$dir/$2.err" 2>&1 || {
		echo "run-tls.sh: fio $2 failed: $(tail -5 "$dir/$2.err")" >&2
		exit 1
	}
	python3 - "$dir/$2.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print("%.0f %.1f" % (r["iops"], r["bw_bytes"] / 1048576))
PY
}

declare -A r4k seq copy
for mode in plain x509 psk; do
	case $mode in
	plain)
		start
		uri="nbd+unix:///?socket=$sock" ;;
	x509)
		start --tls require --tls-creds "$dir/certs/server"
		uri="nbds+unix:///?socket=$sock" ;;
	psk)
		start --tls require --tls-psk-file "$dir/certs/keys.psk"
		uri="nbds+unix://alice@/?socket=$sock&tls-psk-file=$dir/certs/keys.psk" ;;
	esac
	echo "run-tls.sh: $mode..." >&2
	if [ "$mode" = psk ]; then
		r4k[$mode]="- -"
		seq[$mode]="- -"
	else
		r4k[$mode]=$(job "$uri" "$mode-4k" randread 4k 32)
		seq[$mode]=$(job "$uri" "$mode-1m" read 1M 8)
	fi
	[ "$mode" = x509 ] && uri="$uri&tls-certificates=$dir/certs/client"
	# nbdcopy: best of 3 whole-export reads.
	best=0
	for _ in 1 2 3; do
		t0=$(date +%s.%N)
		timeout 120 nbdcopy --requests=8 --request-size=$((1 << 20)) "$uri" null: ||
			{ echo "run-tls.sh: nbdcopy $mode failed" >&2; exit 1; }
		t1=$(date +%s.%N)
		best=$(python3 -c "print(max($best, $bytes / 1048576 / ($t1 - $t0)))")
	done
	copy[$mode]=$(python3 -c "print('%.1f' % $best)")
	stop
done

ratio()
{
	[ "$1" = - ] && { echo -; return; }
	python3 -c "print('%.2f' % ($1 / $2))"
}
read -r p4 _ <<<"${r4k[plain]}"
read -r _ pm <<<"${seq[plain]}"
printf '\n%-6s %16s %6s %16s %6s %16s %6s\n' mode "fio 4k rr QD32" ratio \
	"fio 1M seq MiB/s" ratio "nbdcopy MiB/s" ratio
for mode in plain x509 psk; do
	read -r i _ <<<"${r4k[$mode]}"
	read -r _ m <<<"${seq[$mode]}"
	printf '%-6s %16s %6s %16s %6s %16s %6s\n' "$mode" "$i" "$(ratio "$i" "$p4")" \
		"$m" "$(ratio "$m" "$pm")" "${copy[$mode]}" "$(ratio "${copy[$mode]}" "${copy[plain]}")"
done
echo "($(nproc) CPUs, $size file, $secs s per fio job, client and server on this machine)"
