#!/usr/bin/env bash
# TLS over TCP on 127.0.0.1 (-b 127.0.0.1 -p PORT): X.509 with nbds://
# (the server certificate names 127.0.0.1, so libnbd's hostname check
# passes), nbdinfo and an nbdcopy round trip with checksums; a plaintext
# nbd:// client is refused under --tls require (the default with
# credentials) and the server goes on serving; then PSK (--tls-psk-file)
# the same way, with a wrong key refused.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo nbdcopy sha256sum
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" --test-extras "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
PORT=

# start_tcp ARGS...: "dionbd -f -b 127.0.0.1 -p PORT ARGS" on a free high
# port (another one while the port is in use, 10 tries), waiting (10 s at
# most) for "listening" in its log. Sets SRV_PID, SRV_LOG, PORT.
start_tcp()
{
	local try i
	SOCK=
	for ((try = 0; try < 10; try++)); do
		SRV_N=$((SRV_N + 1))
		SRV_LOG=$TMP/server-$SRV_N.log
		PORT=$(free_port)
		"$DIONBD" -f -v -b 127.0.0.1 -p "$PORT" "$@" 2>"$SRV_LOG" >&2 &
		SRV_PID=$!
		for ((i = 0; i < 200; i++)); do
			if grep -q "listening on 127.0.0.1 port $PORT\$" "$SRV_LOG"; then
				return 0
			fi
			kill -0 "$SRV_PID" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$SRV_PID" 2>/dev/null; then
			fail "no 'listening' in the log after 10 s"
		fi
		wait "$SRV_PID" 2>/dev/null || true
		SRV_PID=
		grep -q "Address already in use" "$SRV_LOG" ||
			fail "cannot start: $DIONBD -f -v -b 127.0.0.1 -p $PORT $*"
	done
	fail "no free port in 10 tries"
}

# tcp_served URI: the daemon is alive and serves a TLS client at URI.
tcp_served()
{
	local out
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	out=$(timeout 20 nbdinfo "$1" 2>&1) || fail "a good TLS client is not served: $out"
	grep -q "with TLS" <<<"$out" || fail "nbdinfo did not use TLS: $out"
}

# plain_refused: a plaintext nbd:// client gets no export.
plain_refused()
{
	if timeout 20 nbdinfo "nbd://127.0.0.1:$PORT/" >"$TMP/plain.out" 2>&1; then
		fail "a plaintext TCP client was served: $(cat "$TMP/plain.out")"
	fi
	grep -q "TLS\|not supported\|refused" "$TMP/plain.out" ||
		fail "unexpected plaintext failure: $(cat "$TMP/plain.out")"
	grep -q "export-size" "$TMP/plain.out" && fail "the plaintext client saw the export"
	true
}

# round_trip URI: nbdcopy 20 MiB + 12 KiB (not a multiple of a request) there
# and back.
round_trip()
{
	head -c $((20 << 20)) /dev/urandom >"$TMP/src"
	head -c 12288 /dev/urandom >>"$TMP/src"
	timeout 120 nbdcopy --request-size=$((1 << 20)) "$TMP/src" "$1" ||
		fail "nbdcopy to the server over TCP"
	rm -f "$TMP/back"
	timeout 120 nbdcopy "$1" "$TMP/back" || fail "nbdcopy from the server over TCP"
	head -c "$(stat -c %s "$TMP/src")" "$TMP/back" >"$TMP/back.head"
	[ "$(sha "$TMP/src")" = "$(sha "$TMP/back.head")" ] ||
		fail "the checksum of the data read back over TCP differs"
	head -c "$(stat -c %s "$TMP/src")" "$f" >"$TMP/vol.head"
	[ "$(sha "$TMP/src")" = "$(sha "$TMP/vol.head")" ] ||
		fail "the checksum of the data on the volume differs"
	rm -f "$TMP/back" "$TMP/back.head" "$TMP/vol.head"
}

f=$TMP/vol.img
mkvol "$f" 32M

# X.509 (--tls require is the default with --tls-creds).
start_tcp --tls-creds "$CERTS/server" "$f"
U="nbds://127.0.0.1:$PORT/?tls-certificates=$CERTS/client"
out=$(timeout 20 nbdinfo "$U") || fail "nbdinfo over TLS/TCP: $out"
grep -q "with TLS" <<<"$out" || fail "nbdinfo did not use TLS: $out"
grep -q "export-size: 33554432" <<<"$out" || fail "nbdinfo: wrong size: $out"
grep -q "TLS required: X.509" "$SRV_LOG" || fail "the log does not say TLS is required"
round_trip "$U"
plain_refused
tcp_served "$U"
# A client that trusts another CA refuses the server.
if timeout 20 nbdinfo "nbds://127.0.0.1:$PORT/?tls-certificates=$CERTS/rogue-ca" \
	>"$TMP/rogue.out" 2>&1; then
	fail "a client trusting another CA was served: $(cat "$TMP/rogue.out")"
fi
tcp_served "$U"
grep -q "TLS TLSv1.3" "$SRV_LOG" || fail "the log shows no TLS 1.3 session"
stop_server

# PSK only.
mkvol "$f" 32M
start_tcp --tls-psk-file "$CERTS/keys.psk" "$f"
P="nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$CERTS/keys.psk"
out=$(timeout 20 nbdinfo "$P") || fail "nbdinfo over TLS-PSK/TCP: $out"
grep -q "with TLS" <<<"$out" || fail "nbdinfo did not use TLS: $out"
grep -q "export-size: 33554432" <<<"$out" || fail "nbdinfo: wrong size: $out"
grep -q "peer PSK alice" "$SRV_LOG" || fail "the log does not show PSK identity alice"
round_trip "$P"
# The user name as a query parameter (libnbd >= 1.18 knows tls-username=).
if nbdinfo --version 2>/dev/null | awk '/libnbd/ { split($2, v, "."); exit !(v[1] > 1 || v[2] >= 18) }'; then
	out=$(timeout 20 nbdinfo "nbds://127.0.0.1:$PORT/?tls-psk-file=$CERTS/keys.psk&tls-username=bob") ||
		fail "nbdinfo with tls-username=bob: $out"
	grep -q "peer PSK bob" "$SRV_LOG" || fail "the log does not show PSK identity bob"
else
	echo "$NAME: libnbd < 1.18 has no tls-username= URI parameter: bob@ instead" >&2
	tcp_served "nbds://bob@127.0.0.1:$PORT/?tls-psk-file=$CERTS/keys.psk"
	grep -q "peer PSK bob" "$SRV_LOG" || fail "the log does not show PSK identity bob"
fi
plain_refused
if timeout 20 nbdinfo "nbds://alice@127.0.0.1:$PORT/?tls-psk-file=$CERTS/wrong.psk" \
	>"$TMP/wrong.out" 2>&1; then
	fail "a wrong PSK was accepted over TCP"
fi
tcp_served "$P"
stop_server
