#!/usr/bin/env bash
# Build the libFuzzer targets (fuzz/) with clang, ASan and UBSan into the
# directory $1 and run each for a bounded time ($DIO_FUZZ_TIME seconds,
# default 60), failing on a crash, a leak, a sanitizer report or a hang.
# Corpora are kept in $1/corpus/TARGET between runs, seeded by
# fuzz/seeds.py; a finding is left in $1/findings/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: $0 BUILD_DIR}
secs=${DIO_FUZZ_TIME:-60}

if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz.sh: SKIP: clang is not installed" >&2
	exit 0
fi
if ! grep -q 'add_subdirectory(fuzz)' "$top/CMakeLists.txt"; then
	echo "fuzz.sh: SKIP: the top CMakeLists.txt does not add fuzz/ (if(DIO_FUZZ) ...)" >&2
	exit 0
fi
CC=clang cmake -S "$top" -B "$out" -DDIO_FUZZ=ON -DDIO_SANITIZE=ON -DDIO_TESTS=OFF \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null
targets="fuzz-handshake fuzz-transmission fuzz-tls fuzz-control fuzz-pool"
# shellcheck disable=SC2086
cmake --build "$out" --target $targets -j"${DIO_TEST_JOBS:-2}"

mkdir -p "$out/findings" "$out/tmp"
# Well-formed conversations to start from (kept files are not overwritten).
if command -v python3 >/dev/null 2>&1; then
	python3 "$top/fuzz/seeds.py" "$out/corpus"
fi
rc=0
for t in $targets; do
	mkdir -p "$out/corpus/$t"
	echo "=== $t for $secs s"
	# The volume needs O_DIRECT: keep it in the build tree, not on tmpfs.
	if ! (cd "$out/tmp" && DIO_FUZZ_DIR="$out/tmp" \
		ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		timeout --kill-after=30 $((secs + 120)) "$out/fuzz/$t" \
			-max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
			-artifact_prefix="$out/findings/$t-" "$out/corpus/$t" > "$out/$t.log" 2>&1); then
		echo "fuzz.sh: $t FAILED; log $out/$t.log, inputs in $out/findings/" >&2
		grep -E -A12 'HANG|ERROR|SUMMARY|runtime error' "$out/$t.log" | head -40 >&2 || true
		# The inputs themselves, so that a CI log is enough to replay them
		# (base64 -d > FILE; fuzz/fuzz-TARGET FILE).
		for f in "$out/findings/$t-"*; do
			[ -f "$f" ] || continue
			echo "fuzz.sh: input $(basename "$f") ($(stat -c %s "$f") bytes), base64:" >&2
			base64 "$f" | head -100 >&2
		done
		rc=1
	else
		grep -E 'stat::number_of_executed_units|Done' "$out/$t.log" | tail -1
	fi
done
exit $rc
