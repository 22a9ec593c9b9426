#!/usr/bin/env bash
# 8 connections x 64 requests in flight (libnbd aio): random reads, writes,
# trims, write-zeroes and flushes checked against a shadow copy, then the
# whole export and the file compared with it; on both engines.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-aio

for engine in $(test_engines); do
	f=$TMP/vol-$engine.img
	mkvol "$f" 64M
	start_server_or_fail --engine "$engine" "$f"
	run server-aio "$URI" "$f" 20000 || fail "engine=$engine: concurrent requests"
	finish
	echo "$NAME: engine=$engine ok"
done
