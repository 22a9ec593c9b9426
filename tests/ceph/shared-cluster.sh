#!/usr/bin/env bash
# The one-node Ceph cluster that the rbd tests of one ctest run share (the
# CTest fixture rbd-cluster, tests/CMakeLists.txt), so that each test does
# not pay a cluster's start of its own.
#
#   shared-cluster.sh start DIR -> DIR/ceph.conf, DIR/keyring, DIR/run/*.pid
#                                  (ceph-cluster.sh), then DIR/ready; or
#                                  DIR/skip with the reason and exit 77
#   shared-cluster.sh stop DIR  -> stops the daemons by their PIDs, removes DIR
#
# The tests (lib-rbd.sh with DIO_CEPH_SHARED=DIR) each work in a pool of
# their own. A start first stops what a run before left in DIR, by PID.
set -uo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
here=$(dirname "$0")

case $cmd in
stop)
	bash "$here/ceph-cluster.sh" stop "$DIR"
	rm -rf "$DIR"
	;;
start)
	[ -d "$DIR" ] && bash "$here/ceph-cluster.sh" stop "$DIR"
	rm -rf "$DIR"
	mkdir -p "$DIR"
	rc=0
	timeout 240 bash "$here/ceph-cluster.sh" start "$DIR" 1 2> "$DIR/start.log" || rc=$?
	cat "$DIR/start.log" >&2
	if [ "$rc" = 77 ]; then
		tail -n 1 "$DIR/start.log" > "$DIR/skip"
		exit 77
	fi
	if [ "$rc" != 0 ]; then
		# Whatever did start is stopped now; the tests find no ready mark.
		bash "$here/ceph-cluster.sh" stop "$DIR"
		exit "$rc"
	fi
	touch "$DIR/ready"
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
