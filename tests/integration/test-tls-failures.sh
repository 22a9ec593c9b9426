#!/usr/bin/env bash
# The failure matrix with --tls-verify-peer (X.509 and PSK together): a
# client certificate from another CA, an expired one, none at all, a client
# that trusts another CA, a wrong PSK, an unknown PSK identity, a stalled
# TLS handshake. Each fails, none of them learns an export name, and the
# server goes on serving good clients.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" --test-extras "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
[ -f "$CERTS/expired/client-cert.pem" ] || skip "certtool is needed for an expired certificate"
mkdir -p "$CERTS/nocert"
cp "$CERTS/ca/ca-cert.pem" "$CERTS/nocert/"
SECRET=tenant-secret-volume-7f3a

tls_served()
{
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	run tls-raw go "$SOCK" -c "$CERTS/client" -e "$SECRET" >/dev/null ||
		fail "a good TLS client is not served"
	timeout 20 nbdinfo --list "nbds+unix:///?socket=$SOCK&tls-certificates=$CERTS/client" \
		>"$TMP/good.list" 2>&1 || fail "nbdinfo --list: $(cat "$TMP/good.list")"
	grep -q "$SECRET" "$TMP/good.list" || fail "a good client does not see the exports"
}

# refused WHAT CMD...: CMD fails and its output names no export; the
# server still serves a good client.
refused()
{
	refused_quietly "$1" "$SECRET" "${@:2}"
	tls_served
}

f=$TMP/vol.img
mkvol "$f" 16M
start_server_or_fail -v --tls require --tls-creds "$CERTS/server" \
	--tls-psk-file "$CERTS/keys.psk" --tls-verify-peer --handshake-timeout 2 \
	-e "$SECRET=$f" "$f"
tls_served

L="nbds+unix:///?socket=$SOCK"
for bad in rogue expired nocert rogue-ca; do
	refused "nbdinfo --list with $bad credentials" \
		timeout 20 nbdinfo --list "$L&tls-certificates=$CERTS/$bad"
done
for bad in rogue expired nocert; do
	refused "raw client with $bad credentials (TLS 1.3)" \
		run tls-raw list "$SOCK" -c "$CERTS/$bad"
	refused "raw client with $bad credentials (TLS 1.2)" \
		run tls-raw list "$SOCK" -c "$CERTS/$bad" -v 1.2
done
grep -q "certificate has expired" "$SRV_LOG" || fail "the log does not say 'expired'"
grep -q "peer did not return a certificate" "$SRV_LOG" ||
	fail "the log does not say the certificate was missing"

refused "wrong PSK" timeout 20 nbdinfo --list "nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$CERTS/wrong.psk"
refused "unknown PSK identity" \
	run tls-raw list "$SOCK" -p "carol:$(grep ^alice: "$CERTS/keys.psk" | cut -d: -f2)"
# PSK clients are authenticated by their key: no certificate needed.
out=$(timeout 20 nbdinfo --list "nbds+unix://bob@/?socket=$SOCK&tls-psk-file=$CERTS/keys.psk") ||
	fail "a good PSK client is not served: $out"
grep -q "$SECRET" <<<"$out" || fail "a good PSK client does not see the exports"

# A handshake that stalls is cut by the handshake deadline; others are served meanwhile.
run tls-raw stall "$SOCK" -c "$CERTS/client" &
stall=$!
tls_served
wait "$stall" || fail "a stalled TLS handshake was not closed"
grep -q "handshake deadline" "$SRV_LOG" || fail "the log does not show the deadline"

tls_served
stop_server
