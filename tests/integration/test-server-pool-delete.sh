#!/usr/bin/env bash
# A volume delete through the daemon replies before its chunks come back
# (issue 11): the volume of two map leaves (8 MiB of 4 KiB chunks) is
# reclaimed by the pool's thread, which the log says, and pool-info shows
# free_chunks back where it was before the volume was written, with
# reclaim_volumes and reclaim_chunks at 0. The name is free at once; the
# other volume keeps its data; dionbd-pool check is clean after.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io
requires_pool_tools

P=$TMP/pool.img
truncate -s 256M "$P"
"$POOLTOOL" create --chunk-size 4K "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" keep 1M >/dev/null || fail "volume create keep"
"$POOLTOOL" volume create "$P" big 8M >/dev/null || fail "volume create big"
free0=$("$POOLTOOL" info "$P" | sed -n 's/^chunks: .*(\([0-9]*\) free)$/\1/p')
[ -n "$free0" ] || fail "dionbd-pool info: no free count"
C=$TMP/control.sock
start_server_or_fail -v --control "$C" -e keep="pool:$P/keep" -e big="pool:$P/big"
wait_ctl

timeout 60 qemu-io -f raw -c "write -P 0x11 0 1M" "$(uri_of keep)" >/dev/null || fail "write keep"
timeout 60 qemu-io -f raw -c "write -P 0x22 0 8M" -c flush "$(uri_of big)" >/dev/null ||
	fail "write big"
expect_ctl 0 'removed +big' remove-export big
expect_ctl 0 'deleted +big' pool-delete-volume "$P" big
expect_ctl 0 'name +big' pool-create-volume "$P" big 1M

# Every chunk of the old big back: keep's 256 are the only ones used.
for ((i = 0; i < 100; i++)); do
	ctl --json pool-info "$P" > "$TMP/info.json" || fail "pool-info"
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["reclaim_volumes"] == 0 and d["reclaim_chunks"] == 0 and
         d["free_chunks"] == int(sys.argv[2]) - 256 else 1)' "$TMP/info.json" "$free0" && break
	sleep 0.1
done
[ "$i" -lt 100 ] || fail "pool-info after 10 s: $(cat "$TMP/info.json"), $free0 free before"
grep -q "volume big (id [0-9]*) deleted: reclaiming its 2048 chunks (2 leaves) in the background" \
	"$SRV_LOG" || fail "no background reclaim in the log: $(grep -i big "$SRV_LOG")"
grep -q "volume big (id [0-9]*): 2048 chunks reclaimed in [0-9.]* ms" "$SRV_LOG" ||
	fail "no end of the reclaim in the log: $(grep -i big "$SRV_LOG")"
timeout 60 qemu-io -f raw -c "read -P 0x11 0 1M" "$(uri_of keep)" > "$TMP/qio.out" 2>&1
grep -q 'read 1048576' "$TMP/qio.out" || fail "keep after the delete: $(cat "$TMP/qio.out")"

finish keep
"$POOLTOOL" check "$P" > "$TMP/check" 2>&1 || fail "check after the daemon: $(cat "$TMP/check")"
grep -q "([0-9]* free)" <("$POOLTOOL" info "$P") || fail "info"
free1=$("$POOLTOOL" info "$P" | sed -n 's/^chunks: .*(\([0-9]*\) free)$/\1/p')
[ "$free1" = $((free0 - 256)) ] || fail "after the daemon: $free1 chunks free, $free0 before"
