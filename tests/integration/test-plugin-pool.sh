#!/usr/bin/env bash
# nbdkit dio thin-pool=POOL volume=NAME: a thin pool's volume served by the
# plugin reads back what was written after a restart (nbdkit checkpoints
# the pool at exit), never-written ranges are holes in block status, the
# pool checks clean, a second opener is refused while nbdkit runs, bad
# parameters stop nbdkit with a message naming the problem, and
# thin-pool-discard= decides whether freed chunks leave the pool file.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"
requires qemu-io nbdinfo
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"

P=$TMP/pool.img
truncate -s 64M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" vm1 32M >/dev/null || fail "volume create vm1"
"$POOLTOOL" volume create "$P" vm2 32M >/dev/null || fail "volume create vm2"

for engine in $(test_engines); do
	seed=$((RANDOM % 200 + 16))
	dio_nbdkit "$PLUGIN" thin-pool="$P" volume=vm1 engine="$engine" --run "
		set -e
		[ \"\$(nbdinfo --size \"\$uri\")\" = 33554432 ]
		qemu-io -f raw \"\$uri\" -c 'write -P $seed 1M 1M' -c 'write -P 0xcd 5M 4k' \
			-c 'write -P 0xee 20M 64k' -c 'discard 20M 64k' -c 'flush' >/dev/null
		qemu-io -f raw \"\$uri\" -c 'read -P $seed 1M 1M' -c 'read -P 0 2M 3M' \
			-c 'read -P 0 20M 64k' > '$TMP/reads'
		! grep -q 'Pattern verification failed' '$TMP/reads'
		nbdinfo --map \"\$uri\" > '$TMP/map'
		# the pool is locked: dionbd-pool cannot open it for writing meanwhile
		if '$POOLTOOL' volume create '$P' vm3 1M 2>'$TMP/locked'; then exit 3; fi
	" || fail "engine=$engine: serving vm1 ($(cat "$TMP/locked" 2>/dev/null))"
	grep -E -q '^ +2097152 +[0-9]+ +3 +hole,zero' "$TMP/map" ||
		fail "engine=$engine: never-written range after 2M is not a hole: $(cat "$TMP/map")"
	"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "engine=$engine: check: $(cat "$TMP/check")"
	# Restart: the data is there (the checkpoint at exit), vm2 untouched.
	dio_nbdkit "$PLUGIN" thin-pool="$P" volume=vm1 engine="$engine" readonly=true --run "
		qemu-io -f raw -r \"\$uri\" -c 'read -P $seed 1M 1M' -c 'read -P 0xcd 5M 4k' \
			-c 'read -P 0 20M 64k' -c 'read -P 0 0 1M' | grep -q 'Pattern verification failed' && exit 1
		exit 0" || fail "engine=$engine: vm1 after a restart"
	dio_nbdkit "$PLUGIN" thin-pool="$P" volume=vm2 engine="$engine" --run "
		qemu-io -f raw \"\$uri\" -c 'read -P 0 0 32M' | grep -q 'Pattern verification failed' && exit 1
		exit 0" || fail "engine=$engine: vm2 is not all zeros"
	echo "$NAME: engine=$engine ok"
done

# Each bad parameter: startup fails with a message naming it, no client runs.
bad() { nbdkit_refuses "$@"; }
bad 'thin-pool= and volume= go together' thin-pool="$P"
bad 'thin-pool= and volume= go together' volume=vm1
bad 'exclude each other' thin-pool="$P" volume=vm1 file="$P"
bad 'volume=nope: no such volume' thin-pool="$P" volume=nope
bad 'volume=.*1 to 55 bytes' thin-pool="$P" volume="$(printf 'v%.0s' $(seq 60))"
bad 'thin-pool-discard=maybe: expected on or off' thin-pool="$P" volume=vm1 thin-pool-discard=maybe
mkfile "$TMP/notapool" 8M
bad "thin-pool=.*notapool|notapool.*(pool|superblock)" thin-pool="$TMP/notapool" volume=vm1

# thin-pool-discard: freed chunks punched out of the pool file (on), or kept (off).
held() { echo $(($(stat -c %b "$P") * 512)); }
for d in off on; do
	dio_nbdkit "$PLUGIN" thin-pool="$P" volume=vm2 thin-pool-discard=$d --run "
		qemu-io -f raw \"\$uri\" -c 'write -P 0x44 0 8M' -c flush >/dev/null" ||
		fail "thin-pool-discard=$d: write"
	full=$(held)
	dio_nbdkit "$PLUGIN" thin-pool="$P" volume=vm2 thin-pool-discard=$d --run "
		qemu-io -f raw \"\$uri\" -c 'discard 0 8M' -c flush -c 'read -P 0 0 8M' |
			grep -q 'Pattern verification failed' && exit 1
		exit 0" || fail "thin-pool-discard=$d: trim"
	case $d in
	off) [ "$(held)" -ge "$full" ] || fail "thin-pool-discard=off: the pool file shrank" ;;
	on) [ $((full - $(held))) -ge $((7 << 20)) ] ||
		fail "thin-pool-discard=on: 8 MiB trimmed, the pool file went from $full to $(held)" ;;
	esac
done
"$POOLTOOL" check "$P" >"$TMP/check" 2>&1 || fail "check at the end: $(cat "$TMP/check")"
