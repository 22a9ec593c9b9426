#!/usr/bin/env bash
# A thin pool hands space back: chunks freed by TRIM are passed down to the
# device (a hole in a pool file) once the transaction that frees them is
# durable (after the next FLUSH; by the pool's thread, soon after), never before; a TRIM that frees no whole
# chunk gives nothing back and keeps the chunk's other data; freed space is
# allocated again afterwards, and the pool checks clean.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io stat
/usr/bin/python3 -c "import nbd" 2>/dev/null || skip "no python3-libnbd for /usr/bin/python3"
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"

P=$TMP/pool.img
truncate -s 128M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" vm 64M >/dev/null || fail "volume create"
# bytes the pool file holds on the filesystem
held() { echo $(($(stat -c %b "$P") * $(stat -c %B "$P"))); }
MiB=1048576

start_server_or_fail -e vm="pool:$P/vm"
U=$(uri_of vm)
qio_at "$U" -c "write -P 0x5a 0 16M" -c "flush"
# TRIM without a FLUSH: the freeing is not durable yet, nothing is given
# back; the FLUSH makes it durable and the chunks go down as holes. (One
# libnbd connection: qemu-io would flush when it closes.)
/usr/bin/python3 - "$U" "$P" <<'PY' || fail "TRIM then FLUSH on one connection"
import os, sys, nbd
uri, pool = sys.argv[1:3]
held = lambda: os.stat(pool).st_blocks * 512
h = nbd.NBD()
h.connect_uri(uri)
full = held()
h.trim(8 << 20, 0)
if full - held() >= 1 << 20:
    sys.exit("space given back before the freeing was durable: %d -> %d" % (full, held()))
h.flush()
# The pool's committer thread discards them after the FLUSH, off the reply.
import time
for _ in range(100):
    if full - held() >= 7 << 20:
        break
    time.sleep(0.05)
if full - held() < 7 << 20:
    sys.exit("8 MiB trimmed and flushed, pool file only from %d to %d bytes 5 s later" % (full, held()))
h.shutdown()
PY
after=$(held)
# Part of one 64 KiB chunk: its bits clear, the chunk stays, the rest of it reads back.
qio_at "$U" -c "discard 8256k 8k" -c "flush" -c "read -P 0 8256k 8k" -c "read -P 0x5a 8M 64k" \
	-c "read -P 0x5a 8264k 56k" -c "read -P 0 0 8M" -c "read -P 0x5a 9M 7M"
[ $((after - $(held))) -lt $MiB ] || fail "a partial-chunk TRIM gave space back"
# The freed chunks are allocated again.
qio_at "$U" -c "write -P 0x77 0 8M" -c "flush" -c "read -P 0x77 0 8M"
finish vm
"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "check: $(cat "$TMP/check")"
start_server_or_fail -e vm="pool:$P/vm"
qio_at "$(uri_of vm)" -c "read -P 0x77 0 8M" -c "read -P 0 8256k 8k" -c "read -P 0x5a 9M 7M" \
	-c "read -P 0 16M 48M"
finish vm

# --pool-discard off: the same TRIM and FLUSH keep the space on the device
# (a preallocated pool file stays allocated), and the data is gone all the same.
start_server_or_fail -v --pool-discard off -e vm="pool:$P/vm"
grep -q "freed chunks kept on the device" "$SRV_LOG" || fail "no log line for --pool-discard off"
full=$(held)
qio_at "$(uri_of vm)" -c "discard 0 8M" -c "flush" -c "read -P 0 0 8M" -c "read -P 0x5a 9M 7M"
[ "$(held)" -ge "$full" ] || fail "--pool-discard off: the pool file shrank from $full to $(held)"
finish vm
"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "check after --pool-discard off: $(cat "$TMP/check")"

# dionbd-pool frees chunks too (volume delete): by default they go down as
# holes, with --no-discard (before the command) they stay allocated, as
# under the daemon's --pool-discard off.
"$POOLTOOL" volume create "$P" keep 16M >/dev/null || fail "volume create keep"
"$POOLTOOL" volume create "$P" drop 16M >/dev/null || fail "volume create drop"
start_server_or_fail --pool-discard off -e keep="pool:$P/keep" -e drop="pool:$P/drop"
qio_at "$(uri_of keep)" -c "write -P 0x21 0 16M" -c "flush"
qio_at "$(uri_of drop)" -c "write -P 0x22 0 16M" -c "flush"
finish keep
full=$(held)
"$POOLTOOL" --no-discard volume delete "$P" keep || fail "--no-discard volume delete"
[ "$(held)" -ge "$full" ] || fail "--no-discard volume delete: the pool file shrank from $full to $(held)"
full=$(held)
"$POOLTOOL" volume delete "$P" drop || fail "volume delete drop"
[ $((full - $(held))) -ge $((15 * MiB)) ] ||
	fail "volume delete of 16 MiB written: the pool file only from $full to $(held) bytes"
"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "check after the deletes: $(cat "$TMP/check")"
# The option goes before the command and nowhere else.
"$POOLTOOL" volume delete --no-discard "$P" vm 2>/dev/null && fail "--no-discard after the command was taken"
"$POOLTOOL" volume list "$P" | grep -q '^vm ' || fail "the misplaced option deleted vm"
