#!/usr/bin/env bash
# The block cache on pool volumes (cache=writeback over pool:POOL/VOL):
# - random mixed traffic (reads, writes, TRIM, WRITE_ZEROES, FLUSH) from 8
#   connections through a 4 MiB cache over a 16 MiB volume reads exactly what
#   was written; then 1 MiB more, a FLUSH, and the daemon is SIGKILLed as
#   soon as the FLUSH replied: the pool checks clean and, served again
#   without a cache, holds what was flushed;
# - writes, TRIMs and WRITE_ZEROES through the cache, none flushed, then a
#   snapshot through the control socket: the snapshot holds all of them
#   (the trimmed chunks unmapped), and the cached export reads the same.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-img
requires_prog server-aio
requires_pool_ctl

new_pool 128M v 16M t 8M
pool_check() # WHEN
{
	"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "check $1: $(cat "$TMP/check")"
}

# Mixed traffic, FLUSH, SIGKILL, reopen.
start_server_or_fail -v --cache-size 4 -e "v=pool:$P/v,cache=writeback"
grep -q "block cache of 4 MiB for" "$SRV_LOG" || fail "no log line names the cache: $(cat "$SRV_LOG")"
run server-aio "$(uri_of v)" "save:$TMP/shadow" 1000 || fail "mixed traffic through the cache"
# then 1 MiB more and a FLUSH, and the daemon is killed as the FLUSH replies
# (well before writeback by age, 2 s)
"$PY" - "$(uri_of v)" "$TMP/shadow" "$SRV_PID" <<'PY' || fail "WRITE, FLUSH, SIGKILL"
import nbd, os, signal, sys
uri, shadow, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
data, off = os.urandom(1 << 20), (3 << 20) + 4096
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(data, off)
h.flush()
os.kill(pid, signal.SIGKILL)
with open(shadow, "r+b") as f:
    f.seek(off)
    f.write(data)
PY
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=
pool_check "after SIGKILL"
start_server_or_fail -e "v=pool:$P/v"
qemu-img compare -f raw -F raw "$TMP/shadow" "$(uri_of v)" >"$TMP/cmp" 2>&1 ||
	fail "after SIGKILL the volume is not what was flushed: $(cat "$TMP/cmp")"
finish v
echo "$NAME: flushed traffic survived SIGKILL"

# TRIM and WRITE_ZEROES through the cache, then a snapshot, nothing flushed.
C=$TMP/control.sock
start_server_or_fail --control "$C" --cache-size 4 -e "t=pool:$P/t,cache=writeback"
wait_ctl
"$PY" - "$(uri_of t)" "$TMP/want" <<'PY' || fail "writes, TRIMs and zeroes through the cache"
import nbd, sys
uri, out = sys.argv[1:3]
K, M = 1024, 1 << 20
want = bytearray(8 * M)
h = nbd.NBD()
h.connect_uri(uri)
def write(off, n, b):
    h.pwrite(bytes([b]) * n, off)
    want[off:off + n] = bytes([b]) * n
def clear(off, n, op, flags=0):
    op(n, off, flags)
    want[off:off + n] = bytes(n)
write(0, 4 * M, 0x11)
h.flush()                        # on the pool: the TRIMs below must reach it
write(4 * M, 2 * M, 0x22)        # dirty in the cache only
clear(1 * M, 256 * K, h.trim)    # four whole chunks of flushed data
write(1 * M + 68 * K, 4 * K, 0x33)  # one block of the second chunk again
clear(4 * M + 64 * K, 128 * K, h.trim)  # over dirty data
clear(2 * M, 64 * K, h.zero)
clear(5 * M + 4 * K, 8 * K, h.zero, nbd.CMD_FLAG_NO_HOLE)  # inside a dirty chunk
write(5 * M + 8 * K, 4 * K, 0x44)  # a write into the zeroed range
clear(3 * M + 4 * K, 4 * K, h.zero)  # one block of a chunk of flushed data
got = h.pread(8 * M, 0)
assert got == want, "the cached export differs at %d" % next(
    i for i in range(len(want)) if got[i] != want[i])
open(out, "wb").write(want)
h.shutdown()
PY
expect_ctl 0 '' pool-snapshot "$P" t tsnap
expect_ctl 0 '' add-export tsnap "pool:$P/tsnap"
qemu-img compare -f raw -F raw "$TMP/want" "$(uri_of tsnap)" >"$TMP/cmp" 2>&1 ||
	fail "the snapshot misses what the cache held: $(cat "$TMP/cmp")"
# the trimmed chunks are holes in the snapshot, the rewritten one is not
"$PY" - "$(uri_of tsnap)" <<'PY' || fail "the snapshot's allocation"
import nbd, sys
K, M = 1024, 1 << 20
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(sys.argv[1])
def hole(off, n):
    st = []
    h.block_status(n, off, lambda ctx, o, e, err: st.extend(e[1::2]) or 0)
    return all(f & nbd.STATE_HOLE for f in st)
for off in (1 * M, 1 * M + 128 * K, 1 * M + 192 * K):
    assert hole(off, 64 * K), "trimmed chunk at %d is mapped" % off
assert not hole(1 * M + 64 * K, 64 * K), "the rewritten chunk is a hole"
assert not hole(0, 64 * K), "written data is a hole"
h.shutdown()
PY
check_served t
expect_ctl 0 '' remove-export tsnap
finish t
pool_check "at the end"
echo "$NAME: ok"
