#!/usr/bin/env bash
# nbdsh (libnbd's Python API) over TLS, X.509 and PSK: h.get_tls_negotiated()
# is true; a pattern written with h.pwrite (plain and FUA, aligned requests
# from 512 B to 8 MiB) reads back with h.pread; h.flush; h.zero (with and
# without NBD_CMD_FLAG_NO_HOLE) reads back as zeros and leaves its neighbours
# alone; a second TLS session reads the same; the volume file holds what a
# local model of the writes says.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdsh cmp
# nbdsh runs "python3": the system one has libnbd's bindings.
if ! nbdsh -c pass >/dev/null 2>&1; then
	export PATH=/usr/bin:$PATH
	nbdsh -c pass >/dev/null 2>&1 || skip "nbdsh does not run (python3-libnbd)"
fi
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
SIZE=$((32 << 20))

# The client half: connect as $TLS_MODE (x509: certificates in $TLS_DIR; psk:
# $TLS_PSK as $TLS_USER) to $SOCK, then run $STEP (write: the writes, and the
# model of the volume into $EXPECT; check: read the volume and compare).
cat >"$TMP/client.py" <<'PY'
import os, struct, sys

env = os.environ
h.set_tls(nbd.TLS_REQUIRE)
if env["TLS_MODE"] == "x509":
    h.set_tls_certificates(env["TLS_DIR"])
    h.set_tls_verify_peer(True)
else:
    h.set_tls_psk_file(env["TLS_PSK"])
    h.set_tls_username(env["TLS_USER"])
h.connect_unix(env["SOCK"])
assert h.get_tls_negotiated(), "TLS was not negotiated"
size = h.get_size()
assert size == int(env["SIZE"]), size

def pattern(off, n, seed):
    """n bytes of 8-byte words (seed, offset): misplaced bytes show."""
    return b"".join(struct.pack("<Q", (seed << 48) | (off + i))
                    for i in range(0, n, 8))

if env["STEP"] == "write":
    model = bytearray(size)
    def write(off, n, seed, flags=0):
        buf = pattern(off, n, seed)
        h.pwrite(buf, off, flags)
        model[off:off + n] = buf
        got = h.pread(n, off)
        assert got == buf, "read back at %d+%d differs" % (off, n)
    def zero(off, n, flags=0):
        h.zero(n, off, flags)
        model[off:off + n] = bytes(n)

    write(0, 512, 1)
    write(4096, 65536, 2)
    write(1 << 20, 8 << 20, 3)
    write(12 << 20, 4096, 4, nbd.CMD_FLAG_FUA)
    write(size - 65536, 65536, 5)
    h.flush()
    # Zero the middle of a written run: the edges must stay.
    zero((1 << 20) + 4096, 1 << 20)
    assert h.pread(1 << 20, (1 << 20) + 4096) == bytes(1 << 20)
    assert h.pread(4096, 1 << 20) == model[(1 << 20):(1 << 20) + 4096]
    assert h.pread(4096, (2 << 20) + 4096) == model[(2 << 20) + 4096:(2 << 20) + 8192]
    zero(4096 + 512, 8192, nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(65536, 4096) == bytes(model[4096:4096 + 65536])
    zero(size - 4096, 4096, nbd.CMD_FLAG_FUA)
    h.flush()
    # The whole volume, in 4 MiB reads.
    for off in range(0, size, 4 << 20):
        assert h.pread(4 << 20, off) == model[off:off + (4 << 20)], "volume at %d" % off
    with open(env["EXPECT"], "wb") as f:
        f.write(model)
else:
    with open(env["EXPECT"], "rb") as f:
        model = f.read()
    for off in range(0, size, 4 << 20):
        assert h.pread(4 << 20, off) == model[off:off + (4 << 20)], "session 2 at %d" % off
h.shutdown()
PY

# nbdsh_tls STEP MODE: run the client (its failure fails the test).
nbdsh_tls()
{
	STEP=$1 TLS_MODE=$2 SOCK=$SOCK SIZE=$SIZE EXPECT=$TMP/expect \
		TLS_DIR=$CERTS/client TLS_PSK=$CERTS/keys.psk TLS_USER=alice \
		timeout 120 nbdsh -c "exec(open('$TMP/client.py').read())" >"$TMP/nbdsh.out" 2>&1 ||
		fail "nbdsh $1 over TLS ($2): $(cat "$TMP/nbdsh.out")"
}

f=$TMP/vol.img
for mode in x509 psk; do
	mkvol "$f" $SIZE
	rm -f "$TMP/expect"
	if [ $mode = x509 ]; then
		start_server_or_fail -v --tls-creds "$CERTS/server" --tls-verify-peer "$f"
	else
		start_server_or_fail -v --tls-psk-file "$CERTS/keys.psk" "$f"
	fi
	nbdsh_tls write $mode
	nbdsh_tls check $mode
	cmp "$f" "$TMP/expect" || fail "$mode: the volume differs from the model of the writes"
	case $mode in
	x509) peer="peer CN=client" ;;
	psk) peer="peer PSK alice" ;;
	esac
	grep -q "$peer" "$SRV_LOG" || fail "$mode: the log does not show '$peer'"
	grep -q "TLS TLSv1.3" "$SRV_LOG" || fail "$mode: the log shows no TLS 1.3 session"
	stop_server
done
