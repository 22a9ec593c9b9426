#!/usr/bin/env bash
# nbdkit dio: FUA is native; FUA writes, zeroes and trims succeed and land.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

cat > "$TMP/fua.py" <<'PY'
expect(h.can_fua(), "can_fua")
h.pwrite(pattern(0, 1 << 20, 7), 0, nbd.CMD_FLAG_FUA)
h.pwrite(pattern(4 << 20, 65536, 8), 4 << 20, nbd.CMD_FLAG_FUA)   # into a hole: allocates
h.zero(65536, 65536, nbd.CMD_FLAG_FUA)
h.zero(65536, 131072, nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE)
h.trim(65536, 262144, nbd.CMD_FLAG_FUA)
got = h.pread(1 << 20, 0)
want = bytearray(pattern(0, 1 << 20, 7))
want[65536:196608] = bytes(131072)
expect(got[:262144] == bytes(want[:262144]), "zeroed ranges")
expect(got[262144:327680] in (bytes(65536), bytes(want[262144:327680])), "trimmed range")
expect(got[327680:] == bytes(want[327680:]), "data after the trim")
expect(h.pread(65536, 4 << 20) == pattern(4 << 20, 65536, 8), "allocating FUA write")
PY
# No flush before nbdkit exits: FUA alone must have put the data in the file.
cat > "$TMP/file.py" <<PY
exec(open("$TMP/prelude.py").read())
path = sys.argv[1]
expect(file_read(path, 4 << 20, 65536) == pattern(4 << 20, 65536, 8), "file: FUA write")
expect(file_read(path, 327680, 65536) == pattern(327680, 65536, 7), "file: data")
expect(file_read(path, 65536, 131072) == bytes(131072), "file: zeroes")
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 16M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/fua.py")" ||
		fail "engine=$engine: FUA requests"
	python3 "$TMP/file.py" "$f" || fail "engine=$engine: file contents"
	echo "$NAME: engine=$engine ok"
done
