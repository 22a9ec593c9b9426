#!/usr/bin/env bash
# nbdkit dio: --dump-plugin lists our keys and the parallel thread model;
# --help describes the parameters.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"

env "${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --dump-plugin > "$TMP/dump" || fail "--dump-plugin"
cat "$TMP/dump"
for re in '^name=dio$' '^thread_model=parallel$' '^has_block_size=1$' '^has_extents=1$' \
	  '^has_cache=1$' '^has_can_fast_zero=1$' '^dio_version=' '^dio_uring=(yes|no)$' \
	  '^dio_engine=(uring|psync)$' '^dio_engines=uring,psync$' '^dio_o_direct=yes$'; do
	grep -Eq "$re" "$TMP/dump" || fail "--dump-plugin lacks $re"
done
# dio_uring must tell the truth: engine=uring starts exactly when it says yes.
mkfile "$TMP/disk" 1M
if dio_nbdkit "$PLUGIN" file="$TMP/disk" engine=uring --run true 2>/dev/null; then
	grep -qx dio_uring=yes "$TMP/dump" || fail "engine=uring works but dio_uring=no"
else
	grep -qx dio_uring=no "$TMP/dump" || fail "engine=uring fails but dio_uring=yes"
fi

env "${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --help > "$TMP/help" || fail "--help"
for key in file= readonly= engine= queue-depth= pool-size=; do
	grep -q "$key" "$TMP/help" || fail "--help does not mention $key"
done
echo "$NAME: ok"
