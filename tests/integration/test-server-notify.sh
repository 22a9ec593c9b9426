#!/usr/bin/env bash
# systemd notification (Type=notify): with NOTIFY_SOCKET set, the daemon
# sends READY=1 and a STATUS= line naming its exports and listeners once it
# serves, and STOPPING=1 when SIGTERM starts the stop. The test plays
# systemd: it listens on a Unix datagram socket of its own (python3).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires python3
# Debian's own python3 if there is one: only the standard library is needed,
# and a version manager's shim can take seconds to start.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

ntf=$TMP/notify
msgs=$TMP/notify.log
# Receive datagrams into $msgs, one line per variable, until STOPPING=1 or 60 s.
"$PY" - "$ntf" "$msgs" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.monotonic() + 60
with open(sys.argv[2], "w") as out:
    while time.monotonic() < end:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            continue
        out.write(m.rstrip("\n") + "\n")
        out.flush()
        if "STOPPING=1" in m.split("\n"):
            break
EOF
listener=$!
trap 'kill "$listener" 2>/dev/null || true; lib_server_cleanup' EXIT
for _ in $(seq 100); do [ -S "$ntf" ] && break; sleep 0.05; done
[ -S "$ntf" ] || fail "python3 could not listen on $ntf"

# wait_for LINE: LINE arrives on the notify socket within 10 s.
wait_for()
{
	for _ in $(seq 200); do
		grep -q -x -- "$1" "$msgs" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "no '$1' on NOTIFY_SOCKET; got: $(cat "$msgs" 2>/dev/null)"
}

mkvol "$TMP/a.img" 1M
mkvol "$TMP/b.img" 1M
NOTIFY_SOCKET=$ntf start_server_or_fail -e a="$TMP/a.img" -e b="$TMP/b.img"
wait_for READY=1
grep -q -x -- "STATUS=serving 2 exports on unix:$SOCK with [0-9]* reactors\?" "$msgs" ||
	fail "READY=1 came without the expected STATUS=: $(cat "$msgs")"
grep -q STOPPING "$msgs" && fail "STOPPING=1 before any stop: $(cat "$msgs")"
# SIGHUP: RELOADING=1, then READY=1 again once applied (no -c here: nothing to read,
# which is logged, and the daemon goes on serving).
kill -HUP "$SRV_PID"
wait_for RELOADING=1
for _ in $(seq 200); do [ "$(grep -c -x READY=1 "$msgs")" -ge 2 ] && break; sleep 0.05; done
[ "$(grep -c -x READY=1 "$msgs")" -ge 2 ] || fail "no READY=1 after RELOADING=1: $(cat "$msgs")"
grep -q "no config file" "$SRV_LOG" || fail "SIGHUP without -c is not explained in the log"
check_served a
stop_server
wait_for STOPPING=1
grep -q -x -- "STATUS=stopping.*" "$msgs" || fail "no STATUS= with STOPPING=1: $(cat "$msgs")"
wait "$listener" || fail "the notify listener failed"
echo "$NAME: ok"
