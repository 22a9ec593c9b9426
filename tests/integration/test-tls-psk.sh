#!/usr/bin/env bash
# STARTTLS with pre-shared keys only (--tls-psk-file, psktool format):
# libnbd (tls-psk-file, user name), qemu-img with tls-creds-psk, TLS 1.3 and
# TLS 1.2 PSK from OpenSSL; a wrong key and an unknown identity fail the
# handshake and the server goes on serving.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" --test-extras "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
key()
{
	grep "^$1:" "$2" | cut -d: -f2
}
ALICE=alice:$(key alice "$CERTS/keys.psk")

tls_served()
{
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	run tls-raw go "$SOCK" -p "$ALICE" >/dev/null || fail "a good PSK client is not served"
}

f=$TMP/vol.img
mkvol "$f" 16M
start_server_or_fail -v --tls-psk-file "$CERTS/keys.psk" "$f"

for user in alice bob; do
	out=$(timeout 20 nbdinfo "nbds+unix://$user@/?socket=$SOCK&tls-psk-file=$CERTS/keys.psk") ||
		fail "nbdinfo as $user: $out"
	grep -q "with TLS" <<<"$out" || fail "nbdinfo did not use TLS: $out"
	grep -q "peer PSK $user" "$SRV_LOG" || fail "the log does not show PSK identity $user"
done

for v in 1.3 1.2; do
	out=$(run tls-raw go "$SOCK" -p "$ALICE" -v "$v") || fail "PSK over TLS $v refused"
	grep -q "^TLSv$v " <<<"$out" || fail "TLS $v PSK: negotiated $out"
done
run tls-raw go "$SOCK" -p "$ALICE" -v 1.1 -x 2>/dev/null || fail "PSK over TLS 1.1 accepted"

# Failures: wrong key, unknown identity (libnbd checks the name itself, so raw).
if timeout 20 nbdinfo "nbds+unix://alice@/?socket=$SOCK&tls-psk-file=$CERTS/wrong.psk" \
	>/dev/null 2>&1; then
	fail "a wrong PSK was accepted"
fi
tls_served
run tls-raw go "$SOCK" -p "alice:$(key alice "$CERTS/wrong.psk")" -x 2>/dev/null ||
	fail "a wrong PSK was accepted (TLS 1.3)"
run tls-raw go "$SOCK" -p "alice:$(key alice "$CERTS/wrong.psk")" -v 1.2 -x 2>/dev/null ||
	fail "a wrong PSK was accepted (TLS 1.2)"
run tls-raw go "$SOCK" -p "carol:$(key alice "$CERTS/keys.psk")" -x 2>/dev/null ||
	fail "an unknown identity was accepted (TLS 1.3)"
run tls-raw go "$SOCK" -p "carol:$(key alice "$CERTS/keys.psk")" -v 1.2 -x 2>/dev/null ||
	fail "an unknown identity was accepted (TLS 1.2)"
grep -q "unknown PSK identity 'carol'" "$SRV_LOG" || fail "the log does not name the identity"
# No certificate configured: a client without a PSK has nothing to offer.
run tls-raw go "$SOCK" -x 2>/dev/null || fail "a client without PSK was served"
tls_served

if command -v qemu-img >/dev/null; then
	obj="tls-creds-psk,id=tls0,endpoint=client,dir=$CERTS,username=alice"
	img="driver=nbd,server.type=unix,server.path=$SOCK,tls-creds=tls0"
	timeout 30 qemu-img info --object "$obj" --image-opts "$img" >"$TMP/qi.out" 2>&1 ||
		fail "qemu-img info over TLS PSK: $(cat "$TMP/qi.out")"
	grep -q "16 MiB" "$TMP/qi.out" || fail "qemu-img info: $(cat "$TMP/qi.out")"
else
	echo "$NAME: qemu-img not installed: qemu part skipped" >&2
fi
tls_served
stop_server
