#!/usr/bin/env bash
# nbdkit dio: flush is advertised and works, on its own and after writes.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

cat > "$TMP/flush.py" <<'PY'
expect(h.can_flush(), "can_flush")
h.flush()
for i in range(8):
    h.pwrite(pattern(i << 20, 1 << 20, 3), i << 20)
h.flush()
h.flush()
expect(h.pread(8 << 20, 0) == pattern(0, 8 << 20, 3), "read back")
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 8M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/flush.py")" ||
		fail "engine=$engine: flush"
	python3 -c "
exec(open('$TMP/prelude.py').read())
expect(file_read('$f', 0, 8 << 20) == pattern(0, 8 << 20, 3), 'file contents')" ||
		fail "engine=$engine: file contents"
	echo "$NAME: engine=$engine ok"
done
