#!/usr/bin/env bash
# nbdkit dio: patterned writes and reads, aligned and not, read back through
# the plugin and found in the file itself once nbdkit has exited.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh

size=$((64 * 1024 * 1024))
# (offset, length) pairs: block-aligned, sub-block, straddling, large, the last byte
cat > "$TMP/cases.py" <<'PY'
SIZE = 64 << 20
CASES = [(0, 4096), (4096, 65536), (1 << 20, 512), (3 << 20, 4 << 20),
         (17, 1), (4095, 2), (8 << 20 | 100, 9000), (12 << 20, 32 << 20),
         (SIZE - 1, 1), (SIZE - 8192, 8192)]
PY
cat > "$TMP/rw.py" <<PY
exec(open("$TMP/cases.py").read())
unaligned_ok(h)
expect(h.get_size() == SIZE, "size %d" % h.get_size())
for i, (off, n) in enumerate(CASES):
    h.pwrite(pattern(off, n, i + 1), off)
# Later cases overwrite earlier ones where they overlap: check in reverse order.
seen = bytearray(SIZE // 4096 + 1)
for i, (off, n) in reversed(list(enumerate(CASES))):
    got = h.pread(n, off)
    want = pattern(off, n, i + 1)
    # Only check the bytes no later case overwrote.
    for j, (o2, n2) in enumerate(CASES[i + 1:]):
        lo, hi = max(off, o2), min(off + n, o2 + n2)
        if lo < hi:
            got = got[:lo - off] + want[lo - off:hi - off] + got[hi - off:]
    expect(got == want, "read back case %d (%d+%d)" % (i, off, n))
# Never-written ranges still read as zeros.
expect(h.pread(4096, 2 << 20) == bytes(4096), "zeros at 2M")
h.flush()
PY
cat > "$TMP/file.py" <<PY
exec(open("$TMP/prelude.py").read())
exec(open("$TMP/cases.py").read())
path = sys.argv[1]
expect(os.path.getsize(path) == SIZE, "file size")
# The last case in file order wins; compare byte ranges case by case, newest first.
covered = []
for i, (off, n) in reversed(list(enumerate(CASES))):
    got = bytearray(file_read(path, off, n))
    want = bytearray(pattern(off, n, i + 1))
    for lo, hi in covered:
        lo, hi = max(lo, off), min(hi, off + n)
        if lo < hi:
            got[lo - off:hi - off] = want[lo - off:hi - off]
    expect(got == want, "file holds case %d (%d+%d)" % (i, off, n))
    covered.append((off, off + n))
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" $size
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/rw.py")" ||
		fail "engine=$engine: nbdsh checks failed"
	python3 "$TMP/file.py" "$f" || fail "engine=$engine: file contents"
	echo "$NAME: engine=$engine ok"
done
