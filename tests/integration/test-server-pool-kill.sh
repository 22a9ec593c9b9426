#!/usr/bin/env bash
# SIGKILL of the daemon serving pool volumes, $DIO_POOL_KILLS times (10 by
# default), each at a random point of a load of fio and pool-kill.py, then
# a restart on the same pool:
# - `dionbd-pool check` of the crashed pool finds no problem (leaks are
#   allowed: reported, not fatal);
# - every region fio wrote with --verify=crc32c and flushed (end_fsync: fio
#   exits 0 only once the FLUSH was replied) before a kill verifies with
#   --verify_only after this and every later kill (R2);
# - each sector pool-kill.py wrote holds the newest durable version (FUA, or
#   replied before a replied FLUSH, on any connection) or a later one, and
#   what was never written reads zeros: no stale or foreign bytes (R1, R3);
# - each block of the region fio was writing at the kill is zeros or fio's
#   block for that offset.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio was built without the nbd engine"
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import nbd' 2>/dev/null ||
	skip "$PY has no libnbd module (python3-libnbd)"
POOLTOOL=$DIO_BUILD/tools/dionbd-pool
[ -x "$POOLTOOL" ] || skip "dionbd-pool is not built"
KILLS=${DIO_POOL_KILLS:-10}
CLIENT=$DIO_SRC/tests/integration/pool-kill.py
MiB=$((1 << 20))
FIO_PID=
WRITER_PID=

# The clients of a round the test leaves early: SIGTERM to their timeout(1),
# which passes it on.
pool_kill_cleanup()
{
	local rc=$? pid
	for pid in $FIO_PID $WRITER_PID; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	lib_server_cleanup "$rc"
}
trap pool_kill_cleanup EXIT

P=$TMP/pool.img
truncate -s 160M "$P"
"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
"$POOLTOOL" volume create "$P" v 64M >/dev/null || fail "volume create v"
"$POOLTOOL" volume create "$P" w 64M >/dev/null || fail "volume create w"
read -r -a ENGINES <<< "$(test_engines)"

SLOTS=30
# v: [1M, 31M) fio's flushed regions (round i's in slot (i - 1) % SLOTS),
# [32M, 40M) fio at the kill, [40M, 44M) pool-kill.py; w: [40M, 44M)
# pool-kill.py; the rest of both is never written.
fio_job() # ROUND: fio's job options for round ROUND's flushed region
{
	echo "--name=r$1 --ioengine=nbd --uri=$(uri_of v) --rw=randwrite --bs=16k" \
		"--offset=$(((($1 - 1) % SLOTS + 1) * MiB)) --size=1M --iodepth=8" \
		"--randseed=$((1000 + $1)) --verify=crc32c --verify_fatal=1"
}

start_round() # ROUND
{
	local engine=${ENGINES[$(($1 % ${#ENGINES[@]}))]}
	start_server_or_fail --engine "$engine" -e v="pool:$P/v" -e w="pool:$P/w"
}

start_round 0
for ((i = 1; i <= KILLS; i++)); do
	# Written and flushed before the kill: promised from now on.
	# shellcheck disable=SC2046
	timeout 60 fio $(fio_job "$i") --do_verify=0 --end_fsync=1 --verify_state_save=0 \
		--output="$TMP/fio-$i.out" || fail "round $i: fio: $(tail -n 20 "$TMP/fio-$i.out")"

	# The load the kill interrupts: fio flushing every 8 writes, pool-kill.py
	# on two exports over four connections.
	timeout 60 fio --name=load --ioengine=nbd --uri="$(uri_of v)" --rw=randwrite --bs=4k \
		--offset=32M --size=8M --iodepth=16 --fsync=8 --time_based --runtime=20 \
		--verify=crc32c --do_verify=0 --randseed=$RANDOM --verify_state_save=0 \
		--output="$TMP/load-$i.out" >/dev/null 2>&1 &
	FIO_PID=$!
	timeout 60 "$PY" "$CLIENT" write "$TMP/state" 20 "$(uri_of v)" "$(uri_of w)" \
		> "$TMP/writer-$i.out" 2>&1 &
	WRITER_PID=$!
	r=$((RANDOM % 15 + 2))
	sleep "$((r / 10)).$((r % 10))"
	kill -KILL "$SRV_PID" || fail "round $i: the daemon died before the kill"
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
	wait "$FIO_PID" || true		# fails: its server went away
	FIO_PID=
	wrc=0
	wait "$WRITER_PID" || wrc=$?
	WRITER_PID=
	[ "$wrc" = 0 ] || fail "round $i: pool-kill.py write: $(cat "$TMP/writer-$i.out")"
	check_log
	rm -f "$SOCK"

	"$POOLTOOL" check "$P" > "$TMP/check-$i.out" 2>&1 ||
		fail "round $i: check of the crashed pool: $(cat "$TMP/check-$i.out")"
	start_round "$i"
	# Every slot's last flushed region, as one fio run of parallel jobs.
	jobs=()
	for ((j = i > SLOTS ? i - SLOTS + 1 : 1; j <= i; j++)); do
		# shellcheck disable=SC2207
		jobs+=($(fio_job "$j"))
	done
	timeout 120 fio --output="$TMP/verify-$i.fio" --verify_only=1 "${jobs[@]}" ||
		fail "round $i: a region flushed before a kill: $(grep -E -i 'verify|bad|err' \
			"$TMP/verify-$i.fio" | head -20)"
	"$PY" "$CLIENT" verify "$TMP/state" "$(uri_of v)" $((32 * MiB)) $((8 * MiB)) \
		"$(uri_of v)" "$(uri_of w)" > "$TMP/verify-$i.out" 2>&1 ||
		fail "round $i: what the crash left: $(cat "$TMP/verify-$i.out")"
done
leaks=$(cat "$TMP"/check-*.out | grep -c -E '(^|[^0-9])[1-9][0-9]* leaked' || true)
echo "$NAME: $KILLS kills, $leaks checks reported leaks"

# Never written: zeros, in both volumes.
used=$(((KILLS < SLOTS ? KILLS : SLOTS) + 1))
qio_at "$(uri_of v)" -c "read -P 0 0 1M" -c "read -P 0 $((used * MiB)) $(((32 - used) * MiB))" \
	-c "read -P 0 44M 20M"
qio_at "$(uri_of w)" -c "read -P 0 0 40M" -c "read -P 0 44M 20M"
finish v
"$POOLTOOL" check "$P" > "$TMP/check.out" 2>&1 ||
	fail "check after a clean stop: $(cat "$TMP/check.out")"
