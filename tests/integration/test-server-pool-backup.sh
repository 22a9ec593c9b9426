#!/usr/bin/env bash
# Incremental backup of a pool volume over NBD, as backup tools do it with
# QEMU's dirty bitmaps: snapshots taken through the control socket while
# the volume is served; a full copy of the first snapshot (nbdcopy); more
# writes, a TRIM and a second snapshot; then only the extents that
# qemu:dirty-bitmap:s1 marks on the second snapshot's export are copied
# (libnbd, block status then pread), and the backup equals the second
# snapshot (qemu-img compare). Checks too: the contexts each export lists
# (nbdinfo), nbdinfo --map of the bitmap (exactly the chunks changed),
# base:allocation and the bitmap in one BLOCK_STATUS, a bitmap whose
# snapshot was deleted (an error, the connection alive), and a clone.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io qemu-img nbdinfo nbdcopy
requires_pool_ctl

new_pool 256M vm 64M wb 8M
C=$TMP/control.sock
start_server_or_fail --control "$C" -e vm="pool:$P/vm" -e "wb=pool:$P/wb,cache=writeback"
wait_ctl
ctl_ok() { expect_ctl 0 '' "$@"; }
VM=$(uri_of vm)
KiB=1024 MiB=1048576

qio_at "$VM" -c "write -P 0x11 0 8M" -c "write -P 0x22 20M 2M" -c "write -P 0x33 40M 1M" -c flush
ctl_ok pool-snapshot "$P" vm s1
ctl_ok add-export s1 "pool:$P/s1"
nbdcopy "$(uri_of s1)" "$TMP/backup.img" || fail "full backup of s1"

# nothing written since s1: the bitmap is clean over the whole volume
nbdinfo --map=qemu:dirty-bitmap:s1 "$VM" > "$TMP/map0" || fail "nbdinfo --map: $(cat "$TMP/map0")"
[ "$(awk '$3 != 0' "$TMP/map0" | wc -l)" = 0 ] || fail "dirty right after the snapshot: $(cat "$TMP/map0")"

# changes: a partial chunk, a straddling write, a new region, a TRIM
qio_at "$VM" -c "write -P 0x44 4100k 8k" -c "write -P 0x55 $((20 * MiB - 4 * KiB)) 8k" \
	-c "write -P 0x66 50M 1M" -c "discard 40M 64k" -c flush
ctl_ok pool-snapshot "$P" vm s2
ctl_ok add-export s2 "pool:$P/s2"
S2=$(uri_of s2)

# each export lists the bitmaps it can answer
nbdinfo --json "$VM" > "$TMP/vm.json" || fail "nbdinfo --json vm"
nbdinfo --json "$S2" > "$TMP/s2.json" || fail "nbdinfo --json s2"
"$PY" - "$TMP/vm.json" "$TMP/s2.json" <<'PY' || fail "listed meta contexts"
import json, sys
vm, s2 = (json.load(open(f))["exports"][0]["contexts"] for f in sys.argv[1:3])
want_vm = {"base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"}
assert set(vm) == want_vm, vm
assert set(s2) == {"base:allocation", "qemu:dirty-bitmap:s1"}, s2
PY

# the bitmap: exactly the 64 KiB chunks changed since s1 (nbdinfo's map: offset length flags)
nbdinfo --map=qemu:dirty-bitmap:s1 "$S2" > "$TMP/map1" || fail "nbdinfo --map s2"
"$PY" - "$TMP/map1" <<'PY' || fail "dirty extents: $(cat "$TMP/map1")"
import sys
K, M = 1024, 1 << 20
want = [(4 * M, 64 * K), (20 * M - 64 * K, 128 * K), (40 * M, 64 * K), (50 * M, M)]
got, end = [], 0
for line in open(sys.argv[1]):
    off, length, flags = (int(x) for x in line.split()[:3])
    assert off == end, "gap at %d" % end
    end = off + length
    if flags & 1:
        if got and got[-1][0] + got[-1][1] == off:
            got[-1] = (got[-1][0], got[-1][1] + length)
        else:
            got.append((off, length))
assert end == 64 * M, end
assert got == want, got
PY

# the incremental copy: only what the bitmap marks, from s2, into the backup
"$PY" - "$S2" "$TMP/backup.img" <<'PY' || fail "incremental copy"
import nbd, os, sys
uri, path = sys.argv[1:3]
h = nbd.NBD()
h.add_meta_context("qemu:dirty-bitmap:s1")
h.add_meta_context("base:allocation")
h.connect_uri(uri)
size = h.get_size()
ext = {}
def cb(ctx, off, entries, err):
    ext.setdefault(ctx, []).append((off, list(entries)))
    return 0
off, copied = 0, 0
fd = os.open(path, os.O_WRONLY)
while off < size:
    ext.clear()
    h.block_status(min(size - off, 32 << 20), off, cb)
    assert set(ext) == {"qemu:dirty-bitmap:s1", "base:allocation"}, ext.keys()
    pos = off
    for start, entries in ext["qemu:dirty-bitmap:s1"]:
        assert start == off
        for i in range(0, len(entries), 2):
            length, flags = entries[i], entries[i + 1]
            if flags & 1:
                os.pwrite(fd, h.pread(length, pos), pos)
                copied += length
            pos += length
    off = pos
os.close(fd)
h.shutdown()
# four dirty runs, 1.25 MiB of a 64 MiB volume
assert copied == (64 + 128 + 64 + 1024) << 10, copied
PY
qemu-img compare -f raw -F raw "$TMP/backup.img" "$S2" > "$TMP/cmp" 2>&1 ||
	fail "backup after the incremental copy differs from s2: $(cat "$TMP/cmp")"
# and s1 still reads as it was (the origin moved on)
qemu-io -r -f raw -c "read -P 0x11 4M 1M" -c "read -P 0x33 40M 1M" -c "read -P 0 50M 1M" "$(uri_of s1)" \
	> "$TMP/s1.out" 2>&1
! grep -q "Pattern verification failed" "$TMP/s1.out" || fail "s1 changed: $(cat "$TMP/s1.out")"

# a bitmap whose snapshot is deleted: BLOCK_STATUS fails, the connection goes on
"$PY" - "$VM" "$C" "$CTL" "$P" <<'PY' || fail "bitmap of a deleted snapshot"
import nbd, subprocess, sys
uri, sock, ctl, pool = sys.argv[1:5]
h = nbd.NBD()
h.add_meta_context("qemu:dirty-bitmap:s2")
h.connect_uri(uri)
h.block_status(1 << 20, 0, lambda *a: 0)
subprocess.run([ctl, "-s", sock, "remove-export", "s2"], check=True, stdout=subprocess.DEVNULL)
subprocess.run([ctl, "-s", sock, "pool-delete-volume", pool, "s2"], check=True,
               stdout=subprocess.DEVNULL)
try:
    h.block_status(1 << 20, 0, lambda *a: 0)
    sys.exit("block status of a deleted snapshot's bitmap succeeded")
except nbd.Error as e:
    assert e.errno is not None, e
h.pread(4096, 0)
h.shutdown()
PY
check_served vm

# a writeback cache holds what a client was told is written: a snapshot
# taken meanwhile has it (the cache is written back first), and the
# cached export offers no bitmap (its maps may lag behind)
"$PY" - "$(uri_of wb)" <<'PY' || fail "write through the writeback cache"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x5c" * (1 << 20), 2 << 20)
h.shutdown()
PY
ctl_ok pool-snapshot "$P" wb wbsnap
ctl_ok add-export wbsnap "pool:$P/wbsnap"
qemu-io -r -f raw -c "read -P 0x5c 2M 1M" "$(uri_of wbsnap)" > "$TMP/wbsnap.out" 2>&1
grep -q 'read 1048576' "$TMP/wbsnap.out" ||
	fail "the snapshot missed what the writeback cache held: $(cat "$TMP/wbsnap.out")"
nbdinfo --json "$(uri_of wb)" > "$TMP/wb.json" || fail "nbdinfo --json wb"
"$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["exports"][0]["contexts"]; assert c == ["base:allocation"], c' \
	"$TMP/wb.json" || fail "a cached export offers a bitmap: $(cat "$TMP/wb.json")"

# a clone: writable, served, and its own bitmap once snapshotted
ctl_ok pool-clone "$P" s1 c1
ctl_ok add-export c1 "pool:$P/c1"
qio_at "$(uri_of c1)" -c "write -P 0x77 8M 64k" -c flush -c "read -P 0x11 0 8M"
ctl_ok pool-volumes "$P"
# NAME ID SIZE MAPPED PARENT RO: s1 a read-only child of vm (id 1), c1 a writable one of s1
s1id=$(awk '$1 == "s1" { print $2 }' "$TMP/ctl.out")
grep -E -q '^s1 +[0-9]+ +67108864 +[0-9]+ +1 +yes' "$TMP/ctl.out" &&
	grep -E -q "^c1 +[0-9]+ +67108864 +[0-9]+ +$s1id +no" "$TMP/ctl.out" ||
	fail "pool-volumes: $(cat "$TMP/ctl.out")"
finish vm
"$POOLTOOL" check "$P" > "$TMP/check" 2>&1 || fail "check: $(cat "$TMP/check")"
