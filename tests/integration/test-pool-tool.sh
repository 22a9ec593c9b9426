#!/usr/bin/env bash
# dionbd-pool: create, info, volume create/list/delete/resize, check (exit 0
# clean, 1 on damage, 2 on usage), repair (a leak made by editing the space
# map of the image is taken back and check is clean after; damage is
# refused, exit 1, nothing written), dump (--json parses and holds the
# volumes), and no progress line when stderr is not a terminal.
. "$(dirname "$0")/lib-common.sh"

tool=$DIO_BUILD/tools/dionbd-pool
[ -x "$tool" ] || skip "no $tool"
requires jq python3
mkdir -p "$DIO_TEST_DIR"
pool=$(mktemp "$DIO_TEST_DIR/pool-XXXXXX")
trap 'rm -f "$pool" "$pool.copy"' EXIT

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
[ "$json" = '[{"name":"alpha","id":1,"size":1073741824,"mapped":0,"parent":null,"parent_id":0,"readonly":false},{"name":"beta","id":2,"size":16777216,"mapped":0,"parent":null,"parent_id":0,"readonly":false}]' ] ||
	fail "list --json: $json"
"$tool" volume delete "$pool" beta || fail "volume delete"
"$tool" volume list "$pool" | grep -q beta && fail "beta still listed"
"$tool" check "$pool" >/dev/null || fail "check of a clean pool: $?"

# resize: grow and shrink (the daemon's side: test-server-pool-resize.sh).
"$tool" volume resize "$pool" alpha 2G || fail "volume resize: grow"
"$tool" volume list "$pool" | grep -q '^alpha .* 2147483648' || fail "list after grow"
"$tool" volume resize "$pool" alpha 512M || fail "volume resize: shrink"
"$tool" volume list "$pool" | grep -q '^alpha .* 536870912' || fail "list after shrink"
if "$tool" volume resize "$pool" nope 1G 2>/dev/null; then fail "resize of no volume"; fi
if "$tool" volume resize "$pool" alpha 1000 2>/dev/null; then fail "resize to 1000 bytes"; fi

# dump: JSON that parses, with the volumes, the superblock and the space map.
"$tool" volume create "$pool" gamma 8M || fail "volume create gamma"
"$tool" dump --json "$pool" > "$pool.json" 2> "$pool.err" || fail "dump --json"
python3 -m json.tool "$pool.json" >/dev/null || fail "dump --json does not parse"
[ "$(jq -r '[.volumes[].name] | join(",")' "$pool.json")" = alpha,gamma ] ||
	fail "dump --json volumes: $(cat "$pool.json")"
[ "$(jq '.volumes[0].size' "$pool.json")" = 536870912 ] || fail "dump: alpha's size"
[ "$(jq '.superblock.chunk_size' "$pool.json")" = 65536 ] || fail "dump: chunk size"
chunks=$(jq '.space.chunks' "$pool.json")
[ "$(jq '.space.free' "$pool.json")" = "$chunks" ] || fail "dump: free chunks"
[ "$(jq '.journal.used' "$pool.json")" = 0 ] || fail "dump: journal after close"
# Not a terminal: no progress line (no carriage return, no escape).
[ ! -s "$pool.err" ] || fail "dump wrote to stderr: $(cat -A "$pool.err")"
"$tool" check "$pool" > /dev/null 2> "$pool.err" || fail "check"
[ ! -s "$pool.err" ] || fail "check wrote to stderr: $(cat -A "$pool.err")"
"$tool" dump "$pool" | grep -q '^ *name: gamma$' || fail "dump (text): no gamma"
rm -f "$pool.json" "$pool.err"

# set_space POOL CHUNK N: the checkpoint's space map entry of CHUNK set to N,
# the block sealed again (crc32c): a leak (N over the references) or an
# under-count (N under), as a crash or a bug would leave them.
set_space()
{
	python3 - "$@" <<'PY'
import struct, sys
path, chunk, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
B = 4096
with open(path, "r+b") as f:
    def blk(n):
        f.seek(n * B)
        return bytearray(f.read(B))
    # The superblock in use: the valid slot with the higher generation.
    sbs = [blk(0), blk(1)]
    gen = lambda b: struct.unpack_from("<Q", b, 32)[0]
    sb = max((b for b in sbs if struct.unpack_from("<I", b, 0)[0] == 0x4c504944), key=gen)
    # tp_super after the 64-byte header: 3 feature words, dev_size, 4 u32,
    # journal start/blocks, meta start/blocks, data_start, nr_chunks, ckpt_root.
    root = struct.unpack_from("<Q", sb, 64 + 8 * 4 + 16 + 8 * 6)[0]
    r = blk(root)
    for i in range(struct.unpack_from("<I", r, 56)[0]):
        b = struct.unpack_from("<Q", r, 64 + 8 * i)[0]
        s = blk(b)
        typ, aux, count = struct.unpack_from("<H", s, 24)[0], *struct.unpack_from("<QI", s, 48)
        if typ != 5 or not aux <= chunk < aux + count:
            continue
        k = chunk - aux
        s[64 + k // 4] = (s[64 + k // 4] & ~(3 << 2 * (k % 4)) & 0xFF) | (n << 2 * (k % 4))
        struct.pack_into("<I", s, 4, 0)
        struct.pack_into("<I", s, 4, crc32c(s))
        f.seek(b * B)
        f.write(s)
        sys.exit(0)
sys.exit("no space block for chunk %d" % chunk)
PY
}

# repair: a clean pool needs none; two leaks are taken back, check is clean after.
out=$("$tool" repair "$pool") || fail "repair of a clean pool: $? $out"
[ "$out" = "clean: nothing to repair" ] || fail "repair of a clean pool: $out"
free0=$("$tool" dump --json "$pool" | jq '.space.free')
set_space "$pool" 7 1 || fail "set_space"
set_space "$pool" 100 3 || fail "set_space"
rc=0
"$tool" check "$pool" > "$pool.out" || rc=$?
[ $rc = 0 ] || fail "check of a leaking pool: exit $rc (leaks are not fatal)"
grep -q '^0 problems, 2 leaked chunks' "$pool.out" || fail "check: $(cat "$pool.out")"
[ "$("$tool" dump --json "$pool" | jq '.space.leaked')" = 2 ] || fail "dump: leaks not shown"
"$tool" repair "$pool" > "$pool.out" || fail "repair: exit $?: $(cat "$pool.out")"
grep -q '^repaired: 2 leaked chunks taken back' "$pool.out" || fail "repair: $(cat "$pool.out")"
"$tool" check "$pool" > "$pool.out" || fail "check after repair: $(cat "$pool.out")"
grep -q '^0 problems, 0 leaked chunks' "$pool.out" || fail "check after repair: $(cat "$pool.out")"
[ "$("$tool" dump --json "$pool" | jq '.space.free')" = "$free0" ] || fail "free count not back"
rm -f "$pool.out"

set +e
"$tool" check 2>/dev/null; [ $? -eq 2 ] || fail "check without a pool: not exit 2"
"$tool" repair 2>/dev/null; [ $? -eq 2 ] || fail "repair without a pool: not exit 2"
"$tool" dump --yaml "$pool" 2>/dev/null; [ $? -eq 2 ] || fail "dump --yaml: not exit 2"
"$tool" volume resize "$pool" alpha 2>/dev/null; [ $? -eq 2 ] || fail "resize without a size: not exit 2"
"$tool" frobnicate 2>/dev/null; [ $? -eq 2 ] || fail "unknown command: not exit 2"
# Wreck both superblocks: check reports a problem and exits 1, repair refuses
# (exit 1) and writes nothing.
dd if=/dev/zero of="$pool" bs=4096 count=2 conv=notrunc status=none
"$tool" check "$pool" >/dev/null; [ $? -eq 1 ] || fail "check of a wrecked pool: not exit 1"
"$tool" info "$pool" 2>/dev/null; [ $? -eq 1 ] || fail "info of a wrecked pool: not exit 1"
cp "$pool" "$pool.copy"
out=$("$tool" repair "$pool" 2>&1); [ $? -eq 1 ] || fail "repair of a wrecked pool: not exit 1"
echo "$out" | grep -q "no valid superblock" || fail "repair does not say why: $out"
echo "$out" | grep -q "nothing written" || fail "repair: $out"
cmp -s "$pool" "$pool.copy" || fail "a refused repair wrote to the pool"
exit 0
