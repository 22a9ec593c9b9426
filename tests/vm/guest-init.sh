#!/bin/sh
# /init of the test guest (tests/vm/build-guest.sh puts it there): be the NBD
# server's user, say how it went on the serial console, power off.
# What to do comes from /etc/vm.env, in a second cpio the host appends per run:
#   VM_CLIENT   kernel (nbd-client over vport-bridge) | virtio (QEMU's NBD
#               client behind /dev/vda)
#   VM_EXPORT   export name; VM_SIZE its size in bytes
#   VM_CONNS    kernel: connections (nbd-client -C)
#   VM_TLS      kernel: 1 = TLS with /etc/certs/{ca-cert,client-cert,client-key}.pem
#   VM_MODE     check: fio verify, then ext4 | restart: fio verify in a loop
#               for VM_RUNTIME seconds while the host restarts the server
#   VM_FIO_SIZE fio's --size; VM_FILES "name:KiB ..." files made on the ext4
# Lines for the host start with "DIO-VM: ": READY (waiting for NBD ports),
# FIO-START, FILE name sha256, PASS, FAIL: why.
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run

say()
{
	echo "DIO-VM: $*"
}

bye()
{
	sync
	reboot -f
	sleep 60
}

vm_fail()
{
	say "FAIL: $*"
	echo "--- dmesg tail"
	dmesg | tail -n 40
	bye
}

while read -r m; do
	insmod "/lib/modules/$m" || vm_fail "insmod $m"
done </lib/modules/load-order
. /etc/vm.env

# The kernel client: the host hot-plugs VM_CONNS virtio-serial ports named
# nbd0..nbdN-1 once we say READY (so the server's handshake deadline starts
# when we are there to answer); each is bridged to /run/nbd.sock.
attach_kernel()
{
	local i n ports= tls=
	say "READY"
	for i in $(seq 600); do
		n=0
		for f in /sys/class/virtio-ports/*/name; do
			grep -q '^nbd' "$f" 2>/dev/null && n=$((n + 1))
		done
		[ "$n" -ge "$VM_CONNS" ] && break
		sleep 0.1
	done
	[ "$n" -ge "$VM_CONNS" ] || vm_fail "only $n of $VM_CONNS NBD ports appeared"
	for f in /sys/class/virtio-ports/*/name; do
		grep -q '^nbd' "$f" && ports="$ports /dev/$(basename "$(dirname "$f")")"
	done
	vport-bridge /run/nbd.sock $ports 2>/dev/console &
	for i in $(seq 50); do
		[ -S /run/nbd.sock ] && break
		sleep 0.1
	done
	if [ "$VM_TLS" = 1 ]; then
		# -H: the name in the server's certificate, so it is verified.
		tls="-cacertfile /etc/certs/ca-cert.pem -certfile /etc/certs/client-cert.pem
			-keyfile /etc/certs/client-key.pem -tlshostname localhost"
	fi
	if [ "$VM_MODE" = restart ]; then
		# nbd-client >= 3.27 (netlink): a dead-connection timeout, and it
		# stays to reconnect; the host's chardevs reconnect to the new server.
		nbd-client -N "$VM_EXPORT" -C "$VM_CONNS" -t "$VM_NBD_TIMEOUT" -persist -nofork \
			-unix /run/nbd.sock /dev/nbd0 &
		for i in $(seq 300); do
			[ "$(cat /sys/block/nbd0/size)" != 0 ] && break
			sleep 0.1
		done
	else
		nbd-client -N "$VM_EXPORT" -C "$VM_CONNS" -t "$VM_NBD_TIMEOUT" $tls \
			-unix /run/nbd.sock /dev/nbd0 || vm_fail "nbd-client could not attach"
	fi
	DEV=/dev/nbd0
}

# run_fio SEED: random writes of mixed sizes, each block verified (crc32c).
run_fio()
{
	fio --name=verify --filename="$DEV" --direct=1 --ioengine=libaio --iodepth="${VM_IODEPTH:-8}" \
		--rw=randwrite --bssplit="${VM_BSSPLIT:-4k/30:8k/20:64k/20:256k/20:1m/10}" \
		--size="$VM_FIO_SIZE" --verify=crc32c --verify_fatal=1 --verify_backlog=64 \
		--do_verify=1 --randseed="$1" --eta=never --output=/tmp/fio.out ||
		{ cat /tmp/fio.out; vm_fail "fio verify (seed $1)"; }
	grep -q 'err= *0' /tmp/fio.out || { cat /tmp/fio.out; vm_fail "fio reported an error"; }
	grep -E '^ *(READ|WRITE):' /tmp/fio.out
}

check_ext4()
{
	local f name kib
	mkfs.ext4 -q -F "$DEV" || vm_fail "mkfs.ext4"
	mount -t ext4 "$DEV" /mnt || vm_fail "mount"
	for f in $VM_FILES; do
		name=${f%%:*}
		kib=${f#*:}
		head -c $((kib * 1024)) /dev/urandom >"/mnt/$name" || vm_fail "write /mnt/$name"
	done
	(cd /mnt && sha256sum $(for f in $VM_FILES; do echo "${f%%:*}"; done)) >/tmp/sums
	sync
	umount /mnt || vm_fail "umount"
	e2fsck -fn "$DEV" >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; vm_fail "e2fsck -fn"; }
	mount -t ext4 -o ro "$DEV" /mnt || vm_fail "mount read-only"
	(cd /mnt && sha256sum -c -s /tmp/sums) || vm_fail "checksums after remount differ"
	umount /mnt || vm_fail "umount read-only"
	while read -r sum name; do
		say "FILE $name $sum"
	done </tmp/sums
}

case "$VM_CLIENT" in
kernel) attach_kernel ;;
virtio) DEV=/dev/vda ;;
*) vm_fail "VM_CLIENT=$VM_CLIENT" ;;
esac
[ -b "$DEV" ] || vm_fail "no $DEV"
size=$(blockdev --getsize64 "$DEV")
[ "$size" = "$VM_SIZE" ] || vm_fail "$DEV has $size bytes, the export $VM_SIZE"

case "$VM_MODE" in
check)
	run_fio 1
	check_ext4
	;;
restart)
	say "FIO-START"
	start=$(date +%s)
	seed=1
	while [ $(($(date +%s) - start)) -lt "$VM_RUNTIME" ]; do
		run_fio "$seed"
		seed=$((seed + 1))
	done
	echo "fio: $((seed - 1)) verified runs in $(($(date +%s) - start)) s"
	;;
esac

if [ "$VM_CLIENT" = kernel ]; then
	nbd-client -d /dev/nbd0 || vm_fail "nbd-client -d"
	for i in $(seq 50); do
		[ "$(cat /sys/block/nbd0/size)" = 0 ] && break
		sleep 0.1
	done
	[ "$(cat /sys/block/nbd0/size)" = 0 ] || vm_fail "/dev/nbd0 still attached after -d"
fi
if dmesg | grep -E -i 'I/O error|timed out|timeout|EXT4-fs error|Buffer I/O|blk_update_request|nbd.*(error|dead)'; then
	vm_fail "errors in dmesg"
fi
say "PASS"
bye
