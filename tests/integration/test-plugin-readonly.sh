#!/usr/bin/env bash
# nbdkit dio: readonly=true (and nbdkit -r) serve reads and refuse writes,
# zeroes and trims with EPERM; the file is not touched.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh
requires nbdinfo sha256sum

cat > "$TMP/ro.py" <<PY
expect(h.is_read_only(), "export is read-only")
base = open("$TMP/disk", "rb").read(1 << 20)
expect(h.pread(1 << 20, 0) == base, "reads work")
# Ask the server anyway: libnbd would refuse these itself in strict mode.
h.set_strict_mode(0)
expect_error(lambda: h.pwrite(bytes(4096), 0), "EPERM", "write")
expect_error(lambda: h.zero(4096, 0), "EPERM", "zero")
expect_error(lambda: h.trim(4096, 0), "EPERM", "trim")
h.flush()
PY
for engine in $(test_engines); do
	mkfile "$TMP/disk" 4M
	dd if=/dev/urandom of="$TMP/disk" bs=1M count=2 conv=notrunc status=none
	before=$(sha256sum < "$TMP/disk")
	for opts in "readonly=true" "readonly=false -r"; do
		# shellcheck disable=SC2086
		set -- $opts
		ro=$1
		shift
		if dio_nbdkit "$@" "$PLUGIN" file="$TMP/disk" engine=$engine $ro \
			--run 'nbdinfo --can write "$uri"'; then
			fail "engine=$engine $opts: the export is writable"
		fi
		dio_nbdkit "$@" "$PLUGIN" file="$TMP/disk" engine=$engine $ro \
			--run "$(nbdsh_run "$TMP/ro.py")" || fail "engine=$engine $opts: read-only checks"
		[ "$(sha256sum < "$TMP/disk")" = "$before" ] || fail "engine=$engine $opts: file changed"
	done
	echo "$NAME: engine=$engine ok"
done
