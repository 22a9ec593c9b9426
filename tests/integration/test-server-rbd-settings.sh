#!/usr/bin/env bash
# Bad rbd settings stop the daemon at start with a message that says what is
# wrong (wrong pool, image, snapshot, client id, key, conf, an unreachable
# monitor within rbd-timeout), and the config file takes the same settings;
# two exports of one image share its one volume. A cluster that hangs while
# serving (its OSD stopped) gives EIO within rbd-timeout, not a hang.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
nbdsh_check
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
rbd_c create --size 16M $POOL/img || fail "rbd create $POOL/img"

# refused WHAT PATTERN SPEC...: dionbd exits non-zero at start, its message matching PATTERN.
refused()
{
	local what=$1 pattern=$2 rc=0
	shift 2
	rm -f "$TMP/bad.sock"
	timeout 60 "$DIONBD" -f -U "$TMP/bad.sock" "$@" > "$TMP/bad.log" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "$what: the daemon served"
	[ "$rc" != 124 ] || fail "$what: the daemon hung"
	grep -E -q "$pattern" "$TMP/bad.log" || fail "$what: unclear message: $(cat "$TMP/bad.log")"
}

refused "wrong pool" "pool 'nopool': no such pool" -e "x=rbd:nopool/img,$RBD_OPTS"
refused "wrong image" "image 'noimg' in pool '$POOL': no such image" -e "x=rbd:$POOL/noimg,$RBD_OPTS"
refused "wrong snapshot" "snapshot nosnap in pool '$POOL': no such image or snapshot" \
	-e "x=rbd:$POOL/img@nosnap,$RBD_OPTS"
refused "bad spec" "expected rbd:POOL/IMAGE\[@SNAP\]" -e "x=rbd:img,$RBD_OPTS"
refused "wrong id" "client.nobody .*check the id and keyring" -e "x=rbd:$POOL/img,$RBD_OPTS,rbd-id=nobody"
# A well-formed key that is not client.admin's.
{
	echo "[client.admin]"
	echo "	key = $(ceph-authtool --gen-print-key)"
} > "$TMP/wrong.keyring"
refused "wrong key" "cannot connect to the Ceph cluster as client.admin.*check the id and keyring" \
	-e "x=rbd:$POOL/img,rbd-conf=$CEPH_CONF,rbd-keyring=$TMP/wrong.keyring"
# (timed: what a refusal costs before any wait on the network, loading
# Ceph's libraries included, which a sanitizer build on a busy host slows)
start=$SECONDS
refused "missing conf" "cannot read the Ceph configuration $TMP/none.conf" \
	-e "x=rbd:$POOL/img,rbd-conf=$TMP/none.conf"
fast=$((SECONDS - start))
refused "bad timeout" "bad value 'soon' for 'rbd-timeout'" -e "x=rbd:$POOL/img,$RBD_OPTS,rbd-timeout=soon"
refused "bad cache" "bad value 'maybe' for 'rbd-cache'" -e "x=rbd:$POOL/img,$RBD_OPTS,rbd-cache=maybe"
refused "bad takeover" "bad value 'yes please' for 'rbd-takeover'" \
	-e "x=rbd:$POOL/img,$RBD_OPTS,rbd-takeover=yes please"
# A monitor nobody answers on: refused within rbd-timeout, not hung.
sed 's/^mon_host = .*/mon_host = v2:127.0.0.1:9/' "$CEPH_CONF" > "$TMP/dead.conf"
start=$SECONDS
refused "unreachable monitor" "Connection timed out \(are the monitors up and reachable\?\)" \
	-e "x=rbd:$POOL/img,rbd-conf=$TMP/dead.conf,rbd-keyring=$CEPH_KEYRING,rbd-timeout=3"
# Beyond a refusal's own cost, well under the default rbd-timeout (30 s).
[ $((SECONDS - start - fast)) -le 20 ] ||
	fail "the unreachable monitor took $((SECONDS - start)) s (a refusal alone: $fast s)"
# One bad export of two: nothing is served.
refused "one bad of two" "no such image" -e "good=rbd:$POOL/img,$RBD_OPTS" -e "x=rbd:$POOL/noimg,$RBD_OPTS"

# The config file takes the same settings.
cat > "$TMP/dionbd.conf" <<CONF
[export img]
path = rbd:$POOL/img
rbd-conf = $CEPH_CONF
rbd-id = admin
rbd-keyring = $CEPH_KEYRING
rbd-cache = off
rbd-timeout = 20

[export again]
path = rbd:$POOL/img
rbd-conf = $CEPH_CONF
rbd-id = admin
rbd-keyring = $CEPH_KEYRING
CONF
start_server_or_fail -v --config "$TMP/dionbd.conf"
[ "$(nbdinfo --size "$(uri_of img)")" = 16777216 ] || fail "the export from the config file"
# Two exports of one image share one volume (one librbd handle, one flush for all).
[ "$(grep -c "libdio: rbd:$POOL/img: " "$SRV_LOG")" = 1 ] ||
	fail "the image was opened more than once: $(cat "$SRV_LOG")"
qio_at "$(uri_of img)" -c "write -P 0x5e 0 4k"
qio_at "$(uri_of again)" -r -c "read -P 0x5e 0 4k"
finish img
echo "[export y]
path = rbd:$POOL/img
rbd-timeout = 0" > "$TMP/bad.conf"
refused "bad timeout in the config file" "rbd-timeout" --config "$TMP/bad.conf"

# A hung cluster during serving: with the OSD stopped (SIGSTOP), a read gets
# EIO within rbd-timeout instead of hanging; the connection and the daemon
# survive, and once the OSD runs again (SIGCONT) the same connection reads.
OSD_PID=$(cat "$CEPH_DIR/run/osd.0.pid")
hang_cleanup()
{
	local rc=$?
	kill -CONT "$OSD_PID" 2>/dev/null || true
	lib_rbd_cleanup "$rc"
}
trap hang_cleanup EXIT
start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS,rbd-timeout=3"
timeout 40 nbdsh -u "$(uri_of img)" -c - > "$TMP/hang.out" 2>&1 <<PY || fail "hung OSD: $(cat "$TMP/hang.out")"
import errno, os, signal, time
h.pwrite(bytearray([0x3c]) * 65536, 1 << 20)
os.kill($OSD_PID, signal.SIGSTOP)
try:
    t = time.monotonic()
    try:
        h.pread(65536, 1 << 20)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, "error %s, not EIO" % e
    else:
        raise AssertionError("a read with the OSD stopped succeeded")
    took = time.monotonic() - t
    print("the read failed after %.1f s" % took)
    assert 2 <= took <= 15, "EIO after %.1f s, with rbd-timeout=3" % took
finally:
    os.kill($OSD_PID, signal.SIGCONT)
assert h.pread(65536, 1 << 20) == bytearray([0x3c]) * 65536, "the read after SIGCONT"
h.pwrite(bytearray([0x3d]) * 4096, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == bytearray([0x3d]) * 4096, "the write after SIGCONT"
PY
cat "$TMP/hang.out"
grep -q "timed out" "$SRV_LOG" || fail "no log line about the timeout: $(cat "$SRV_LOG")"
finish img
