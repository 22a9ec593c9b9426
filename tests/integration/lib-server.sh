# Sourced by tests/integration/test-server-*.sh: start the real dionbd on a
# Unix socket in $DIO_TEST_DIR, drive it with real clients, stop it.
# Env (set by ctest, defaulted for a run by hand): DIO_SRC, DIO_BUILD,
# DIO_TEST_DIR, DIO_TEST_ENGINE (uring|psync: test that one; unset: both),
# DIONBD (the daemon to test; default $DIO_BUILD/server/dionbd).
source "$(dirname "${BASH_SOURCE[0]}")/lib-common.sh"

PROGS=$DIO_BUILD/tests

# requires_prog NAME...: skip unless the test program $PROGS/NAME was built.
requires_prog()
{
	local p
	for p in "$@"; do
		[ -x "$PROGS/$p" ] || skip "$PROGS/$p is not built (needs libnbd-dev)"
	done
}

if [ -z "${DIONBD:-}" ]; then
	for DIONBD in "$DIO_BUILD/server/dionbd" "$DIO_BUILD/dionbd"; do
		[ -x "$DIONBD" ] && break
	done
fi
[ -x "$DIONBD" ] || skip "the daemon is not built ($DIONBD)"
requires timeout
requires_prog server-raw

mkdir -p "$DIO_TEST_DIR"
TMP=$(mktemp -d "$DIO_TEST_DIR/$NAME.XXXXXX")
SRV_PID=
SRV_LOG=
SOCK=
URI=
SRV_N=0

# lib_server_cleanup [RC]: the EXIT trap (RC: the test's status, when
# another trap calls it; no "(exit RC)" before it, which set -e would end).
lib_server_cleanup()
{
	local rc=${1:-$?}
	if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
		kill -KILL "$SRV_PID" 2>/dev/null || true
		wait "$SRV_PID" 2>/dev/null || true
	fi
	# Keep the evidence of a failure, remove it otherwise.
	if [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
		rm -rf "$TMP"
	else
		echo "$NAME: scratch files kept in $TMP" >&2
	fi
}
trap lib_server_cleanup EXIT

# The engines to test: $DIO_TEST_ENGINE, or uring (when the daemon can use it
# here) and psync.
test_engines()
{
	local f=$TMP/probe-engine.img
	if [ -n "${DIO_TEST_ENGINE:-}" ]; then
		echo "$DIO_TEST_ENGINE"
		return
	fi
	mkvol "$f" 1M
	if start_server --engine uring "$f" 2>/dev/null; then
		check_served >&2
		stop_server >&2
		echo uring psync
	else
		echo "$NAME: the daemon cannot use io_uring here, testing psync only" >&2
		echo psync
	fi
	rm -f "$f"
}

# mkvol PATH SIZE: a fresh sparse file of SIZE bytes (truncate's suffixes).
mkvol()
{
	mkfile "$@"
}

# start_server ARGS...: run "dionbd -f -U SOCK ARGS" in the background and
# wait (10 s at most) for its socket. Sets SRV_PID, SRV_LOG, SOCK, URI.
# Returns 1 (log in SRV_LOG) if it exits or never listens.
start_server()
{
	local i
	SRV_N=$((SRV_N + 1))
	SOCK=$TMP/sock-$SRV_N
	SRV_LOG=$TMP/server-$SRV_N.log
	URI="nbd+unix:///?socket=$SOCK"
	"$DIONBD" -f -U "$SOCK" "$@" 2>"$SRV_LOG" >&2 &
	SRV_PID=$!
	for ((i = 0; i < 200; i++)); do
		if [ -S "$SOCK" ]; then
			return 0
		fi
		if ! kill -0 "$SRV_PID" 2>/dev/null; then
			wait "$SRV_PID" 2>/dev/null || true
			SRV_PID=
			echo "$NAME: the daemon exited at start: $(tail -n 5 "$SRV_LOG")" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "$NAME: no socket after 10 s" >&2
	return 1
}

# start_server_or_fail ARGS...: start_server, failing the test if it cannot.
start_server_or_fail()
{
	start_server "$@" || fail "cannot start: $DIONBD -f -U SOCK $*"
}

# start_metrics ARGS...: start_server_or_fail with --metrics on a free port
# (a few tries: another program may take the port between the two). Sets MURL.
start_metrics()
{
	local i port
	for ((i = 0; i < 5; i++)); do
		port=$(free_port)
		MURL=http://127.0.0.1:$port/metrics
		start_server --metrics "127.0.0.1:$port" "$@" && return 0
		grep -q "metrics: cannot listen" "$SRV_LOG" || break
	done
	fail "cannot start: $DIONBD -f -U SOCK --metrics 127.0.0.1:PORT $*"
}

# requires_pool_ctl: skip unless /usr/bin/python3 has libnbd and dionbdctl
# and dionbd-pool are built. Sets PY, CTL, POOLTOOL.
requires_pool_ctl()
{
	PY=/usr/bin/python3
	"$PY" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed for $PY"
	requires_pool_tools
}

# requires_pool_tools: $CTL (dionbdctl) and $POOLTOOL (dionbd-pool), or skip.
requires_pool_tools()
{
	CTL=$DIO_BUILD/server/dionbdctl
	POOLTOOL=$DIO_BUILD/tools/dionbd-pool
	[ -x "$CTL" ] && [ -x "$POOLTOOL" ] || skip "dionbdctl or dionbd-pool is not built"
}

# new_pool SIZE [VOLUME VOLSIZE]...: a fresh pool file $P of SIZE bytes
# (truncate's suffixes) in $TMP with these volumes.
new_pool()
{
	P=$TMP/pool.img
	truncate -s "$1" "$P"
	shift
	"$POOLTOOL" create "$P" >/dev/null || fail "dionbd-pool create"
	while [ $# -ge 2 ]; do
		"$POOLTOOL" volume create "$P" "$1" "$2" >/dev/null || fail "volume create $1"
		shift 2
	done
}

# uri_of EXPORT: the URI of a named export on the current server.
uri_of()
{
	echo "nbd+unix:///$1?socket=$SOCK"
}

# check_served [EXPORT]: the daemon is alive and a new client can still
# connect, read and disconnect cleanly.
check_served()
{
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	timeout 20 "$PROGS/server-raw" probe "$SOCK" "${1:-}" ||
		fail "a new client is not served"
}

# refused_quietly WHAT SECRET CMD...: CMD fails, and its output does not
# contain SECRET (an export name a refused client must not learn).
refused_quietly()
{
	local what=$1 secret=$2
	shift 2
	if "$@" >"$TMP/out" 2>&1; then
		fail "$what: served: $(cat "$TMP/out")"
	fi
	if grep -F "$secret" "$TMP/out" >/dev/null; then
		fail "$what: an export name leaked: $(cat "$TMP/out")"
	fi
}

# check_log: no sanitizer report or crash trace in the daemon's log.
check_log()
{
	if grep -E -q 'Sanitizer|runtime error:|Segmentation fault|Assertion .* failed' "$SRV_LOG"; then
		fail "the daemon's log shows a sanitizer report or a crash"
	fi
}

# stop_server [SECONDS]: SIGTERM; the daemon must exit with status 0 within
# SECONDS (default 10), leaving a clean log.
stop_server()
{
	local limit=${1:-10} i rc=0
	[ -n "$SRV_PID" ] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null || fail "the daemon is not running"
	for ((i = 0; i < limit * 20; i++)); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$SRV_PID" 2>/dev/null; then
		kill -KILL "$SRV_PID" 2>/dev/null || true
		wait "$SRV_PID" 2>/dev/null || true
		SRV_PID=
		fail "the daemon did not exit within $limit s of SIGTERM"
	fi
	wait "$SRV_PID" || rc=$?
	SRV_PID=
	[ "$rc" = 0 ] || fail "the daemon exited with status $rc after SIGTERM"
	check_log
	[ ! -e "$SOCK" ] || fail "the daemon left its socket $SOCK behind"
}

# finish: the end of every test: still alive, still serving a second client,
# then a clean stop.
finish()
{
	check_served "$@"
	stop_server
}

# run PROG ARGS...: a test program from $PROGS, bounded in time.
run()
{
	local p=$1
	shift
	timeout --kill-after=5 240 "$PROGS/$p" "$@"
}

# qio_at URI ARGS...: qemu-io ARGS on raw URI, failing the test on an error or
# a pattern that does not verify.
qio_at()
{
	local uri=$1
	shift
	timeout 120 qemu-io -f raw "$@" "$uri" > "$TMP/qio.out" 2>&1 ||
		fail "qemu-io $uri $*: $(cat "$TMP/qio.out")"
	if grep -E -q 'Pattern verification failed|error|failed' "$TMP/qio.out"; then
		fail "qemu-io $uri $*: $(cat "$TMP/qio.out")"
	fi
}

# sha FILE: its SHA-256.
sha()
{
	sha256sum "$1" | cut -d' ' -f1
}

# The control socket, for tests that set CTL (dionbdctl) and C (its socket).
ctl() { timeout 30 "$CTL" -s "$C" "$@"; }
# wait_ctl: the control socket comes up just after the NBD one.
wait_ctl()
{
	for ((i = 0; i < 100; i++)); do [ -S "$C" ] && return 0; sleep 0.1; done
	fail "no control socket $C after 10 s"
}
# expect_ctl RC PATTERN ARGS...: dionbdctl ARGS exits RC, and its output
# (in $TMP/ctl.out) matches PATTERN.
expect_ctl()
{
	local want=$1 pat=$2 rc=0
	shift 2
	ctl "$@" > "$TMP/ctl.out" 2>&1 || rc=$?
	[ "$rc" = "$want" ] || fail "dionbdctl $*: exit $rc, wanted $want: $(cat "$TMP/ctl.out")"
	grep -E -q -- "$pat" "$TMP/ctl.out" || fail "dionbdctl $*: no '$pat' in: $(cat "$TMP/ctl.out")"
}
