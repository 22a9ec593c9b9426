#!/usr/bin/env bash
# nbdkit dio: write zeroes with and without may_trim, and fast zero.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

cat > "$TMP/zero.py" <<'PY'
M = 1 << 20
expect(h.can_zero(), "can_zero")
expect(h.can_fast_zero(), "can_fast_zero")
h.pwrite(pattern(0, 8 * M, 9), 0)
h.zero(M, 1 * M)                             # may trim (punch a hole)
h.zero(M, 3 * M, nbd.CMD_FLAG_NO_HOLE)       # must stay allocated
unaligned_ok(h)
h.zero(1000, 5 * M + 100)                    # sub-block: read-modify-write
try:
    h.zero(M, 6 * M, nbd.CMD_FLAG_FAST_ZERO)
    fast = True
except nbd.Error as e:
    # Allowed to refuse, but only with ENOTSUP and without touching the data.
    expect(e.errno in ("ENOTSUP", "EOPNOTSUPP"), "fast zero error %s" % e.errno)
    fast = False
got = h.pread(8 * M, 0)
want = bytearray(pattern(0, 8 * M, 9))
want[M:2 * M] = bytes(M)
want[3 * M:4 * M] = bytes(M)
want[5 * M + 100:5 * M + 1100] = bytes(1000)
if fast:
    want[6 * M:7 * M] = bytes(M)
expect(got == bytes(want), "zeroed contents (fast zero %s)" % ("done" if fast else "refused"))
h.flush()
open(os.environ["ZERO_RESULT"], "w").write("fast" if fast else "refused")
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 8M
	export ZERO_RESULT=$TMP/result-$engine
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/zero.py")" ||
		fail "engine=$engine: zero"
	# Zeroing with may_trim deallocated 1M (hole or unwritten); NO_HOLE kept
	# 3M allocated; neither wrote zeros through the data path on ext4.
	python3 - "$f" <<PY || fail "engine=$engine: file map after zeroing"
exec(open("$TMP/prelude.py").read())
M = 1 << 20
runs = file_map(sys.argv[1])
expect(kind_at(runs, M) in ("hole", "zero"), "1M after zero with may_trim: %r" % runs)
expect(kind_at(runs, 3 * M) in ("data", "zero"), "3M after zero with NO_HOLE: %r" % runs)
expect(kind_at(runs, 4 * M - 1) in ("data", "zero"), "4M-1 after zero with NO_HOLE: %r" % runs)
expect(file_read(sys.argv[1], 3 * M, M) == bytes(M), "3M reads zeros")
PY
	echo "$NAME: engine=$engine ok (fast zero $(cat "$ZERO_RESULT"))"
done
