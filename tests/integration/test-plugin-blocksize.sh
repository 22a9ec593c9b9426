#!/usr/bin/env bash
# nbdkit dio: block sizes advertised are the device's true minimum, a
# preferred size >= 4096 and 32 MiB maximum; size and rotational flag too.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires nbdinfo python3

mkfile "$TMP/disk" 12345678K
for engine in $(test_engines); do
	dio_nbdkit "$PLUGIN" file="$TMP/disk" engine=$engine \
		--run 'nbdinfo --json "$uri"' > "$TMP/info.json" || fail "engine=$engine: nbdinfo"
	python3 - "$TMP/info.json" "$TMP/disk" <<'PY' || fail "engine=$engine: block sizes"
import json, os, sys
info = json.load(open(sys.argv[1]))["exports"][0]
print({k: v for k, v in info.items() if k.startswith("block_size") or k in ("export-size", "is_rotational")})
assert info["export-size"] == os.path.getsize(sys.argv[2])
mn, pref, mx = info["block_size_minimum"], info["block_size_preferred"], info["block_size_maximum"]
# O_DIRECT alignment of this file: the device's logical block size (512 or 4096).
assert mn in (512, 1024, 2048, 4096), mn
assert pref >= 4096 and pref >= mn and pref & (pref - 1) == 0, pref
assert mx == 32 << 20, mx
PY
	echo "$NAME: engine=$engine ok"
done
