#!/usr/bin/env bash
# Install what is missing, build, and run every test:
#   1. a -Werror build, the whole suite (unit tests on both engines,
#      integration tests against the real daemon and nbdkit plugin);
#   2. an ASan+UBSan build, the whole suite again;
#   3. the fuzz targets for a bounded time, when clang can build them.
# Skipped tests (exit 77) say why; anything else failing fails the run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${DIO_TEST_OUT:-$top/build-test}
jobs=${DIO_TEST_JOBS:-2}
"$top/scripts/deps.sh"

run_suite() {
	local dir=$1
	shift
	echo "=== build $dir ($*)"
	"$top/scripts/build.sh" "$dir" "$@"
	mkdir -p "$dir/tmp"
	echo "=== test $dir"
	(cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900) | tee "$dir/ctest.log"
	# ctest's summary: "100% tests passed, 0 tests failed out of N"
	local n k
	n=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$dir/ctest.log" | tail -1)
	k=$(grep -c '(Skipped)' "$dir/ctest.log" || true)
	total=$((total + ${n:-0} - k))
	skipped=$((skipped + k))
}
total=0
skipped=0

run_suite "$out/release" -DDIO_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	run_suite "$out/asan" -DDIO_WERROR=ON -DDIO_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

if [ -x "$top/scripts/fuzz.sh" ]; then
	"$top/scripts/fuzz.sh" "$out/fuzz"
fi
echo "=== all suites passed"
echo "test: $total passed, 0 failed, $skipped skipped"
