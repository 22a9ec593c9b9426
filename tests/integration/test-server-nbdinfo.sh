#!/usr/bin/env bash
# nbdinfo against dionbd: capabilities, block sizes, export list and
# descriptions, and --map matching the file's layout.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires nbdinfo python3

f=$TMP/vol.img
mkvol "$f" 16M
# data [0, 1M), hole [1M, 4M), data [4M, 5M), unwritten [8M, 9M), hole to the end
dd if=/dev/urandom of="$f" bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of="$f" bs=1M count=1 seek=4 conv=notrunc status=none
fallocate -o 8M -l 1M "$f"
sync "$f"
start_server_or_fail -e "desc=$f,description=the test volume" "$f"

nbdinfo --json "$URI" > "$TMP/info.json" || fail "nbdinfo"
python3 - "$TMP/info.json" <<'PY' || fail "nbdinfo --json: $(cat "$TMP/info.json")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
want = {"export-size": 16 << 20, "is_read_only": False, "can_flush": True, "can_fua": True,
        "can_trim": True, "can_zero": True, "can_cache": True, "can_df": True,
        "can_multi_conn": True}
for k, v in want.items():
    if e.get(k) != v:
        sys.exit("%s is %r, want %r" % (k, e.get(k), v))
if "base:allocation" not in e.get("contexts", []):
    sys.exit("no base:allocation context")
mn, pref, mx = e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]
if not (1 <= mn <= 4096 and mn & (mn - 1) == 0):
    sys.exit("minimum block %d" % mn)
if pref < 4096 or pref & (pref - 1):
    sys.exit("preferred block %d" % pref)
if mx != 32 << 20:
    sys.exit("maximum block %d, want 32 MiB" % mx)
PY

nbdinfo --list --json "$URI" > "$TMP/list.json" || fail "nbdinfo --list"
python3 - "$TMP/list.json" <<'PY' || fail "nbdinfo --list: $(cat "$TMP/list.json")"
import json, sys
ex = {e["export-name"]: e for e in json.load(open(sys.argv[1]))["exports"]}
if set(ex) != {"", "desc"}:
    sys.exit("exports %r" % sorted(ex))
if ex["desc"].get("description") != "the test volume":
    sys.exit("description %r" % ex["desc"].get("description"))
PY

nbdinfo --map "$URI" > "$TMP/map" || fail "nbdinfo --map"
# Columns: offset length type description; compare per MiB with what we laid out.
python3 - "$TMP/map" <<'PY' || fail "nbdinfo --map: $(cat "$TMP/map")"
import sys
M = 1 << 20
want = {}
for mib in range(16):
    if mib in (0, 4):
        want[mib] = 0            # data
    elif mib == 8:
        want[mib] = None         # unwritten: zero, hole or not
    else:
        want[mib] = 3            # hole,zero
end = 0
for line in open(sys.argv[1]):
    off, length, typ = (int(x) for x in line.split()[:3])
    if off != end:
        sys.exit("gap at %d" % end)
    end = off + length
    for mib in range(off // M, (end + M - 1) // M):
        w = want[mib]
        if w is None:
            if not typ & 2:
                sys.exit("unwritten MiB %d has type %d" % (mib, typ))
        elif w != typ:
            sys.exit("MiB %d has type %d, want %d" % (mib, typ, w))
if end != 16 * M:
    sys.exit("map ends at %d" % end)
PY
finish
