#!/usr/bin/env bash
# qemu-img convert to and from the export, qemu-img compare.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-img

src=$TMP/src.qcow2
qemu-img create -q -f qcow2 "$src" 64M
head -c 3M /dev/urandom > "$TMP/blob"
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" -c "write -P 0xa5 40M 2M" "$src" >/dev/null
f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail "$f"
timeout 120 qemu-img convert -n -f qcow2 -O raw "$src" "$URI" || fail "convert to the export"
timeout 120 qemu-img compare -f qcow2 -F raw "$src" "$URI" || fail "compare with the export"
timeout 120 qemu-img convert -f raw -O qcow2 "$URI" "$TMP/out.qcow2" || fail "convert from the export"
timeout 120 qemu-img compare "$src" "$TMP/out.qcow2" || fail "round trip differs"
timeout 120 qemu-img compare -f qcow2 -F raw "$src" "$f" || fail "the backing file differs"
# The raw image over NBD carries the holes: qemu-img map sees data only where written.
timeout 60 qemu-img map -f raw --output=json "$URI" > "$TMP/map.json" || fail "qemu-img map"
python3 - "$TMP/map.json" <<'PY' || fail "qemu-img map: $(cat "$TMP/map.json")"
import json, sys
data = [(e["start"], e["length"]) for e in json.load(open(sys.argv[1])) if e["data"]]
covered = sum(l for _, l in data)
if covered > 8 << 20:
    sys.exit("%d bytes of data reported, want about 3 MiB" % covered)
PY
finish
