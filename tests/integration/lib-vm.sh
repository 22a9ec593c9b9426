# Sourced by tests/integration/test-vm-*.sh: boot a small Linux guest (built at
# test time from Debian packages by tests/vm/build-guest.sh) that is the NBD
# server's real user, through the kernel's NBD client or QEMU's, and check on
# the host what it wrote. The guest has no network card: QEMU's NBD client and
# the virtio-serial ports of the kernel client reach the server's Unix socket.
# Env: DIO_VM_FULL=1 (big data; default: quick), DIO_VM_SERVER=dionbd (default)
# | qemu-nbd | nbdkit-memory (calibration: a known-good server, and a lossy one
# whose host-side checks must fail), DIO_VM_ACCEL (default tcg,thread=single:
# this machine's /dev/kvm, when it has one, cannot run an unmodified guest;
# on two shared host cores one TCG thread ran a 4-vCPU guest's scenario in
# 20-24 s where thread=multi took 47-88 s),
# DIO_VM_CACHE (where the kernel package is kept), DIO_VM_DIONBD_ARGS (more
# options for dionbd, e.g. -vv).
source "$(dirname "${BASH_SOURCE[0]}")/lib-server.sh"

# The VM tests run in one build of CI only: under TCG they are the slowest
# tests, and the daemon's sanitizer coverage comes from the other suites.
if grep -q '^DIO_SANITIZE:BOOL=ON' "$DIO_BUILD/CMakeCache.txt" 2>/dev/null; then
	skip "the VM tests run in the build without DIO_SANITIZE only"
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	skip "qemu-system-x86_64 is not installed (scripts/deps.sh installs qemu-system-x86)"
requires python3 nbdcopy debugfs e2fsck cpio flock
requires_prog vport-bridge

VM_FULL=${DIO_VM_FULL:-0}
VM_SERVER=${DIO_VM_SERVER:-dionbd}
VM_ACCEL=${DIO_VM_ACCEL:-tcg,thread=single}
if [ "$VM_FULL" = 1 ]; then
	VM_SIZE=$((2 << 30))
	VM_FIO_SIZE=512m
	VM_FILES="small:4 mid:300 big:65536 huge:300000"
	VM_RUNTIME=120
else
	VM_SIZE=$((128 << 20))
	VM_FIO_SIZE=24m
	VM_FILES="small:4 mid:300 big:3000"
	VM_RUNTIME=25
fi
VM_DIR=$DIO_BUILD/vm
VM_FILE=$TMP/disk.img
VM_SOCK=$TMP/nbd.sock
VM_LOG=$TMP/console.log
VM_QMP=$TMP/qmp.sock
VM_PID=
VM_TLS=0
VM_ARGS=()
CERTS=$TMP/certs
BUILDER_OUT=$TMP/build-guest.out

timeout --kill-after=10 900 "$DIO_SRC/tests/vm/build-guest.sh" "$VM_DIR" \
	"$PROGS/vport-bridge" 2>"$BUILDER_OUT" || {
	rc=$?
	[ "$rc" = 77 ] && skip "$(tail -n 1 "$BUILDER_OUT")"
	fail "tests/vm/build-guest.sh: $(tail -n 5 "$BUILDER_OUT")"
}

lib_vm_cleanup()
{
	local rc=$?
	if [ -n "$VM_PID" ] && kill -0 "$VM_PID" 2>/dev/null; then
		kill -KILL "$VM_PID" 2>/dev/null || true
		wait "$VM_PID" 2>/dev/null || true
	fi
	lib_server_cleanup "$rc"
}
trap lib_vm_cleanup EXIT

# vm_fail MESSAGE: fail, showing the end of the guest's console.
vm_fail()
{
	if [ -s "$VM_LOG" ]; then
		echo "--- last lines of the guest's console ($VM_LOG):" >&2
		tail -n 40 "$VM_LOG" >&2
	fi
	fail "$@"
}

# vm_tls: the scenario uses TLS with client certificates (deploy/make-certs.sh).
vm_tls()
{
	VM_TLS=1
	"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
}

# vm_server_start: serve $VM_FILE as export "vm" on $VM_SOCK with $VM_SERVER
# (TLS required, with a verified client certificate, after vm_tls).
vm_server_start()
{
	local i tls=()
	SRV_N=$((SRV_N + 1))
	SRV_LOG=$TMP/server-$SRV_N.log
	case "$VM_SERVER" in
	dionbd)
		[ "$VM_TLS" = 1 ] && tls=(--tls require --tls-creds "$CERTS/server" --tls-verify-peer)
		"$DIONBD" -f -U "$VM_SOCK" ${DIO_VM_DIONBD_ARGS:-} "${tls[@]}" -e "vm=$VM_FILE" 2>"$SRV_LOG" >&2 &
		;;
	qemu-nbd)
		[ "$VM_TLS" = 1 ] && tls=(--object
			"tls-creds-x509,id=tls0,endpoint=server,dir=$CERTS/server,verify-peer=on"
			--tls-creds tls0)
		qemu-nbd -t -e 16 -k "$VM_SOCK" -x vm -f raw --cache=none --discard=unmap \
			"${tls[@]}" "$VM_FILE" 2>"$SRV_LOG" >&2 &
		;;
	nbdkit-memory)
		[ "$VM_TLS" = 1 ] && tls=(--tls=require "--tls-certificates=$CERTS/server"
			--tls-verify-peer)
		nbdkit -f -U "$VM_SOCK" -e vm "${tls[@]}" memory "$(stat -c %s "$VM_FILE")" \
			2>"$SRV_LOG" >&2 &
		;;
	*) fail "DIO_VM_SERVER=$VM_SERVER: dionbd, qemu-nbd or nbdkit-memory" ;;
	esac
	SRV_PID=$!
	for ((i = 0; i < 200; i++)); do
		[ -S "$VM_SOCK" ] && return 0
		kill -0 "$SRV_PID" 2>/dev/null || fail "$VM_SERVER exited at start"
		sleep 0.05
	done
	fail "$VM_SERVER: no socket after 10 s"
}

# vm_server_stop: SIGTERM; the server exits within 10 s (dionbd: with status 0,
# a clean log, its socket removed).
vm_server_stop()
{
	if [ "$VM_SERVER" = dionbd ]; then
		SOCK=$VM_SOCK stop_server
		return
	fi
	kill -TERM "$SRV_PID"
	timeout 10 tail --pid="$SRV_PID" -f /dev/null || fail "$VM_SERVER did not exit"
	wait "$SRV_PID" || true
	SRV_PID=
	rm -f "$VM_SOCK"
}

# vm_start SMP [QEMU ARGS...]: boot the guest with SMP vCPUs, the scenario's
# settings in a second cpio after the base one, the console in $VM_LOG.
vm_start()
{
	local smp=$1 run=$TMP/run i
	shift
	rm -rf "$run"
	mkdir -p "$run/etc"
	cat >"$run/etc/vm.env" <<-EOF
		VM_CLIENT=$VM_CLIENT
		VM_EXPORT=vm
		VM_SIZE=$(stat -c %s "$VM_FILE")
		VM_CONNS=${VM_CONNS:-1}
		VM_TLS=$VM_TLS
		VM_MODE=$VM_MODE
		VM_FIO_SIZE=$VM_FIO_SIZE
		VM_FILES="$VM_FILES"
		VM_RUNTIME=$VM_RUNTIME
		VM_NBD_TIMEOUT=${VM_NBD_TIMEOUT:-120}
		VM_IODEPTH=${VM_IODEPTH:-8}
		VM_BSSPLIT=${VM_BSSPLIT:-4k/30:8k/20:64k/20:256k/20:1m/10}
	EOF
	if [ "$VM_TLS" = 1 ]; then
		mkdir -p "$run/etc/certs"
		cp "$CERTS/client/"*.pem "$run/etc/certs/"
	fi
	(cd "$run" && find . | cpio -o -H newc --quiet) >"$TMP/run.cpio"
	cat "$VM_DIR/base.cpio" "$TMP/run.cpio" >"$TMP/initrd"
	: >"$VM_LOG"
	for ((i = 0; i < ${VM_CONNS:-1}; i++)); do
		set -- "$@" -device "virtio-serial-pci,id=vser$i${DIO_VM_VSER_OPTS:-}"
	done
	qemu-system-x86_64 -name dio-vm -nodefaults -display none -no-reboot -nic none \
		-accel "$VM_ACCEL" -cpu max -smp "$smp" -m 1024 \
		-kernel "$VM_DIR/vmlinuz" -initrd "$TMP/initrd" \
		-append "console=ttyS0 panic=-1 loglevel=4" \
		-serial "file:$VM_LOG" -qmp "unix:$VM_QMP,server=on,wait=off" \
		"$@" 2>"$TMP/qemu.log" &
	VM_PID=$!
}

# vm_virtio_disk [RECONNECT-DELAY]: VM_ARGS, QEMU's arguments for a virtio-blk
# disk on the export through QEMU's NBD client (with TLS after vm_tls).
vm_virtio_disk()
{
	local nbd
	VM_ARGS=()
	nbd='"driver":"nbd","export":"vm","discard":"unmap"'
	nbd+=',"server":{"type":"unix","path":"'$VM_SOCK'"}'
	[ -n "${1:-}" ] && nbd+=',"reconnect-delay":'$1
	if [ "$VM_TLS" = 1 ]; then
		nbd+=',"tls-creds":"tls0","tls-hostname":"localhost"'
		VM_ARGS=(-object "tls-creds-x509,id=tls0,endpoint=client,dir=$CERTS/client")
	fi
	VM_ARGS+=(-blockdev \
		'{"driver":"raw","node-name":"disk0","discard":"unmap","file":{'"$nbd"'}}' \
		-device virtio-blk-pci,drive=disk0)
}

# vm_wait WHAT SECONDS: wait for the guest's "DIO-VM: WHAT" line; fail if it
# says FAIL, QEMU exits, or SECONDS pass.
vm_wait()
{
	local what=$1 limit=$2 i
	for ((i = 0; i < limit * 5; i++)); do
		grep -q "^DIO-VM: $what" "$VM_LOG" && return 0
		grep -q '^DIO-VM: FAIL' "$VM_LOG" && vm_fail "the guest: $(grep -m1 '^DIO-VM: FAIL' "$VM_LOG")"
		kill -0 "$VM_PID" 2>/dev/null ||
			vm_fail "QEMU exited before '$what': $(tail -n 5 "$TMP/qemu.log")"
		sleep 0.2
	done
	vm_fail "no '$what' from the guest within $limit s"
}

# vm_plug_ports N [RECONNECT]: hot-plug N virtio-serial ports nbd0.. whose host
# sides are socket chardevs connected to the server (RECONNECT: seconds
# between QEMU's attempts to reconnect a dropped one).
vm_plug_ports()
{
	local n=$1 reconnect=${2:-0} i cmds=()
	for ((i = 0; i < n; i++)); do
		cmds+=('{"execute":"chardev-add","arguments":{"id":"nbd'$i'","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"'$VM_SOCK'"}},"server":false,"reconnect":'$reconnect'}}}}')
		cmds+=('{"execute":"device_add","arguments":{"driver":"virtserialport","bus":"vser'$i'.0","chardev":"nbd'$i'","name":"nbd'$i'","id":"port'$i'"}}')
	done
	timeout 60 python3 "$DIO_SRC/tests/vm/qmp.py" "$VM_QMP" "${cmds[@]}" ||
		vm_fail "cannot hot-plug the NBD ports"
}

# vm_end: the guest passed; QEMU exits (the guest reboots, -no-reboot) in 60 s.
vm_end()
{
	vm_wait PASS "$1"
	timeout 60 tail --pid="$VM_PID" -f /dev/null || vm_fail "QEMU did not exit after PASS"
	wait "$VM_PID" || true
	VM_PID=
}

# vm_host_checks: what the guest wrote, seen from the host: the export read
# through the server equals the backing file; after the server stops, the file
# is a clean ext4 (check mode) holding each guest file with its checksum.
vm_host_checks()
{
	local uri="nbd+unix:///vm?socket=$VM_SOCK" name sum n=0
	[ "$VM_TLS" = 1 ] && uri="nbds+unix:///vm?socket=$VM_SOCK&tls-certificates=$CERTS/client"
	timeout 300 nbdcopy "$uri" "$TMP/readback" || fail "nbdcopy from the server"
	cmp "$TMP/readback" "$VM_FILE" || fail "the export read through the server differs from the file"
	rm -f "$TMP/readback"
	vm_server_stop
	[ "$VM_MODE" = check ] || return 0
	e2fsck -fn "$VM_FILE" >"$TMP/e2fsck.out" 2>&1 ||
		fail "e2fsck -fn on the file: $(tail -n 5 "$TMP/e2fsck.out")"
	while read -r _ _ name sum; do
		debugfs -R "dump /$name $TMP/out" "$VM_FILE" >/dev/null 2>&1 ||
			fail "debugfs cannot dump /$name"
		[ "$(sha "$TMP/out")" = "$sum" ] || fail "/$name: checksum in the file differs"
		n=$((n + 1))
	done < <(grep '^DIO-VM: FILE ' "$VM_LOG" | tr -d '\r')
	[ "$n" = "$(wc -w <<<"$VM_FILES")" ] || fail "$n files reported by the guest"
}

# vm_check_scenario CLIENT SMP CONNS: the whole check scenario on a fresh file.
vm_check_scenario()
{
	local t0=$SECONDS
	VM_CLIENT=$1
	VM_CONNS=$3
	VM_MODE=check
	mkvol "$VM_FILE" "$VM_SIZE"
	vm_server_start
	VM_ARGS=()
	[ "$VM_CLIENT" = virtio ] && vm_virtio_disk
	vm_start "$2" "${VM_ARGS[@]}"
	if [ "$VM_CLIENT" = kernel ]; then
		vm_wait READY 180
		vm_plug_ports "$VM_CONNS"
	fi
	vm_end 900
	vm_host_checks
	echo "$NAME: $VM_SERVER, $VM_CLIENT client: passed in $((SECONDS - t0)) s"
}

# vm_restart_scenario CLIENT SMP RECONNECT: the operator's upgrade under a
# live user: while fio verify runs in the guest, SIGTERM the server (dionbd
# must exit cleanly) and start it again on the same socket. The client
# reconnects (virtio: QEMU's reconnect-delay=RECONNECT; kernel: nbd-client
# -persist, its chardev reconnecting every RECONNECT s) and the guest sees no
# I/O or verify error.
vm_restart_scenario()
{
	local t0=$SECONDS down old_log
	VM_CLIENT=$1
	VM_CONNS=1
	VM_MODE=restart
	mkvol "$VM_FILE" "$VM_SIZE"
	vm_server_start
	VM_ARGS=()
	[ "$VM_CLIENT" = virtio ] && vm_virtio_disk "$3"
	vm_start "$2" "${VM_ARGS[@]}"
	if [ "$VM_CLIENT" = kernel ]; then
		vm_wait READY 180
		vm_plug_ports 1 "$3"
	fi
	vm_wait FIO-START 180
	sleep 5
	down=$SECONDS
	vm_server_stop
	old_log=$SRV_LOG
	vm_server_start
	echo "$NAME: $VM_SERVER restarted in $((SECONDS - down)) s under the guest"
	vm_end 900
	grep -a '^fio: ' "$VM_LOG" | tr -d '\r' || true
	echo "--- the stopped server's log:"
	tail -n 5 "$old_log"
	vm_host_checks
	echo "$NAME: $VM_SERVER, restart under the $VM_CLIENT client: passed in $((SECONDS - t0)) s"
}
