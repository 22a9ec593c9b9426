#!/usr/bin/env bash
# nbdkit dio: multi-conn is advertised and holds: what one connection writes
# and flushes, another reads; parallel writers on several connections.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires_nbdsh
requires nbdinfo

cat > "$TMP/two.py" <<'PY'
uri = h.get_uri()
h2 = nbd.NBD()
h2.connect_uri(uri)
expect(h.can_multi_conn() and h2.can_multi_conn(), "can_multi_conn")
h.pwrite(pattern(0, 1 << 20, 11), 0)
h.flush()
expect(h2.pread(1 << 20, 0) == pattern(0, 1 << 20, 11), "h2 sees h1's write")
h2.pwrite(pattern(1 << 20, 1 << 20, 12), 1 << 20, nbd.CMD_FLAG_FUA)
expect(h.pread(1 << 20, 1 << 20) == pattern(1 << 20, 1 << 20, 12), "h1 sees h2's FUA write")
# Interleaved async writes on both connections, then cross-checked reads.
bufs = []
for i in range(16):
    hh = h if i % 2 else h2
    bufs.append(nbd.Buffer.from_bytearray(bytearray(pattern((2 << 20) + i * 65536, 65536, 13))))
    hh.aio_pwrite(bufs[-1],
                  (2 << 20) + i * 65536)
for hh in (h, h2):
    while hh.aio_in_flight() > 0:
        hh.poll(-1)
h.flush()
h2.flush()
expect(h.pread(1 << 20, 2 << 20) == pattern(2 << 20, 1 << 20, 13), "interleaved writes via h")
expect(h2.pread(1 << 20, 2 << 20) == pattern(2 << 20, 1 << 20, 13), "interleaved writes via h2")
h2.shutdown()
PY
for engine in $(test_engines); do
	f=$TMP/disk-$engine
	mkfile "$f" 16M
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine \
		--run 'nbdinfo --can multi-conn "$uri"' || fail "engine=$engine: multi-conn not advertised"
	dio_nbdkit "$PLUGIN" file="$f" engine=$engine --run "$(nbdsh_run "$TMP/two.py")" ||
		fail "engine=$engine: two connections"
	echo "$NAME: engine=$engine ok"
done
