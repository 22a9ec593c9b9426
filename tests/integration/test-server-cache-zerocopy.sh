#!/usr/bin/env bash
# Cache hits answered with the unit's memory (DIO_REQ_LEND, issue 14):
# READs within one 64 KiB unit (aligned, and at offsets inside a unit, with
# structured replies, DF, and simple replies) come from the cache without a
# copy; READs across units (1 MiB) take the copy path; a writer on another
# connection writes other blocks of the units being read meanwhile. Every
# byte is checked against the file (and what was written), and the cache's
# summary at stop counts the zero-copy hits and the stable copies.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
nbdsh_check

f=$TMP/vol.img
for engine in $(test_engines); do
	rm -f "$f"
	head -c 8M /dev/urandom >"$f"
	start_server_or_fail -v --engine "$engine" --cache-size 16 \
		-e "rd=$f,cache=read" -e "wb=$f,cache=writeback"
	VOL=$f RD=$(uri_of rd) WB=$(uri_of wb) nbdsh -c '
import os, random, nbd

K, M = 1 << 10, 1 << 20
data = bytearray(open(os.environ["VOL"], "rb").read())
size = len(data)
rd = nbd.NBD(); rd.connect_uri(os.environ["RD"])
simple = nbd.NBD(); simple.set_request_structured_replies(False)
simple.connect_uri(os.environ["RD"])
wb = nbd.NBD(); wb.connect_uri(os.environ["WB"])

def check(h, off, n, df=False):
    if df:                                      # one data chunk (NBD_CMD_FLAG_DF)
        got = bytearray(n)
        def chunk(sub, o, status, err):
            assert status == nbd.READ_DATA, "DF READ %d+%d: a chunk of type %d" % (off, n, status)
            got[o - off:o - off + len(sub)] = sub
            return 0
        h.pread_structured(n, off, chunk, nbd.CMD_FLAG_DF)
    else:
        got = h.pread(n, off)
    assert got == data[off:off + n], "READ %d+%d differs" % (off, n)

for rep in range(2):                            # cold (fills), then warm (hits)
    for off in range(0, size, 64 * K):
        check(rd, off, 64 * K)
for off in range(0, size, M):                   # across 16 units: copied
    check(rd, off, M)
rnd = random.Random(14)
for i in range(3000):                           # inside one unit, any client
    u = rnd.randrange(size // (64 * K)) * 64 * K
    a = rnd.randrange(0, 64 * K, 512)
    n = rnd.randrange(512, 64 * K - a + 1, 512)
    h = simple if i % 3 == 0 else rd
    check(h, u + a, n, i % 3 == 1)
# a writer in the units being read: replies in flight keep their bytes
for i in range(400):
    u = rnd.randrange(size // (64 * K)) * 64 * K
    b = nbd.Buffer(32 * K)
    rd.aio_pread(b, u)
    w = bytes([i % 251 + 1]) * 4 * K
    o = u + 32 * K + (i % 8) * 4 * K
    wb.pwrite(w, o)
    while rd.aio_in_flight() > 0:
        rd.poll(-1)
    assert b.to_bytearray() == data[u:u + 32 * K], "READ %d raced a write beside it" % u
    data[o:o + 4 * K] = w
    check(rd, u, 64 * K)
    check(simple, u + 32 * K, 32 * K)
wb.flush()
assert open(os.environ["VOL"], "rb").read() == bytes(data), "the file differs after FLUSH"
for h in (rd, simple, wb):
    h.shutdown()
' || fail "engine=$engine: READs through the cache"
	finish rd
	zc=$(sed -n 's/.*cache: \([0-9]*\) READs answered without a copy, \([0-9]*\) units copied.*/\1 \2/p' "$SRV_LOG")
	[ -n "$zc" ] || fail "no zero-copy summary in the log: $(tail -n 5 "$SRV_LOG")"
	read -r hits copies <<<"$zc"
	[ "$hits" -ge 3000 ] || fail "engine=$engine: only $hits READs were answered without a copy"
	echo "$NAME: engine=$engine: $hits zero-copy hits, $copies stable copies"
done
echo "$NAME: ok"
