#!/usr/bin/env bash
# BLOCK_STATUS (base:allocation) against the backing file's real map
# (FIEMAP, SEEK_DATA/SEEK_HOLE): data, unwritten and hole ranges laid out
# before the daemon starts, then changed through NBD; on both engines.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-extents

for engine in $(test_engines); do
	f=$TMP/vol-$engine.img
	run server-extents prepare "$f" || fail "cannot lay out $f"
	start_server_or_fail --engine "$engine" "$f"
	run server-extents check "$URI" "$f" || fail "engine=$engine: block status"
	finish
	echo "$NAME: engine=$engine ok"
done
