#!/usr/bin/env bash
# nbdkit dio cache=writeback|read: the block cache in front of the volume.
# Random mixed traffic over 8 connections checked against a shadow copy
# (and the file after FLUSH); a writeback WRITE is not in the file before
# FLUSH and is once FLUSH replied; bad cache= values are refused.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
PROGS=$DIO_BUILD/tests
[ -x "$PROGS/server-aio" ] && [ -x "$PROGS/server-cache" ] ||
	skip "the libnbd test programs are not built"

for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 16M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine cache=writeback cache-size=8M \
		--run "'$PROGS/server-aio' \"\$uri\" '$f' 1000" ||
		fail "engine=$engine cache=writeback: mixed traffic"
	f=$TMP/flush-$engine
	mkfile "$f" 8M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine cache=writeback \
		--run "'$PROGS/server-cache' flush \"\$uri\" '$f'" ||
		fail "engine=$engine: FLUSH through the cache"
	"$PROGS/server-cache" check "$f" || fail "engine=$engine: flushed data not in the file"
	echo "$NAME: engine=$engine ok"
done
f=$TMP/disk-read
mkfile "$f" 16M
dio_nbdkit "$PLUGIN" file="$f" cache=read cache-size=8M \
	--run "'$PROGS/server-aio' \"\$uri\" '$f' 1000" || fail "cache=read: mixed traffic"
nbdkit_refuses "cache=bogus: must be none, read or writeback" file="$f" cache=bogus
nbdkit_refuses "cache-size=1k: must be 1M or more" file="$f" cache=read cache-size=1k
echo "$NAME: ok"
