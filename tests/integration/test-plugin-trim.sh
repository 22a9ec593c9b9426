#!/usr/bin/env bash
# nbdkit dio: trim punches a hole: the range reads as zeros, block status
# reports a hole, and the file really has a hole there.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

cat > "$TMP/trim.py" <<'PY'
expect(h.can_trim(), "can_trim")
h.pwrite(pattern(0, 4 << 20, 5), 0)
h.trim(1 << 20, 1 << 20)
h.trim(4096, 3 << 20)            # inside data, block aligned
expect(h.pread(1 << 20, 1 << 20) == bytes(1 << 20), "trimmed 1M reads zeros")
expect(h.pread(4096, 3 << 20) == bytes(4096), "trimmed 4K reads zeros")
expect(h.pread(1 << 20, 0) == pattern(0, 1 << 20, 5), "data before")
expect(h.pread(4096, (3 << 20) + 4096) == pattern((3 << 20) + 4096, 4096, 5), "data after")
ext = []
allocation_handle(h).block_status(1 << 20, 1 << 20, lambda ctx, off, e, err: ext.extend(e) or 0)
expect(len(ext) >= 2 and ext[1] & nbd.STATE_ZERO, "trimmed range is zero: %r" % ext)
h.flush()
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 8M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/trim.py")" ||
		fail "engine=$engine: trim"
	# SEEK_HOLE at 1M must find the punched hole right there.
	python3 - "$f" <<'PY' || fail "engine=$engine: no hole in the file"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
hole = os.lseek(fd, 1 << 20, os.SEEK_HOLE)
assert hole == 1 << 20, "SEEK_HOLE(1M) = %d" % hole
assert os.lseek(fd, 1 << 20, os.SEEK_DATA) == 2 << 20
PY
	echo "$NAME: engine=$engine ok"
done
