#!/usr/bin/env bash
# dionbd-pool: create, info, volume create/list/delete, check (exit 0 clean,
# 1 on damage, 2 on usage).
. "$(dirname "$0")/lib-common.sh"

tool=$DIO_BUILD/tools/dionbd-pool
[ -x "$tool" ] || skip "no $tool"
mkdir -p "$DIO_TEST_DIR"
pool=$(mktemp "$DIO_TEST_DIR/pool-XXXXXX")
trap 'rm -f "$pool"' EXIT

"$tool" create --size 64M --chunk-size 64K "$pool" || fail "create"
"$tool" info "$pool" | grep -q '^chunk size: *65536' || fail "info: chunk size"
# An empty pool's checkpoint: at least a root and a space map block.
"$tool" info "$pool" | grep -Eq '^checkpoint: *([2-9]|[1-9][0-9]+) blocks in use' ||
	fail "info: checkpoint blocks: $("$tool" info "$pool")"
"$tool" volume create "$pool" alpha 1G || fail "volume create"
"$tool" volume create "$pool" beta 16M || fail "volume create beta"
if "$tool" volume create "$pool" alpha 1G 2>/dev/null; then fail "duplicate name accepted"; fi
"$tool" volume list "$pool" | grep -q '^alpha .* 1073741824' || fail "list: alpha"
json=$("$tool" volume list --json "$pool")
[ "$json" = '[{"name":"alpha","id":1,"size":1073741824,"mapped":0},{"name":"beta","id":2,"size":16777216,"mapped":0}]' ] ||
	fail "list --json: $json"
"$tool" volume delete "$pool" beta || fail "volume delete"
"$tool" volume list "$pool" | grep -q beta && fail "beta still listed"
"$tool" check "$pool" >/dev/null || fail "check of a clean pool: $?"

set +e
"$tool" check 2>/dev/null; [ $? -eq 2 ] || fail "check without a pool: not exit 2"
"$tool" frobnicate 2>/dev/null; [ $? -eq 2 ] || fail "unknown command: not exit 2"
# Wreck both superblocks: check reports a problem and exits 1.
dd if=/dev/zero of="$pool" bs=4096 count=2 conv=notrunc status=none
"$tool" check "$pool" >/dev/null; [ $? -eq 1 ] || fail "check of a wrecked pool: not exit 1"
"$tool" info "$pool" 2>/dev/null; [ $? -eq 1 ] || fail "info of a wrecked pool: not exit 1"
exit 0
