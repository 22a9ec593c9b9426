#!/usr/bin/env bash
# 300 clients stuck in the handshake do not lock out a real one, and the
# handshake deadline frees their slots.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires_prog server-liveness

f=$TMP/vol.img
mkvol "$f" 16M
start_server_or_fail --handshake-timeout 2 "$f"
run server-liveness stuck "$SOCK" 300 || fail "stuck clients"
# With a connection cap below the stuck clients, the deadline must free slots.
stop_server
start_server_or_fail --handshake-timeout 2 --max-connections 50 "$f"
python3 - "$SOCK" <<'PY' || fail "the handshake deadline did not free the slots"
import socket, sys, time
socks = []
for i in range(50):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    socks.append(s)
# All 50 slots are held; after the 2 s deadline the server must have dropped them.
time.sleep(4)
closed = 0
for s in socks:
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
        closed += 1
    except OSError:
        closed += 1
sys.exit(0 if closed == 50 else 1)
PY
finish
