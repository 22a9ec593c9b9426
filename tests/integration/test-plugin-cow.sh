#!/usr/bin/env bash
# nbdkit dio behind nbdkit's cow filter: the client writes, the file stays as
# it was (also with readonly=true underneath).
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh
requires sha256sum
[ -f "$(nbdkit --dump-config | sed -n 's/^filterdir=//p')/nbdkit-cow-filter.so" ] ||
	skip "nbdkit's cow filter is not installed"

cat > "$TMP/cow.py" <<PY
expect(not h.is_read_only(), "cow export is writable")
base = open("$TMP/disk", "rb").read(8 << 20)
expect(h.pread(8 << 20, 0) == base, "cow reads the file")
unaligned_ok(h)
h.pwrite(pattern(4096, 100000, 31), 4096)
want = bytearray(base)
want[4096:104096] = pattern(4096, 100000, 31)
# The cow filter may not pass zero and trim on; where it does, they work.
if h.can_zero():
    h.zero(1 << 20, 2 << 20)
    want[2 << 20:3 << 20] = bytes(1 << 20)
if h.can_trim():
    h.trim(65536, 4 << 20)
got = h.pread(8 << 20, 0)
expect(got[:4 << 20] == bytes(want[:4 << 20]), "cow overlay contents")
expect(got[(4 << 20) + 65536:] == bytes(want[(4 << 20) + 65536:]), "after the trim")
h.flush()
PY
for engine in $(test_engines); do
	mkfile "$TMP/disk" 8M
	dd if=/dev/urandom of="$TMP/disk" bs=1M count=6 seek=1 conv=notrunc status=none
	before=$(sha256sum < "$TMP/disk")
	for ro in false true; do
		dio_nbdkit --filter=cow "$PLUGIN" file="$TMP/disk" engine=$engine readonly=$ro \
			--run "$(nbdsh_run "$TMP/cow.py")" || fail "engine=$engine readonly=$ro: cow"
		[ "$(sha256sum < "$TMP/disk")" = "$before" ] ||
			fail "engine=$engine readonly=$ro: the file changed under cow"
	done
	echo "$NAME: engine=$engine ok"
done
