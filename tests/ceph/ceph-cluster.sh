#!/usr/bin/env bash
# A one-node Ceph cluster for the rbd tests: one monitor and one bluestore
# OSD (no ceph-mgr), cephx on, everything under DIR, listening on 127.0.0.1.
#
#   ceph-cluster.sh start DIR [N] -> DIR/ceph.conf, DIR/keyring (client.admin)
#   ceph-cluster.sh stop DIR      -> stops what start started, by PID
#
# N OSDs (default 1; osd.0 .. osd.N-1, pid files DIR/run/osd.I.pid): pools
# get N replicas (at most 3), of which N-1 (at least 1) must be up for I/O,
# so with 3 one may die. Each OSD's block device is a sparse file of 8 GiB:
# smaller ones (1 GiB) make bluestore abort under random writes. Every wait
# is bounded. Exit 77 from start when the machine cannot run Ceph
# (packages missing).
set -euo pipefail

cmd=${1:-}
DIR=${2:-}
NOSD=${3:-1}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
DIR=$(realpath -m "$DIR")
CONF=$DIR/ceph.conf
WAIT=${CEPH_WAIT:-90}	# seconds for each step that waits on the cluster

log() { echo "ceph-cluster: $*" >&2; }

# Stop the daemon whose pid file is $1: TERM, then KILL after 20 s.
stop_pid() {
	local f=$1 pid i
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid ($f) did not stop: KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

if [ "$cmd" = stop ]; then
	for f in "$DIR"/run/osd.*.pid; do
		stop_pid "$f"
	done
	stop_pid "$DIR/run/mon.a.pid"
	exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ "$NOSD" =~ ^[1-9]$ ]] || { echo "$0: N must be 1 to 9 OSDs" >&2; exit 2; }
size=$((NOSD < 3 ? NOSD : 3))
min_size=$((size > 1 ? size - 1 : 1))

for p in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd uuidgen; do
	command -v "$p" >/dev/null || { log "$p is missing (scripts/deps.sh installs Ceph)"; exit 77; }
done

mkdir -p "$DIR"/{mon,run,log}
# A free port for the monitor (msgr2 only), below the ephemeral range so
# that no outgoing connection takes it (the tests pick theirs there too).
port=
lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
[ "${lo:-0}" -gt 11000 ] || lo=32768
for ((i = 0; i < 50; i++)); do
	p=$((10000 + RANDOM % (lo - 10000)))
	if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { log "no free port"; exit 1; }
fsid=$(uuidgen)

cat > "$CONF" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$port
public_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $DIR/keyring
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
log_to_stderr = false
err_to_stderr = false
mon_cluster_log_file = $DIR/log/cluster.log
osd_pool_default_size = $size
osd_pool_default_min_size = $min_size
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
[mon]
mon_data = $DIR/mon
[osd]
osd_data = $DIR/\$name
keyring = $DIR/\$name/keyring
osd_objectstore = bluestore
bluestore_block_path = $DIR/\$name-block
bluestore_block_create = true
bluestore_block_size = 8589934592
bluestore_block_db_create = false
bluestore_block_wal_create = false
osd_memory_target = 1073741824
bluestore_cache_autotune = false
bluestore_cache_size = 268435456
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2
CONF

ceph-authtool -C "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool -C "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' \
	--cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/keyring" >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$port]" --fsid "$fsid" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
ceph-mon -c "$CONF" -i a
c() { timeout "$WAIT" ceph -c "$CONF" --connect-timeout "$WAIT" "$@"; }
c mon stat >/dev/null || { log "the monitor does not answer: see $DIR/log"; exit 1; }

for ((n = 0; n < NOSD; n++)); do
	uuid=$(uuidgen)
	secret=$(ceph-authtool --gen-print-key)
	id=$(echo "{\"cephx_secret\": \"$secret\"}" | c osd new "$uuid" -i -)
	[ "$id" = "$n" ] || { log "osd new gave id '$id', not $n"; exit 1; }
	mkdir -p "$DIR/osd.$n"
	ceph-authtool -C "$DIR/osd.$n/keyring" --name "osd.$n" --add-key "$secret" >/dev/null
	timeout "$WAIT" ceph-osd -c "$CONF" -i "$n" --mkfs --osd-uuid "$uuid" \
		>"$DIR/log/osd.$n-mkfs.out" 2>&1 ||
		{ log "ceph-osd --mkfs failed: $(grep -h ERROR "$DIR/log/osd.$n-mkfs.out" "$DIR/log/osd.$n.log" | tail -3)"; exit 1; }
	ceph-osd -c "$CONF" -i "$n"
done
for ((i = 0; i < WAIT * 2; i++)); do
	if [ "$(c osd dump 2>/dev/null | grep -c '^osd\.[0-9]* up')" = "$NOSD" ]; then
		break
	fi
	sleep 0.5
done
[ "$(c osd dump | grep -c '^osd\.[0-9]* up')" = "$NOSD" ] ||
	{ log "not all $NOSD OSDs came up: see $DIR/log"; exit 1; }
log "up: mon v2:127.0.0.1:$port, $NOSD OSD(s) (pools: size $size, min_size $min_size), conf $CONF"
