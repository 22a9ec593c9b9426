#!/usr/bin/env bash
# nbdkit dio: NBD_CMD_CACHE is native and harmless; data unchanged after it.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

cat > "$TMP/cache.py" <<'PY'
expect(h.can_cache(), "can_cache")
h.pwrite(pattern(0, 2 << 20, 41), 0)
h.cache(2 << 20, 0)
h.cache(1 << 20, 4 << 20)          # a hole
unaligned_ok(h)
h.cache(100, 12345)
expect(h.pread(2 << 20, 0) == pattern(0, 2 << 20, 41), "data after cache")
PY
for engine in $(test_engines); do
	mkfile "$TMP/disk-$engine" 8M
	dio_nbdkit "$PLUGIN" file="$TMP/disk-$engine" engine=$engine \
		--run "$(nbdsh_run "$TMP/cache.py")" || fail "engine=$engine: cache"
	echo "$NAME: engine=$engine ok"
done
