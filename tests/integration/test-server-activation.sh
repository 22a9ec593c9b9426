#!/usr/bin/env bash
# Socket activation: libnbd starts the daemon itself with LISTEN_FDS
# (nbd_connect_systemd_socket_activation, here through nbdinfo's and
# nbdcopy's [ CMD ] syntax), data written through one activated daemon is
# read back through another, and a LISTEN_PID for some other process is
# ignored rather than taken.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires nbdinfo nbdcopy

f=$TMP/vol.img
mkvol "$f" 16M
size=$(timeout 60 nbdinfo --size -- [ "$DIONBD" -v "$f" ]) ||
	fail "nbdinfo could not start dionbd by socket activation"
[ "$size" = 16777216 ] || fail "activated export size $size, want 16777216"

head -c 4M /dev/urandom > "$TMP/data"
timeout 60 nbdcopy "$TMP/data" -- [ "$DIONBD" "$f" ] ||
	fail "nbdcopy to an activated daemon"
timeout 60 nbdcopy -- [ "$DIONBD" "$f" ] "$TMP/back" || fail "nbdcopy from an activated daemon"
cmp -n 4194304 "$TMP/data" "$TMP/back" || fail "data written through activation differs"
cmp -n 4194304 "$TMP/data" "$f" || fail "the volume does not hold what was written"

# LISTEN_PID names another process: not ours, so the daemon listens itself.
start_server_or_fail "$f"
LISTEN_PID=1 LISTEN_FDS=1 timeout 10 nbdinfo --size "$URI" >/dev/null ||
	fail "a client could not connect"
sock2=$TMP/other.sock
# A file of its own: the first daemon holds $f's image lock for writing.
mkvol "$TMP/other.img" 1M
# Started directly (no timeout wrapper: the signal must reach the daemon
# itself), stopped below or by the trap.
LISTEN_PID=1 LISTEN_FDS=1 "$DIONBD" -f -U "$sock2" "$TMP/other.img" 2>"$TMP/other.log" &
other=$!
trap 'kill -KILL "$other" 2>/dev/null || true; lib_server_cleanup' EXIT
for _ in $(seq 50); do [ -S "$sock2" ] && break; sleep 0.1; done
[ -S "$sock2" ] || fail "with another process's LISTEN_PID the daemon did not listen: $(cat "$TMP/other.log")"
kill -TERM "$other"
for _ in $(seq 100); do kill -0 "$other" 2>/dev/null || break; sleep 0.1; done
kill -0 "$other" 2>/dev/null && fail "the second daemon still runs 10 s after SIGTERM"
wait "$other" || fail "the second daemon did not stop cleanly: $(tail -3 "$TMP/other.log")"
finish
echo "$NAME: ok"
