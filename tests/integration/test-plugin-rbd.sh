#!/usr/bin/env bash
# nbdkit dio rbd:POOL/IMAGE: the plugin serves a Ceph RBD image (opened
# after nbdkit's fork, librados' threads being ours then), with data, FLUSH
# and FUA, multi-conn and a snapshot read-only; a second opener while it
# serves is refused, naming the lock's holder (rbd-takeover=off); bad rbd
# parameters stop nbdkit with a message naming them.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires qemu-io nbdinfo
source "$DIO_SRC/tests/integration/lib-rbd.sh"

mkpool "$POOL"
rbd_c create --size 64M $POOL/img || fail "rbd create $POOL/img"
OPTS=(rbd-conf="$CEPH_CONF" rbd-keyring="$CEPH_KEYRING")

dio_nbdkit "$PLUGIN" rbd:$POOL/img "${OPTS[@]}" --run "
	set -e
	[ \"\$(nbdinfo --size \"\$uri\")\" = 67108864 ]
	nbdinfo \"\$uri\" | grep -q 'can_multi_conn: true'
	nbdinfo \"\$uri\" | grep -q 'can_fua: true'
	qemu-io -f raw \"\$uri\" -c 'write -P 0x5a 1M 1M' -c 'write -f -P 0x5b 3M 64k' \
		-c 'write -z 1M 4k' -c 'flush' > /dev/null
	qemu-io -f raw -r \"\$uri\" -c 'read -P 0x5a 1052672 1044480' -c 'read -P 0 1M 4k' \
		-c 'read -P 0x5b 3M 64k' -c 'read -P 0 0 1M' > '$TMP/reads'
	! grep -q 'Pattern verification failed' '$TMP/reads'
" || fail "serving $POOL/img: $(cat "$TMP/reads" 2>/dev/null)"

# A second gateway while the first serves: refused, naming the holder.
env "${NBDKIT_ENV[@]}" nbdkit -f -U "$TMP/a.sock" "$PLUGIN" rbd:$POOL/img "${OPTS[@]}" \
	2> "$TMP/a.log" &
A_PID=$!
RBD_PIDS=("$A_PID")
for ((i = 0; i < 300; i++)); do
	# Served (so past .after_fork, which took the lock), not only listening.
	[ -S "$TMP/a.sock" ] && timeout 10 nbdinfo --size "nbd+unix:///?socket=$TMP/a.sock" \
		> /dev/null 2>&1 && break
	kill -0 "$A_PID" 2>/dev/null || fail "the first nbdkit exited: $(cat "$TMP/a.log")"
	sleep 0.1
done
nbdkit_refuses "exclusive lock is held by .*rbd-takeover=on" rbd:$POOL/img "${OPTS[@]}"
# It stops on TERM and gives the lock back. Under the ASan preload Debian
# 12's nbdkit can hang in exit() after our .unload (as in nbdkit_refuses):
# there, a lock given back shows our part was done, and it is killed.
kill -TERM "$A_PID"
for ((i = 0; i < 600; i++)); do
	kill -0 "$A_PID" 2>/dev/null || break
	sleep 0.1
done
if ! kill -0 "$A_PID" 2>/dev/null; then
	wait "$A_PID" || fail "the first nbdkit did not exit cleanly: $(cat "$TMP/a.log")"
elif [ "${#NBDKIT_ENV[@]}" -eq 0 ]; then
	fail "the first nbdkit did not exit within 60 s of SIGTERM: $(cat "$TMP/a.log")"
elif [ -n "$(rbd_c lock ls $POOL/img)" ]; then
	fail "the first nbdkit hung before giving the image's lock back: $(rbd_c lock ls $POOL/img)"
else
	echo "$NAME: nbdkit (ASan preload) gave the lock back but hung in exit(): killed" >&2
	kill -KILL "$A_PID"
	wait "$A_PID" || true
fi
RBD_PIDS=()

# A snapshot, read-only, with the data of its time; no lock taken.
rbd_c snap create $POOL/img@s1 || fail "snap create"
dio_nbdkit "$PLUGIN" rbd:$POOL/img@s1 "${OPTS[@]}" --run "
	nbdinfo \"\$uri\" | grep -q 'is_read_only: true' || exit 1
	qemu-io -f raw -r \"\$uri\" -c 'read -P 0x5a 1052672 1044480' -c 'read -P 0x5b 3M 64k' |
		grep -q 'Pattern verification failed' && exit 1
	exit 0" || fail "the snapshot"

nbdkit_refuses "image 'noimg' in pool '$POOL': no such image" rbd:$POOL/noimg "${OPTS[@]}"
nbdkit_refuses "rbd-timeout=0: must be between 1 and 3600" rbd:$POOL/img "${OPTS[@]}" rbd-timeout=0
nbdkit_refuses "rbd-takeover=maybe: expected on or off" rbd:$POOL/img "${OPTS[@]}" rbd-takeover=maybe
nbdkit_refuses "go with rbd:POOL/IMAGE" file="$CEPH_CONF" rbd-conf="$CEPH_CONF"
nbdkit_refuses "excludes file= and thin-pool=" rbd:$POOL/img thin-pool=/x volume=v "${OPTS[@]}"
