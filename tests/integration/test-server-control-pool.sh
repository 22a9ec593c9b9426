#!/usr/bin/env bash
# A pool the daemon serves is locked against dionbd-pool, so its volumes are
# managed through the control socket: create, list, resize, delete, and
# add-export pool:POOL/VOLUME, all while another volume keeps serving.
# Errors are named with the right exit status, and the daemon keeps serving:
# an existing name, a bad size, a volume that is exported (delete refused),
# no such volume, a path that is not a pool. dionbd-pool check is clean at
# the end (after the daemon let go of the pool).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io qemu-img
requires_pool_tools

P=$TMP/pool.img
truncate -s 256M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" first 32M >/dev/null || fail "volume create"
C=$TMP/control.sock
start_server_or_fail -v --control "$C" -e first="pool:$P/first"
wait_ctl

# The served pool is locked: the tool is refused, the control socket is the way in.
if "$POOLTOOL" volume create "$P" other 16M > "$TMP/tool.out" 2>&1; then
	fail "dionbd-pool changed a pool the daemon holds"
fi
grep -q "open in another process" "$TMP/tool.out" || fail "dionbd-pool: $(cat "$TMP/tool.out")"

timeout 60 qemu-io -f raw -c "write -P 0x11 0 1M" "$(uri_of first)" >/dev/null ||
	fail "write to the first volume"
expect_ctl 0 '^chunk_size +65536' pool-info "$P"
expect_ctl 0 'name +second' pool-create-volume "$P" second 16M
expect_ctl 0 '^first +[0-9]+ +33554432 +1048576' pool-volumes "$P"
expect_ctl 0 '^second +[0-9]+ +16777216 +0 +0 +no' pool-volumes "$P"
ctl --json pool-volumes "$P" | python3 -c '
import json, sys
v = {x["name"]: x for x in json.load(sys.stdin)}
assert set(v) == {"first", "second"} and v["second"]["size"] == 16 << 20, v' ||
	fail "pool-volumes --json"

# Serve the new volume, write through it, grow it, read it back.
expect_ctl 0 '^second +pool:.*/second +16777216' add-export second "pool:$P/second"
timeout 60 qemu-io -f raw -c "write -P 0x22 4M 2M" -c flush "$(uri_of second)" >/dev/null ||
	fail "write to the added pool volume"
expect_ctl 0 '^second +[0-9]+ +16777216 +2097152' pool-volumes "$P"
expect_ctl 0 'size +33554432' pool-resize-volume "$P" second 32M
expect_ctl 0 'size +50331648' pool-resize-volume "$P" first 48M

# Errors: named, exit 1 (2 for usage), the daemon still serving.
expect_ctl 1 "volume 'second': a volume of that name exists" pool-create-volume "$P" second 1M
expect_ctl 1 "volume 'odd': bad name or size" pool-create-volume "$P" odd 1000
expect_ctl 1 "deleting volume 'second': it is open \(served\)" pool-delete-volume "$P" second
expect_ctl 1 "volume 'ghost': no such volume" pool-delete-volume "$P" ghost
expect_ctl 1 "volume 'ghost': no such volume" pool-resize-volume "$P" ghost 1M
mkvol "$TMP/plain.img" 8M
expect_ctl 1 "plain\.img" pool-volumes "$TMP/plain.img"
expect_ctl 2 "missing.img: No such file" pool-info "$TMP/missing.img"
expect_ctl 2 "not a size" pool-create-volume "$P" x 12Q
expect_ctl 1 "no such volume" add-export ghost "pool:$P/ghost"
check_served first

# Delete once nothing serves it; the data of the others is untouched.
expect_ctl 0 'removed +second' remove-export second
expect_ctl 0 'deleted +second' pool-delete-volume "$P" second
ctl pool-volumes "$P" > "$TMP/vols" || fail "pool-volumes"
! grep -q '^second ' "$TMP/vols" || fail "second still listed: $(cat "$TMP/vols")"
timeout 60 qemu-io -f raw -c "read -P 0x11 0 1M" "$(uri_of first)" > "$TMP/qio.out" 2>&1
grep -q 'read 1048576' "$TMP/qio.out" || fail "first's data after the delete: $(cat "$TMP/qio.out")"

stop_server
"$POOLTOOL" check "$P" > "$TMP/check" 2>&1 || fail "check after the daemon: $(cat "$TMP/check")"
"$POOLTOOL" volume list "$P" > "$TMP/list" 2>&1 || fail "volume list: $(cat "$TMP/list")"
grep -q '^first ' "$TMP/list" && ! grep -q '^second ' "$TMP/list" ||
	fail "the pool after the daemon: $(cat "$TMP/list")"
