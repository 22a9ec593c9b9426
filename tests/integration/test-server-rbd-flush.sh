#!/usr/bin/env bash
# FLUSH and FUA on an rbd export with multi-conn: every connection shares
# the one librbd handle, so a FLUSH on one makes the writes of another
# durable. With librbd's cache on (writes acknowledged from memory), data
# written on connection A and flushed on connection B survives a kill -9 of
# the daemon; so does a FUA write. Both connections see each other's writes.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io
nbdsh_check
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
rbd_c create --size 64M $POOL/img || fail "rbd create $POOL/img"

# With the cache off the daemon stops cleanly (an acknowledged write is on the
# OSDs already); with it on, kill -9 shows that the flushes did their work.
# Only the last run kills: a killed client's lock and watch stay for 30 s,
# and the next writer of the image would wait for them.
for cache in off on; do
	start_server_or_fail -v -e "img=rbd:$POOL/img,$RBD_OPTS,rbd-cache=$cache"
	[ "$cache" = off ] || grep -q "librbd cache on" "$SRV_LOG" || fail "rbd-cache=on not taken"
	timeout 120 nbdsh -u "$(uri_of img)" -c - > "$TMP/nbdsh.out" 2>&1 <<PY || fail "$cache: two connections: $(cat "$TMP/nbdsh.out")"
import nbd
a = h
b = nbd.NBD()
b.connect_uri("$(uri_of img)")
assert a.can_multi_conn() and b.can_multi_conn(), "multi-conn"
assert a.can_flush() and a.can_fua(), "flush/fua"
fill = lambda c: bytearray([c]) * 65536
a.pwrite(fill(0xa1), 0)                         # on A, made durable by B's flush
a.pwrite(fill(0xa2), 1 << 20)
assert b.pread(65536, 0) == fill(0xa1), "B does not see A's write"
b.flush()
b.pwrite(fill(0xb1), 2 << 20, nbd.CMD_FLAG_FUA)  # durable by itself
assert a.pread(65536, 2 << 20) == fill(0xb1), "A does not see B's FUA write"
a.zero(65536, 3 << 20, nbd.CMD_FLAG_FUA)
a.trim(65536, 4 << 20, nbd.CMD_FLAG_FUA)
a.flush()
b.flush()
PY
	if [ "$cache" = on ]; then
		# No clean stop: what was acknowledged as durable must be on the OSDs.
		kill -KILL "$SRV_PID"
		wait "$SRV_PID" 2>/dev/null || true
		SRV_PID=
	else
		finish img
	fi
	start_server_or_fail -e "img=rbd:$POOL/img,readonly,$RBD_OPTS"
	qio_at "$(uri_of img)" -r -c "read -P 0xa1 0 64k" -c "read -P 0xa2 1M 64k" \
		-c "read -P 0xb1 2M 64k" -c "read -P 0 3M 64k" -c "read -P 0 4M 64k"
	finish img
	if [ "$cache" = off ]; then
		# A fresh image, so the next run's data cannot be left over from this one.
		rbd_c rm $POOL/img > /dev/null 2>&1 || fail "rbd rm $POOL/img"
		rbd_c create --size 64M $POOL/img || fail "a new $POOL/img"
	fi
done
