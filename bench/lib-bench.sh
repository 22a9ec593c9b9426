# SPDX-License-Identifier: MIT
# Sourced by the bench/run-*.sh scripts: messages, sizes, the scratch
# directory's cleanup, fully written files, and the one server a cell runs
# (its PID in srv_pid). Set bench_name before sourcing.

die() { echo "$bench_name: $*" >&2; exit 1; }
skip() { echo "$bench_name: SKIP: $*" >&2; exit 77; }
say() { echo "$bench_name: $*" >&2; }

# 4G, 512M, 64k... in bytes
to_bytes() { numfmt --from=iec "${1%[bB]}" 2>/dev/null || die "bad size: $1"; }
# seconds (may be fractional) in whole milliseconds
ms() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000 + 0.5 }'; }

# The server a cell runs, and the scratch directory $work: both go at exit.
srv_pid=
work=
bench_cleanup() {
	if [ -n "$srv_pid" ]; then
		kill "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=
	fi
	[ -z "$work" ] || rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# stop_server [SOCKET]: SIGTERM, up to 30 s to finish (a pool checkpoints
# at exit), then SIGKILL; the socket file goes too.
stop_server() {
	[ -n "$srv_pid" ] || return 0
	kill "$srv_pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$srv_pid" 2>/dev/null || true
	wait "$srv_pid" 2>/dev/null || true
	srv_pid=
	[ -z "${1:-}" ] || rm -f "$1"
}

# utime + stime of the server and all its threads, in clock ticks
cpu_ticks() {
	[ -n "$srv_pid" ] || { echo 0; return; }
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$srv_pid/stat" 2>/dev/null || echo 0
}

# make_full FILE BYTES: a file with every block written, reused when it
# already is one. Holes or unwritten extents read without device I/O (and
# writes to them are ext4's conversions), so whoever met them would look
# faster, or slower, than the device is.
make_full() {
	local f=$1 n=$2 have blocks
	if [ -f "$f" ]; then
		read -r have blocks < <(stat -c '%s %b' "$f")
		if [ "$have" -eq "$n" ] && [ $(( blocks * 512 )) -ge "$n" ] &&
		   ! filefrag -v "$f" 2>/dev/null | grep -q unwritten; then
			say "reusing $f (fully written)"
			return 0
		fi
		rm -f "$f"
	fi
	say "writing $f ($n bytes)"
	timeout 600 fio --name=fill --filename="$f" --size="$n" --rw=write --bs=1m \
	    --iodepth=16 --ioengine=io_uring --direct=1 --end_fsync=1 \
	    --refill_buffers --output=/dev/null || die "could not write $f"
	read -r have blocks < <(stat -c '%s %b' "$f")
	[ "$have" -eq "$n" ] && [ $(( blocks * 512 )) -ge "$n" ] ||
		die "$f came out sparse or short ($have bytes, $blocks blocks)"
}

# settle FILE: write back and forget its cached pages, so no cell inherits
# another's page cache or writeback.
settle() {
	timeout 120 sync -d "$1" || die "fdatasync $1 timed out"
	dd if="$1" iflag=nocache count=0 status=none 2>/dev/null || true
}
