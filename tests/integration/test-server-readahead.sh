#!/usr/bin/env bash
# Readahead of sequential READ streams: reads served from chunks read ahead
# return what the file holds, including after writes, write-zeroes and trims
# (from the same connection or another) to ranges already read ahead; a
# client that leaves with chunks in flight does no harm; the log shows that
# chunks did answer READs (the path under test ran). On both engines.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires nbdsh
requires nbdcopy
# nbdsh runs "python3": use the system one, which has libnbd's bindings.
if ! python3 -c 'import nbd' 2>/dev/null; then
	/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3 nbd bindings missing"
	export PATH=/usr/bin:$PATH
fi

f=$TMP/vol.img
for engine in $(test_engines); do
	rm -f "$f"
	head -c 48M /dev/urandom >"$f"
	# a hole in the middle of the stream
	fallocate -p -o $((20 << 20)) -l $((3 << 20)) "$f" 2>/dev/null ||
		dd if=/dev/zero of="$f" bs=1M seek=20 count=3 conv=notrunc status=none
	start_server_or_fail -v --engine "$engine" "$f"
	VOL=$f nbdsh -u "$URI" -c '
import os

M = 1 << 20
path = os.environ["VOL"]
b = nbd.NBD()
b.connect_uri(h.get_uri())

def want(off, n):
    with open(path, "rb") as fh:
        fh.seek(off)
        return fh.read(n)

def check(off, n=M, conn=h):
    got = conn.pread(n, off)
    assert got == want(off, n), "READ at %d MiB differs from the file" % (off // M)

# A stream: reads 0..2 start it, so chunks 3.. are read ahead.
for i in range(3):
    check(i * M)
# Another connection changes chunks the stream has read ahead: a write, a
# write-zeroes and a trim. The stream must see all three.
b.pwrite(os.urandom(M), 5 * M)
b.zero(M, 7 * M)
b.trim(M, 9 * M)
for i in range(3, 12):
    check(i * M)
# The same connection writes ahead of its own stream.
h.pwrite(os.urandom(M), 14 * M)
for i in range(12, 17):
    check(i * M)
# A read that breaks the pattern (size, then offset), then a new stream
# over the hole and past it.
check(17 * M, 512 << 10)
check(40 * M)
for i in range(18, 28):
    check(i * M)
# DF reads take no chunk.
for i in range(28, 31):
    got = h.pread_structured(M, i * M, lambda *args: 0, nbd.CMD_FLAG_DF)
    assert got == want(i * M, M), "DF READ differs"
# Unaligned to the stream, smaller than the readahead minimum.
for i in range(0, 8):
    check(31 * M + i * 4096, 4096)
b.shutdown()
'
	[ $? = 0 ] || fail "$engine: READs through readahead"
	# Many READs in flight on one connection, and on several.
	want_sum=$(sha "$f")
	timeout 60 nbdcopy --connections=1 --requests=8 "$URI" - | sha256sum | grep "^$want_sum" >/dev/null ||
		fail "$engine: nbdcopy, 1 connection x 8 requests, differs from the file"
	timeout 60 nbdcopy --connections=4 --requests=16 "$URI" - | sha256sum | grep "^$want_sum" >/dev/null ||
		fail "$engine: nbdcopy, 4 connections, differs from the file"
	# Clients that leave while chunks are still being read.
	for _ in 1 2 3; do
		nbdsh -u "$URI" -c 'for i in range(3): h.pread(1 << 20, i << 20)' ||
			fail "$engine: a short stream"
	done
	check_served
	finish
	# The chunks answered READs: the path above did run through readahead.
	hits=$(sed -n 's/.*readahead: \([0-9]*\) of [0-9]* chunks answered.*/\1/p' "$SRV_LOG" |
		awk '{ s += $1 } END { print s + 0 }')
	[ "$hits" -gt 0 ] || fail "$engine: no READ was answered from readahead"
	check_log
	echo "$NAME: $engine: $hits READs answered from readahead"
done

# Two exports of one file: a write through one must stop readahead of the
# other (their write tracking is shared).
start_server_or_fail -v -e "ro=$f,readonly" -e "rw=$f"
VOL=$f RO=$(uri_of ro) RW=$(uri_of rw) nbdsh -c '
import os
M = 1 << 20
a = nbd.NBD(); a.connect_uri(os.environ["RO"])
b = nbd.NBD(); b.connect_uri(os.environ["RW"])
for i in range(3):
    a.pread(M, i * M)
new = os.urandom(M)
b.pwrite(new, 4 * M)
b.flush()
a.pread(M, 3 * M)
assert a.pread(M, 4 * M) == new, "a read through ro missed a write through rw"
' || fail "two exports of one file"
finish ro

# A small request budget: chunks never take the slots the stream's next
# READ needs (at max-inflight 8, 8 chunks would stall the connection).
printf '[server]\nmax-inflight = 8\n[export]\npath = %s\n' "$f" >"$TMP/small.conf"
start_server_or_fail -v -c "$TMP/small.conf"
timeout 30 nbdsh -u "$URI" -c '
for i in range(24):
    h.pread(1 << 20, i << 20)
' || fail "a sequential stream stalls at max-inflight 8"
timeout 60 nbdcopy --connections=1 --requests=8 "$URI" - | sha256sum | grep "^$(sha "$f")" >/dev/null ||
	fail "nbdcopy at max-inflight 8 differs or stalls"
finish
