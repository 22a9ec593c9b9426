#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Two builds of dionbd side by side on a noisy machine: bench/run-nbd.sh on
# build A then build B, one repetition each, REPS times alternating (with
# fio-uring in every run as the in-run ceiling), then the medians per row.
#
#   bench/compare-builds.sh BUILD_A BUILD_B [REPS] [ROWS]
# Env: DIO_BENCH_SIZE (default 2G), DIO_BENCH_RUNTIME (5), DIO_BENCH_DIR.
# Output: OUT=${DIO_BENCH_OUT:-./compare-out}/{A,B}-N/ and a table on stdout.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
a=${1:?usage: compare-builds.sh BUILD_A BUILD_B [REPS] [ROWS]}
b=${2:?usage: compare-builds.sh BUILD_A BUILD_B [REPS] [ROWS]}
reps=${3:-3}
rows=${4:-qd32-randread qd32-randwrite qd8-read-1m qd8-write-1m}
out=${DIO_BENCH_OUT:-./compare-out}
mkdir -p "$out"
for ((rep = 1; rep <= reps; rep++)); do
	for side in A B; do
		dir=$a
		[ "$side" = B ] && dir=$b
		"$top/bench/run-nbd.sh" --build "$dir" --size "${DIO_BENCH_SIZE:-2G}" \
			--runtime "${DIO_BENCH_RUNTIME:-5}" --reps 1 --rows "$rows" \
			--servers "dionbd fio-uring" --out "$out/$side-$rep" >"$out/$side-$rep.log" 2>&1 ||
			{ echo "compare-builds: run-nbd failed, see $out/$side-$rep.log" >&2; exit 1; }
	done
done
python3 - "$out" "$reps" $rows <<'PY'
import re, statistics, sys
out, reps, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| row | build | dionbd IOPS per run | median | fio-uring median | dionbd/fio median |")
print("|---|---|---|---|---|---|")
for r in rows:
    for side in ("A", "B"):
        v = []
        for rep in range(1, reps + 1):
            t = open(f"{out}/{side}-{rep}/table.txt").read()
            d = re.search(rf"^{r}\s+dionbd\s+(\d+)", t, re.M)
            f = re.search(rf"^{r}\s+fio-uring\s+(\d+)", t, re.M)
            v.append((int(d.group(1)), int(f.group(1))))
        ds = [x[0] for x in v]
        print(f"| {r} | {side} | {ds} | {statistics.median(ds):.0f} | "
              f"{statistics.median(x[1] for x in v):.0f} | "
              f"{statistics.median(x[0] / x[1] for x in v):.2f} |")
PY
