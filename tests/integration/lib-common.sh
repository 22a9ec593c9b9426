# Sourced by tests/integration/lib-server.sh and plugins/dio/test-functions.sh:
# the environment, outcomes and checks every shell test shares.
# Env (set by ctest, defaulted for a run by hand): DIO_SRC, DIO_BUILD, DIO_TEST_DIR.
set -euo pipefail

: "${DIO_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${DIO_BUILD:=$DIO_SRC/build}"
: "${DIO_TEST_DIR:=$DIO_BUILD/tmp}"
NAME=$(basename "$0" .sh)

skip()
{
	echo "$NAME: SKIP: $*" >&2
	exit 77
}

# fail MESSAGE: exit 1, with the tail of the daemon's log if $SRV_LOG has one.
fail()
{
	echo "$NAME: FAIL: $*" >&2
	if [ -n "${SRV_LOG:-}" ] && [ -s "$SRV_LOG" ]; then
		echo "--- last lines of the daemon's log ($SRV_LOG):" >&2
		tail -n 30 "$SRV_LOG" >&2
	fi
	exit 1
}

# requires CMD...: skip unless every CMD is installed.
requires()
{
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
	done
}

# nbdsh_check: skip unless nbdsh runs; it runs "python3", and only the
# system one has libnbd's bindings, so /usr/bin goes first when needed.
# (plugins/dio/test-functions.sh's requires_nbdsh adds its python helpers.)
nbdsh_check()
{
	requires nbdsh
	if ! nbdsh -c pass >/dev/null 2>&1; then
		export PATH=/usr/bin:$PATH
		nbdsh -c pass >/dev/null 2>&1 || skip "nbdsh does not run (python3-libnbd)"
	fi
}

# mkfile PATH SIZE: a fresh sparse file of SIZE bytes (truncate's suffixes).
mkfile()
{
	rm -f "$1"
	truncate -s "$2" "$1"
}

# free_port: a TCP port on this machine that no socket uses just now, below
# the kernel's ephemeral range, so that no outgoing connection (a Ceph
# client's, say, in a test running beside this one) can take it while a
# test keeps restarting a daemon on it. 0 when none was found.
free_port()
{
	local lo p i
	lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 11000 ] || lo=32768
	for ((i = 0; i < 50; i++)); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! ss -Htan "sport = :$p" | grep . >/dev/null; then
			echo "$p"
			return
		fi
	done
	echo 0
}
