#!/usr/bin/env bash
# nbdkit dio: block status is the file's real map: holes (truncate, punch),
# data (dd) and fallocated unwritten extents, compared with FIEMAP; REQ_ONE.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh
requires nbdinfo fallocate dd truncate

# The map is read when nbdkit starts: lay the file out first.
layout()
{
	local f=$1
	mkfile "$f" 32M
	dd if=/dev/urandom of="$f" bs=1M count=2 seek=2 conv=notrunc status=none
	fallocate -o 6M -l 4M "$f"
	dd if=/dev/urandom of="$f" bs=1M count=1 seek=7 conv=notrunc status=none
	dd if=/dev/urandom of="$f" bs=64K count=3 seek=200 conv=notrunc status=none
	fallocate -o 20M -l 2M "$f"
	dd if=/dev/urandom of="$f" bs=1M count=4 seek=24 conv=notrunc status=none
	fallocate -p -o 25M -l 1M "$f"
	sync "$f"
}

cat > "$TMP/compare.py" <<PY
exec(open("$TMP/prelude.py").read())
path, mapfile = sys.argv[1], sys.argv[2]
kinds = {0: "data", 1: "hole-nonzero", 2: "zero", 3: "hole"}
got = []
for line in open(mapfile):
    off, ln, t = line.split()[:3]
    got.append((int(off), int(ln), kinds[int(t)]))
got = merge(got)
want = file_map(path)
print("nbdinfo --map:", got)
print("FIEMAP:       ", want)
expect(got == want, "nbdinfo --map differs from the file's map")
PY

cat > "$TMP/reqone.py" <<PY
h = allocation_handle(h)
runs = file_map("$TMP/disk")
for lo, ln, kind in runs:
    for pos in (lo, lo + ln // 2):
        ext = []
        h.block_status(min(4 << 20, h.get_size() - pos), pos, lambda ctx, off, e, err: ext.extend(e) or 0,
                       nbd.CMD_FLAG_REQ_ONE)
        expect(len(ext) == 2, "REQ_ONE at %d gave %r" % (pos, ext))
        flags = {"data": 0, "zero": nbd.STATE_ZERO, "hole": nbd.STATE_HOLE | nbd.STATE_ZERO}
        expect(ext[1] == flags[kind], "REQ_ONE at %d (%s): flags %d" % (pos, kind, ext[1]))
        expect(0 < ext[0] <= lo + ln - pos, "REQ_ONE at %d: length %d" % (pos, ext[0]))
# A whole-disk query covers the disk, in order.
ext = []
h.block_status(h.get_size(), 0, lambda ctx, off, e, err: ext.extend(e) or 0)
expect(sum(ext[0::2]) >= h.get_size(), "full query covers %d" % sum(ext[0::2]))
PY

for engine in $(test_engines); do
	layout "$TMP/disk"
	dio_nbdkit "$PLUGIN" file="$TMP/disk" engine=$engine \
		--run 'nbdinfo --map "$uri"' > "$TMP/map" || fail "engine=$engine: nbdinfo --map"
	python3 "$TMP/compare.py" "$TMP/disk" "$TMP/map" || fail "engine=$engine: map"
	dio_nbdkit "$PLUGIN" file="$TMP/disk" engine=$engine \
		--run "$(nbdsh_run "$TMP/reqone.py")" || fail "engine=$engine: REQ_ONE"
	echo "$NAME: engine=$engine ok"
done
