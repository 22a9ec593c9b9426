#!/usr/bin/env bash
# nbdkit dio behind nbdkit's error filter: injected errors reach the client
# as the right NBD errors, and the plugin keeps serving afterwards.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh
[ -f "$(nbdkit --dump-config | sed -n 's/^filterdir=//p')/nbdkit-error-filter.so" ] ||
	skip "nbdkit's error filter is not installed"

cat > "$TMP/eio.py" <<'PY'
h.pwrite(pattern(0, 65536, 21), 0)
expect_error(lambda: h.pread(4096, 0), "EIO", "read through error-pread-rate=1")
expect_error(lambda: h.pread(65536, 1 << 20), "EIO", "second read")
h.flush()
PY
cat > "$TMP/enospc.py" <<'PY'
expect_error(lambda: h.pwrite(bytes(4096), 0), "ENOSPC", "write through error-pwrite-rate=1")
expect(h.pread(4096, 0) == pattern(0, 4096, 21), "read after the failed write")
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 8M
	dio_nbdkit --filter=error "$PLUGIN" file="$f" engine=$engine \
		error=EIO error-pread-rate=1 --run "$(nbdsh_run "$TMP/eio.py")" ||
		fail "engine=$engine: EIO from the error filter"
	dio_nbdkit --filter=error "$PLUGIN" file="$f" engine=$engine \
		error=ENOSPC error-pwrite-rate=1 --run "$(nbdsh_run "$TMP/enospc.py")" ||
		fail "engine=$engine: ENOSPC from the error filter"
	echo "$NAME: engine=$engine ok"
done
