#!/usr/bin/env bash
# deploy/dionbd.service's SystemCallFilter= lets the daemon work: every
# system call dionbd makes while serving real clients (both engines, Unix
# socket and TCP, writes, reads, block status, a SIGTERM stop), as strace
# sees them, is one the unit's filter allows, expanded into syscalls with
# systemd-analyze as systemd itself would. A call outside the filter would
# fail with EPERM under systemd (io_uring_setup, say, turning the engine
# into psync or the start into an error), which no other test would see.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires strace systemd-analyze nbdcopy nbdinfo

unit=$DIO_SRC/deploy/dionbd.service
[ -f "$unit" ] || fail "no $unit"

# expand NAME: the syscalls of a name or @group, one a line.
expand()
{
	local l
	systemd-analyze syscall-filter "$1" | while read -r l; do
		case $l in
		'' | '#'* | "$1") ;;
		@*) expand "$l" ;;
		*) echo "$l" ;;
		esac
	done
}

# The unit's filter: "SystemCallFilter=A B" lines add, "=~A B" lines remove.
: >"$TMP/allowed"
grep '^SystemCallFilter=' "$unit" | sed 's/^SystemCallFilter=//' >"$TMP/filters"
while read -r f; do
	[ "${f#\~}" = "$f" ] || continue
	for n in $f; do expand "$n"; done >>"$TMP/allowed"
done <"$TMP/filters"
while read -r f; do
	[ "${f#\~}" != "$f" ] || continue
	for n in ${f#\~}; do expand "$n"; done >>"$TMP/denied"
done <"$TMP/filters"
[ -s "$TMP/allowed" ] || fail "no SystemCallFilter= allow list in $unit"
touch "$TMP/denied"
sort -u "$TMP/allowed" | grep -vxF -f "$TMP/denied" >"$TMP/effective" || true
grep -qx io_uring_setup "$TMP/effective" || fail "the unit's filter denies io_uring_setup"

# Killing strace would leave the daemon running: kill it first.
dpid=
trap '[ -z "$dpid" ] || kill -KILL "$dpid" 2>/dev/null || true; lib_server_cleanup' EXIT

head -c 4M /dev/urandom >"$TMP/data"
port=$(free_port)
for engine in $(test_engines); do
	mkvol "$TMP/vol.img" 16M
	sock=$TMP/$engine.sock
	# strace -f follows the reactors; -qq keeps its own messages out.
	# LeakSanitizer stops threads with ptrace, which it cannot do under strace:
	# leaks are checked by every other test of the ASan build.
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	strace -f -qq -o "$TMP/trace-$engine" "$DIONBD" -f -U "$sock" -b 127.0.0.1 -p "$port" -v \
		--engine "$engine" "$TMP/vol.img" 2>"$TMP/log-$engine" &
	SRV_PID=$!
	SRV_LOG=$TMP/log-$engine
	for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || fail "$engine: no socket under strace"
	dpid=$(pgrep -P "$SRV_PID") || fail "$engine: no daemon under strace"
	timeout 60 nbdcopy "$TMP/data" "nbd+unix:///?socket=$sock" || fail "$engine: nbdcopy in"
	timeout 60 nbdcopy "nbd+unix:///?socket=$sock" "$TMP/back" || fail "$engine: nbdcopy out"
	cmp -n 4194304 "$TMP/data" "$TMP/back" || fail "$engine: data read back differs"
	timeout 20 nbdinfo --map "nbd://127.0.0.1:$port" >/dev/null || fail "$engine: nbdinfo over TCP"
	# The daemon is strace's child: stop it, and strace exits with its status.
	kill -TERM "$dpid"
	timeout 30 tail --pid="$SRV_PID" -f /dev/null || fail "$engine: no stop within 30 s"
	wait "$SRV_PID" || fail "$engine: the daemon did not stop cleanly under strace"
	SRV_PID=
	dpid=
	grep -q "serving 1 export" "$TMP/log-$engine" || fail "$engine: never served"
done

# "PID name(args" lines; resumed and signal lines carry no new name.
sed -n 's/^[0-9]* *\([a-z_0-9]*\)(.*/\1/p' "$TMP"/trace-* | sort -u >"$TMP/used"
[ -s "$TMP/used" ] || fail "strace saw no system call"
# execve is strace's own start of the daemon: systemd applies the filter after it.
bad=$(grep -vx execve "$TMP/used" | grep -vxF -f "$TMP/effective" || true)
[ -z "$bad" ] || fail "system calls outside $unit's SystemCallFilter=: $(echo $bad)"
echo "$NAME: ok ($(wc -l <"$TMP/used") distinct system calls, all allowed)"
