#!/usr/bin/env bash
# dionbd through libnbd: patterned writes and reads (structured and simple
# replies), FUA, flush, trim then zeros, write-zeroes with NO_HOLE and
# FAST_ZERO, all checked in the backing file too; on both engines.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-data

for engine in $(test_engines); do
	f=$TMP/vol-$engine.img
	mkvol "$f" 64M
	start_server_or_fail --engine "$engine" "$f"
	run server-data "$URI" "$f" || fail "engine=$engine: data checks failed"
	finish
	echo "$NAME: engine=$engine ok"
done
