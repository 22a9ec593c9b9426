# Sourced by tests/integration/test-*-rbd*.sh after lib-server.sh (or
# plugins/dio/test-functions.sh): a Ceph cluster and the rbd export options
# that reach it, and $POOL, the test's own pool (mkpool makes it). Skips
# (77) when this build has no rbd support or the machine cannot run Ceph.
#
# Under ctest (DIO_CEPH_SHARED=DIR) the one-node cluster of the fixture
# rbd-cluster (tests/ceph/shared-cluster.sh), shared by the rbd tests of the
# run: each works in a pool named after it, so none sees another's images.
# Run alone (no DIO_CEPH_SHARED) or with CEPH_OSDS set: a cluster of its
# own (tests/ceph/ceph-cluster.sh, CEPH_OSDS OSDs, default 1) under $TMP,
# stopped by its PIDs when the test ends.

CEPH_SHARED=
[ -z "${CEPH_OSDS:-}" ] && CEPH_SHARED=${DIO_CEPH_SHARED:-}
if [ -n "$CEPH_SHARED" ]; then
	CEPH_DIR=$CEPH_SHARED
	POOL=${NAME#test-}
else
	CEPH_DIR=$TMP/ceph
	POOL=tp
fi
CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_KEYRING=$CEPH_DIR/keyring

# The daemon (or, sourced after plugins/dio/test-functions.sh, the plugin)
# must have been built with librbd.
if [ -n "${PLUGIN:-}" ]; then
	env "${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --dump-plugin | grep -x dio_rbd=yes >/dev/null ||
		skip "the plugin was built without librbd (librbd-dev missing at build time)"
else
	rm -f "$TMP/probe.sock"
	if timeout 20 "$DIONBD" -f -U "$TMP/probe.sock" -e "x=rbd:p/i,rbd-conf=/nonexistent" \
		> "$TMP/probe.log" 2>&1; then
		fail "an rbd export of a missing conf was served"
	fi
	if grep -q "no Ceph RBD support" "$TMP/probe.log"; then
		skip "dionbd was built without librbd (librbd-dev missing at build time)"
	fi
fi

# Processes of the test (clients, a second gateway) that the cleanup
# stops by PID before the cluster: TERM (timeout passes it on), KILL 2 s later.
RBD_PIDS=()

# lib_rbd_cleanup [RC]: the EXIT trap (RC as for lib_server_cleanup).
lib_rbd_cleanup()
{
	local rc=${1:-$?} p i
	for p in "${RBD_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || continue
		for ((i = 0; i < 20; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "$CEPH_SHARED" ] || bash "$DIO_SRC/tests/ceph/ceph-cluster.sh" stop "$CEPH_DIR" || true
	if declare -F lib_server_cleanup >/dev/null; then
		lib_server_cleanup "$rc"
	elif [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
		rm -rf "$TMP"
	else
		echo "$NAME: scratch files kept in $TMP" >&2
	fi
}
trap lib_rbd_cleanup EXIT

if [ -n "$CEPH_SHARED" ]; then
	[ ! -f "$CEPH_DIR/skip" ] || skip "cannot run Ceph here: $(cat "$CEPH_DIR/skip")"
	[ -f "$CEPH_DIR/ready" ] ||
		fail "the shared cluster in $CEPH_DIR is not up (see the test rbd-cluster-start)"
else
	ceph_rc=0
	timeout 240 bash "$DIO_SRC/tests/ceph/ceph-cluster.sh" start "$CEPH_DIR" "${CEPH_OSDS:-1}" \
		2> "$TMP/ceph-start.log" || ceph_rc=$?
	if [ "$ceph_rc" = 77 ]; then
		skip "cannot run Ceph here: $(tail -n 1 "$TMP/ceph-start.log")"
	fi
	[ "$ceph_rc" = 0 ] || fail "the test cluster did not start: $(tail -n 5 "$TMP/ceph-start.log")"
fi

# ceph / rbd against the test cluster, bounded.
ceph_c() { timeout 120 ceph -c "$CEPH_CONF" "$@"; }
rbd_c() { timeout 120 rbd -c "$CEPH_CONF" "$@"; }

# The options of an -e spec for the test cluster.
RBD_OPTS="rbd-conf=$CEPH_CONF,rbd-keyring=$CEPH_KEYRING"

# mkpool NAME: a replicated pool for RBD images, new (one of that name
# left on the shared cluster by an earlier run of the test goes first).
mkpool()
{
	ceph_c osd pool rm "$1" "$1" --yes-i-really-really-mean-it > /dev/null 2>&1 || true
	ceph_c osd pool create "$1" 8 > /dev/null 2>&1 || fail "pool create $1"
	rbd_c pool init "$1" || fail "rbd pool init $1"
}
