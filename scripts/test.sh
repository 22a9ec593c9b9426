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
	(cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}

run_suite "$out/release" -DDIO_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	run_suite "$out/asan" -DDIO_WERROR=ON -DDIO_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

if [ -x "$top/scripts/fuzz.sh" ]; then
	"$top/scripts/fuzz.sh" "$out/fuzz"
fi
echo "=== all suites passed"
